//! What the session answers: one handler per JSON-RPC method (`execute`,
//! `control`, `server.info`, `hook_status`, `pong`), and the frames they
//! send.

use super::*;

impl Session {
    pub(super) async fn send(&self, message: Message) {
        let _ = self.out.send(Outgoing::Frame(message)).await;
    }

    /// cc_executor's heartbeat: a `ping` notification with the time. Skipped
    /// when the writer's queue is full (the client is busy receiving anyway).
    pub(super) fn heartbeat(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let frame = notification_json(method::PING, &serde_json::json!({ "timestamp": now }));
        let _ = self
            .out
            .try_send(Outgoing::Frame(Message::Text(frame.into())));
    }

    pub(super) async fn notify(&self, method: &str, params: impl serde::Serialize) {
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
    pub(super) async fn reply_error(&self, id: Option<RawId>, error: RpcError) {
        self.send(Message::Text(error_json(id.as_ref(), &error).into()))
            .await;
    }

    pub(super) async fn handle_text(&mut self, text: &str) {
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
        let (running, events) = self.state.executor.start(&params).map_err(start_error)?;
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
        crate::server::info::check_require(&params.require).map_err(|why| {
            RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {why}"))
        })?;
        let info = crate::server::info::collect_off_runtime(self.state.clone(), params.require)
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

/// Why a command did not start, as a JSON-RPC error: a refused request is
/// the client's fault (-32602, or -32001 from the allowlist).
fn start_error(e: StartError) -> RpcError {
    match e {
        StartError::Refused(AdmissionError::NotAllowed(message)) => {
            RpcError::new(ErrorCode::CommandNotAllowed, message)
        }
        StartError::Refused(refused) => RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params: {refused}"),
        ),
        StartError::Spawn(e) => spawn_error(e),
    }
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
pub(super) fn notification_json(method: &str, params: &impl serde::Serialize) -> String {
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
        assert_eq!(parse(&output.notification_json()), parse(&slow));
    }
}
