//! The server's cgroup tree (`ccx.<pid>` under its own cgroup): found or
//! made at start, stale trees of dead servers swept, every command cgroup
//! killed and removed at exit, and the pool of command cgroups reused.

use std::fs::File;

use super::*;

pub(super) fn base() -> Option<&'static Path> {
    TRACKER.get()?.base.as_deref()
}

/// Creates `ccx.<pid>` under our own cgroup, after removing empty ones
/// left by servers that are gone (their leftover processes are killed).
pub(super) fn cgroup_base() -> Result<PathBuf, String> {
    let mount = procfs::cgroup2_mount().ok_or("no cgroup v2 hierarchy is mounted")?;
    let own = procfs::own_cgroup_v2().ok_or("this process is in no cgroup v2")?;
    let parent = mount.join(own.trim_start_matches('/'));
    sweep_stale(&parent);
    let base = parent.join(format!("ccx.{}", std::process::id()));
    match std::fs::create_dir(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
    }
    let probe = base.join("probe");
    let usable = std::fs::create_dir(&probe).is_ok()
        && probe.join("cgroup.kill").exists()
        && probe.join("cgroup.freeze").exists();
    let _ = std::fs::remove_dir(&probe);
    let procs_writable =
        nix::unistd::access(&parent.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).is_ok();
    if !usable || !procs_writable {
        let _ = std::fs::remove_dir(&base);
        return Err(format!(
            "{} has no writable cgroup.kill/cgroup.freeze/cgroup.procs (kernel older than 5.14, or not delegated)",
            parent.display()
        ));
    }
    Ok(base)
}

/// Removes `ccx.<pid>` trees of servers that no longer run.
pub(super) fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ccx."))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // A tree named after our own pid is a dead server's whose pid came
        // back: its cgroups may have been killed, so none is kept.
        if pid != std::process::id() && procfs::is_alive(pid) {
            continue;
        }
        let left = pids_in_tree(&entry.path());
        if !left.is_empty() {
            tracing::info!(
                "ended {} process(es) left running by the dead server {pid} (its cgroups {}): {left:?}",
                left.len(),
                entry.path().display()
            );
        }
        remove_tree(&entry.path(), true);
    }
}

/// Kills (when asked) and removes a tree of command cgroups, with any
/// sub-cgroup a command made inside its own.
pub(crate) fn remove_tree(dir: &Path, kill_first: bool) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            if kill_first {
                let _ = std::fs::write(child.path().join("cgroup.kill"), "1");
            }
            remove_tree(&child.path(), false);
        }
    }
    // A killed cgroup empties a moment later.
    let until = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {}
            _ => return,
        }
        if std::time::Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs every command cgroup of this server (on exit).
pub fn kill_all() {
    let Some(base) = base() else { return };
    if let Ok(children) = std::fs::read_dir(base) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            let _ = std::fs::write(child.path().join("cgroup.kill"), "1");
        }
    }
}

/// Removes this server's cgroups (on exit, after [`kill_all`]).
pub fn remove_all() {
    if let Some(base) = base() {
        remove_tree(base, false);
    }
}

/// One command's cgroup: its directory, and the directory opened once for
/// `clone3`'s `CLONE_INTO_CGROUP` (`None` if it could not be opened).
#[derive(Debug)]
pub(super) struct CommandCgroup {
    pub(super) dir: PathBuf,
    pub(super) fd: Option<Arc<OwnedFd>>,
    /// `cgroup.events`, held open while a command runs in the cgroup (see
    /// [`CommandCgroup::hold_events`]); closed when the cgroup is given back.
    events_file: Option<File>,
}

impl CommandCgroup {
    pub(super) fn new(dir: PathBuf) -> CommandCgroup {
        let fd = open_dir(&dir).map(Arc::new);
        CommandCgroup {
            dir,
            fd,
            events_file: None,
        }
    }

