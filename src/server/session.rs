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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

use super::AppState;
use crate::process::admission::{check_allowed, check_strings};
use crate::process::{self, Event, Running, SpawnError, StopReason};
use crate::protocol::{
    error_json, method, parse_request, response_json, Completed, Connected, ControlParams,
    ControlResult, ErrorCode, ExecuteParams, Frame, InfoParams, ProcessStatus, RawId, Request,
    RpcError, CAPABILITIES, DRAINING_NO_COMMAND,
};

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
    events: mpsc::Receiver<Event>,
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
pub async fn run(socket: WebSocket, state: Arc<AppState>) {
    let session_id = uuid::Uuid::new_v4().to_string();
    let (sink, mut incoming) = socket.split();
    let (out, out_rx) = mpsc::channel(OUTGOING_QUEUE);
    let mut writer = tokio::spawn(write_all(sink, out_rx, state.config.ws_ping_timeout));
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
                }
            }
            _ = sleep_until(next_heartbeat.unwrap_or_else(Instant::now)), if next_heartbeat.is_some() => {
                next_heartbeat = config.heartbeat_interval.map(|every| Instant::now() + every);
                session.heartbeat();
            }
            _ = sleep_until(pong_due.unwrap_or_else(Instant::now)), if pong_due.is_some() => {
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
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// Sends every queued frame, and the events of the running process as they
/// come: all frames that are ready go to the socket together and are
/// flushed once (many small lines must not cost one write each). A failed
/// send, or frames the client has not taken within `stall_limit`
/// (WS_PING_TIMEOUT: the client is dead or stuck), ends the writer, and
/// with it the session.
///
/// Order: `process.completed` is written only after every frame the
/// session queued before it (a CANCEL's answer and `process.canceled` come
/// first).
async fn write_all(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    stall_limit: Duration,
) -> WriterEnd {
    // Empty until used: an idle session holds little (P5).
    let mut queued = Vec::new();
    let mut events = Vec::new();
    let mut frames = Vec::new();
    let mut follow: Option<Follow> = None;
    let mut next_follow: Option<Follow> = None;
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut queued, WRITE_BATCH) => if n == 0 { break },
            n = next_events(&mut follow, &mut events) => if n == 0 {
                // The process's queue closed without a completion.
                follow = None;
                continue;
            },
        }
        for outgoing in queued.drain(..) {
            match outgoing {
                Outgoing::Frame(message) => frames.push(message),
                Outgoing::Follow(mut next) => {
                    frames.append(&mut next.announce);
                    follow = Some(next);
                }
            }
        }
        let mut finished = None;
        for event in events.drain(..) {
            frames.push(Message::Text(event_json(event, &mut finished).into()));
            if finished.is_some() {
                // Frames the session queued before the completion go
                // before it; only then is the session free for the next
                // `execute` (whose frames must come after).
                let completion = frames.pop();
                while let Ok(outgoing) = rx.try_recv() {
                    match outgoing {
                        Outgoing::Frame(message) => frames.push(message),
                        Outgoing::Follow(next) => {
                            next_follow = Some(next);
                            break;
                        }
                    }
                }
                frames.extend(completion);
                if let Some(next) = &mut next_follow {
                    frames.append(&mut next.announce);
                }
                if let Some(f) = &follow {
                    f.completed.store(true, Ordering::Release);
                }
                break;
            }
        }
        let closing = frames.iter().any(|m| matches!(m, Message::Close(_)));
        let sent = timeout(stall_limit, async {
            for message in frames.drain(..) {
                sink.feed(message).await?;
            }
            sink.flush().await
        })
        .await;
        if finished.is_some() {
            if let Some(done) = std::mem::replace(&mut follow, next_follow.take()) {
                let _ = done.done.send(());
            }
        }
        match sent {
            Ok(Ok(())) if !closing => {}
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::debug!("send failed: {e}");
                break;
            }
            Err(_) => return WriterEnd::Stalled(sink),
        }
    }
    // Senders must learn at once that nobody writes any more; closing a
    // stuck socket may itself block, hence its own deadline.
    drop(rx);
    drop(follow);
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
    WriterEnd::Done
}

/// The next events of the followed process; never resolves without one.
async fn next_events(follow: &mut Option<Follow>, events: &mut Vec<Event>) -> usize {
    match follow {
        Some(f) => f.events.recv_many(events, EVENT_BATCH).await,
        None => std::future::pending().await,
    }
}

/// One event as its frame; `finished` takes the completion (logged once
/// its frame is written: the log line is not on the client's path).
fn event_json(event: Event, finished: &mut Option<Completed>) -> String {
    match event {
        Event::Output(o) => notification_json(method::PROCESS_OUTPUT, &o),
        Event::Completed(c) => {
            let frame = notification_json(method::PROCESS_COMPLETED, &c);
            *finished = Some(c);
            frame
        }
    }
}

impl Session {
    async fn send(&self, message: Message) {
        let _ = self.out.send(Outgoing::Frame(message)).await;
    }

