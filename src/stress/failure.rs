//! Why one request failed ([`Failure`], with its cause) and the judge that
//! checks a completed run against its request.

use super::*;

/// A failed request: its cause and what happened.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) cause: Cause,
    pub(super) message: String,
    pub(super) pattern: Option<String>,
}

impl Failure {
    pub(super) fn new(cause: Cause, message: String) -> Failure {
        Failure {
            cause,
            message,
            pattern: None,
        }
    }

    pub(super) fn from_connect(e: ClientError, url: &str) -> Failure {
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

    pub(super) fn from_request(e: ClientError) -> Failure {
        let cause = match &e {
            ClientError::Timeout { .. } => Cause::Timeout,
            ClientError::Closed { .. } | ClientError::Io(_) => Cause::ConnectionLost,
            _ => Cause::ProtocolError,
        };
        Failure::new(cause, e.to_string())
    }

    /// Whether the session can still be used after this failure.
    pub(super) fn keeps_session(&self) -> bool {
        matches!(self.cause, Cause::WrongOutput | Cause::NonZeroExit)
    }
}

/// Judges a completed run against its request.
pub(super) fn check(request: &Request, outcome: &RunOutcome) -> Result<(), Failure> {
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
pub(super) fn tail(text: &str) -> Option<String> {
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
