//! What a stress run does: the [`Plan`] (clients, requests or duration,
//! mode, timeout, workload) and the requests it hands each client.

use super::*;

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

/// The server's SIGTERM→SIGKILL grace and the network, on top of a command's timeout.
pub(super) const DEADLINE_MARGIN: Duration = Duration::from_secs(7);

/// One request to make and how to judge it.
pub(super) struct Request {
    pub(super) params: ExecuteParams,
    pub(super) patterns: Vec<String>,
    pub(super) case: Option<usize>,
    pub(super) expect_non_zero_exit: bool,
    pub(super) timeout: Duration,
}

impl Plan {
    pub(super) fn request(&self, client: u32, k: u64) -> Request {
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

    pub(super) fn simple(&self, command: String, patterns: Vec<String>) -> Request {
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

    pub(super) fn cases(&self) -> &[Case] {
        match &self.workload {
            Workload::Cases(cases) => cases,
            _ => &[],
        }
    }
}
