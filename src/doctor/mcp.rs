//! `ccx doctor --mcp`: checks an MCP server the way an MCP host uses it —
//! `initialize` (the handshake and its protocol revision), `tools/list`
//! (is there an `execute` tool), and a `tools/call` of `execute` with
//! `echo NONCE` — over stdio (`ccx mcp`, or `--server-cmd`) or Streamable
//! HTTP (`--url http://…/mcp`). Any MCP server can be checked, not only ccx.
//!
//! Same shape as the WebSocket doctor: each step has a deadline, the first
//! failure skips the rest, the [`Report`] is plain data the renderers draw,
//! and a server it starts is stopped with its whole process group.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::steps::Outcome;
use super::{millis, runner, Report, StepId, SCHEMA_VERSION};
use crate::client::mcp::{McpClient, McpClientError, McpTarget, HANDSHAKE_VERSIONS};

/// The steps of an MCP check, in order.
pub const STEPS: [StepId; 3] = [StepId::Initialize, StepId::Tools, StepId::Call];

/// What the CLI decided.
#[derive(Debug, Clone)]
pub struct McpOptions {
    pub target: McpTarget,
    /// Deadline of each exchange.
    pub timeout: Duration,
    /// How long a started server may take to answer `initialize`.
    pub spawn_timeout: Duration,
    pub strict: bool,
}

/// The MCP check's options from the doctor's: `--url` (http://) names an
/// endpoint, `--server-cmd` a stdio server; neither: `ccx mcp` (this binary).
pub fn options(opts: &super::Options) -> Result<McpOptions, String> {
    let target = match (&opts.url, &opts.server_cmd) {
        (Some(url), _) if url.starts_with("http://") => McpTarget::Http {
            url: url.clone(),
            token: opts.env.get("CCX_TOKEN").filter(|t| !t.is_empty()).cloned(),
        },
        (Some(url), _) => {
            return Err(format!(
                "--mcp checks an MCP endpoint: --url must be http://HOST:PORT/PATH (ccx serves /mcp), not {url}"
            ))
        }
        (None, Some(command)) => McpTarget::Stdio {
            command: command.clone(),
        },
        (None, None) => McpTarget::Program {
            program: opts
                .ccx_exe
                .clone()
                .ok_or("cannot find the ccx binary to start `ccx mcp`; name a server with --server-cmd")?,
            args: vec!["mcp".into()],
        },
    };
    Ok(McpOptions {
        target,
        timeout: opts.timeout,
        spawn_timeout: opts.spawn_timeout,
        strict: opts.strict,
    })
}

struct Ctx<'a> {
    opts: &'a McpOptions,
    client: Option<McpClient>,
    has_execute: bool,
}

impl runner::Steps for Ctx<'_> {
    fn deadline(&self, id: StepId) -> Duration {
        let opts = self.opts;
        let own = match id {
            StepId::Initialize => opts.spawn_timeout.max(opts.timeout),
            _ => opts.timeout,
        };
        own + Duration::from_secs(2)
    }

    async fn run(&mut self, id: StepId) -> Outcome {
        let opts = self.opts;
        step(id, opts, self).await
    }
}

/// Runs the MCP steps and returns the report.
pub async fn run(opts: &McpOptions, interrupted: impl std::future::Future<Output = i32>) -> Report {
    let started = Instant::now();
    let mut ctx = Ctx {
        opts,
        client: None,
        has_execute: false,
    };
    tokio::pin!(interrupted);
    let ran = runner::run(&STEPS, &mut ctx, interrupted).await;
    if let Some(client) = ctx.client.take() {
        client.close().await;
    }
    let exit_code = ran.exit(opts.strict).code();
    Report {
        schema_version: SCHEMA_VERSION,
        ccx_version: crate::VERSION.into(),
        target: opts.target.describe(),
        ok: exit_code == 0,
        exit_code,
        error: ran.error(),
        steps: ran.steps,
        duration_ms: millis(started.elapsed()),
        server: None,
        ended: Vec::new(),
    }
}

