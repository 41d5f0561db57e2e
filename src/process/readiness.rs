//! Which of a command's two output pipes have bytes, in the order they got
//! them: a private, edge-triggered epoll set holding both pipes, registered
//! with the runtime as one descriptor. The kernel queues a set's events in
//! the order they happen, so draining them in that order keeps what a
//! command wrote one system call apart in its order across stdout and
//! stderr. The pipes join the set before the command starts: pipes that
//! both hold bytes when they join would be queued in the order of joining.
//! Only this module registers a raw descriptor with the runtime (the one
//! `unsafe` call).
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The set's descriptor, as the runtime registers it.
#[derive(Debug)]
struct EpollSet(Epoll);

impl AsRawFd for EpollSet {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// A command's stdout (0) and stderr (1) pipes, reported in the order
/// they became readable or ended.
#[derive(Debug)]
pub struct Readiness {
    set: AsyncFd<EpollSet>,
}

/// What one wait found about a pipe.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Found {
    /// The writing side is closed: what is left is read to the end (no
    /// event will say so again).
    pub(super) hung_up: bool,
}

impl Readiness {
    /// An empty set, registered with the runtime (call inside one).
    pub fn new() -> io::Result<Readiness> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        // SAFETY: the descriptor is the epoll set's OwnedFd, which the
        // AsyncFd owns (through EpollSet) and so keeps open and unchanged
        // until the AsyncFd is dropped.
        let set = unsafe { AsyncFd::register_with_interest(EpollSet(epoll), Interest::READABLE) };
        Ok(Readiness {
            set: set.map_err(|e| e.into_parts().1)?,
        })
    }

    /// Adds the read ends of the command's stdout and stderr pipes; before
    /// the command can write to them.
    pub fn watch(&self, stdout: BorrowedFd<'_>, stderr: BorrowedFd<'_>) -> io::Result<()> {
        let epoll = &self.set.get_ref().0;
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        epoll.add(stdout, EpollEvent::new(flags, 0))?;
        epoll.add(stderr, EpollEvent::new(flags, 1))?;
        Ok(())
    }

    /// Waits until a pipe has bytes (or has ended), then appends the pipes
    /// that have, in the order they got them, to `queue`, and notes in
    /// `found` which of them ended.
    pub(super) async fn wait(
        &self,
        queue: &mut VecDeque<usize>,
        found: &mut [Found; 2],
    ) -> io::Result<()> {
        let mut events = [EpollEvent::empty(); 2];
        loop {
            let mut guard = self.set.readable().await?;
            let waited =
                guard.try_io(
                    |set| match set.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
                        Ok(0) => Err(ErrorKind::WouldBlock.into()),
                        Ok(n) => Ok(n),
                        Err(e) => Err(e.into()),
                    },
                );
            match waited {
                Ok(Ok(n)) => {
                    for event in &events[..n] {
                        let i = (event.data() as usize).min(1);
                        if event
                            .events()
                            .intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
                        {
                            found[i].hung_up = true;
                        }
                        if !queue.contains(&i) {
                            queue.push_back(i);
                        }
                    }
                    return Ok(());
                }
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}
