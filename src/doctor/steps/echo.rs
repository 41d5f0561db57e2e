//! Step `echo`: one `execute` of `echo NONCE` on the session the handshake
//! opened; the nonce must come back on stdout with exit code 0 (where echo
//! may not run, an allowlist without it, the probe is `--probe-cmd`, or
//! else the first allowed program with `--version`: it must exit 0). The round
//! trip is timed here (cc_executor sends no `duration_ms`), bounded by
//! `--timeout`: a round trip that works but takes seconds is a warning with
//! the measured time and the likely cause, and one that does not finish in
//! time says how far it got (`execute` not yet acknowledged, or started
//! and not completed).

use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use super::Outcome;
use crate::client::identity::{Kind, ServerIdentity};
use crate::client::{Client, ClientError, Event, OutputCollector, RunOutcome};
use crate::config::Config;
use crate::doctor::{human_duration, Ctx, Status};
use crate::protocol::{ErrorCode, ExecuteParams};

/// An echo slower than this is reported as slow. ccx answers in
/// milliseconds, but took over 2 s on a 2-core machine under a load
/// average of 20 and more; cc_executor without Redis never answers in less
/// than 7 s (its hooks wait 2 s + 5 s before giving up on Redis).
pub const SLOW_ECHO: Duration = Duration::from_secs(5);

/// Why a cc_executor is slow to start commands, as measured on a machine
/// without Redis.
const CC_EXECUTOR_SLOW: &str = "cc_executor runs its hooks before every command, and they retry a Redis connection first (about 8 s per command when no Redis runs on localhost:6379)";

/// How far the round trip got.
enum Progress {
    Sent,
    Started(u32),
}

/// The command the step runs, and what must come back.
struct Probe {
    command: String,
    /// `echo`'s nonce; `None` for another probe, which must only exit 0.
    nonce: Option<String>,
    /// Why the probe is not `echo`, when it is not.
    why: Option<String>,
}

/// The allowlist of the doctor's environment (the server's own, for a
/// server it starts or a container's HEALTHCHECK), and the name of the
/// variable that set it.
fn allowlist(ctx: &Ctx<'_>) -> Option<(Vec<String>, &'static str)> {
    let loaded;
    let config = match &ctx.config {
        Some(config) => config,
        None => {
            loaded = Config::load(&ctx.opts.overrides, &ctx.opts.env).ok()?;
            &loaded
        }
    };
    let list = config.allowed_commands.clone()?;
    Some((
        list,
        config.variable_of("allowed_commands", "CCX_ALLOWED_COMMANDS"),
    ))
}

fn probe(ctx: &Ctx<'_>) -> Probe {
    if let Some(command) = &ctx.opts.probe_cmd {
        return Probe {
            command: command.clone(),
            nonce: None,
            why: Some("--probe-cmd".into()),
        };
    }
    let nonce = format!("ccx-doctor-{}", uuid::Uuid::new_v4().simple());
    let echo = Probe {
        command: format!("echo {nonce}"),
        nonce: Some(nonce),
        why: None,
    };
    match allowlist(ctx) {
        Some((list, variable)) if !list.iter().any(|p| p == "echo") => match list.first() {
            Some(first) => Probe {
                command: format!("{first} --version"),
                nonce: None,
                why: Some(format!(
                    "{variable} does not allow echo: probing with its first program (--probe-cmd chooses another)"
                )),
            },
            None => echo,
        },
        _ => echo,
    }
}

/// What a probe printed, for one detail line: echo's line as it came; for
/// another probe (`git --version` prints a licence) its first line.
fn shown_output(text: &str, probe: &Probe) -> String {
    let text = crate::sanitize::captured(text.trim_end());
    match probe.nonce {
        Some(_) => text,
        None => match text.split_once('\n') {
            Some((first, _)) => format!("{first} …"),
            None => text,
        },
    }
}

