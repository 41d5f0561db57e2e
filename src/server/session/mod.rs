//! One WebSocket session: a reader loop that dispatches JSON-RPC requests
//! (cc_executor's methods `execute`, `control`, `hook_status`, `pong`, and
//! ccx's `server.info`) and sends cc_executor's `ping` heartbeat, and a
//! writer task that owns the socket's sending half (it writes every frame
//! that is ready, then flushes once). At most one process runs; the writer
//! takes its events straight from the process's bounded queue (no task in
//! between: each hop between tasks is a wake-up on the path of every line).
//!
//! The session ends its process group when the client leaves, when keep-alive
//! fails, and when the server shuts down (then it closes with 1001). When
//! the server drains, an idle session closes with 1001 at once and a busy
//! one right after its command's `process.completed`.

mod handlers;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

use handlers::notification_json;
use writer::write_all;

use crate::process::admission::AdmissionError;
use crate::process::{ProcessEvent, Running, SpawnError, StartError, StopReason};
use crate::protocol::{
    error_json, method, parse_request, response_json, Connected, ControlParams, ControlResult,
    ErrorCode, ExecuteParams, Frame, InfoParams, ProcessStatus, RawId, Request, RpcError,
    CAPABILITIES, DRAINING_NO_COMMAND,
};
use crate::server::keepalive::{PeerProgress, SendQueue, WriteProgress};
use crate::server::AppState;

/// Frames queued for the writer; with output chunks of up to 64 KiB this
/// bounds what a slow client can make the server hold.
const OUTGOING_QUEUE: usize = 16;
/// Most frames the writer hands to the socket before one flush.
const WRITE_BATCH: usize = 64;
/// Most process events the writer takes from the process at once.
const EVENT_BATCH: usize = 64;
/// How long the close frame to a client that stopped reading may wait for
/// the client to take what is queued before it (it is dropped after that).
const STALLED_CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// Beyond the kill grace, how long an `execute` sent after a CANCEL waits
/// for the canceled command's `process.completed` (its output drain after
/// the group is gone takes up to 2 s) before it is refused as "already
/// running". cc_executor awaits a cancellation before it reads the next
/// message, so its clients send the next `execute` at once.
const CANCELED_WAIT: Duration = Duration::from_secs(3);

/// WebSocket close codes used by the server.
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const INTERNAL: u16 = 1011;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// The process a session is running.
struct Active {
    running: Running,
    /// Resolves once the writer has written `process.completed` (or is gone).
    done: oneshot::Receiver<()>,
    /// Set by the writer just before it writes `process.completed`: from
    /// then on the session is free for the next `execute`.
    completed: Arc<AtomicBool>,
    /// CANCEL was asked: an `execute` waits for the end (see `CANCELED_WAIT`).
    canceled: bool,
}

/// What the session hands to its writer.
enum Outgoing {
    Frame(Message),
    /// The process just started: the frames that announce it, then its
    /// events as they come until its completion.
    Follow(Follow),
}

struct Follow {
    /// The `execute` answer and `process.started`: one hand-over, so they
    /// always share one write.
    announce: Vec<Message>,
    events: mpsc::Receiver<ProcessEvent>,
    completed: Arc<AtomicBool>,
    done: oneshot::Sender<()>,
}

impl Active {
    fn is_completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }
}

/// How the writer ended: the socket is gone or closed, or the client took
/// no frame within the stall limit (the sink comes back, so that the close
/// frame can still be tried once the command is ended).
enum WriterEnd {
    Done,
    Stalled(SplitSink<WebSocket, Message>),
}

struct Session {
    state: Arc<AppState>,
    out: mpsc::Sender<Outgoing>,
    active: Option<Active>,
}

/// Refuses a session over the limit: a JSON-RPC error -32003 (as
/// cc_executor), then close 1013.
pub async fn refuse_over_limit(mut socket: WebSocket, state: &AppState) {
    let config = &state.config;
    let error = RpcError::session_limit(
        config.max_sessions,
        config.variable_of("max_sessions", "CCX_MAX_SESSIONS"),
    );
    let _ = socket
        .send(Message::Text(error_json(None, &error).into()))
        .await;
    let _ = socket
        .send(close(close_code::TRY_AGAIN_LATER, "session limit reached"))
        .await;
}

