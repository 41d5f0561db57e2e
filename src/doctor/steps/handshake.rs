//! Step `handshake`: the WebSocket upgrade at /ws/mcp and the `connected`
//! message, through the one ccx client, as a user's client does it. Names
//! the cause of a failure (refused, timeout, 401, 403, 404, not a WebSocket,
//! not a ccx), and warns when a proxy variable would divert clients that
//! honour it, or when the server says it cannot write its log.

use super::Outcome;
use crate::client::identity::{self, Kind};
use crate::client::{Client, ClientError, ConnectOptions};
use crate::config::Env;
use crate::doctor::{human_duration, Ctx, Status};
use crate::protocol::Endpoint;

pub async fn run(ctx: &mut Ctx<'_>) -> Outcome {
    let Some(url) = ctx.target.clone() else {
        return Outcome::skip("no server to talk to");
    };
    let mut options = ConnectOptions::new(&url).token(ctx.token());
    options.connect_timeout = ctx.opts.timeout;
    options.request_timeout = ctx.opts.timeout;
    let host = match Endpoint::parse(&url) {
        Ok(endpoint) => endpoint.host().to_string(),
        Err(e) => {
            return Outcome::fail(e.to_string())
                .fix("give a URL such as ws://127.0.0.1:8003/ws/mcp")
        }
    };
    let proxy = proxy_warning(&ctx.opts.env, &host);
    let sent_token = options.token.is_some();
    match Client::connect(&options).await {
        Ok(client) => {
            let c = &client.connected;
            let server = identity::identify(&url, c, ctx.opts.timeout).await;
            let mut detail = vec![
                format!("session {} on {}", c.session_id, server.name()),
                format!("capabilities: {}", c.capabilities.join(", ")),
                format!(
                    "token sent: {}",
                    if sent_token { "yes (CCX_TOKEN)" } else { "no" }
                ),
            ];
            match (&server.health, &server.health_error) {
                (Some(health), _) => detail.push(format!(
                    "GET /health: {}",
                    serde_json::Value::Object(health.clone())
                )),
                (None, Some(e)) => detail.push(format!("not identified by /health: {e}")),
                (None, None) => {}
            }
            if server.kind() == Kind::CcExecutor {
                detail.push(
                    "the Python cc_executor: it runs hooks before each command, so commands start slower than on ccx".into(),
                );
            }
            if !client.route.refused.is_empty() {
                detail.push(format!(
                    "connected to {} after {} refused (clients that try only the first address of the name would fail)",
                    client.route.connected,
                    client.route.refused.join(", ")
                ));
            }
            let summary = format!("connected to {url} ({})", server.name());
            let log_error = server
                .health
                .as_ref()
                .and_then(|h| h.get("log_error"))
                .and_then(|v| v.as_str())
                .map(str::to_string);
            ctx.server_identity = Some(server);
            ctx.client = Some(client);
            match proxy {
                None if log_error.is_some() => Outcome::warn(format!(
                    "{summary}, but it cannot write its log: {}",
                    log_error.unwrap_or_default()
                ))
                .detail(detail)
                .fix(
                    "free space on the filesystem of the server's log (`ccx status` names the file), or restart it with another CCX_STATE_DIR; until then its log lines are lost",
                ),
                None => Outcome::pass(summary).detail(detail),
                Some((var, value)) => {
                    detail.push(format!("{var}={value}"));
                    Outcome::warn(format!(
                        "{summary}, but {var} is set and NO_PROXY does not cover {host}"
                    ))
                    .detail(detail)
                    .fix(format!(
                        "clients that follow proxy variables (Python websockets, requests, curl) would send this connection to {value} and never reach the local server: add {host} to NO_PROXY (and no_proxy), or unset {var}"
                    ))
                }
            }
        }
        Err(ClientError::NotWebSocket(reason)) => {
            // Some HTTP servers (HTTP/1.0 ones) answer in a way the WebSocket
            // library cannot read: ask with a plain GET to learn the status.
            let status = plain_get_status(&url, ctx.opts.timeout).await;
            match status {
                Some(status) => failure(
                    ClientError::Http {
                        status,
                        body: format!("(to a plain GET; the upgrade failed: {reason})"),
                    },
                    &url,
                    sent_token,
                    ctx.opts.timeout,
                ),
                None => failure(
                    ClientError::NotWebSocket(reason),
                    &url,
                    sent_token,
                    ctx.opts.timeout,
                ),
            }
        }
        Err(ClientError::Http { status: 404, .. }) if !url_path_is_ws(&url) => {
            wrong_path(&url, ctx.opts.timeout).await
        }
        Err(e) => failure(e, &url, sent_token, ctx.opts.timeout),
    }
}