    /// Opens `cgroup.events` now, while the command runs: the look at it
    /// when the shell has exited is on the client's path (the completion
    /// waits for it), and there a kept file costs one `pread` where a
    /// fresh one costs an `openat`, a `pread` and a `close`.
    pub(super) fn hold_events(&mut self) {
        if self.events_file.is_none() {
            self.events_file = self.open("cgroup.events");
        }
    }

    /// One of the cgroup's files, opened through the open directory: a
    /// one-name lookup instead of the whole path's.
    fn open(&self, file: &str) -> Option<File> {
        let Some(dir) = &self.fd else {
            return File::open(self.dir.join(file)).ok();
        };
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
        rustix::fs::openat(dir.as_ref(), file, flags, rustix::fs::Mode::empty())
            .ok()
            .map(File::from)
    }

    /// One of the cgroup's files (`cgroup.events`, `cgroup.procs`), read
    /// with `pread` (no `stat` for a size hint: these files report none).
    /// Empty when it cannot be read.
    pub(super) fn read(&self, file: &str) -> String {
        let opened;
        let file = match &self.events_file {
            Some(events) if file == "cgroup.events" => events,
            _ => match self.open(file) {
                Some(file) => {
                    opened = file;
                    &opened
                }
                None => return String::new(),
            },
        };
        procfs::reread(file).unwrap_or_default()
    }

    /// Whether no cgroup exists below this one, live or dying (read from
    /// `cgroup.stat`; `false` when it cannot be read).
    pub(super) fn has_no_descendants(&self) -> bool {
        let stat = self.read("cgroup.stat");
        let count = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        count("nr_descendants") == Some(0) && count("nr_dying_descendants") == Some(0)
    }

    /// What `cgroup.events` says now (`None`: it cannot be read).
    pub(super) fn events(&self) -> Option<Events> {
        let text = self.read("cgroup.events");
        let flag = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(|v| v == "1")
        };
        Some(Events {
            populated: flag("populated")?,
            frozen: flag("frozen").unwrap_or(false),
        })
    }
}

/// A cgroup directory opened for `clone3`'s `CLONE_INTO_CGROUP`; `None`
/// (tracking by marker only) if it cannot be opened.
pub(super) fn open_dir(dir: &Path) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
    {
        Ok(file) => Some(file.into()),
        Err(e) => {
            tracing::warn!(
                "cannot open cgroup {}: {e}; tracking by marker only",
                dir.display()
            );
            None
        }
    }
}

pub(super) fn take_from_pool() -> Option<CommandCgroup> {
    TRACKER
        .get()?
        .pool
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
}

/// Returns a cgroup to the pool when it is fit for the next command, and
/// removes it otherwise (see [`Wear`]). A cgroup no process was born in (a
/// spawn that failed) is checked the same way as one whose command ended
/// cleanly: empty, thawed, and without a sub-cgroup.
pub(super) fn give_back(mut cgroup: CommandCgroup, wear: Wear) {
    let fit = match wear {
        Wear::Retired => false,
        Wear::Clean => cgroup.has_no_descendants(),
        Wear::Unseen => {
            cgroup.events().is_some_and(|e| !e.populated && !e.frozen)
                && cgroup.has_no_descendants()
        }
    };
    if fit {
        // A pooled cgroup holds no file but its directory.
        cgroup.events_file = None;
        if let Some(tracker) = TRACKER.get() {
            let mut pool = tracker.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(cgroup);
                return;
            }
        }
        let _ = std::fs::remove_dir(&cgroup.dir);
        return;
    }
    // Sub-cgroups go first, and a killed cgroup empties a moment after
    // the kill: removal may wait, so not on a runtime thread.
    let remove = move || remove_tree(&cgroup.dir, false);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(remove)),
        Err(_) => remove(),
    }
}

/// Every process in a cgroup tree.
pub(crate) fn pids_in_tree(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            pids.extend(pids_in_tree(&child.path()));
        }
    }
    pids
}
