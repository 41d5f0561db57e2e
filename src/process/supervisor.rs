//! This process as the supervisor of the commands it runs (`ccx serve`,
//! `ccx mcp`, `stress --direct`): one guard, [`Supervisor`], whose
//! construction blocks SIGCHLD (before the runtime's threads exist, so that
//! all inherit the mask), makes this process a child subreaper, starts the
//! orphan reaper and the tracking of escaped descendants; and whose drop
//! ends whatever the commands left behind.
//!
//! The doctor holds none while it runs a server: it follows that server's
//! descendants itself (`doctor::detached`) to report how each one ended,
//! which this reaper would take from it; it ends them with this module's
//! termination (`stop_with`, `kill_held`) all the same.

use std::future::Future;

use tokio::runtime::Runtime;

use super::{reaper, sigchld, tracking};
use crate::config::TrackingChoice;

/// The supervision of this process's commands, and the runtime they run
/// on. Hold it for as long as commands may run; dropping it SIGKILLs every
/// group, cgroup and escaped descendant still there, then stops the
/// runtime.
pub struct Supervisor {
    runtime: Option<Runtime>,
    mode: tracking::Mode,
}

impl Supervisor {
    /// Blocks SIGCHLD in the calling thread, then builds the runtime with
    /// `build` (its threads inherit the mask), and supervises inside it
    /// with the tracking `choice` allows. Call on the main thread before
    /// any other thread exists, once per process.
    pub fn start<E>(
        choice: TrackingChoice,
        build: impl FnOnce() -> Result<Runtime, E>,
    ) -> Result<Supervisor, E> {
        sigchld::block();
        let runtime = build()?;
        let mode = {
            let _inside = runtime.enter();
            supervise_children(choice)
        };
        Ok(Supervisor {
            runtime: Some(runtime),
            mode,
        })
    }

    /// How escaped descendants are tracked.
    pub fn mode(&self) -> tracking::Mode {
        self.mode
    }

    /// Runs `future` to its end on the supervised runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.block_on(future),
            None => unreachable!("the runtime is taken only when the supervisor ends"),
        }
    }

    /// Ends the leftovers, then the runtime without waiting for its
    /// blocking threads (one may be reading a stdin that never closes).
    pub fn shutdown_background(mut self) {
        kill_leftovers();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            kill_leftovers();
        }
    }
}

/// Makes this process the supervisor of the commands it will run: a child
/// subreaper (so descendants that leave their group are re-parented here
/// and reaped), the orphan reaper task, and the tracking of escaped
/// descendants (cgroup v2 or marker, as `choice` allows). Inside a tokio
/// runtime; returns the mode.
fn supervise_children(choice: TrackingChoice) -> tracking::Mode {
    if let Err(e) = reaper::become_subreaper() {
        tracing::warn!(
            "cannot become a child subreaper ({e}): escaped descendants will be reaped by init"
        );
    }
    tokio::spawn(reaper::run());
    tracking::init(choice)
}

/// Last resort when the supervisor ends: SIGKILL every group ccx still
/// owns, every command's cgroup and every escaped descendant, so nothing
/// outlives it.
fn kill_leftovers() {
    reaper::kill_owned_groups();
    tracking::kill_all();
    reaper::kill_orphans();
    tracking::remove_all();
}
