//! How a command's shell is started: with clone3, born inside its cgroup
//! ([`spawn_cloned`]), or, where clone3 cannot run, with `std::process`
//! ([`spawn_direct`]); either way as a [`Child`] whose pipes have joined the
//! command's readiness set before the shell runs, and whose exit is awaited.

use super::*;

/// A command's shell, however it was started.
pub(super) struct Child {
    pub(super) pid: u32,
    /// The pipes' read ends, non-blocking.
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    pub(super) exit: ShellExit,
}

/// How a shell's exit is awaited.
pub(super) enum ShellExit {
    Pidfd(clone3::Pidfd),
    Std(tokio::process::Child),
}

impl ShellExit {
    pub(super) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            ShellExit::Pidfd(pidfd) => pidfd.wait().await,
            ShellExit::Std(child) => child.wait().await,
        }
    }
}

/// Set once clone3 proved unavailable (kernel, seccomp): every later
/// command goes straight to [`spawn_direct`].
static CLONE3_UNAVAILABLE: AtomicBool = AtomicBool::new(false);
/// Set once a refused clone3 has been logged.
static CLONE3_REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);

/// Starts the shell with clone3 (see `clone3`), born inside the command's
/// cgroup when there is one. `None`: clone3 cannot start it here, use
/// [`spawn_direct`].
pub(super) fn spawn_cloned(
    spec: &Spec,
    scope: &Scope,
    output: &Readiness,
) -> Option<std::io::Result<Child>> {
    if CLONE3_UNAVAILABLE.load(Ordering::Relaxed) {
        return None;
    }
    // A path is exec'd as it is (exec reports what is wrong with it); a
    // bare name is looked up on PATH, as std::process would.
    let program = match spec.shell.as_os_str().as_encoded_bytes().contains(&b'/') {
        true => spec.shell.clone(),
        false => match resolve_program(&spec.shell.to_string_lossy(), None) {
            Ok(path) => path,
            Err(e) => {
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    e.to_string(),
                )))
            }
        },
    };
    let cgroup = scope.prepare().and_then(|_| scope.cgroup_fd());
    let env = spec.environment(scope.marker());
    let args = [OsStr::new("-c"), OsStr::new(&spec.command)];
    let launch = clone3::Launch {
        program: &program,
        args: &args,
        env: &env,
        cwd: spec.cwd.as_deref(),
        cgroup: cgroup.as_ref().map(|fd| fd.as_fd()),
        output,
    };
    let started = reaper::register_spawn(|| {
        let started = clone3::spawn(&launch)?;
        let pid = started.pid;
        Ok::<_, Clone3Error>((started, pid))
    });
    match started {
        Ok(s) => Some(Ok(Child {
            pid: s.pid,
            stdout: s.stdout,
            stderr: s.stderr,
            exit: ShellExit::Pidfd(s.exit),
        })),
        Err(Clone3Error::Spawn(e)) => Some(Err(e)),
        Err(Clone3Error::Unsupported(e)) => {
            CLONE3_UNAVAILABLE.store(true, Ordering::Relaxed);
            tracing::info!("{e}: commands are started with posix_spawn");
            None
        }
        Err(Clone3Error::Refused(e)) => {
            if !CLONE3_REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!("clone3 refused a command ({e}); starting it with posix_spawn");
            }
            None
        }
    }
}

/// Spawns the shell with `std::process` (no clone3): with a cgroup, a POSIX
/// shell moves itself into it before it runs anything of the command (see
/// `tracking` for why, and for other shells).
pub(super) fn spawn_direct(
    spec: &Spec,
    scope: &Scope,
    output: &Readiness,
) -> std::io::Result<Child> {
    let self_moving = tracking::is_posix_shell(&spec.shell);
    let command = match scope.prepare() {
        Some(dir) if self_moving => format!("{}{}", tracking::shell_prefix(&dir), spec.command),
        _ => spec.command.clone(),
    };
    // Pipes of our own, so that their read ends join the epoll set before
    // the shell can write (see `readiness`).
    let pipe = || -> std::io::Result<(OwnedFd, OwnedFd)> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        Ok((r, w))
    };
    let (stdout, out_w) = pipe()?;
    let (stderr, err_w) = pipe()?;
    output.watch(stdout.as_fd(), stderr.as_fd())?;
    let mut cmd = tokio::process::Command::new(&spec.shell);
    cmd.arg("-c")
        .arg(&command)
        .env_clear()
        .envs(spec.environment(scope.marker()))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .process_group(0);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let child = reaper::register_spawn(|| {
        let child = cmd.spawn()?;
        let pid = child.id().unwrap_or_default();
        Ok::<_, std::io::Error>((child, pid))
    })?;
    // The write ends are the child's alone: the pipes end when it does.
    drop(cmd);
    let pid = child.id().unwrap_or_default();
    if !self_moving {
        scope.enter(pid);
    }
    Ok(Child {
        pid,
        stdout,
        stderr,
        exit: ShellExit::Std(child),
    })
}