/// Whether the URL names a WebSocket path ccx or cc_executor serve.
fn url_path_is_ws(url: &str) -> bool {
    Endpoint::parse(url).is_ok_and(|e| matches!(e.path().trim_end_matches('/'), "/ws/mcp" | "/ws"))
}

/// HTTP 404 at a URL without the WebSocket path: ask the server's
/// `/health` what it is, and offer the URL with `/ws/mcp`.
async fn wrong_path(url: &str, deadline: std::time::Duration) -> Outcome {
    let Ok(endpoint) = Endpoint::parse(url) else {
        return Outcome::fail(format!("HTTP 404: nothing at {url}"));
    };
    let suggested = endpoint.ws_url();
    let service = match crate::client::http::get_endpoint(&endpoint.health(), deadline).await {
        Ok(r) if r.status == 200 => serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| {
                v.get("service")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            }),
        _ => None,
    };
    let what = match &service {
        Some(service) => format!("the server there is {service} (its /health says so), but"),
        None => "there is".to_string(),
    };
    Outcome::fail(format!(
        "HTTP 404 at {url}: {what} no WebSocket endpoint at path {:?}",
        endpoint.path()
    ))
    .fix(format!(
        "the WebSocket endpoint is /ws/mcp: `ccx doctor --url {suggested}`"
    ))
}

fn failure(e: ClientError, url: &str, sent_token: bool, deadline: std::time::Duration) -> Outcome {
    let text = e.to_string();
    match e {
        ClientError::Refused { tried, other_family } => {
            let tried_text = if tried.is_empty() { url.to_string() } else { tried.join(", ") };
            match other_family {
                Some(other) => Outcome::fail(format!(
                    "connection refused at {tried_text}, but something accepts connections at {other}"
                ))
                .detail([format!("addresses tried: {tried_text}"), format!("answers on the other loopback family: {other}")])
                .fix(format!(
                    "the server listens on the other loopback family: use {other} in the URL (a name such as `localhost` may resolve to ::1 first for some clients and to 127.0.0.1 for others), or make the server listen on both"
                )),
                None => Outcome::fail(format!("connection refused at {tried_text}: nothing is listening there"))
                    .detail([format!("addresses tried: {tried_text}"), "nothing answers on the other loopback family either".to_string()])
                    .fix("start the server (`ccx serve`), or check the host and port of the URL"),
            }
        }
        ClientError::Timeout { stage, .. } => Outcome::new(
            Status::Timeout,
            format!("no answer within {} ({stage})", human_duration(deadline)),
        )
        .detail([text])
        .fix("something accepts TCP connections on that port but does not speak HTTP: check what listens there (`ss -ltnp`), or raise --timeout for a slow link"),
        ClientError::Http { status: 401, .. } => Outcome::fail(if sent_token {
            "HTTP 401: the server refused the token sent (CCX_TOKEN does not match)".to_string()
        } else {
            "HTTP 401: the server requires a token and none was sent".to_string()
        })
        .detail([text])
        .fix("set CCX_TOKEN to the server's token (the client sends it as `Authorization: Bearer …`)"),
        ClientError::Http { status: 403, .. } => Outcome::fail("HTTP 403: the server refused this client's Origin or Host header")
            .detail([text])
            .fix("connect with the address the server is bound to (a loopback server rejects other Host names); a browser origin must be listed in CCX_ALLOWED_ORIGINS"),
        ClientError::Http { status: 404, .. } => Outcome::fail(format!("HTTP 404: nothing at {url}: not a ccx (or cc_executor) endpoint"))
            .detail([text])
            .fix("the WebSocket path is /ws/mcp; check the URL and that the program on that port is the ccx server"),
        ClientError::Http { status, .. } => Outcome::fail(format!("HTTP {status} instead of a WebSocket upgrade: not a WebSocket endpoint"))
            .detail([text])
            .fix("check that the URL points at a ccx server's /ws/mcp"),
        ClientError::NotWebSocket(_) => Outcome::fail("not a WebSocket endpoint: the upgrade did not complete")
            .detail([text])
            .fix("check that the URL points at a ccx server's /ws/mcp"),
        ClientError::NotCcx(_) => Outcome::fail("a WebSocket server, but neither ccx nor cc_executor: no `connected` message")
            .detail([text])
            .fix("point the URL at a ccx (or cc_executor) server"),
        ClientError::Rpc(rpc) => Outcome::fail(format!("the server refused the session: {} (code {})", rpc.message, rpc.code))
            .fix(if rpc.code == crate::protocol::ErrorCode::SessionLimit.code() { "the server has reached CCX_MAX_SESSIONS: close other sessions or raise the limit" } else { "see the server's message" }),
        _ => Outcome::fail(format!("cannot open a session at {url}: {text}"))
            .fix("check the URL and that the server is running"),
    }
}

