//! `ccx doctor --compare`: "works in Docker, fails here". Runs the doctor's
//! checks against two servers (two URLs, or the local server the doctor
//! starts and one URL), takes both sides' environment fingerprints — the
//! same POSIX-sh probe (`crate::doctor::probe`) run through `execute` on
//! any server of the dialect, or run locally in the local server
//! command's cwd and environment when that server did not start — plus,
//! from a ccx, its settings (`server.info`), and lists their differences
//! most likely culprits first (`crate::doctor::differences`). Plain data
//! ([`CompareReport`]); the renderers live in `render`.
//!
//! What could not be compared (a side not reached, a server without
//! `server.info` such as the Python cc_executor) is listed, never left out
//! silently.
//!
//! Differences are information, not failures: two machines always differ
//! somewhere (a uid, a cwd). The exit status says whether both sides pass
//! their checks.

use std::future::Future;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{millis, run_steps, Options, Report};
use crate::doctor::differences::{identity_differences, speed_difference, Difference};
use crate::doctor::environment_differences::differences;
use crate::doctor::fingerprint::Environment;
use crate::doctor::probe;
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
    /// Its ccx settings, when its checks passed and it answered
    /// `server.info` (ccx only).
    pub info: Option<ServerInfo>,
    /// Why there is no `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_error: Option<String>,
    /// What a command sees there (the probe's report), taken through
    /// `execute`, or locally when the local server did not start.
    #[serde(default)]
    pub environment: Option<Environment>,
    /// Why there is no `environment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_error: Option<String>,
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
    /// True when both sides have an environment fingerprint (from their
    /// servers, or taken locally for a local server that did not start, or
    /// both read from `server.info` for two ccx that refused the probe),
    /// so `differences` is meaningful (an empty list then means they match
    /// in everything compared), whatever the sides' checks said.
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
/// one URL (side A is then the local server) or two; `modules` are the
/// Python modules to check (`--require-module`), to which the project's
/// own packages found in the doctor's cwd (and its `src/`) are added.
pub async fn run(
    opts: &Options,
    urls: &[String],
    modules: &[String],
    interrupted: impl Future<Output = i32>,
) -> CompareReport {
    let started = Instant::now();
    tokio::pin!(interrupted);
    let mut request = probe::Request {
        programs: opts.require.clone(),
        modules: modules.to_vec(),
    };
    if let Ok(cwd) = std::env::current_dir() {
        for found in probe::project_packages(&cwd) {
            if !request.modules.contains(&found) {
                request.modules.push(found);
            }
        }
    }
    let plan: Vec<Option<String>> = match urls {
        [b] => vec![None, Some(b.clone())],
        _ => urls.iter().take(2).cloned().map(Some).collect(),
    };
    let mut sides = Vec::new();
    let mut interruption = None;
    let mut signalled: Option<u8> = None;
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
        let (report, fetched) = run_steps(&side_opts, interrupted.as_mut(), Some(&request)).await;
        let not_fetched = "not fetched: this side failed its checks".to_string();
        let (info, mut environment) = match fetched {
            Some(f) => (f.info, f.environment),
            None => (Err(not_fetched.clone()), Err(not_fetched)),
        };
        if report.exit_code > 128 {
            interruption = report.error.clone();
        } else if url.is_none() && environment.is_err() {
            // The local server did not start: what its command would run in.
            let inherited = opts.env.get("PATH").map_or("", String::as_str);
            let place = opts
                .server_cmd
                .as_deref()
                .map(|cmd| probe::Place::of_command(cmd, inherited))
                .unwrap_or_default();
            tokio::select! {
                local = probe::local(&request, &place) => environment = local,
                number = interrupted.as_mut() => {
                    interruption = Some(format!("interrupted by {}", crate::process::signal_name(number)));
                    signalled = u8::try_from(number).ok();
                    environment = Err("interrupted while it ran".into());
                }
            }
        }
        let (info, info_error) = split(info);
        let (environment, environment_error) = split(environment);
        sides.push(Side {
            name: name.into(),
            local: url.is_none(),
            target: report.target.clone(),
            report,
            info,
            info_error,
            environment,
            environment_error,
        });
        if interruption.is_some() {
            break;
        }
    }
    let mut not_compared = Vec::new();
    let (diffs, compared) = match sides.as_slice() {
        [a, b] => compare_sides(a, b, &mut not_compared),
        _ => (Vec::new(), false),
    };
    let failed_side = sides.iter().find(|s| s.report.exit_code > 128);
    let exit_code = match (failed_side, signalled) {
        (Some(side), _) => side.report.exit_code,
        (None, Some(n)) => 128u8.saturating_add(n),
        (None, None) if compared && sides.iter().all(|s| s.report.ok) => 0,
        (None, None) => 1,
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

fn split<T>(result: Result<T, String>) -> (Option<T>, Option<String>) {
    match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    }
}

