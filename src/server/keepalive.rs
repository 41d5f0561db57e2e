//! Whether a WebSocket peer is still alive. A pong says so, and so does
//! reading: the server's ping waits behind whatever output is queued before
//! it, so a client that reads slowly but steadily may answer it late. Two
//! signs of reading count: the socket took a frame from the writer
//! recently ([`WriteProgress`]), or the socket's send queue (bytes the
//! peer has not acknowledged, `SIOCOUTQ`) shrank since the last look
//! ([`SendQueue`]). What waits in the peer's own receive buffer is not
//! visible: a client must read that within `WS_PING_TIMEOUT`.

// One ioctl (SIOCOUTQ), which no safe wrapper offers; see its SAFETY note.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// When the socket last took a frame from the writer; shared by the writer,
/// which marks it, and the session loop, which reads it when a pong is late.
#[derive(Clone)]
pub struct WriteProgress {
    since: Instant,
    millis: Arc<AtomicU64>,
}

impl Default for WriteProgress {
    fn default() -> WriteProgress {
        WriteProgress {
            since: Instant::now(),
            millis: Arc::default(),
        }
    }
}

impl WriteProgress {
    /// Records that the socket took a frame now.
    pub fn mark(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the socket last took a frame (the session's start if never).
    pub fn last(&self) -> Instant {
        self.since + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }

    /// The new pong deadline when the pong due now is late but the client
    /// read within `limit`; `None` when it neither answered nor read.
    pub fn extended_deadline(&self, limit: Duration) -> Option<Instant> {
        let deadline = self.last() + limit;
        (deadline > Instant::now()).then_some(deadline)
    }
}

/// A connection's socket, to read how many bytes wait in its send queue;
/// forgotten (under the lock) before the socket closes, so its descriptor
/// is never read once it may belong to something else.
#[derive(Clone, Default)]
pub struct SendQueue(Arc<Mutex<Option<RawFd>>>);

impl SendQueue {
    pub fn new(fd: RawFd) -> SendQueue {
        SendQueue(Arc::new(Mutex::new(Some(fd))))
    }

    /// Bytes sent but not yet acknowledged by the peer (`None`: the socket
    /// is closed or cannot say).
    pub fn unsent(&self) -> Option<u64> {
        let fd = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fd = (*fd)?;
        let mut queued: nix::libc::c_int = 0;
        // SAFETY: `fd` is open while the lock is held (`forget` takes the
        // lock before the socket closes), and SIOCOUTQ (TIOCOUTQ) writes one
        // int through the pointer, which points to a live c_int.
        let rc = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCOUTQ, &mut queued) };
        (rc == 0).then(|| u64::try_from(queued).unwrap_or(0))
    }

    /// Called before the socket closes.
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What the session knows of its peer's reading, for a pong that is late.
pub struct PeerProgress {
    written: WriteProgress,
    queue: Option<SendQueue>,
    last_unsent: Option<u64>,
}

impl PeerProgress {
    pub fn new(written: WriteProgress, queue: Option<SendQueue>) -> PeerProgress {
        PeerProgress {
            written,
            queue,
            last_unsent: None,
        }
    }

    /// Notes the send queue as the ping leaves.
    pub fn ping_sent(&mut self) {
        self.last_unsent = self.queue.as_ref().and_then(SendQueue::unsent);
    }

    /// The new pong deadline when the pong due now is late but the peer
    /// read within `limit` (a frame taken, or the send queue shorter than
    /// at the last look); `None` when it neither answered nor read.
    pub fn late_pong_deadline(&mut self, limit: Duration) -> Option<Instant> {
        if let Some(later) = self.written.extended_deadline(limit) {
            return Some(later);
        }
        let now = self.queue.as_ref().and_then(SendQueue::unsent);
        let shrank = matches!((now, self.last_unsent), (Some(n), Some(before)) if n < before);
        self.last_unsent = now;
        shrank.then(|| Instant::now() + limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reading_recently_extends_the_deadline_and_silence_does_not() {
        let progress = WriteProgress::default();
        let limit = Duration::from_secs(2);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(progress.extended_deadline(limit), None);
        progress.mark();
        let extended = progress.extended_deadline(limit).expect("read just now");
        assert_eq!(extended, Instant::now() + limit);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(progress.extended_deadline(limit), None);
    }
}
