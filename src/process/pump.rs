//! Reading a command's two pipes: each [`Pump`] reads one to EOF and
//! sends its lines (`lines::LineFramer`) through the bounded queue, under the
//! output cap the two share ([`OutputBudget`]), and stops reading what an
//! escaped descendant keeps open once the group is gone.

use super::*;

/// The per-process output cap, shared by stdout and stderr.
#[derive(Debug)]
pub(super) struct OutputBudget {
    pub(super) remaining: AtomicU64,
    pub(super) truncation_announced: AtomicBool,
}

impl OutputBudget {
    pub(super) fn new(cap: u64) -> Self {
        OutputBudget {
            remaining: AtomicU64::new(cap),
            truncation_announced: AtomicBool::new(false),
        }
    }

    /// Takes up to `n` bytes from the budget; returns how many were granted.
    pub(super) fn take(&self, n: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                granted = left.min(n);
                Some(left - granted)
            });
        granted
    }

    /// True exactly once: for the chunk that first hits the cap.
    pub(super) fn announce_truncation(&self) -> bool {
        !self.truncation_announced.swap(true, Ordering::AcqRel)
    }
}

/// Reads one pipe to EOF, sending its lines (`lines::LineFramer`); past the
/// output cap it keeps reading (so the process never blocks on a full pipe)
/// and drops the bytes.
pub(super) struct Pump {
    pub(super) stream: StreamKind,
    pub(super) events: mpsc::Sender<ProcessEvent>,
    pub(super) budget: Arc<OutputBudget>,
    /// Turns true once the whole group is gone: from then on the pipe is
    /// read for at most DRAIN_AFTER_EXIT (what is left writing to it is an
    /// escaped descendant), then reading stops.
    pub(super) group_gone: watch::Receiver<bool>,
    /// When the drain ends, set once the group is gone.
    pub(super) drain_until: Option<Instant>,
    /// Bytes read past the drain's end.
    pub(super) late: usize,
}

impl Pump {
    pub(super) async fn run(mut self, reader: &mut (impl AsyncRead + Unpin)) {
        let mut buf = vec![0u8; FIRST_READ];
        let mut framer = LineFramer::new(self.stream);
        let mut ready = Vec::new();
        let mut capped = false;
        let mut consumer_gone = false;
        loop {
            let read = if framer.has_partial() && !capped && !consumer_gone {
                match timeout(IDLE_FLUSH, self.read(reader, &mut buf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        framer.flush_partial(&mut ready);
                        consumer_gone = !self.send_all(&mut ready).await;
                        continue;
                    }
                }
            } else {
                self.read(reader, &mut buf).await
            };
            let Some(n) = read else {
                break;
            };
            if capped || consumer_gone {
                continue;
            }
            let granted = self.budget.take(n as u64) as usize;
            framer.push(&buf[..granted], &mut ready);
            if n == buf.len() && buf.len() < READ_CHUNK {
                buf.resize(READ_CHUNK, 0);
            }
            if granted < n {
                capped = true;
                let sent = framer.truncate(&mut ready);
                let first = self.budget.announce_truncation();
                if !sent && first {
                    ready.push(self.output(String::new(), true, false));
                }
            }
            consumer_gone = !self.send_all(&mut ready).await;
        }
        if !capped && !consumer_gone {
            framer.finish(&mut ready);
            self.send_all(&mut ready).await;
        }
    }

    /// One read; `None` at EOF, on error, or when the group is gone and the
    /// pipe stays silent.
    pub(super) async fn read(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        buf: &mut [u8],
    ) -> Option<usize> {
        let result = loop {
            if *self.group_gone.borrow() {
                let until = *self
                    .drain_until
                    .get_or_insert_with(|| Instant::now() + DRAIN_AFTER_EXIT);
                if Instant::now() >= until && self.late >= LATE_READ_LIMIT {
                    return None;
                }
                // A read that is ready completes even past the deadline (the
                // inner future is polled first); one that would wait ends.
                let read = tokio::time::timeout_at(until, reader.read(buf))
                    .await
                    .ok()?;
                if Instant::now() >= until {
                    self.late += read.as_ref().map_or(0, |n| *n);
                }
                break read;
            }
            tokio::select! {
                r = reader.read(buf) => break r,
                changed = self.group_gone.changed() => if changed.is_err() { break reader.read(buf).await },
            }
        };
        match result {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        }
    }

    /// Sends the framed messages in order (emptying `ready`); false once
    /// the consumer is gone.
    pub(super) async fn send_all(&self, ready: &mut Vec<Output>) -> bool {
        for output in ready.drain(..) {
            if self
                .events
                .send(ProcessEvent::Output(output))
                .await
                .is_err()
            {
                return false; // dropping the drain discards the rest
            }
        }
        true
    }

    pub(super) fn output(&self, data: String, truncated: bool, lossy: bool) -> Output {
        Output {
            stream: self.stream,
            data,
            truncated,
            lossy,
            chunk_index: None,
            total_chunks: None,
        }
    }
}