/// The HTTP status a plain GET of the URL's path gets, if any answer comes.
async fn plain_get_status(url: &str, deadline: std::time::Duration) -> Option<u16> {
    let endpoint = Endpoint::parse(url).ok()?;
    crate::client::http::get_endpoint(&endpoint, deadline)
        .await
        .ok()
        .map(|r| r.status)
}

/// The proxy variable (name, value) that would divert a client going to
/// `host`, if any.
pub fn proxy_warning(env: &Env, host: &str) -> Option<(String, String)> {
    let proxy = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WS_PROXY"]
        .iter()
        .flat_map(|n| [n.to_string(), n.to_ascii_lowercase()])
        .find_map(|n| {
            env.get(&n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (n, v.clone()))
        })?;
    let no_proxy: Vec<String> = ["NO_PROXY", "no_proxy"]
        .iter()
        .filter_map(|n| env.get(*n))
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if no_proxy.iter().any(|entry| covers(entry, host)) {
        return None;
    }
    Some(proxy)
}

/// Whether one NO_PROXY entry covers `host` (exact, `*`, domain suffix,
/// or an IPv4 CIDR block).
fn covers(entry: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let entry = entry.trim_start_matches("*.");
    if entry == "*" || entry == host {
        return true;
    }
    let bare = entry.trim_start_matches('.');
    if host.ends_with(&format!(".{bare}")) {
        return true;
    }
    if let (Some((net, bits)), Ok(ip)) = (entry.split_once('/'), host.parse::<std::net::Ipv4Addr>())
    {
        if let (Ok(net), Ok(bits)) = (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>()) {
            if bits <= 32 {
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                return u32::from(ip) & mask == u32::from(net) & mask;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn proxy_without_no_proxy_is_reported_in_any_case() {
        let w = proxy_warning(&env(&[("https_proxy", "http://p:3128")]), "127.0.0.1");
        assert_eq!(w.unwrap().0, "https_proxy");
    }

    #[test]
    fn no_proxy_entries_cover_exact_suffix_star_and_cidr() {
        for no in ["127.0.0.1", "*", "127.0.0.0/8", "localhost,127.0.0.1"] {
            let e = env(&[("HTTP_PROXY", "http://p"), ("NO_PROXY", no)]);
            assert!(proxy_warning(&e, "127.0.0.1").is_none(), "{no}");
        }
        let e = env(&[("ALL_PROXY", "socks5://p"), ("no_proxy", ".example.com")]);
        assert!(proxy_warning(&e, "ws.example.com").is_none());
        let e = env(&[("HTTP_PROXY", "http://p"), ("NO_PROXY", "localhost")]);
        assert!(proxy_warning(&e, "127.0.0.1").is_some());
    }
}
