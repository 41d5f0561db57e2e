//! The `--direct` baseline: runs a stress request in this process through
//! an [`Executor`] (built from the local `Config`: its shell, output cap
//! and kill grace; the caller leaves out the allowlist, a server policy)
//! but no server and no WebSocket,
//! and collects
//! its events exactly as a server session's client would, so the engine can
//! judge it with the same rules as a server target.
//!
//! Owns only that translation; it must not know sockets, sessions or the CLI.

use std::time::Duration;

use tokio::time::timeout;

use super::failure::Failure;
use super::report::Cause;
use crate::client::{OutputCollector, RunOutcome};
use crate::process::admission::AdmissionError;
use crate::process::{Executor, ProcessEvent};
use crate::protocol::{ExecuteParams, ProcessStatus};

/// The label of the direct target in the table and the `target` field of its
/// JSON report.
pub const LABEL: &str = "direct (no server)";

/// After the process's own timeout and kill grace: the pumps may drain for
/// up to 2 s after the group is gone, and leftover members get up to 1 s.
const DRAIN_MARGIN: Duration = Duration::from_secs(4);

/// Runs one command to completion, within `deadline` or the process's own
/// timeout and kill grace, whichever is longer.
pub(super) async fn run(
    executor: &Executor,
    params: &ExecuteParams,
    deadline: Duration,
) -> Result<RunOutcome, Failure> {
    let spec = executor.admit(params).map_err(|e| match e {
        // Refused by a policy, as a server's error answer would be counted.
        AdmissionError::NotAllowed(_) => Failure::new(Cause::ProtocolError, e.to_string()),
        // What no process could be started with.
        AdmissionError::Spec(_) | AdmissionError::Invalid(_) => {
            Failure::new(Cause::SpawnFailed, e.to_string())
        }
    })?;
    let command_timeout = spec.timeout;
    let (running, mut events) = executor
        .spawn(spec)
        .map_err(|e| Failure::new(Cause::SpawnFailed, e.to_string()))?;
    let started = ProcessStatus {
        status: "started".into(),
        pid: running.pid,
        pgid: Some(running.pgid()),
    };
    let deadline = command_timeout
        .map(|t| t + executor.rules().kill_grace + DRAIN_MARGIN)
        .map_or(deadline, |own| own.max(deadline));
    let collect = async {
        let mut collected = OutputCollector::default();
        while let Some(event) = events.recv().await {
            match event {
                ProcessEvent::Output(batch) => batch.into_iter().for_each(|o| collected.add(o)),
                ProcessEvent::Completed(completed) => {
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
