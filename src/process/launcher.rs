//! Commands started by a launcher that is already inside its cgroup.
//!
//! Moving a process into a cgroup v2 makes the kernel wait for an RCU grace
//! period (the write side of `cgroup_threadgroup_rwsem`) unless another
//! move happened a moment before. Measured on a 2-core host:
//! `sh -c 'echo $$ >cgroup.procs; echo x'` costs the same as a plain
//! `sh -c 'echo x'` when moves come back to back, and 15–20 ms more after a
//! pause of 5 ms or longer, which is what an agent's commands, seconds
//! apart, would all pay.
//!
//! So a server that tracks commands with cgroups keeps one launcher parked:
//! `ccx __launch <cgroup dir>` (this very binary), started in a process
//! group of its own with the stdout and stderr pipes its command will use
//! and an empty environment. It moves itself into its cgroup at once, then
//! waits for its command on stdin; given one, it `exec`s the shell with the
//! command's arguments, environment and working directory, keeping its pid.
//! A command that finds a launcher parked costs a pipe write and one exec;
//! the next launcher is parked in the background. A command that finds none
//! (several at once) takes the direct path of `process::spawn`, whose move
//! is cheap precisely when commands come back to back.
//!
//! A launcher whose server is gone reads end-of-file and exits without
//! running anything; at shutdown its cgroup is killed with the others.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::Notify;

use super::reaper;
use super::tracking::Scope;
use super::Spec;

/// How long commands must pause before the next launcher is parked.
const QUIET: Duration = Duration::from_millis(5);
/// This process's own binary, as the kernel keeps it.
const SELF_EXE: &str = "/proc/self/exe";
/// The first argument that makes `ccx` a launcher.
pub const ARG: &str = "__launch";
/// Exit code of a launcher that could not exec its shell (as a shell's
/// "command not found").
const CANNOT_EXEC: u8 = 127;

/// A launcher waiting for its command.
struct Parked {
    child: Child,
    stdin: ChildStdin,
    pid: u32,
    scope: Arc<Scope>,
}

struct Pool {
    exe: PathBuf,
    parked: Mutex<Option<Parked>>,
    /// Wakes the keeper: a launcher was taken or discarded.
    wanted: Notify,
    /// When the last command started, by either path.
    last_start: Mutex<Instant>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Turns launchers on for this process (a server with cgroup tracking) and
/// parks the first one. Call inside a tokio runtime.
pub fn enable() {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::info!(
                "no pre-spawned launchers ({e}): every command moves itself into its cgroup"
            );
            return;
        }
    };
    let mut first = false;
    let pool = POOL.get_or_init(|| {
        first = true;
        Pool {
            exe,
            parked: Mutex::new(None),
            wanted: Notify::new(),
            last_start: Mutex::new(Instant::now()),
        }
    });
    if first {
        tokio::spawn(keep_one_parked(pool));
    }
}

