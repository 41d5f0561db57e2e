//! `stop`: SIGTERM to our server (it ends every process group it runs and
//! exits), SIGKILL if it is still alive after the grace period, then SIGKILL
//! to anything left in its session, wait until its port is free, and remove
//! the pid file. A stale pid file is removed without signalling its pid:
//! a pid that is not our server is never signalled (what a dead server left
//! running is ended, see `process::leftovers`). Every signal goes
//! through a pidfd opened before the pid file's claim is checked, so a pid
//! reused between the check and the signal (or while `stop` waits) is never
//! hit.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::time::{sleep, Instant};

use super::state::{all_pids, is_alive, session_of, PidRecord, Probe, Stale, StateDir};
use super::{LifecycleError, SCHEMA_VERSION};
use crate::process::{self, leftovers, stop_process, Stopped};

/// How long to wait for the port to be free once the server is gone.
const PORT_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait for a SIGKILLed server to disappear.
const KILL_DEADLINE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// What `ccx stop` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// Our server was running and is gone.
    Stopped,
    /// Nothing was running (a stale pid file may have been removed).
    NotRunning,
}

/// The JSON document of `ccx stop --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopReport {
    pub schema_version: u32,
    pub outcome: StopOutcome,
    pub pid: Option<u32>,
    pub url: Option<String>,
    /// The signal that ended the server: `SIGTERM`, or `SIGKILL` after the grace period.
    pub signal: Option<String>,
    /// From the SIGTERM until the server was gone.
    pub duration_ms: Option<u64>,
    /// Processes of the server's session still alive after it exited, killed.
    pub leftovers_killed: Vec<u32>,
    /// Whether the port can be bound again (`None` when the port was unknown).
    pub port_freed: Option<bool>,
    /// A stale pid file that was removed without signalling its pid.
    pub stale: Option<Stale>,
    pub state_dir: PathBuf,
}

/// The grace period of a server whose pid file does not record its own
/// (written by an older ccx, or by hand): CCX_KILL_GRACE's default.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// How long `stop` waits for a `serve` or another `stop` holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Stops our server, if one runs, giving it the time it recorded (its own
/// CCX_KILL_GRACE plus CCX_DRAIN_PERIOD: a draining server lets running
/// commands finish) between SIGTERM and SIGKILL.
pub async fn stop(state: &StateDir) -> Result<StopReport, LifecycleError> {
    let mut report = StopReport {
        schema_version: SCHEMA_VERSION,
        outcome: StopOutcome::NotRunning,
        pid: None,
        url: None,
        signal: None,
        duration_ms: None,
        leftovers_killed: Vec::new(),
        port_freed: None,
        stale: None,
        state_dir: state.dir.clone(),
    };
    // A state directory that was never used has no server to stop; taking
    // the lock would create the directory (or fail where it cannot).
    if !state.dir.is_dir() {
        return Ok(report);
    }
    let _lock = state.lock(LOCK_WAIT).await?;
    let (record, server) = match held_server(state)? {
        Held::None => return Ok(report),
        Held::Stale(stale) => {
            report.leftovers_killed = end_leftovers_of_record(state);
            state.remove_record()?;
            report.stale = Some(stale);
            return Ok(report);
        }
        Held::Ours(record, server) => (record, server),
    };
    report.pid = Some(record.pid);
    report.url = record.url.clone();
    let grace = record
        .kill_grace_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_GRACE)
        + Duration::from_millis(record.drain_period_ms.unwrap_or(0));

    let began = Instant::now();
    let pid = Pid::from_raw(record.pid as i32);
    // Only a server that leads its own session (as the launcher starts it)
    // has its session swept: never the session of a user's terminal.
    let own_session = session_of(record.pid) == Some(record.pid);
    // Fails early, with the reason, when we may not signal it at all.
    send(pid, None)?;
    let signal = match stop_process(&server, grace).await {
        Stopped::Unkillable => return Err(LifecycleError::Unkillable { pid: record.pid }),
        stopped => stopped.signal().unwrap_or(Signal::SIGTERM),
    };
    report.signal = Some(signal.as_str().to_string());
    report.duration_ms = Some(began.elapsed().as_millis() as u64);
    if own_session {
        report.leftovers_killed = kill_session(record.pid).await;
    }
    // A server SIGKILLed after its grace could not end its commands.
    report.leftovers_killed.extend(leftovers::end_leftovers(
        record.pid,
        record.command_cgroups.as_deref(),
    ));
    report.leftovers_killed.sort_unstable();
    report.leftovers_killed.dedup();
    report.port_freed = wait_port_free(&record).await;
    state.remove_record()?;
    report.outcome = StopOutcome::Stopped;
    Ok(report)
}

