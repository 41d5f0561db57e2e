//! The detached start: under the state directory's lock, refuse if our
//! server already runs, start `ccx serve --foreground` in its own session
//! with stdin /dev/null and stdout + stderr appended to the log (never a
//! pipe), record it in the pid file, and return only once it is ready: its
//! readiness line is in the log AND `GET /health` answers 200.
//!
//! The launcher is the server's parent until it returns, so it waits on the
//! child directly: a server that dies before it is ready is reported at
//! once, with its exit status and the tail of its log (its own words).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep, sleep_until, Instant};

use super::log::{self, ReadyLine, ReadyScanner};
use super::state::{PidRecord, Probe, Stale, StateDir};
use super::LifecycleError;
use crate::client::http;
use crate::config::{Config, Overrides};
use crate::protocol::Endpoint;

/// How often the log is read for the readiness line while the server starts.
const POLL: Duration = Duration::from_millis(5);
/// Lines of the log shown when the start fails.
const TAIL_LINES: usize = 20;
/// Deadline of one `GET /health` during the start.
const HEALTH_PROBE: Duration = Duration::from_millis(500);

/// What to start and how long to wait for it.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub state: StateDir,
    /// The ccx binary (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    /// Arguments after the binary: `serve --foreground …`.
    pub args: Vec<OsString>,
    pub ready_timeout: Duration,
    /// SIGTERM→SIGKILL grace when a server that never got ready is stopped.
    pub kill_grace: Duration,
    /// The server's CCX_DRAIN_PERIOD, recorded for `stop`.
    pub drain_period: Duration,
}

impl StartOptions {
    /// The start `ccx serve` makes: this binary's `serve --foreground`,
    /// detached from the launcher's session and logging without colour,
    /// given the launcher's own flags so both read the same configuration.
    pub fn serve(
        state: StateDir,
        config: &Config,
        flags: &Overrides,
        ready_timeout: Duration,
    ) -> std::io::Result<StartOptions> {
        let flags = Overrides {
            state_dir: Some(state.dir.clone()),
            ..flags.clone()
        };
        let flags = flags.to_args().map_err(std::io::Error::other)?;
        let args = ["serve", "--foreground", "--detached", "--color", "never"]
            .into_iter()
            .map(String::from)
            .chain(flags)
            .map(OsString::from)
            .collect();
        Ok(StartOptions {
            state,
            exe: std::env::current_exe()?,
            args,
            ready_timeout,
            kill_grace: config.kill_grace,
            drain_period: config.drain_period,
        })
    }
}

/// A server that is ready.
#[derive(Debug, Clone)]
pub struct Started {
    pub record: PidRecord,
    pub log: PathBuf,
    /// From the call to its return.
    pub elapsed: Duration,
    /// A pid file found and removed because it did not name a live server.
    pub removed_stale: Option<Stale>,
    /// What the dead server of that pid file left running (its command
    /// cgroups, its marker), SIGKILLed before the new server started.
    pub leftovers_killed: Vec<u32>,
}

/// How long a launcher waits for another `serve`/`stop` on the same state
/// directory: long enough for that one to finish starting (or failing).
pub fn lock_wait(ready_timeout: Duration, kill_grace: Duration) -> Duration {
    ready_timeout + kill_grace + Duration::from_secs(5)
}

