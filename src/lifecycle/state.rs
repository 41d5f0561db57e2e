//! The state directory of the background server: where its pid file, log
//! and lock live, the pid file's contents, the lock that serialises
//! `serve`/`stop`, and the check that a recorded pid is still *our* server
//! (alive, a `ccx serve --foreground`, started when the record says).
//!
//! A pid file is a claim, never a fact: every reader goes through
//! [`StateDir::probe`], which answers `Ours`, `Stale` (with why) or `None`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::LifecycleError;
use crate::config::Overrides;
use crate::process::procfs;
use crate::protocol::Endpoint;

/// Version of the pid file's JSON layout.
pub const PID_FILE_VERSION: u32 = 1;

/// Paths inside one state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    /// The directory as configured (not created).
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    /// Creates the directory (mode 0700: its log may show commands), checks
    /// that nobody else can write in it ([`check_private`]) and returns it
    /// with an absolute path, so that the pid file names a log that any
    /// working directory can find.
    pub fn create(dir: &Path) -> Result<StateDir, LifecycleError> {
        use std::os::unix::fs::DirBuilderExt;
        let fail = |source| LifecycleError::StateDir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        let dir = std::fs::canonicalize(dir).map_err(fail)?;
        let metadata = std::fs::metadata(&dir).map_err(fail)?;
        check_private(&dir, &metadata, nix::unistd::geteuid().as_raw())?;
        Ok(StateDir { dir })
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("ccx.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("ccx.log")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("ccx.lock")
    }

    /// Takes the state directory's lock, waiting up to `deadline` for
    /// another `serve` or `stop` to finish.
    pub async fn lock(&self, deadline: Duration) -> Result<StateLock, LifecycleError> {
        let path = self.lock_file();
        let started = Instant::now();
        loop {
            let file = private_file()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| {
                    LifecycleError::io(format!("open lock file {}", path.display()), source)
                })?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(StateLock { _lock: lock }),
                Err((_, Errno::EWOULDBLOCK)) if started.elapsed() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(LifecycleError::Busy {
                        lock: path,
                        after: deadline,
                    })
                }
                Err((_, errno)) => {
                    return Err(LifecycleError::io(
                        format!("lock {}", path.display()),
                        errno.into(),
                    ))
                }
            }
        }
    }

    /// Takes the lock only if nobody holds it.
    pub async fn try_lock(&self) -> Result<Option<StateLock>, LifecycleError> {
        match self.lock(Duration::ZERO).await {
            Ok(lock) => Ok(Some(lock)),
            Err(LifecycleError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the pid file: `None` when there is none.
    pub fn read_record(&self) -> Result<Option<PidRecord>, LifecycleError> {
        let path = self.pid_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LifecycleError::io(
                    format!("read pid file {}", path.display()),
                    source,
                ))
            }
        };
        PidRecord::parse(&text)
            .map(Some)
            .map_err(|reason| LifecycleError::BadPidFile { path, reason })
    }

    /// Writes the pid file atomically (temporary file + rename).
    pub fn write_record(&self, record: &PidRecord) -> Result<(), LifecycleError> {
        let path = self.pid_file();
        let tmp = self.dir.join(format!(".ccx.pid.{}", std::process::id()));
        let fail =
            |source| LifecycleError::io(format!("write pid file {}", path.display()), source);
        let json = serde_json::to_string_pretty(record).map_err(|e| fail(e.into()))?;
        // A leftover of a crashed writer with our pid (or anything planted
        // under that name) goes; then the file is made afresh, never opened
        // through a link.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            _ => {}
        }
        let mut file = private_file()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(fail)?;
        file.write_all(format!("{json}\n").as_bytes())
            .map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }

    pub fn remove_record(&self) -> Result<(), LifecycleError> {
        let path = self.pid_file();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LifecycleError::io(
                format!("remove pid file {}", path.display()),
                source,
            )),
        }
    }

    /// What the pid file says, checked against the running system.
    pub fn probe(&self) -> Result<Probe, LifecycleError> {
        let record = match self.read_record() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Probe::None),
            Err(LifecycleError::BadPidFile { reason, .. }) => {
                return Ok(Probe::Stale(Stale {
                    pid: None,
                    reason: format!("the pid file is unreadable ({reason})"),
                }))
            }
            Err(e) => return Err(e),
        };
        Ok(match identify(&record, &self.dir) {
            Identity::Ours => Probe::Ours(record),
            Identity::Gone => Probe::Stale(Stale {
                pid: Some(record.pid),
                reason: format!("process {} no longer exists", record.pid),
            }),
            Identity::Other(what) => Probe::Stale(Stale {
                pid: Some(record.pid),
                reason: format!("pid {} now belongs to another program: {what}", record.pid),
            }),
        })
    }
}

