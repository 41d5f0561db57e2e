//! The hostile-input corpus (issue 12): every case of `tests/hostile/*.toml`
//! is sent to the real server (port 0) by a raw client — tokio-tungstenite
//! for WebSocket cases, with hand-built frames written straight to its TCP
//! stream where a case needs a malformed frame, and plain TCP for the
//! `http` group — and the answer is checked against the case's expectation.
//!
//! After every case the runner checks that the server still works: the
//! case's own connection (when it should stay open) runs an `execute` of
//! `echo`, a fresh session does the same, and `/health` answers.
//!
//! The data format is described at the top of `tests/hostile/parse.toml`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// The token of the `token` profile.
const TOKEN: &str = "hostile-token";
/// How long a step may wait for an answer unless the case says otherwise.
const DEFAULT_WITHIN: Duration = Duration::from_secs(10);
/// KILL_GRACE (1 s in every profile) + 1 s: the bound of issue 12's acceptance 3.
const GONE_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Why the case exists, for the reader of the data file.
    #[serde(default)]
    #[allow(dead_code)]
    about: String,
    #[serde(default)]
    server: Profile,
    /// Shorthand for `steps = [{send = …}, {expect = …}]`.
    send: Option<String>,
    /// `http` group: the raw bytes sent on a fresh TCP connection.
    request: Option<String>,
    expect: Option<Expect>,
    #[serde(default)]
    steps: Vec<Step>,
}

/// The server configuration a case runs against; one server per profile
/// and group, started on first use.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
enum Profile {
    #[default]
    Default,
    /// CCX_ALLOWED_COMMANDS=echo,sleep
    Allowlist,
    /// WS_MAX_SIZE=64KiB, CCX_MAX_SESSIONS=3
    Small,
    /// CCX_TOKEN=hostile-token
    Token,
}

impl Profile {
    fn env(self) -> Vec<(&'static str, &'static str)> {
        let mut env = vec![("CCX_KILL_GRACE", "1s"), ("CCX_HANDSHAKE_TIMEOUT", "2s")];
        match self {
            Profile::Default => {}
            Profile::Allowlist => env.push(("CCX_ALLOWED_COMMANDS", "echo,sleep")),
            Profile::Small => {
                env.push(("WS_MAX_SIZE", "64KiB"));
                env.push(("CCX_MAX_SESSIONS", "3"));
            }
            Profile::Token => env.push(("CCX_TOKEN", TOKEN)),
        }
        env
    }
}

/// One step of a case: exactly one action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// A text frame (templates expanded).
    send: Option<String>,
    /// A hand-built frame written on the TCP stream.
    frame: Option<RawFrame>,
    /// Bytes written on the TCP stream as they are (hex).
    raw_hex: Option<String>,
    wait_ms: Option<u64>,
    /// Drops the TCP connection without a close frame.
    disconnect: Option<bool>,
    /// Opens this many more sessions, held until the case ends.
    hold: Option<usize>,
    /// Opens one more connection and checks what it gets.
    connect: Option<Expect>,
    /// No process whose environment has DOCTOR_CHECKS_RUN=MARKER may be
    /// left after GONE_WITHIN (commands mark themselves through `env`).
    gone: Option<String>,
    expect: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrame {
    opcode: u8,
    #[serde(default = "yes")]
    fin: bool,
    #[serde(default)]
    rsv: u8,
    #[serde(default = "yes")]
    masked: bool,
    #[serde(default)]
    payload: String,
    payload_hex: Option<String>,
    /// A length to announce instead of the payload's.
    declared_len: Option<u64>,
}

fn yes() -> bool {
    true
}

/// What a step waits for.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// A JSON-RPC error with this code.
    error: Option<i64>,
    /// A JSON-RPC result.
    result: Option<bool>,
    /// The id the answer must carry, as raw JSON text (byte-identical).
    /// By default: the id of the last text sent when it is readable, else null.
    id: Option<String>,
    /// A substring of the error message.
    message: Option<String>,
    /// A notification with this method.
    notification: Option<String>,
    /// A substring of the notification's `params.data` (process.output).
    data: Option<String>,
    /// `status` of the result or of the notification's params.
    status: Option<String>,
    /// A close frame with this code.
    close: Option<u16>,
    /// No frame at all for this long.
    nothing_ms: Option<u64>,
    /// `http` group: the response's status code.
    http: Option<u16>,
    /// `http` group: a substring of the response.
    body: Option<String>,
    /// `http` group: the server closes the connection (a response first is allowed).
    closed: Option<bool>,
    within_s: Option<f64>,
}

