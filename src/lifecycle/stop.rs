//! `stop`: SIGTERM to our server (it ends every process group it runs and
//! exits), SIGKILL if it is still alive after the grace period, then SIGKILL
//! to anything left in its session, wait until its port is free, and remove
//! the pid file. A stale pid file is removed without signalling anyone:
//! a pid that is not our server is never signalled.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::time::{sleep, Instant};

use super::state::{all_pids, is_alive, session_of, PidRecord, Probe, Stale, StateDir};
use super::{LifecycleError, SCHEMA_VERSION};
use crate::process::{stop_pid, Stopped};

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
    let record = match state.probe()? {
        Probe::None => return Ok(report),
        Probe::Stale(stale) => {
            state.remove_record()?;
            report.stale = Some(stale);
            return Ok(report);
        }
        Probe::Ours(record) => record,
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
    let signal = match stop_pid(record.pid, grace).await {
        Stopped::Unkillable => return Err(LifecycleError::Unkillable { pid: record.pid }),
        stopped => stopped.signal().unwrap_or(Signal::SIGTERM),
    };
    report.signal = Some(signal.as_str().to_string());
    report.duration_ms = Some(began.elapsed().as_millis() as u64);
    if own_session {
        report.leftovers_killed = kill_session(record.pid).await;
    }
    report.port_freed = wait_port_free(&record).await;
    state.remove_record()?;
    report.outcome = StopOutcome::Stopped;
    Ok(report)
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

async fn gone_within(pid: u32, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        sleep(POLL).await;
    }
}

/// SIGKILLs every process still in session `sid` (commands that outlived a
/// SIGKILLed server, or escaped its process groups), with their groups.
async fn kill_session(sid: u32) -> Vec<u32> {
    let members: Vec<u32> = all_pids()
        .into_iter()
        .filter(|&p| session_of(p) == Some(sid) && is_alive(p))
        .collect();
    for &member in &members {
        let target = Pid::from_raw(member as i32);
        let _ = killpg(target, Signal::SIGKILL);
        let _ = kill(target, Signal::SIGKILL);
    }
    for &member in &members {
        gone_within(member, KILL_DEADLINE).await;
    }
    members
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