async fn step(id: StepId, opts: &McpOptions, ctx: &mut Ctx<'_>) -> Outcome {
    match id {
        StepId::Initialize => initialize(opts, ctx).await,
        StepId::Tools => tools(opts, ctx).await,
        StepId::Call => call(opts, ctx).await,
        other => Outcome::skip(format!("`{}` is not an MCP step", other.as_str())),
    }
}

/// What a failed exchange means, and what to do about it.
async fn diagnose(
    what: &str,
    e: &McpClientError,
    client: Option<&mut McpClient>,
    opts: &McpOptions,
) -> Outcome {
    let (stderr, stray) = match client {
        Some(c) => (c.stderr_tail(10), c.stray_stdout().await),
        None => (Vec::new(), Vec::new()),
    };
    let fix = match e {
        McpClientError::Spawn(_) => "check the command: it runs with /bin/sh -c on this machine's PATH".to_string(),
        McpClientError::Exited { .. } => "the server died: its stderr (above) says why; run the command by hand to see it".into(),
        McpClientError::Timeout(_) => match opts.target {
            McpTarget::Http { .. } => "the endpoint accepted the connection but did not answer: is it an MCP Streamable HTTP endpoint (ccx serves /mcp)?".into(),
            _ => "a stdio MCP server must answer JSON-RPC lines on stdout; one that waits for something else, or writes its answers elsewhere, hangs here".into(),
        },
        McpClientError::Connect { .. } => "nothing listens there: start the server (`ccx serve`) or correct --url".into(),
        McpClientError::Http { status: 401, .. } => "the server needs a token: set CCX_TOKEN to the server's token (sent as Authorization: Bearer)".into(),
        McpClientError::Http { status: 403, .. } => "refused by the Host/Origin rules: use the address the server is bound to (a loopback server answers only to loopback names)".into(),
        McpClientError::Http { status: 404, .. } => "no MCP endpoint at that path: ccx serves Streamable HTTP at /mcp (e.g. http://127.0.0.1:8003/mcp)".into(),
        McpClientError::Http { status: 405, .. } if ws_endpoint(opts) => "this is the WebSocket endpoint (JSON-RPC over WebSocket): ccx serves MCP at /mcp, e.g. `ccx doctor --mcp --url http://HOST:PORT/mcp`; or check this endpoint without --mcp: `ccx doctor --url ws://HOST:PORT/ws/mcp`".into(),
        McpClientError::Http { status, body, .. } if body.trim().is_empty() => format!("the server answered HTTP {status} with an empty body: is --url an MCP Streamable HTTP endpoint (ccx serves /mcp)?"),
        McpClientError::Http { .. } => "the HTTP answer above names the problem".into(),
        McpClientError::NotJsonRpc(_) => "the server must speak JSON-RPC 2.0: a stdio server may write nothing but protocol messages to stdout (logs go to stderr)".into(),
        McpClientError::Rpc { .. } => "the server refused the request: its message (above) says why".into(),
        McpClientError::Io(_) | McpClientError::BadUrl(_) => "check the URL: the doctor speaks plain http://HOST:PORT/PATH".into(),
    };
    let fix = if stray.is_empty() || matches!(e, McpClientError::NotJsonRpc(_)) {
        fix
    } else {
        format!("it wrote lines that are not JSON-RPC to stdout (above): a stdio MCP server must write only protocol messages there and log to stderr; {fix}")
    };
    Outcome::fail(format!("{what}: {e}"))
        .detail(
            stray
                .into_iter()
                .map(|l| format!("server stdout, not JSON-RPC: {l}"))
                .chain(stderr.into_iter().map(|l| format!("server stderr: {l}"))),
        )
        .fix(fix)
}

/// Whether an HTTP target is a WebSocket endpoint's path (`/ws/mcp`, `/ws`).
fn ws_endpoint(opts: &McpOptions) -> bool {
    match &opts.target {
        McpTarget::Http { url, .. } => {
            let path = url.split('?').next().unwrap_or(url).trim_end_matches('/');
            path.ends_with("/ws/mcp") || path.ends_with("/ws")
        }
        _ => false,
    }
}

