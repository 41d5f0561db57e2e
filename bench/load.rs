//! The load generator: a WebSocket client of its own on tokio-tungstenite
//! (not ccx's client, so the client costs the same for every server). It
//! speaks just enough of the protocol to time it: persistent sessions with
//! sequential `execute` round trips, N concurrent closed-loop clients,
//! one-shot connections (ccx's protocol and websocketd's line protocol),
//! streaming (bytes of every `process.output`), and idle sessions.
//!
//! Every wait has a deadline and every loop a bound in count and time.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64_simd::STANDARD;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::BenchError;

/// Deadline for a connection (TCP + handshake + `connected`).
const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// Deadline for any single message while a command runs.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server to load: its name (for messages) and WebSocket URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    pub url: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.url)
    }
}

/// Latencies in nanoseconds, 1 ns .. 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("constant histogram bounds are valid")
}

/// A count of completed operations over a wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    pub count: u64,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn add(&mut self, other: Throughput) {
        self.count += other.count;
        self.elapsed += other.elapsed;
    }
}

async fn connect(target: &Target) -> Result<Ws, BenchError> {
    let url = target.url.as_str();
    let label = target.to_string();
    let config = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let handshake = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = timeout(CONNECT_DEADLINE, handshake)
        .await
        .map_err(|_| BenchError::wire(&label, "no WebSocket handshake within 15 s"))?
        .map_err(|e| BenchError::wire(&label, format!("WebSocket connect: {e}")))?;
    Ok(ws)
}

/// The fields of a server message the bench reads.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Params<'a> {
    /// The string literal as it came: its length is counted without
    /// building it (an allocation and a copy per line showed in P9's
    /// profile of this client).
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// `base64` in the batched framing: `data` carries the bytes encoded.
    #[serde(borrow, default)]
    encoding: Option<Cow<'a, str>>,
    #[serde(default)]
    exit_code: Option<i64>,
}

/// What one `execute` produced.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// Bytes of all `process.output` data.
    pub bytes: u64,
    /// Number of `process.output` messages.
    pub messages: u64,
    pub exit_code: Option<i64>,
    /// The first bytes of the output, to check a command's answer.
    pub head: String,
}

/// A persistent session with a server of ccx's protocol (ccx or the peer).
pub struct McpSession {
    ws: Ws,
    label: String,
    next_id: u64,
}

impl McpSession {
    /// Connect and wait for the `connected` notification.
    pub async fn open(target: &Target) -> Result<Self, BenchError> {
        let deadline = Instant::now() + CONNECT_DEADLINE;
        let mut ws = connect(target).await?;
        let url = target.to_string();
        let url = url.as_str();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = match timeout(left, ws.next()).await {
                Err(_) => return Err(BenchError::wire(url, "no `connected` within 15 s")),
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {
                    return Err(BenchError::wire(url, "closed before `connected`"))
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return Err(BenchError::wire(url, format!("read: {e}"))),
            };
            let msg: Incoming = serde_json::from_str(text.as_str())
                .map_err(|e| BenchError::wire(url, format!("not JSON-RPC ({e}): {text}")))?;
            if msg.method.as_deref() == Some("connected") {
                break;
            }
        }
        Ok(McpSession {
            ws,
            label: url.to_string(),
            next_id: 0,
        })
    }

    /// `execute` a command and read until both its result and its
    /// `process.completed` have arrived.
    pub async fn run(&mut self, command: &str) -> Result<RunOutcome, BenchError> {
        self.run_framed(command, None).await
    }