/// Records that a command started without a launcher (the direct path).
pub(super) fn started_directly() {
    if let Some(pool) = POOL.get() {
        *pool.last_start.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// Starts `spec` in the parked launcher, if one is ready: its child handle
/// (stdout and stderr piped) and its scope, already inside its cgroup.
/// `None`: take the direct path.
pub(super) fn start(spec: &Spec) -> Option<(Child, Arc<Scope>)> {
    let pool = POOL.get()?;
    *pool.last_start.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    let taken = pool.parked.lock().unwrap_or_else(|p| p.into_inner()).take();
    pool.wanted.notify_one();
    let mut parked = taken?;
    let payload = match encode(spec, parked.scope.marker()) {
        Some(payload) => payload,
        None => {
            // A NUL in the command or the environment: exec cannot take
            // it; the direct path reports the error as it always did.
            discard(parked);
            return None;
        }
    };
    if !matches!(parked.child.try_wait(), Ok(None)) {
        discard(parked);
        return None;
    }
    let mut stdin = parked.stdin;
    let pid = parked.pid;
    tokio::spawn(async move {
        let written = stdin.write_all(&payload).await;
        drop(stdin);
        if let Err(e) = written {
            tracing::warn!("cannot hand command to launcher {pid}: {e}");
        }
    });
    Some((parked.child, parked.scope))
}

/// Forgets a launcher that will not run a command: its pid (it is ended by
/// closing its stdin) and its cgroup.
fn discard(parked: Parked) {
    let Parked {
        mut child,
        stdin,
        pid,
        scope,
    } = parked;
    drop(stdin);
    tokio::spawn(async move {
        let _ = child.wait().await;
        reaper::unregister(pid);
        let _ = tokio::task::spawn_blocking(move || scope.release()).await;
    });
}

/// Keeps one launcher parked, parking the next once commands have paused
/// for [`QUIET`]: while commands start back to back their moves are cheap
/// and a launcher would only cost CPU (about 1.5 ms to start this binary);
/// after a pause the next command finds one ready.
async fn keep_one_parked(pool: &'static Pool) {
    loop {
        let missing = pool
            .parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none();
        if !missing {
            pool.wanted.notified().await;
            continue;
        }
        let since = pool
            .last_start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if since < QUIET {
            tokio::time::sleep(QUIET - since).await;
            continue;
        }
        let exe = pool.exe.clone();
        match tokio::task::spawn_blocking(move || park(&exe)).await {
            Ok(Ok(Some(parked))) => {
                let old = pool
                    .parked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(parked);
                if let Some(old) = old {
                    discard(old);
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::warn!(
                    "cannot start a launcher ({}): {e}; commands move themselves into their cgroups",
                    pool.exe.display()
                );
                break;
            }
            Err(_) => break,
        }
    }
}

/// Starts one launcher in a new cgroup; `None` when cgroups are not in use.
fn park(exe: &std::path::Path) -> std::io::Result<Option<Parked>> {
    let scope = Arc::new(Scope::new());
    let Some(dir) = scope.prepare() else {
        return Ok(None);
    };
    // `/proc/self/exe`, resolved in the child before its exec, is this
    // very binary even after an upgrade replaced the file on disk: a
    // launcher always speaks its server's request format.
    let mut cmd = tokio::process::Command::new(SELF_EXE);
    cmd.arg0(exe)
        .arg(ARG)
        .arg(&dir)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let spawned = reaper::register_spawn(|| {
        let child = cmd.spawn()?;
        let pid = child.id().unwrap_or_default();
        Ok((child, pid))
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            scope.release();
            return Err(e);
        }
    };
    let pid = child.id().unwrap_or_default();
    let Some(stdin) = child.stdin.take() else {
        return Err(std::io::Error::other("launcher without stdin"));
    };
    Ok(Some(Parked {
        child,
        stdin,
        pid,
        scope,
    }))
}

/// The command for a launcher: NUL-terminated fields, `program`, `cwd`
/// (empty: inherit), the argument count and arguments, the variable count
/// and `NAME=value` entries: the command's whole environment (the server's
/// own, minus the hidden names, plus the request's, plus the marker).
/// `None` when a field holds a NUL.
fn encode(spec: &Spec, marker: (&str, &str)) -> Option<Vec<u8>> {
    let env = spec.environment(marker);
    let mut out = Vec::with_capacity(spec.command.len() + 4096);
    let mut field = |bytes: &[u8]| -> Option<()> {
        if bytes.contains(&0) {
            return None;
        }
        out.extend_from_slice(bytes);
        out.push(0);
        Some(())
    };
    field(spec.shell.as_os_str().as_bytes())?;
    field(
        spec.cwd
            .as_ref()
            .map_or(&[][..], |d| d.as_os_str().as_bytes()),
    )?;
    field(b"2")?;
    field(b"-c")?;
    field(spec.command.as_bytes())?;
    // Names exec cannot carry (empty, or holding `=`) are left out, as
    // `Command::env` would.
    let entries: Vec<Vec<u8>> = env
        .iter()
        .filter(|(k, _)| !k.is_empty() && !k.as_bytes().contains(&b'='))
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect();
    field(entries.len().to_string().as_bytes())?;
    for entry in &entries {
        field(entry)?;
    }
    Some(out)
}

/// What a launcher reads.
#[derive(Debug, PartialEq)]
struct Launch {
    program: OsString,
    cwd: Option<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

fn decode(bytes: &[u8]) -> Option<Launch> {
    let mut fields = bytes.split(|&b| b == 0);
    let mut next = || fields.next().map(|f| OsString::from_vec(f.to_vec()));
    let program = next()?;
    let cwd = next().filter(|c| !c.is_empty());
    let count = |s: OsString| s.to_str()?.parse::<usize>().ok();
    let argc = count(next()?)?;
    let args = (0..argc).map(|_| next()).collect::<Option<Vec<_>>>()?;
    let envc = count(next()?)?;
    let mut env = Vec::with_capacity(envc);
    for _ in 0..envc {
        let entry = next()?;
        let bytes = entry.as_bytes();
        if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
            env.push((
                OsStr::from_bytes(&bytes[..eq]).to_owned(),
                OsStr::from_bytes(&bytes[eq + 1..]).to_owned(),
            ));
        }
    }
    Some(Launch {
        program,
        cwd,
        args,
        env,
    })
}

/// `ccx __launch <cgroup dir>`: the launcher's whole life. Returns `None`
/// when this process was not started as a launcher.
pub fn run_if_invoked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(ARG)) {
        return None;
    }
    let dir = PathBuf::from(args.next()?);
    // Into the cgroup before anything of the command runs; if the move
    // fails the command still runs, tracked by its marker and its group.
    let _ = std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string());
    let mut input = Vec::with_capacity(64 * 1024);
    if std::io::stdin().lock().read_to_end(&mut input).is_err() || input.is_empty() {
        // The server went away, or discarded this launcher.
        return Some(ExitCode::SUCCESS);
    }
    let Some(launch) = decode(&input) else {
        let _ = writeln!(std::io::stderr(), "ccx: malformed launch request");
        return Some(ExitCode::from(CANNOT_EXEC));
    };
    let mut cmd = std::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    if let Some(cwd) = &launch.cwd {
        cmd.current_dir(cwd);
    }
    let error = cmd.exec();
    let _ = writeln!(
        std::io::stderr(),
        "ccx: cannot start shell {:?}: {error}",
        launch.program
    );
    Some(ExitCode::from(CANNOT_EXEC))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str) -> Spec {
        Spec {
            shell: "/bin/sh".into(),
            command: command.into(),
            cwd: Some("/tmp".into()),
            env: [("GREETING".to_string(), "a=b c".to_string())].into(),
            hidden_env: vec!["PATH".to_string()].into(),
            timeout: None,
            kill_grace: std::time::Duration::from_secs(1),
            max_output: 1 << 20,
        }
    }

    #[test]
    fn a_launch_request_round_trips() {
        let bytes = encode(&spec("echo 'x'\nexit 3"), ("CCX_COMMAND_ID", "1.2")).unwrap();
        let launch = decode(&bytes).unwrap();
        assert_eq!(launch.program, "/bin/sh");
        assert_eq!(launch.cwd.as_deref(), Some(OsStr::new("/tmp")));
        assert_eq!(launch.args, ["-c", "echo 'x'\nexit 3"]);
        let get = |name: &str| {
            launch
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("GREETING").as_deref(), Some(OsStr::new("a=b c")));
        assert_eq!(get("CCX_COMMAND_ID").as_deref(), Some(OsStr::new("1.2")));
        assert_eq!(get("PATH"), None, "hidden names are left out");
    }

    #[test]
    fn a_nul_in_the_command_takes_the_direct_path() {
        assert!(encode(&spec("echo a\0b"), ("CCX_COMMAND_ID", "1.2")).is_none());
    }

    #[test]
    fn truncated_requests_are_refused() {
        let bytes = encode(&spec("echo x"), ("CCX_COMMAND_ID", "1.2")).unwrap();
        assert!(decode(&bytes[..10]).is_none());
        assert!(decode(b"").is_none());
    }
}
