//! Running one shell command: spawned by the configured shell in a new
//! process group with stdin from /dev/null, stdout and stderr read in the
//! order their bytes arrived and sent through a bounded channel as
//! line-framed (or, on request, batched), UTF-8-safe messages, paused,
//! resumed or stopped as a whole group, and always reaped.
//!
//! This module knows nothing of WebSocket or HTTP: it produces
//! [`ProcessEvent`]s (wire types from `protocol`) and takes stop requests.
//!
//! The process toolkit lives in its submodules, each written once:
//! `executor` (the one way a request becomes a command: rules, admission,
//! spawn), `spec` (execute → Spec, timeout rule, environment scrubbing),
//! `admission` (which requests may run: strings, allowlist), `launch` (a
//! shell started by clone3 or std::process), `readiness` (a command's own
//! epoll set, so its two pipes are read in arrival order), `pump` (both
//! pipes read to EOF under the output cap), `lines` and `batches` (the two
//! framings), `group` (the SIGTERM → grace → SIGKILL sequence), `tracking`
//! (a command's escaped descendants: cgroup v2 or subreaper+marker),
//! `reaper` (orphan reaping without stealing statuses), `sigchld` (how the
//! reaper hears SIGCHLD), `supervisor` (the guard every entry point that
//! runs commands holds: SIGCHLD blocked, reaping, leftovers ended on drop),
//! `clone3` (a shell born inside its cgroup), `procfs` (every /proc read),
//! `resolve` (PATH lookups) and `leftovers` (what a server that died left
//! running).

pub mod admission;
mod batches;
pub mod clone3;
pub mod executor;
pub mod group;
mod launch;
pub mod leftovers;
pub mod lines;
pub mod procfs;
mod pump;
pub mod readiness;
pub mod reaper;
pub mod resolve;
pub mod sigchld;
pub mod spec;
pub mod supervisor;
pub mod tracking;
pub mod utf8;

use std::ffi::OsStr;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

pub use clone3::close_on_exec_above_stdio;
pub use executor::{Executor, OwnLimits, StartError};
pub use group::{
    exit_status_text, kill_held, signal_name, stop_child, stop_process, stop_with, Group, Held,
    Stopped,
};
pub use resolve::{resolve_program, ResolveError};
pub use spec::{Rules, Spec, SpecError};
pub use supervisor::Supervisor;

use crate::protocol::{Completed, CompletionStatus, Output};
use clone3::Clone3Error;
use launch::{spawn_cloned, spawn_direct, Child, ShellExit};
pub use pump::IDLE_FLUSH;
use pump::{OutputBudget, Pump};
use readiness::Readiness;
use tracking::Scope;

/// Events in flight between the pipes and the consumer: with at most
/// [`OUTPUT_BATCH`] (64 KiB) of data each, this bounds queued output to
/// about 1 MiB per process (plus what `lines` holds of an unfinished line).
const EVENT_QUEUE: usize = 16;
/// Grace for what a command leaves behind once its shell is gone.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

/// What a running process reports, in order: output messages, then
/// exactly one `Completed` as the last event.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessEvent {
    /// Messages framed together (from one read of a pipe), in order, with
    /// at most [`OUTPUT_BATCH`] bytes of data in all (or one message) and
    /// at most [`OUTPUT_BATCH_MESSAGES`] messages: a queue hop per message
    /// was a wake-up per line.
    Output(Vec<Output>),
    Completed(Completed),
}

/// Most bytes of output data in one [`ProcessEvent::Output`]: a queue slot
/// holds no more than one message of the largest size did.
pub const OUTPUT_BATCH: usize = lines::CHUNK;
/// Most messages in one [`ProcessEvent::Output`]: 64 KiB of empty lines
/// would otherwise be 65,536 messages a slot (some 5 MB of queue).
pub const OUTPUT_BATCH_MESSAGES: usize = 1024;

/// Why a process could not be started.
#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("working directory {0:?} does not exist or is not a directory")]
    BadCwd(PathBuf),
    #[error("cannot start shell {shell:?}: {source}")]
    Shell {
        shell: PathBuf,
        source: std::io::Error,
    },
}

/// Why the group is being stopped; every reason ends as `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancel,
    Disconnect,
    /// The client is connected but took no frame, or answered no ping, in time.
    Unresponsive,
    Shutdown,
}

