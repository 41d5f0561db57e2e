//! `ccx doctor`: runs the ordered checks (config → binaries → port → spawn →
//! handshake → echo) into plain data, a [`Report`], that the renderers
//! (`render`) turn into human text or JSON. The first failing step stops the
//! run; the rest are reported as skipped, with the reason.
//!
//! The doctor tests the server over the wire, as a user's client would
//! (`crate::client`); it never reaches into the server's internals. It
//! changes nothing on the host: a server it starts is stopped with its whole
//! process group before the report is returned, also when interrupted.

pub mod compare;
pub mod detached;
pub mod differences;
pub mod environment_differences;
pub mod fingerprint;
pub mod mcp;
pub mod probe;
pub mod python;
pub mod render;
pub mod render_compare;
pub mod render_github;
pub mod render_junit;
mod runner;
mod server;
pub mod shell;
pub mod signatures;
pub(crate) mod steps;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::identity::ServerIdentity;
use crate::client::{Client, ClientError};
use crate::config::{Config, Env, Overrides};
pub use crate::doctor::signatures::{Finding, Severity};
use crate::protocol::{ErrorCode, ServerInfo};
use server::ServerProcess;

/// Version of the JSON report's shape; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The checks, in the order they run. Ids are stable (scripts match on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepId {
    Config,
    Binaries,
    Port,
    Spawn,
    Handshake,
    Echo,
    /// `--mcp`: the MCP `initialize` handshake.
    Initialize,
    /// `--mcp`: `tools/list`.
    Tools,
    /// `--mcp`: a `tools/call` of `execute`.
    Call,
}

impl StepId {
    pub const ALL: [StepId; 6] = [
        StepId::Config,
        StepId::Binaries,
        StepId::Port,
        StepId::Spawn,
        StepId::Handshake,
        StepId::Echo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepId::Config => "config",
            StepId::Binaries => "binaries",
            StepId::Port => "port",
            StepId::Spawn => "spawn",
            StepId::Handshake => "handshake",
            StepId::Echo => "echo",
            StepId::Initialize => "initialize",
            StepId::Tools => "tools",
            StepId::Call => "call",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            StepId::Config => "configuration",
            StepId::Binaries => "binaries on PATH",
            StepId::Port => "port is free",
            StepId::Spawn => "server starts",
            StepId::Handshake => "WebSocket handshake",
            StepId::Echo => "command round trip",
            StepId::Initialize => "MCP initialize",
            StepId::Tools => "MCP tools/list",
            StepId::Call => "MCP tools/call round trip",
        }
    }
}

/// The verdict of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Timeout,
    Skip,
}

impl Status {
    /// A status that stops the run.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Fail | Status::Timeout)
    }
}

/// What one step found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub id: StepId,
    pub title: String,
    pub status: Status,
    /// One line saying what was found.
    pub summary: String,
    /// Supporting lines (resolved paths, stderr tail, …); shown under a
    /// failing or warning step, and under every step with `-v`.
    pub detail: Vec<String>,
    /// What to do about a failure or a warning.
    pub fix: Option<String>,
    pub duration_ms: u64,
    /// Known failure signatures recognised in what the step saw (the
    /// `spawn` step: the server's output and exit), causes first. Absent
    /// from the JSON when empty; added in schema version 1 without a bump
    /// (a new optional field breaks no reader).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// The whole run: the JSON document of `ccx doctor --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub ccx_version: String,
    /// The WebSocket URL checked (the spawned server's, or `--url`).
    pub target: String,
    /// True when the exit code is 0.
    pub ok: bool,
    pub exit_code: u8,
    pub steps: Vec<StepResult>,
    /// Wall time of the whole run.
    pub duration_ms: u64,
    /// Set when the doctor itself could not run (exit 3) or was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the server said it is (`/health`, `connected`), once the
    /// handshake reached it. Added in schema version 1 without a bump (a
    /// new optional field breaks no reader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerIdentity>,
    /// Processes the server command left behind (a launcher that detached
    /// its server) that the doctor ended, as `pid N (argv)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == Status::Pass)
            .count()
    }

    pub fn first_failure(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.status.is_failure())
    }

    /// A report for a doctor that could not run at all (exit 3).
    pub fn internal_error(target: String, error: String) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            ccx_version: crate::VERSION.into(),
            target,
            ok: false,
            exit_code: 3,
            steps: Vec::new(),
            duration_ms: 0,
            error: Some(error),
            server: None,
            ended: Vec::new(),
        }
    }
}

/// Everything the doctor needs, decided by the CLI (the doctor never reads
/// the process environment itself).
#[derive(Debug, Clone)]
pub struct Options {
    pub env: Env,
    pub overrides: Overrides,
    /// Check this running server instead of starting one.
    pub url: Option<String>,
    /// The user's own server command (run by `/bin/sh -c`).
    pub server_cmd: Option<String>,
    /// Programs that must be on the server's PATH.
    pub require: Vec<String>,
    /// The `ccx` binary started by the spawn step.
    pub ccx_exe: Option<PathBuf>,
    /// How long the spawned server may take to become ready.
    pub spawn_timeout: Duration,
    /// Deadline of each network exchange (handshake, echo).
    pub timeout: Duration,
    /// Warnings count as failures.
    pub strict: bool,
    /// The command the `echo` step runs instead of `echo NONCE` (it must exit 0).
    pub probe_cmd: Option<String>,
}