/// The fix for a refused probe: keep the user's allowlist, add to it.
fn allowlist_fix(ctx: &Ctx<'_>, command: &str) -> String {
    let program = command.split_whitespace().next().unwrap_or("echo");
    let (example, variable) = match allowlist(ctx) {
        Some((list, variable)) => (format!("{variable}={},{program}", list.join(",")), variable),
        None => (
            format!("CCX_ALLOWED_COMMANDS=<the programs it allows now>,{program}"),
            "CCX_ALLOWED_COMMANDS",
        ),
    };
    format!(
        "its command allowlist ({variable}, or ALLOWED_COMMANDS for cc_executor) does not allow `{program}`: \
         probe with a program it allows (`ccx doctor --probe-cmd 'PROGRAM --version'`), \
         or add {program} to the list, keeping the programs already in it ({example})"
    )
}

pub(super) async fn run(ctx: &mut Ctx<'_>) -> Outcome {
    let deadline: Duration = ctx.opts.timeout;
    let probe = probe(ctx);
    let refused_fix = allowlist_fix(ctx, &probe.command);
    let server = ctx.server_identity.clone();
    let name = server
        .as_ref()
        .map(ServerIdentity::name)
        .unwrap_or_else(|| "the server".into());
    let Some(client) = ctx.client.as_mut() else {
        return Outcome::skip("no session to run a command in");
    };
    let command = probe.command.clone();
    let shown = match &probe.nonce {
        Some(_) => "echo".to_string(),
        None => command.clone(),
    };
    let started = Instant::now();
    let mut progress = Progress::Sent;
    let result = round_trip(client, &command, started + deadline, &mut progress).await;
    let elapsed = started.elapsed();
    let outcome = match result {
        Err(None) => {
            return timed_out(&command, &shown, deadline, &progress, &name, server.as_ref())
        }
        Err(Some(ClientError::Rpc(rpc))) if rpc.code == ErrorCode::CommandNotAllowed.code() => {
            return Outcome::fail(format!(
                "{name} refused `{shown}` (code {}): {}",
                rpc.code,
                crate::sanitize::captured(&rpc.message)
            ))
            .detail(vec![format!("command: {command}")])
            .fix(refused_fix)
        }
        Err(Some(ClientError::Rpc(rpc))) => {
            return Outcome::fail(format!(
                "{name} answered `execute` with an error: {} (code {})",
                crate::sanitize::captured(&rpc.message),
                rpc.code
            ))
            .fix("see the server's log (stderr) for why it could not run a command")
        }
        Err(Some(e @ (ClientError::Closed { .. } | ClientError::Io(_)))) => {
            return Outcome::fail(format!(
                "{name} closed the session while `{shown}` ran ({}): {e}",
                human_duration(elapsed)
            ))
            .fix("see the server's log (stderr): it dropped the connection instead of answering")
        }
        Err(Some(e)) => {
            return Outcome::fail(format!("cannot read {name}'s answer to `{shown}`: {e}"))
                .fix("the connection is up but the server's messages are not the protocol ccx knows: report it with this output")
        }
        Ok(outcome) => outcome,
    };
    let c = &outcome.completed;
    let mut detail = vec![
        format!("command: {command}"),
        format!(
            "pid {}{}, exit code {}",
            c.pid,
            c.pgid.map(|g| format!(" in group {g}")).unwrap_or_default(),
            c.exit_code,
        ),
        format!(
            "round trip measured by ccx: {}{}",
            human_duration(elapsed),
            c.duration_ms
                .map(|ms| format!(" (the server says the process ran {ms} ms)"))
                .unwrap_or_else(|| " (the server sends no duration of its own)".into())
        ),
        format!("stdout: {}", shown_output(&outcome.stdout, &probe)),
    ];
    if let Some(why) = &probe.why {
        detail.insert(1, format!("probe: {why}"));
    }
    if c.exit_code != 0 {
        detail.push(format!("stderr: {}", shown_output(&outcome.stderr, &probe)));
        let another = match probe.nonce {
            Some(_) => "",
            None => ", or choose another probe with --probe-cmd",
        };
        return Outcome::fail(format!("`{shown}` exited with code {}", c.exit_code))
            .detail(detail)
            .fix(format!(
                "the server cannot run `{shown}`: check CCX_SHELL and the PATH the server sees{another}"
            ));
    }
    if matches!(&probe.nonce, Some(nonce) if !outcome.stdout.contains(nonce)) {
        return Outcome::fail("`echo` succeeded but its output did not come back")
            .detail(detail)
            .fix("the server loses process output: report it with this output");
    }
    if elapsed > SLOW_ECHO {
        let cause = slow_cause(server.as_ref());
        detail.push(format!("likely cause: {cause}"));
        return Outcome::warn(format!(
            "`{shown}` works but is slow: {} for the round trip on {name} (pid {})",
            human_duration(elapsed),
            c.pid
        ))
        .detail(detail)
        .fix(slow_fix(server.as_ref()));
    }
    if server.as_ref().map(ServerIdentity::kind) == Some(Kind::Ccx) {
        // Which mechanism ends the processes that leave a command's group.
        if let Ok(Ok(info)) = tokio::time::timeout(deadline, client.info(&[])).await {
            if let Some(mode) = info.process_tracking {
                detail.push(format!(
                    "escaped descendants are tracked by: {mode} (see docs/processes.md)"
                ));
            }
        }
    }
    let result = match probe.nonce {
        Some(_) => "its output came back",
        None => "exited 0",
    };
    Outcome::pass(format!(
        "`{shown}` ran (pid {}) and {result} in {}",
        c.pid,
        human_duration(elapsed)
    ))
    .detail(detail)
}