impl StopReason {
    /// The cause as the log names it.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Cancel => "canceled by the client",
            StopReason::Disconnect => "client disconnected",
            StopReason::Unresponsive => "client stopped reading",
            StopReason::Shutdown => "server shutting down",
        }
    }
}

/// A handle on a running process group.
#[derive(Debug)]
pub struct Running {
    pub pid: u32,
    pub group: Group,
    scope: Arc<Scope>,
    stop: watch::Sender<Option<(StopReason, Duration)>>,
}

impl Running {
    pub fn pgid(&self) -> u32 {
        self.group.0
    }

    /// SIGSTOP to the whole group and to the command's escaped members.
    /// Signals, not `cgroup.freeze`: a cgroup frozen before its members
    /// acted on SIGSTOP holds them half-stopped, and clients (and `ps`)
    /// expect stopped processes, state `T`.
    pub fn pause(&self) -> Result<(), nix::errno::Errno> {
        self.group.signal(Signal::SIGSTOP)?;
        self.scope.signal_members(Signal::SIGSTOP);
        Ok(())
    }

    /// SIGCONT to the whole group and to the command's escaped members.
    pub fn resume(&self) -> Result<(), nix::errno::Errno> {
        self.scope.signal_members(Signal::SIGCONT);
        self.group.signal(Signal::SIGCONT)
    }

    /// Ends the group: SIGTERM now, SIGKILL after `grace`. The process then
    /// completes with status `cancelled`. Later calls do nothing.
    pub fn stop(&self, reason: StopReason, grace: Duration) {
        self.stop.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some((reason, grace));
            true
        });
    }
}

impl Drop for Running {
    /// A handle dropped without an explicit stop (a session that ended in an
    /// unexpected way) still ends its group: nothing outlives its owner.
    fn drop(&mut self) {
        self.stop(StopReason::Disconnect, Duration::from_secs(1));
    }
}

/// Starts `spec.command` under `spec.shell -c` in a new process group.
pub fn spawn(spec: Spec) -> Result<(Running, mpsc::Receiver<ProcessEvent>), SpawnError> {
    if let Some(dir) = &spec.cwd {
        if !dir.is_dir() {
            return Err(SpawnError::BadCwd(dir.clone()));
        }
    }
    let scope = Arc::new(Scope::new());
    let started = Readiness::new().and_then(|output| {
        let child = match spawn_cloned(&spec, &scope, &output) {
            Some(started) => started,
            None => spawn_direct(&spec, &scope, &output),
        };
        child.map(|child| (child, output))
    });
    let (child, output) = started.map_err(|source| {
        scope.release();
        SpawnError::Shell {
            shell: spec.shell.clone(),
            source,
        }
    })?;
    let started = Instant::now();
    let pid = child.pid;
    let group = Group(pid);

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (stop_tx, stop_rx) = watch::channel(None);
    let command_scope = scope.clone();
    // One task per command: its two pipes and its supervision are polled
    // together (each task more is a wake-up, often on another thread, on
    // the path of every command).
    tokio::spawn(async move {
        let scope = command_scope;
        // While the shell starts, not when it has ended.
        scope.hold_events();
        let (group_gone_tx, group_gone) = watch::channel(false);
        let Child {
            stdout,
            stderr,
            mut exit,
            ..
        } = child;
        let pump = Pump {
            events: events_tx.clone(),
            budget: OutputBudget::new(spec.max_output),
            batched: spec.batched,
            group_gone,
        };
        let pump = pump.run(stdout, stderr, output);
        let supervision = async {
            let (status, ending, stopping) =
                supervise(&mut exit, group, &spec, started, stop_rx).await;
            reaper::unregister(pid);
            // A shell ended by SIGKILL may have been killed through its
            // cgroup (the command can write its own `cgroup.kill`): such
            // a cgroup would kill the next command born into it.
            if status.and_then(|s| s.signal()) == Some(libc::SIGKILL) {
                scope.retire();
            }
            // The shell is gone; what it left behind ends too: members of
            // its group, and processes that escaped it (cgroup, or adopted
            // orphans carrying its marker).
            let group_stop = async {
                match stopping {
                    Some(stop) => stop.await,
                    None => group.stop(spec.kill_grace.min(LEFTOVER_GRACE)).await,
                }
            };
            let escaped_stop = scope.stop(spec.kill_grace.min(LEFTOVER_GRACE));
            tokio::join!(group_stop, escaped_stop);
            // From now on a pipe that stays silent is held by an escapee.
            let _ = group_gone_tx.send(true);
            (status, ending)
        };
        let (pipes, (status, ending)) = tokio::join!(pump, supervision);
        let completed = completion(status, ending, pid, started.elapsed());
        let delivered = events_tx
            .send(ProcessEvent::Completed(completed.clone()))
            .await;
        // The consumer (woken by the send) writes the completion first;
        // closing the pipes and the pidfd and returning the cgroup to the
        // pool, and the log line, are not on the client's path.
        tokio::task::yield_now().await;
        log_end(&completed, ending, delivered.is_ok());
        drop((pipes, exit));
        scope.release();
    });

    Ok((
        Running {
            pid,
            group,
            scope,
            stop: stop_tx,
        },
        events_rx,
    ))
}