/// Options for a file of the state directory: created 0600 (a pid file or
/// lock others can read tells them nothing they need), and never opened
/// through a symbolic link (O_NOFOLLOW), whoever planted it.
pub fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    options
}

/// Refuses a state directory that another user owns or that its group or
/// everyone may write: the server's log, pid file and lock live there, and
/// whoever can write the directory can replace them.
pub fn check_private(
    dir: &Path,
    metadata: &std::fs::Metadata,
    uid: u32,
) -> Result<(), LifecycleError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let unsafe_dir = |why: String, fix: String| LifecycleError::UnsafeStateDir {
        path: dir.to_path_buf(),
        why,
        fix,
    };
    let other_dir = "set CCX_STATE_DIR (or --state-dir) to a directory of your own, e.g. \
                     `mkdir -m 700 ~/.local/state/ccx`";
    if metadata.uid() != uid {
        return Err(unsafe_dir(
            format!(
                "it belongs to uid {}, not to this user (uid {uid})",
                metadata.uid()
            ),
            other_dir.to_string(),
        ));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 {
            "everyone"
        } else {
            "its group"
        };
        return Err(unsafe_dir(
            format!("{who} may write in it (mode {mode:o})"),
            format!("`chmod 700 {}`, or {other_dir}", dir.display()),
        ));
    }
    Ok(())
}

/// The state directory's lock (flock on `ccx.lock`), released on drop.
/// The file is opened close-on-exec, so the server never inherits it.
pub struct StateLock {
    _lock: Flock<File>,
}

/// The pid file: who the background server is and how to reach it.
/// A bare integer (a hand-written pid file) is accepted too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PidRecord {
    pub schema_version: u32,
    pub pid: u32,
    /// Start time of the process in clock ticks after boot (/proc/PID/stat
    /// field 22): with the pid, it names one process for ever.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// `None` while the server is starting.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Milliseconds since the Unix epoch when the launcher started it.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    #[serde(default)]
    pub version: Option<String>,
    /// The server's CCX_KILL_GRACE and CCX_DRAIN_PERIOD, so that `stop`
    /// waits as long as this server needs between SIGTERM and SIGKILL,
    /// whatever the environment of the `stop` command says.
    #[serde(default)]
    pub kill_grace_ms: Option<u64>,
    #[serde(default)]
    pub drain_period_ms: Option<u64>,
    /// The server's command cgroups (`…/ccx.<pid>`), so that what it left
    /// running if it dies is found even from another cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_cgroups: Option<PathBuf>,
}

impl PidRecord {
    pub fn new(pid: u32) -> PidRecord {
        PidRecord {
            schema_version: PID_FILE_VERSION,
            pid,
            start_ticks: start_ticks(pid),
            url: None,
            health: None,
            port: None,
            host: None,
            log: None,
            started_at_ms: Some(now_ms()),
            version: Some(crate::VERSION.to_string()),
            kill_grace_ms: None,
            drain_period_ms: None,
            command_cgroups: None,
        }
    }

    fn parse(text: &str) -> Result<PidRecord, String> {
        let text = text.trim();
        if let Ok(pid) = text.parse::<u32>() {
            return Ok(PidRecord {
                start_ticks: None,
                started_at_ms: None,
                version: None,
                ..PidRecord::new(pid)
            });
        }
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The health endpoint, when known (and readable).
    pub fn health_endpoint(&self) -> Option<Endpoint> {
        Endpoint::parse(self.health.as_deref()?).ok()
    }
}

/// What the pid file turned out to be.
#[derive(Debug, Clone)]
pub enum Probe {
    /// No pid file.
    None,
    /// A pid file whose process is gone or is another program.
    Stale(Stale),
    /// Our server, alive.
    Ours(PidRecord),
}

/// A pid file that must not be trusted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stale {
    pub pid: Option<u32>,
    pub reason: String,
}