/// Starts the background server and waits until it is ready.
pub async fn start(options: StartOptions) -> Result<Started, LifecycleError> {
    let began = Instant::now();
    let state = &options.state;
    let _lock = state
        .lock(lock_wait(options.ready_timeout, options.kill_grace))
        .await?;
    let mut leftovers_killed = Vec::new();
    let removed_stale = match state.probe()? {
        Probe::Ours(record) => {
            return Err(LifecycleError::AlreadyRunning {
                pid: record.pid,
                url: record
                    .url
                    .unwrap_or_else(|| "still starting (no URL yet)".into()),
                state_dir: state.dir.clone(),
            })
        }
        Probe::Stale(stale) => {
            leftovers_killed = super::stop::end_leftovers_of_record(state);
            state.remove_record()?;
            Some(stale)
        }
        Probe::None => None,
    };

    let log_path = state.log_file();
    if let Some(reason) = log::no_room(&log_path) {
        return Err(LifecycleError::LogUnwritable {
            log: log_path,
            reason,
        });
    }
    let log_file = log::open_append(&log_path)?;
    let log_io = |source| LifecycleError::io(format!("use log {}", log_path.display()), source);
    let offset = log_file.metadata().map_err(log_io)?.len();
    let stderr = log_file.try_clone().map_err(log_io)?;
    close_inherited_fds_on_exec();
    let mut child = Command::new(&options.exe)
        .args(&options.args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .spawn()
        .map_err(|source| LifecycleError::Spawn {
            exe: options.exe.clone(),
            source,
        })?;
    let spawned = Instant::now();
    let Some(pid) = child.id() else {
        let status = child.wait().await.map_err(log_io)?;
        return Err(exited(status, spawned, &log_path, offset));
    };
    let mut record = PidRecord::new(pid);
    record.log = Some(log_path.clone());
    record.kill_grace_ms = Some(options.kill_grace.as_millis() as u64);
    record.drain_period_ms = Some(options.drain_period.as_millis() as u64);
    if let Err(e) = state.write_record(&record) {
        stop_child(&mut child, pid, options.kill_grace).await;
        return Err(e);
    }

    let deadline = began + options.ready_timeout;
    let mut scanner = ReadyScanner::new(&log_path, offset, pid);
    let waited = wait_ready(&mut child, &mut scanner, deadline).await;
    let ready = match waited {
        Ok(Waited::Ready(ready)) => ready,
        Ok(Waited::Exited(status)) => {
            state.remove_record()?;
            return Err(exited(status, spawned, &log_path, offset));
        }
        Ok(Waited::TimedOut(mut waiting_for)) => {
            stop_child(&mut child, pid, options.kill_grace).await;
            state.remove_record()?;
            // The tail shown below is read after the stop: a readiness line
            // that came after the deadline is in it, and must be explained.
            if waiting_for == NO_READY_LINE && matches!(scanner.poll(), Ok(Some(_))) {
                waiting_for = READY_LINE_TOO_LATE;
            }
            return Err(LifecycleError::NotReady {
                pid,
                timeout: options.ready_timeout,
                waiting_for,
                log: log_path.clone(),
                tail: log::tail(&log_path, offset, TAIL_LINES).unwrap_or_default(),
            });
        }
        Ok(Waited::Interrupted(signal)) => {
            stop_child(&mut child, pid, options.kill_grace).await;
            state.remove_record()?;
            return Err(LifecycleError::Interrupted { signal, pid });
        }
        Err(e) => {
            stop_child(&mut child, pid, options.kill_grace).await;
            state.remove_record()?;
            return Err(e);
        }
    };

    record.url = Some(ready.url);
    record.health = Some(ready.health);
    record.port = Some(ready.port);
    record.host = Some(ready.host);
    record.command_cgroups = crate::process::leftovers::command_cgroups_of(pid);
    if let Err(e) = state.write_record(&record) {
        stop_child(&mut child, pid, options.kill_grace).await;
        let _ = state.remove_record();
        return Err(e);
    }
    Ok(Started {
        record,
        log: log_path,
        elapsed: began.elapsed(),
        removed_stale,
        leftovers_killed,
    })
}

/// Why a start timed out, as the error says it.
const NO_READY_LINE: &str = "timed out before its readiness line appeared in its log";
const READY_LINE_TOO_LATE: &str =
    "timed out: its readiness line (below) came only after the deadline; give it a longer --ready-timeout";

enum Waited {
    Ready(ReadyLine),
    Exited(ExitStatus),
    /// What was still awaited when the deadline passed.
    TimedOut(&'static str),
    Interrupted(&'static str),
}

/// Waits for the readiness line, then for `/health`, while watching the
/// child's exit, the deadline and the launcher's own SIGINT/SIGTERM.
async fn wait_ready(
    child: &mut Child,
    scanner: &mut ReadyScanner,
    deadline: Instant,
) -> Result<Waited, LifecycleError> {
    let handler = |source| LifecycleError::io("install SIGINT/SIGTERM handlers", source);
    let mut interrupt = signal(SignalKind::interrupt()).map_err(handler)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(handler)?;
    let mut ready: Option<ReadyLine> = None;
    loop {
        enum Step {
            Poll,
            Health(bool),
        }
        let health = async {
            match &ready {
                Some(line) => healthy(line).await,
                None => std::future::pending().await,
            }
        };
        // Biased: a deadline that has passed wins over a poll that is
        // also due, so the readiness line is never read after it.
        let step = tokio::select! {
            biased;
            status = child.wait() => {
                let status = status.map_err(|e| LifecycleError::io("wait for the server", e))?;
                return Ok(Waited::Exited(status));
            }
            _ = sleep_until(deadline) => {
                return Ok(Waited::TimedOut(match ready {
                    None => NO_READY_LINE,
                    Some(_) => "timed out: it printed its readiness line, but GET /health did not answer 200 in time",
                }));
            }
            _ = interrupt.recv() => return Ok(Waited::Interrupted("SIGINT")),
            _ = terminate.recv() => return Ok(Waited::Interrupted("SIGTERM")),
            _ = sleep(POLL), if ready.is_none() => Step::Poll,
            ok = health => Step::Health(ok),
        };
        match step {
            Step::Poll => {
                ready = scanner
                    .poll()
                    .map_err(|e| LifecycleError::io("read the server's log", e))?;
            }
            Step::Health(true) => {
                if let Some(line) = ready {
                    return Ok(Waited::Ready(line));
                }
            }
            // Not answering yet: try again after a pause, still watching the child.
            Step::Health(false) => {
                tokio::select! {
                    status = child.wait() => {
                        let status = status.map_err(|e| LifecycleError::io("wait for the server", e))?;
                        return Ok(Waited::Exited(status));
                    }
                    _ = sleep(POLL) => {}
                }
            }
        }
    }
}

/// One `GET /health` that answered 200.
async fn healthy(line: &ReadyLine) -> bool {
    let Ok(endpoint) = Endpoint::parse(&line.health) else {
        return false;
    };
    matches!(http::get_endpoint(&endpoint, HEALTH_PROBE).await, Ok(r) if r.status == 200)
}

/// Descriptors this launcher inherited without close-on-exec (a CI
/// runner's pipe, a shell's `7>file`) must not live on in a server that
/// runs for days: a parent waiting for EOF on such a pipe would hang.
/// Marks every descriptor above stderr close-on-exec (everything Rust
/// opened already is); the server gets only stdin, stdout and stderr.
fn close_inherited_fds_on_exec() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFD) {
            let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
            let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
        }
    }
}

