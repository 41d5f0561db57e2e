//! The busy host of P7: N idle `sleep` processes in one process group of
//! their own, started directly by the bench (so it reaps them itself) and
//! ended as exactly that group.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::BenchError;

/// How long the sleeps would live if the bench itself were killed with
/// SIGKILL and could not end them.
const SLEEP_SECONDS: &str = "900";

pub struct IdleProcesses {
    pgid: Option<i32>,
    children: Vec<Child>,
}

impl IdleProcesses {
    pub fn start(n: usize) -> Result<IdleProcesses, BenchError> {
        let mut idle = IdleProcesses {
            pgid: None,
            children: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let child = Command::new("sleep")
                .arg(SLEEP_SECONDS)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(idle.pgid.unwrap_or(0))
                .spawn()
                .map_err(|e| BenchError::Start {
                    what: format!("idle sleep number {}", idle.children.len() + 1),
                    reason: e.to_string(),
                })?;
            idle.pgid.get_or_insert(child.id() as i32);
            idle.children.push(child);
        }
        Ok(idle)
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }
}

impl Drop for IdleProcesses {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}
