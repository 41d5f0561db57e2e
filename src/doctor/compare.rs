//! `ccx doctor --compare`: "works in Docker, fails here". Runs the doctor's
//! checks against two servers (two URLs, or the local server the doctor
//! starts and one URL), fetches both environment fingerprints
//! (`server.info`) on the sessions the checks opened, and lists their
//! differences most likely culprits first (`crate::doctor::differences`). Plain data
//! ([`CompareReport`]); the renderers live in `render`.
//!
//! A server that has no `server.info` (the Python cc_executor, an older
//! ccx) is still compared on what it says about itself (`/health`,
//! `connected`) and on its measured round trip; what could not be compared
//! is listed, never left out silently.
//!
//! Differences are information, not failures: two machines always differ
//! somewhere (a uid, a cwd). The exit status says whether both sides pass
//! their checks.

use std::future::Future;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{millis, run_steps, Options, Report};
use crate::doctor::differences::{differences, identity_differences, speed_difference, Difference};
use crate::doctor::steps::echo::SLOW_ECHO;
use crate::doctor::{Status, StepId};
use crate::protocol::ServerInfo;

/// Version of the `--compare --json` document's shape; bumped on any
/// incompatible change.
pub const COMPARE_SCHEMA_VERSION: u32 = 1;

/// One compared server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// `A` or `B`: the order of the command line (the local server is A).
    pub name: String,
    /// True for the server the doctor started itself.
    pub local: bool,
    /// The WebSocket URL checked.
    pub target: String,
    /// The doctor's checks against this side (the usual six steps; local
    /// steps are skipped for a URL).
    pub report: Report,
    /// Its fingerprint, when its checks passed and it answered `server.info`.
    pub info: Option<ServerInfo>,
    /// Why there is no fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_error: Option<String>,
}

impl Side {
    /// The side as named in human output: `A (local, ws://…)`.
    pub fn label(&self) -> String {
        let target = if self.target.is_empty() {
            "no server"
        } else {
            &self.target
        };
        if self.local {
            format!("{} (local, {target})", self.name)
        } else {
            format!("{} ({target})", self.name)
        }
    }
}

/// The JSON document of `ccx doctor --compare … --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub schema_version: u32,
    pub ccx_version: String,
    /// True when the exit code is 0.
    pub ok: bool,
    pub exit_code: u8,
    /// Both sides, A then B (only A when the run was interrupted during A).
    pub sides: Vec<Side>,
    /// True when both sides were reached, so `differences` is meaningful
    /// (an empty list then means they match in everything compared).
    pub compared: bool,
    /// `b` is side B's value; most likely culprits first.
    pub differences: Vec<Difference>,
    /// What could not be compared, and why (e.g. one side has no
    /// `server.info` fingerprint). Added in schema version 1 without a bump.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
    pub duration_ms: u64,
    /// Set when the comparison was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks both sides, one after the other (so that a local server and its
/// port are released before B is checked), and compares them. `urls` holds
/// one URL (side A is then the local server) or two.
pub async fn run(
    opts: &Options,
    urls: &[String],
    interrupted: impl Future<Output = i32>,
) -> CompareReport {
    let started = Instant::now();
    tokio::pin!(interrupted);
    let plan: Vec<Option<String>> = match urls {
        [b] => vec![None, Some(b.clone())],
        _ => urls.iter().take(2).cloned().map(Some).collect(),
    };
    let mut sides = Vec::new();
    let mut interruption = None;
    for (name, url) in ["A", "B"].into_iter().zip(plan) {
        // A URL side's `binaries` step does not apply; its --require names
        // are resolved by the server itself, in its fingerprint.
        let side_opts = Options {
            url: url.clone(),
            require: if url.is_some() {
                Vec::new()
            } else {
                opts.require.clone()
            },
            ..opts.clone()
        };
        let (report, info) = run_steps(&side_opts, interrupted.as_mut(), Some(&opts.require)).await;
        let (info, info_error) = match info {
            Some(Ok(info)) => (Some(info), None),
            Some(Err(e)) => (None, Some(e)),
            None => (
                None,
                Some("not fetched: this side failed its checks".to_string()),
            ),
        };
        if report.exit_code > 128 {
            interruption = report.error.clone();
        }
        sides.push(Side {
            name: name.into(),
            local: url.is_none(),
            target: report.target.clone(),
            report,
            info,
            info_error,
        });
        if interruption.is_some() {
            break;
        }
    }
    let mut not_compared = Vec::new();
    let (diffs, compared) = match sides.as_slice() {
        [a, b] => match (&a.report.server, &b.report.server) {
            (Some(ida), Some(idb)) => {
                let mut diffs = identity_differences(ida, idb);
                if let (Some(ta), Some(tb)) = (echo_time(&a.report), echo_time(&b.report)) {
                    diffs.extend(speed_difference(ta, tb, SLOW_ECHO));
                }
                match (&a.info, &b.info) {
                    (Some(ia), Some(ib)) => diffs.extend(differences(ia, ib)),
                    _ => {
                        for side in [a, b].into_iter().filter(|s| s.info.is_none()) {
                            not_compared.push(format!(
                                "the environment fingerprint (PATH, shell, programs, limits, user, variable names): side {} ({}) gave none: {}",
                                side.name,
                                side.report.server.as_ref().map(|s| s.name()).unwrap_or_default(),
                                side.info_error.as_deref().unwrap_or("no reason given")
                            ));
                        }
                    }
                }
                for side in [a, b] {
                    if let Some(e) = side
                        .report
                        .server
                        .as_ref()
                        .and_then(|s| s.health_error.as_ref())
                    {
                        not_compared.push(format!("/health of side {}: {e}", side.name));
                    }
                }
                (diffs, true)
            }
            _ => {
                not_compared
                    .push("everything: a side could not be reached (see its checks)".into());
                (Vec::new(), false)
            }
        },
        _ => (Vec::new(), false),
    };
    let exit_code = match sides.iter().find(|s| s.report.exit_code > 128) {
        Some(side) => side.report.exit_code,
        None if compared && sides.iter().all(|s| s.report.ok) => 0,
        None => 1,
    };
    CompareReport {
        schema_version: COMPARE_SCHEMA_VERSION,
        ccx_version: crate::VERSION.into(),
        ok: exit_code == 0,
        exit_code,
        sides,
        compared,
        differences: diffs,
        not_compared,
        duration_ms: millis(started.elapsed()),
        error: interruption,
    }
}

/// How long the side's `echo` step took, when it ran a command.
fn echo_time(report: &Report) -> Option<std::time::Duration> {
    report
        .steps
        .iter()
        .find(|s| s.id == StepId::Echo && matches!(s.status, Status::Pass | Status::Warn))
        .map(|s| std::time::Duration::from_millis(s.duration_ms))
}
