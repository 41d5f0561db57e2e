//! What every request handler and session of a server shares
//! ([`AppState`]): its configuration and executor, the drain and shutdown
//! tokens, the session permits, and the probes' cached shell check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::process::Executor;
use crate::server::probes::ShellCheck;

/// What every request handler and session shares.
pub struct AppState {
    pub config: Config,
    /// Every command's rules and admission, taken once from `config`.
    pub executor: Arc<Executor>,
    pub shutdown: CancellationToken,
    /// Cancelled when the drain begins (SIGTERM); `shutdown` follows once
    /// every session has ended or CCX_DRAIN_PERIOD has passed.
    pub drain: CancellationToken,
    pub(super) sessions: Arc<Semaphore>,
    pub(super) tracker: TaskTracker,
    pub(super) started: Instant,
    pub(super) shell_check: ShellCheck,
}

impl AppState {
    /// Grace period used when the server shuts down: short, so that the
    /// whole server exits within 2 s even when a command ignores SIGTERM.
    pub fn shutdown_grace(&self) -> Duration {
        self.config.kill_grace.min(Duration::from_secs(1))
    }

    pub(super) fn active_sessions(&self) -> usize {
        self.config.max_sessions - self.sessions.available_permits()
    }

    /// The drain has begun: no new session, no new command.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled() || self.shutdown.is_cancelled()
    }
}
