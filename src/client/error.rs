//! Every way a client call fails ([`ClientError`]), each message saying
//! what was tried and what came back.

use super::*;

/// What can go wrong talking to a server; each names its cause.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{}", refused_message(.tried, .other_family.as_deref()))]
    Refused {
        /// Every address tried, in order (`127.0.0.1:8003`, `[::1]:8003`).
        tried: Vec<String>,
        /// The other loopback family's address on the same port, when
        /// something accepts connections there.
        other_family: Option<String>,
    },
    #[error("no answer from {url} within {after:?} ({stage})")]
    Timeout {
        url: String,
        stage: &'static str,
        after: Duration,
    },
    #[error("the server answered HTTP {status} instead of upgrading to WebSocket{}", body_suffix(.body))]
    Http { status: u16, body: String },
    #[error("not a WebSocket endpoint: {0}")]
    NotWebSocket(String),
    #[error("a WebSocket server, but not ccx: {0}")]
    NotCcx(String),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("server error: {0}")]
    Rpc(RpcError),
    #[error(
        "no answer from the server at {url} for {after:?}: the connection is dead or the network partitioned"
    )]
    Silent { url: String, after: Duration },
    #[error("the server closed the connection{}", close_suffix(*.code, .reason))]
    Closed { code: Option<u16>, reason: String },
    #[error("protocol error: {0}")]
    Protocol(String),
}

pub(super) fn refused_message(tried: &[String], other: Option<&str>) -> String {
    let tried = match tried {
        [] => "the server".to_string(),
        [one] => one.clone(),
        many => many.join(" and "),
    };
    match other {
        Some(other) => format!(
            "connection refused at {tried}: nothing listens there, but something accepts connections at {other} (the other loopback family): use that address in the URL"
        ),
        None => format!("connection refused at {tried}: nothing is listening there"),
    }
}

pub(super) fn body_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {}", body.chars().take(300).collect::<String>())
    }
}

pub(super) fn close_suffix(code: Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (Some(c), true) => format!(" with code {c}"),
        (Some(c), false) => format!(" with code {c}: {reason}"),
        (None, true) => String::new(),
        (None, false) => format!(": {reason}"),
    }
}

pub(super) fn truncate(text: &str) -> String {
    let mut s: String = text.chars().take(200).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

pub(super) fn handshake_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| crate::sanitize::captured(&String::from_utf8_lossy(b)))
                .unwrap_or_default();
            ClientError::Http {
                status: response.status().as_u16(),
                body,
            }
        }
        tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ClientError::Refused {
                tried: Vec::new(),
                other_family: None,
            }
        }
        tungstenite::Error::Io(io) => ClientError::Io(io),
        tungstenite::Error::Url(u) => ClientError::InvalidUrl {
            url: String::new(),
            reason: u.to_string(),
        },
        other => ClientError::NotWebSocket(other.to_string()),
    }
}

pub(super) fn ws_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => ClientError::Closed {
            code: None,
            reason: "the server dropped the TCP connection without a WebSocket close".into(),
        },
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            ClientError::Closed {
                code: None,
                reason: String::new(),
            }
        }
        tungstenite::Error::Io(io) => ClientError::Io(io),
        other => ClientError::Protocol(other.to_string()),
    }
}