async fn initialize(opts: &McpOptions, ctx: &mut Ctx<'_>) -> Outcome {
    let mut client = match McpClient::connect(&opts.target) {
        Ok(c) => c,
        Err(e) => return diagnose("cannot reach the server", &e, None, opts).await,
    };
    let result = client
        .initialize(opts.spawn_timeout.max(opts.timeout))
        .await;
    let outcome = match result {
        Err(e) => diagnose("initialize failed", &e, Some(&mut client), opts).await,
        Ok(result) => {
            let version = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = result
                .pointer("/serverInfo/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let name = match result
                .pointer("/serverInfo/version")
                .and_then(Value::as_str)
            {
                Some(v) if !v.is_empty() => format!("{name} {v}"),
                _ => name.to_string(),
            };
            let detail = vec![
                format!("server: {name}"),
                format!("protocol revision: {version}"),
                format!(
                    "capabilities: {}",
                    result.get("capabilities").cloned().unwrap_or(Value::Null)
                ),
            ];
            if !HANDSHAKE_VERSIONS.contains(&version) {
                Outcome::fail(format!("{name} answered initialize with protocol revision {version:?}, which no handshake revision names"))
                    .detail(detail)
                    .fix(format!("the server must answer with one of {}", HANDSHAKE_VERSIONS.join(", ")))
            } else if result.pointer("/capabilities/tools").is_none() {
                Outcome::warn(format!(
                    "{name} speaks MCP {version} but declares no tools capability"
                ))
                .detail(detail)
                .fix("a server with tools declares `capabilities.tools` in its initialize result")
            } else {
                Outcome::pass(format!("{name} speaks MCP {version}")).detail(detail)
            }
        }
    };
    ctx.client = Some(client);
    outcome
}

async fn tools(opts: &McpOptions, ctx: &mut Ctx<'_>) -> Outcome {
    let Some(client) = ctx.client.as_mut() else {
        return Outcome::fail("no session: initialize did not run");
    };
    let result = match client.request("tools/list", json!({}), opts.timeout).await {
        Ok(r) => r,
        Err(e) => return diagnose("tools/list failed", &e, ctx.client.as_mut(), opts).await,
    };
    let names: Vec<String> = result
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let listed = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    ctx.has_execute = names.iter().any(|n| n == "execute");
    if ctx.has_execute {
        Outcome::pass(format!("{} tool(s): {listed}", names.len()))
    } else {
        Outcome::warn(format!("no `execute` tool (tools: {listed}): the round trip is skipped"))
            .fix("ccx's MCP server has `execute`; another server needs one taking {\"command\": \"…\"} for the round trip")
    }
}

async fn call(opts: &McpOptions, ctx: &mut Ctx<'_>) -> Outcome {
    if !ctx.has_execute {
        return Outcome::skip("the server has no `execute` tool to call");
    }
    let Some(client) = ctx.client.as_mut() else {
        return Outcome::fail("no session: initialize did not run");
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let params = json!({"name": "execute", "arguments": {"command": format!("echo {nonce}")}});
    let result = match client.request("tools/call", params, opts.timeout).await {
        Ok(r) => r,
        Err(e) => {
            return diagnose("tools/call execute failed", &e, ctx.client.as_mut(), opts).await
        }
    };
    let text: String = result
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let is_error = result
        .get("isError")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let detail: Vec<String> = text
        .lines()
        .take(10)
        .map(|l| format!("tool output: {l}"))
        .collect();
    if is_error {
        return Outcome::fail("the `execute` tool reported an error (isError: true) for `echo NONCE`")
            .detail(detail)
            .fix("the tool's own text (above) says why; for ccx: CCX_ALLOWED_COMMANDS must allow echo, and CCX_SHELL must run");
    }
    if !text.contains(&nonce) {
        return Outcome::fail(
            "the `execute` result does not contain the nonce it was asked to echo",
        )
        .detail(detail)
        .fix("the tool must return the command's output as text content");
    }
    if let Some(code) = result
        .pointer("/structuredContent/exit_code")
        .and_then(Value::as_i64)
    {
        if code != 0 {
            return Outcome::fail(format!("`echo` exited with code {code}"))
                .detail(detail)
                .fix("the server's shell could not run echo: check CCX_SHELL and PATH");
        }
    }
    Outcome::pass("`execute` ran `echo NONCE`: the nonce came back, no error")
}