/// Stops a child that never became ready: its whole group (it leads its
/// own session and group once it has called setsid), SIGTERM, grace,
/// SIGKILL, and always waits for it.
async fn stop_child(child: &mut Child, pid: u32, grace: Duration) {
    crate::process::stop_child(child, crate::process::Group(pid), grace).await;
}

fn exited(
    status: ExitStatus,
    spawned: Instant,
    log_path: &std::path::Path,
    offset: u64,
) -> LifecycleError {
    // A server that could not write its log exits without a word in it.
    if let Some(reason) = log::no_room(log_path) {
        return LifecycleError::LogUnwritable {
            log: log_path.to_path_buf(),
            reason,
        };
    }
    LifecycleError::Exited {
        status: crate::process::exit_status_text(status),
        after_ms: spawned.elapsed().as_millis(),
        log: log_path.to_path_buf(),
        tail: log::tail(log_path, offset, TAIL_LINES).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &std::path::Path, script: &str, ready_timeout: Duration) -> StartOptions {
        StartOptions {
            state: StateDir::create(dir).unwrap(),
            exe: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            ready_timeout,
            kill_grace: Duration::from_millis(200),
            drain_period: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_child_that_exits_is_reported_with_its_status_and_words() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(
            dir.path(),
            "echo 'boom: cannot start' >&2; exit 3",
            Duration::from_secs(10),
        );
        let began = Instant::now();
        let err = start(opts).await.unwrap_err();
        assert!(began.elapsed() < Duration::from_secs(2), "reported at once");
        let text = err.to_string();
        assert!(text.contains("exit status 3"), "{text}");
        assert!(text.contains("boom: cannot start"), "{text}");
        assert!(!dir.path().join("ccx.pid").exists());
    }

    #[tokio::test]
    async fn a_child_killed_by_a_signal_is_reported_with_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), "kill -9 $$", Duration::from_secs(10));
        let text = start(opts).await.unwrap_err().to_string();
        assert!(text.contains("signal 9 (SIGKILL)"), "{text}");
    }

    #[tokio::test]
    async fn a_child_that_never_gets_ready_is_stopped_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        // Ignores SIGTERM: only the SIGKILL after the grace period ends it.
        let opts = options(
            dir.path(),
            "trap '' TERM; echo waiting; while :; do sleep 0.05; done",
            Duration::from_millis(300),
        );
        let began = Instant::now();
        let err = start(opts).await.unwrap_err();
        let LifecycleError::NotReady { pid, tail, .. } = &err else {
            panic!("{err}");
        };
        assert!(tail.contains("waiting"), "{err}");
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{:?}",
            began.elapsed()
        );
        assert!(
            !crate::process::procfs::is_alive(*pid),
            "the unready child was killed"
        );
        assert!(!dir.path().join("ccx.pid").exists());
    }
}
