//! Opening the connection: the TCP connect over every resolved address
//! (with the route it took) and the `connected` notification.

use super::*;

/// Connects to the first of `host`'s addresses that accepts, in the order
/// the resolver gives them (as most clients do), remembering the refusals.
/// When every address refuses and they are all loopback, probes the other
/// loopback family on the same port: `localhost` resolves to ::1 first for
/// some clients and to 127.0.0.1 for others, and a server bound to one
/// family is unreachable through the other.
pub(super) async fn connect_tcp(host: &str, port: u16) -> Result<(TcpStream, Route), ClientError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            ClientError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot resolve {host}: {e}"),
            ))
        })?
        .collect();
    let mut refused = Vec::new();
    let mut last_error = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let route = Route {
                    connected: addr.to_string(),
                    refused,
                };
                return Ok((stream, route));
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused.push(addr.to_string());
            }
            Err(e) => last_error = Some(e),
        }
    }
    if let Some(e) = last_error {
        return Err(ClientError::Io(e));
    }
    let mut other_family = None;
    if addrs.iter().all(|a| a.ip().is_loopback()) {
        let families: Vec<bool> = addrs.iter().map(SocketAddr::is_ipv4).collect();
        let other: Option<SocketAddr> = if families.iter().all(|v4| *v4) {
            Some(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)))
        } else if families.iter().all(|v4| !*v4) {
            Some(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)))
        } else {
            None
        };
        if let Some(other) = other {
            let probe = timeout(Duration::from_secs(1), TcpStream::connect(other)).await;
            if matches!(probe, Ok(Ok(_))) {
                other_family = Some(other.to_string());
            }
        }
    }
    Err(ClientError::Refused {
        tried: refused,
        other_family,
    })
}

pub(super) fn parse_connected(message: Message) -> Result<Connected, ClientError> {
    let Message::Text(text) = message else {
        return Err(ClientError::NotCcx(format!(
            "the first message was not text: {message:?}"
        )));
    };
    let frame: Frame = serde_json::from_str(&text).map_err(|_| {
        ClientError::NotCcx(format!(
            "the first message is not JSON-RPC: {}",
            truncate(&text)
        ))
    })?;
    if let Some(error) = frame.error {
        return Err(ClientError::Rpc(error));
    }
    if frame.method.as_deref() != Some(method::CONNECTED) {
        return Err(ClientError::NotCcx(format!(
            "the first message is not `connected`: {}",
            truncate(&text)
        )));
    }
    serde_json::from_value(frame.params.unwrap_or(Value::Null))
        .map_err(|e| ClientError::NotCcx(format!("malformed `connected` message: {e}")))
}

/// Checks that `url` is one the client can connect to (`ws://HOST[:PORT]/…`),
/// so that commands can refuse a bad `--url` before doing anything. The
/// URL is read by [`Endpoint::parse`], like every server URL in ccx.
pub fn check_url(url: &str) -> Result<(), ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
    };
    match Endpoint::parse(url)
        .map_err(|e| invalid(&e.reason))?
        .scheme()
    {
        Scheme::Ws => Ok(()),
        Scheme::Wss => Err(invalid(WSS_UNSUPPORTED)),
        Scheme::Http | Scheme::Https => Err(invalid("expected ws://HOST:PORT/ws/mcp")),
    }
}
