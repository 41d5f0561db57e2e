//! Which processes belong to a command, even after they leave its process
//! group (`setsid`, double fork), so that they end with it.
//!
//! Two mechanisms, both per command (a [`Scope`]):
//!
//! - **cgroup-v2**, where a writable cgroup v2 hierarchy exists (found from
//!   /proc/self/mountinfo and /proc/self/cgroup): the server creates
//!   `ccx.<server pid>/` under its own cgroup and one child cgroup per
//!   running command, moves the command's shell into it right after the
//!   spawn, pauses its members with SIGSTOP and ends them with `cgroup.kill`.
//!   A cgroup is reused only when its command left it untouched (see
//!   [`Scope::release`]); every other one is removed, and the whole tree
//!   when the server exits.
//! - **subreaper+marker**, always on: every command gets
//!   `CCX_COMMAND_ID=<server pid>.<n>` in its environment, inherited by its
//!   descendants. The server is a child subreaper, so a descendant whose
//!   parent died is re-parented to it; when the command ends, such adopted
//!   orphans carrying the command's marker are ended too.
//!
//! Putting a command into its cgroup without a race: a move done by the
//! server after the spawn loses the race in practice (measured: `setsid
//! sleep & sleep` had forked both sleeps, outside the cgroup, before the
//! server's write to `cgroup.procs` landed), and any move is slow (see
//! `clone3`). So the shell is born inside its cgroup (`clone3` with
//! `CLONE_INTO_CGROUP`). Where clone3 is refused (a seccomp filter), a
//! POSIX shell (sh, dash, bash, zsh, ksh, ash, …) moves *itself* first: the
//! command line becomes `{ echo $$ >'<cgroup>/cgroup.procs'; } 2>/dev/null;
//! <command>`, all on the command's first line (error line numbers are
//! unchanged), so everything the command starts is born inside the cgroup.
//! If that write fails the command still runs, tracked by its marker. For
//! another CCX_SHELL the server moves the shell right after the spawn (best
//! effort: children forked before the move are tracked by the marker only).
//!
//! The marker alone misses a process that clears its environment (or
//! whose environment cannot be read) and escapes its group; the cgroup
//! misses nothing born inside it.

mod cgroups;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::group::{stop_with, Stopped};
use super::{procfs, reaper};
use crate::config::TrackingChoice;

use cgroups::{base, cgroup_base, give_back, take_from_pool, CommandCgroup};
pub use cgroups::{kill_all, remove_all};
pub(crate) use cgroups::{pids_in_tree, remove_tree};

/// The environment variable that marks a command's descendants.
pub const MARKER_VAR: &str = "CCX_COMMAND_ID";

/// How the server attributes escaped descendants to their command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    CgroupV2,
    SubreaperMarker,
}

impl Mode {
    /// The name shown in `server.info` (`process_tracking`) and by the doctor.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::CgroupV2 => "cgroup-v2",
            Mode::SubreaperMarker => "subreaper+marker",
        }
    }
}

struct Tracker {
    /// `<own cgroup>/ccx.<pid>`, when cgroups are in use.
    base: Option<PathBuf>,
    /// Empty command cgroups ready for reuse.
    pool: Mutex<Vec<CommandCgroup>>,
}

static TRACKER: OnceLock<Tracker> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Command cgroups kept for reuse at most.
const POOL_MAX: usize = 64;

/// Chooses the mechanism once, at server start: a cgroup v2 subtree when
/// one can be created under our own cgroup (and `choice` allows it), else
/// subreaper+marker. Later calls return the first answer.
pub fn init(choice: TrackingChoice) -> Mode {
    let tracker = TRACKER.get_or_init(|| Tracker {
        base: match choice {
            TrackingChoice::Marker => {
                tracing::info!("process tracking: subreaper+marker (CCX_PROCESS_TRACKING=marker)");
                None
            }
            TrackingChoice::Auto => match cgroup_base() {
                Ok(base) => Some(base),
                Err(why) => {
                    tracing::info!("process tracking: subreaper+marker ({why})");
                    None
                }
            },
        },
        pool: Mutex::new(Vec::new()),
    });
    if let Some(base) = &tracker.base {
        tracing::info!("process tracking: cgroup-v2 under {}", base.display());
    }
    mode()
}

/// The active mechanism (subreaper+marker until [`init`] found a cgroup).
pub fn mode() -> Mode {
    match TRACKER.get().and_then(|t| t.base.as_ref()) {
        Some(_) => Mode::CgroupV2,
        None => Mode::SubreaperMarker,
    }
}

/// Whether adopted orphan `pid` can be tied to no command: it carries no
/// marker of this server (it cleared its environment) and sits in none of
/// its command cgroups (it wrote itself into another cgroup's
/// `cgroup.procs`, which a command running as the server's user may do).
/// Only commands' descendants are re-parented here, so such an orphan
/// belongs to a command that ended or is ending; it ends with the command
/// being stopped. The kernel's re-parenting is what it cannot escape.
pub fn is_unattributable(pid: u32) -> bool {
    let server = std::process::id();
    let marker = format!("{}={server}.", MARKER_VAR);
    let in_command_cgroup =
        procfs::cgroup_v2_of(pid).is_some_and(|cgroup| cgroup.contains(&format!("/ccx.{server}/")));
    !in_command_cgroup && !procfs::environ_has_prefix(pid, &marker) && procfs::is_alive(pid)
}

