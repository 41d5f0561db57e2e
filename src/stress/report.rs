//! The stress report: plain serde data (the `--json` contract, versioned by
//! [`SCHEMA_VERSION`]) and its human renderer. Computed once by the engine,
//! rendered here; no I/O.

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of the JSON report.
pub const SCHEMA_VERSION: u32 = 1;

/// What `ccx stress --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressReport {
    pub schema_version: u32,
    pub settings: Settings,
    /// One per `--url`, in the order given, then the `--direct` baseline.
    pub targets: Vec<TargetReport>,
    /// Every target met `min_success_percent`.
    pub passed: bool,
}

/// How the run was configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub clients: u32,
    /// Requests per client (`None`: only `duration_s` caps the run).
    pub requests_per_client: Option<u64>,
    pub duration_s: Option<f64>,
    /// `persistent` (one session per client) or `oneshot` (one per request).
    pub mode: String,
    /// Default per-request timeout (a case's own timeout wins).
    pub timeout_s: f64,
    /// `echo` (nonce round trip), `command`, or `cases`.
    pub workload: String,
    /// The `--command`, or the `--cases` file.
    pub workload_detail: Option<String>,
    pub min_success_percent: f64,
}

/// Results against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The URL, or `direct (no server)` for the `--direct` baseline.
    pub target: String,
    /// `server` or `direct`; absent in reports written before `--direct`
    /// existed, which only had server targets.
    #[serde(default)]
    pub kind: TargetKind,
    pub attempts: u64,
    pub successes: u64,
    /// successes / attempts × 100 (0 when nothing was attempted).
    pub success_percent: f64,
    pub met_min_success: bool,
    /// Wall time of this target's run.
    pub elapsed_s: f64,
    /// Successful requests per second of `elapsed_s`.
    pub throughput_rps: f64,
    /// Of successful requests only; `None` when none succeeded.
    pub latency_ms: Option<Latency>,
    /// One entry per cause that occurred, most frequent first.
    pub failures: Vec<FailureGroup>,
    /// Per-case results (only with `--cases`).
    pub cases: Vec<CaseReport>,
}

/// What a target is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A server reached over WebSocket (`--url`, or the local server).
    #[default]
    Server,
    /// `--direct`: the commands run by ccx itself with the server's process
    /// rules, no server and no WebSocket.
    Direct,
}

/// Latency percentiles in milliseconds (HdrHistogram, 3 significant digits):
/// from sending `execute` to `process.completed`, plus connecting in oneshot
/// mode; for a direct target, from spawning the process to its completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Nothing listens there, or the TCP connect failed otherwise.
    ConnectRefused,
    /// TCP connected, but the WebSocket upgrade or `connected` failed (HTTP
    /// 401/403/404, not a ccx, session limit).
    Handshake,
    /// Connect, response or command timeout passed.
    Timeout,
    /// An expected pattern (or the echo nonce) was not in the output.
    WrongOutput,
    /// The command exited non-zero (or zero when a failure was expected), or
    /// was cancelled by the server.
    NonZeroExit,
    /// The server answered with an error, or something the protocol does not allow.
    ProtocolError,
    /// The connection closed in the middle of a request.
    ConnectionLost,
    /// Direct target only: the shell could not be started (CCX_SHELL
    /// missing or not executable, out of processes or file descriptors).
    SpawnFailed,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::ConnectRefused => "connect refused",
            Cause::Handshake => "handshake",
            Cause::Timeout => "timeout",
            Cause::WrongOutput => "wrong output",
            Cause::NonZeroExit => "non-zero exit",
            Cause::ProtocolError => "protocol error",
            Cause::ConnectionLost => "connection lost",
            Cause::SpawnFailed => "spawn failed",
        }
    }

    pub const ALL: [Cause; 8] = [
        Cause::ConnectRefused,
        Cause::Handshake,
        Cause::Timeout,
        Cause::WrongOutput,
        Cause::NonZeroExit,
        Cause::ProtocolError,
        Cause::ConnectionLost,
        Cause::SpawnFailed,
    ];
}

/// Failures of one cause, with the first one seen as an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureGroup {
    pub cause: Cause,
    pub count: u64,
    pub example: String,
    /// The case of the example (with `--cases`).
    pub case_id: Option<String>,
    /// For `wrong_output`: the pattern that did not match in the example.
    pub pattern: Option<String>,
}

/// Results of one case of a cases file, over all clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseReport {
    pub id: String,
    pub name: String,
    pub category: Option<String>,
    pub attempts: u64,
    pub successes: u64,
    /// Causes and counts of this case's failures.
    pub failures: Vec<(Cause, u64)>,
    /// Patterns that failed to match at least once (sorted).
    pub missing_patterns: Vec<String>,
}