impl Expect {
    fn within(&self) -> Duration {
        self.within_s
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_WITHIN)
    }
}

/// Expands `⟦N*TEXT⟧` into TEXT repeated N times, so that huge inputs stay
/// readable in the data files.
fn expand(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('⟦') {
        out.push_str(&rest[..start]);
        let after = &rest[start + '⟦'.len_utf8()..];
        let end = after.find('⟧').expect("unterminated ⟦");
        let (count, text) = after[..end].split_once('*').expect("⟦N*TEXT⟧");
        let count: usize = count.trim().parse().expect("repeat count");
        out.push_str(&text.repeat(count));
        rest = &after[end + '⟧'.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).expect("hex"))
        .collect()
}

/// A client frame, masked unless the case says otherwise.
fn encode(frame: &RawFrame) -> Vec<u8> {
    let payload = match &frame.payload_hex {
        Some(h) => hex(h),
        None => expand(&frame.payload).into_bytes(),
    };
    let mut out = vec![(u8::from(frame.fin) << 7) | ((frame.rsv & 7) << 4) | (frame.opcode & 15)];
    let len = frame.declared_len.unwrap_or(payload.len() as u64);
    let mask_bit = u8::from(frame.masked) << 7;
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as u64 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if frame.masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(&payload);
    }
    out
}

/// The id the server must answer with: the raw id of `text` when it is a
/// JSON object whose id is a string, a number or null; else null.
fn default_id(text: &str) -> String {
    #[derive(Deserialize)]
    struct WithId<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    match serde_json::from_str::<WithId>(text) {
        Ok(WithId { id: Some(raw) }) => {
            let v: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            if v.is_string() || v.is_number() {
                raw.get().to_string()
            } else {
                "null".into()
            }
        }
        _ => "null".into(),
    }
}

/// A frame the server sent, with its id as raw JSON text.
struct Reply {
    text: String,
    value: Value,
    raw_id: Option<String>,
}

impl Reply {
    fn parse(text: String) -> Result<Reply, String> {
        #[derive(Deserialize)]
        struct WithId<'a> {
            #[serde(borrow)]
            id: Option<&'a RawValue>,
        }
        // An id the grammar allows may be a number no f64 holds (1e400):
        // the frame is then read member by member, the id kept as text.
        let value: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                let members: BTreeMap<String, &RawValue> = serde_json::from_str(&text)
                    .map_err(|_| format!("server sent invalid JSON ({e}): {text}"))?;
                let mut object = serde_json::Map::new();
                for (name, raw) in members {
                    let member = match serde_json::from_str(raw.get()) {
                        Ok(member) => member,
                        Err(_) if name == "id" => Value::Null,
                        Err(e) => return Err(format!("server sent invalid JSON ({e}): {text}")),
                    };
                    object.insert(name, member);
                }
                Value::Object(object)
            }
        };
        if value.get("jsonrpc") != Some(&Value::from("2.0")) {
            return Err(format!(
                "server sent a frame without \"jsonrpc\":\"2.0\": {text}"
            ));
        }
        let raw_id = value.get("id").map(|_| {
            serde_json::from_str::<WithId>(&text)
                .ok()
                .and_then(|w| w.id.map(|r| r.get().to_string()))
                .unwrap_or_else(|| "null".into())
        });
        Ok(Reply {
            text,
            value,
            raw_id,
        })
    }

    fn is_notification(&self) -> bool {
        self.value.get("method").is_some() && self.raw_id.is_none()
    }
}

/// What came out of the socket.
enum Incoming {
    Frame(Reply),
    Close(Option<u16>),
    /// The stream ended or failed without a close frame.
    Ended(String),
}

/// A WebSocket connection of a case.
struct Conn {
    ws: Ws,
    open: bool,
}

impl Conn {
    async fn connect(port: u16, profile: Profile) -> Result<(Conn, Reply), String> {
        let (mut conn, _) = Conn::handshake(port, profile).await?;
        match conn.next(DEFAULT_WITHIN).await? {
            Incoming::Frame(r) if r.value["method"] == "connected" => Ok((conn, r)),
            Incoming::Frame(r) => Err(format!("expected `connected`, got {}", r.text)),
            Incoming::Close(code) => Err(format!("closed on connect with {code:?}")),
            Incoming::Ended(why) => Err(format!("ended on connect: {why}")),
        }
    }

