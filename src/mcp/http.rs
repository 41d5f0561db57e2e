//! Streamable HTTP at `/mcp` on `ccx serve`: the SDK's transport (POST for
//! messages, `Mcp-Session-Id` sessions, GET for the server's stream, DELETE
//! to end a session, the handshake-less revision served statelessly) behind
//! the same guards as the WebSocket: Host (DNS rebinding), Origin and the
//! bearer token (`crate::guards`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Tools;
use crate::config::Config;
use crate::guards;

/// Where the endpoint is served.
pub const PATH: &str = "/mcp";

/// The `/mcp` route, guarded, for any router state. Every session's running
/// commands end (with their process groups) when `shutdown` is cancelled.
pub fn router<S: Clone + Send + Sync + 'static>(
    config: Arc<Config>,
    shutdown: &CancellationToken,
) -> Router<S> {
    let tools_config = config.clone();
    let transport = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        // ccx's own guards below apply the Host and Origin rules the
        // WebSocket has (CCX_ALLOWED_ORIGINS, loopback names when bound to
        // loopback), so both endpoints of one server answer alike.
        .disable_allowed_hosts()
        .disable_allowed_origins();
    let service = StreamableHttpService::new(
        move || Ok(Tools::new(tools_config.clone())),
        LocalSessionManager::default().into(),
        transport,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(config, guard))
}

async fn guard(State(config): State<Arc<Config>>, request: Request, next: Next) -> Response {
    let query_token = request.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    if let Err(refusal) = guards::check(&config, request.headers(), query_token.as_deref()) {
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
    let request = match parse_checked(request, config.ws_max_size).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let deleting = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    // The SDK answers a session's DELETE with 202 Accepted; the Python SDK
    // (and the spec's examples) expect 200 or 204, and log a failed
    // termination otherwise. The session is closed by then: say so.
    if deleting && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// A POST whose body is not JSON gets JSON-RPC's -32700 (HTTP 400) here:
/// the SDK would answer 415 with a plain-text body no JSON-RPC client reads.
/// Bodies are bounded by WS_MAX_SIZE, as WebSocket messages are.
async fn parse_checked(request: Request, limit: usize) -> Result<Request, Response> {
    if request.method() != Method::POST {
        return Ok(request);
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
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            -32700,
            format!("Parse error: the body is not JSON ({e})"),
        ));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

fn rpc_error(status: StatusCode, code: i64, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, Json(body)).into_response()
}
