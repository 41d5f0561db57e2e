//! `ccx exec`: run one command on a server the way a local shell would.
//! Remote stdout and stderr are streamed to the local ones as chunks
//! arrive, the result is the remote exit status (128+N when killed by
//! signal N), Ctrl-C cancels the remote process group, and every failure to
//! get that result has its own [`Exit`] (unreachable, refused, connection
//! lost, timed out, local stdout closed).
//!
//! Owns the mapping from wire events to local streams and exit codes; the
//! WebSocket work (and the keep-alive) is the [`Client`]'s, the flags are
//! the CLI's.

use std::io::{ErrorKind, Write};
use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::client::{continues, Client, ClientError, ConnectOptions, Event};
use crate::exit::Exit;
use crate::protocol::{
    method, Completed, CompletionStatus, ControlType, ExecuteParams, Output, StreamKind,
};

/// Why `ccx exec` could not give the command's own result.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("cannot reach the server at {url}: {source}{}", unreachable_hint(.source))]
    Unreachable { url: String, source: ClientError },
    #[error("{0}")]
    BadUrl(ClientError),
    #[error("the server at {url} refused: {source}{}", hint(.source))]
    Rejected { url: String, source: ClientError },
    #[error("{}", lost_message(.url, .source))]
    Lost { url: String, source: ClientError },
    #[error("cannot read what the server at {url} sent (the connection is open): {source}")]
    Unreadable { url: String, source: ClientError },
    #[error("no result from {url} within {after:?} (the command's timeout plus a margin)")]
    NoResult { url: String, after: Duration },
    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(std::io::Error),
}

impl ExecError {
    pub fn exit(&self) -> Exit {
        match self {
            ExecError::Unreachable { .. } => Exit::Unreachable,
            ExecError::BadUrl(_) => Exit::Usage,
            ExecError::Rejected { .. } => Exit::Rejected,
            ExecError::Lost { .. } | ExecError::NoResult { .. } => Exit::ConnectionLost,
            ExecError::Unreadable { .. } | ExecError::Signal(_) => Exit::Internal,
        }
    }
}

/// Says what happened to the connection, as the client saw it.
fn lost_message(url: &str, source: &ClientError) -> String {
    match source {
        ClientError::Closed { .. } => {
            format!("{source} (at {url}) before the command finished")
        }
        ClientError::Timeout { .. } => format!("{source} before the command finished"),
        ClientError::Silent { .. } => format!("{source}; the command's result never came"),
        _ => format!("lost the connection to {url} before the command finished: {source}"),
    }
}

/// What to do when nothing listens where a client command looked.
pub const REFUSED_HINT: &str =
    "start a server with `ccx serve` (background) or `ccx serve --foreground`, or name a running one with --url";

fn unreachable_hint(source: &ClientError) -> String {
    match source {
        ClientError::Refused { .. } => format!("\nhint: {REFUSED_HINT}"),
        _ => String::new(),
    }
}

fn hint(source: &ClientError) -> &'static str {
    match source {
        ClientError::Http { status: 401, .. } => " (set CCX_TOKEN to the server's token)",
        ClientError::Http { status: 403, .. } => {
            " (the Origin or Host header was refused: see CCX_ALLOWED_ORIGINS)"
        }
        _ => "",
    }
}

/// How long `ccx exec` trusts a silent connection unless told otherwise
/// (pinging every third of it): long enough for a slow network, short
/// enough that a partition does not hang a script.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
/// Our own Ctrl-C: exit 130, as a shell reports SIGINT.
const SIGINT: u8 = 2;
/// How long after the command's own timeout we still wait for its result
/// (the server's SIGTERM→SIGKILL grace and the network).
const RESULT_MARGIN: Duration = Duration::from_secs(15);
/// How long a `process.completed` is awaited after `process.canceled`
/// (ccx sends one after the group ended; cc_executor sends none).
const CANCELED_GRACE: Duration = Duration::from_secs(10);

/// The shell command line for CMD… words: one word as it is, several quoted
/// for /bin/sh and joined with spaces.
pub fn command_line(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        many => shell_words::join(many),
    }
}

