//! Model Context Protocol acceptance: the official Python SDK's clients
//! (`stdio_client`, `streamable_http_client`, driven by tests/mcp/sdk_client.py)
//! against `ccx mcp` and `/mcp` on `ccx serve`, in both protocol eras the SDK
//! speaks (2026-07-28 discover, and the 2025-11-25 initialize handshake);
//! spec errors for malformed and early messages; and `ccx doctor --mcp`
//! against ccx, a minimal SDK server, and one whose tool call errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::python::{require_venv, Venv};
use common::{ccx_command, eventually, http, live_members, pids_with_cmdline, TestServer, BIN};
use serde_json::{json, Value};

const TOKEN: &str = "mcp-test-token";
/// Generous: two cores shared by many test binaries, Python start-up included.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

fn venv() -> Venv {
    require_venv("mcp", &["mcp"])
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
}

/// Runs `cmd` to its end within SCRIPT_DEADLINE (killed past it).
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            panic!("{cmd:?} ran past {SCRIPT_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A Python command with CCX_* variables removed (as `ccx_command` does).
fn python(venv: &Venv) -> Command {
    let mut cmd = Command::new(venv.python());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CCX_")
            || name.starts_with("WS_")
            || name.to_lowercase().ends_with("_proxy")
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// tests/mcp/sdk_client.py SCENARIO in protocol `mode` against `target`
/// (`--stdio …` or `--http …`); its JSON verdict.
fn sdk_client(venv: &Venv, scenario: &str, mode: &str, target: &[&str]) -> Value {
    let mut cmd = python(venv);
    cmd.arg(script("sdk_client.py"))
        .args([scenario, "--mode", mode])
        .args(target);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "sdk_client.py {scenario} {mode} {target:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stdio_target() -> Vec<&'static str> {
    vec!["--stdio", BIN, "mcp"]
}

fn assert_basic(v: &Value, era: &str) {
    assert_eq!(v["protocol_version"], era, "{v}");
    assert_eq!(v["server_name"], "ccx", "{v}");
    assert_eq!(v["tools"], json!(["execute"]), "{v}");
    let nonce = v["nonce"].as_str().unwrap();
    assert_eq!(v["echo"]["is_error"], false, "{v}");
    assert!(v["echo"]["text"].as_str().unwrap().contains(nonce), "{v}");
    assert_eq!(v["echo"]["structured"]["exit_code"], 0, "{v}");
    assert_eq!(v["echo"]["structured"]["status"], "completed", "{v}");
    assert_eq!(v["exit4"]["is_error"], true, "{v}");
    assert_eq!(v["exit4"]["structured"]["exit_code"], 4, "{v}");
    assert_eq!(v["exit4"]["structured"]["status"], "failed", "{v}");
    assert!(
        v["exit4"]["text"].as_str().unwrap().contains("on-stderr"),
        "{v}"
    );
    for key in ["signal", "truncated", "duration_ms"] {
        assert!(
            v["exit4"]["structured"].get(key).is_some(),
            "{key} missing: {v}"
        );
    }
}

fn http_server() -> TestServer {
    TestServer::start_with(&[("CCX_TOKEN", TOKEN)], &[])
}

fn mcp_url(server: &TestServer) -> String {
    format!("http://127.0.0.1:{}/mcp", server.port)
}

#[test]
fn sdk_stdio_client_runs_execute_in_both_protocol_eras() {
    let venv = venv();
    let modern = sdk_client(&venv, "basic", "auto", &stdio_target());
    assert_basic(&modern, "2026-07-28");
    let handshake = sdk_client(&venv, "basic", "legacy", &stdio_target());
    assert_basic(&handshake, "2025-11-25");
}

#[test]
fn sdk_streamable_http_client_runs_execute_and_needs_the_token() {
    let venv = venv();
    let server = http_server();
    let url = mcp_url(&server);
    for (mode, era) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let v = sdk_client(&venv, "basic", mode, &["--token", TOKEN, "--http", &url]);
        assert_basic(&v, era);
    }

    let mut cmd = python(&venv);
    cmd.arg(script("sdk_client.py"))
        .args(["basic", "--http", &url]);
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "the SDK client got in without the token"
    );
    let (status, _, body) = http(
        server.port,
        "POST",
        "/mcp",
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token"), "{body}");
    let (status, _, _) = http(
        server.port,
        "POST",
        "/mcp",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Origin", "https://evil.example"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(
        status, 403,
        "a foreign Origin must be refused as on /ws/mcp"
    );
}

fn assert_cancelled(v: &Value) {
    let pgid = v["pgid"].as_u64().unwrap() as u32;
    assert!(!v["members_before"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(
        v["members_after"],
        json!([]),
        "the group outlived the cancel: {v}"
    );
    assert!(
        live_members(pgid).is_empty(),
        "group {pgid} still has members"
    );
    assert!(
        v["after"]["text"].as_str().unwrap().contains("still-open"),
        "{v}"
    );
}

#[test]
fn cancelled_call_ends_its_process_group_over_stdio_and_http() {
    let venv = venv();
    for mode in ["auto", "legacy"] {
        assert_cancelled(&sdk_client(&venv, "cancel", mode, &stdio_target()));
    }
    let server = http_server();
    let url = mcp_url(&server);
    for mode in ["auto", "legacy"] {
        assert_cancelled(&sdk_client(
            &venv,
            "cancel",
            mode,
            &["--token", TOKEN, "--http", &url],
        ));
    }
}

#[test]
fn progress_token_yields_progress_notifications_carrying_output() {
    let venv = venv();
    let server = http_server();
    let url = mcp_url(&server);
    let http_target = ["--token", TOKEN, "--http", url.as_str()];
    for target in [stdio_target(), http_target.to_vec()] {
        let v = sdk_client(&venv, "progress", "auto", &target);
        let messages: Vec<&str> = v["progress"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["message"].as_str())
            .collect();
        let joined = messages.concat();
        assert!(joined.contains("first") && joined.contains("second"), "{v}");
        assert_eq!(v["result"]["is_error"], false, "{v}");
    }
}

#[test]
fn malformed_and_early_messages_get_spec_errors() {
    let mut child = ccx_command()
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |line: &str| -> Value {
        writeln!(stdin, "{line}").unwrap();
        if line.contains("notifications/") {
            return Value::Null;
        }
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
    };
    let early = ask(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute","arguments":{"command":"echo hi"}}}"#,
    );
    assert_eq!(early["id"], 1, "{early}");
    assert!(
        early["error"]["code"].is_i64() && early.get("result").is_none(),
        "tools/call before initialize ran: {early}"
    );
    let garbage = ask("this is not json");
    assert_eq!(garbage["error"]["code"], -32700, "{garbage}");
    let no_method = ask(r#"{"jsonrpc":"2.0","id":7}"#);
    assert_eq!(no_method["error"]["code"], -32600, "{no_method}");
    let init = ask(
        r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"1999-01-01","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!(
        init["result"]["protocolVersion"], "2025-11-25",
        "an unknown revision gets the server's latest: {init}"
    );
    ask(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let ping = ask(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    assert_eq!(ping["result"], json!({}), "{ping}");
    let unknown_tool = ask(
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
    );
    assert_eq!(unknown_tool["error"]["code"], -32602, "{unknown_tool}");
    let unknown_method = ask(r#"{"jsonrpc":"2.0","id":5,"method":"no/such"}"#);
    assert_eq!(unknown_method["error"]["code"], -32601, "{unknown_method}");
    let bad_args = ask(
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"execute","arguments":{"cmd":"x"}}}"#,
    );
    assert_eq!(bad_args["result"]["isError"], true, "{bad_args}");
    let ok = ask(
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"execute","arguments":{"command":"echo fine"}}}"#,
    );
    assert_eq!(ok["result"]["isError"], false, "{ok}");
    drop(stdin);
    assert!(
        eventually(Duration::from_secs(10), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "ccx mcp did not exit on EOF"
    );

    let server = http_server();
    let auth = format!("Bearer {TOKEN}");
    let (status, _, body) = http(
        server.port,
        "POST",
        "/mcp",
        &[("Authorization", &auth)],
        "this is not json",
    );
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], -32700, "{body}");
    let (status, _, body) = http(
        server.port,
        "POST",
        "/mcp",
        &[
            ("Authorization", &auth),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute","arguments":{"command":"echo hi"}}}"#,
    );
    assert_eq!(
        status, 400,
        "tools/call without a session must be refused: {body}"
    );
}

fn doctor_json(args: &[&str], env: &[(&str, &str)]) -> (i32, ccx::doctor::Report) {
    let mut cmd = ccx_command();
    cmd.args([
        "doctor",
        "--mcp",
        "--json",
        "--spawn-timeout",
        "90s",
        "--timeout",
        "30s",
    ])
    .args(args)
    .envs(env.iter().copied());
    let out = run(cmd);
    let report: ccx::doctor::Report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn doctor_mcp_passes_against_ccx_and_an_sdk_server_and_names_a_failing_tool_call() {
    use ccx::doctor::{Status, StepId};
    let venv = venv();
    let ids =
        |r: &ccx::doctor::Report| r.steps.iter().map(|s| (s.id, s.status)).collect::<Vec<_>>();
    let all_pass = vec![
        (StepId::Initialize, Status::Pass),
        (StepId::Tools, Status::Pass),
        (StepId::Call, Status::Pass),
    ];

    let (code, report) = doctor_json(&[], &[]);
    assert_eq!((code, ids(&report)), (0, all_pass.clone()), "{report:?}");

    let server = http_server();
    let url = mcp_url(&server);
    let (code, report) = doctor_json(&["--url", &url], &[("CCX_TOKEN", TOKEN)]);
    assert_eq!((code, ids(&report)), (0, all_pass.clone()), "{report:?}");
    let (code, report) = doctor_json(&["--url", &url], &[]);
    assert_eq!(code, 1);
    assert_eq!(report.steps[0].status, Status::Fail);
    assert!(report.steps[0].summary.contains("401"), "{report:?}");
    assert!(
        report.steps[0]
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("CCX_TOKEN"),
        "{report:?}"
    );

    let python = venv.python().display().to_string();
    let sdk = format!("{python} {}", script("sdk_server.py").display());
    let (code, report) = doctor_json(&["--server-cmd", &sdk], &[]);
    assert_eq!((code, ids(&report)), (0, all_pass), "{report:?}");
    assert!(
        report.steps[0].summary.contains("sdk-minimal"),
        "{report:?}"
    );

    let (code, report) = doctor_json(&["--server-cmd", &format!("{sdk} --broken")], &[]);
    assert_eq!(code, 1, "{report:?}");
    let failed = report.first_failure().expect("a failing step");
    assert_eq!(failed.id, StepId::Call, "{report:?}");
    assert!(failed.summary.contains("isError"), "{report:?}");
    assert!(failed.fix.is_some(), "{report:?}");
}

/// An `initialize` over `/mcp`: (status, lowercase head, body).
fn mcp_initialize(port: u16, id: u64) -> (u16, String, String) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "limit-test", "version": "1"}}});
    http(port, "POST", "/mcp", &[], &body.to_string())
}

