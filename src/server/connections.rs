//! The accept loop and what it allows a connection before its WebSocket
//! upgrade, so that no client can lock the server out:
//!
//! - a deadline for every request head, the upgrade request included, and
//!   for a keep-alive connection's idle time between requests
//!   (CCX_HANDSHAKE_TIMEOUT, hyper's header read timeout);
//! - a cap on connections that have not yet shown an authorized request
//!   (CCX_MAX_PENDING, lowered to fit the file-descriptor limit; by default
//!   twice the default CCX_MAX_SESSIONS, so that a burst of clients fits):
//!   when it is reached the oldest of them is refused with `503` and
//!   `Retry-After` (never a silent close), so a flood of silent connections
//!   cannot keep a fresh client out; the log counts them every second. A connection leaves this pending set
//!   once a request of it passes the guards (`guards::Authorized`, run by
//!   the WebSocket upgrade, and by `/mcp` once the body is read), so an
//!   authorized call in flight is never the one dropped. Work is capped by
//!   CCX_MAX_SESSIONS (over it a session or a stateless `/mcp` call is
//!   refused with -32003);
//! - the soft RLIMIT_NOFILE raised to the hard limit at start;
//! - accept errors (out of descriptors) that drop the oldest pending
//!   connection and back off instead of spinning, logged once a second at most.
//!
//! It knows routes only as the `Router` it is given.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::guards::Authorized;

/// Descriptors kept for everything but connections: the listener, logs,
/// the runtime, signal handling, state files.
const RESERVED_FDS: u64 = 64;
/// Descriptors a session may hold: its socket, and its process's pipes.
const FDS_PER_SESSION: u64 = 4;
/// How long in-flight HTTP requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a refused connection is kept to deliver its `503`: closing a
/// socket with unread input resets it, and the reset can destroy the answer
/// before the client reads it, so what the client sent is read first.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// The answer to a connection evicted from the pending set.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 109\r\nConnection: close\r\n\r\n\
busy: too many connections have not yet sent an authorized request (CCX_MAX_PENDING); retry in 1 s\n";

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit in force afterwards (`None`: unlimited or unknown).
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let soft = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
                soft
            }
        }
    } else {
        soft
    };
    (soft != RLIM_INFINITY).then_some(soft)
}

/// The caps in force, from the configuration and the fd limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_pending: usize,
    pub handshake_timeout: Duration,
}

impl Caps {
    /// `max_pending` is lowered so that pending connections plus full
    /// sessions fit in `fd_limit`, but never below 8.
    pub fn new(
        max_pending: usize,
        max_sessions: usize,
        handshake_timeout: Duration,
        fd_limit: Option<u64>,
    ) -> Caps {
        let max_pending = match fd_limit {
            Some(limit) => {
                let room = limit.saturating_sub(RESERVED_FDS);
                let sessions = (max_sessions as u64).saturating_mul(FDS_PER_SESSION);
                if sessions + 2 * max_pending as u64 > room {
                    tracing::warn!(
                        "the open-file limit ({limit}) is below what {max_sessions} sessions \
                         (CCX_MAX_SESSIONS) and {max_pending} pending connections \
                         (CCX_MAX_PENDING) may need; raise `ulimit -n` or lower them"
                    );
                }
                // Half of the room, at two descriptors per pending
                // connection (its socket and the spare that answers 503).
                let quarter = usize::try_from(room / 4).unwrap_or(usize::MAX);
                max_pending.min(quarter).max(8)
            }
            None => max_pending,
        };
        Caps {
            max_pending,
            handshake_timeout,
        }
    }
}

/// A duplicate of a pending connection's socket, kept to answer `503` if
/// it is evicted (its original belongs to hyper, which drops it); closed as
/// soon as the connection leaves the pending set.
type Spare = Arc<Mutex<Option<std::net::TcpStream>>>;

/// Connections not yet upgraded, oldest first, each with the token that
/// drops it and its spare socket.
#[derive(Default)]
struct Pending {
    next: u64,
    live: BTreeMap<u64, (CancellationToken, Spare)>,
}

fn take(spare: &Spare) -> Option<std::net::TcpStream> {
    spare.lock().unwrap_or_else(|e| e.into_inner()).take()
}

#[derive(Clone)]
struct PendingSet {
    inner: Arc<Mutex<Pending>>,
    max: usize,
    /// Evicted since the last report.
    evicted: Arc<AtomicU64>,
}

impl PendingSet {
    /// Registers a new connection; drops the oldest when over the cap.
    /// Returns its id, its token, and whether one was dropped.
    fn admit(&self, spare: Spare) -> (u64, CancellationToken, bool) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = p.next;
        p.next += 1;
        let token = CancellationToken::new();
        p.live.insert(id, (token.clone(), spare));
        let mut evicted = false;
        while p.live.len() > self.max {
            if let Some((_, (oldest, _))) = p.live.pop_first() {
                oldest.cancel();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                evicted = true;
            }
        }
        (id, token, evicted)
    }

    /// Drops the oldest pending connection (to free a descriptor).
    fn evict_oldest(&self) -> bool {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match p.live.pop_first() {
            Some((_, (oldest, spare))) => {
                // Out of descriptors: free both, answer nothing.
                drop(take(&spare));
                oldest.cancel();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Takes connection `id` out of the set (it is authorized, or gone),
    /// closing its spare socket.
    fn remove(&self, id: u64) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, spare)) = p.live.remove(&id) {
            drop(take(&spare));
        }
    }

    /// Logs how many connections were refused since the last report.
    fn report(&self) {
        let n = self.evicted.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                "{n} pending connection(s) refused with 503: more than {} connections had not \
                 sent an authorized request yet (CCX_MAX_PENDING)",
                self.max
            );
        }
    }
}

