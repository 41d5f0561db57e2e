//! The one WebSocket client of ccx (tokio-tungstenite): connect with a
//! deadline and a token, wait for `connected`, send requests, stream events,
//! control the running process. `doctor`, `exec`, `stress` and the tests all
//! use it; it knows the wire protocol, not the server's internals.
//!
//! It speaks both dialects it meets: ccx's and the Python cc_executor's
//! (`pgid: null`, no `duration_ms`, `process.canceled`, long lines in
//! chunks, a `ping` notification it must answer with `pong` or be
//! disconnected). Which server it talks to is learnt from what the server
//! says (`identity`), never assumed.
//!
//! Beside it, [`mcp`]: the diagnostic MCP client the doctor checks any MCP
//! server with (stdio or Streamable HTTP).

mod connect;
mod error;
pub mod http;
pub mod identity;
pub mod mcp;
mod outcome;
mod read;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{
    method, Completed, Connected, ControlParams, ControlResult, ControlType, Endpoint,
    ExecuteParams, Frame, Framing, InfoParams, Output, ProcessStatus, RpcError, Scheme, ServerInfo,
    StreamKind, BATCHED_OUTPUT,
};

pub use connect::check_url;
use connect::{connect_tcp, parse_connected};
pub use error::ClientError;
use error::{handshake_error, truncate, ws_error};
pub use outcome::{continues, Event, OutputCollector, RunOutcome};
use read::Incoming;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub token: Option<String>,
    /// Deadline for TCP connect + WebSocket handshake + `connected` message.
    pub connect_timeout: Duration,
    /// Deadline for a request's response (not for process events).
    pub request_timeout: Duration,
    /// WebSocket pings of our own, and how long a silent connection is
    /// trusted; `None` (the default) waits for the server as long as it takes.
    pub keepalive: Option<KeepAlive>,
}

/// The client's own keep-alive: while it waits for the server, it sends a
/// WebSocket ping every `every`, and gives up when nothing at all (no pong,
/// no ping, no frame) has arrived for `silence`. A server running a silent
/// command still answers pings, so only a dead connection or a partitioned
/// network ends this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    pub every: Duration,
    pub silence: Duration,
}

impl KeepAlive {
    /// Gives up after `silence`, pinging three times within it (so one lost
    /// pong is not yet a dead connection).
    pub fn within(silence: Duration) -> KeepAlive {
        KeepAlive {
            every: silence / 3,
            silence,
        }
    }
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            keepalive: None,
        }
    }

    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
}

const WSS_UNSUPPORTED: &str =
    "wss:// (TLS) is not supported: ccx speaks plain ws://; reach a remote \
     server through a TLS-terminating proxy or an SSH tunnel to its loopback port";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected session.
pub struct Client {
    socket: Socket,
    next_id: u64,
    queued: VecDeque<Incoming>,
    /// Whether the running command's output comes batched (this session
    /// asked for it), so text frames are first read as batches.
    batches: bool,
    request_timeout: Duration,
    keepalive: Option<KeepAlive>,
    url: String,
    /// The address the connection went to, and the ones refused before it.
    pub route: Route,
    /// The server's `connected` notification.
    pub connected: Connected,
}

/// Which of a host name's addresses the client reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub connected: String,
    pub refused: Vec<String>,
}

impl Client {
    /// Connects, upgrades, and waits for `connected`, all within
    /// `connect_timeout`.
    pub async fn connect(options: &ConnectOptions) -> Result<Client, ClientError> {
        let (mut socket, route) = Self::open_routed(options).await?;
        let first = timeout(options.connect_timeout, socket.next()).await;
        let connected = match first {
            Err(_) => {
                return Err(ClientError::NotCcx(format!(
                    "the upgrade succeeded but no `connected` message came within {:?}",
                    options.connect_timeout
                )))
            }
            Ok(None) => {
                return Err(ClientError::NotCcx(
                    "the server closed the connection without a `connected` message".into(),
                ))
            }
            Ok(Some(Err(e))) => {
                return Err(ClientError::NotCcx(format!(
                    "reading the first message failed: {e}"
                )))
            }
            Ok(Some(Ok(message))) => parse_connected(message)?,
        };
        Ok(Client {
            socket,
            next_id: 1,
            queued: VecDeque::new(),
            batches: false,
            request_timeout: options.request_timeout,
            keepalive: options.keepalive,
            url: options.url.clone(),
            route,
            connected,
        })
    }

    /// The URL this session was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// TCP connect and WebSocket upgrade only (no `connected` wait).
    pub async fn open(options: &ConnectOptions) -> Result<Socket, ClientError> {
        Ok(Self::open_routed(options).await?.0)
    }

