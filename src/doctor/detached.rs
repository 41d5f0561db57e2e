//! The processes a user's server command starts, followed after they leave
//! it: a launcher that detaches its server (`start_new_session=True`, a
//! double fork, `nohup … &`) and exits. The doctor is a child subreaper
//! while it runs such a command, so every descendant that loses its parent
//! is re-parented to the doctor; the tree under the doctor is scanned while
//! the step waits, and each descendant's argv, working directory,
//! environment and where its stdout and stderr go are recorded while it
//! lives. A descendant the launcher left behind that dies is reaped here,
//! with its exit status; one whose output went nowhere is re-run in the
//! foreground with its output captured. Every process the command caused
//! is ended when the doctor stops its server.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::process::{self, procfs};

/// How long a re-run of a dead descendant may take.
pub const RERUN_LIMIT: Duration = Duration::from_secs(10);

/// How a descendant ended, when the doctor reaped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
    /// Gone, reaped by its own parent: its status went there.
    Unknown,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "exited with exit status {code}"),
            Ended::Signaled(sig) => write!(
                f,
                "was killed by signal {sig} ({})",
                Signal::try_from(*sig).map(|s| s.as_str()).unwrap_or("?")
            ),
            Ended::Unknown => f.write_str("ended (its status went to its parent)"),
        }
    }
}

/// One descendant, as recorded while it lived.
#[derive(Debug, Clone)]
pub struct Descendant {
    pub pid: u32,
    start_ticks: u64,
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    /// Where its fd 1 and fd 2 pointed, last seen.
    pub outputs: [Option<String>; 2],
    /// The size of a file it wrote to, when first seen.
    offsets: [Option<u64>; 2],
    /// Still there (alive or unreaped) when the launcher exited.
    pub left_behind: bool,
    pub ended: Option<Ended>,
}

/// Where a dead descendant's output went, and whether it is lost.
pub struct OutputFate {
    pub description: String,
    pub lost: bool,
    /// New lines of a log file it wrote.
    pub lines: Vec<String>,
}

impl Descendant {
    /// Where its stream `n` (0: stdout, 1: stderr) went.
    pub fn fate(&self, n: usize, captured: &[Option<String>; 2], dead: &[u32]) -> OutputFate {
        let name = ["stdout", "stderr"][n];
        let lost = |description: String| OutputFate {
            description,
            lost: true,
            lines: Vec::new(),
        };
        let Some(target) = &self.outputs[n] else {
            return lost(format!("{name}: not known (it was not seen alive)"));
        };
        if captured.contains(&Some(target.clone())) {
            return OutputFate {
                description: format!("{name}: the doctor's own pipe (captured above)"),
                lost: false,
                lines: Vec::new(),
            };
        }
        if target == "/dev/null" {
            return lost(format!("{name}: /dev/null (discarded)"));
        }
        if target.starts_with("pipe:") {
            return if procfs::anyone_holds(target, dead) {
                OutputFate {
                    description: format!("{name}: a pipe ({target}) that another process holds"),
                    lost: true,
                    lines: Vec::new(),
                }
            } else {
                lost(format!(
                    "{name}: a pipe ({target}) nobody reads: its reader, the launcher, exited, so this output is lost"
                ))
            };
        }
        if target.starts_with("socket:") || target.starts_with("anon_inode:") {
            return lost(format!("{name}: {target}"));
        }
        let lines = new_lines(target, self.offsets[n]);
        OutputFate {
            description: format!("{name}: the file {target}"),
            lost: lines.is_empty(),
            lines,
        }
    }
}

/// The size of a file a descriptor points to (`None` for a pipe, a
/// socket, nothing).
fn file_size(target: Option<&str>) -> Option<u64> {
    let target = target.filter(|t| t.starts_with('/'))?;
    std::fs::metadata(target).ok().map(|m| m.len())
}

/// The last lines written to `path` after `offset`.
fn new_lines(path: &str, offset: Option<u64>) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let from = (offset.unwrap_or(0) as usize).min(bytes.len());
    let text = crate::sanitize::captured(&String::from_utf8_lossy(&bytes[from..]));
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    lines[lines.len().saturating_sub(15)..].to_vec()
}

/// The descendants of the server command, scanned from the doctor's own
/// process tree.
pub struct Detached {
    leader: u32,
    /// Where the leader's stdout and stderr go: the doctor's own pipes.
    pub captured: [Option<String>; 2],
    pub seen: Vec<Descendant>,
    launcher_exited: bool,
}

impl Detached {
    /// Makes the doctor a child subreaper and starts following `leader`.
    pub fn follow(leader: u32) -> Detached {
        let _ = crate::process::reaper::become_subreaper();
        Detached {
            leader,
            captured: [procfs::fd_target(leader, 1), procfs::fd_target(leader, 2)],
            seen: Vec::new(),
            launcher_exited: false,
        }
    }