    /// Upgrades without reading anything after the 101.
    async fn handshake(port: u16, profile: Profile) -> Result<(Conn, u16), String> {
        let tcp = timeout(DEFAULT_WITHIN, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| "TCP connect timed out".to_string())?
            .map_err(|e| format!("TCP connect: {e}"))?;
        let mut request = format!("ws://127.0.0.1:{port}/ws/mcp")
            .into_client_request()
            .unwrap();
        if profile == Profile::Token {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
            );
        }
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, response) = timeout(
            DEFAULT_WITHIN,
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config)),
        )
        .await
        .map_err(|_| "WebSocket handshake timed out".to_string())?
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
        Ok((Conn { ws, open: true }, response.status().as_u16()))
    }

    async fn send_text(&mut self, text: String) -> Result<(), String> {
        timeout(DEFAULT_WITHIN, self.ws.send(Message::text(text)))
            .await
            .map_err(|_| "sending a text frame timed out".to_string())?
            .map_err(|e| format!("sending a text frame: {e}"))
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let tcp = self.ws.get_mut();
        timeout(DEFAULT_WITHIN, tcp.write_all(bytes))
            .await
            .map_err(|_| "writing raw bytes timed out".to_string())?
            .map_err(|e| format!("writing raw bytes: {e}"))
    }

    async fn next(&mut self, within: Duration) -> Result<Incoming, String> {
        loop {
            let message = match timeout(within, self.ws.next()).await {
                Err(_) => return Err(format!("nothing arrived within {within:?}")),
                Ok(None) => {
                    self.open = false;
                    return Ok(Incoming::Ended("stream ended".into()));
                }
                Ok(Some(Err(e))) => {
                    self.open = false;
                    return Ok(Incoming::Ended(e.to_string()));
                }
                Ok(Some(Ok(m))) => m,
            };
            match message {
                Message::Text(t) => return Reply::parse(t.to_string()).map(Incoming::Frame),
                Message::Close(frame) => {
                    self.open = false;
                    return Ok(Incoming::Close(frame.map(|f| u16::from(f.code))));
                }
                Message::Binary(b) => {
                    return Err(format!("server sent a binary frame of {} bytes", b.len()))
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Waits for what `expect` describes, skipping notifications that come
    /// before an expected response or another notification.
    async fn expect(&mut self, expect: &Expect, last_sent: Option<&str>) -> Result<(), String> {
        let within = expect.within();
        let deadline = Instant::now() + within;
        if let Some(ms) = expect.nothing_ms {
            let quiet = Duration::from_millis(ms);
            let end = Instant::now() + quiet;
            loop {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                match self.next(left).await {
                    Err(_) => return Ok(()),
                    Ok(Incoming::Frame(r)) if is_heartbeat(&r) => {}
                    Ok(Incoming::Frame(r)) => {
                        return Err(format!("expected silence, got {}", r.text))
                    }
                    Ok(Incoming::Close(c)) => {
                        return Err(format!("expected silence, got close {c:?}"))
                    }
                    Ok(Incoming::Ended(why)) => {
                        return Err(format!("expected silence, connection ended: {why}"))
                    }
                }
            }
        }
        let mut answered = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let incoming = self
                .next(left.max(Duration::from_millis(1)))
                .await
                .map_err(|e| format!("waiting for {}: {e}", describe(expect)))?;
            match incoming {
                Incoming::Close(code) => {
                    if expect.error.is_some() && !answered {
                        return Err(format!(
                            "expected {} before the close, got close {code:?}",
                            describe(expect)
                        ));
                    }
                    return match expect.close {
                        Some(want) if code == Some(want) => Ok(()),
                        _ => Err(format!(
                            "expected {}, got close {}",
                            describe(expect),
                            code.map_or("without a code (1005)".into(), |c| c.to_string())
                        )),
                    };
                }
                Incoming::Ended(why) => {
                    return Err(format!(
                        "expected {}, the connection ended without a close frame (1006): {why}",
                        describe(expect)
                    ))
                }
                Incoming::Frame(reply) => {
                    if reply.is_notification() {
                        let method = reply.value["method"].as_str().unwrap_or("");
                        if expect.notification.as_deref() == Some(method) {
                            if let Some(part) = &expect.data {
                                let data = reply.value["params"]["data"].as_str().unwrap_or("");
                                if !data.contains(part.as_str()) {
                                    return Err(format!(
                                        "expected output containing {part:?}, got {}",
                                        clip(&reply.text)
                                    ));
                                }
                            }
                            return check_status(expect, &reply.value["params"], &reply.text);
                        }
                        continue;
                    }
                    // A response (has an id): it must be the one expected.
                    if expect.close.is_some() {
                        if expect.error.is_some() {
                            // An error, then the close.
                            check_response(expect, &reply, last_sent)?;
                            answered = true;
                            continue;
                        }
                        // A close is expected; an error response before it is allowed.
                        if reply.value.get("error").is_some() {
                            continue;
                        }
                    }
                    return check_response(expect, &reply, last_sent);
                }
            }
        }
    }
}

fn is_heartbeat(reply: &Reply) -> bool {
    reply.value["method"] == "ping"
}

fn describe(expect: &Expect) -> String {
    if let Some(code) = expect.error {
        format!("error {code}")
    } else if expect.result.is_some() {
        "a result".into()
    } else if let Some(n) = &expect.notification {
        format!("notification {n}")
    } else if let Some(c) = expect.close {
        format!("close {c}")
    } else {
        format!("{expect:?}")
    }
}

fn check_status(expect: &Expect, holder: &Value, text: &str) -> Result<(), String> {
    match &expect.status {
        Some(want) if holder["status"] != want.as_str() => {
            Err(format!("expected status {want:?}, got {text}"))
        }
        _ => Ok(()),
    }
}

fn check_response(expect: &Expect, reply: &Reply, last_sent: Option<&str>) -> Result<(), String> {
    let want_id = match (&expect.id, last_sent) {
        (Some(id), _) => id.clone(),
        (None, Some(sent)) => default_id(sent),
        (None, None) => "null".into(),
    };
    let got_id = reply.raw_id.clone().unwrap_or_default();
    if got_id != want_id {
        return Err(format!(
            "expected id {want_id} (byte-identical), got {got_id}: {}",
            clip(&reply.text)
        ));
    }
    if let Some(code) = expect.error {
        let got = reply.value["error"]["code"].as_i64();
        if got != Some(code) {
            return Err(format!("expected error {code}, got {}", clip(&reply.text)));
        }
        if let Some(part) = &expect.message {
            let message = reply.value["error"]["message"].as_str().unwrap_or("");
            if !message.contains(part.as_str()) {
                return Err(format!(
                    "expected the message to contain {part:?}, got {}",
                    clip(&reply.text)
                ));
            }
        }
        return Ok(());
    }
    if expect.result.is_some() {
        if reply.value.get("result").is_none() {
            return Err(format!("expected a result, got {}", clip(&reply.text)));
        }
        return check_status(expect, &reply.value["result"], &reply.text);
    }
    Err(format!(
        "expected {}, got the response {}",
        describe(expect),
        clip(&reply.text)
    ))
}

fn clip(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_string();
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Runs `echo NONCE` on `conn` and checks result, output and completion.
async fn echo_works(conn: &mut Conn, nonce: &str) -> Result<(), String> {
    let id = format!("\"check-{nonce}\"");
    conn.send_text(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"execute","params":{{"command":"echo {nonce}"}}}}"#
    ))
    .await?;
    let deadline = Instant::now() + DEFAULT_WITHIN;
    let mut pid = None;
    let mut saw_output = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let reply = match conn.next(left.max(Duration::from_millis(1))).await? {
            Incoming::Frame(r) => r,
            Incoming::Close(c) => return Err(format!("echo check: closed with {c:?}")),
            Incoming::Ended(why) => return Err(format!("echo check: connection ended: {why}")),
        };
        let v = &reply.value;
        if reply.raw_id.as_deref() == Some(id.as_str()) {
            if v.get("error").is_some() {
                return Err(format!("echo check refused: {}", clip(&reply.text)));
            }
            pid = v["result"]["pid"].as_u64();
            continue;
        }
        if reply.raw_id.is_some() {
            return Err(format!(
                "echo check: an unexpected response {}",
                clip(&reply.text)
            ));
        }
        let Some(pid) = pid else { continue };
        match v["method"].as_str() {
            Some("process.output")
                if v["params"]["data"].as_str().unwrap_or("").contains(nonce) =>
            {
                saw_output = true
            }
            Some("process.completed") if v["params"]["pid"].as_u64() == Some(pid) => {
                if v["params"]["exit_code"] != 0 || !saw_output {
                    return Err(format!(
                        "echo check: completed without its output: {}",
                        reply.text
                    ));
                }
                return Ok(());
            }
            _ => {}
        }
    }
}

