//! How a supervising process hears that a child exited (SIGCHLD), for the
//! orphan reaper.
//!
//! Every command's shell sends SIGCHLD when it exits: clone3's exit signal
//! of 0 does not survive exec, which resets it to SIGCHLD. Caught by a
//! handler, each such signal interrupts a thread, runs the handler and
//! wakes the runtime through a pipe; measured on the P1 path, a second
//! worker thread woke for every command. So a supervising process blocks
//! SIGCHLD in every thread ([`block`], before its runtime starts) and the
//! reaper reads it from a signalfd, ready in the same reactor turn as the
//! shell's pidfd and pipes. Where SIGCHLD is not blocked (tests that run a
//! server inside their own runtime), tokio's signal handler is used.
//!
//! One of the crate's two modules with `unsafe` code (with `clone3`):
//! handing the signalfd to the reactor.
#![allow(unsafe_code)]

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};

/// Blocks SIGCHLD in the calling thread: call it on the main thread of a
/// supervising process before its runtime starts, so that every thread
/// inherits the mask (children do not: clone3's child and std's spawn
/// both clear the mask before exec).
///
/// Not done where tokio needs the signal itself: without pidfds (Linux
/// before 5.3, or a seccomp filter refusing `pidfd_open`) its
/// `Child::wait` listens for SIGCHLD. Returns whether SIGCHLD is blocked.
pub fn block() -> bool {
    if !pidfd_open_works() {
        return false;
    }
    only_sigchld().thread_block().is_ok()
}

/// Whether `pidfd_open(2)` works here: tokio then awaits its children on
/// pidfds, not SIGCHLD.
fn pidfd_open_works() -> bool {
    rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .is_ok()
}

/// The reaper's source of SIGCHLD.
pub enum Sigchld {
    /// SIGCHLD is blocked in this thread ([`block`]): read from a signalfd.
    Fd(AsyncFd<SignalFd>),
    /// tokio's signal handler.
    Handler(tokio::signal::unix::Signal),
    /// Neither could be set up: the reaper's periodic pass only.
    Tick,
}

impl Sigchld {
    /// A signalfd when SIGCHLD is blocked in this thread, else tokio's
    /// handler. Call inside the runtime.
    pub fn listen() -> Sigchld {
        let blocked = SigSet::thread_get_mask().is_ok_and(|m| m.contains(Signal::SIGCHLD));
        if blocked {
            return match signal_fd() {
                Ok(fd) => Sigchld::Fd(fd),
                Err(e) => {
                    tracing::warn!(
                        "cannot read SIGCHLD from a signalfd ({e}); reaping orphans every 2 s only"
                    );
                    Sigchld::Tick
                }
            };
        }
        match signal(SignalKind::child()) {
            Ok(s) => Sigchld::Handler(s),
            Err(e) => {
                tracing::warn!("cannot watch SIGCHLD ({e}); reaping orphans every 2 s only");
                Sigchld::Tick
            }
        }
    }

    /// Waits for the next SIGCHLD (several pending ones count as one).
    pub async fn recv(&mut self) {
        match self {
            Sigchld::Fd(fd) => loop {
                let Ok(mut ready) = fd.readable().await else {
                    return std::future::pending().await;
                };
                let mut any = false;
                while let Ok(Some(_)) = ready.get_inner().read_signal() {
                    any = true;
                }
                ready.clear_ready();
                if any {
                    return;
                }
            },
            Sigchld::Handler(s) => {
                s.recv().await;
            }
            Sigchld::Tick => std::future::pending().await,
        }
    }
}

fn signal_fd() -> std::io::Result<AsyncFd<SignalFd>> {
    let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
    let fd = SignalFd::with_flags(&only_sigchld(), flags)?;
    // SAFETY: a SignalFd owns its descriptor and keeps it open, unchanged,
    // for as long as the AsyncFd owns the SignalFd.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

fn only_sigchld() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set
}