/// A command cgroup's `cgroup.events`: whether any live process is in it
/// or below it (a sub-cgroup the command made), and whether it is frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Events {
    populated: bool,
    frozen: bool,
}

/// What ties one command's processes together.
#[derive(Debug)]
pub struct Scope {
    /// The marker's value, `<server pid>.<n>`.
    id: String,
    cgroup: Mutex<Option<CommandCgroup>>,
    /// What the command did to its cgroup, as far as the server saw: it
    /// decides whether the cgroup may be reused (see [`Scope::release`]).
    wear: Mutex<Wear>,
}

/// The history of one command's cgroup that decides its reuse.
///
/// A cgroup may be reused only if nothing could have changed it: the
/// kernel keeps state in a cgroup that outlives its processes. Above all a
/// cgroup that saw `cgroup.kill` keeps the kill's sequence number, and
/// every process later born into it with `CLONE_INTO_CGROUP` is SIGKILLed
/// at birth (Linux compares the sequence seen at fork with the target's).
/// The server cannot read that number, so the rule is by history: any
/// leftover, any kill, any freeze, a shell ended by SIGKILL (a command can
/// write its own `cgroup.kill`), or a sub-cgroup the command made, and the
/// cgroup is retired — removed, and a fresh one made for the next command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Wear {
    /// No look since the shell exited (a spawn that failed, or a command
    /// still running).
    #[default]
    Unseen,
    /// The first look after the shell exited found it empty and thawed.
    Clean,
    /// Never reuse it.
    Retired,
}

impl Scope {
    /// A new scope; its cgroup (if any) is assigned by [`Scope::enter`].
    pub fn new() -> Scope {
        static SERVER_PID: OnceLock<u32> = OnceLock::new();
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Scope {
            id: format!("{}.{n}", SERVER_PID.get_or_init(std::process::id)),
            cgroup: Mutex::new(None),
            wear: Mutex::new(Wear::Unseen),
        }
    }

    /// The environment entry every process of the command inherits.
    pub fn marker(&self) -> (&'static str, &str) {
        (MARKER_VAR, &self.id)
    }

    fn marker_entry(&self) -> String {
        format!("{MARKER_VAR}={}", self.id)
    }

    fn assigned(&self) -> std::sync::MutexGuard<'_, Option<CommandCgroup>> {
        self.cgroup.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cgroup(&self) -> Option<PathBuf> {
        self.assigned().as_ref().map(|c| c.dir.clone())
    }

    /// The prepared cgroup's directory descriptor, for `CLONE_INTO_CGROUP`.
    pub fn cgroup_fd(&self) -> Option<Arc<OwnedFd>> {
        self.assigned().as_ref().and_then(|c| c.fd.clone())
    }

    /// Assigns the command an empty cgroup (reused, or created), when
    /// cgroups are in use; returns its directory (the same one when called
    /// again).
    pub fn prepare(&self) -> Option<PathBuf> {
        let base = base()?;
        if let Some(dir) = self.cgroup() {
            return Some(dir);
        }
        let cgroup = take_from_pool().or_else(|| {
            let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(n.to_string());
            match std::fs::create_dir(&dir) {
                Ok(()) => Some(CommandCgroup::new(dir)),
                Err(e) => {
                    tracing::warn!(
                        "cannot create cgroup {}: {e}; tracking by marker only",
                        dir.display()
                    );
                    None
                }
            }
        })?;
        let dir = cgroup.dir.clone();
        *self.assigned() = Some(cgroup);
        Some(dir)
    }

    /// Keeps the cgroup's `cgroup.events` open until the command is over
    /// (call once it has started; see [`Scope::stop`]).
    pub fn hold_events(&self) {
        if let Some(cgroup) = self.assigned().as_mut() {
            cgroup.hold_events();
        }
    }