    /// [`McpSession::run`] asking for `framing` (`"batched"`: ccx's own
    /// clients' framing; none: one message per line).
    pub async fn run_framed(
        &mut self,
        command: &str,
        framing: Option<&str>,
    ) -> Result<RunOutcome, BenchError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "execute", "params": {"command": command}
        });
        if let Some(framing) = framing {
            request["params"]["framing"] = framing.into();
        }
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .map_err(|e| self.err(format!("send: {e}")))?;
        let mut out = RunOutcome::default();
        let (mut answered, mut completed) = (false, false);
        while !(answered && completed) {
            // A message already read costs no deadline (a clock read each,
            // a million times in P9); only a wait gets one.
            let next = match self.ws.next().now_or_never() {
                Some(next) => Ok(next),
                None => timeout(MESSAGE_DEADLINE, self.ws.next()).await,
            };
            let text = match next {
                Err(_) => return Err(self.err("no message for 60 s while a command ran")),
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {
                    return Err(self.err("the server closed the session during a command"))
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => return Err(self.err(format!("read: {e}"))),
            };
            let msg: Incoming = serde_json::from_str(text.as_str())
                .map_err(|e| self.err(format!("not JSON-RPC ({e})")))?;
            if msg.id == Some(id) {
                if let Some(error) = msg.error {
                    return Err(self.err(format!("execute failed: {error}")));
                }
                answered = true;
                continue;
            }
            match msg.method.as_deref() {
                Some("process.output") => {
                    out.messages += 1;
                    let Some(data) = msg.params.as_ref().and_then(|p| p.data) else {
                        continue;
                    };
                    let base64 = msg.params.as_ref().and_then(|p| p.encoding.as_deref());
                    let head = out.head.len() < 64;
                    let bytes = match base64 {
                        Some("base64") => {
                            let text: Cow<str> = serde_json::from_str(data.get())
                                .map_err(|e| self.err(format!("`data` is not a string ({e})")))?;
                            let decoded = STANDARD
                                .decode_to_vec(text.as_bytes())
                                .map_err(|e| self.err(format!("`data` is not base64 ({e})")))?;
                            if head {
                                out.head
                                    .extend(String::from_utf8_lossy(&decoded).chars().take(64));
                            }
                            decoded.len()
                        }
                        _ => {
                            let len = string_len(data.get()).ok_or_else(|| {
                                self.err(format!("`data` is not a JSON string: {}", data.get()))
                            })?;
                            if head {
                                // The first messages are decoded in full, which
                                // also checks the count against serde's.
                                let text: Cow<str> =
                                    serde_json::from_str(data.get()).map_err(|e| {
                                        self.err(format!("`data` is not a string ({e})"))
                                    })?;
                                if text.len() != len {
                                    return Err(self.err(format!(
                                        "counted {len} bytes in {}, serde reads {}",
                                        data.get(),
                                        text.len()
                                    )));
                                }
                                out.head.extend(text.chars().take(64));
                            }
                            len
                        }
                    };
                    out.bytes += bytes as u64;
                }
                Some("process.completed") => {
                    out.exit_code = msg.params.and_then(|p| p.exit_code);
                    completed = true;
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Close handshake: send Close, read until the server's Close.
    pub async fn close(mut self) -> Result<(), BenchError> {
        let _ = self.ws.close(None).await;
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        timeout(Duration::from_secs(5), drain)
            .await
            .map_err(|_| self.err("no Close answer within 5 s"))
    }

    fn err(&self, reason: impl Into<String>) -> BenchError {
        BenchError::wire(&self.label, reason)
    }
}

/// Bytes of the text a JSON string literal (quotes included) stands for,
/// counted without building it; `None` when it is not a valid string.
fn string_len(literal: &str) -> Option<usize> {
    let mut rest = literal.strip_prefix('"')?.strip_suffix('"')?.as_bytes();
    let mut len = 0;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        len += at;
        let (&escape, after) = rest.get(at + 1..)?.split_first()?;
        rest = after;
        len += match escape {
            b'u' => {
                let unit = hex4(rest)?;
                rest = &rest[4..];
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate: with its low half, one 4-byte character.
                    let low = hex4(rest.strip_prefix(b"\\u")?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    rest = &rest[6..];
                    4
                } else {
                    char::from_u32(unit)?.len_utf8()
                }
            }
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 1,
            _ => return None,
        };
    }
    Some(len + rest.len())
}

fn hex4(bytes: &[u8]) -> Option<u32> {
    let digits = bytes.get(..4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// `echo x` must answer `x` with exit code 0: a server that answers wrongly
/// is not measured.
pub fn check_echo(target: &Target, out: &RunOutcome) -> Result<(), BenchError> {
    if out.head.trim_end() != "x" || out.exit_code != Some(0) {
        return Err(BenchError::wire(
            &target.to_string(),
            format!(
                "`echo x` answered {:?} with exit code {:?}",
                out.head, out.exit_code
            ),
        ));
    }
    Ok(())
}

/// Runs `exchanges` on a thread of its own, on a current-thread runtime.
/// The latency rows (P1, P3) wait on one socket at a time, and there the
/// bench's multi-thread runtime costs every message a hop between threads
/// (a worker's reactor sees the socket ready and wakes the thread blocked
/// in `block_on`): client time that counts against the server measured,
/// the more the more messages its protocol sends.
pub async fn on_own_thread<T, Fut>(
    exchanges: impl FnOnce() -> Fut + Send + 'static,
) -> Result<T, BenchError>
where
    Fut: std::future::Future<Output = Result<T, BenchError>>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::io("starting a current-thread runtime", e))?
            .block_on(exchanges())
    })
    .await
    .map_err(|e| BenchError::wire("the client thread", e.to_string()))?
}

/// Sequential `echo x` round trips on one persistent session: latencies.
pub async fn sequential(
    target: &Target,
    runs: usize,
    limit: Duration,
) -> Result<Histogram<u64>, BenchError> {
    let mut session = McpSession::open(target).await?;
    for _ in 0..10 {
        let out = session.run("echo x").await?;
        check_echo(target, &out)?;
    }
    let mut hist = new_histogram();
    let end = Instant::now() + limit;
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = session.run("echo x").await?;
        let _ = hist.record(t0.elapsed().as_nanos() as u64);
        check_echo(target, &out)?;
        if Instant::now() > end {
            break;
        }
    }
    session.close().await?;
    Ok(hist)
}

