//! `ccx status [--json]`: is the background server running and healthy?
//! Exit 0 when it runs, `/health` answers 200 and its log can be written;
//! 1 otherwise.

use super::{lifecycle_report, CliError, ReportArgs};
use crate::exit::Exit;
use crate::lifecycle::{self, ServerState, StatusReport};

pub fn run(args: ReportArgs) -> Result<Exit, CliError> {
    let status = |state| async move { lifecycle::status(&state).await };
    lifecycle_report(args, status, human, StatusReport::ok)
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
            let mut text = format!("not running: stale pid file in {dir} ({reason}); {what}");
            if !r.leftovers_killed.is_empty() {
                text.push_str(&format!(
                    "\n  killed {} process(es) the dead server left running: {:?}",
                    r.leftovers_killed.len(),
                    r.leftovers_killed
                ));
            }
            if let Some(ended) = &r.ended {
                text.push_str(&format!("\n  {ended}"));
            }
            if !r.log_tail.is_empty() {
                text.push_str(&format!("\n  last lines of {}:", r.log.display()));
                for line in &r.log_tail {
                    text.push_str(&format!("\n  | {line}"));
                }
            }
            text
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
            let log = match &r.log_error {
                None => r.log.display().to_string(),
                Some(e) => format!(
                    "{} CANNOT BE WRITTEN: {e}; its lines are being lost: free space there",
                    r.log.display()
                ),
            };
            format!(
                "running: {}\n  pid     {pid}\n  uptime  {}\n  health  {health}\n  log     {log}",
                r.url.as_deref().unwrap_or("?"),
                uptime(r.uptime_ms),
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
