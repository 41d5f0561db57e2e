//! `ccx stop [--json]`: stop the background server of a state directory.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{config_with_state_dir, runtime, CliError};
use crate::exit::Exit;
use crate::lifecycle::{self, StateDir, StopOutcome, StopReport};

#[derive(Debug, Args)]
pub struct StopArgs {
    /// State directory of the server [env: CCX_STATE_DIR].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print one JSON document (schema_version 1) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StopArgs) -> Result<Exit, CliError> {
    let config = config_with_state_dir(args.state_dir.clone())?;
    let state = StateDir::new(&config.state_dir);
    // A server given CCX_DRAIN_PERIOD lets running commands finish on SIGTERM:
    // SIGKILL must not cut that short.
    let grace = config.kill_grace + config.drain_period;
    let lock_wait = lifecycle::start::lock_wait(std::time::Duration::from_secs(10), grace);
    let report = runtime()?.block_on(lifecycle::stop(&state, grace, lock_wait))?;
    let exit = if report.port_freed == Some(false) {
        Exit::Failure
    } else {
        Exit::Success
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::to_string_pretty(&report).map_err(std::io::Error::from)?;
        let _ = writeln!(out, "{json}");
    } else {
        let _ = writeln!(out, "{}", human(&report));
    }
    Ok(exit)
}

fn human(report: &StopReport) -> String {
    let dir = report.state_dir.display();
    match report.outcome {
        StopOutcome::NotRunning => match &report.stale {
            Some(stale) => format!(
                "no ccx server is running for {dir}; removed a stale pid file ({}), without signalling anyone",
                stale.reason
            ),
            None => format!("no ccx server is running for {dir}: nothing to stop"),
        },
        StopOutcome::Stopped => {
            let mut text = format!(
                "stopped the ccx server (pid {}, {}) with {} in {} ms",
                report.pid.unwrap_or_default(),
                report.url.as_deref().unwrap_or("URL unknown"),
                report.signal.as_deref().unwrap_or("?"),
                report.duration_ms.unwrap_or_default(),
            );
            if report.signal.as_deref() == Some("SIGKILL") {
                text.push_str(" (it did not exit within CCX_KILL_GRACE after SIGTERM)");
            }
            if !report.leftovers_killed.is_empty() {
                text.push_str(&format!(
                    "\nkilled {} leftover process(es) of its session: {:?}",
                    report.leftovers_killed.len(),
                    report.leftovers_killed
                ));
            }
            if report.port_freed == Some(false) {
                text.push_str("\nits port is still in use by another process");
            }
            text
        }
    }
}