/// What a closed-loop run of N clients measured.
pub struct LoadResult {
    pub throughput: Throughput,
    pub latency: Histogram<u64>,
}

/// `clients` persistent sessions each running `echo x` back to back for
/// `duration` (connections are opened before the clock starts).
pub async fn closed_loop(
    target: &Target,
    clients: usize,
    duration: Duration,
) -> Result<LoadResult, BenchError> {
    let sessions = open_sessions(target, clients).await?;
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = JoinSet::new();
    for mut session in sessions {
        let target = target.clone();
        tasks.spawn(async move {
            let mut hist = new_histogram();
            let mut done = 0u64;
            while Instant::now() < end {
                let t0 = Instant::now();
                let out = session.run("echo x").await?;
                let _ = hist.record(t0.elapsed().as_nanos() as u64);
                check_echo(&target, &out)?;
                done += 1;
            }
            let finished = Instant::now();
            let _ = session.close().await;
            Ok::<_, BenchError>((hist, done, finished))
        });
    }
    let mut latency = new_histogram();
    let mut count = 0;
    let mut last = start;
    while let Some(joined) = tasks.join_next().await {
        let (hist, done, finished) = joined
            .map_err(|e| BenchError::wire(&target.to_string(), format!("client task: {e}")))??;
        let _ = latency.add(&hist);
        count += done;
        last = last.max(finished);
    }
    Ok(LoadResult {
        throughput: Throughput {
            count,
            elapsed: last - start,
        },
        latency,
    })
}

/// Open `n` sessions (at most 32 handshakes at a time) and keep them.
pub async fn open_sessions(target: &Target, n: usize) -> Result<Vec<McpSession>, BenchError> {
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (target, gate) = (target.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            McpSession::open(&target).await
        });
    }
    let mut sessions = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        sessions.push(
            joined.map_err(|e| {
                BenchError::wire(&target.to_string(), format!("connect task: {e}"))
            })??,
        );
    }
    Ok(sessions)
}

/// Connect, `execute` `echo x`, wait for completion, close: the latency of
/// the whole exchange.
pub async fn one_shot_mcp(target: &Target) -> Result<Duration, BenchError> {
    let t0 = Instant::now();
    let mut session = McpSession::open(target).await?;
    let out = session.run("echo x").await?;
    session.close().await?;
    let elapsed = t0.elapsed();
    check_echo(target, &out)?;
    Ok(elapsed)
}

/// The same exchange with websocketd, whose program (`sh -c 'read -r l;
/// echo x'`, started per connection) reads the request line, answers `x`
/// and exits, upon which websocketd closes the connection.
pub async fn one_shot_websocketd(target: &Target) -> Result<Duration, BenchError> {
    let t0 = Instant::now();
    let mut ws = connect(target).await?;
    let url = target.to_string();
    let url = url.as_str();
    ws.send(Message::text("echo x"))
        .await
        .map_err(|e| BenchError::wire(url, format!("send: {e}")))?;
    let mut answer = String::new();
    let drain = async {
        while let Some(next) = ws.next().await {
            match next {
                Ok(Message::Text(text)) => answer.push_str(text.as_str()),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    timeout(MESSAGE_DEADLINE, drain)
        .await
        .map_err(|_| BenchError::wire(url, "websocketd did not close within 60 s"))?;
    let elapsed = t0.elapsed();
    if answer.trim_end() != "x" {
        return Err(BenchError::wire(
            url,
            format!("websocketd answered {answer:?} instead of x"),
        ));
    }
    Ok(elapsed)
}

/// One long `execute` on a fresh session, timed from the request to
/// `process.completed`.
pub struct Streamed {
    pub bytes: u64,
    pub messages: u64,
    pub elapsed: Duration,
}

pub async fn stream(target: &Target, command: &str) -> Result<Streamed, BenchError> {
    stream_framed(target, command, None).await
}

/// [`stream`] in the batched framing.
pub async fn stream_batched(target: &Target, command: &str) -> Result<Streamed, BenchError> {
    stream_framed(target, command, Some("batched")).await
}

async fn stream_framed(
    target: &Target,
    command: &str,
    framing: Option<&str>,
) -> Result<Streamed, BenchError> {
    let mut session = McpSession::open(target).await?;
    let url = target.to_string();
    let url = url.as_str();
    let t0 = Instant::now();
    let out = session.run_framed(command, framing).await?;
    let elapsed = t0.elapsed();
    session.close().await?;
    if out.exit_code != Some(0) {
        return Err(BenchError::wire(
            url,
            format!("`{command}` ended with exit code {:?}", out.exit_code),
        ));
    }
    Ok(Streamed {
        bytes: out.bytes,
        messages: out.messages,
        elapsed,
    })
}