    /// cc_executor's heartbeat: a `ping` notification with the time. Skipped
    /// when the writer's queue is full (the client is busy receiving anyway).
    fn heartbeat(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let frame = notification_json(method::PING, &serde_json::json!({ "timestamp": now }));
        let _ = self
            .out
            .try_send(Outgoing::Frame(Message::Text(frame.into())));
    }

    async fn notify(&self, method: &str, params: impl serde::Serialize) {
        self.send(notification(method, params)).await;
    }

    /// Answers a request; requests without an id (notifications) get no result.
    async fn reply(&self, id: Option<RawId>, result: impl serde::Serialize) {
        if let Some(message) = response(id, result) {
            self.send(message).await;
        }
    }

    /// Errors are always answered (id null when unknown), so that a client
    /// that forgot the id still learns what went wrong.
    async fn reply_error(&self, id: Option<RawId>, error: RpcError) {
        self.send(Message::Text(error_json(id.as_ref(), &error).into()))
            .await;
    }

    async fn handle_text(&mut self, text: &str) {
        let request = match parse_request(text) {
            Ok(r) => r,
            Err(rejection) => return self.reply_error(rejection.id, rejection.error).await,
        };
        let id = request.id.clone();
        let outcome = match request.method.as_str() {
            method::EXECUTE => self.execute(request).await,
            method::CONTROL => self.control(request).await,
            method::SERVER_INFO => self.info(request).await,
            method::HOOK_STATUS => {
                self.reply(request.id, hook_status()).await;
                Ok(())
            }
            method::PONG => {
                // The answer to our `ping`: nothing to do. cc_executor sends
                // no response; ccx answers only a pong that carries an id
                // (JSON-RPC says a request with an id gets a response).
                self.reply(request.id, serde_json::json!({ "status": "ok" }))
                    .await;
                Ok(())
            }
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!(
                    "Unknown method: {other} (this server knows execute, control, hook_status, \
                     pong and server.info)"
                ),
            )),
        };
        if let Err(error) = outcome {
            self.reply_error(id, error).await;
        }
    }

    /// Forgets a process whose completion has been sent.
    fn reap_completed(&mut self) {
        if self.active.as_ref().is_some_and(Active::is_completed) {
            self.active = None;
        }
    }

    async fn execute(&mut self, request: Request) -> Result<(), RpcError> {
        if self.state.is_draining() {
            return Err(RpcError::new(ErrorCode::Internal, DRAINING_NO_COMMAND));
        }
        self.reap_completed();
        if let Some(active) = self.active.as_mut().filter(|a| a.canceled) {
            let bound = self.state.config.kill_grace + CANCELED_WAIT;
            tokio::select! {
                _ = &mut active.done => {
                    // A receiver is awaited once; the session's loop will
                    // find this one (closed) done, and learn why from the
                    // writer if it is gone without the completion.
                    active.done = oneshot::channel().1;
                }
                _ = tokio::time::sleep(bound) => {}
                _ = self.state.shutdown.cancelled() => {}
            }
            self.reap_completed();
        }
        if let Some(active) = &self.active {
            // cc_executor's exact message (clients match it); the details
            // go in `data`.
            let mut error = RpcError::new(ErrorCode::InvalidParams, "A process is already running");
            error.data = Some(serde_json::json!({
                "pid": active.running.pid,
                "hint": "wait for process.completed or CANCEL it: one process per session",
            }));
            return Err(error);
        }
        let params: ExecuteParams =
            params_of(request.params, "execute", "{\"command\": \"echo hi\"}")?;
        let config = &self.state.config;
        let spec = process::Spec::from_execute(&params, &process::Rules::from_config(config))
            .map_err(|e| RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {e}")))?;
        check_strings(&params)?;
        check_allowed(&params, config)?;
        let (running, events) = process::spawn(spec).map_err(spawn_error)?;
        let status = ProcessStatus {
            status: "started".into(),
            pid: running.pid,
            pgid: Some(running.pgid()),
        };
        // The answer, `process.started` and the process's events go to the
        // writer together, so that the first two share one write.
        let announce = response(request.id, &status)
            .into_iter()
            .chain([notification(method::PROCESS_STARTED, &status)])
            .collect();
        let completed = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = oneshot::channel();
        let follow = Follow {
            announce,
            events,
            completed: completed.clone(),
            done: done_tx,
        };
        let _ = self.out.send(Outgoing::Follow(follow)).await;
        // Logged once the writer has the answer (not on the client's path).
        tracing::info!(pid = running.pid, "started");
        self.active = Some(Active {
            running,
            done,
            completed,
            canceled: false,
        });
        Ok(())
    }

    async fn control(&mut self, request: Request) -> Result<(), RpcError> {
        let params: ControlParams = params_of(request.params, "control", "{\"type\": \"CANCEL\"}")?;
        self.reap_completed();
        let Some(active) = &self.active else {
            return Err(RpcError::new(
                ErrorCode::NoProcess,
                "No process is running in this session",
            ));
        };
        let running = &active.running;
        let status = ProcessStatus {
            status: params.kind.status().into(),
            pid: running.pid,
            pgid: Some(running.pgid()),
        };
        let signalled = match params.kind {
            crate::protocol::ControlType::Pause => running.pause(),
            crate::protocol::ControlType::Resume => running.resume(),
            // Answered before the group is signalled, so that the result and
            // `process.canceled` always come before `process.completed`.
            crate::protocol::ControlType::Cancel => Ok(()),
        };
        signalled.map_err(|e| {
            RpcError::new(
                ErrorCode::Internal,
                format!("cannot signal process group {}: {e}", running.pgid()),
            )
        })?;
        self.reply(
            request.id,
            ControlResult {
                status: status.status.clone(),
            },
        )
        .await;
        self.notify(params.kind.notification_method(), &status)
            .await;
        if params.kind == crate::protocol::ControlType::Cancel {
            if let Some(active) = &mut self.active {
                active.canceled = true;
                active
                    .running
                    .stop(StopReason::Cancel, self.state.config.kill_grace);
            }
        }
        Ok(())
    }
}

