//! Streamable HTTP at `/mcp` on `ccx serve`: the SDK's transport (POST for
//! messages, `Mcp-Session-Id` sessions, GET for the server's stream, DELETE
//! to end a session, the handshake-less revision served statelessly) behind
//! the same guards as the WebSocket: Host (DNS rebinding), Origin and the
//! bearer token (`crate::guards`), and the same session limit
//! (CCX_MAX_SESSIONS, shared with WebSocket sessions: `super::sessions`),
//! which a tool call made outside any session counts against too while it
//! runs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::sessions::CappedSessions;
use super::{Drain, Tools};
use crate::config::Config;
use crate::guards;
use crate::process::Executor;
use crate::protocol::{ErrorCode, RpcError, DRAINING_NO_SESSION};

/// Where the endpoint is served.
pub const PATH: &str = "/mcp";

/// What the guard in front of the SDK needs.
#[derive(Clone)]
struct Guard {
    config: Arc<Config>,
    /// The server's session permits (CCX_MAX_SESSIONS).
    sessions: Arc<Semaphore>,
    drain: Drain,
}

/// The `/mcp` route, guarded, for any router state. Every open session holds
/// one of `sessions`' permits. Once the server drains, no session opens and
/// no command starts, and the drain waits for running calls (`drain`).
/// Every session's running commands end (with their process groups) when
/// `shutdown` is cancelled.
pub fn router<S: Clone + Send + Sync + 'static>(
    config: Arc<Config>,
    executor: Arc<Executor>,
    sessions: Arc<Semaphore>,
    drain: Drain,
    shutdown: &CancellationToken,
) -> Router<S> {
    let tools_config = config.clone();
    let draining = drain.draining.clone();
    let transport = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        // ccx's own guards below apply the Host and Origin rules the
        // WebSocket has (CCX_ALLOWED_ORIGINS, loopback names when bound to
        // loopback), so both endpoints of one server answer alike.
        .disable_allowed_hosts()
        .disable_allowed_origins();
    let service = StreamableHttpService::new(
        move || {
            Ok(Tools::served(
                tools_config.clone(),
                executor.clone(),
                draining.clone(),
            ))
        },
        CappedSessions::new(LocalSessionManager::default(), sessions.clone()).into(),
        transport,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(
            Guard {
                config,
                sessions,
                drain,
            },
            guard,
        ))
}

async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let config = &guard.config;
    let query_token = request.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    if let Err(refusal) = guards::check(config, request.headers(), query_token.as_deref()) {
        tracing::info!(
            status = refusal.status.as_u16(),
            "refused MCP request: {}",
            refusal.message
        );
        let mut response =
            (refusal.status, Json(json!({ "error": refusal.message }))).into_response();
        if refusal.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return response;
    }
    let (request, body) = match parse_checked(request, config.ws_max_size).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    // Authorized and whole: the connection is no longer one that idle
    // sockets may evict. (Not before its body is in: a body that never
    // ends would otherwise hold a connection no cap reaches.)
    guards::Authorized::mark(request.extensions());
    if let Some(refusal) = refuse_new_session(&guard, &request, body.as_ref()) {
        return refusal;
    }
    let deleting = request.method() == Method::DELETE;
    let calls_tool = rpc_method(body.as_ref()) == Some("tools/call");
    // A call outside any session (the handshake-less revision) can run a
    // command as a session can: it holds a session slot until answered.
    let slot = if calls_tool && !request.headers().contains_key(SESSION_HEADER) {
        match guard.sessions.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => return over_limit(&guard, body.as_ref(), "call"),
        }
    } else {
        None
    };
    let running = calls_tool.then(|| guard.drain.running.token());
    let mut response = next.run(request).await;
    if running.is_some() || slot.is_some() {
        response = hold_until_written(response, (running, slot));
    }
    // The SDK answers a session's DELETE with 202 Accepted; the Python SDK
    // (and the spec's examples) expect 200 or 204, and log a failed
    // termination otherwise. The session is closed by then: say so.
    if deleting && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// The header that names an open session.
const SESSION_HEADER: &str = "mcp-session-id";

/// An `initialize` that would open a session while the server drains, or
/// while every session it allows is open, gets 503 with a JSON-RPC error
/// and `Retry-After`, as a WebSocket upgrade does then (the SDK would open
/// the session, or answer a bare 500 at the limit). The session manager
/// enforces the limit in any case; this says it clearly.
fn refuse_new_session(guard: &Guard, request: &Request, body: Option<&Value>) -> Option<Response> {
    let opens_session = request.method() == Method::POST
        && !request.headers().contains_key(SESSION_HEADER)
        && rpc_method(body) == Some("initialize");
    if !opens_session {
        return None;
    }
    if guard.drain.draining.is_cancelled() {
        let error = RpcError::new(ErrorCode::Internal, DRAINING_NO_SESSION);
        return Some(unavailable(body, error, "session"));
    }
    if guard.sessions.available_permits() == 0 {
        return Some(over_limit(guard, body, "session"));
    }
    None
}

/// 503 with -32003: every slot of CCX_MAX_SESSIONS is taken.
fn over_limit(guard: &Guard, body: Option<&Value>, what: &str) -> Response {
    let config = &guard.config;
    let error = RpcError::session_limit(
        config.max_sessions,
        config.variable_of("max_sessions", "CCX_MAX_SESSIONS"),
    );
    unavailable(body, error, what)
}

/// 503 with `error` answering the request in `body`, and `Retry-After`.
fn unavailable(body: Option<&Value>, error: RpcError, what: &str) -> Response {
    tracing::info!(status = 503, "refused MCP {what}: {}", error.message);
    let id = body
        .and_then(|b| b.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    let body = json!({"jsonrpc": "2.0", "id": id, "error": error});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The `method` of a JSON-RPC message.
fn rpc_method(body: Option<&Value>) -> Option<&str> {
    body?.get("method")?.as_str()
}

/// `response` with `held` kept until its body has been written (or the
/// client has gone): a tool call's answer streams after the handler has
/// returned, and neither the drain (its tracker token) nor a new call (its
/// session slot) may act before it is out.
fn hold_until_written<H: Send + Sync + 'static>(response: Response, held: H) -> Response {
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &held;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(body))
}

/// A POST whose body is not JSON gets JSON-RPC's -32700 (HTTP 400) here:
/// the SDK would answer 415 with a plain-text body no JSON-RPC client reads.
/// Bodies are bounded by WS_MAX_SIZE, as WebSocket messages are. Returns the
/// parsed body of a POST.
async fn parse_checked(
    request: Request,
    limit: usize,
) -> Result<(Request, Option<Value>), Response> {
    if request.method() != Method::POST {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Err(rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                format!(
                    "Invalid request: body unreadable or over {limit} bytes (WS_MAX_SIZE): {e}"
                ),
            ))
        }
    };
    let value = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => value,
        Err(e) => {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                format!("Parse error: the body is not JSON ({e})"),
            ))
        }
    };
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        Some(value),
    ))
}

fn rpc_error(status: StatusCode, code: i64, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, Json(body)).into_response()
}
