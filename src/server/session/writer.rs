//! The session's writer task: it owns the socket's sending half and writes
//! every frame that is ready, then flushes once; it follows the running
//! process's events straight from its bounded queue.

use std::future::poll_fn;
use std::task::Poll;

use super::*;

/// Sends every queued frame, and the events of the running process as they
/// come: all frames that are ready go to the socket together and are
/// flushed once (many small lines must not cost one write each). A failed
/// send, or a frame (or the flush) the client has not taken within
/// `stall_limit` (WS_PING_TIMEOUT: the client is dead or stuck), ends the
/// writer, and with it the session. Each frame taken marks `progress`: a
/// slow reader is alive as long as it keeps taking frames.
///
/// Order: `process.completed` is written only after every frame the
/// session queued before it (a CANCEL's answer and `process.canceled` come
/// first).
pub(super) async fn write_all(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    stall_limit: Duration,
    progress: WriteProgress,
) -> WriterEnd {
    // Empty until used: an idle session holds little memory.
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
        // Events already waiting go in the same write: a short command's
        // output is often read by the time its `execute` is answered.
        if let Some(f) = &mut follow {
            while events.len() < EVENT_BATCH {
                match f.events.try_recv() {
                    Ok(event) => events.push(event),
                    Err(_) => break,
                }
            }
        }
        let mut finished = false;
        for event in events.drain(..) {
            let completed = match event {
                ProcessEvent::Output(batch) => {
                    frames.extend(
                        batch
                            .iter()
                            .map(|o| Message::Text(o.notification_json().into())),
                    );
                    continue;
                }
                ProcessEvent::Completed(c) => c,
            };
            // Frames the session queued before the completion go before
            // it; only then is the session free for the next `execute`
            // (whose frames must come after).
            while let Ok(outgoing) = rx.try_recv() {
                match outgoing {
                    Outgoing::Frame(message) => frames.push(message),
                    Outgoing::Follow(next) => {
                        next_follow = Some(next);
                        break;
                    }
                }
            }
            frames.push(Message::Text(
                notification_json(method::PROCESS_COMPLETED, &completed).into(),
            ));
            if let Some(next) = &mut next_follow {
                frames.append(&mut next.announce);
            }
            if let Some(f) = &follow {
                f.completed.store(true, Ordering::Release);
            }
            finished = true;
            break;
        }
        let closing = frames.iter().any(|m| matches!(m, Message::Close(_)));
        let sent = send_frames(&mut sink, &mut frames, stall_limit, &progress).await;
        if finished {
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

/// Feeds `frames` to the socket and flushes; each step that has to wait
/// must be taken within `stall_limit`, and marks `progress` when it is
/// (frames that go into the buffer at once are taken now: the flush marks
/// them).
async fn send_frames(
    sink: &mut SplitSink<WebSocket, Message>,
    frames: &mut Vec<Message>,
    stall_limit: Duration,
    progress: &WriteProgress,
) -> Result<Result<(), axum::Error>, tokio::time::error::Elapsed> {
    for message in frames.drain(..) {
        // A frame usually goes into the write buffer at once: only one that
        // has to wait for the socket pays for a deadline and a clock read.
        let ready = poll_fn(|cx| Poll::Ready(sink.poll_ready_unpin(cx))).await;
        let fed = match ready {
            Poll::Ready(Ok(())) => sink.start_send_unpin(message),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => {
                let fed = timeout(stall_limit, sink.feed(message)).await?;
                progress.mark();
                fed
            }
        };
        if let Err(e) = fed {
            return Ok(Err(e));
        }
    }
    let flushed = timeout(stall_limit, sink.flush()).await?;
    progress.mark();
    Ok(flushed)
}

/// The next events of the followed process; never resolves without one.
async fn next_events(follow: &mut Option<Follow>, events: &mut Vec<ProcessEvent>) -> usize {
    match follow {
        Some(f) => f.events.recv_many(events, EVENT_BATCH).await,
        None => std::future::pending().await,
    }
}
