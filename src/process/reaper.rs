//! Child subreaper duties: descendants that escape their process group are
//! re-parented to ccx (PR_SET_CHILD_SUBREAPER, or being PID 1 in a
//! container), and this module reaps them so that no zombie is left.
//!
//! The cost of a reaping pass does not grow with the host's process count:
//! on SIGCHLD it peeks at the next exited child with
//! `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)` (one syscall, nothing
//! reaped) and reaps it only when no tokio `Child` owns it, so a command's
//! exit status is never stolen. No /proc walk, and no I/O under a lock: a
//! spawn only bumps a counter and inserts its pid into a set.
//!
//! Why a spawn cannot lose its status: [`register_spawn`] raises the
//! in-flight counter before the fork and lowers it after the pid is in the
//! owned set. A zombie the reaper peeks at was forked before the peek; if
//! its pid is not in the set, either nobody owns it or its spawn is still
//! in flight (the counter is then non-zero and the reaper waits for the
//! next pass).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::procfs;

/// Pids of children whose exit status belongs to a tokio `Child`, counted:
/// a pid reused by a new spawn before the old owner unregistered it stays
/// owned.
static OWNED: Mutex<Option<HashMap<u32, u32>>> = Mutex::new(None);
/// Spawns between their fork and the registration of their pid.
static SPAWNING: AtomicUsize = AtomicUsize::new(0);

/// How long a pass waits when the next exited child is not ours to reap
/// (its owner is about to collect it), before looking again.
const RETRY: Duration = Duration::from_millis(20);
/// A pass runs at least this often, whatever the signals say.
const TICK: Duration = Duration::from_secs(2);
/// How long a pass waits after SIGCHLD. Most SIGCHLDs are a command's own
/// shell exiting, which its supervisor reaps at once: a pass right away
/// would find that zombie owned, and would run on the command's completion
/// path, then again [`RETRY`] later. Orphans are reaped a few ms later.
const SETTLE: Duration = Duration::from_millis(5);

fn owned() -> MutexGuard<'static, Option<HashMap<u32, u32>>> {
    OWNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_owned(pid: u32) -> bool {
    owned().as_ref().is_some_and(|s| s.contains_key(&pid))
}

/// Lowers the in-flight counter even if the spawn panics.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        SPAWNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `spawn` and registers the pid it returns as owned (its exit status
/// belongs to the caller). Holds no lock while spawning.
pub fn register_spawn<T, E>(spawn: impl FnOnce() -> Result<(T, u32), E>) -> Result<T, E> {
    SPAWNING.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight;
    let (value, pid) = spawn()?;
    *owned()
        .get_or_insert_with(HashMap::new)
        .entry(pid)
        .or_default() += 1;
    Ok(value)
}

/// Forgets a pid once its owner has reaped it.
pub fn unregister(pid: u32) {
    if let Some(set) = owned().as_mut() {
        if let Some(count) = set.get_mut(&pid) {
            *count -= 1;
            if *count == 0 {
                set.remove(&pid);
            }
        }
    }
}

/// Makes this process the reaper of its orphaned descendants (Linux only).
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// Reaps zombies re-parented to us, on every SIGCHLD and every few seconds.
pub async fn run() {
    let mut sigchld = super::sigchld::Sigchld::listen();
    let mut tick = tokio::time::interval(TICK);
    let mut retry = false;
    loop {
        let soon = tokio::time::sleep(RETRY);
        tokio::select! {
            _ = sigchld.recv() => tokio::time::sleep(SETTLE).await,
            _ = tick.tick() => {}
            _ = soon, if retry => {}
        }
        retry = reap_orphans() == Pass::Blocked;
    }
}

/// What a reaping pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// No exited child is left that is ours to reap.
    Clean,
    /// The next exited child belongs to a tokio `Child` (or to a spawn in
    /// flight) and hides any others: look again shortly.
    Blocked,
}

/// Reaps every exited child that no tokio `Child` owns, in order, until the
/// next one is owned or none is left.
pub fn reap_orphans() -> Pass {
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        let pid = match waitid(Id::All, peek) {
            Ok(WaitStatus::StillAlive) | Err(_) => return Pass::Clean,
            Ok(status) => match status.pid() {
                Some(pid) => pid,
                None => return Pass::Clean,
            },
        };
        let raw = pid.as_raw() as u32;
        if is_owned(raw) || SPAWNING.load(Ordering::SeqCst) > 0 {
            return Pass::Blocked;
        }
        // Not owned and no spawn in flight: nobody can come to own a pid
        // that is already a zombie, so reaping outside the lock is safe.
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// Orphans re-parented to this process (children of its main thread that
/// no tokio `Child` owns): descendants that escaped their command.
pub fn adopted() -> Vec<u32> {
    without_owned(procfs::main_thread_children())
}

/// Every child of this process, on any thread, that no tokio `Child` owns.
fn unowned_children() -> Vec<u32> {
    without_owned(procfs::own_children())
}

fn without_owned(children: Vec<u32>) -> Vec<u32> {
    let set = owned();
    children
        .into_iter()
        .filter(|p| !set.as_ref().is_some_and(|s| s.contains_key(p)))
        .collect()
}

/// Kills every remaining child that no tokio `Child` owns (escaped
/// descendants), then reaps them. Used once, when the supervisor ends.
pub fn kill_orphans() {
    for _ in 0..10 {
        let orphans = unowned_children();
        if orphans.is_empty() {
            return;
        }
        for &pid in &orphans {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let until = std::time::Instant::now() + Duration::from_secs(1);
        for pid in orphans {
            let pid = Pid::from_raw(pid as i32);
            while matches!(
                waitpid(pid, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::StillAlive)
            ) && std::time::Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// SIGKILLs every process group whose leader a tokio `Child` still owns
/// (commands still running when their supervisor ends).
pub fn kill_owned_groups() {
    let groups: Vec<u32> = owned()
        .as_ref()
        .map(|s| s.keys().copied().collect())
        .unwrap_or_default();
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
    }
}
