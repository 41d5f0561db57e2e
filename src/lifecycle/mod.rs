//! Lifecycle of the background server: its state directory (pid file, log,
//! lock), the detached start that returns only once the server is ready (or
//! fails with the server's own words), status, and stop.
//!
//! It talks to the server the way any outsider would: the readiness line in
//! the log, `GET /health`, signals, and /proc. It knows nothing of the
//! server's internals.

pub mod log;
pub mod start;
pub mod state;
pub mod status;
pub mod stop;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use start::{start, StartOptions, Started};
pub use state::{PidRecord, Probe, Stale, StateDir};
pub use status::{status, ServerState, StatusReport};
pub use stop::{stop, StopOutcome, StopReport};

/// Version of the JSON documents of `ccx status --json` and `ccx stop --json`.
pub const SCHEMA_VERSION: u32 = 1;

/// What can go wrong managing the background server; each says what to do.
#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error("cannot use state directory {}: {source} (set CCX_STATE_DIR or --state-dir to a writable directory)", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing state directory {}: {why}, so another user could plant files in it (a symlink for its log, a pid file naming any process). Fix: {fix}",
        path.display()
    )]
    UnsafeStateDir {
        path: PathBuf,
        why: String,
        fix: String,
    },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("pid file {} is not valid: {reason}", path.display())]
    BadPidFile { path: PathBuf, reason: String },
    #[error(
        "another ccx command is starting or stopping a server in this state directory (it holds {}); gave up after {after:?}",
        lock.display()
    )]
    Busy { lock: PathBuf, after: Duration },
    #[error(
        "a ccx server is already running for state directory {}: pid {pid}, {url}. Stop it with `ccx stop`, or run another one with a different CCX_STATE_DIR (or --state-dir) and port",
        state_dir.display()
    )]
    AlreadyRunning {
        pid: u32,
        url: String,
        state_dir: PathBuf,
    },
    #[error(
        "cannot start the server: its log {} cannot be written: {reason}. Free space there, or choose another CCX_STATE_DIR",
        log.display()
    )]
    LogUnwritable { log: PathBuf, reason: String },
    #[error("cannot start the server {}: {source}", exe.display())]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the server exited with {status} {after_ms} ms after it was started, before it was ready.\nLast lines of its log ({}):\n{}",
        log.display(), indent(tail)
    )]
    Exited {
        status: String,
        after_ms: u128,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "the server (pid {pid}) was not ready within {timeout:?} (--ready-timeout): {waiting_for}. It was stopped.\nLast lines of its log ({}):\n{}",
        log.display(), indent(tail)
    )]
    NotReady {
        pid: u32,
        timeout: Duration,
        waiting_for: &'static str,
        log: PathBuf,
        tail: String,
    },
    #[error("interrupted by {signal} while the server (pid {pid}) was starting; it was stopped")]
    Interrupted { signal: &'static str, pid: u32 },
    #[error("cannot signal the server (pid {pid}): {source}")]
    Signal { pid: u32, source: nix::errno::Errno },
    #[error("the server (pid {pid}) is still alive after SIGKILL")]
    Unkillable { pid: u32 },
    #[error("no log at {}: no background server has run with this state directory", path.display())]
    NoLog { path: PathBuf },
}

impl LifecycleError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> LifecycleError {
        LifecycleError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A log excerpt, indented under the message that introduces it.
fn indent(tail: &str) -> String {
    if tail.trim().is_empty() {
        return "  | (nothing)".to_string();
    }
    tail.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
