//! A fresh state directory for commands run as a newcomer runs them:
//! `ccx serve` in the background (port 0), client commands with no `--url`,
//! every command bounded by a deadline. On drop: `ccx stop`, then SIGKILL to
//! the server its pid file still names, and to that server's group.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::ccx_command;

pub struct StateLab {
    dir: tempfile::TempDir,
}

impl StateLab {
    pub fn new() -> StateLab {
        StateLab {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `ccx ARGS` with this state directory and nothing else configured.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = ccx_command();
        cmd.args(args)
            .env("CCX_STATE_DIR", self.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_within(self.command(args), Duration::from_secs(60))
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        run_within(cmd, Duration::from_secs(60))
    }

    /// `ccx serve --port 0`, which must succeed; returns the server's URL.
    pub fn serve(&self, env: &[(&str, &str)]) -> String {
        let out = self.run_env(&["serve", "--port", "0"], env);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let status = self.run(&["status", "--json"]);
        let report: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("status --json");
        report["url"].as_str().expect("url").to_string()
    }
}

impl Default for StateLab {
    fn default() -> Self {
        StateLab::new()
    }
}

impl Drop for StateLab {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        let _ = run_within(self.command(&["stop"]), Duration::from_secs(15));
        // A server `stop` could not end, or one a test started with another
        // state directory below this one (XDG_STATE_HOME), is named by its
        // pid file; it leads its own session, so its group goes with it.
        for pid in recorded_servers(self.path(), 3) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The pids that `ccx.pid` files at most `depth` levels below `dir` name,
/// that still run `ccx … serve`.
fn recorded_servers(dir: &Path, depth: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    let record = std::fs::read_to_string(dir.join("ccx.pid")).unwrap_or_default();
    let pid = serde_json::from_str::<serde_json::Value>(&record)
        .ok()
        .and_then(|v| v["pid"].as_u64())
        .or_else(|| record.trim().parse().ok())
        .filter(|&pid| pid > 1 && pid <= i32::MAX as u64);
    if let Some(pid) = pid {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv = String::from_utf8_lossy(&argv);
        if argv.split('\0').any(|a| a == "serve") && argv.contains("ccx") {
            pids.push(pid as i32);
        }
    }
    if depth > 0 {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(recorded_servers(&entry.path(), depth - 1));
            }
        }
    }
    pids
}

/// Runs a command to its end, killing it past `deadline`.
pub fn run_within(mut cmd: Command, deadline: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ccx");
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("did not finish within {deadline:?}:\n{}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
