//! The ccx server: axum routes (`GET /health`, `GET /healthz`, `/livez`,
//! `/readyz`, the WebSocket at `GET /ws/mcp` and, as in cc_executor's Docker
//! image, `GET /ws` — the same endpoint under both paths), one session task
//! per WebSocket connection, the upgrade guards and the session limit, the
//! drain (refuse new sessions, let running commands finish for up to
//! CCX_DRAIN_PERIOD) and graceful shutdown (stop accepting, end every process
//! group, close sessions with 1001).
//!
//! It knows nothing of the doctor or the CLI: it is given a validated
//! `Config` and a [`Shutdown`]; [`run`] is the whole server process
//! (bootstrap), [`serve`] the routes on a bound listener.

pub mod bootstrap;
pub mod connections;
pub mod fd_budget;
pub mod info;
pub mod keepalive;
pub mod pending;
pub mod probes;
pub mod secret;
pub mod session;
pub mod shutdown;
pub mod state;

pub use bootstrap::run;
pub use shutdown::Shutdown;
pub use state::AppState;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::guards;
use crate::process::Executor;

/// Initial read buffer of a WebSocket session (grows for larger frames).
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes of frames a WebSocket session gathers before writing them.
const WS_WRITE_BATCH: usize = 64 * 1024;

/// Why the server could not run.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {addr} is already in use ({source})")]
    AddrInUse {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("CCX_SHELL {shell:?} is not an executable file")]
    ShellNotExecutable { shell: PathBuf },
    #[error("CCX_SHELL {shell:?} does not exist (or is not on PATH)")]
    ShellMissing { shell: PathBuf },
    #[error("cannot write the readiness line to stdout: {source}")]
    Announce { source: std::io::Error },
}

/// Binds the configured address, with an error that names it.
pub async fn bind(config: &Config) -> Result<TcpListener, ServerError> {
    let addr = SocketAddr::new(config.host, config.port);
    TcpListener::bind(addr).await.map_err(|source| {
        let addr = config.authority();
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServerError::AddrInUse { addr, source }
        } else {
            ServerError::Bind { addr, source }
        }
    })
}

/// Serves until `shutdown` is cancelled, then ends every session (and its
/// process group) and returns. Cancelling `drain` first makes readiness
/// fail and refuses new sessions; `shutdown` follows by itself once every
/// session has ended, or after CCX_DRAIN_PERIOD.
pub async fn serve(
    listener: TcpListener,
    mut config: Config,
    drain: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let budget = fd_budget::FdBudget::fit(
        config.max_sessions,
        config.max_pending,
        connections::raise_fd_limit(),
    );
    if let Some(warning) = budget.lowered_warning(config.max_sessions, config.max_pending) {
        tracing::warn!("{warning}");
    }
    config.max_sessions = budget.max_sessions;
    config.max_pending = budget.max_pending;
    let state = Arc::new(AppState {
        sessions: Arc::new(Semaphore::new(config.max_sessions)),
        executor: Arc::new(Executor::from_config(&config)),
        config,
        shutdown: shutdown.clone(),
        drain,
        tracker: TaskTracker::new(),
        started: Instant::now(),
        shell_check: probes::ShellCheck::default(),
    });
    tokio::spawn(drain_then_shut_down(state.clone()));
    let app = router(state.clone());
    let caps = connections::Caps {
        max_pending: state.config.max_pending,
        handshake_timeout: state.config.handshake_timeout,
    };
    tracing::debug!(?budget, ?caps, "connection limits");
    // On a worker, not on the thread that waits for the server to end: a
    // worker that finds the listener ready accepts there and runs the new
    // connection's task next, where the waiting thread had to be woken to
    // accept and then wake a worker for the connection (two hops between
    // threads per connection).
    // A panic there still ends the server, as it would on this thread.
    let accepting = tokio::spawn(connections::serve(listener, app, caps, shutdown.clone()));
    if let Err(e) = accepting.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    state.tracker.close();
    let deadline = state.shutdown_grace() + Duration::from_millis(700);
    if tokio::time::timeout(deadline, state.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some sessions did not close in time");
    }
    Ok(())
}

/// The WebSocket path of cc_executor's local server, and ccx's.
pub const WS_PATH: &str = "/ws/mcp";
/// The path cc_executor's Docker image serves (and some of its clients use):
/// the same endpoint, the same guards.
pub const WS_PATH_DOCKER: &str = "/ws";