async fn health_works(port: u16) -> Result<(), String> {
    let response = http_exchange(
        port,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        DEFAULT_WITHIN,
    )
    .await?;
    match status_of(&response) {
        Some(200) => Ok(()),
        _ => Err(format!(
            "/health answered {}",
            clip(&String::from_utf8_lossy(&response))
        )),
    }
}

/// Sends `request` on a fresh TCP connection and reads until the server closes
/// it or `within` passes (then what arrived so far, or an error if nothing).
async fn http_exchange(port: u16, request: &[u8], within: Duration) -> Result<Vec<u8>, String> {
    let mut tcp = timeout(within, TcpStream::connect(("127.0.0.1", port)))
        .await
        .map_err(|_| "TCP connect timed out".to_string())?
        .map_err(|e| format!("TCP connect: {e}"))?;
    let _ = tcp.write_all(request).await;
    let mut response = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(response),
            Ok(Ok(n)) => {
                response.extend_from_slice(&buf[..n]);
                if complete_response(&response) {
                    return Ok(response);
                }
            }
            Err(_) if response.is_empty() => {
                return Err(format!("no answer and not closed within {within:?}"))
            }
            Err(_) => return Ok(response),
        }
    }
}

/// A response whose head has arrived and whose body (by Content-Length) too,
/// or a 101 (nothing follows in HTTP).
fn complete_response(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    if status_of(bytes) == Some(101) {
        return true;
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => bytes.len() >= end + 4 + n,
        None => false,
    }
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|p| p.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Whether the server closes a connection that sent `request`, within `within`.
async fn closed_after(port: u16, request: &[u8], within: Duration) -> Result<(), String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("TCP connect: {e}"))?;
    let _ = tcp.write_all(request).await;
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
            Err(_) => {
                return Err(format!(
                    "the server kept the connection open for {within:?}"
                ))
            }
        }
    }
}