fn session_id(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("mcp-session-id:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no Mcp-Session-Id in {head}"))
}

fn active_sessions(port: u16) -> u64 {
    let (status, _, body) = http(port, "GET", "/health", &[], "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["active_sessions"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_sessions_count_against_ccx_max_sessions_with_websocket_ones() {
    let server = TestServer::start_with(&[("CCX_MAX_SESSIONS", "3")], &[]);
    let port = server.port;
    let _websocket = server.client().await;
    let (status, head, body) = mcp_initialize(port, 1);
    assert_eq!(status, 200, "{head}{body}");
    let first = session_id(&head);
    let (status, head, body) = mcp_initialize(port, 2);
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(
        active_sessions(port),
        3,
        "one WebSocket and two MCP sessions"
    );

    // Full: one more MCP session is refused as a WebSocket one is: -32003.
    let (status, head, body) = mcp_initialize(port, 3);
    assert_eq!(status, 503, "{head}{body}");
    assert!(head.contains("retry-after:"), "{head}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["error"]["code"], -32003, "{body}");
    assert_eq!(refusal["id"], 3, "{body}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CCX_MAX_SESSIONS"),
        "{body}"
    );
    match ccx::client::Client::connect(&server.options()).await {
        Err(ccx::client::ClientError::Rpc(e)) => assert_eq!(e.code, -32003, "{}", e.message),
        Err(other) => panic!("expected -32003, got {other:?}"),
        Ok(_) => panic!("a WebSocket session was accepted over the limit"),
    }

    // Ending an MCP session gives its place back.
    let (status, head, body) = http(port, "DELETE", "/mcp", &[("Mcp-Session-Id", &first)], "");
    assert!(status == 200 || status == 204, "{status} {head}{body}");
    assert!(
        eventually(Duration::from_secs(5), || active_sessions(port) == 2),
        "the deleted session still counts: {}",
        active_sessions(port)
    );
    let (status, head, body) = mcp_initialize(port, 4);
    assert_eq!(status, 200, "{head}{body}");
}

#[test]
fn a_draining_server_finishes_running_mcp_calls_and_opens_no_new_session() {
    let mut server = TestServer::start_with(&[("CCX_DRAIN_PERIOD", "30s")], &[]);
    let port = server.port;
    let (status, head, body) = mcp_initialize(port, 1);
    assert_eq!(status, 200, "{head}{body}");
    let session = session_id(&head);
    let in_session = |body: &str| {
        http(
            port,
            "POST",
            "/mcp",
            &[
                ("Mcp-Session-Id", &session),
                ("MCP-Protocol-Version", "2025-11-25"),
            ],
            body,
        )
    };
    let (status, _, body) = in_session(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(status == 202 || status == 200, "{status} {body}");

    let marker = "finished-after-the-drain-began";
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "execute", "arguments": {"command": format!("sleep 2; echo {marker}")}}})
    .to_string();
    let running = std::thread::scope(|scope| {
        let call = scope.spawn(|| in_session(&call));
        assert!(
            eventually(Duration::from_secs(10), || !pids_with_cmdline(marker)
                .is_empty()),
            "the command did not start"
        );
        server.signal(nix::sys::signal::Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(200));
        // Draining: no new session (and no new command in this one).
        let (status, head, body) = mcp_initialize(port, 3);
        assert_eq!(status, 503, "{head}{body}");
        assert!(body.contains("draining"), "{body}");
        let (_, _, body) = in_session(
            &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
                "name": "execute", "arguments": {"command": "echo late"}}})
            .to_string(),
        );
        assert!(
            body.contains("draining"),
            "a command started while draining: {body}"
        );
        call.join().unwrap()
    });
    // The call that was running finished: the drain waited for it.
    let (status, _, body) = running;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(marker),
        "the running call was cut short: {body}"
    );
    let exit = server.wait_exit(Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}
