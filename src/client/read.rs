//! Reading the session: text frames off the socket (with the keep-alive),
//! cc_executor's heartbeat answered, responses told from notifications,
//! and process events read from frames.
//!
//! Batched `process.output` is where a command's bytes pass through the
//! client, so in a session that asked for batches each text frame is first
//! offered to [`Output::from_batch_frame`], which decodes its base64 with
//! no `serde_json::Value` in between; whatever that does not take is read
//! as a [`Frame`], exactly as in any other session.

use super::*;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One text frame of the session, read.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A batched `process.output`, already decoded.
    Output(Output),
    Frame(Frame),
}

/// `text` as a frame, or the error any frame that is not JSON-RPC gets.
pub(super) fn parse_frame(text: &str) -> Result<Frame, ClientError> {
    serde_json::from_str(text).map_err(|e| {
        ClientError::Protocol(format!("the server sent a frame that is not JSON-RPC: {e}"))
    })
}

/// `text` as a batched output when `batches` and it is a plain one, else
/// as a frame.
pub(super) fn parse_incoming(text: &str, batches: bool) -> Result<Incoming, ClientError> {
    if batches {
        if let Some(output) = Output::from_batch_frame(text) {
            return Ok(Incoming::Output(output));
        }
    }
    parse_frame(text).map(Incoming::Frame)
}

impl Incoming {
    /// The process event it is (see [`event_of`]).
    pub(super) fn into_event(self) -> Result<Event, ClientError> {
        match self {
            Incoming::Output(output) => Ok(Event::Output(output)),
            Incoming::Frame(frame) => event_of(frame),
        }
    }
}

/// The process event of a frame that is not a response: an `error` member
/// is the error; unknown notifications are [`Event::Other`].
pub(super) fn event_of(mut frame: Frame) -> Result<Event, ClientError> {
    if let Some(error) = frame.error {
        return Err(ClientError::Rpc(error));
    }
    // Taken, not copied: an output batch's data is up to 64 KiB. Only a
    // known notification's are taken; any other frame is kept whole.
    fn params(params: &mut Option<Value>) -> Value {
        params.take().unwrap_or(Value::Null)
    }
    let parse = |what: &str| ClientError::Protocol(format!("malformed {what} notification"));
    Ok(match frame.method.as_deref() {
        Some(method::PROCESS_STARTED) => Event::Started(
            serde_json::from_value(params(&mut frame.params))
                .map_err(|_| parse("process.started"))?,
        ),
        Some(method::PROCESS_OUTPUT) => Event::Output(
            serde_json::from_value(params(&mut frame.params)).map_err(|e| {
                ClientError::Protocol(format!("malformed process.output notification: {e}"))
            })?,
        ),
        Some(method::PROCESS_COMPLETED) => Event::Completed(
            serde_json::from_value(params(&mut frame.params))
                .map_err(|_| parse("process.completed"))?,
        ),
        Some(method::PROCESS_PAUSED | method::PROCESS_RESUMED | method::PROCESS_CANCELED) => {
            Event::Control(
                serde_json::from_value(params(&mut frame.params))
                    .map_err(|_| parse("process control"))?,
            )
        }
        _ => Event::Other(frame),
    })
}

impl Client {
    pub(super) async fn wait_response(&mut self, id: u64) -> Result<Value, ClientError> {
        loop {
            let frame = match self.next_incoming().await? {
                Incoming::Frame(frame) => frame,
                output => {
                    self.queued.push_back(output);
                    continue;
                }
            };
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
            self.queued.push_back(Incoming::Frame(frame));
        }
    }