/// Ends what the dead server of the pid file (if any) left running; its
/// pids. Logged, so that the server's log tells what became of them.
pub fn end_leftovers_of_record(state: &StateDir) -> Vec<u32> {
    let Ok(Some(record)) = state.read_record() else {
        return Vec::new();
    };
    let ended = leftovers::end_leftovers(record.pid, record.command_cgroups.as_deref());
    if !ended.is_empty() {
        tracing::info!(
            "ended {} process(es) left by the dead server {}: {ended:?}",
            ended.len(),
            record.pid
        );
    }
    ended
}

/// What the pid file names, with our server held by a pidfd.
enum Held {
    None,
    Stale(Stale),
    Ours(PidRecord, process::Held),
}

/// The server the pid file names, held by a pidfd opened *before* the
/// claim is checked: if the check then finds our server at that pid, the
/// pidfd is that server (a process that took the pid after the pidfd was
/// opened could not have the start time the record holds).
fn held_server(state: &StateDir) -> Result<Held, LifecycleError> {
    let Some(claim) = state.read_record().ok().flatten() else {
        return probe_only(state);
    };
    let server = match process::Held::open(claim.pid) {
        Ok(server) => server,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return probe_only(state),
        Err(e) => {
            return Err(LifecycleError::Signal {
                pid: claim.pid,
                source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })
        }
    };
    Ok(match state.probe()? {
        Probe::Ours(record) if record.pid == server.pid() && !server.has_exited() => {
            Held::Ours(record, server)
        }
        Probe::Ours(record) => Held::Stale(Stale {
            pid: Some(record.pid),
            reason: format!("process {} exited while being checked", record.pid),
        }),
        Probe::Stale(stale) => Held::Stale(stale),
        Probe::None => Held::None,
    })
}

/// The pid file's verdict when no process could be held: never `Ours`.
fn probe_only(state: &StateDir) -> Result<Held, LifecycleError> {
    Ok(match state.probe()? {
        Probe::None => Held::None,
        Probe::Stale(stale) => Held::Stale(stale),
        Probe::Ours(record) => Held::Stale(Stale {
            pid: Some(record.pid),
            reason: format!("process {} could not be held (it exited)", record.pid),
        }),
    })
}

fn send(pid: Pid, signal: Option<Signal>) -> Result<(), LifecycleError> {
    match kill(pid, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(LifecycleError::Signal {
            pid: pid.as_raw() as u32,
            source,
        }),
    }
}

/// SIGKILLs every process still in session `sid` (commands that outlived a
/// SIGKILLed server, or escaped its process groups), with their groups.
/// Each member is held by a pidfd and checked again once held (see
/// `process::kill_held` for its group).
async fn kill_session(sid: u32) -> Vec<u32> {
    let members: Vec<process::Held> = all_pids()
        .into_iter()
        .filter(|&p| session_of(p) == Some(sid) && is_alive(p))
        .filter_map(|p| process::Held::open(p).ok())
        .filter(|held| session_of(held.pid()) == Some(sid) && !held.has_exited())
        .collect();
    process::kill_held(&members, KILL_DEADLINE).await;
    members.iter().map(process::Held::pid).collect()
}

/// Polls until the server's port can be bound again.
async fn wait_port_free(record: &PidRecord) -> Option<bool> {
    let port = record.port.filter(|p| *p != 0)?;
    let host = record.host.as_deref()?;
    let host = crate::config::parse_host(host).ok()?;
    let addr = std::net::SocketAddr::new(host, port);
    let until = Instant::now() + PORT_DEADLINE;
    loop {
        if TcpListener::bind(addr).is_ok() {
            return Some(true);
        }
        if Instant::now() >= until {
            return Some(false);
        }
        sleep(POLL).await;
    }
}
