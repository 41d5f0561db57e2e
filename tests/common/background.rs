//! A fresh state directory for commands run as a newcomer runs them:
//! `ccx serve` in the background (port 0), client commands with no `--url`,
//! every command bounded by a deadline. On drop: `ccx stop`, then SIGKILL to
//! the server its pid file still names, and to that server's group.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ccx::lifecycle::state::is_ccx_server;
use ccx::lifecycle::StateDir;

use super::{ccx_command, kill_group_if};

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
        let _ = run_within(self.command(&["stop"]), Duration::from_secs(15));
        // A server `stop` could not end, or one a test started with another
        // state directory below this one (XDG_STATE_HOME), is named by its
        // pid file; it leads its own session, so its group goes with it.
        for pid in recorded_pids(self.path(), 3) {
            kill_group_if(pid, is_ccx_server);
        }
    }
}

/// The pids that `ccx.pid` files at most `depth` levels below `dir` name.
fn recorded_pids(dir: &Path, depth: usize) -> Vec<u32> {
    let mut pids: Vec<u32> = StateDir::new(dir)
        .read_record()
        .ok()
        .flatten()
        .map(|record| record.pid)
        .into_iter()
        .collect();
    if depth > 0 {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(recorded_pids(&entry.path(), depth - 1));
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
