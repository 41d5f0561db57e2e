//! The one WebSocket client of ccx (tokio-tungstenite): connect with a
//! deadline and a token, wait for `connected`, send requests, stream events,
//! control the running process. `doctor`, `exec`, `stress` and the tests all
//! use it; it knows the wire protocol, not the server's internals.

pub mod http;

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{
    method, Completed, Connected, ControlParams, ControlResult, ControlType, ExecuteParams, Frame,
    InfoParams, Output, ProcessStatus, RpcError, ServerInfo, StreamKind,
};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub token: Option<String>,
    /// Deadline for TCP connect + WebSocket handshake + `connected` message.
    pub connect_timeout: Duration,
    /// Deadline for a request's response (not for process events).
    pub request_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }

    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
}

/// What can go wrong talking to a server; each names its cause.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("connection refused by {addr}: nothing is listening there")]
    Refused { addr: String },
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
    #[error("connection closed{}", close_suffix(*.code, .reason))]
    Closed { code: Option<u16>, reason: String },
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn body_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {}", body.chars().take(300).collect::<String>())
    }
}

fn close_suffix(code: Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (Some(c), true) => format!(" with code {c}"),
        (Some(c), false) => format!(" with code {c}: {reason}"),
        (None, _) => String::new(),
    }
}

/// A process event, as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started(ProcessStatus),
    Output(Output),
    /// `process.paused`, `process.resumed` or `process.canceled`.
    Control(ProcessStatus),
    Completed(Completed),
    /// Any other notification (kept, not interpreted).
    Other(Frame),
}

/// Everything a command produced, collected by [`Client::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub started: ProcessStatus,
    pub stdout: String,
    pub stderr: String,
    pub lossy: bool,
    pub truncated: bool,
    pub completed: Completed,
}

/// Output gathered chunk by chunk until the completion arrives; shared by
/// [`Client::run`] and the no-server runner of `ccx stress --direct`.
#[derive(Debug, Clone, Default)]
pub struct OutputCollector {
    stdout: String,
    stderr: String,
    lossy: bool,
    truncated: bool,
}

impl OutputCollector {
    pub fn add(&mut self, output: Output) {
        self.lossy |= output.lossy;
        self.truncated |= output.truncated;
        match output.stream {
            StreamKind::Stdout => self.stdout.push_str(&output.data),
            StreamKind::Stderr => self.stderr.push_str(&output.data),
        }
    }

    pub fn finish(self, started: ProcessStatus, completed: Completed) -> RunOutcome {
        RunOutcome {
            started,
            stdout: self.stdout,
            stderr: self.stderr,
            lossy: self.lossy,
            truncated: self.truncated,
            completed,
        }
    }
}

/// Checks that `url` is one the client can connect to (`ws://HOST[:PORT]/…`),
/// so that commands can refuse a bad `--url` before doing anything.
pub fn check_url(url: &str) -> Result<(), ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
    };
    if url.starts_with("wss://") {
        return Err(invalid(WSS_UNSUPPORTED));
    }
    if !url.starts_with("ws://") {
        return Err(invalid("expected ws://HOST:PORT/ws/mcp"));
    }
    let request = url
        .into_client_request()
        .map_err(|e| invalid(&e.to_string()))?;
    match request.uri().host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(invalid("the URL names no host")),
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
    queued: VecDeque<Frame>,
    request_timeout: Duration,
    /// The server's `connected` notification.
    pub connected: Connected,
}

