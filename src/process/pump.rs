//! The output pump of one command: reads its stdout and stderr pipes until
//! both end, frames their bytes into lines (`lines`) and sends them to the
//! command's bounded event queue, in the order the bytes became readable.
//!
//! Order across the two streams is the order of readiness: both pipes are
//! in a private, edge-triggered epoll set (registered with the runtime as
//! one descriptor), and the kernel returns its events in the order they
//! happened. So `echo out; echo err >&2` reaches the client as out, err,
//! even when both lines are waiting by the time the pump runs (reading the
//! two pipes in a fixed or rotating order would reverse them).
//!
//! Past the output cap the pump keeps reading (a process must never block
//! on a full pipe) and drops the bytes. Once the whole group is gone, a
//! pipe that is still held open belongs to an escaped descendant: it is
//! read for a bounded time ([`DRAIN_AFTER_EXIT`]), then abandoned.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::batches::Framer;
use super::readiness::{Found, Readiness};
use super::{ProcessEvent, OUTPUT_BATCH, OUTPUT_BATCH_MESSAGES};
use crate::protocol::{Output, StreamKind};

/// Bytes read from a pipe at a time (one pipe buffer), once a read has
/// filled [`FIRST_READ`]: most commands print a few lines, and a zeroed
/// 64 KiB buffer per command showed in the profile.
const READ_CHUNK: usize = 64 * 1024;
const FIRST_READ: usize = 4 * 1024;
/// Output that stops mid-line is sent after this long without new bytes,
/// so that a prompt or a progress dot is not held until the newline.
pub const IDLE_FLUSH: Duration = Duration::from_millis(200);
/// How long output may keep flowing after the whole group is gone (a
/// descendant that left the group can hold the pipes open forever): a hard
/// cap, not a silence (an untracked process that keeps printing must not
/// hold the completion back).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// What may still be read from a pipe past the drain: what it already held
/// (1 MiB is the most an unprivileged process can make a pipe hold), so that
/// a consumer slower than the drain loses no output of a command that ended.
const LATE_READ_LIMIT: usize = 1024 * 1024;
/// Full reads of one stream in a row before the other stream's turn: a
/// stream that stays full is read on (its bytes were written first) but
/// cannot starve the other one.
const RUN_OF_READS: u32 = 16;
/// How often the pipes are tried once their epoll set failed.
const FALLBACK_TICK: Duration = Duration::from_millis(10);

/// The per-process output cap, shared by stdout and stderr.
#[derive(Debug)]
pub(super) struct OutputBudget {
    remaining: AtomicU64,
    truncation_announced: AtomicBool,
}

impl OutputBudget {
    pub(super) fn new(cap: u64) -> Self {
        OutputBudget {
            remaining: AtomicU64::new(cap),
            truncation_announced: AtomicBool::new(false),
        }
    }

