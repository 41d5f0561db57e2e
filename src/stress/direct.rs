//! The `--direct` baseline: runs a stress request in this process with the
//! server's process rules (`process::spawn` with the local `Config`'s shell,
//! output cap and kill grace) but no server and no WebSocket, and collects
//! its events exactly as a server session's client would, so the engine can
//! judge it with the same rules as a server target.
//!
//! Owns only that translation; it must not know sockets, sessions or the CLI.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::timeout;

use super::report::Cause;
use super::Failure;
use crate::client::{OutputCollector, RunOutcome};
use crate::config::Config;
use crate::process::{self, Event};
use crate::protocol::{ExecuteParams, ProcessStatus};

/// The label of the direct target in the table and the `target` field of its
/// JSON report.
pub const LABEL: &str = "direct (no server)";

/// After the process's own timeout and kill grace: the pumps may drain for
/// up to 2 s after the group is gone, and leftover members get up to 1 s.
const DRAIN_MARGIN: Duration = Duration::from_secs(4);

/// The process rules a server would apply, taken from the local `Config`
/// (CCX_SHELL, CCX_MAX_OUTPUT, CCX_KILL_GRACE, CCX_DEFAULT_TIMEOUT).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub shell: PathBuf,
    pub max_output: u64,
    pub kill_grace: Duration,
    pub default_timeout: Option<Duration>,
}

impl Rules {
    pub fn from_config(config: &Config) -> Rules {
        Rules {
            shell: config.shell.clone(),
            max_output: config.max_output,
            kill_grace: config.kill_grace,
            default_timeout: config.default_timeout,
        }
    }
}

/// Runs one command to completion, within `deadline` or the process's own
/// timeout and kill grace, whichever is longer.
pub(super) async fn run(
    rules: &Rules,
    params: &ExecuteParams,
    deadline: Duration,
) -> Result<RunOutcome, Failure> {
    let command_timeout = match params.timeout {
        Some(t) if t.is_finite() && t > 0.0 && t <= 1e9 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(Failure::new(
                Cause::SpawnFailed,
                format!("timeout must be a positive number of seconds, got {t}"),
            ))
        }
        None => rules.default_timeout,
    };
    let spec = process::Spec {
        shell: rules.shell.clone(),
        command: params.command.clone(),
        cwd: params.cwd.clone().map(Into::into),
        env: params.env.clone().unwrap_or_default(),
        timeout: command_timeout,
        kill_grace: rules.kill_grace,
        max_output: rules.max_output,
    };
    let (running, mut events) =
        process::spawn(spec).map_err(|e| Failure::new(Cause::SpawnFailed, e.to_string()))?;
    let started = ProcessStatus {
        status: "started".into(),
        pid: running.pid,
        pgid: Some(running.pgid()),
    };
    let deadline = command_timeout
        .map(|t| t + rules.kill_grace + DRAIN_MARGIN)
        .map_or(deadline, |own| own.max(deadline));
    let collect = async {
        let mut collected = OutputCollector::default();
        while let Some(event) = events.recv().await {
            match event {
                Event::Output(o) => collected.add(o),
                Event::Completed(completed) => {
                    return Some(collected.finish(started.clone(), completed))
                }
            }
        }
        None
    };
    // On every early return `running` is dropped, which ends the whole group.
    match timeout(deadline, collect).await {
        Err(_) => Err(Failure::new(
            Cause::Timeout,
            format!(
                "the process did not complete within {deadline:?} (its timeout plus the kill grace)"
            ),
        )),
        Ok(None) => Err(Failure::new(
            Cause::SpawnFailed,
            format!(
                "the process (pid {}) ended its event stream without a completion",
                running.pid
            ),
        )),
        Ok(Some(outcome)) => Ok(outcome),
    }
}