/// The servers of one group, one per profile, started on first use.
#[derive(Default)]
struct Servers(HashMap<Profile, TestServer>);

impl Servers {
    fn get(&mut self, profile: Profile) -> &TestServer {
        self.0
            .entry(profile)
            .or_insert_with(|| TestServer::start_with(&profile.env(), &[]))
    }
}

/// Runs one case; `Ok` when the server answered as expected and still works.
async fn run_case(case: &Case, server: &TestServer, index: usize) -> Result<(), String> {
    let port = server.port;
    let profile = case.server;
    if let Some(request) = &case.request {
        let request = expand(request).into_bytes();
        let expect = case.expect.clone().unwrap_or_default();
        if expect.closed == Some(true) {
            closed_after(port, &request, expect.within()).await?;
        } else {
            let response = http_exchange(port, &request, expect.within()).await?;
            let status = status_of(&response);
            if status != expect.http {
                return Err(format!(
                    "expected HTTP {:?}, got {}",
                    expect.http,
                    clip(&String::from_utf8_lossy(&response))
                ));
            }
            if let Some(part) = &expect.body {
                if !String::from_utf8_lossy(&response).contains(part.as_str()) {
                    return Err(format!(
                        "expected the response to contain {part:?}: {}",
                        clip(&String::from_utf8_lossy(&response))
                    ));
                }
            }
        }
        return after_case(None, port, profile, index).await;
    }

    let mut steps: Vec<Step> = Vec::new();
    if let Some(send) = &case.send {
        steps.push(Step {
            send: Some(send.clone()),
            ..Step::default()
        });
        if let Some(expect) = &case.expect {
            steps.push(Step {
                expect: Some(expect.clone()),
                ..Step::default()
            });
        }
    }
    let steps: Vec<&Step> = steps.iter().chain(case.steps.iter()).collect();
    let (mut conn, _) = Conn::connect(port, profile).await?;
    let mut held = Vec::new();
    let mut last_sent: Option<String> = None;
    let mut keeps_open = true;
    for (n, step) in steps.iter().enumerate() {
        let at = |e: String| format!("step {}: {e}", n + 1);
        if let Some(text) = &step.send {
            let text = expand(text);
            conn.send_text(text.clone()).await.map_err(at)?;
            last_sent = Some(text);
        } else if let Some(frame) = &step.frame {
            conn.send_raw(&encode(frame)).await.map_err(at)?;
            last_sent = None;
        } else if let Some(h) = &step.raw_hex {
            conn.send_raw(&hex(&expand(h))).await.map_err(at)?;
            last_sent = None;
        } else if let Some(ms) = step.wait_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        } else if step.disconnect == Some(true) {
            keeps_open = false;
            let _ = conn.ws.get_mut().shutdown().await;
            conn.open = false;
        } else if let Some(count) = step.hold {
            for _ in 0..count {
                held.push(Conn::connect(port, profile).await.map_err(at)?.0);
            }
        } else if let Some(expect) = &step.connect {
            let (mut extra, status) = Conn::handshake(port, profile).await.map_err(at)?;
            if status != 101 {
                return Err(at(format!("extra connection got HTTP {status}")));
            }
            extra.expect(expect, None).await.map_err(at)?;
        } else if let Some(marker) = &step.gone {
            let marker = marker.clone();
            let left = tokio::task::spawn_blocking(move || {
                let gone = common::eventually(GONE_WITHIN, || {
                    common::marked_processes(&marker).is_empty()
                });
                (!gone).then(|| common::marked_processes(&marker))
            })
            .await
            .unwrap();
            if let Some(left) = left {
                return Err(at(format!(
                    "processes left {GONE_WITHIN:?} after their command ended: {left:?}"
                )));
            }
        } else if let Some(expect) = &step.expect {
            if expect.close.is_some() {
                keeps_open = false;
            }
            conn.expect(expect, last_sent.as_deref())
                .await
                .map_err(at)?;
        } else {
            return Err(at("a step without an action".into()));
        }
    }
    drop(held);
    let conn = if keeps_open {
        if !conn.open {
            return Err("the connection was closed, but it should stay open".into());
        }
        Some(conn)
    } else {
        None
    };
    after_case(conn, port, profile, index).await
}

