//! Whether a WebSocket peer is still alive. A pong says so, and so does
//! reading: the server's ping waits behind whatever output is queued before
//! it, so a client that reads slowly but steadily may answer it late, yet
//! every frame the socket takes is proof that the client is reading.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
