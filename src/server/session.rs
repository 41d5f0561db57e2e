//! One WebSocket session: a reader loop that dispatches JSON-RPC requests, a
//! writer task that owns the socket's sending half, and at most one running
//! process whose events are forwarded through a bounded queue.
//!
//! The session ends its process group when the client leaves, when keep-alive
//! fails, and when the server shuts down (then it closes with 1001).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

use super::AppState;
use crate::process::{self, Event, Running, SpawnError, StopReason};
use crate::protocol::{
    method, parse_request, Connected, ControlParams, ControlResult, ErrorCode, ExecuteParams,
    Frame, InfoParams, ProcessStatus, Request, RpcError, CAPABILITIES,
};

/// Frames queued for the writer; with output chunks of up to 64 KiB this
/// bounds what a slow client can make the server hold.
const OUTGOING_QUEUE: usize = 16;

/// WebSocket close codes used by the server.
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const INTERNAL: u16 = 1011;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// The process a session is running, and the task forwarding its events.
struct Active {
    running: Running,
    forwarder: JoinHandle<()>,
    /// Set by the forwarder just before it queues `process.completed`: from
    /// then on the session is free for the next `execute`, even if the
    /// forwarder task has not returned yet.
    completed: Arc<AtomicBool>,
}

impl Active {
    fn is_completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }
}

struct Session {
    state: Arc<AppState>,
    out: mpsc::Sender<Message>,
    active: Option<Active>,
}

