//! `ccx stop [--json]`: stop the background server of a state directory.

use super::{lifecycle_report, CliError, ReportArgs};
use crate::exit::Exit;
use crate::lifecycle::{self, StopOutcome, StopReport};

pub fn run(args: ReportArgs) -> Result<Exit, CliError> {
    let stop = |state| async move { lifecycle::stop(&state).await };
    // Exit 1 only when the port stays taken (by another process).
    lifecycle_report(args, stop, human, |r: &StopReport| {
        r.port_freed != Some(false)
    })
}

fn human(report: &StopReport) -> String {
    let dir = report.state_dir.display();
    match report.outcome {
        StopOutcome::NotRunning => match &report.stale {
            Some(stale) => format!(
                "no ccx server is running for {dir}; removed a stale pid file ({}), without signalling its pid{}",
                stale.reason,
                if report.leftovers_killed.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nkilled {} process(es) the dead server left running: {:?}",
                        report.leftovers_killed.len(),
                        report.leftovers_killed
                    )
                }
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
                text.push_str(" (it did not exit within its CCX_KILL_GRACE after SIGTERM)");
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