    /// The next process event (no deadline: a command may run for hours;
    /// wrap it in `tokio::time::timeout` where a deadline applies).
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        let incoming = match self.queued.pop_front() {
            Some(incoming) => incoming,
            None => self.next_incoming().await?,
        };
        incoming.into_event()
    }

    /// The next JSON-RPC frame from the socket. WebSocket pings are answered
    /// by the library; cc_executor's `ping` notifications (its heartbeat: no
    /// `pong` within two intervals and it drops the session) are answered
    /// with a `pong` notification here, and skipped.
    pub async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            let frame = parse_frame(&self.next_text().await?)?;
            if !self.answered_heartbeat(&frame).await? {
                return Ok(frame);
            }
        }
    }

    /// [`Client::next_frame`], batched outputs read by the fast path.
    async fn next_incoming(&mut self) -> Result<Incoming, ClientError> {
        loop {
            let incoming = parse_incoming(&self.next_text().await?, self.batches)?;
            if let Incoming::Frame(frame) = &incoming {
                if self.answered_heartbeat(frame).await? {
                    continue;
                }
            }
            return Ok(incoming);
        }
    }

    /// Whether `frame` is cc_executor's heartbeat `ping`, then answered.
    async fn answered_heartbeat(&mut self, frame: &Frame) -> Result<bool, ClientError> {
        if frame.id.is_some() || frame.method.as_deref() != Some(method::PING) {
            return Ok(false);
        }
        let params = frame.params.clone().unwrap_or(Value::Null);
        self.send_text(&Frame::notification(method::PONG, params).to_json())
            .await?;
        Ok(true)
    }

    /// The next JSON-RPC frame exactly as it came, heartbeat `ping`s
    /// included and unanswered (for tests of the heartbeat itself).
    pub async fn next_raw_frame(&mut self) -> Result<Frame, ClientError> {
        parse_frame(&self.next_text().await?)
    }

    /// The next text frame. With a [`KeepAlive`], WebSocket pings go out
    /// while it waits, and a silence longer than its limit is
    /// [`ClientError::Silent`].
    async fn next_text(&mut self) -> Result<Utf8Bytes, ClientError> {
        // Silence counts from when this wait began: a caller that was busy
        // elsewhere (a slow local stdout) has not heard the server meanwhile.
        let mut heard = Instant::now();
        let mut pinged = heard;
        loop {
            let next = match self.keepalive {
                None => self.socket.next().await,
                Some(keepalive) => {
                    let give_up = heard + keepalive.silence;
                    let ping = pinged.max(heard) + keepalive.every;
                    tokio::select! {
                        biased;
                        next = self.socket.next() => next,
                        _ = sleep_until(give_up.min(ping)) => {
                            pinged = Instant::now();
                            if pinged >= give_up {
                                return Err(self.silent(keepalive));
                            }
                            // A send that cannot even reach the kernel's buffer
                            // within the silence left is the same dead connection.
                            let send = self.socket.send(Message::Ping(Default::default()));
                            match timeout(give_up - pinged, send).await {
                                Ok(sent) => sent.map_err(ws_error)?,
                                Err(_) => return Err(self.silent(keepalive)),
                            }
                            continue;
                        }
                    }
                }
            };
            heard = Instant::now();
            let message = match next {
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
                Message::Text(text) => return Ok(text),
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

    fn silent(&self, keepalive: KeepAlive) -> ClientError {
        ClientError::Silent {
            url: self.url.clone(),
            after: keepalive.silence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Data;

    /// How a frame reads in a session without batches.
    fn general(text: &str) -> String {
        format!("{:?}", parse_frame(text).and_then(event_of))
    }

    /// How it reads in a session with batches.
    fn fast(text: &str) -> String {
        let event = parse_incoming(text, true).and_then(Incoming::into_event);
        format!("{event:?}")
    }

    fn batch(stream: StreamKind, bytes: &[u8], chunk: Option<(u32, u32)>) -> Output {
        Output {
            stream,
            data: Data::Bytes(bytes.to_vec()),
            truncated: chunk.is_some(),
            lossy: false,
            chunk_index: chunk.map(|c| c.0),
            total_chunks: chunk.map(|c| c.1),
        }
    }

    #[test]
    fn batches_read_by_the_fast_path_are_the_outputs_the_general_path_reads() {
        let every_byte: Vec<u8> = (0..=255u8).cycle().take(64 << 10).collect();
        let mut texts = Vec::new();
        for bytes in [&b""[..], b"y\n", b"\xff\x00\xc3", &every_byte] {
            for stream in [StreamKind::Stdout, StreamKind::Stderr] {
                for chunk in [None, Some((3, 7))] {
                    texts.push(batch(stream, bytes, chunk).notification_json());
                }
            }
        }
        // Other orders, spacing, and the members `Frame` has that a
        // notification may carry empty.
        texts.push(
            r#" { "params" : { "lossy" : true , "encoding" : "base64" , "data" : "eQp5Cg==" , "type" : "stderr" } , "method" : "process.output" , "jsonrpc" : "2.0" } "#
                .into(),
        );
        texts.push(r#"{"jsonrpc":"2.0","id":null,"method":"process.output","params":{"type":"stdout","data":"eA==","encoding":"base64"},"result":null,"error":null}"#.into());
        // serde reads a struct from an array too, both ways alike.
        texts.push(
            r#"{"jsonrpc":"2.0","method":"process.output","params":["stdout","eA==","base64"]}"#
                .into(),
        );
        texts.push(r#"{"jsonrpc":"2.0","id":7,"method":"process.output","params":{"type":"stdout","data":"eA==","encoding":"base64","truncated":true,"chunk_index":0,"total_chunks":2}}"#.into());
        for text in &texts {
            assert!(
                Output::from_batch_frame(text).is_some(),
                "the fast path should take {text:.200}"
            );
            let read = fast(text);
            assert!(read.starts_with("Ok(Output("), "{read:.200}");
            assert_eq!(read, general(text), "{text:.200}");
        }
        match parse_incoming(&texts[12], true) {
            Ok(Incoming::Output(output)) => assert!(output.data.as_bytes() == every_byte),
            other => panic!("{other:.200?}"),
        }
    }

    #[test]
    fn frames_the_fast_path_leaves_read_as_they_always_did() {
        let output = |params: &str| {
            format!(r#"{{"jsonrpc":"2.0","method":"process.output","params":{params}}}"#)
        };
        let cases = [
            // Line framing: text, escapes and all.
            output(r#"{"type":"stdout","data":"a \"q\" \\ \n\t\u00e9 \ud83d\ude00 end\n","truncated":false,"lossy":false}"#),
            output(r#"{"type":"stdout","data":"no escapes","truncated":false,"lossy":false}"#),
            output(r#"{"type":"stdout","data":"eA==","encoding":null}"#),
            // Unknown members, at the top and in `params`.
            r#"{"jsonrpc":"2.0","method":"process.output","seq":5,"params":{"type":"stdout","data":"eA==","encoding":"base64"}}"#.into(),
            output(r#"{"type":"stdout","data":"eA==","encoding":"base64","extra":{"a":[1,"b",null]}}"#),
            output(r#"{"type":"stdout","data":"eA==","encoding":"base64","extra":1e400}"#),
            // A duplicate member: `params` reads as a map (the last one wins).
            output(r#"{"type":"stdout","data":"eA==","data":"eQ==","encoding":"base64"}"#),
            // base64 with a JSON escape in it, and base64 that is not.
            output(r#"{"type":"stdout","data":"eA\u003d=","encoding":"base64"}"#),
            output(r#"{"type":"stdout","data":"not base64!","encoding":"base64"}"#),
            output(r#"{"type":"stdout","data":"eA=","encoding":"base64"}"#),
            output("{\"type\":\"stdout\",\"data\":\"eA\u{1}=\",\"encoding\":\"base64\"}"),
            output(r#"{"type":"stdout","data":"eA==","encoding":"rot13"}"#),
            // Malformed members and frames.
            output(r#"{"type":"stdin","data":"eA==","encoding":"base64"}"#),
            output(r#"{"type":"stdout","data":120,"encoding":"base64"}"#),
            output(r#"{"type":"stdout","encoding":"base64"}"#),
            output(r#"{"type":"stdout","data":"eA==","encoding":"base64","chunk_index":-1}"#),
            output(r#"{"type":"stdout","data":"eA==","encoding":"base64","truncated":null}"#),
            output("null"),
            r#"{"method":"process.output","params":{"type":"stdout","data":"eA==","encoding":"base64"}}"#.into(),
            r#"{"jsonrpc":2,"method":"process.output","params":{"type":"stdout","data":"eA==","encoding":"base64"}}"#.into(),
            r#"{"jsonrpc":"2.0","method":"process.output","params":{"type":"stdout","data":"eA==","encoding":"base64"}} x"#.into(),
            r#"{"jsonrpc":"2.0","method":"process.output","params":{"type":"stdout","data":"eA=="#.into(),
            r#"{"jsonrpc":"2.0","method":"process.output","error":{"code":-32000,"message":"boom"},"params":{"type":"stdout","data":"eA==","encoding":"base64"}}"#.into(),
            // Other frames of a batched session.
            r#"{"jsonrpc":"2.0","method":"process.started","params":{"pid":1,"pgid":1,"status":"started"}}"#.into(),
            r#"{"jsonrpc":"2.0","method":"process.completed","params":{"status":"completed","pid":1,"exit_code":0}}"#.into(),
            r#"{"jsonrpc":"2.0","method":"process.completing","params":{"type":"stdout","data":"eA==","encoding":"base64"}}"#.into(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"status":"started","pid":1,"pgid":1}}"#.into(),
            "not json".into(),
        ];
        for text in &cases {
            assert!(
                Output::from_batch_frame(text).is_none(),
                "the fast path took {text}"
            );
            assert_eq!(fast(text), general(text), "{text}");
        }
        // The cases say what they are meant to: some read, some fail.
        assert!(general(&cases[0]).contains(r#"Text("a \"q\" \\ \n\té 😀 end\n")"#));
        assert!(general(&cases[4]).starts_with("Ok(Output("));
        assert!(
            general(&cases[6]).contains("[121]"),
            "{}",
            general(&cases[6])
        );
        assert!(general(&cases[7]).contains("[120]"));
        for bad in [5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22] {
            assert!(general(&cases[bad]).starts_with("Err("), "{}", cases[bad]);
        }
        for good in [1, 2, 3, 23, 24, 25, 26] {
            assert!(general(&cases[good]).starts_with("Ok("), "{}", cases[good]);
        }
        assert!(general(&cases[8]).contains("not valid base64"));
        assert!(general(&cases[22]).contains("boom"));
    }
}