impl Client {
    /// Connects, upgrades, and waits for `connected`, all within
    /// `connect_timeout`.
    pub async fn connect(options: &ConnectOptions) -> Result<Client, ClientError> {
        let mut socket = Self::open(options).await?;
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
            request_timeout: options.request_timeout,
            connected,
        })
    }

    /// TCP connect and WebSocket upgrade only (no `connected` wait).
    pub async fn open(options: &ConnectOptions) -> Result<Socket, ClientError> {
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
        let addr = match host.parse() {
            Ok(ip) => crate::config::authority(ip, port),
            Err(_) => format!("{host}:{port}"),
        };
        let deadline = options.connect_timeout;
        let stream = match timeout(deadline, TcpStream::connect((host, port))).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    url: options.url.clone(),
                    stage: "TCP connect",
                    after: deadline,
                })
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ClientError::Refused { addr })
            }
            Ok(Err(e)) => return Err(ClientError::Io(e)),
            Ok(Ok(s)) => s,
        };
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
            Ok(Ok((socket, _response))) => Ok(socket),
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
                url: String::new(),
                stage: "waiting for the response",
                after: deadline,
            })??;
        serde_json::from_value(response)
            .map_err(|e| ClientError::Protocol(format!("unexpected result of {method}: {e}")))
    }

    async fn wait_response(&mut self, id: u64) -> Result<Value, ClientError> {
        loop {
            let frame = self.next_frame().await?;
            let is_ours =
                frame.method.is_none() && frame.id.as_ref().and_then(Value::as_u64) == Some(id);
            if frame.method.is_none()
                && frame.error.is_some()
                && (is_ours || frame.id.as_ref().is_none_or(Value::is_null))
            {
                return Err(ClientError::Rpc(frame.error.unwrap_or_else(|| RpcError {
                    code: 0,
                    message: String::new(),
                    data: None,
                })));
            }
            if is_ours {
                return Ok(frame.result.unwrap_or(Value::Null));
            }
            self.queued.push_back(frame);
        }
    }

    /// Starts a command; events follow through [`Client::next_event`].
    pub async fn execute(&mut self, params: &ExecuteParams) -> Result<ProcessStatus, ClientError> {
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

    /// The next process event (no deadline: a command may run for hours;
    /// wrap it in `tokio::time::timeout` where a deadline applies).
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        let frame = match self.queued.pop_front() {
            Some(f) => f,
            None => self.next_frame().await?,
        };
        if let Some(error) = frame.error {
            return Err(ClientError::Rpc(error));
        }
        let params = frame.params.clone().unwrap_or(Value::Null);
        let parse = |what: &str| ClientError::Protocol(format!("malformed {what} notification"));
        Ok(match frame.method.as_deref() {
            Some(method::PROCESS_STARTED) => Event::Started(
                serde_json::from_value(params).map_err(|_| parse("process.started"))?,
            ),
            Some(method::PROCESS_OUTPUT) => {
                Event::Output(serde_json::from_value(params).map_err(|_| parse("process.output"))?)
            }
            Some(method::PROCESS_COMPLETED) => Event::Completed(
                serde_json::from_value(params).map_err(|_| parse("process.completed"))?,
            ),
            Some(method::PROCESS_PAUSED | method::PROCESS_RESUMED | method::PROCESS_CANCELED) => {
                Event::Control(
                    serde_json::from_value(params).map_err(|_| parse("process control"))?,
                )
            }
            _ => Event::Other(frame),
        })
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

    /// The next JSON-RPC frame from the socket (pings are answered by the
    /// library and skipped here).
    pub async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            let message = match self.socket.next().await {
                None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: String::new(),
                    })
                }
                Some(Err(e)) => return Err(ws_error(e)),
                Some(Ok(m)) => m,
            };
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(&text).map_err(|e| {
                        ClientError::Protocol(format!(
                            "the server sent a frame that is not JSON-RPC: {e}"
                        ))
                    })
                }
                Message::Close(frame) => {
                    return Err(ClientError::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    })
                }
                Message::Binary(_) => {
                    return Err(ClientError::Protocol(
                        "the server sent a binary frame".into(),
                    ))
                }
                _ => {}
            }
        }
    }

    /// Closes the session politely.
    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(1), self.socket.close(None)).await;
    }
}

fn parse_connected(message: Message) -> Result<Connected, ClientError> {
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

fn truncate(text: &str) -> String {
    let mut s: String = text.chars().take(200).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

fn handshake_error(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            ClientError::Http {
                status: response.status().as_u16(),
                body,
            }
        }
        tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ClientError::Refused {
                addr: String::new(),
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

fn ws_error(e: tungstenite::Error) -> ClientError {
    match e {
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
