//! The accept loop and what it allows a connection before its WebSocket
//! upgrade, so that no client can lock the server out:
//!
//! - a deadline for every request head, the upgrade request included, and
//!   for a keep-alive connection's idle time between requests
//!   (CCX_HANDSHAKE_TIMEOUT, hyper's header read timeout);
//! - a cap on connections that have not yet shown an authorized request
//!   (CCX_MAX_PENDING, fitted to the open-file limit by
//!   [`super::fd_budget`]; by default twice the default CCX_MAX_SESSIONS, so
//!   that a burst of clients fits): past it the one that has sent the least
//!   ([`super::pending`]) is refused with `503` and `Retry-After` (never a
//!   silent close), so a flood of silent connections cannot keep a fresh
//!   client out; the log counts them every second. A connection leaves the
//!   pending set once a request of it passes the guards
//!   (`guards::Authorized`, run by the WebSocket upgrade, and by `/mcp` once
//!   the body is read), so an authorized call in flight is never the one
//!   dropped. Work is capped by CCX_MAX_SESSIONS (over it a session or a
//!   stateless `/mcp` call is refused with -32003);
//! - at most [`fd_budget::REFUSING`] refusals linger to deliver their `503`;
//! - the soft RLIMIT_NOFILE raised to the hard limit at start;
//! - accept errors (out of descriptors) answered with a held-back
//!   descriptor, then a pending connection dropped and a back-off instead of
//!   spinning, logged once a second at most.
//!
//! It knows routes only as the `Router` it is given.

use std::io;
use std::sync::atomic::AtomicU64;
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

use super::fd_budget;
use super::pending::{take, Counted, PendingSet, Spare};
use crate::guards::Authorized;

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

/// The caps in force (see [`super::fd_budget`] for how they fit the
/// open-file limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_pending: usize,
    pub handshake_timeout: Duration,
}

/// Answers an evicted connection `503` with `Retry-After`, half-closes it,
/// and reads what the client sent until it closes or [`REFUSAL_LINGER`]
/// passes. `spare` is a duplicate of the connection's socket (hyper's
/// connection, which owned the original, is gone).
async fn refuse_busy(spare: std::net::TcpStream) {
    refuse_busy_with(spare, REFUSAL_LINGER).await
}

/// [`refuse_busy`] lingering at most `linger`: zero writes the answer and
/// closes at once (too many refusals in flight, or out of descriptors).
async fn refuse_busy_with(spare: std::net::TcpStream, linger: Duration) {
    if linger.is_zero() {
        use std::io::Write;
        let mut tcp = spare;
        let _ = tcp.write(BUSY);
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        return;
    }
    // The duplicate shares the original's non-blocking mode.
    let Ok(mut tcp) = tokio::net::TcpStream::from_std(spare) else {
        return;
    };
    let _ = tokio::time::timeout(linger, async {
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

/// One descriptor held back so that, out of descriptors, the server can
/// still accept a waiting connection and answer it `503` instead of
/// leaving it unanswered in the backlog.
struct Emergency(Option<std::fs::File>);

impl Emergency {
    fn new() -> Emergency {
        Emergency(std::fs::File::open("/dev/null").ok())
    }

    /// Frees the held descriptor, accepts one waiting connection (if any
    /// comes within a few milliseconds), refuses it at once, and takes the
    /// descriptor back. Returns whether a connection was answered.
    async fn refuse_one(&mut self, listener: &TcpListener) -> bool {
        if self.0.take().is_none() {
            return false;
        }
        let accepted = tokio::time::timeout(Duration::from_millis(5), listener.accept()).await;
        let answered = match accepted {
            Ok(Ok((tcp, _))) => match tcp.into_std() {
                Ok(tcp) => {
                    refuse_busy_with(tcp, Duration::ZERO).await;
                    true
                }
                Err(_) => false,
            },
            _ => false,
        };
        *self = Emergency::new();
        answered
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
    let pending = PendingSet::new(caps.max_pending);
    let connections = TaskTracker::new();
    let refusing = Arc::new(tokio::sync::Semaphore::new(fd_budget::REFUSING as usize));
    let mut emergency = Emergency::new();
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
                // Out of descriptors (or memory): answer the waiting client
                // with the held-back descriptor, make room, and wait before
                // trying again instead of spinning.
                let answered = emergency.refuse_one(&listener).await;
                let freed = pending.evict_one();
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                accept_log.warn(|n| {
                    format!(
                        "accept error: {e}{}{}; retrying in {backoff:?}{}",
                        if answered {
                            " (answered a waiting connection 503 with the reserve descriptor)"
                        } else {
                            ""
                        },
                        if freed {
                            " (dropped a pending connection)"
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
        let received = Arc::new(AtomicU64::new(0));
        let tcp = Counted::new(tcp, received.clone());
        let send_queue = tcp.send_queue();
        let (id, dropped, _) = pending.admit(spare.clone(), received);
        let routes = TowerToHyperService::new(app.clone());
        let leave = pending.clone();
        let authorized = Authorized::new(move || leave.remove(id));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(authorized.clone());
            request.extensions_mut().insert(send_queue.clone());
            routes.call(request)
        });
        let set = pending.clone();
        let stop = shutdown.clone();
        let refusing = refusing.clone();
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
                        // Lingering holds a descriptor: only a bounded
                        // number of refusals do, the rest close at once.
                        match refusing.try_acquire_owned() {
                            Ok(_permit) => refuse_busy(spare).await,
                            Err(_) => refuse_busy_with(spare, Duration::ZERO).await,
                        }
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
