//! Connections that have not yet shown an authorized request, and which of
//! them makes room when there are too many (CCX_MAX_PENDING): the one that
//! has sent the fewest bytes, the oldest among equals. A connection that
//! just arrived is spared while older ones remain, since it has had no time
//! to send anything; a silent or trickling socket has had all the time it
//! needed. Each connection counts what its peer sent through [`Counted`].

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::keepalive::SendQueue;

/// How long a new connection is spared from eviction while older ones
/// remain: time enough to send a request head on a loaded machine.
pub const NEWCOMER_GRACE: Duration = Duration::from_millis(500);

/// A duplicate of a pending connection's socket, kept to answer `503` if
/// it is evicted (its original belongs to hyper, which drops it); closed as
/// soon as the connection leaves the pending set.
pub type Spare = Arc<Mutex<Option<std::net::TcpStream>>>;

/// Takes the spare socket out (to answer with it, or to close it).
pub fn take(spare: &Spare) -> Option<std::net::TcpStream> {
    spare.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// One pending connection.
struct Waiting {
    /// Cancelled to drop the connection.
    token: CancellationToken,
    spare: Spare,
    since: Instant,
    /// Bytes its peer has sent so far.
    received: Arc<AtomicU64>,
}

/// Connections not yet authorized, by arrival (ids grow).
#[derive(Default)]
struct Pending {
    next: u64,
    live: BTreeMap<u64, Waiting>,
}

impl Pending {
    /// The connection to drop: the one that sent the fewest bytes among
    /// those past [`NEWCOMER_GRACE`] (the oldest among equals), or the
    /// oldest when every one is a newcomer.
    fn victim(&self, now: Instant) -> Option<u64> {
        self.live
            .iter()
            .filter(|(_, w)| now.duration_since(w.since) >= NEWCOMER_GRACE)
            .min_by_key(|(id, w)| (w.received.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id)
            .or_else(|| self.live.keys().next().copied())
    }
}

/// The pending set shared by the accept loop and its connections.
#[derive(Clone)]
pub struct PendingSet {
    inner: Arc<Mutex<Pending>>,
    max: usize,
    /// Evicted since the last report.
    evicted: Arc<AtomicU64>,
}

impl PendingSet {
    pub fn new(max: usize) -> PendingSet {
        PendingSet {
            inner: Arc::default(),
            max,
            evicted: Arc::default(),
        }
    }

    /// Registers a new connection (`received` counts what its peer sends);
    /// drops one when over the cap. Returns its id, its token, and whether
    /// one was dropped.
    pub fn admit(&self, spare: Spare, received: Arc<AtomicU64>) -> (u64, CancellationToken, bool) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = p.next;
        p.next += 1;
        let token = CancellationToken::new();
        let waiting = Waiting {
            token: token.clone(),
            spare,
            since: Instant::now(),
            received,
        };
        p.live.insert(id, waiting);
        let mut evicted = false;
        let now = Instant::now();
        while p.live.len() > self.max {
            let Some(victim) = p.victim(now).and_then(|id| p.live.remove(&id)) else {
                break;
            };
            // Its spare stays: it carries the `503`.
            victim.token.cancel();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            evicted = true;
        }
        (id, token, evicted)
    }

    /// Drops one pending connection, chosen as [`PendingSet::admit`]
    /// chooses, closing its spare too (out of descriptors: free both,
    /// answer nothing). Returns whether there was one.
    pub fn evict_one(&self) -> bool {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match p.victim(Instant::now()).and_then(|id| p.live.remove(&id)) {
            Some(victim) => {
                drop(take(&victim.spare));
                victim.token.cancel();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Takes connection `id` out of the set (it is authorized, or gone),
    /// closing its spare socket.
    pub fn remove(&self, id: u64) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = p.live.remove(&id) {
            drop(take(&waiting.spare));
        }
    }

    /// Logs how many connections were refused since the last report.
    pub fn report(&self) {
        let n = self.evicted.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                "{n} pending connection(s) refused with 503: more than {} connections had not \
                 sent an authorized request yet (CCX_MAX_PENDING); those that had sent the least went first",
                self.max
            );
        }
    }
}

/// A socket that counts the bytes its peer sent into `received`, and
/// makes its [`SendQueue`] forget it before it closes.
pub struct Counted {
    inner: TcpStream,
    received: Arc<AtomicU64>,
    queue: SendQueue,
}

impl Counted {
    pub fn new(inner: TcpStream, received: Arc<AtomicU64>) -> Counted {
        use std::os::fd::AsRawFd;
        let queue = SendQueue::new(inner.as_raw_fd());
        Counted {
            inner,
            received,
            queue,
        }
    }

    /// The socket's send queue, for the session's keep-alive.
    pub fn send_queue(&self) -> SendQueue {
        self.queue.clone()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.queue.forget();
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = (buf.filled().len() - before) as u64;
            this.received.fetch_add(n, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(n: u64) -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(n))
    }

    #[test]
    fn among_newcomers_the_oldest_makes_room() {
        let set = PendingSet::new(2);
        let (_, first, e1) = set.admit(Spare::default(), counter(0));
        let (_, second, e2) = set.admit(Spare::default(), counter(0));
        assert!(!e1 && !e2);
        let (third_id, third, e3) = set.admit(Spare::default(), counter(0));
        assert!(e3);
        assert!(first.is_cancelled() && !second.is_cancelled() && !third.is_cancelled());
        set.remove(third_id);
        assert!(set.evict_one());
        assert!(second.is_cancelled());
        assert!(!set.evict_one());
    }

    #[test]
    fn the_one_that_sent_least_makes_room_and_a_newcomer_is_spared() {
        let set = PendingSet::new(3);
        let trickler = counter(40);
        let (_, slow, _) = set.admit(Spare::default(), trickler.clone());
        let (_, silent, _) = set.admit(Spare::default(), counter(0));
        let (_, busy, _) = set.admit(Spare::default(), counter(300));
        // Let them age past the grace, then a newcomer (0 bytes) arrives.
        {
            let mut p = set.inner.lock().unwrap();
            for w in p.live.values_mut() {
                w.since -= NEWCOMER_GRACE;
            }
        }
        let (_, newcomer, evicted) = set.admit(Spare::default(), counter(0));
        assert!(evicted);
        assert!(silent.is_cancelled(), "the silent one goes first");
        assert!(!slow.is_cancelled() && !busy.is_cancelled() && !newcomer.is_cancelled());
        // Then the trickler (40 bytes) before the one that sent 300.
        assert!(set.evict_one());
        assert!(slow.is_cancelled() && !busy.is_cancelled() && !newcomer.is_cancelled());
    }
}
