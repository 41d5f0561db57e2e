//! The stress engine: runs a bounded load (clients × requests, or a duration)
//! against each target in turn, checks every result, and tallies attempts,
//! failures by cause and latencies into a [`report::TargetReport`].
//!
//! A [`Target`] is where requests go: a server reached with the library
//! [`Client`], or [`Target::Direct`], the same commands run in this process
//! with the server's process rules and no server ([`direct`]), as a baseline.
//! Knows the client, the process layer and the wire types; not the CLI, nor
//! the server's internals. Progress goes out as [`ProgressEvent`]s; the engine
//! draws nothing.

pub mod cases;
pub mod direct;
mod failure;
pub mod html;
pub mod machine;
mod plan;
pub mod render;
pub mod report;
pub mod svg;
mod tally;
pub mod timeline;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::{timeout, Instant};

use crate::client::{Client, ClientError, ConnectOptions, RunOutcome};
use crate::process::Executor;
use crate::protocol::{CompletionStatus, ExecuteParams};
use cases::Case;
use report::{
    CaseReport, Cause, CdfPoint, FailureGroup, Latency, Settings, StressReport, TargetKind,
    TargetReport,
};
use timeline::TimeTally;

use failure::{check, Failure};
pub use plan::{Mode, Plan, Workload, DEFAULT_REQUESTS};
use plan::{Request, DEADLINE_MARGIN};
#[cfg(test)]
use tally::CDF_POINTS;
use tally::{report, Tally};

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A ccx (or cc_executor-compatible) server's WebSocket URL.
    Server { url: String, token: Option<String> },
    /// No server: each request is admitted and spawned in this process by
    /// this executor.
    Direct(Executor),
}

impl Target {
    pub fn label(&self) -> String {
        match self {
            Target::Server { url, .. } => url.clone(),
            Target::Direct(_) => direct::LABEL.into(),
        }
    }

    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Server { .. } => TargetKind::Server,
            Target::Direct(_) => TargetKind::Direct,
        }
    }

    /// A session able to run commands one after another.
    async fn open(&self) -> Result<TargetSession, Failure> {
        match self {
            Target::Server { url, token } => {
                let options = ConnectOptions::new(url.clone()).token(token.clone());
                Client::connect(&options)
                    .await
                    .map(|client| TargetSession::Server(Box::new(client)))
                    .map_err(|e| Failure::from_connect(e, url))
            }
            Target::Direct(executor) => Ok(TargetSession::Direct(executor.clone())),
        }
    }
}

/// An open session on a target.
enum TargetSession {
    Server(Box<Client>),
    /// Nothing to keep open: each run spawns its own process group.
    Direct(Executor),
}

impl TargetSession {
    /// Runs one command to completion within `deadline`.
    async fn run(
        &mut self,
        params: &ExecuteParams,
        deadline: Duration,
    ) -> Result<RunOutcome, Failure> {
        match self {
            TargetSession::Server(client) => match timeout(deadline, client.run(&client.prefer_batches(params))).await {
                Err(_) => Err(Failure::new(
                    Cause::Timeout,
                    format!("no process.completed within {deadline:?} (the command's timeout plus the kill grace)"),
                )),
                Ok(Err(e)) => Err(Failure::from_request(e)),
                Ok(Ok(outcome)) => Ok(outcome),
            },
            TargetSession::Direct(executor) => direct::run(executor, params, deadline).await,
        }
    }

    async fn close(self) {
        match self {
            TargetSession::Server(client) => (*client).close().await,
            TargetSession::Direct(_) => {}
        }
    }
}

/// Runs the plan against each target in turn and reports them side by
/// side; `progress_for` gives each target's progress receiver.
pub async fn run_all(
    targets: &[Target],
    plan: &Plan,
    settings: Settings,
    mut progress_for: impl FnMut(&Target) -> Arc<dyn Progress>,
) -> StressReport {
    let run = machine::RunInfo::now();
    let mut reports = Vec::new();
    for target in targets {
        let progress = progress_for(target);
        reports.push(run_target(target, plan, settings.min_success_percent, progress).await);
    }
    StressReport {
        schema_version: report::SCHEMA_VERSION,
        passed: reports.iter().all(|t| t.met_min_success),
        settings,
        targets: reports,
        run: Some(run),
    }
}

/// What the engine says while it runs a target, for whoever shows progress
/// (the CLI draws a bar from these; the engine draws nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressEvent {
    /// One request finished, well or not.
    RequestDone { ok: bool },
}