/// The human report: one column per target, side by side.
pub fn render_human(report: &StressReport, color: bool) -> String {
    let mut out = String::new();
    let s = &report.settings;
    let load = match (s.requests_per_client, s.duration_s) {
        (Some(r), Some(d)) => format!("{r} requests per client, at most {d} s"),
        (Some(r), None) => format!("{r} requests per client"),
        (None, Some(d)) => format!("for {d} s"),
        (None, None) => String::new(),
    };
    let workload = match &s.workload_detail {
        Some(detail) => format!("{} ({detail})", s.workload),
        None => s.workload.clone(),
    };
    let _ = writeln!(
        out,
        "ccx stress: {} clients × {load}, {} mode, workload {workload}, per-request timeout {} s",
        s.clients, s.mode, s.timeout_s
    );
    let _ = writeln!(out);

    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let col =
        |f: &dyn Fn(&TargetReport) -> String| report.targets.iter().map(f).collect::<Vec<_>>();
    rows.push(("target".into(), col(&|t| t.target.clone())));
    rows.push(("attempts".into(), col(&|t| t.attempts.to_string())));
    rows.push(("successes".into(), col(&|t| t.successes.to_string())));
    rows.push((
        "success rate".into(),
        col(&|t| {
            let mark = if t.met_min_success { "✓" } else { "✗" };
            format!("{mark} {:.1} %", t.success_percent)
        }),
    ));
    rows.push(("elapsed".into(), col(&|t| format!("{:.2} s", t.elapsed_s))));
    rows.push((
        "throughput".into(),
        col(&|t| format!("{:.1} req/s", t.throughput_rps)),
    ));
    for (name, pick) in [
        ("latency p50", (|l: &Latency| l.p50) as fn(&Latency) -> f64),
        ("latency p90", |l| l.p90),
        ("latency p99", |l| l.p99),
        ("latency max", |l| l.max),
    ] {
        rows.push((
            name.into(),
            col(&|t| match &t.latency_ms {
                Some(l) => format!("{:.2} ms", pick(l)),
                None => "-".into(),
            }),
        ));
    }
    for cause in Cause::ALL {
        if report
            .targets
            .iter()
            .any(|t| t.failures.iter().any(|f| f.cause == cause))
        {
            rows.push((
                format!("  {}", cause.label()),
                col(&|t| {
                    t.failures
                        .iter()
                        .find(|f| f.cause == cause)
                        .map(|f| f.count.to_string())
                        .unwrap_or_else(|| "-".into())
                }),
            ));
        }
    }
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let widths: Vec<usize> = (0..report.targets.len())
        .map(|i| {
            rows.iter()
                .map(|(_, cells)| cells.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
                + 3
        })
        .collect();
    let has_failures = report.targets.iter().any(|t| !t.failures.is_empty());
    for (label, cells) in &rows {
        if label.starts_with("  ") && !out.contains("\nfailures") && has_failures {
            let _ = writeln!(out, "failures");
        }
        let _ = write!(out, "{label:<label_width$}");
        for (i, cell) in cells.iter().enumerate() {
            let padded = format!("{cell:<width$}", width = widths[i]);
            if color && label == "success rate" {
                if report.targets[i].met_min_success {
                    let _ = write!(out, "{}", padded.green());
                } else {
                    let _ = write!(out, "{}", padded.red());
                }
            } else {
                let _ = write!(out, "{padded}");
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    if has_failures {
        let _ = writeln!(out);
        let _ = writeln!(out, "examples");
        for t in &report.targets {
            for f in &t.failures {
                let case = f
                    .case_id
                    .as_ref()
                    .map(|c| format!(" [case {c}]"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {} {}{case}: {}",
                    t.target,
                    f.cause.label(),
                    f.example
                );
            }
        }
    }
    let case_failures: Vec<_> = report
        .targets
        .iter()
        .flat_map(|t| t.cases.iter().map(move |c| (t, c)))
        .filter(|(_, c)| c.successes < c.attempts)
        .collect();
    if !case_failures.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "failing cases");
        for (t, c) in case_failures {
            let causes = c
                .failures
                .iter()
                .map(|(cause, n)| format!("{} {n}", cause.label()))
                .collect::<Vec<_>>()
                .join(", ");
            let patterns = if c.missing_patterns.is_empty() {
                String::new()
            } else {
                format!(
                    "; pattern not found: {}",
                    c.missing_patterns
                        .iter()
                        .map(|p| format!("{p:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let _ = writeln!(
                out,
                "  {} {} ({}): {}/{} passed; {causes}{patterns}",
                t.target, c.id, c.name, c.successes, c.attempts
            );
        }
    }
    let _ = writeln!(out);
    let verdict = if report.passed {
        format!(
            "every target met the minimum success rate of {} %",
            s.min_success_percent
        )
    } else {
        format!(
            "{} of {} targets below the minimum success rate of {} %",
            report.targets.iter().filter(|t| !t.met_min_success).count(),
            report.targets.len(),
            s.min_success_percent
        )
    };
    let _ = writeln!(out, "{verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_report_without_kind_reads_as_a_server() {
        let old = r#"{"target":"ws://127.0.0.1:8003/ws/mcp","attempts":1,"successes":1,
            "success_percent":100.0,"met_min_success":true,"elapsed_s":0.1,
            "throughput_rps":10.0,"latency_ms":null,"failures":[],"cases":[]}"#;
        let report: TargetReport = serde_json::from_str(old).unwrap();
        assert_eq!(report.kind, TargetKind::Server);
        let direct = serde_json::to_value(TargetReport {
            kind: TargetKind::Direct,
            ..report
        })
        .unwrap();
        assert_eq!(direct["kind"], "direct");
    }
}