/// Answers an evicted connection `503` with `Retry-After`, half-closes it,
/// and reads what the client sent until it closes or [`REFUSAL_LINGER`]
/// passes. `spare` is a duplicate of the connection's socket (hyper's
/// connection, which owned the original, is gone).
async fn refuse_busy(spare: std::net::TcpStream) {
    // The duplicate shares the original's non-blocking mode.
    let Ok(mut tcp) = tokio::net::TcpStream::from_std(spare) else {
        return;
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        tcp.write_all(BUSY).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Logs at most once a second, with how many were suppressed.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new() -> Self {
        Throttled {
            last: None,
            suppressed: 0,
        }
    }

    fn warn(&mut self, message: impl FnOnce(u64) -> String) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!("{}", message(self.suppressed));
        self.suppressed = 0;
        self.last = Some(Instant::now());
    }
}

/// The accepted socket and a duplicate of it (none when out of descriptors:
/// the connection is then closed without an answer if it is evicted).
fn with_spare(
    tcp: tokio::net::TcpStream,
) -> io::Result<(tokio::net::TcpStream, Option<std::net::TcpStream>)> {
    let tcp = tcp.into_std()?;
    let spare = tcp.try_clone().ok();
    Ok((tokio::net::TcpStream::from_std(tcp)?, spare))
}

/// Errors of one connection, not of the listener (the peer left before
/// accept returned).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Accepts and serves connections until `shutdown`, then lets in-flight
/// HTTP requests finish (upgraded sessions are ended by their own tasks).
pub async fn serve(listener: TcpListener, app: Router, caps: Caps, shutdown: CancellationToken) {
    let pending = PendingSet {
        inner: Arc::default(),
        max: caps.max_pending,
        evicted: Arc::default(),
    };
    let connections = TaskTracker::new();
    let mut backoff = Duration::ZERO;
    let mut accept_log = Throttled::new();
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = report.tick() => {
                pending.report();
                continue;
            }
            _ = shutdown.cancelled() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _addr)) => {
                backoff = Duration::ZERO;
                tcp
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (or memory): make room, and wait before
                // trying again instead of spinning.
                let freed = pending.evict_oldest();
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                accept_log.warn(|n| {
                    format!(
                        "accept error: {e}{}; retrying in {backoff:?}{}",
                        if freed {
                            " (dropped the oldest pending connection)"
                        } else {
                            ""
                        },
                        if n > 0 {
                            format!(" ({n} more since the last report)")
                        } else {
                            String::new()
                        }
                    )
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        // Small frames must leave at once: without TCP_NODELAY, Nagle and
        // delayed ACK add ~40 ms to every round trip.
        let _ = tcp.set_nodelay(true);
        let (tcp, spare) = match with_spare(tcp) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!("cannot set up an accepted connection: {e}");
                continue;
            }
        };
        let spare: Spare = Arc::new(Mutex::new(spare));
        let (id, dropped, _) = pending.admit(spare.clone());
        let routes = TowerToHyperService::new(app.clone());
        let leave = pending.clone();
        let authorized = Authorized::new(move || leave.remove(id));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(authorized.clone());
            routes.call(request)
        });
        let set = pending.clone();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(caps.handshake_timeout);
            let mut conn = Box::pin(
                http.serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades(),
            );
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                }
                _ = dropped.cancelled() => {
                    // The socket outlives hyper's connection through its
                    // spare, to carry the refusal.
                    drop(conn);
                    if let Some(spare) = take(&spare) {
                        refuse_busy(spare).await;
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
                }
            }
            set.remove(id);
        });
    }
    pending.report();
    connections.close();
    let _ = tokio::time::timeout(
        SHUTDOWN_GRACE + Duration::from_millis(200),
        connections.wait(),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pending_connection_makes_room() {
        let set = PendingSet {
            inner: Arc::default(),
            max: 2,
            evicted: Arc::default(),
        };
        let (_, first, e1) = set.admit(Spare::default());
        let (_, second, e2) = set.admit(Spare::default());
        assert!(!e1 && !e2);
        let (third_id, third, e3) = set.admit(Spare::default());
        assert!(e3);
        assert!(first.is_cancelled() && !second.is_cancelled() && !third.is_cancelled());
        set.remove(third_id);
        assert!(set.evict_oldest());
        assert!(second.is_cancelled());
        assert!(!set.evict_oldest());
    }

    #[test]
    fn pending_cap_fits_the_fd_limit() {
        let t = Duration::from_secs(10);
        assert_eq!(Caps::new(128, 256, t, None).max_pending, 128);
        assert_eq!(Caps::new(128, 256, t, Some(1 << 20)).max_pending, 128);
        // 256 descriptors: 64 reserved, half of the rest for pending ones
        // at two each.
        assert_eq!(Caps::new(128, 256, t, Some(256)).max_pending, 48);
        assert_eq!(Caps::new(128, 256, t, Some(16)).max_pending, 8);
    }
}
