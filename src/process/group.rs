//! Signals to a whole process group, and the group's termination sequence
//! (SIGTERM + SIGCONT, a grace period, then SIGKILL).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::{sleep, Instant};

/// A process group, named by its leader's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(pub u32);

impl Group {
    fn pid(self) -> Pid {
        Pid::from_raw(self.0 as i32)
    }

    /// Sends `signal` to every process of the group. A group that no longer
    /// exists is not an error.
    pub fn signal(self, signal: Signal) -> Result<(), Errno> {
        match killpg(self.pid(), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether any process (zombies included) is still in the group.
    pub fn is_alive(self) -> bool {
        !matches!(killpg(self.pid(), None), Err(Errno::ESRCH))
    }

    /// Asks the group to stop: SIGTERM, plus SIGCONT so that a paused group
    /// can act on it.
    pub fn request_termination(self) {
        let _ = self.signal(Signal::SIGTERM);
        let _ = self.signal(Signal::SIGCONT);
    }

    /// SIGTERM, wait up to `grace` for the group to empty, then SIGKILL.
    /// Used for members left behind after the leader was reaped.
    pub async fn terminate(self, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        self.request_termination();
        let deadline = Instant::now() + grace;
        while self.is_alive() && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
        let _ = self.signal(Signal::SIGKILL);
    }
}
