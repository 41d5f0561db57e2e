//! Ending processes, written once: signals to a whole process group, and
//! the termination sequence every path uses — SIGTERM + SIGCONT (so a
//! paused process can act on it), a grace period, SIGKILL, and a bounded
//! wait until the target is gone.
//!
//! [`Group::stop`] ends a process group; [`stop_process`] ends one process
//! that is not our child (the background server, for `ccx stop`), held by
//! a pidfd ([`Held`]) so that a reused pid is never signalled;
//! [`stop_child`] ends a child we spawned in its own group and reaps it.
//! (A child of ours keeps its pid, and its group id, until we reap it, so
//! signals by pid and group are safe for those.)

use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::time::{sleep, timeout, Instant};

use super::procfs;

/// How often a stop checks whether its target is gone.
const POLL: Duration = Duration::from_millis(10);
/// How long a stop waits after SIGKILL for its target to disappear.
const AFTER_KILL: Duration = Duration::from_secs(2);

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was left to stop.
    AlreadyGone,
    /// Gone within the grace period, after SIGTERM.
    Terminated,
    /// Needed SIGKILL, and is gone.
    Killed,
    /// Still there after SIGKILL (a process in uninterruptible sleep, or
    /// one we may not signal).
    Unkillable,
}

impl Stopped {
    /// The last signal sent, when one was.
    pub fn signal(self) -> Option<Signal> {
        match self {
            Stopped::AlreadyGone => None,
            Stopped::Terminated => Some(Signal::SIGTERM),
            Stopped::Killed | Stopped::Unkillable => Some(Signal::SIGKILL),
        }
    }
}

/// A signal by its name (`SIGTERM`), or `signal N` when it has none.
pub fn signal_name(number: i32) -> String {
    Signal::try_from(number)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {number}"))
}

/// How a process ended: `exit status 1`, or `signal 9 (SIGKILL)`.
pub fn exit_status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(n)) => match Signal::try_from(n) {
            Ok(s) => format!("signal {n} ({})", s.as_str()),
            Err(_) => format!("signal {n}"),
        },
        (None, None) => format!("{status}"),
    }
}

/// A process group, named by its leader's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(pub u32);

impl Group {
    fn pid(self) -> Pid {
        Pid::from_raw(self.0 as i32)
    }

