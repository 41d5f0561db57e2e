//! The stress report: plain serde data (the `--json` contract, versioned by
//! [`SCHEMA_VERSION`]). Computed once by the engine, drawn by `render`
//! (human table) and `html`; no I/O.

use serde::{Deserialize, Serialize};

pub use super::machine::{Machine, RunInfo};
pub use super::timeline::{TimeBin, Timeline};

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
    /// ccx version, date and machine of the run; absent in reports of ccx
    /// versions that did not write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
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
    /// The latency distribution of the successes as points of a cumulative
    /// curve (HdrHistogram, denser towards the tail), for a picture; empty
    /// when none succeeded, and in reports of older ccx versions.
    #[serde(default)]
    pub latency_cdf: Vec<CdfPoint>,
    /// Latency and failures over time, binned; absent in reports of older
    /// ccx versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
}

/// A point of the cumulative latency distribution: `fraction` of the
/// successful requests took at most `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CdfPoint {
    pub ms: f64,
    pub fraction: f64,
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

impl FailureGroup {
    /// ` [case ID]` when the example came from a case, else empty.
    pub fn case_suffix(&self) -> String {
        self.case_id
            .as_ref()
            .map(|c| format!(" [case {c}]"))
            .unwrap_or_default()
    }
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