/// Refuses a session over the limit: a JSON-RPC error, then close 1013.
pub async fn refuse_over_limit(mut socket: WebSocket, max: usize) {
    let error = RpcError::new(
        ErrorCode::SessionLimit,
        format!("session limit reached: {max} sessions are open (CCX_MAX_SESSIONS)"),
    );
    let _ = socket
        .send(Message::Text(Frame::error(None, error).to_json().into()))
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
    let shutdown = state.shutdown.clone();
    let end = loop {
        tokio::select! {
            message = incoming.next() => match message {
                None | Some(Ok(Message::Close(_))) => break StopReason::Disconnect,
                Some(Err(e)) => {
                    if is_too_big(&e) {
                        let limit = config.ws_max_size;
                        session.send(close(close_code::TOO_BIG, &format!("message too big: the limit is {limit} bytes (WS_MAX_SIZE)"))).await;
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
            _ = finished(&mut session.active) => session.active = None,
            _ = sleep_until(next_ping) => {
                next_ping += config.ws_ping_interval;
                if pong_due.is_none() {
                    pong_due = Some(Instant::now() + config.ws_ping_timeout);
                    session.send(Message::Ping(Default::default())).await;
                }
            }
            _ = sleep_until(pong_due.unwrap_or_else(Instant::now)), if pong_due.is_some() => {
                tracing::info!(%session_id, "closing: no pong within WS_PING_TIMEOUT");
                session.send(close(close_code::INTERNAL, "keepalive ping timeout")).await;
                break StopReason::Disconnect;
            }
            _ = shutdown.cancelled() => break StopReason::Shutdown,
            _ = &mut writer => {
                tracing::info!(%session_id, "closing: the client stopped taking frames");
                break StopReason::Disconnect;
            }
        }
    };

    if let Some(active) = session.active.take() {
        let grace = match end {
            StopReason::Shutdown => state.shutdown_grace(),
            _ => config.kill_grace,
        };
        active.running.stop(end, grace);
        if end == StopReason::Shutdown {
            // Let the client see process.completed before the close frame.
            let _ = timeout(grace + Duration::from_millis(500), active.forwarder).await;
        }
    }
    if end == StopReason::Shutdown {
        session
            .send(close(close_code::GOING_AWAY, "server shutting down"))
            .await;
    }
    drop(session);
    if !writer.is_finished() {
        let _ = timeout(Duration::from_secs(1), writer).await;
    }
    tracing::debug!(%session_id, "session closed");
}

/// Waits for the forwarder of the active process to end; never resolves when idle.
async fn finished(active: &mut Option<Active>) {
    match active {
        Some(a) => {
            let _ = (&mut a.forwarder).await;
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

fn is_too_big(error: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
    let text = error.to_string();
    let inner = std::error::Error::source(error);
    matches!(
        inner.and_then(|e| e.downcast_ref::<Error>()),
        Some(Error::Capacity(CapacityError::MessageTooLong { .. }))
    ) || text.contains("Message too long")
        || text.contains("Space limit exceeded")
}

/// Sends every queued frame. A failed send, or one frame the client has not
/// taken within `stall_limit` (WS_PING_TIMEOUT: the client is dead or stuck),
/// ends the writer, and with it the session.
async fn write_all(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    stall_limit: Duration,
) {
    while let Some(message) = rx.recv().await {
        let closing = matches!(message, Message::Close(_));
        match timeout(stall_limit, sink.send(message)).await {
            Ok(Ok(())) if !closing => {}
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::debug!("send failed: {e}");
                break;
            }
            Err(_) => {
                tracing::debug!("the client took no frame for {stall_limit:?}");
                break;
            }
        }
    }
    // Senders must learn at once that nobody writes any more; closing a
    // stuck socket may itself block, hence its own deadline.
    drop(rx);
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
}

impl Session {
    async fn send(&self, message: Message) {
        let _ = self.out.send(message).await;
    }

    async fn send_frame(&self, frame: Frame) {
        self.send(Message::Text(frame.to_json().into())).await;
    }

    async fn notify(&self, method: &str, params: impl serde::Serialize) {
        self.send_frame(Frame::notification(method, params)).await;
    }

    /// Answers a request; requests without an id (notifications) get no result.
    async fn reply(&self, id: Option<Value>, result: impl serde::Serialize) {
        if let Some(id) = id {
            self.send_frame(Frame::response(id, result)).await;
        }
    }

    /// Errors are always answered (id null when unknown), so that a client
    /// that forgot the id still learns what went wrong.
    async fn reply_error(&self, id: Option<Value>, error: RpcError) {
        self.send_frame(Frame::error(id, error)).await;
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
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("method not found: {other:?} (this server knows execute, control and server.info)"),
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
        self.reap_completed();
        if let Some(active) = &self.active {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                format!(
                    "A process is already running in this session (pid {}); wait for \
                     process.completed or CANCEL it",
                    active.running.pid
                ),
            ));
        }
        let params: ExecuteParams =
            params_of(request.params, "execute", "{\"command\": \"echo hi\"}")?;
        let config = &self.state.config;
        let timeout = match params.timeout {
            None => config.default_timeout,
            Some(t) if t.is_finite() && t > 0.0 && t <= 1e9 => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(RpcError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "invalid params: timeout must be a positive number of seconds, got {t}"
                    ),
                ))
            }
        };
        check_strings(&params)?;
        check_allowed(&params.command, config.allowed_commands.as_deref())?;
        let spec = process::Spec {
            shell: config.shell.clone(),
            command: params.command,
            cwd: params.cwd.map(Into::into),
            env: params.env.unwrap_or_default(),
            timeout,
            kill_grace: config.kill_grace,
            max_output: config.max_output,
        };
        let (running, events) = process::spawn(spec).map_err(|e| match e {
            SpawnError::BadCwd(_) => {
                RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {e}"))
            }
            SpawnError::Shell { .. } => RpcError::new(ErrorCode::Internal, e.to_string()),
        })?;
        let status = ProcessStatus {
            status: "started".into(),
            pid: running.pid,
            pgid: Some(running.pgid()),
        };
        tracing::info!(pid = running.pid, "started");
        self.reply(request.id, &status).await;
        self.notify(method::PROCESS_STARTED, &status).await;
        let completed = Arc::new(AtomicBool::new(false));
        let forwarder = tokio::spawn(forward(events, self.out.clone(), completed.clone()));
        self.active = Some(Active {
            running,
            forwarder,
            completed,
        });
        Ok(())
    }

    async fn control(&mut self, request: Request) -> Result<(), RpcError> {
        let params: ControlParams = params_of(request.params, "control", "{\"type\": \"CANCEL\"}")?;
        self.reap_completed();
        let Some(active) = &self.active else {
            return Err(RpcError::new(
                ErrorCode::NoProcess,
                "no process is running in this session",
            ));
        };
        let running = &active.running;
        let signalled = match params.kind {
            crate::protocol::ControlType::Pause => running.pause(),
            crate::protocol::ControlType::Resume => running.resume(),
            crate::protocol::ControlType::Cancel => {
                running.stop(StopReason::Cancel, self.state.config.kill_grace);
                Ok(())
            }
        };
        signalled.map_err(|e| {
            RpcError::new(
                ErrorCode::Internal,
                format!("cannot signal process group {}: {e}", running.pgid()),
            )
        })?;
        let status = ProcessStatus {
            status: params.kind.status().into(),
            pid: running.pid,
            pgid: Some(running.pgid()),
        };
        self.reply(
            request.id,
            ControlResult {
                status: status.status.clone(),
            },
        )
        .await;
        self.notify(params.kind.notification_method(), &status)
            .await;
        Ok(())
    }
}