/// Runs `params` on the server of `options`, streaming its output (or, with
/// `json`, its events as JSON lines) to local stdout and stderr, until its
/// result; returns the exit code a shell would give it.
pub async fn run(
    options: ConnectOptions,
    params: ExecuteParams,
    json: bool,
) -> Result<Exit, ExecError> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(ExecError::Signal)?;
    let url = options.url.clone();
    let mut client = tokio::select! {
        connected = Client::connect(&options) => connected.map_err(|e| connect_error(&url, e))?,
        _ = sigint.recv() => return Ok(Exit::Interrupted(SIGINT)),
    };
    // Batches where the server offers them, except for --json, whose
    // events keep the server's line framing.
    let params = match json {
        true => params,
        false => client.prefer_batches(&params),
    };
    tokio::select! {
        started = client.execute(&params) => { started.map_err(|e| request_error(&url, e))?; }
        // Closing the session makes the server end the process group.
        _ = sigint.recv() => { client.close().await; return Ok(Exit::Interrupted(SIGINT)) }
    }
    let result_deadline = params
        .timeout
        .map(|t| Instant::now() + Duration::from_secs_f64(t) + RESULT_MARGIN);
    let no_result = async {
        match result_deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(no_result);
    let mut sink = Sink::new(json);
    let mut cancelled = false;
    // cc_executor sends no `process.completed` after `process.canceled`:
    // once that came, the result is not waited for long.
    let mut canceled_at: Option<Instant> = None;
    loop {
        let after_cancel = canceled_at.map(|at| at + CANCELED_GRACE);
        let event = tokio::select! {
            event = client.next_event() => event,
            _ = tokio::time::sleep_until(after_cancel.unwrap_or_else(Instant::now)), if after_cancel.is_some() => {
                client.close().await;
                return Ok(Exit::Interrupted(SIGINT));
            }
            _ = sigint.recv() => {
                if cancelled {
                    sink.note("interrupted again: exiting without waiting for the remote command");
                    return Ok(Exit::Interrupted(SIGINT));
                }
                cancelled = true;
                sink.note("cancelling the remote command (Ctrl-C again to exit at once)");
                let answer = tokio::select! {
                    answer = client.control(ControlType::Cancel) => answer,
                    _ = sigint.recv() => return Ok(Exit::Interrupted(SIGINT)),
                };
                match answer {
                    // -32002: it ended on its own meanwhile; its result is on the way.
                    Ok(_) | Err(ClientError::Rpc(_)) => continue,
                    Err(e) => return Err(request_error(&url, e)),
                }
            }
            _ = &mut no_result => {
                let after = params.timeout.map(Duration::from_secs_f64).unwrap_or_default() + RESULT_MARGIN;
                return Err(ExecError::NoResult { url, after });
            }
        };
        let event = event.map_err(|e| request_error(&url, e))?;
        if let Event::Control(status) = &event {
            if cancelled && status.status == ControlType::Cancel.status() {
                canceled_at.get_or_insert_with(Instant::now);
            }
        }
        if let Event::Completed(completed) = &event {
            if sink.event(&event).is_err() {
                return Ok(Exit::StdoutClosed);
            }
            return Ok(exit_for(completed, cancelled, &sink));
        }
        if sink.event(&event).is_err() {
            // Local stdout is gone: stop the remote command as SIGPIPE would.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), client.control(ControlType::Cancel))
                    .await;
            client.close().await;
            return Ok(Exit::StdoutClosed);
        }
    }
}

/// The local exit status for a remote result.
fn exit_for(completed: &Completed, cancelled_by_us: bool, sink: &Sink) -> Exit {
    if cancelled_by_us && completed.status == CompletionStatus::Canceled {
        return Exit::Interrupted(SIGINT);
    }
    if completed.status == CompletionStatus::TimedOut {
        sink.note("the command ran past its --timeout; the server ended its process group");
        return Exit::TimedOut;
    }
    Exit::Remote(shell_status(completed.exit_code))
}

/// A shell's `$?` for a wire exit code: the code itself, or 128+N for `-N`.
pub fn shell_status(exit_code: i32) -> u8 {
    let status = if exit_code < 0 {
        128 + exit_code.unsigned_abs()
    } else {
        exit_code.unsigned_abs()
    };
    u8::try_from(status).unwrap_or(u8::MAX)
}