    /// Moves `pid` (our child, not yet reaped) into the prepared cgroup:
    /// for shells that cannot move themselves (see the module's comment).
    pub fn enter(&self, pid: u32) {
        let Some(dir) = self.cgroup() else { return };
        if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
            // ESRCH: the shell already exited; nothing to track.
            if e.raw_os_error() != Some(Errno::ESRCH as i32) {
                tracing::warn!("cannot move pid {pid} into {}: {e}", dir.display());
            }
        }
    }

    /// Freezes (true) or thaws (false) the command's cgroup, escaped
    /// members included. Without a cgroup this does nothing: the caller
    /// also signals the process group.
    pub fn freeze(&self, frozen: bool) -> std::io::Result<()> {
        match self.cgroup() {
            Some(dir) => std::fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
            None => Ok(()),
        }
    }

    /// Processes of the command outside its process group that are still
    /// alive: members of its cgroup, and orphans adopted by this server
    /// that carry its marker. Does not include zombies.
    pub fn members(&self) -> Vec<u32> {
        let procs = self
            .assigned()
            .as_ref()
            .map(|c| c.read("cgroup.procs"))
            .unwrap_or_default();
        let mut pids: Vec<u32> = procs
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        pids.extend(self.adopted_members());
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|&p| procfs::is_alive(p));
        pids
    }

    /// Orphans adopted by this server that carry the command's marker, or
    /// that no command can claim ([`is_unattributable`]).
    fn adopted_members(&self) -> Vec<u32> {
        let entry = self.marker_entry();
        reaper::adopted()
            .into_iter()
            .filter(|&p| procfs::environ_contains(p, &entry) || is_unattributable(p))
            .collect()
    }

    fn worn(&self) -> std::sync::MutexGuard<'_, Wear> {
        self.wear.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the cgroup as never to be reused (see [`Wear`]).
    pub fn retire(&self) {
        *self.worn() = Wear::Retired;
    }

    /// Whether anything of the command is left outside its process group:
    /// a live process in its cgroup or below it (a sub-cgroup the command
    /// made), or an adopted orphan carrying its marker. One read of
    /// `cgroup.events` where [`Scope::members`] would list the cgroup. The
    /// first look decides whether the cgroup is clean (see [`Wear`]); a
    /// later look never makes it clean again.
    fn anything_left(&self) -> bool {
        let events = self.assigned().as_ref().and_then(CommandCgroup::events);
        let left = match events {
            Some(events) if events.populated => true,
            _ => !self.adopted_members().is_empty(),
        };
        let clean = !left && events.is_some_and(|e| !e.frozen);
        let mut wear = self.worn();
        *wear = match *wear {
            Wear::Unseen if clean => Wear::Clean,
            _ => Wear::Retired,
        };
        left
    }

    /// Ends every remaining process of the command (SIGTERM + SIGCONT,
    /// `grace`, SIGKILL), looking again as killed orphans' own children
    /// are re-parented to us. Blocking reads of /proc and sysfs: call it
    /// from a blocking thread or accept a few syscalls per member.
    pub async fn stop(&self, grace: Duration) -> Stopped {
        let cgroup = self.cgroup();
        let first = stop_with(
            grace,
            || self.anything_left(),
            || {
                let _ = self.freeze(false);
                self.signal_members(Signal::SIGTERM);
                self.signal_members(Signal::SIGCONT);
            },
            || {
                if let Some(dir) = &cgroup {
                    self.retire();
                    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                }
                self.signal_members(Signal::SIGKILL);
            },
        )
        .await;
        first
    }

    pub fn signal_members(&self, signal: Signal) {
        for pid in self.members() {
            let target = Pid::from_raw(pid as i32);
            // An escaped process usually leads a group of its own (setsid):
            // its group goes with it.
            let _ = nix::sys::signal::killpg(target, signal);
            let _ = kill(target, signal);
        }
    }

    /// Gives the cgroup back for reuse once the command is over, when its
    /// history allows (see [`Wear`]); removes it otherwise.
    pub fn release(&self) {
        let taken = self.assigned().take();
        if let Some(cgroup) = taken {
            let wear = *self.worn();
            give_back(cgroup, wear);
        }
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

/// Whether `shell` is a POSIX shell that can run the self-move prefix.
pub fn is_posix_shell(shell: &Path) -> bool {
    let name = shell
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    matches!(
        name.as_str(),
        "sh" | "dash"
            | "bash"
            | "zsh"
            | "ksh"
            | "ksh93"
            | "mksh"
            | "ash"
            | "yash"
            | "posh"
            | "busybox"
    )
}

/// The text a POSIX shell runs first so that it moves itself into `dir`.
pub fn shell_prefix(dir: &Path) -> String {
    let procs = dir.join("cgroup.procs").display().to_string();
    format!(
        "{{ echo $$ >'{}'; }} 2>/dev/null; ",
        procs.replace('\'', "'\\''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_prefix_writes_the_shells_own_pid_even_in_an_awkward_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("it's a dir");
        std::fs::create_dir(&dir).unwrap();
        let script = format!("{}echo ran; exit 3", shell_prefix(&dir));
        let child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
        let written = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert_eq!(written.trim(), pid.to_string());
    }

    #[test]
    fn a_failing_self_move_does_not_stop_the_command() {
        let script = format!("{}echo ran", shell_prefix(Path::new("/nonexistent/ccx")));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn posix_shells_are_recognised_by_name() {
        assert!(is_posix_shell(Path::new("/bin/sh")));
        assert!(is_posix_shell(Path::new("/usr/bin/bash")));
        assert!(!is_posix_shell(Path::new("/usr/bin/fish")));
        assert!(!is_posix_shell(Path::new("/usr/bin/python3")));
    }
}