impl Session {
    async fn info(&mut self, request: Request) -> Result<(), RpcError> {
        let params: InfoParams = match request.params {
            Value::Null => InfoParams::default(),
            p => params_of(p, "server.info", "{\"require\": [\"claude\"]}")?,
        };
        let info = super::info::collect(&self.state.config, &params.require);
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

/// Strings that cannot reach a process: NUL bytes anywhere, `=` or an empty
/// name in the environment.
pub(crate) fn check_strings(params: &ExecuteParams) -> Result<(), RpcError> {
    let invalid =
        |what: String| RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {what}"));
    if params.command.contains('\0') {
        return Err(invalid("command contains a NUL byte".into()));
    }
    if params.command.trim().is_empty() {
        return Err(invalid("command is empty".into()));
    }
    for (name, value) in params.env.iter().flatten() {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(invalid(format!(
                "env name {name:?} must be non-empty, without '=' or NUL"
            )));
        }
        if value.contains('\0') {
            return Err(invalid(format!("env value of {name} contains a NUL byte")));
        }
    }
    Ok(())
}

/// With CCX_ALLOWED_COMMANDS set, a command must be one allowed program with
/// arguments: no chaining, substitution or redirection that could start another.
pub(crate) fn check_allowed(command: &str, allowed: Option<&[String]>) -> Result<(), RpcError> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    let not_allowed = |why: String| {
        RpcError::new(
            ErrorCode::CommandNotAllowed,
            format!(
                "command not allowed: {why}; allowed programs (CCX_ALLOWED_COMMANDS): {}",
                allowed.join(", ")
            ),
        )
    };
    if let Some(c) = unquoted_metacharacter(command) {
        return Err(not_allowed(format!(
            "it contains {c:?}, which could start another program"
        )));
    }
    let program = command.split_whitespace().next().unwrap_or("");
    let name = program.rsplit('/').next().unwrap_or(program);
    if allowed.iter().any(|a| a == name || a == program) {
        Ok(())
    } else {
        Err(not_allowed(format!(
            "{program:?} is not an allowed program"
        )))
    }
}

/// The first character that would make the shell run something else: a
/// separator, pipe, redirection or subshell outside quotes, or a command
/// substitution outside single quotes.
fn unquoted_metacharacter(command: &str) -> Option<char> {
    let mut chars = command.chars().peekable();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                chars.next();
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '`' if !single => return Some(c),
            '$' if !single && chars.peek() == Some(&'(') => return Some(c),
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '\n' if !single && !double => return Some(c),
            _ => {}
        }
    }
    None
}

/// Forwards a process's events to the writer, in order, until completion.
async fn forward(
    mut events: mpsc::Receiver<Event>,
    out: mpsc::Sender<Message>,
    completed: Arc<AtomicBool>,
) {
    while let Some(event) = events.recv().await {
        let (frame, last) = match event {
            Event::Output(o) => (Frame::notification(method::PROCESS_OUTPUT, o), false),
            Event::Completed(c) => {
                completed.store(true, Ordering::Release);
                tracing::info!(
                    pid = c.pid,
                    status = c.status.as_str(),
                    exit_code = c.exit_code,
                    "completed"
                );
                (Frame::notification(method::PROCESS_COMPLETED, c), true)
            }
        };
        if out
            .send(Message::Text(frame.to_json().into()))
            .await
            .is_err()
            || last
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_takes_one_program_without_chaining() {
        let allowed = vec!["ls".to_string(), "claude".to_string()];
        assert!(check_allowed("ls -la /tmp", Some(&allowed)).is_ok());
        assert!(check_allowed("/usr/bin/ls", Some(&allowed)).is_ok());
        assert!(check_allowed("claude -p 'hi there'", Some(&allowed)).is_ok());
        assert!(check_allowed("claude -p 'what is f(x); a|b'", Some(&allowed)).is_ok());
        assert!(check_allowed("claude -p \"f(x) > 1\"", Some(&allowed)).is_ok());
        for bad in [
            "echo hi",
            "ls; rm -rf /",
            "ls && echo",
            "ls $(id)",
            "ls > f",
            "ls \"`id`\"",
            "ls \"$(id)\"",
        ] {
            let e = check_allowed(bad, Some(&allowed)).unwrap_err();
            assert_eq!(e.code, -32002, "{bad}");
        }
        assert!(check_allowed("anything at all; really", None).is_ok());
    }
}
