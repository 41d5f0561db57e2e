//! `status`: is our background server running, where, since when, and does
//! `/health` answer? A stale pid file is reported and removed (under the
//! lock, so a `serve` that is just writing one is never disturbed).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{now_ms, Probe, Stale, StateDir};
use super::{LifecycleError, SCHEMA_VERSION};
use crate::client::http;

/// Deadline of the `GET /health` of `status`.
const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// What `ccx status` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Our server is alive (see `healthy`).
    Running,
    /// Our server is alive but has not reported its URL yet.
    Starting,
    /// No pid file: nothing runs.
    Stopped,
    /// The pid file named a dead process or another program; it was not trusted.
    Stale,
}

/// The JSON document of `ccx status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub schema_version: u32,
    pub state: ServerState,
    /// `GET /health` answered 200 within 2 s.
    pub healthy: bool,
    pub pid: Option<u32>,
    pub url: Option<String>,
    pub health_url: Option<String>,
    pub port: Option<u16>,
    /// Milliseconds since the launcher started the server.
    pub uptime_ms: Option<u64>,
    /// Why the server is not healthy, when it is not.
    pub health_error: Option<String>,
    /// Why the server's log cannot be written, when it cannot: the server
    /// says its last write failed (`/health`'s `log_error`), or the log's
    /// filesystem is full. Lines are being lost; `status` exits 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
    /// The stale pid file found, when `state` is `stale`.
    pub stale: Option<Stale>,
    /// Whether the stale pid file was removed (not when a `serve` or `stop`
    /// held the lock at that moment).
    pub stale_removed: bool,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    /// When a stale pid file names a process that is gone: how it ended, as
    /// far as its log tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// When a stale pid file names a process that is gone: the last lines
    /// of the log (the server's own last words, if any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// When a stale pid file names a server that is gone: the processes it
    /// left running (its command cgroups, its marker), SIGKILLed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftovers_killed: Vec<u32>,
}

/// Lines of the log shown for a server that is gone.
const GONE_TAIL_LINES: usize = 5;

impl StatusReport {
    /// `ccx status` exits 0 only for a running, healthy server.
    pub fn ok(&self) -> bool {
        self.state == ServerState::Running && self.healthy && self.log_error.is_none()
    }
}

/// How a server that is gone ended, from its log: a server that was asked
/// to stop says so there; one killed by SIGKILL (or the OOM killer) cannot.
fn last_words(state: &StateDir, report: &mut StatusReport) {
    let tail = super::log::tail(&state.log_file(), 0, GONE_TAIL_LINES).unwrap_or_default();
    report.log_tail = tail.lines().map(str::to_string).collect();
    report.ended = Some(if tail.contains("received: shutting down") {
        "the log's last lines show a shutdown after a signal".into()
    } else {
        "the log's last lines show no shutdown: it was killed (SIGKILL, the OOM killer) or crashed"
            .into()
    });
}

/// Looks at the pid file, the process and `/health`.
pub async fn status(state: &StateDir) -> Result<StatusReport, LifecycleError> {
    let mut report = StatusReport {
        schema_version: SCHEMA_VERSION,
        state: ServerState::Stopped,
        healthy: false,
        pid: None,
        url: None,
        health_url: None,
        port: None,
        uptime_ms: None,
        health_error: None,
        log_error: None,
        stale: None,
        stale_removed: false,
        state_dir: state.dir.clone(),
        log: state.log_file(),
        ended: None,
        log_tail: Vec::new(),
        leftovers_killed: Vec::new(),
    };
    match state.probe()? {
        Probe::None => {}
        Probe::Stale(stale) => {
            report.state = ServerState::Stale;
            if let Some(_lock) = state.try_lock().await? {
                // Re-read under the lock: a `serve` may have replaced it meanwhile.
                if let Probe::Stale(again) = state.probe()? {
                    if again.reason.ends_with("no longer exists") {
                        last_words(state, &mut report);
                    }
                    report.leftovers_killed = super::stop::end_leftovers_of_record(state);
                    state.remove_record()?;
                    report.stale_removed = true;
                    report.stale = Some(again);
                    return Ok(report);
                }
                return Box::pin(status(state)).await;
            }
            report.stale = Some(stale);
        }
        Probe::Ours(record) => {
            report.pid = Some(record.pid);
            report.uptime_ms = record.started_at_ms.map(|t| now_ms().saturating_sub(t));
            report.port = record.port;
            report.url = record.url.clone();
            report.health_url = record.health.clone();
            match record.health_endpoint() {
                None => {
                    report.state = ServerState::Starting;
                    report.health_error = Some("the server has not reported its URL yet".into());
                }
                Some(endpoint) => {
                    report.state = ServerState::Running;
                    let endpoint = endpoint.health();
                    match http::get_endpoint(&endpoint, HEALTH_DEADLINE).await {
                        Ok(r) if r.status == 200 => {
                            report.healthy = true;
                            report.log_error = crate::protocol::Health::parse(&r.body)
                                .ok()
                                .and_then(|h| h.log_error);
                        }
                        Ok(r) => {
                            report.health_error = Some(format!(
                                "GET /health answered HTTP {}: {}",
                                r.status, r.body
                            ))
                        }
                        Err(e) => report.health_error = Some(format!("GET /health failed: {e}")),
                    }
                    if report.log_error.is_none() {
                        report.log_error = super::log::no_room(&report.log);
                    }
                }
            }
        }
    }
    Ok(report)
}
