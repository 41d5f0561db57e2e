//! The stress engine: runs a bounded load (clients × requests, or a duration)
//! against each target in turn, checks every result, and tallies attempts,
//! failures by cause and latencies into a [`report::TargetReport`].
//!
//! A [`Target`] is where requests go: a server reached with the library
//! [`Client`], or [`Target::Direct`], the same commands run in this process
//! with the server's process rules and no server ([`direct`]), as a baseline.
//! Knows the client, the process layer and the wire types; not the CLI, nor
//! the server's internals. Progress goes out as [`Event`]s; the engine
//! draws nothing.

pub mod cases;
pub mod direct;
pub mod html;
pub mod machine;
pub mod report;
pub mod svg;
pub mod timeline;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::{timeout, Instant};

use crate::client::{Client, ClientError, ConnectOptions, RunOutcome};
use crate::protocol::{CompletionStatus, ExecuteParams};
use cases::Case;
use report::{
    CaseReport, Cause, CdfPoint, FailureGroup, Latency, Settings, StressReport, TargetKind,
    TargetReport,
};
use timeline::TimeTally;

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A ccx (or cc_executor-compatible) server's WebSocket URL.
    Server { url: String, token: Option<String> },
    /// No server: each request is spawned in this process under these rules.
    Direct(direct::Rules),
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
    async fn open(&self) -> Result<Session, Failure> {
        match self {
            Target::Server { url, token } => {
                let options = ConnectOptions::new(url.clone()).token(token.clone());
                Client::connect(&options)
                    .await
                    .map(|client| Session::Server(Box::new(client)))
                    .map_err(|e| Failure::from_connect(e, url))
            }
            Target::Direct(rules) => Ok(Session::Direct(rules.clone())),
        }
    }
}

/// An open session on a target.
enum Session {
    Server(Box<Client>),
    /// Nothing to keep open: each run spawns its own process group.
    Direct(direct::Rules),
}

impl Session {
    /// Runs one command to completion within `deadline`.
    async fn run(
        &mut self,
        params: &ExecuteParams,
        deadline: Duration,
    ) -> Result<RunOutcome, Failure> {
        match self {
            Session::Server(client) => match timeout(deadline, client.run(&client.prefer_batches(params))).await {
                Err(_) => Err(Failure::new(
                    Cause::Timeout,
                    format!("no process.completed within {deadline:?} (the command's timeout plus the kill grace)"),
                )),
                Ok(Err(e)) => Err(Failure::from_request(e)),
                Ok(Ok(outcome)) => Ok(outcome),
            },
            Session::Direct(rules) => direct::run(rules, params, deadline).await,
        }
    }

    async fn close(self) {
        match self {
            Session::Server(client) => (*client).close().await,
            Session::Direct(_) => {}
        }
    }
}

/// `persistent`: one session per client, reused; `oneshot`: one per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Persistent,
    Oneshot,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Persistent => "persistent",
            Mode::Oneshot => "oneshot",
        }
    }
}

/// What each request runs.
#[derive(Debug, Clone)]
pub enum Workload {
    /// `echo NONCE`, a fresh nonce per request that must come back.
    Echo,
    /// One command; success is exit status 0.
    Command(String),
    /// Cases from a file, taken in turn (client `i` starts at case `i`).
    Cases(Vec<Case>),
}

/// The bounded load to apply to each target.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: u32,
    /// Requests per client; `None` only when `duration` is set.
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    pub mode: Mode,
    /// Per-request timeout when a case has none.
    pub timeout: Duration,
    pub workload: Workload,
}

/// Requests per client when neither a count nor a duration is given (with
/// cases: one pass over them).
pub const DEFAULT_REQUESTS: u64 = 50;

impl Plan {
    /// A plan from what was asked: `requests` per client, else for
    /// `duration`, else one pass over the cases, else [`DEFAULT_REQUESTS`].
    pub fn new(
        clients: u32,
        requests: Option<u64>,
        duration: Option<Duration>,
        mode: Mode,
        timeout: Duration,
        workload: Workload,
    ) -> Plan {
        let requests = match (requests, duration, &workload) {
            (Some(n), _, _) => Some(n),
            (None, Some(_), _) => None,
            (None, None, Workload::Cases(cases)) => Some(cases.len() as u64),
            (None, None, _) => Some(DEFAULT_REQUESTS),
        };
        Plan {
            clients,
            requests,
            duration,
            mode,
            timeout,
            workload,
        }
    }