    /// Takes up to `n` bytes from the budget; returns how many were granted.
    fn take(&self, n: u64) -> u64 {
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
    fn announce_truncation(&self) -> bool {
        !self.truncation_announced.swap(true, Ordering::AcqRel)
    }
}

/// One of the two pipes and what the pump knows of it.
struct Stream {
    /// The pipe's read end, non-blocking.
    pipe: File,
    framer: Framer,
    open: bool,
    capped: bool,
    /// When bytes last arrived (the idle flush counts from there).
    last_read: Instant,
    /// Bytes read past the drain's end.
    late: usize,
    /// Full reads in a row.
    run: u32,
}

/// Reads both pipes of a command to their end (see the module comment).
pub(super) struct Pump {
    pub(super) events: mpsc::Sender<ProcessEvent>,
    pub(super) budget: OutputBudget,
    /// Batched framing (`batches`) instead of one message per line.
    pub(super) batched: bool,
    /// Turns true once the whole group is gone: from then on the pipes are
    /// read for at most DRAIN_AFTER_EXIT.
    pub(super) group_gone: watch::Receiver<bool>,
}

impl Pump {
    /// Returns the pipes once both ended, for the caller to close off the
    /// client's path.
    pub(super) async fn run(self, stdout: OwnedFd, stderr: OwnedFd, readiness: Readiness) -> Spent {
        let Pump {
            events,
            budget,
            batched,
            mut group_gone,
        } = self;
        let now = Instant::now();
        let stream = |kind, fd: OwnedFd| Stream {
            pipe: File::from(fd),
            framer: Framer::new(kind, batched),
            open: true,
            capped: false,
            last_read: now,
            late: 0,
            run: 0,
        };
        let mut streams = [
            stream(StreamKind::Stdout, stdout),
            stream(StreamKind::Stderr, stderr),
        ];
        let mut found = [Found::default(); 2];
        let mut readiness_failed = false;
        let mut buf = vec![0u8; FIRST_READ];
        let mut ready = Vec::new();
        let mut queue: VecDeque<usize> = VecDeque::with_capacity(4);
        let mut consumer_gone = false;
        let mut drain_until: Option<Instant> = None;
        let mut gone_open = true;
        while streams.iter().any(|s| s.open) {
            // Checked before every read, not only when the pipes are quiet:
            // an escaped descendant that never stops printing must not keep
            // the drain from starting.
            if drain_until.is_none() && *group_gone.borrow() {
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            let Some(i) = queue.pop_front() else {
                if drain_until.is_some_and(|d| Instant::now() >= d) {
                    // Past the drain: each pipe is read while it has bytes
                    // (up to LATE_READ_LIMIT), then abandoned.
                    queue.extend((0..2).filter(|&i| streams[i].open));
                    continue;
                }
                let idle_at = streams
                    .iter()
                    .filter(|s| s.open && !s.capped && !consumer_gone && s.framer.has_partial())
                    .map(|s| s.last_read + IDLE_FLUSH)
                    .min();
                let watching_gone = gone_open && drain_until.is_none();
                tokio::select! {
                    waited = readiness.wait(&mut queue, &mut found), if !readiness_failed => if let Err(e) = waited {
                        tracing::warn!("cannot watch a command's output pipes ({e}): trying them every {FALLBACK_TICK:?}");
                        readiness_failed = true;
                    },
                    _ = tokio::time::sleep(FALLBACK_TICK), if readiness_failed => {
                        found = [Found { hung_up: true }; 2];
                        queue.extend([0, 1]);
                    }
                    _ = sleep_until(idle_at.unwrap_or(now)), if idle_at.is_some() => {
                        let now = Instant::now();
                        for s in streams.iter_mut() {
                            if s.open && s.framer.has_partial() && s.last_read + IDLE_FLUSH <= now {
                                s.framer.flush_partial(&mut ready);
                                // A character still incomplete waits for another idle period.
                                s.last_read = now;
                            }
                        }
                        consumer_gone = !send_all(&events, &mut ready).await;
                    }
                    changed = group_gone.changed(), if watching_gone => match changed {
                        Ok(()) if *group_gone.borrow_and_update() => {
                            drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                        }
                        Ok(()) => {}
                        Err(_) => gone_open = false,
                    },
                    _ = sleep_until(drain_until.unwrap_or(now)), if drain_until.is_some() => {}
                }
                continue;
            };
            let past_drain = drain_until.is_some_and(|d| Instant::now() >= d);
            let s = &mut streams[i];
            if !s.open {
                continue;
            }
            if past_drain && s.late >= LATE_READ_LIMIT {
                s.open = false;
                continue;
            }
            let n = match (&s.pipe).read(&mut buf) {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    queue.push_front(i);
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    s.run = 0;
                    if past_drain {
                        s.open = false;
                    }
                    continue;
                }
                Err(_) => None,
            };
            let Some(n) = n else {
                s.open = false;
                if !s.capped && !consumer_gone {
                    s.framer.finish(&mut ready);
                    consumer_gone = !send_all(&events, &mut ready).await;
                }
                continue;
            };
            if past_drain {
                s.late += n;
            }
            let full = n == buf.len();
            // A full read may have left bytes behind: this stream is read
            // again before bytes the other one got later, up to a run.
            if full {
                s.run += 1;
                if s.run < RUN_OF_READS {
                    queue.push_front(i);
                } else {
                    s.run = 0;
                    queue.push_back(i);
                }
            } else {
                s.run = 0;
                // The pipe was empty after this read; when its writers are
                // gone, no event will come for its end: read it now.
                if found[i].hung_up {
                    queue.push_front(i);
                }
            }
            if s.capped || consumer_gone {
                continue;
            }
            s.last_read = Instant::now();
            let granted = budget.take(n as u64) as usize;
            s.framer.push(&buf[..granted], &mut ready);
            if granted < n {
                s.capped = true;
                let sent = s.framer.truncate(&mut ready);
                let first = budget.announce_truncation();
                if !sent && first {
                    ready.push(s.framer.truncation_marker());
                }
            }
            if full && buf.len() < READ_CHUNK {
                buf.resize(READ_CHUNK, 0);
            }
            consumer_gone = !send_all(&events, &mut ready).await;
        }
        let [out, err] = streams;
        Spent {
            _pipes: [out.pipe, err.pipe],
            _readiness: readiness,
        }
    }
}

/// The descriptors of a pump that finished.
pub(super) struct Spent {
    _pipes: [File; 2],
    _readiness: Readiness,
}

/// Sends the framed messages in order (emptying `ready`), as few events as
/// [`OUTPUT_BATCH`] allows; false once the consumer is gone.
async fn send_all(events: &mpsc::Sender<ProcessEvent>, ready: &mut Vec<Output>) -> bool {
    while !ready.is_empty() {
        let mut size = 0;
        let fit = ready
            .iter()
            .take(OUTPUT_BATCH_MESSAGES)
            .position(|o| {
                size += o.data.len();
                size > OUTPUT_BATCH
            })
            .unwrap_or(ready.len().min(OUTPUT_BATCH_MESSAGES))
            .max(1);
        // The next read frames about as many messages: a vector sized for
        // them at once, not grown from empty (its reallocations showed).
        let batch = match fit == ready.len() {
            true => std::mem::replace(ready, Vec::with_capacity(fit)),
            false => ready.drain(..fit).collect(),
        };
        if events.send(ProcessEvent::Output(batch)).await.is_err() {
            ready.clear();
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Data;

    fn message(data: &[u8]) -> Output {
        Output {
            stream: StreamKind::Stdout,
            data: Data::Bytes(data.to_vec()),
            truncated: false,
            lossy: false,
            chunk_index: None,
            total_chunks: None,
        }
    }

    #[tokio::test]
    async fn a_queue_slot_holds_a_bounded_batch_and_order_is_kept() {
        let mut ready: Vec<Output> = (0..3000u32)
            .map(|i| message(&i.to_le_bytes()[..1]))
            .chain([message(&[b'x'; 40_000]), message(&[b'y'; 40_000])])
            .collect();
        let expected: Vec<u8> = ready
            .iter()
            .flat_map(|o| o.data.as_bytes().to_vec())
            .collect();
        let (tx, mut rx) = mpsc::channel(64);
        assert!(send_all(&tx, &mut ready).await);
        assert!(ready.is_empty());
        drop(tx);
        let mut got = Vec::new();
        while let Some(ProcessEvent::Output(batch)) = rx.recv().await {
            let size: usize = batch.iter().map(|o| o.data.len()).sum();
            assert!(!batch.is_empty() && batch.len() <= OUTPUT_BATCH_MESSAGES);
            assert!(size <= OUTPUT_BATCH || batch.len() == 1, "{size} bytes");
            got.extend(batch.iter().flat_map(|o| o.data.as_bytes().to_vec()));
        }
        assert_eq!(got, expected);
    }
}