/// Why ccx ended the process, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Natural,
    TimedOut,
    Stopped(StopReason),
}

/// One log line for every command's end, whatever ended it (its owner may
/// be gone: a client that left or stopped reading never sees the completion,
/// the log still does). `delivered`: the completion reached the consumer's
/// queue (it may still not reach the client).
fn log_end(c: &Completed, ending: Ending, delivered: bool) {
    let cause = match ending {
        Ending::Natural => "exited",
        Ending::TimedOut => "timeout",
        Ending::Stopped(reason) => reason.as_str(),
    };
    tracing::info!(
        pid = c.pid,
        status = c.status.as_str(),
        exit_code = c.exit_code,
        duration_ms = c.duration_ms.unwrap_or_default(),
        cause,
        delivered,
        "command ended"
    );
}

type Stopping = Pin<Box<dyn Future<Output = Stopped> + Send>>;

/// Waits for the leader, enforcing the timeout and stop requests with
/// [`Group::stop`] on the whole group. Returns a stop still in progress
/// (members that outlive the leader are in its grace period).
async fn supervise(
    child: &mut ShellExit,
    group: Group,
    spec: &Spec,
    started: Instant,
    mut stop_rx: watch::Receiver<Option<(StopReason, Duration)>>,
) -> (Option<ExitStatus>, Ending, Option<Stopping>) {
    let timeout_at = spec.timeout.map(|t| started + t);
    let mut ending = Ending::Natural;
    let mut stopping: Option<Stopping> = None;
    let mut stop_open = true;
    loop {
        tokio::select! {
            status = child.wait() => return (status.ok(), ending, stopping),
            _ = sleep_until(timeout_at.unwrap_or(started)), if timeout_at.is_some() && ending == Ending::Natural => {
                ending = Ending::TimedOut;
                stopping = Some(Box::pin(group.stop(spec.kill_grace)));
            }
            changed = stop_rx.changed(), if stop_open => {
                if changed.is_err() {
                    stop_open = false;
                    continue;
                }
                let request = *stop_rx.borrow_and_update();
                if let (Some((reason, grace)), Ending::Natural) = (request, ending) {
                    ending = Ending::Stopped(reason);
                    stopping = Some(Box::pin(group.stop(grace)));
                }
            }
            _ = finished(&mut stopping), if stopping.is_some() => {
                // The group is gone or unkillable; only the leader's status is awaited now.
                stopping = Some(Box::pin(std::future::ready(Stopped::AlreadyGone)));
            }
        }
    }
}

async fn finished(stopping: &mut Option<Stopping>) -> Stopped {
    match stopping {
        Some(stop) => stop.await,
        None => std::future::pending().await,
    }
}

fn completion(
    status: Option<ExitStatus>,
    ending: Ending,
    pid: u32,
    elapsed: Duration,
) -> Completed {
    let signal = status.and_then(|s| s.signal());
    let exit_code = match (status.and_then(|s| s.code()), signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => -sig,
        (None, None) => -1,
    };
    let status = match ending {
        Ending::TimedOut => CompletionStatus::TimedOut,
        Ending::Stopped(_) => CompletionStatus::Canceled,
        Ending::Natural if exit_code == 0 => CompletionStatus::Completed,
        Ending::Natural => CompletionStatus::Failed,
    };
    Completed {
        status,
        pid,
        pgid: Some(pid),
        exit_code,
        signal,
        duration_ms: Some(elapsed.as_millis() as u64),
    }
}