/// State carried from step to step.
struct Ctx<'a> {
    opts: &'a Options,
    config: Option<Config>,
    /// The server the spawn step started; stopped at the end of the run.
    server: Option<ServerProcess>,
    /// The WebSocket URL handshake and echo talk to.
    target: Option<String>,
    token: Option<String>,
    client: Option<Client>,
    /// What the server said it is (the handshake step asks).
    server_identity: Option<ServerIdentity>,
}

impl Ctx<'_> {
    /// The token the client sends: the validated one, or (with `--url`,
    /// where the configuration is not checked) CCX_TOKEN as given.
    fn token(&self) -> Option<String> {
        self.token.clone()
    }
}

/// How much longer than its own inner deadlines a step may run before the
/// runner gives up on it.
const STEP_SLACK: Duration = Duration::from_secs(2);

impl runner::Steps for Ctx<'_> {
    fn deadline(&self, id: StepId) -> Duration {
        step_deadline(id, self.opts)
    }

    async fn run(&mut self, id: StepId) -> steps::Outcome {
        steps::run(id, self).await
    }
}

fn step_deadline(id: StepId, opts: &Options) -> Duration {
    match id {
        StepId::Config | StepId::Binaries => Duration::from_secs(5),
        StepId::Port => Duration::from_secs(5),
        StepId::Spawn => opts.spawn_timeout + STEP_SLACK,
        StepId::Handshake => opts.timeout + STEP_SLACK,
        StepId::Echo => opts.timeout * 2 + STEP_SLACK,
        StepId::Initialize | StepId::Tools | StepId::Call => opts.timeout + STEP_SLACK,
    }
}

/// Runs every step in order until the first failure, stops what it
/// started, and returns the report. `interrupted` resolves (with the
/// signal's number) when the user asks the doctor to stop; the exit code is
/// then 128 + that number, as a shell reports it.
pub async fn run(opts: &Options, interrupted: impl std::future::Future<Output = i32>) -> Report {
    run_steps(opts, interrupted, None).await.0
}

/// What `server.info` and the fingerprint probe gave (or why they gave
/// nothing).
pub(crate) struct Fingerprint {
    pub info: Result<ServerInfo, String>,
    pub environment: Result<fingerprint::Environment, String>,
}

/// [`run`], and with `fingerprint` (what to check) also the server's
/// fingerprints: `server.info` and the probe run through `execute`, on the
/// session the checks opened, once they all passed.
pub(crate) async fn run_steps(
    opts: &Options,
    interrupted: impl std::future::Future<Output = i32>,
    fingerprint: Option<&probe::Request>,
) -> (Report, Option<Fingerprint>) {
    let started = Instant::now();
    let mut ctx = Ctx {
        opts,
        config: None,
        server: None,
        target: opts.url.clone(),
        token: None,
        client: None,
        server_identity: None,
    };
    tokio::pin!(interrupted);
    let ran = runner::run(&StepId::ALL, &mut ctx, interrupted).await;
    let mut fetched = None;
    if let Some(mut client) = ctx.client.take() {
        if let (Some(request), false, None) = (fingerprint, ran.failed(), ran.interruption) {
            let info = fetch_info(&mut client, &request.programs, opts.timeout).await;
            let environment = probe::on_server(&mut client, request, opts.timeout).await;
            fetched = Some(Fingerprint { info, environment });
        }
        client.close().await;
    }
    let ended = match ctx.server.take() {
        Some(server) => server.stop().await,
        None => Vec::new(),
    };

    let exit_code = ran.exit(opts.strict).code();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        ccx_version: crate::VERSION.into(),
        target: ctx.target.unwrap_or_default(),
        ok: exit_code == 0,
        exit_code,
        error: ran.error(),
        steps: ran.steps,
        duration_ms: millis(started.elapsed()),
        server: ctx.server_identity.take(),
        ended,
    };
    (report, fetched)
}

/// `server.info` on an open session, with the doctor's network deadline.
async fn fetch_info(
    client: &mut Client,
    require: &[String],
    deadline: Duration,
) -> Result<ServerInfo, String> {
    match tokio::time::timeout(deadline, client.info(require)).await {
        Err(_) => Err(format!(
            "server.info did not answer within {}",
            human_duration(deadline)
        )),
        Ok(Err(ClientError::Rpc(e))) if e.code == ErrorCode::MethodNotFound.code() => Err(
            "the server does not know server.info (an older ccx, or another server such as a Python cc_executor): it has no ccx settings to compare".into(),
        ),
        Ok(Err(e)) => Err(format!("server.info failed: {e}")),
        Ok(Ok(info)) => Ok(info),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `250ms`, `1.5s`, `10s`: durations as a user writes them.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_user_writes_them() {
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(10)), "10s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }
}
