//! `ccx doctor --compare`: "works in Docker, fails here". Runs the doctor's
//! checks against two servers (two URLs, or the local server the doctor
//! starts and one URL), fetches both environment fingerprints
//! (`server.info`) on the sessions the checks opened, and lists their
//! differences most likely culprits first (`crate::compare`). Plain data
//! ([`CompareReport`]); the renderers live in `render`.
//!
//! Differences are information, not failures: two machines always differ
//! somewhere (a uid, a cwd). The exit status says whether both sides pass
//! their checks and answered with a fingerprint.

use std::future::Future;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{millis, run_steps, Options, Report};
use crate::compare::{differences, Difference};
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
    /// True when both fingerprints were fetched, so `differences` is
    /// meaningful (an empty list then means they match).
    pub compared: bool,
    /// `b` is side B's value; most likely culprits first.
    pub differences: Vec<Difference>,
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
    let (diffs, compared) = match sides.as_slice() {
        [a, b] => match (&a.info, &b.info) {
            (Some(ia), Some(ib)) => (differences(ia, ib), true),
            _ => (Vec::new(), false),
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
        duration_ms: millis(started.elapsed()),
        error: interruption,
    }
}