fn connect_error(url: &str, source: ClientError) -> ExecError {
    let url = url.to_string();
    match source {
        ClientError::Http { .. } | ClientError::Rpc(_) => ExecError::Rejected { url, source },
        ClientError::InvalidUrl { .. } => ExecError::BadUrl(source),
        _ => ExecError::Unreachable { url, source },
    }
}

fn request_error(url: &str, source: ClientError) -> ExecError {
    let url = url.to_string();
    match source {
        ClientError::Rpc(_) => ExecError::Rejected { url, source },
        ClientError::Protocol(_) => ExecError::Unreadable { url, source },
        _ => ExecError::Lost { url, source },
    }
}

/// Where events go: the local streams, or JSON lines on stdout.
struct Sink {
    json: bool,
    lossy_noted: bool,
    truncated_noted: bool,
}

impl Sink {
    fn new(json: bool) -> Sink {
        Sink {
            json,
            lossy_noted: false,
            truncated_noted: false,
        }
    }

    /// Writes one event; an error means local stdout is closed.
    fn event(&mut self, event: &Event) -> std::io::Result<()> {
        if self.json {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", event_json(event))?;
            return out.flush();
        }
        if let Event::Output(output) = event {
            self.output(output)?;
        }
        Ok(())
    }

    fn output(&mut self, output: &Output) -> std::io::Result<()> {
        if output.lossy && !self.lossy_noted {
            self.lossy_noted = true;
            self.note("the command wrote bytes that are not UTF-8; the protocol carries text, so they arrive replaced with U+FFFD");
        }
        let written = match output.stream {
            StreamKind::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(output.data.as_bytes())
                    .and_then(|()| out.flush())
            }
            StreamKind::Stderr => {
                let mut err = std::io::stderr().lock();
                // A closed stderr must not stop the command's stdout.
                let _ = err
                    .write_all(output.data.as_bytes())
                    .and_then(|()| err.flush());
                Ok(())
            }
        };
        // A chunk of a long line says `truncated` when the next message
        // continues it: nothing is lost there.
        if output.truncated && !continues(output) && !self.truncated_noted {
            self.truncated_noted = true;
            self.note(
                "the server marked output as truncated: its output cap was reached (CCX_MAX_OUTPUT on ccx) and later output is dropped, or it cut a long line",
            );
        }
        match written {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(e),
            // Any other write error also means the output cannot be delivered.
            other => other,
        }
    }

    /// A one-line note from ccx itself, on stderr.
    fn note(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "ccx: {text}");
    }
}

/// `{"event": METHOD, ...params}` for one event.
fn event_json(event: &Event) -> Value {
    let to = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    let (name, params) = match event {
        Event::Started(s) => (method::PROCESS_STARTED, to(serde_json::to_value(s))),
        Event::Output(o) => (method::PROCESS_OUTPUT, to(serde_json::to_value(o))),
        Event::Completed(c) => (method::PROCESS_COMPLETED, to(serde_json::to_value(c))),
        Event::Control(s) => (
            match s.status.as_str() {
                "paused" => method::PROCESS_PAUSED,
                "resumed" => method::PROCESS_RESUMED,
                _ => method::PROCESS_CANCELED,
            },
            to(serde_json::to_value(s)),
        ),
        Event::Other(frame) => (
            frame.method.as_deref().unwrap_or("unknown"),
            frame.params.clone().unwrap_or(Value::Null),
        ),
    };
    let mut line = Map::new();
    line.insert("event".into(), Value::from(name));
    match params {
        Value::Object(fields) => line.extend(fields),
        Value::Null => {}
        other => {
            line.insert("params".into(), other);
        }
    }
    Value::Object(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_words_are_quoted_one_word_is_a_command_line() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&words(&["sh", "-c", "printf out; exit 3"])),
            "sh -c 'printf out; exit 3'"
        );
        assert_eq!(command_line(&words(&["echo a | wc -c"])), "echo a | wc -c");
    }

    #[test]
    fn signal_deaths_map_to_128_plus_n() {
        assert_eq!(shell_status(3), 3);
        assert_eq!(shell_status(-15), 143);
        assert_eq!(shell_status(-9), 137);
        assert_eq!(shell_status(300), 255);
    }
}
