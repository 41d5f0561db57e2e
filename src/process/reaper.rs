//! Child subreaper duties: descendants that escape their process group are
//! re-parented to ccx (PR_SET_CHILD_SUBREAPER, or being PID 1 in a
//! container), and this module reaps them so that no zombie is left.
//!
//! tokio reaps the children it spawned itself; to never steal their exit
//! status, those pids are registered here ([`register_spawn`]) and skipped.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

/// Pids of children whose exit status belongs to a tokio `Child`.
static OWNED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn owned() -> MutexGuard<'static, BTreeSet<u32>> {
    OWNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `spawn` while holding the registry lock, and registers the pid it
/// returns, so the reaper can never reap a child between fork and registration.
pub fn register_spawn<T>(spawn: impl FnOnce() -> std::io::Result<(T, u32)>) -> std::io::Result<T> {
    let mut set = owned();
    let (value, pid) = spawn()?;
    set.insert(pid);
    Ok(value)
}

/// Forgets a pid once its owner has reaped it.
pub fn unregister(pid: u32) {
    owned().remove(&pid);
}

/// Makes this process the reaper of its orphaned descendants (Linux only).
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// Reaps zombies re-parented to us, on every SIGCHLD and every few seconds.
pub async fn run() {
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch SIGCHLD ({e}); reaping orphans every 2 s only");
            None
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        match sigchld.as_mut() {
            Some(s) => {
                tokio::select! {
                    _ = s.recv() => {}
                    _ = tick.tick() => {}
                }
            }
            None => {
                tick.tick().await;
            }
        }
        // A /proc scan: on the blocking pool, not on an async worker.
        let _ = tokio::task::spawn_blocking(reap_orphans).await;
    }
}

/// Reaps every exited child that no tokio `Child` owns.
pub fn reap_orphans() {
    let set = owned();
    for pid in direct_children() {
        if !set.contains(&pid) {
            let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Kills every remaining child that no tokio `Child` owns (escaped
/// descendants), then reaps them. Used once, when the server exits.
pub fn kill_orphans() {
    for _ in 0..10 {
        let orphans: Vec<u32> = {
            let set = owned();
            direct_children()
                .into_iter()
                .filter(|p| !set.contains(p))
                .collect()
        };
        if orphans.is_empty() {
            return;
        }
        for pid in orphans {
            let pid = Pid::from_raw(pid as i32);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Pids whose parent is this process, read from /proc.
fn direct_children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me))
        .collect()
}

/// The parent pid from /proc/PID/stat (the field after the command name,
/// which may itself contain spaces and parentheses).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Last resort when the server exits: SIGKILL every group ccx still owns and
/// every escaped descendant, so nothing outlives the server.
pub fn kill_leftovers() {
    let groups: Vec<u32> = owned().iter().copied().collect();
    for pgid in groups {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
    }
    kill_orphans();
}
