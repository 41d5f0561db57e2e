//! Who may open a session: the bearer token, the browser `Origin`, and the
//! `Host` header (DNS rebinding) checks, applied before the WebSocket
//! upgrade, before every `/mcp` request and before `/health?verbose=1`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{header, Extensions, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::config::Config;

/// A refused upgrade: the HTTP status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

fn refuse(status: StatusCode, message: String) -> Refusal {
    Refusal { status, message }
}

/// Runs every guard in order; the first refusal wins.
pub fn check(
    config: &Config,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(), Refusal> {
    check_host(config, headers)?;
    check_origin(config, headers)?;
    check_token(config, headers, query_token)
}

/// When bound to loopback, the Host header must name loopback: a web page on
/// another name that resolves to 127.0.0.1 (DNS rebinding) is refused.
fn check_host(config: &Config, headers: &HeaderMap) -> Result<(), Refusal> {
    if !config.host.is_loopback() {
        return Ok(());
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Ok(()); // HTTP/1.0 clients send none; nothing to rebind
    };
    if is_loopback_name(host_without_port(host)) {
        return Ok(());
    }
    Err(refuse(
        StatusCode::FORBIDDEN,
        format!(
            "Host {host:?} is not allowed: this server is bound to {} and only answers to \
             loopback names (localhost, 127.0.0.1, [::1])",
            config.host
        ),
    ))
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Browsers always send Origin; a page whose origin is not explicitly
/// allowed must not drive a shell server. Non-browser clients send none.
fn check_origin(config: &Config, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("<not UTF-8>");
    if config
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    Err(refuse(
        StatusCode::FORBIDDEN,
        format!("Origin {origin:?} is not allowed: add it to CCX_ALLOWED_ORIGINS to let that page connect"),
    ))
}

fn check_token(
    config: &Config,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(), Refusal> {
    let Some(expected) = &config.token else {
        return Ok(());
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let offered = bearer.or(query_token);
    match offered {
        Some(t) if bool::from(t.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "invalid token: the bearer token does not match this server's CCX_TOKEN".into(),
        )),
        None => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "this server requires a token: send `Authorization: Bearer TOKEN` or ?token=TOKEN \
             (ccx clients send CCX_TOKEN)"
                .into(),
        )),
    }
}

/// What a request's connection does once the request passes the guards,
/// put in its extensions by whoever serves the connection (the accept loop
/// takes the connection out of the set that idle sockets may evict).
#[derive(Clone)]
pub struct Authorized(Arc<dyn Fn() + Send + Sync>);

impl Authorized {
    pub fn new(action: impl Fn() + Send + Sync + 'static) -> Authorized {
        Authorized(Arc::new(action))
    }

    /// The request passed the guards.
    pub fn run(&self) {
        (self.0)();
    }

    /// Runs the action of the request whose extensions these are, if any.
    pub fn mark(extensions: &Extensions) {
        if let Some(authorized) = extensions.get::<Authorized>() {
            authorized.run();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_server_refuses_foreign_host_names() {
        let c = Config::default();
        for ok in [
            "127.0.0.1:8003",
            "localhost:1",
            "[::1]:80",
            "LOCALHOST",
            "a.localhost:5",
        ] {
            assert!(
                check(&c, &headers(&[(header::HOST, ok)]), None).is_ok(),
                "{ok}"
            );
        }
        let err = check(&c, &headers(&[(header::HOST, "evil.example:8003")]), None).unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn origins_must_be_listed() {
        let mut c = Config::default();
        let h = headers(&[(header::ORIGIN, "https://app.example")]);
        assert_eq!(
            check(&c, &h, None).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        c.allowed_origins = vec!["https://app.example".into()];
        assert!(check(&c, &h, None).is_ok());
    }

    #[test]
    fn token_by_header_or_query() {
        let c = Config {
            token: Some("s3cret".into()),
            ..Config::default()
        };
        assert_eq!(
            check(&c, &HeaderMap::new(), None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(check(&c, &HeaderMap::new(), Some("s3cret")).is_ok());
        assert!(check(
            &c,
            &headers(&[(header::AUTHORIZATION, "Bearer s3cret")]),
            None
        )
        .is_ok());
        assert!(check(
            &c,
            &headers(&[(header::AUTHORIZATION, "Bearer nope")]),
            None
        )
        .is_err());
    }
}