enum Identity {
    Ours,
    Gone,
    Other(String),
}

/// Whether `record.pid` is still the ccx server the record describes, and
/// the one of this state directory.
fn identify(record: &PidRecord, dir: &Path) -> Identity {
    let pid = record.pid;
    if pid == 0 || pid > i32::MAX as u32 {
        return Identity::Gone;
    }
    if !procfs::is_alive(pid) {
        return Identity::Gone;
    }
    let argv = cmdline(pid);
    if !is_ccx_server(&argv) {
        let shown = if argv.is_empty() {
            "(unknown command line)".to_string()
        } else {
            argv.join(" ")
        };
        return Identity::Other(format!("`{shown}`, not `ccx serve`"));
    }
    if let Some(theirs) = state_dir_arg(&argv) {
        if !same_dir(&theirs, dir) {
            return Identity::Other(format!(
                "the ccx server of another state directory ({})",
                theirs.display()
            ));
        }
    }
    match (record.start_ticks, start_ticks(pid)) {
        (Some(recorded), Some(actual)) if recorded != actual => {
            Identity::Other("a ccx server started after this pid file was written".to_string())
        }
        _ => Identity::Ours,
    }
}

/// `ccx … serve --foreground …`: what the launcher starts.
pub fn is_ccx_server(argv: &[String]) -> bool {
    let Some(program) = argv.first() else {
        return false;
    };
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.starts_with("ccx")
        && argv.iter().any(|a| a == "serve")
        && argv.iter().any(|a| a == "--foreground")
}

/// The state directory a server was started with: in the overrides a
/// launcher handed it, or its own `--state-dir`.
fn state_dir_arg(argv: &[String]) -> Option<PathBuf> {
    let value_of = |flag: &str| {
        let at = argv.iter().position(|a| a == flag)?;
        argv.get(at + 1)
    };
    if let Some(overrides) = value_of(Overrides::FLAG) {
        return Overrides::decode(overrides).ok()?.state_dir;
    }
    value_of("--state-dir").map(PathBuf::from)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub use crate::process::procfs::{all_pids, cmdline, is_alive};

/// The session id of a process.
pub fn session_of(pid: u32) -> Option<u32> {
    procfs::stat(pid).map(|s| s.session)
}

/// Start time in clock ticks after boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    procfs::stat(pid).map(|s| s.start_ticks)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_command_lines_are_recognised() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(is_ccx_server(&argv(
            "/x/target/debug/ccx serve --foreground --port 0"
        )));
        assert!(!is_ccx_server(&argv("sleep 30")));
        assert!(!is_ccx_server(&argv("/x/ccx serve")));
        assert!(!is_ccx_server(&argv("/bin/sh -c ccx serve --foreground")));
    }

    #[test]
    fn pid_files_parse_as_json_or_a_bare_pid() {
        let r = PidRecord::parse("1234\n").unwrap();
        assert_eq!(r.pid, 1234);
        assert_eq!(r.start_ticks, None);
        let json = serde_json::to_string(&PidRecord::new(std::process::id())).unwrap();
        let back = PidRecord::parse(&json).unwrap();
        assert_eq!(back.pid, std::process::id());
        assert!(back.start_ticks.is_some());
        assert!(PidRecord::parse("garbage").is_err());
    }

    #[test]
    fn only_a_directory_of_ours_that_nobody_else_may_write_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let check = |mode: u32, uid: u32| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let metadata = std::fs::metadata(dir.path()).unwrap();
            check_private(dir.path(), &metadata, uid)
        };
        assert!(check(0o700, me).is_ok());
        assert!(check(0o755, me).is_ok());
        for (mode, uid, fix) in [
            (0o775, me, "chmod 700"),
            (0o1777, me, "chmod 700"),
            (0o700, me.wrapping_add(1), "CCX_STATE_DIR"),
        ] {
            let message = check(mode, uid).unwrap_err().to_string();
            assert!(
                message.contains(&dir.path().display().to_string()),
                "{message}"
            );
            assert!(message.contains(fix), "{mode:o}: {message}");
        }
    }

    #[test]
    fn this_process_is_alive_with_a_start_time() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(start_ticks(me).is_some());
        assert!(session_of(me).is_some());
    }
}
