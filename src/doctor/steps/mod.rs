//! The six checks, one file each. A step reads the context left by the
//! steps before it, may add to it (the validated config, the spawned
//! server, the connected client), and returns an [`Outcome`]: plain data,
//! never printed here.

mod address;
mod binaries;
mod config;
pub(crate) mod echo;
mod handshake;
mod left_behind;
mod port;
mod spawn;

use super::{Ctx, Status, StepId, StepResult};
use crate::doctor::signatures::Finding;

/// What a step found; the runner adds its id, title and duration.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub summary: String,
    pub detail: Vec<String>,
    pub fix: Option<String>,
    pub findings: Vec<Finding>,
}

impl Outcome {
    pub fn new(status: Status, summary: impl Into<String>) -> Self {
        Outcome {
            status,
            summary: summary.into(),
            detail: Vec::new(),
            fix: None,
            findings: Vec::new(),
        }
    }

    pub fn pass(summary: impl Into<String>) -> Self {
        Outcome::new(Status::Pass, summary)
    }

    pub fn warn(summary: impl Into<String>) -> Self {
        Outcome::new(Status::Warn, summary)
    }

    pub fn fail(summary: impl Into<String>) -> Self {
        Outcome::new(Status::Fail, summary)
    }

    pub fn skip(summary: impl Into<String>) -> Self {
        Outcome::new(Status::Skip, summary)
    }

    pub fn detail(mut self, lines: impl IntoIterator<Item = String>) -> Self {
        self.detail.extend(lines);
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub fn findings(mut self, findings: Vec<Finding>) -> Self {
        self.findings = findings;
        self
    }

    pub fn into_result(self, id: StepId) -> StepResult {
        StepResult {
            id,
            title: id.title().into(),
            status: self.status,
            summary: self.summary,
            detail: self.detail,
            fix: self.fix,
            duration_ms: 0,
            findings: self.findings,
        }
    }
}

/// Runs step `id`.
pub(super) async fn run(id: StepId, ctx: &mut Ctx<'_>) -> Outcome {
    match id {
        StepId::Config => config::run(ctx),
        StepId::Binaries if ctx.opts.url.is_some() && !ctx.opts.require.is_empty() => {
            binaries::remote(ctx).await
        }
        StepId::Binaries => binaries::run(ctx),
        StepId::Port => port::run(ctx).await,
        StepId::Spawn => spawn::run(ctx).await,
        StepId::Handshake => handshake::run(ctx).await,
        StepId::Echo => echo::run(ctx).await,
        StepId::Initialize | StepId::Tools | StepId::Call => {
            Outcome::skip("an MCP step: it runs with `ccx doctor --mcp`")
        }
    }
}

/// The reason local steps are skipped when `--url` names a running server.
pub(super) fn skipped_for_url(why: &str) -> Outcome {
    Outcome::skip(format!("not checked with --url: {why}"))
}
