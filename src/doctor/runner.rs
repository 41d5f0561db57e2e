//! The one step loop of every doctor run (WebSocket and `--mcp`): each step
//! in order under its deadline, the first failure skips the rest with the
//! reason, a signal from the user ends the step that runs and skips the
//! rest, and the exit code follows from the verdicts.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use super::steps::Outcome;
use super::{human_duration, millis, Status, StepId, StepResult};
use crate::exit::Exit;
use crate::process::signal_name;

/// A set of checks the runner drives: what each step may take, and the step
/// itself (which may leave state behind for the next).
pub(crate) trait Steps {
    /// How long step `id` may run before the runner gives up on it.
    fn deadline(&self, id: StepId) -> Duration;

    /// Runs step `id`.
    async fn run(&mut self, id: StepId) -> Outcome;
}

/// What a run of the steps gave.
pub(crate) struct Ran {
    pub steps: Vec<StepResult>,
    /// The number of the signal that interrupted the run, if one did.
    pub interruption: Option<i32>,
}

impl Ran {
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.status.is_failure())
    }

    /// Success when everything passed (warnings too, unless `strict`),
    /// Failure on a failure, Interrupted(N) when signal N stopped the run.
    pub fn exit(&self, strict: bool) -> Exit {
        let warned = self.steps.iter().any(|s| s.status == Status::Warn);
        match self.interruption {
            Some(n) => Exit::Interrupted(u8::try_from(n).unwrap_or(0)),
            None if self.failed() || (strict && warned) => Exit::Failure,
            None => Exit::Success,
        }
    }

    /// The report's `error` line for an interrupted run.
    pub fn error(&self) -> Option<String> {
        self.interruption
            .map(|n| format!("interrupted by {}", signal_name(n)))
    }
}

/// Runs `ids` in order on `steps` until the first failure or until
/// `interrupted` resolves (with a signal's number).
pub(crate) async fn run<S: Steps>(
    ids: &[StepId],
    steps: &mut S,
    mut interrupted: Pin<&mut impl Future<Output = i32>>,
) -> Ran {
    let mut ran = Ran {
        steps: Vec::new(),
        interruption: None,
    };
    let mut stop_reason: Option<String> = None;
    for &id in ids {
        if let Some(reason) = &stop_reason {
            ran.steps.push(skipped(id, reason.clone()));
            continue;
        }
        let step_started = Instant::now();
        let deadline = steps.deadline(id);
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(deadline, steps.run(id)) => outcome,
            number = &mut interrupted => {
                ran.interruption = Some(number);
                let signal = signal_name(number);
                stop_reason = Some(format!("the doctor was interrupted by {signal}"));
                let mut result = skipped(id, format!("interrupted by {signal} while this step ran"));
                result.status = Status::Fail;
                result.duration_ms = millis(step_started.elapsed());
                ran.steps.push(result);
                continue;
            }
        };
        let mut result = match outcome {
            Ok(outcome) => outcome.into_result(id),
            Err(_) => Outcome::new(
                Status::Timeout,
                format!(
                    "the step did not finish within its deadline of {}",
                    human_duration(deadline)
                ),
            )
            .into_result(id),
        };
        result.duration_ms = millis(step_started.elapsed());
        if result.status.is_failure() {
            stop_reason = Some(format!("skipped because `{}` failed", id.as_str()));
        }
        ran.steps.push(result);
    }
    ran
}

/// A step that did not run, and why.
pub(crate) fn skipped(id: StepId, reason: String) -> StepResult {
    StepResult {
        id,
        title: id.title().into(),
        status: Status::Skip,
        summary: reason,
        detail: Vec::new(),
        fix: None,
        duration_ms: 0,
        findings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps with scripted verdicts; `Timeout` here means "hang".
    struct Script(Vec<(StepId, Status)>, Vec<StepId>, Duration);

    impl Steps for Script {
        fn deadline(&self, _: StepId) -> Duration {
            self.2
        }

        async fn run(&mut self, id: StepId) -> Outcome {
            self.1.push(id);
            let status = self.0.iter().find(|(i, _)| *i == id).map(|(_, s)| *s);
            match status {
                Some(Status::Timeout) => std::future::pending().await,
                Some(s) => Outcome::new(s, "scripted"),
                None => Outcome::pass("ok"),
            }
        }
    }

    const SHORT: Duration = Duration::from_millis(200);
    const IDS: [StepId; 3] = [StepId::Config, StepId::Binaries, StepId::Port];

    #[tokio::test]
    async fn the_first_failure_skips_the_rest() {
        let mut s = Script(vec![(StepId::Binaries, Status::Fail)], vec![], SHORT);
        let never = std::pin::pin!(std::future::pending::<i32>());
        let ran = run(&IDS, &mut s, never).await;
        assert_eq!(s.1, [StepId::Config, StepId::Binaries]);
        let statuses: Vec<_> = ran.steps.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Pass, Status::Fail, Status::Skip]);
        assert_eq!(ran.steps[2].summary, "skipped because `binaries` failed");
        assert_eq!(ran.exit(false), Exit::Failure);
    }

    #[tokio::test]
    async fn a_hung_step_times_out_and_warnings_count_only_when_strict() {
        let mut s = Script(vec![(StepId::Port, Status::Timeout)], vec![], SHORT);
        let never = std::pin::pin!(std::future::pending::<i32>());
        let ran = run(&IDS, &mut s, never).await;
        assert_eq!(ran.steps[2].status, Status::Timeout);
        assert!(ran.steps[2].summary.contains("deadline of 200ms"));

        let mut s = Script(vec![(StepId::Config, Status::Warn)], vec![], SHORT);
        let never = std::pin::pin!(std::future::pending::<i32>());
        let ran = run(&IDS, &mut s, never).await;
        assert_eq!(
            (ran.exit(false), ran.exit(true)),
            (Exit::Success, Exit::Failure)
        );
        assert_eq!(ran.error(), None);
    }

    #[tokio::test]
    async fn an_interruption_fails_the_running_step_and_exits_128_plus_n() {
        let mut s = Script(
            vec![(StepId::Binaries, Status::Timeout)],
            vec![],
            Duration::from_secs(600),
        );
        let signal = std::pin::pin!(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            2
        });
        let ran = run(&IDS, &mut s, signal).await;
        assert_eq!(ran.interruption, Some(2));
        assert_eq!(ran.steps[1].status, Status::Fail);
        assert_eq!(
            ran.steps[1].summary,
            "interrupted by SIGINT while this step ran"
        );
        assert_eq!(ran.steps[2].summary, "the doctor was interrupted by SIGINT");
        assert_eq!(ran.exit(false).code(), 130);
        assert_eq!(ran.error().as_deref(), Some("interrupted by SIGINT"));
    }
}