    async fn open_routed(options: &ConnectOptions) -> Result<(Socket, Route), ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: options.url.clone(),
            reason,
        };
        check_url(&options.url)?;
        let mut request = options
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(token) = &options.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| invalid("the token is not a valid header value".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        let uri = request.uri().clone();
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("wss") => 443,
            _ => 80,
        });
        let deadline = options.connect_timeout;
        let (stream, route) =
            timeout(deadline, connect_tcp(host, port))
                .await
                .map_err(|_| ClientError::Timeout {
                    url: options.url.clone(),
                    stage: "TCP connect",
                    after: deadline,
                })??;
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .max_message_size(Some(256 << 20))
            .max_frame_size(Some(256 << 20));
        let handshake = tokio_tungstenite::client_async_with_config(
            request,
            MaybeTlsStream::Plain(stream),
            Some(config),
        );
        match timeout(deadline, handshake).await {
            Err(_) => Err(ClientError::Timeout {
                url: options.url.clone(),
                stage:
                    "WebSocket handshake: the port accepted the connection but sent no HTTP answer",
                after: deadline,
            }),
            Ok(Ok((socket, _response))) => Ok((socket, route)),
            Ok(Err(e)) => Err(handshake_error(e)),
        }
    }

    /// Sends a request and waits for its response; notifications that arrive
    /// meanwhile are kept for [`Client::next_event`].
    pub async fn request<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        params: P,
    ) -> Result<R, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(&Frame::request(id, method, params).to_json())
            .await?;
        let deadline = self.request_timeout;
        let response = timeout(deadline, self.wait_response(id))
            .await
            .map_err(|_| ClientError::Timeout {
                url: self.url.clone(),
                stage: "waiting for the response",
                after: deadline,
            })??;
        serde_json::from_value(response)
            .map_err(|e| ClientError::Protocol(format!("unexpected result of {method}: {e}")))
    }

    /// Whether the server announced batched output ([`BATCHED_OUTPUT`]).
    pub fn offers_batches(&self) -> bool {
        self.connected
            .capabilities
            .iter()
            .any(|c| c == BATCHED_OUTPUT)
    }

    /// `params` asking for batched output (several lines per
    /// `process.output`) when the server announced it; as they are for any
    /// other server, which frames one message per line.
    pub fn prefer_batches(&self, params: &ExecuteParams) -> ExecuteParams {
        let mut params = params.clone();
        if self.offers_batches() {
            params.framing = Some(Framing::Batched);
        }
        params
    }

    /// Starts a command; events follow through [`Client::next_event`].
    pub async fn execute(&mut self, params: &ExecuteParams) -> Result<ProcessStatus, ClientError> {
        self.batches = params.framing == Some(Framing::Batched);
        self.request(method::EXECUTE, params).await
    }

    /// PAUSE, RESUME or CANCEL the running process.
    pub async fn control(&mut self, kind: ControlType) -> Result<ControlResult, ClientError> {
        self.request(method::CONTROL, ControlParams { kind }).await
    }

    /// The server's environment fingerprint, resolving `require` on its PATH.
    pub async fn info(&mut self, require: &[String]) -> Result<ServerInfo, ClientError> {
        let params = InfoParams {
            require: require.to_vec(),
        };
        self.request(method::SERVER_INFO, params).await
    }

    /// Runs a command to completion and collects its output.
    pub async fn run(&mut self, params: &ExecuteParams) -> Result<RunOutcome, ClientError> {
        let started = self.execute(params).await?;
        let mut collected = OutputCollector::default();
        loop {
            match self.next_event().await? {
                Event::Output(o) => collected.add(o),
                Event::Completed(completed) => return Ok(collected.finish(started, completed)),
                _ => {}
            }
        }
    }

    /// Sends one raw text frame (tests use it to send malformed input).
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.send_message(Message::text(text)).await
    }

    /// Sends one raw WebSocket message.
    pub async fn send_message(&mut self, message: Message) -> Result<(), ClientError> {
        self.socket.send(message).await.map_err(ws_error)
    }

    /// Closes the session politely.
    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(1), self.socket.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match check_url(url) {
            Err(ClientError::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: expected an invalid URL, got {other:?}"),
        }
    }

    #[test]
    fn only_plain_websocket_urls_with_a_host_are_accepted() {
        for good in [
            "ws://127.0.0.1:8003/ws/mcp",
            "ws://[::1]:1/ws/mcp",
            "ws://host",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        assert!(reason("wss://h:1/ws/mcp").contains("wss://"));
        assert!(reason("http://127.0.0.1:1/").contains("expected ws://"));
        assert_eq!(reason("ws://"), "no host");
        assert!(reason("ws://u:p@h:1/ws/mcp").contains("CCX_TOKEN"));
        assert!(reason("ws://h:99999/ws/mcp").contains("port"));
        assert!(reason("localhost:8003").contains("no scheme"));
    }
}