    /// Records new descendants, updates the living ones, reaps the dead
    /// ones that were re-parented to the doctor.
    pub fn scan(&mut self) {
        let mut queue = procfs::children_of(std::process::id());
        let mut found = Vec::new();
        while let Some(pid) = queue.pop() {
            if found.contains(&pid) {
                continue;
            }
            found.push(pid);
            queue.extend(procfs::children_of(pid));
        }
        for pid in found {
            if pid == self.leader {
                continue;
            }
            let Some(stat) = procfs::stat(pid) else {
                continue;
            };
            if !stat.is_alive() {
                self.reap(pid, stat.ppid);
                continue;
            }
            let outputs = [procfs::fd_target(pid, 1), procfs::fd_target(pid, 2)];
            match self
                .seen
                .iter_mut()
                .find(|d| d.pid == pid && d.start_ticks == stat.start_ticks)
            {
                Some(known) => {
                    for ((now, before), offset) in outputs
                        .iter()
                        .zip(&known.outputs)
                        .zip(known.offsets.iter_mut())
                    {
                        if now != before {
                            *offset = file_size(now.as_deref());
                        }
                    }
                    known.outputs = outputs;
                    // A fork seen before its exec showed its parent's argv.
                    let argv = procfs::cmdline(pid);
                    if argv != known.argv && !argv.is_empty() {
                        known.argv = argv;
                        known.cwd = procfs::cwd(pid);
                        known.env = procfs::environ(pid);
                    }
                }
                None => {
                    let offsets = [
                        file_size(outputs[0].as_deref()),
                        file_size(outputs[1].as_deref()),
                    ];
                    self.seen.push(Descendant {
                        pid,
                        start_ticks: stat.start_ticks,
                        argv: procfs::cmdline(pid),
                        cwd: procfs::cwd(pid),
                        env: procfs::environ(pid),
                        outputs,
                        offsets,
                        left_behind: self.launcher_exited,
                        ended: None,
                    })
                }
            }
        }
        for d in self.seen.iter_mut().filter(|d| d.ended.is_none()) {
            if procfs::stat(d.pid).is_none_or(|s| s.start_ticks != d.start_ticks) {
                d.ended = Some(Ended::Unknown);
            }
        }
    }

    /// A zombie re-parented to the doctor: its status is ours to read.
    fn reap(&mut self, pid: u32, ppid: u32) {
        if ppid != std::process::id() {
            return;
        }
        let ended = match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Ended::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Ended::Signaled(sig as i32),
            _ => return,
        };
        if let Some(d) = self
            .seen
            .iter_mut()
            .find(|d| d.pid == pid && d.ended.is_none())
        {
            d.ended = Some(ended);
        }
    }

    /// The launcher (the command's own process) exited: what is still
    /// there now was left behind.
    pub fn launcher_exited(&mut self) {
        self.scan();
        self.launcher_exited = true;
        for d in &mut self.seen {
            // Unreaped or alive: not waited for by the launcher.
            if d.ended != Some(Ended::Unknown) {
                d.left_behind = true;
            }
        }
        self.scan();
    }

    /// Descendants left behind that still run.
    pub fn running(&self) -> Vec<&Descendant> {
        self.seen
            .iter()
            .filter(|d| d.left_behind && d.ended.is_none())
            .collect()
    }

    /// Descendants left behind that died (the doctor saw their end).
    pub fn died(&self) -> Vec<&Descendant> {
        self.seen
            .iter()
            .filter(|d| {
                d.left_behind && matches!(d.ended, Some(Ended::Exited(_) | Ended::Signaled(_)))
            })
            .collect()
    }

    /// Ends every descendant still alive (SIGTERM to it and its group,
    /// `grace`, SIGKILL) and reaps those re-parented to the doctor;
    /// returns what it ended, as `pid (argv)`.
    pub async fn end_all(&mut self, grace: Duration) -> Vec<String> {
        self.scan();
        let targets: Vec<(u32, u64, String)> = self
            .seen
            .iter()
            .filter(|d| d.ended.is_none())
            .map(|d| (d.pid, d.start_ticks, d.argv.join(" ")))
            .collect();
        let same = |pid: u32, ticks: u64| {
            procfs::stat(pid).is_some_and(|s| s.start_ticks == ticks && s.is_alive())
        };
        let signal = |signal: Signal| {
            for (pid, ticks, _) in &targets {
                if same(*pid, *ticks) {
                    let target = Pid::from_raw(*pid as i32);
                    let _ = killpg(target, signal);
                    let _ = kill(target, signal);
                }
            }
        };
        let alive = || targets.iter().any(|(p, t, _)| same(*p, *t));
        let term = || {
            signal(Signal::SIGTERM);
            signal(Signal::SIGCONT);
        };
        process::stop_with(grace, alive, term, || signal(Signal::SIGKILL)).await;
        self.scan();
        targets
            .into_iter()
            .map(|(pid, _, argv)| format!("pid {pid} ({argv})"))
            .collect()
    }
}

/// What a re-run in the foreground printed.
pub struct Rerun {
    pub output: String,
    /// How it ended, or `None` when it still ran at the limit (then it was
    /// stopped).
    pub ended: Option<std::process::ExitStatus>,
}

/// Runs `d`'s argv again in the foreground, in its working directory and
/// environment, with stdout and stderr captured, for at most `limit`.
pub async fn rerun(d: &Descendant, limit: Duration) -> std::io::Result<Rerun> {
    let Some((program, args)) = d.argv.split_first() else {
        return Err(std::io::Error::other("its command line is unknown"));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(d.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &d.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    let group = crate::process::Group(child.id().unwrap_or_default());
    let stdout = tokio::spawn(read_all(child.stdout.take()));
    let stderr = tokio::spawn(read_all(child.stderr.take()));
    let ended = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            crate::process::stop_child(&mut child, group, Duration::from_secs(1)).await;
            None
        }
    };
    let collect = |task: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(Duration::from_secs(1), task).await {
            Ok(Ok(bytes)) => crate::sanitize::captured(&String::from_utf8_lossy(&bytes)),
            _ => String::new(),
        }
    };
    let (err, out) = (collect(stderr).await, collect(stdout).await);
    Ok(Rerun {
        output: format!("{err}\n{out}"),
        ended,
    })
}

/// Everything a pipe carries until EOF.
async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut p, &mut buf).await;
    }
    buf
}