/// The connection of the case (when it stays open), a fresh session and
/// `/health` must all still work.
async fn after_case(
    conn: Option<Conn>,
    port: u16,
    profile: Profile,
    index: usize,
) -> Result<(), String> {
    if let Some(mut conn) = conn {
        echo_works(&mut conn, &format!("same{index}x"))
            .await
            .map_err(|e| format!("after the case, its own connection: {e}"))?;
    }
    // Held sessions of the case may take a moment to be released.
    let deadline = Instant::now() + DEFAULT_WITHIN;
    let fresh = loop {
        let attempt = async {
            let (mut fresh, _) = Conn::connect(port, profile).await?;
            echo_works(&mut fresh, &format!("fresh{index}x")).await
        };
        match attempt.await {
            Ok(()) => break Ok(()),
            Err(e) if Instant::now() > deadline => break Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    fresh.map_err(|e| format!("after the case, a fresh session: {e}"))?;
    health_works(port)
        .await
        .map_err(|e| format!("after the case, /health: {e}"))
}

/// Runs every case of `tests/hostile/GROUP.toml` and fails listing those
/// that did not pass.
async fn run_group(group: &str) {
    let path = format!("{}/tests/hostile/{group}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let data: Group = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut names = std::collections::HashSet::new();
    for case in &data.cases {
        assert!(
            names.insert(&case.name),
            "{path}: duplicate case {}",
            case.name
        );
    }
    let mut servers = Servers::default();
    let mut failures = Vec::new();
    for (index, case) in data.cases.iter().enumerate() {
        let server = servers.get(case.server);
        let started = Instant::now();
        let outcome = timeout(Duration::from_secs(60), run_case(case, server, index))
            .await
            .unwrap_or_else(|_| Err("the case took more than 60 s".into()));
        match outcome {
            Ok(()) => eprintln!("pass {group}/{} ({:?})", case.name, started.elapsed()),
            Err(e) => {
                eprintln!("FAIL {group}/{}: {e}", case.name);
                failures.push(format!("{group}/{}: {e}", case.name));
            }
        }
    }
    eprintln!(
        "{group}: {} of {} cases pass",
        data.cases.len() - failures.len(),
        data.cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {group} cases failed:\n{}",
        failures.len(),
        data.cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_parse() {
    run_group("parse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_envelope() {
    run_group("envelope").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_params() {
    run_group("params").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_control() {
    run_group("control").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_frames() {
    run_group("frames").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_session() {
    run_group("session").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_http() {
    run_group("http").await;
}

/// A server started under `sh -c 'ulimit -n LIMIT; exec ccx serve …'`, with
/// its stderr drained (and kept) so that a log flood cannot block it.
struct LimitedServer {
    child: std::process::Child,
    port: u16,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    _state_dir: tempfile::TempDir,
}

impl LimitedServer {
    fn start(fd_limit: u32, env: &[(&str, &str)]) -> LimitedServer {
        use std::io::{BufRead, Read};
        use std::process::{Command, Stdio};
        let state_dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -n {fd_limit} && exec \"$0\" serve --foreground --port 0"
            ))
            .arg(common::BIN);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("CCX_") || name.starts_with("WS_") || name.ends_with("_PROXY") {
                cmd.env_remove(name);
            }
        }
        cmd.env("CCX_STATE_DIR", state_dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("readiness line").unwrap();
        std::thread::spawn(move || for _ in lines {});
        let ready: Value = serde_json::from_str(&line).unwrap();
        LimitedServer {
            child,
            port: ready["port"].as_u64().unwrap() as u16,
            stderr,
            _state_dir: state_dir,
        }
    }
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        let left = common::descendants(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Issue 12, acceptance 1: 300 silent or half-sent connections against a
/// server with 256 file descriptors lock nobody out, and are closed.
#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_do_not_lock_out_a_fresh_client() {
    const DEADLINE: Duration = Duration::from_secs(2);
    let server = LimitedServer::start(256, &[("CCX_HANDSHAKE_TIMEOUT", "2s")]);
    let port = server.port;
    let mut silent = Vec::new();
    for n in 0..300 {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        if n % 2 == 0 {
            tcp.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .unwrap();
        }
        silent.push(tcp);
    }
    // A fresh client gets in within the handshake deadline (plus slack for
    // a loaded 2-core machine), without waiting for the silent ones to leave.
    let within = DEADLINE + Duration::from_secs(3);
    let started = Instant::now();
    let health = timeout(within, health_works(port)).await;
    let log = server.stderr.lock().unwrap().clone();
    assert!(
        matches!(health, Ok(Ok(()))),
        "/health with 300 silent connections: {health:?} after {:?}; server log:\n{}",
        started.elapsed(),
        clip(&log)
    );
    let echo = timeout(within, async {
        let (mut conn, _) = Conn::connect(port, Profile::Default).await?;
        echo_works(&mut conn, "fresh-after-300").await
    })
    .await;
    assert!(
        matches!(echo, Ok(Ok(()))),
        "WebSocket echo with 300 silent connections: {echo:?} after {:?}",
        started.elapsed()
    );
    // Every silent connection is closed by the server.
    let closed = futures_util::future::join_all(silent.iter_mut().map(|tcp| async {
        let mut buf = [0u8; 1024];
        loop {
            match timeout(DEADLINE + Duration::from_secs(8), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }))
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 0, "{open} of 300 silent connections still open");
    let log = server.stderr.lock().unwrap().clone();
    let accept_errors = log.matches("accept error").count();
    assert!(
        accept_errors <= 5,
        "{accept_errors} accept errors logged: the listener must back off"
    );
}

/// Issue 12, acceptance 2: a `server.info` with 100,000 names is refused
/// with -32602, and /health answers within 50 ms meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn huge_server_info_does_not_stall_health() {
    let server = TestServer::start();
    let port = server.port;
    let names = vec!["no-such-program"; 100_000];
    let request = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "server.info",
        "params": {"require": names},
    })
    .to_string();
    let mut slowest = Duration::MAX;
    for _round in 0..3 {
        let (mut conn, _) = Conn::connect(port, Profile::Default).await.unwrap();
        conn.send_text(request.clone()).await.unwrap();
        let probe = async {
            let mut worst = Duration::ZERO;
            for _ in 0..10 {
                let started = Instant::now();
                health_works(port).await.unwrap();
                worst = worst.max(started.elapsed());
            }
            worst
        };
        let answer = async {
            let expect = Expect {
                error: Some(-32602),
                message: Some("require".into()),
                within_s: Some(10.0),
                ..Expect::default()
            };
            conn.expect(&expect, Some(&request)).await
        };
        let (worst, answered) = tokio::join!(probe, answer);
        answered.unwrap();
        slowest = slowest.min(worst);
        if slowest < Duration::from_millis(50) {
            break;
        }
    }
    assert!(
        slowest < Duration::from_millis(50),
        "/health took {slowest:?} while server.info ran"
    );
}

/// What one client of [`sessions_over_the_fd_budget_are_refused_not_starved`]
/// got.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Outcome {
    Completed,
    Refused,
    Failed(String),
}

/// One session that runs `sleep 2; echo NONCE` to its end, or is refused
/// at once: with -32003 (session cap) or HTTP 503 (pending cap).
async fn long_echo(port: u16, nonce: String) -> Outcome {
    let (mut conn, _) = match Conn::handshake(port, Profile::Default).await {
        Ok(pair) => pair,
        // A burst past the pending cap is answered 503 + Retry-After.
        Err(e) if e.contains("503") => return Outcome::Refused,
        Err(e) => return Outcome::Failed(e),
    };
    let first = match conn.next(DEFAULT_WITHIN).await {
        Ok(Incoming::Frame(r)) => r,
        other => return Outcome::Failed(format!("on connect: {:?}", other.map(|_| ()))),
    };
    if first.value["error"]["code"] == -32003 {
        return Outcome::Refused;
    }
    if first.value["method"] != "connected" {
        return Outcome::Failed(format!("on connect: {}", first.text));
    }
    let request = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"execute","params":{{"command":"sleep 2; echo {nonce}"}}}}"#
    );
    if let Err(e) = conn.send_text(request).await {
        return Outcome::Failed(e);
    }
    let mut output = String::new();
    loop {
        match conn.next(Duration::from_secs(15)).await {
            Ok(Incoming::Frame(r)) => {
                let v = &r.value;
                if v.get("error").is_some() {
                    return Outcome::Failed(format!("execute refused: {}", r.text));
                }
                match v["method"].as_str() {
                    Some("process.output") => {
                        output.push_str(v["params"]["data"].as_str().unwrap_or(""))
                    }
                    Some("process.completed") => {
                        return if v["params"]["exit_code"] == 0 && output.contains(&nonce) {
                            Outcome::Completed
                        } else {
                            Outcome::Failed(format!("completed: {} (output {output:?})", r.text))
                        };
                    }
                    _ => {}
                }
            }
            Ok(_) => return Outcome::Failed("closed before completion".into()),
            Err(e) => return Outcome::Failed(e),
        }
    }
}

/// Out of descriptors: with `ulimit -n 256`, the server lowers its session
/// cap to what the limit holds and says so at start; 100 clients running
/// commands at once (more than the limit holds) are each served or refused
/// at once with -32003 or 503 (none
/// fails with "Too many open files", none waits unanswered), `/health`
/// answers meanwhile, and a fresh client is served afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_over_the_fd_budget_are_refused_not_starved() {
    let server = LimitedServer::start(256, &[]);
    let port = server.port;
    let clients = (0..100).map(|n| tokio::spawn(long_echo(port, format!("budget-{n}"))));
    let clients: Vec<_> = clients.collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = timeout(Duration::from_secs(2), health_works(port)).await;
    assert!(
        matches!(health, Ok(Ok(()))),
        "/health while 100 clients hold sessions: {health:?}"
    );
    let mut tally = std::collections::HashMap::<String, usize>::new();
    let mut failures = Vec::new();
    for client in clients {
        match client.await.unwrap() {
            Outcome::Failed(why) => failures.push(why),
            other => *tally.entry(format!("{other:?}")).or_default() += 1,
        }
    }
    let log = server.stderr.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{failures:#?}\nserver log:\n{}",
        clip(&log)
    );
    let completed = tally.get("Completed").copied().unwrap_or(0);
    assert!(
        (1..=9).contains(&completed),
        "{tally:?}: the fd budget of 256 holds 9 sessions"
    );
    assert!(
        log.contains("CCX_MAX_SESSIONS lowered from 256 to 9"),
        "the start does not say the session cap was lowered:\n{}",
        clip(&log)
    );
    let (mut conn, _) = Conn::connect(port, Profile::Default).await.unwrap();
    echo_works(&mut conn, "after-the-crowd").await.unwrap();
}