    /// The plan as the report states it.
    pub fn settings(&self, workload_detail: Option<String>, min_success_percent: f64) -> Settings {
        Settings {
            clients: self.clients,
            requests_per_client: self.requests,
            duration_s: self.duration.map(|d| d.as_secs_f64()),
            mode: self.mode.as_str().into(),
            timeout_s: self.timeout.as_secs_f64(),
            workload: match self.workload {
                Workload::Echo => "echo",
                Workload::Command(_) => "command",
                Workload::Cases(_) => "cases",
            }
            .into(),
            workload_detail,
            min_success_percent,
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

/// The server's SIGTERM→SIGKILL grace and the network, on top of a command's timeout.
const DEADLINE_MARGIN: Duration = Duration::from_secs(7);

/// One request to make and how to judge it.
struct Request {
    params: ExecuteParams,
    patterns: Vec<String>,
    case: Option<usize>,
    expect_non_zero_exit: bool,
    timeout: Duration,
}

impl Plan {
    fn request(&self, client: u32, k: u64) -> Request {
        match &self.workload {
            Workload::Echo => {
                let nonce = format!("ccx-stress-{}", uuid::Uuid::new_v4().simple());
                self.simple(format!("echo {nonce}"), vec![nonce])
            }
            Workload::Command(command) => self.simple(command.clone(), Vec::new()),
            Workload::Cases(cases) => {
                let index = ((u64::from(client) + k) % cases.len().max(1) as u64) as usize;
                let case = &cases[index];
                let timeout = case.timeout.unwrap_or(self.timeout);
                Request {
                    params: ExecuteParams {
                        command: case.command.clone(),
                        timeout: Some(timeout.as_secs_f64()),
                        ..Default::default()
                    },
                    patterns: case.expected_patterns.clone(),
                    case: Some(index),
                    expect_non_zero_exit: case.expect_non_zero_exit,
                    timeout,
                }
            }
        }
    }

    fn simple(&self, command: String, patterns: Vec<String>) -> Request {
        Request {
            params: ExecuteParams {
                command,
                timeout: Some(self.timeout.as_secs_f64()),
                ..Default::default()
            },
            patterns,
            case: None,
            expect_non_zero_exit: false,
            timeout: self.timeout,
        }
    }

    fn cases(&self) -> &[Case] {
        match &self.workload {
            Workload::Cases(cases) => cases,
            _ => &[],
        }
    }
}

/// A failed request: its cause and what happened.
#[derive(Debug, Clone)]
struct Failure {
    cause: Cause,
    message: String,
    pattern: Option<String>,
}

impl Failure {
    fn new(cause: Cause, message: String) -> Failure {
        Failure {
            cause,
            message,
            pattern: None,
        }
    }

    fn from_connect(e: ClientError, url: &str) -> Failure {
        let cause = match &e {
            ClientError::Refused { .. } | ClientError::Io(_) | ClientError::InvalidUrl { .. } => {
                Cause::ConnectRefused
            }
            ClientError::Timeout { .. } => Cause::Timeout,
            _ => Cause::Handshake,
        };
        let message = match e {
            ClientError::Refused { tried, .. } if tried.is_empty() => {
                format!("connection refused by {url}")
            }
            e => e.to_string(),
        };
        Failure::new(cause, message)
    }

    fn from_request(e: ClientError) -> Failure {
        let cause = match &e {
            ClientError::Timeout { .. } => Cause::Timeout,
            ClientError::Closed { .. } | ClientError::Io(_) => Cause::ConnectionLost,
            _ => Cause::ProtocolError,
        };
        Failure::new(cause, e.to_string())
    }

    /// Whether the session can still be used after this failure.
    fn keeps_session(&self) -> bool {
        matches!(self.cause, Cause::WrongOutput | Cause::NonZeroExit)
    }
}

/// Judges a completed run against its request.
fn check(request: &Request, outcome: &RunOutcome) -> Result<(), Failure> {
    let completed = &outcome.completed;
    match completed.status {
        CompletionStatus::TimedOut => {
            return Err(Failure::new(
                Cause::Timeout,
                format!("the command ran past its timeout of {:?}", request.timeout),
            ))
        }
        CompletionStatus::Canceled => {
            return Err(Failure::new(
                Cause::NonZeroExit,
                format!(
                    "the server cancelled the command (exit_code {})",
                    completed.exit_code
                ),
            ))
        }
        CompletionStatus::Completed | CompletionStatus::Failed => {}
    }
    let failed = completed.exit_code != 0;
    if failed != request.expect_non_zero_exit {
        let message = if failed {
            format!(
                "exit_code {}{}",
                completed.exit_code,
                tail(&outcome.stderr)
                    .map(|t| format!(", stderr: {t}"))
                    .unwrap_or_default()
            )
        } else {
            "exit_code 0, but the case expects the command to fail".into()
        };
        return Err(Failure::new(Cause::NonZeroExit, message));
    }
    if !request.patterns.is_empty() {
        let output = format!("{}{}", outcome.stdout, outcome.stderr).to_lowercase();
        if let Some(missing) = request
            .patterns
            .iter()
            .find(|p| !output.contains(&p.to_lowercase()))
        {
            return Err(Failure {
                cause: Cause::WrongOutput,
                message: format!(
                    "pattern {missing:?} not found in the output ({} bytes{})",
                    outcome.stdout.len() + outcome.stderr.len(),
                    tail(&outcome.stdout)
                        .map(|t| format!(", stdout: {t}"))
                        .unwrap_or_default()
                ),
                pattern: Some(missing.clone()),
            });
        }
    }
    Ok(())
}

/// The last line or so of some output, for an example.
fn tail(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    let start = chars.len().saturating_sub(120);
    let mut s: String = chars[start..].iter().collect();
    if start > 0 {
        s.insert(0, '…');
    }
    Some(format!("{s:?}"))
}

#[derive(Default, Clone)]
struct CaseTally {
    attempts: u64,
    successes: u64,
    failures: BTreeMap<Cause, u64>,
    missing_patterns: BTreeSet<String>,
}

/// What one client saw; merged into the target's.
struct Tally {
    attempts: u64,
    successes: u64,
    latency_us: Histogram<u64>,
    failures: BTreeMap<Cause, (u64, Failure, Option<usize>)>,
    cases: Vec<CaseTally>,
    timeline: TimeTally,
}

/// Latencies up to an hour, 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

impl Tally {
    fn new(cases: usize) -> Tally {
        Tally {
            attempts: 0,
            successes: 0,
            // Constant bounds, valid for HdrHistogram: no input can make this fail.
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            failures: BTreeMap::new(),
            cases: vec![CaseTally::default(); cases],
            timeline: TimeTally::default(),
        }
    }

    /// One finished request; `at` is when it finished, from the target's start.
    fn record(&mut self, case: Option<usize>, result: Result<Duration, Failure>, at: Duration) {
        self.attempts += 1;
        self.timeline.record(at, result.as_ref().ok().copied());
        let case_tally = case.and_then(|i| self.cases.get_mut(i));
        match result {
            Ok(latency) => {
                self.successes += 1;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                self.latency_us.saturating_record(us);
                if let Some(c) = case_tally {
                    c.attempts += 1;
                    c.successes += 1;
                }
            }
            Err(failure) => {
                if let Some(c) = case_tally {
                    c.attempts += 1;
                    *c.failures.entry(failure.cause).or_default() += 1;
                    if let Some(p) = &failure.pattern {
                        if c.missing_patterns.len() < 32 {
                            c.missing_patterns.insert(p.clone());
                        }
                    }
                }
                self.failures
                    .entry(failure.cause)
                    .and_modify(|(n, _, _)| *n += 1)
                    .or_insert((1, failure, case));
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.successes += other.successes;
        let _ = self.latency_us.add(&other.latency_us);
        self.timeline.merge(other.timeline);
        for (cause, (n, failure, case)) in other.failures {
            self.failures
                .entry(cause)
                .and_modify(|(m, _, _)| *m += n)
                .or_insert((n, failure, case));
        }
        for (mine, theirs) in self.cases.iter_mut().zip(other.cases) {
            mine.attempts += theirs.attempts;
            mine.successes += theirs.successes;
            for (cause, n) in theirs.failures {
                *mine.failures.entry(cause).or_default() += n;
            }
            for p in theirs.missing_patterns {
                if mine.missing_patterns.len() < 32 {
                    mine.missing_patterns.insert(p);
                }
            }
        }
    }
}

/// What the engine says while it runs a target, for whoever shows progress
/// (the CLI draws a bar from these; the engine draws nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// One request finished, well or not.
    RequestDone { ok: bool },
}

/// Receives the engine's [`Event`]s. Called from every client task as a
/// request finishes, so it must return at once (no I/O that can block).
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: Event) {}
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
    let mut session: Option<Session> = None;
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
        progress.event(Event::RequestDone { ok });
    }
    if let Some(s) = session {
        s.close().await;
    }
    tally
}

fn report(
    target: &Target,
    plan: &Plan,
    total: Tally,
    elapsed: Duration,
    min_success_percent: f64,
) -> TargetReport {
    let success_percent = if total.attempts == 0 {
        0.0
    } else {
        total.successes as f64 * 100.0 / total.attempts as f64
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let h = &total.latency_us;
    let latency_ms = (total.successes > 0).then(|| Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    });
    let latency_cdf = if total.successes > 0 {
        cdf(h)
    } else {
        Vec::new()
    };
    let cases = plan.cases();
    let mut failures: Vec<FailureGroup> = total
        .failures
        .into_iter()
        .map(|(cause, (count, failure, case))| FailureGroup {
            cause,
            count,
            example: failure.message,
            case_id: case.and_then(|i| cases.get(i)).map(|c| c.id.clone()),
            pattern: failure.pattern,
        })
        .collect();
    failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(&b.cause)));
    let elapsed_s = elapsed.as_secs_f64();
    TargetReport {
        target: target.label(),
        kind: target.kind(),
        attempts: total.attempts,
        successes: total.successes,
        success_percent,
        met_min_success: total.attempts > 0 && success_percent + 1e-9 >= min_success_percent,
        elapsed_s,
        throughput_rps: if elapsed_s > 0.0 {
            total.successes as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ms,
        failures,
        cases: cases
            .iter()
            .zip(total.cases)
            .map(|(case, t)| CaseReport {
                id: case.id.clone(),
                name: case.name.clone(),
                category: case.category.clone(),
                attempts: t.attempts,
                successes: t.successes,
                failures: t.failures.into_iter().collect(),
                missing_patterns: t.missing_patterns.into_iter().collect(),
            })
            .collect(),
        latency_cdf,
        timeline: Some(total.timeline.finish()),
    }
}

/// At most this many points on a cumulative latency curve.
const CDF_POINTS: usize = 200;

/// The cumulative distribution of `h` (µs) as points in ms, from the first
/// value to the max, denser towards the tail where the interest is.
fn cdf(h: &Histogram<u64>) -> Vec<CdfPoint> {
    let mut points: Vec<CdfPoint> = Vec::new();
    for v in h.iter_quantiles(4) {
        let point = CdfPoint {
            ms: h.highest_equivalent(v.value_iterated_to()).min(h.max()) as f64 / 1000.0,
            fraction: v.quantile(),
        };
        match points.last_mut() {
            Some(last) if last.ms == point.ms => last.fraction = point.fraction,
            _ => points.push(point),
        }
    }
    if points.len() > CDF_POINTS {
        let step = points.len().div_ceil(CDF_POINTS);
        let last = points[points.len() - 1];
        points = points.into_iter().step_by(step).collect();
        if points.last() != Some(&last) {
            points.push(last);
        }
    }
    points
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
