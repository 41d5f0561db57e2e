//! `ccx status [--json]`: is the background server running and healthy?
//! Exit 0 when it runs and `/health` answers 200, 1 otherwise.

use std::path::PathBuf;

use clap::Args;

use super::{runtime, state_dir, CliError};
use crate::exit::Exit;
use crate::lifecycle::{self, ServerState, StatusReport};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// State directory of the server [env: CCX_STATE_DIR].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print one JSON document (schema_version 1) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatusArgs) -> Result<Exit, CliError> {
    let state = state_dir(args.state_dir)?;
    let report = runtime()?.block_on(lifecycle::status(&state))?;
    super::output::print_report(&report, args.json, human)?;
    Ok(if report.ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn human(r: &StatusReport) -> String {
    let dir = r.state_dir.display();
    let pid = r.pid.unwrap_or_default();
    match r.state {
        ServerState::Stopped => format!("not running (no pid file in {dir})"),
        ServerState::Stale => {
            let reason = r.stale.as_ref().map(|s| s.reason.as_str()).unwrap_or("?");
            let what = if r.stale_removed {
                "removed it"
            } else {
                "left it: a serve or stop holds the lock"
            };
            format!("not running: stale pid file in {dir} ({reason}); {what}")
        }
        ServerState::Starting => format!("starting: pid {pid}, no URL yet (state dir {dir})"),
        ServerState::Running => {
            let health = if r.healthy {
                "healthy".to_string()
            } else {
                format!(
                    "NOT healthy: {}",
                    r.health_error.as_deref().unwrap_or("no answer")
                )
            };
            format!(
                "running: {}\n  pid     {pid}\n  uptime  {}\n  health  {health}\n  log     {}",
                r.url.as_deref().unwrap_or("?"),
                uptime(r.uptime_ms),
                r.log.display()
            )
        }
    }
}

fn uptime(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "unknown".into();
    };
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