/// Receives the engine's [`ProgressEvent`]s. Called from every client task as a
/// request finishes, so it must return at once (no I/O that can block).
pub trait Progress: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: ProgressEvent) {}
}

/// Runs the plan against one target and reports, telling `progress` of
/// each request as it finishes.
pub async fn run_target(
    target: &Target,
    plan: &Plan,
    min_success_percent: f64,
    progress: Arc<dyn Progress>,
) -> TargetReport {
    let started = Instant::now();
    let stop_at = plan.duration.map(|d| started + d);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..plan.clients {
        let (target, plan, progress) = (target.clone(), plan.clone(), progress.clone());
        tasks.spawn(async move {
            client_loop(&target, &plan, client, started, stop_at, &*progress).await
        });
    }
    let mut total = Tally::new(plan.cases().len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(e) => total.record(
                None,
                Err(Failure::new(
                    Cause::ProtocolError,
                    format!("a client task failed: {e}"),
                )),
                started.elapsed(),
            ),
        }
    }
    let elapsed = started.elapsed();
    report(target, plan, total, elapsed, min_success_percent)
}

async fn client_loop(
    target: &Target,
    plan: &Plan,
    client: u32,
    started: Instant,
    stop_at: Option<Instant>,
    progress: &dyn Progress,
) -> Tally {
    let mut tally = Tally::new(plan.cases().len());
    let mut session: Option<TargetSession> = None;
    let mut k: u64 = 0;
    loop {
        if plan.requests.is_some_and(|n| k >= n) || stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let request = plan.request(client, k);
        k += 1;
        let start = Instant::now();
        let mut open = match session.take() {
            Some(s) => Ok(s),
            None => target.open().await,
        };
        let result = match &mut open {
            Err(failure) => Err(failure.clone()),
            Ok(s) => match s
                .run(&request.params, request.timeout + DEADLINE_MARGIN)
                .await
            {
                Ok(outcome) => check(&request, &outcome).map(|()| start.elapsed()),
                Err(failure) => Err(failure),
            },
        };
        if let Ok(s) = open {
            let keep = plan.mode == Mode::Persistent
                && result.as_ref().err().is_none_or(Failure::keeps_session);
            if keep {
                session = Some(s);
            } else {
                s.close().await;
            }
        }
        let ok = result.is_ok();
        tally.record(request.case, result, started.elapsed());
        progress.event(ProgressEvent::RequestDone { ok });
    }
    if let Some(s) = session {
        s.close().await;
    }
    tally
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_three_targets_of_100k_requests_each_stays_under_1_mb() {
        let plan = Plan::new(
            8,
            Some(12_500),
            None,
            Mode::Persistent,
            Duration::from_secs(30),
            Workload::Echo,
        );
        let targets: Vec<TargetReport> = (0..3u64)
            .map(|t| {
                let mut tally = Tally::new(0);
                for i in 0..100_000u64 {
                    // A varied load over ten minutes, with some failures.
                    let at = Duration::from_millis(i * 6);
                    let result = if i % 97 == 0 {
                        Err(Failure::new(
                            Cause::Timeout,
                            format!("request {i} timed out"),
                        ))
                    } else {
                        Ok(Duration::from_micros(300 + (i * 7919 + t) % 90_000))
                    };
                    tally.record(None, result, at);
                }
                let target = Target::Server {
                    url: format!("ws://127.0.0.1:{}/ws/mcp", 8003 + t),
                    token: None,
                };
                report(&target, &plan, tally, Duration::from_secs(600), 100.0)
            })
            .collect();
        for t in &targets {
            assert_eq!(t.attempts, 100_000);
            assert!(t.latency_cdf.len() <= CDF_POINTS, "{}", t.latency_cdf.len());
            let timeline = t.timeline.as_ref().expect("a timeline");
            assert!(timeline.bins.len() <= timeline::MAX_BINS);
            let failures: u64 = timeline.bins.iter().map(|b| b.failures).sum();
            assert_eq!(failures, t.attempts - t.successes);
        }
        let report = StressReport {
            schema_version: report::SCHEMA_VERSION,
            settings: plan.settings(None, 100.0),
            passed: false,
            targets,
            run: Some(machine::RunInfo::now()),
        };
        let page = html::render(&report);
        assert!(page.len() < 1_000_000, "{} bytes", page.len());
        let json = serde_json::to_string(&report).expect("JSON");
        assert!(json.len() < 1_000_000, "{} bytes", json.len());
    }
}