/// `execute`, then events until `process.completed`, all before `at`.
/// `Err(None)` is the deadline.
async fn round_trip(
    client: &mut Client,
    command: &str,
    at: Instant,
    progress: &mut Progress,
) -> Result<RunOutcome, Option<ClientError>> {
    // The client's own request deadline is the same `--timeout`.
    let deadline = |e: ClientError| match e {
        ClientError::Timeout { .. } => None,
        e => Some(e),
    };
    let params = client.prefer_batches(&ExecuteParams::command(command));
    let started = timeout_at(at, client.execute(&params))
        .await
        .map_err(|_| None)?
        .map_err(deadline)?;
    *progress = Progress::Started(started.pid);
    let mut collected = OutputCollector::default();
    loop {
        match timeout_at(at, client.next_event())
            .await
            .map_err(|_| None)?
        {
            Ok(Event::Output(o)) => collected.add(o),
            Ok(Event::Completed(completed)) => return Ok(collected.finish(started, completed)),
            Ok(_) => {}
            Err(e) => return Err(Some(e)),
        }
    }
}

fn timed_out(
    command: &str,
    shown: &str,
    deadline: Duration,
    progress: &Progress,
    name: &str,
    server: Option<&ServerIdentity>,
) -> Outcome {
    let within = human_duration(deadline);
    let (summary, detail) = match progress {
        Progress::Sent => (
            format!("{name} had not acknowledged `execute` after {within}: slow or stuck"),
            "the request was sent; no result (`started`) came back".to_string(),
        ),
        Progress::Started(pid) => (
            format!("{name} started `{shown}` (pid {pid}) but did not report its end within {within}: slow or stuck"),
            "`started` came back; no `process.completed`".to_string(),
        ),
    };
    let mut lines = vec![format!("command: {command}"), detail];
    if server.map(ServerIdentity::kind) == Some(Kind::CcExecutor) {
        lines.push(format!("likely cause: {CC_EXECUTOR_SLOW}"));
    }
    let fix = match server.map(ServerIdentity::kind) {
        Some(Kind::CcExecutor) => format!(
            "give it more time (`--timeout 30s`): a slow server is not a broken one; {}",
            slow_fix(server)
        ),
        _ => "give it more time (`--timeout 30s`) if it is only slow; otherwise the server accepted the session but does not run commands: check its log (stderr)".to_string(),
    };
    Outcome::new(Status::Timeout, summary)
        .detail(lines)
        .fix(fix)
}

fn slow_cause(server: Option<&ServerIdentity>) -> String {
    match server.map(ServerIdentity::kind) {
        Some(Kind::CcExecutor) => CC_EXECUTOR_SLOW.to_string(),
        _ => "the server is slow to start a process (load, a slow shell startup file, or work it does before each command)".to_string(),
    }
}

fn slow_fix(server: Option<&ServerIdentity>) -> String {
    match server.map(ServerIdentity::kind) {
        Some(Kind::CcExecutor) => "run Redis on localhost:6379 for its hooks, or disable its hooks; clients with short timeouts will give up on this server".to_string(),
        _ => "check the server's load and log; clients with short timeouts will give up on this server".to_string(),
    }
}