impl Session {
    async fn info(&mut self, request: Request) -> Result<(), RpcError> {
        let params: InfoParams = match request.params {
            Value::Null => InfoParams::default(),
            p => params_of(p, "server.info", "{\"require\": [\"claude\"]}")?,
        };
        super::info::check_require(&params.require).map_err(|why| {
            RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {why}"))
        })?;
        let info = super::info::collect_off_runtime(self.state.clone(), params.require)
            .await
            .map_err(|e| RpcError::new(ErrorCode::Internal, e))?;
        self.reply(request.id, info).await;
        Ok(())
    }
}

/// Deserializes `params`, turning serde's complaint into -32602.
fn params_of<T: serde::de::DeserializeOwned>(
    params: Value,
    method: &str,
    example: &str,
) -> Result<T, RpcError> {
    if params.is_null() {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params: {method} needs params, e.g. {example}"),
        ));
    }
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {method}: {e}; e.g. {example}"),
        )
    })
}

/// A spawn failure as the client should read it: E2BIG (command and
/// environment together over the kernel's ARG_MAX) is the client's fault.
fn spawn_error(e: SpawnError) -> RpcError {
    match &e {
        SpawnError::BadCwd(_) => {
            RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {e}"))
        }
        SpawnError::Shell { source, .. }
            if source.raw_os_error() == Some(nix::errno::Errno::E2BIG as i32) =>
        {
            RpcError::new(
                ErrorCode::InvalidParams,
                "invalid params: the command and environment are too large for the kernel \
                 (E2BIG: over its ARG_MAX limit for arguments and environment together, \
                 or over 128 KiB in one of them)",
            )
        }
        SpawnError::Shell { .. } => RpcError::new(ErrorCode::Internal, e.to_string()),
    }
}

/// `hook_status`: cc_executor reports its hook integration; ccx runs no
/// hooks, and says so in cc_executor's shape for that case.
fn hook_status() -> Value {
    serde_json::json!({
        "enabled": false,
        "message": "ccx runs no hooks",
    })
}

/// A notification frame.
fn notification(method: &str, params: impl serde::Serialize) -> Message {
    Message::Text(Frame::notification(method, params).to_json().into())
}

/// The answer to a request; none for a notification (it has no id).
fn response(id: Option<RawId>, result: impl serde::Serialize) -> Option<Message> {
    id.map(|id| Message::Text(response_json(&id, result).into()))
}

/// A notification serialized straight from its parameters (no intermediate
/// `serde_json::Value`): the hot path of streaming output.
fn notification_json(method: &str, params: &impl serde::Serialize) -> String {
    #[derive(serde::Serialize)]
    struct Notification<'a, P> {
        jsonrpc: &'static str,
        method: &'a str,
        params: &'a P,
    }
    serde_json::to_string(&Notification {
        jsonrpc: crate::protocol::JSONRPC_VERSION,
        method,
        params,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2big_from_the_kernel_is_invalid_params() {
        let e2big = SpawnError::Shell {
            shell: "/bin/sh".into(),
            source: std::io::Error::from_raw_os_error(nix::errno::Errno::E2BIG as i32),
        };
        assert_eq!(spawn_error(e2big).code, -32602);
    }

    #[test]
    fn output_notifications_serialize_like_frames() {
        let output = crate::protocol::Output {
            stream: crate::protocol::StreamKind::Stdout,
            data: "a \"q\"\n".into(),
            truncated: false,
            lossy: false,
            chunk_index: Some(1),
            total_chunks: Some(2),
        };
        let fast = notification_json(method::PROCESS_OUTPUT, &output);
        let slow = Frame::notification(method::PROCESS_OUTPUT, &output).to_json();
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(parse(&fast), parse(&slow));
    }
}