    /// Sends `signal` to every process of the group. A group that no longer
    /// exists is not an error.
    pub fn signal(self, signal: Signal) -> Result<(), Errno> {
        match killpg(self.pid(), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether any process (zombies included) is still in the group.
    pub fn is_alive(self) -> bool {
        !matches!(killpg(self.pid(), None), Err(Errno::ESRCH))
    }

    /// Asks the group to stop: SIGTERM, plus SIGCONT so that a paused group
    /// can act on it.
    pub fn request_termination(self) {
        let _ = self.signal(Signal::SIGTERM);
        let _ = self.signal(Signal::SIGCONT);
    }

    /// SIGTERM + SIGCONT, up to `grace` for the group to empty, SIGKILL,
    /// then up to 2 s for it to disappear. A group whose leader is our
    /// child empties only once the leader is reaped: await this beside the
    /// child's `wait()`, or use [`stop_child`].
    pub async fn stop(self, grace: Duration) -> Stopped {
        stop_with(
            grace,
            || self.is_alive(),
            || self.request_termination(),
            || {
                let _ = self.signal(Signal::SIGKILL);
            },
        )
        .await
    }
}

/// The one termination sequence, over any target: `alive` says whether it
/// is still there, `term` asks it to stop, `kill` forces it.
pub async fn stop_with(
    grace: Duration,
    alive: impl Fn() -> bool,
    term: impl FnOnce(),
    kill: impl Fn(),
) -> Stopped {
    if !alive() {
        return Stopped::AlreadyGone;
    }
    term();
    if gone_within(grace, &alive).await {
        return Stopped::Terminated;
    }
    // SIGKILL again on every look: processes re-parented meanwhile (the
    // children of a killed escapee) are part of the target too.
    let until = Instant::now() + AFTER_KILL;
    loop {
        kill();
        sleep(POLL).await;
        if !alive() {
            return Stopped::Killed;
        }
        if Instant::now() >= until {
            return Stopped::Unkillable;
        }
    }
}

async fn gone_within(limit: Duration, alive: &impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if !alive() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        sleep(POLL).await;
    }
}

/// One process that is not our child, held by a pidfd: a signal sent
/// through it reaches that process or nobody, even once its pid has been
/// given to another process.
#[derive(Debug)]
pub struct Held {
    pid: u32,
    fd: OwnedFd,
}

impl Held {
    /// Holds the process that has `pid` now. Fails with ESRCH when there is
    /// none (ENOSYS before Linux 5.3).
    pub fn open(pid: u32) -> std::io::Result<Held> {
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
        let fd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())?;
        Ok(Held { pid, fd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the held process; one that has exited is not an
    /// error.
    pub fn signal(&self, signal: Signal) -> Result<(), Errno> {
        let Some(signal) = rustix::process::Signal::from_named_raw(signal as i32) else {
            return Err(Errno::EINVAL);
        };
        match rustix::process::pidfd_send_signal(&self.fd, signal) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            Err(e) => Err(Errno::from_raw(e.raw_os_error())),
        }
    }

    /// Whether the held process has exited (a zombie counts as exited: we
    /// cannot reap what is not our child). The pidfd says so, not the pid.
    pub fn has_exited(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&now)) {
            Ok(n) => n > 0,
            Err(_) => !procfs::is_alive(self.pid),
        }
    }
}

/// Ends one process that is not our child (we cannot reap it, so "gone"
/// means gone or a zombie): SIGTERM, grace, SIGKILL, every signal through
/// its pidfd. No SIGCONT: a stopped (hung) process stays stopped and gets
/// SIGKILL after the grace.
pub async fn stop_process(target: &Held, grace: Duration) -> Stopped {
    stop_with(
        grace,
        || !target.has_exited(),
        || {
            let _ = target.signal(Signal::SIGTERM);
        },
        || {
            let _ = target.signal(Signal::SIGKILL);
        },
    )
    .await
}

/// SIGKILLs each held process, and the group it leads while it is alive
/// (a group id is its leader's pid, which cannot be reused while the
/// leader lives), then waits up to `deadline` for each to be gone.
pub async fn kill_held(members: &[Held], deadline: Duration) {
    for member in members {
        let leads_group = procfs::stat(member.pid()).is_some_and(|s| s.pgrp == member.pid());
        if leads_group && !member.has_exited() {
            let _ = killpg(Pid::from_raw(member.pid() as i32), Signal::SIGKILL);
        }
        let _ = member.signal(Signal::SIGKILL);
    }
    for member in members {
        gone_within(deadline, &|| !member.has_exited()).await;
    }
}

/// Ends a child we spawned, that leads (or is about to lead) its own
/// group, and reaps it: the child and its group get SIGTERM + SIGCONT,
/// `grace` for the child to exit, then SIGKILL; members left behind are
/// stopped the same way. Returns the child's exit status when it could be
/// reaped.
pub async fn stop_child(
    child: &mut tokio::process::Child,
    group: Group,
    grace: Duration,
) -> Option<ExitStatus> {
    let leader = Pid::from_raw(group.0 as i32);
    let both = |signal| {
        let _ = group.signal(signal);
        let _ = kill(leader, signal);
    };
    both(Signal::SIGTERM);
    both(Signal::SIGCONT);
    let status = match timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            both(Signal::SIGKILL);
            timeout(AFTER_KILL, child.wait()).await.ok()?.ok()
        }
    };
    group.stop(grace.min(Duration::from_millis(500))).await;
    status
}