/// Runs a session to its end.
pub async fn run(socket: WebSocket, state: Arc<AppState>, send_queue: Option<SendQueue>) {
    let session_id = uuid::Uuid::new_v4().to_string();
    let (sink, mut incoming) = socket.split();
    let (out, out_rx) = mpsc::channel(OUTGOING_QUEUE);
    let progress = WriteProgress::default();
    let mut writer = tokio::spawn(write_all(
        sink,
        out_rx,
        state.config.ws_ping_timeout,
        progress.clone(),
    ));
    let mut peer = PeerProgress::new(progress, send_queue);
    let mut session = Session {
        state: state.clone(),
        out,
        active: None,
    };
    tracing::debug!(%session_id, "session opened");
    session
        .notify(
            method::CONNECTED,
            Connected {
                session_id: session_id.clone(),
                version: crate::VERSION.into(),
                capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            },
        )
        .await;

    let config = &state.config;
    let mut next_ping = Instant::now() + config.ws_ping_interval;
    let mut pong_due: Option<Instant> = None;
    let mut next_heartbeat = config
        .heartbeat_interval
        .map(|every| Instant::now() + every);
    let shutdown = state.shutdown.clone();
    let drain = state.drain.clone();
    let mut stalled = None;
    let end = loop {
        tokio::select! {
            message = incoming.next() => match message {
                None | Some(Ok(Message::Close(_))) => break StopReason::Disconnect,
                Some(Err(e)) => {
                    if let Some((code, reason)) = close_for(&e, config.ws_max_size) {
                        session.send(close(code, &reason)).await;
                    }
                    tracing::debug!(%session_id, "read error: {e}");
                    break StopReason::Disconnect;
                }
                Some(Ok(Message::Text(text))) => session.handle_text(&text).await,
                Some(Ok(Message::Binary(_))) => {
                    session.reply_error(None, RpcError::new(ErrorCode::InvalidRequest,
                        "invalid request: binary frames are not supported; send JSON-RPC as text")).await;
                }
                Some(Ok(Message::Pong(_))) => pong_due = None,
                Some(Ok(Message::Ping(_))) => {}
            },
            _ = finished(&mut session.active) => {
                if !session.active.as_ref().is_some_and(Active::is_completed) {
                    // The writer is gone before the completion: its end says
                    // why, and the command must end for that reason.
                    match timeout(Duration::from_secs(1), &mut writer).await {
                        Ok(Ok(WriterEnd::Stalled(sink))) => {
                            tracing::info!(%session_id, "closing: the client took no frame for {:?} (WS_PING_TIMEOUT)", config.ws_ping_timeout);
                            stalled = Some(sink);
                            break StopReason::Unresponsive;
                        }
                        Ok(_) => break StopReason::Disconnect,
                        Err(_) => {}
                    }
                }
                session.active = None;
                if drain.is_cancelled() {
                    break StopReason::Shutdown;
                }
            }
            _ = drain.cancelled(), if session.active.as_ref().is_none_or(Active::is_completed) => {
                break StopReason::Shutdown;
            }
            _ = sleep_until(next_ping) => {
                next_ping += config.ws_ping_interval;
                if pong_due.is_none() {
                    pong_due = Some(Instant::now() + config.ws_ping_timeout);
                    session.send(Message::Ping(Default::default())).await;
                    peer.ping_sent();
                }
            }
            _ = sleep_until(next_heartbeat.unwrap_or_else(Instant::now)), if next_heartbeat.is_some() => {
                next_heartbeat = config.heartbeat_interval.map(|every| Instant::now() + every);
                session.heartbeat();
            }
            _ = sleep_until(pong_due.unwrap_or_else(Instant::now)), if pong_due.is_some() => {
                // The ping may wait behind queued output: a client that
                // reads it is alive.
                if let Some(later) = peer.late_pong_deadline(config.ws_ping_timeout) {
                    pong_due = Some(later);
                    continue;
                }
                tracing::info!(%session_id, "closing: no pong within WS_PING_TIMEOUT");
                session.send(close(close_code::INTERNAL, "keepalive ping timeout")).await;
                break StopReason::Unresponsive;
            }
            _ = shutdown.cancelled() => break StopReason::Shutdown,
            end = &mut writer => {
                if let Ok(WriterEnd::Stalled(sink)) = end {
                    tracing::info!(%session_id, "closing: the client took no frame for {:?} (WS_PING_TIMEOUT)", config.ws_ping_timeout);
                    stalled = Some(sink);
                    break StopReason::Unresponsive;
                }
                break StopReason::Disconnect;
            }
        }
    };
    if session.active.is_some() {
        tracing::info!(
            %session_id,
            cause = end.as_str(),
            running = session.active.as_ref().map(|a| a.running.pid),
            "session ending"
        );
    }

    if let Some(active) = session.active.take() {
        let grace = match end {
            StopReason::Shutdown => state.shutdown_grace(),
            _ => config.kill_grace,
        };
        active.running.stop(end, grace);
        if end == StopReason::Shutdown {
            // Let the client see process.completed before the close frame.
            let _ = timeout(grace + Duration::from_millis(500), active.done).await;
        }
    }
    if end == StopReason::Shutdown {
        session
            .send(close(close_code::GOING_AWAY, "server shutting down"))
            .await;
    }
    drop(session);
    if let Some(mut sink) = stalled {
        // The command is being ended already; the reason reaches the client
        // if it takes what is queued before it within the deadline.
        let reason = format!(
            "the client took no frame for {} s (WS_PING_TIMEOUT): its command was canceled",
            config.ws_ping_timeout.as_secs()
        );
        let sent = timeout(STALLED_CLOSE_DEADLINE, async {
            sink.send(close(close_code::POLICY, &clip_reason(&reason)))
                .await
        })
        .await;
        tracing::debug!(%session_id, "close frame to a stalled client: {sent:?}");
    } else if !writer.is_finished() {
        let _ = timeout(Duration::from_secs(1), writer).await;
    }
    tracing::debug!(%session_id, "session closed");
}

