//! The probes a cluster (or a load balancer) asks: `GET /livez` (the
//! process serves HTTP) and `GET /readyz` (it can take a new session now:
//! not draining, below CCX_MAX_SESSIONS, its shell spawnable).
//!
//! The shell check really spawns `CCX_SHELL -c :` through the process layer
//! (the path every command takes), at most once per [`SHELL_CHECK_TTL`]:
//! probes that come more often read the cached verdict, and concurrent
//! probes share one check. Nothing here blocks a runtime thread. `/health`
//! and its fields are not this module's business.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};

use crate::process::{OwnLimits, ProcessEvent, StartError};
use crate::protocol::CompletionStatus;
use crate::server::AppState;

/// How long a shell check's verdict is reused.
pub const SHELL_CHECK_TTL: Duration = Duration::from_secs(5);
/// How long the shell may take to start and exit before it counts as not spawnable.
const SHELL_CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// The body of `/livez`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Liveness {
    /// Always `alive`: a process that cannot answer gets no body at all.
    pub status: String,
    pub uptime_s: u64,
}

/// The body of `/readyz`, whatever its status (200 or 503).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Why it is not ready, one entry per failing condition (empty when ready).
    pub reasons: Vec<String>,
    /// SIGTERM received: sessions are being drained.
    pub draining: bool,
    pub sessions: usize,
    pub max_sessions: usize,
    /// The last shell check passed.
    pub shell_ok: bool,
    /// Age of that check, in milliseconds.
    pub shell_checked_ms_ago: u64,
}

/// The cached result of the last shell check.
#[derive(Default)]
pub struct ShellCheck {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl ShellCheck {
    /// The verdict, fresh or at most [`SHELL_CHECK_TTL`] old, and its age.
    async fn verdict(&self, state: &AppState) -> (Result<(), String>, Duration) {
        // Held across the check: concurrent probes wait for one check
        // instead of each spawning a shell.
        let mut last = self.last.lock().await;
        if let Some((at, verdict)) = last.as_ref() {
            if at.elapsed() < SHELL_CHECK_TTL {
                return (verdict.clone(), at.elapsed());
            }
        }
        let verdict = spawn_shell(state).await;
        *last = Some((Instant::now(), verdict.clone()));
        (verdict, Duration::ZERO)
    }
}

/// Runs `CCX_SHELL -c :` as a command would run, and waits for its exit.
async fn spawn_shell(state: &AppState) -> Result<(), String> {
    let shell = state.config.shell.display().to_string();
    // The same rules as a client's command (shell, hidden variables, the
    // command's own tracking), with a short deadline.
    let limits = OwnLimits {
        timeout: SHELL_CHECK_DEADLINE,
        kill_grace: Duration::from_millis(100),
        max_output: 4096,
    };
    let (running, mut events) = state.executor.start_own(":", limits).map_err(|e| match e {
        StartError::Refused(e) => format!("cannot build the shell check: {e}"),
        StartError::Spawn(e) => format!("cannot spawn the shell: {e}"),
    })?;
    let completed = timeout(SHELL_CHECK_DEADLINE + Duration::from_secs(1), async {
        while let Some(event) = events.recv().await {
            if let ProcessEvent::Completed(done) = event {
                return Some(done);
            }
        }
        None
    })
    .await;
    drop(running);
    match completed {
        Ok(Some(done)) if done.status == CompletionStatus::Completed && done.exit_code == 0 => {
            Ok(())
        }
        Ok(Some(done)) => Err(format!(
            "the shell {shell} -c : ended with status {:?}, exit code {}",
            done.status, done.exit_code
        )),
        Ok(None) => Err(format!("the shell {shell} -c : reported no completion")),
        Err(_) => Err(format!(
            "the shell {shell} -c : did not exit within {SHELL_CHECK_DEADLINE:?}"
        )),
    }
}

/// `GET /livez`: 200 whenever the server answers HTTP, draining or not
/// (a draining pod must not be restarted by its liveness probe).
pub async fn livez(State(state): State<Arc<AppState>>) -> Response {
    let body = Liveness {
        status: "alive".into(),
        uptime_s: state.started.elapsed().as_secs(),
    };
    no_store(Json(body).into_response())
}

/// `GET /readyz`: 200 when a new session would be accepted and could run a
/// command, else 503 with the reasons.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let draining = state.is_draining();
    let sessions = state.active_sessions();
    let max_sessions = state.config.max_sessions;
    let (shell, age) = state.shell_check.verdict(&state).await;
    let mut reasons = Vec::new();
    if draining {
        reasons.push("draining: SIGTERM received, no new sessions".to_string());
    }
    if sessions >= max_sessions {
        reasons.push(format!(
            "session limit reached: {sessions} of {max_sessions} sessions open (CCX_MAX_SESSIONS)"
        ));
    }
    if let Err(why) = &shell {
        reasons.push(why.clone());
    }
    let ready = reasons.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" }.into(),
        reasons,
        draining,
        sessions,
        max_sessions,
        shell_ok: shell.is_ok(),
        shell_checked_ms_ago: age.as_millis() as u64,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(body)).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
