//! Step `echo`: one `execute` of `echo NONCE` on the session the handshake
//! opened; the nonce must come back on stdout with exit code 0.

use std::time::Duration;

use tokio::time::timeout;

use super::Outcome;
use crate::client::ClientError;
use crate::doctor::{human_duration, Ctx, Status};
use crate::protocol::{ErrorCode, ExecuteParams};

pub async fn run(ctx: &mut Ctx<'_>) -> Outcome {
    let deadline: Duration = ctx.opts.timeout;
    let Some(client) = ctx.client.as_mut() else {
        return Outcome::skip("no session to run a command in");
    };
    let nonce = format!("ccx-doctor-{}", uuid::Uuid::new_v4().simple());
    let command = format!("echo {nonce}");
    let outcome = match timeout(deadline, client.run(&ExecuteParams::command(&command))).await {
        Err(_) => {
            return Outcome::new(
                Status::Timeout,
                format!("`{command}` did not complete within {}", human_duration(deadline)),
            )
            .fix("the server accepted the session but does not run commands: check its log (stderr)")
        }
        Ok(Err(ClientError::Rpc(rpc))) if rpc.code == ErrorCode::CommandNotAllowed.code() => {
            return Outcome::fail(format!(
                "the server refused `echo` (code -32001, command not allowed): {}",
                rpc.message
            ))
            .fix("CCX_ALLOWED_COMMANDS restricts what may run: add echo to it (e.g. CCX_ALLOWED_COMMANDS=ls,echo), or unset it to allow every command")
        }
        Ok(Err(e)) => {
            return Outcome::fail(format!("`{command}` failed: {e}"))
                .fix("see the server's log (stderr) for why it could not run a command")
        }
        Ok(Ok(outcome)) => outcome,
    };
    let c = &outcome.completed;
    let detail = vec![
        format!("command: {command}"),
        format!(
            "pid {}{}, exit code {}{}",
            c.pid,
            c.pgid.map(|g| format!(" in group {g}")).unwrap_or_default(),
            c.exit_code,
            c.duration_ms
                .map(|ms| format!(", {ms} ms"))
                .unwrap_or_default()
        ),
        format!("stdout: {}", outcome.stdout.trim_end()),
    ];
    if c.exit_code != 0 {
        let mut detail = detail;
        detail.push(format!("stderr: {}", outcome.stderr.trim_end()));
        return Outcome::fail(format!("`echo` exited with code {}", c.exit_code))
            .detail(detail)
            .fix("the server's shell cannot run `echo`: check CCX_SHELL and the PATH the server sees");
    }
    if !outcome.stdout.contains(&nonce) {
        return Outcome::fail("`echo` succeeded but its output did not come back")
            .detail(detail)
            .fix("the server loses process output: report it with this output");
    }
    Outcome::pass(format!(
        "`echo` ran (pid {}) and its output came back",
        c.pid
    ))
    .detail(detail)
}