/// Waits for the active process's completion to be written; never
/// resolves when idle.
async fn finished(active: &mut Option<Active>) {
    match active {
        Some(a) => {
            let _ = (&mut a.done).await;
        }
        None => std::future::pending().await,
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

/// The close frame RFC 6455 asks for when reading failed: 1009 for a message
/// over WS_MAX_SIZE, 1007 for a text frame that is not UTF-8, 1002 for any
/// other protocol violation; none when the connection itself is gone.
fn close_for(error: &axum::Error, max_size: usize) -> Option<(u16, String)> {
    use tokio_tungstenite::tungstenite::error::Error;
    let text = error.to_string();
    let inner = std::error::Error::source(error).and_then(|e| e.downcast_ref::<Error>());
    match inner {
        Some(Error::Capacity(_)) => Some((
            close_code::TOO_BIG,
            format!("message too big: the limit is {max_size} bytes (WS_MAX_SIZE)"),
        )),
        Some(Error::Utf8(_)) => Some((
            close_code::INVALID_DATA,
            "invalid UTF-8 in a text frame".into(),
        )),
        Some(Error::Protocol(p)) => Some((
            close_code::PROTOCOL_ERROR,
            clip_reason(&format!("protocol error: {p}")),
        )),
        _ if text.contains("Message too long") || text.contains("Space limit exceeded") => Some((
            close_code::TOO_BIG,
            format!("message too big: the limit is {max_size} bytes (WS_MAX_SIZE)"),
        )),
        _ => None,
    }
}

/// A close reason fits in a control frame: 123 bytes after the code.
fn clip_reason(reason: &str) -> String {
    reason[..crate::sanitize::floor_char_boundary(reason, 123)].to_string()
}