/// The differences of two sides (environment first: it holds the likely
/// culprits, then what the servers say they are, then speed), whether
/// their environments were compared, and what could not be.
fn compare_sides(a: &Side, b: &Side, not_compared: &mut Vec<String>) -> (Vec<Difference>, bool) {
    let mut diffs = Vec::new();
    let name = |s: &Side| {
        s.report
            .server
            .as_ref()
            .map(|id| format!("side {} ({})", s.name, id.name()))
            .unwrap_or_else(|| format!("side {}", s.name))
    };
    // Both probes, or, when a ccx refused the probe (a command allowlist),
    // both sides' server.info read the same way.
    let from_info;
    let environments = match (&a.environment, &b.environment, &a.info, &b.info) {
        (Some(ea), Some(eb), _, _) => Some((ea, eb)),
        (_, _, Some(ia), Some(ib)) => {
            for side in [a, b].into_iter().filter(|s| s.environment.is_none()) {
                not_compared.push(format!(
                    "Python (interpreters, modules, distributions): {} gave no probe report, so both environments are read from server.info: {}",
                    name(side),
                    side.environment_error.as_deref().unwrap_or("no reason given")
                ));
            }
            from_info = (
                Environment::from_server_info(ia),
                Environment::from_server_info(ib),
            );
            Some((&from_info.0, &from_info.1))
        }
        _ => None,
    };
    let compared = match environments {
        Some((ea, eb)) => {
            let settings = match (&a.info, &b.info) {
                (Some(ia), Some(ib)) => Some((ia, ib)),
                _ => {
                    for side in [a, b]
                        .into_iter()
                        .filter(|s| s.info.is_none() && s.report.server.is_some())
                    {
                        not_compared.push(format!(
                            "ccx's settings (server.info: version, limits, timeouts): {} has none: {}",
                            name(side),
                            side.info_error.as_deref().unwrap_or("no reason given")
                        ));
                    }
                    None
                }
            };
            diffs.extend(differences(ea, eb, settings));
            true
        }
        None => {
            for side in [a, b].into_iter().filter(|s| s.environment.is_none()) {
                not_compared.push(format!(
                    "the environment (Python modules and distributions, programs, shell, PATH, variable names, limits, user, platform): {} gave none: {}",
                    name(side),
                    side.environment_error.as_deref().unwrap_or("no reason given")
                ));
            }
            false
        }
    };
    match (&a.report.server, &b.report.server) {
        (Some(ida), Some(idb)) => {
            diffs.extend(identity_differences(ida, idb));
            if let (Some(ta), Some(tb)) = (echo_time(&a.report), echo_time(&b.report)) {
                diffs.extend(speed_difference(ta, tb, SLOW_ECHO));
            }
        }
        _ => not_compared.push(
            "what the servers say they are (/health, `connected`) and their speed: a side was not reached (see its checks)".into(),
        ),
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
    (diffs, compared)
}

/// How long the side's `echo` step took, when it ran a command.
fn echo_time(report: &Report) -> Option<std::time::Duration> {
    report
        .steps
        .iter()
        .find(|s| s.id == StepId::Echo && matches!(s.status, Status::Pass | Status::Warn))
        .map(|s| std::time::Duration::from_millis(s.duration_ms))
}