/// Waits for the drain, then for every session to end (a session with a
/// running command ends after its `process.completed`, an idle one at once)
/// or for CCX_DRAIN_PERIOD, whichever comes first; then shuts down.
async fn drain_then_shut_down(state: Arc<AppState>) {
    tokio::select! {
        _ = state.drain.cancelled() => {}
        _ = state.shutdown.cancelled() => return,
    }
    let period = state.config.drain_period;
    let begun = Instant::now();
    tracing::info!(
        sessions = state.active_sessions(),
        "draining: readiness fails, new sessions are refused, running commands have up to {period:?} (CCX_DRAIN_PERIOD)"
    );
    state.tracker.close();
    tokio::select! {
        _ = state.tracker.wait() => {
            tracing::info!("drained in {} ms: every session has ended", begun.elapsed().as_millis());
        }
        _ = tokio::time::sleep(period) => {
            if !period.is_zero() {
                tracing::warn!(
                    sessions = state.active_sessions(),
                    "drain period over: ending the commands still running"
                );
            }
        }
        _ = state.shutdown.cancelled() => {}
    }
    state.shutdown.cancel();
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/healthz", get(healthz))
        .route("/livez", get(probes::livez))
        .route("/readyz", get(probes::readyz))
        .route(WS_PATH, get(websocket))
        .route(WS_PATH_DOCKER, get(websocket))
        .merge(crate::mcp::http::router(
            Arc::new(state.config.clone()),
            state.executor.clone(),
            state.sessions.clone(),
            crate::mcp::Drain {
                draining: state.drain.clone(),
                running: state.tracker.clone(),
            },
            &state.shutdown,
        ))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /health`: cc_executor's fields (`status`, `service`, `version`,
/// `active_sessions`, `max_sessions`, `uptime_seconds`) plus ccx's `pid`;
/// with `?verbose=1` it adds the environment fingerprint (`info`), behind
/// the WebSocket's guards: the Host rule (a rebound DNS name must not read
/// it), the Origin rule and the token.
async fn health(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let verbose = query
        .get("verbose")
        .is_some_and(|v| v != "0" && v != "false");
    let mut body = crate::protocol::Health {
        active_sessions: Some(state.active_sessions() as u64),
        info: None,
        log_error: crate::log_sink::error(),
        max_sessions: Some(state.config.max_sessions as u64),
        pid: Some(std::process::id()),
        service: Some(crate::protocol::CCX_SERVICE.into()),
        status: Some(crate::protocol::Health::HEALTHY.into()),
        uptime_seconds: Some(state.started.elapsed().as_secs_f64()),
        version: Some(crate::VERSION.into()),
    };
    if verbose {
        if let Some(refused) = pass_guards(&state, &headers, &query, "/health?verbose=1") {
            return refused;
        }
        let collected = info::collect_off_runtime(state.clone(), Vec::new()).await;
        body.info = Some(
            collected
                .ok()
                .and_then(|i| serde_json::to_value(i).ok())
                .unwrap_or_default(),
        );
    }
    Json(body).into_response()
}

/// `GET /healthz`: the minimal liveness answer, as cc_executor gives it.
async fn healthz() -> Json<crate::protocol::Healthz> {
    Json(crate::protocol::Healthz::ok())
}

async fn not_found(uri: Uri) -> Response {
    let body = json!({
        "error": "not found",
        "path": uri.path(),
        "endpoints": ["/health", "/healthz", "/livez", "/readyz", WS_PATH, WS_PATH_DOCKER, "/mcp"],
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// The guards (Host, Origin, token) for `what`: `None` when they pass,
/// else the answer to a refusal (logged).
fn pass_guards(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    what: &str,
) -> Option<Response> {
    guards::check(
        &state.config,
        headers,
        query.get("token").map(String::as_str),
    )
    .map_err(|refusal| {
        tracing::info!(
            status = refusal.status.as_u16(),
            "refused {what}: {}",
            refusal.message
        );
        http_error(refusal.status, refusal.message)
    })
    .err()
}

fn http_error(status: StatusCode, message: String) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    authorized: Option<Extension<guards::Authorized>>,
    send_queue: Option<Extension<keepalive::SendQueue>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Some(refused) = pass_guards(&state, &headers, &query, "upgrade") {
        return refused;
    }
    if let Some(Extension(authorized)) = &authorized {
        authorized.run();
    }
    if state.is_draining() {
        tracing::info!(status = 503, "refused upgrade: draining");
        let mut response = http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::protocol::DRAINING_NO_SESSION.into(),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return http_error(
                StatusCode::UPGRADE_REQUIRED,
                format!(
                    "{} speaks WebSocket (JSON-RPC 2.0): {rejection}",
                    uri.path()
                ),
            )
        }
    };
    let max = state.config.ws_max_size;
    // The library's default 128 KiB read buffer cost ~140 KB per idle
    // session: it starts small and grows on demand up to a frame of
    // WS_MAX_SIZE. Frames queued together (the session's writer feeds all
    // that is ready, then flushes) leave in one write of up to
    // WS_WRITE_BATCH: with a write per frame, 100-byte lines cost one
    // `sendto` each. The write buffer is empty until a session writes.
    let upgrade = upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BATCH);
    let permit = state.sessions.clone().try_acquire_owned().ok();
    let tracker = state.tracker.clone();
    upgrade.on_upgrade(move |socket| {
        tracker.track_future(async move {
            match permit {
                Some(_permit) => {
                    session::run(socket, state, send_queue.map(|Extension(q)| q)).await
                }
                None => session::refuse_over_limit(socket, &state).await,
            }
        })
    })
}
