//! cc_executor's wire dialect, as its clients see it, sent to the real
//! `ccx serve --foreground` (port 0) by a real WebSocket client: every row of
//! the compatibility table (issue 10) with cc_executor's answer asserted,
//! line framing (one `process.output` per line, 64 KiB chunks, idle flush,
//! characters never split), the cc_executor configuration names, and the
//! doctor's report of them.

mod common;

use std::time::{Duration, Instant};

use ccx::client::{Client, ClientError, ConnectOptions};
use ccx::protocol::Frame;
use common::TestServer;
use serde_json::{json, Value};
use tokio::time::timeout;

const LONG: Duration = Duration::from_secs(30);

/// Sends one raw JSON-RPC text frame.
async fn send(client: &mut Client, value: Value) {
    client.send_text(&value.to_string()).await.expect("send");
}

async fn frame(client: &mut Client) -> Frame {
    timeout(LONG, client.next_raw_frame())
        .await
        .expect("a frame within the deadline")
        .expect("a frame")
}

/// The next frame that is not a heartbeat `ping`.
async fn next(client: &mut Client) -> Frame {
    loop {
        let f = frame(client).await;
        if f.method.as_deref() != Some("ping") {
            return f;
        }
    }
}

/// The response to request `id`, skipping notifications.
async fn response(client: &mut Client, id: u64) -> Frame {
    loop {
        let f = next(client).await;
        if f.method.is_none() && f.id == Some(json!(id)) {
            return f;
        }
    }
}

fn execute(id: u64, command: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "execute", "params": {"command": command}})
}

fn control(id: u64, kind: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "control", "params": {"type": kind}})
}

/// Runs `command` and returns every notification after the response, up to
/// and including `process.completed`.
async fn notifications(client: &mut Client, command: &str) -> Vec<Frame> {
    send(client, execute(1, command)).await;
    let started = response(client, 1).await;
    assert_eq!(
        started.result.as_ref().unwrap()["status"],
        "started",
        "{started:?}"
    );
    let mut seen = Vec::new();
    loop {
        let f = next(client).await;
        let done = f.method.as_deref() == Some("process.completed");
        seen.push(f);
        if done {
            return seen;
        }
    }
}

/// The `params` of every `process.output` notification.
fn outputs(frames: &[Frame]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f.method.as_deref() == Some("process.output"))
        .map(|f| f.params.clone().unwrap())
        .collect()
}

fn data(outputs: &[Value]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| o["data"].as_str().unwrap().to_string())
        .collect()
}

fn error_code(f: &Frame) -> i64 {
    f.error
        .as_ref()
        .unwrap_or_else(|| panic!("an error: {f:?}"))
        .code
}

#[tokio::test(flavor = "multi_thread")]
async fn printf_three_lines_is_three_messages() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let frames = notifications(&mut client, "printf 'a\\nb\\nc\\n'").await;
    let out = outputs(&frames);
    assert_eq!(data(&out), ["a\n", "b\n", "c\n"]);
    for o in &out {
        assert_eq!(o["type"], "stdout");
        assert_eq!(o["truncated"], false);
        assert!(o.get("chunk_index").is_none(), "{o}");
    }
    assert_eq!(frames[0].method.as_deref(), Some("process.started"));
    assert_eq!(
        frames.last().unwrap().method.as_deref(),
        Some("process.completed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seq_2000_is_2000_messages_in_order() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let out = outputs(&notifications(&mut client, "seq 1 2000").await);
    let expected: Vec<String> = (1..=2000).map(|i| format!("{i}\n")).collect();
    assert_eq!(data(&out), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_kb_line_comes_as_64_kib_chunks_that_reassemble() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let out = outputs(
        &notifications(
            &mut client,
            "head -c 200000 /dev/zero | tr '\\0' q; echo; echo after",
        )
        .await,
    );
    assert_eq!(out.len(), 5, "4 chunks and the next line");
    for (i, o) in out[..4].iter().enumerate() {
        assert_eq!(o["chunk_index"], i);
        assert_eq!(o["total_chunks"], 4);
        assert_eq!(
            o["truncated"],
            i < 3,
            "truncated on every chunk but the last"
        );
        assert!(o["data"].as_str().unwrap().len() <= 65536);
    }
    assert_eq!(out[0]["data"].as_str().unwrap().len(), 65536);
    let line: String = data(&out[..4]).concat();
    assert_eq!(line, format!("{}\n", "q".repeat(200_000)));
    assert_eq!(out[4]["data"], "after\n");
    assert!(out[4].get("chunk_index").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_character_straddling_64_kib_is_not_split() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let out = outputs(
        &notifications(
            &mut client,
            "head -c 65535 /dev/zero | tr '\\0' a; printf '€b\\n'",
        )
        .await,
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["data"].as_str().unwrap().len(), 65535);
    assert_eq!(out[1]["data"], "€b\n");
    assert!(out.iter().all(|o| o["lossy"] == false));
    assert_eq!(
        (
            out[1]["chunk_index"].clone(),
            out[1]["total_chunks"].clone()
        ),
        (json!(1), json!(2))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_line_is_flushed_when_output_goes_quiet() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let start = Instant::now();
    send(&mut client, execute(1, "printf x; sleep 3; echo y")).await;
    response(&mut client, 1).await;
    let mut seen = Vec::new();
    let first_output_after = loop {
        let f = next(&mut client).await;
        if f.method.as_deref() == Some("process.output") {
            seen.push(f.params.unwrap());
            break start.elapsed();
        }
    };
    assert_eq!(seen[0]["data"], "x");
    assert!(
        first_output_after < Duration::from_millis(2500),
        "`x` came after {first_output_after:?}, not before the command's end"
    );
    assert_eq!(seen[0]["truncated"], true, "the line continues");
    loop {
        let f = next(&mut client).await;
        match f.method.as_deref() {
            Some("process.output") => seen.push(f.params.unwrap()),
            Some("process.completed") => break,
            _ => {}
        }
    }
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_eq!(data(&seen).concat(), "xy\n");
    assert_eq!(seen.last().unwrap()["truncated"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_answers_canceled_then_process_canceled_then_completed_last() {
    let server = TestServer::start();
    let mut client = server.client().await;
    send(&mut client, execute(1, "sleep 30")).await;
    response(&mut client, 1).await;
    send(&mut client, control(2, "CANCEL")).await;
    let mut methods = Vec::new();
    let mut result = None;
    loop {
        let f = next(&mut client).await;
        if f.id == Some(json!(2)) {
            result = f.result.clone();
            methods.push("result".to_string());
            continue;
        }
        let m = f.method.clone().unwrap_or_default();
        methods.push(m.clone());
        if m == "process.canceled" {
            assert_eq!(f.params.as_ref().unwrap()["status"], "canceled");
        }
        if m == "process.completed" {
            assert_eq!(f.params.as_ref().unwrap()["status"], "canceled");
            break;
        }
    }
    assert_eq!(result, Some(json!({"status": "canceled"})));
    let order: Vec<&str> = methods
        .iter()
        .map(String::as_str)
        .filter(|m| *m != "process.started")
        .collect();
    assert_eq!(order, ["result", "process.canceled", "process.completed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_codes_are_cc_executors() {
    let server = TestServer::start_with(&[("ALLOWED_COMMANDS", "echo,sleep")], &[]);
    let mut client = server.client().await;
    // No process running: -32002.
    send(&mut client, control(1, "PAUSE")).await;
    assert_eq!(error_code(&response(&mut client, 1).await), -32002);
    // Not allowed: -32001.
    send(&mut client, execute(2, "ls /")).await;
    let refused = response(&mut client, 2).await;
    assert_eq!(error_code(&refused), -32001);
    assert!(
        refused.error.unwrap().message.contains("ALLOWED_COMMANDS"),
        "the message names the variable that set the list"
    );
    // A second execute while one runs: -32602 "A process is already running".
    send(&mut client, execute(3, "sleep 30")).await;
    response(&mut client, 3).await;
    send(&mut client, execute(4, "echo again")).await;
    let busy = response(&mut client, 4).await;
    assert_eq!(error_code(&busy), -32602);
    let busy = busy.error.unwrap();
    assert_eq!(
        busy.message, "A process is already running",
        "cc_executor's exact words"
    );
    assert!(
        busy.data.unwrap()["pid"].is_u64(),
        "ccx's details ride in data"
    );
    // Unknown method: -32601.
    send(
        &mut client,
        json!({"jsonrpc": "2.0", "id": 5, "method": "nope"}),
    )
    .await;
    assert_eq!(error_code(&response(&mut client, 5).await), -32601);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_limit_is_32003_with_cc_executors_max_sessions() {
    let server = TestServer::start_with(&[("MAX_SESSIONS", "1")], &[]);
    let _first = server.client().await;
    match Client::connect(&server.options()).await {
        Err(ClientError::Rpc(e)) => {
            assert_eq!(e.code, -32003, "{}", e.message);
            assert!(e.message.contains("MAX_SESSIONS"), "{}", e.message);
        }
        Err(other) => panic!("expected -32003, got {other:?}"),
        Ok(_) => panic!("second session accepted over the limit"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hook_status_is_answered_and_pong_accepted() {
    let server = TestServer::start();
    let mut client = server.client().await;
    send(
        &mut client,
        json!({"jsonrpc": "2.0", "id": 1, "method": "hook_status"}),
    )
    .await;
    let status = response(&mut client, 1).await;
    assert!(status.error.is_none(), "{status:?}");
    assert_eq!(status.result.unwrap()["enabled"], false);
    // A pong notification gets no answer and no error; the next request is served.
    send(
        &mut client,
        json!({"jsonrpc": "2.0", "method": "pong", "params": {}}),
    )
    .await;
    send(&mut client, execute(2, "echo still")).await;
    let f = next(&mut client).await;
    assert_eq!(f.id, Some(json!(2)), "nothing answered the pong: {f:?}");
    assert!(f.error.is_none());
    // A pong with an id is accepted too.
    send(
        &mut client,
        json!({"jsonrpc": "2.0", "id": 3, "method": "pong"}),
    )
    .await;
    assert!(response(&mut client, 3).await.error.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_notifications_follow_the_heartbeat_interval() {
    for var in ["WEBSOCKET_HEARTBEAT_INTERVAL", "CCX_HEARTBEAT_INTERVAL"] {
        let server = TestServer::start_with(&[(var, "1")], &[]);
        let mut client = server.client().await;
        let start = Instant::now();
        let f = frame(&mut client).await;
        assert_eq!(f.method.as_deref(), Some("ping"), "{var}: {f:?}");
        assert!(f.id.is_none(), "a notification");
        assert!(f.params.unwrap()["timestamp"].as_f64().unwrap() > 1.6e9);
        let f = frame(&mut client).await;
        assert_eq!(f.method.as_deref(), Some("ping"));
        let two = start.elapsed();
        assert!(
            two >= Duration::from_millis(1500) && two < Duration::from_secs(5),
            "{var}: two pings after {two:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_as_a_numeric_string_is_accepted_and_a_bad_one_named() {
    let server = TestServer::start();
    let mut client = server.client().await;
    send(
        &mut client,
        json!({"jsonrpc": "2.0", "id": 1, "method": "execute",
               "params": {"command": "sleep 5", "timeout": "1"}}),
    )
    .await;
    assert!(response(&mut client, 1).await.error.is_none());
    let completed = loop {
        let f = next(&mut client).await;
        if f.method.as_deref() == Some("process.completed") {
            break f.params.unwrap();
        }
    };
    assert_eq!(completed["status"], "timed_out");
    send(
        &mut client,
        json!({"jsonrpc": "2.0", "id": 2, "method": "execute",
               "params": {"command": "echo x", "timeout": "soon"}}),
    )
    .await;
    let bad = response(&mut client, 2).await;
    assert_eq!(error_code(&bad), -32602);
    let message = bad.error.unwrap().message;
    assert!(
        message.contains("timeout") && message.contains("\"soon\""),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_healthz_and_ws_are_served_like_cc_executor() {
    let server = TestServer::start_with(&[("CCX_MAX_SESSIONS", "9")], &[]);
    let authority = format!("127.0.0.1:{}", server.port);
    let get = |path: &'static str| {
        let authority = authority.clone();
        async move {
            ccx::client::http::get(&authority, path, LONG)
                .await
                .unwrap()
        }
    };
    let healthz = get("/healthz").await;
    assert_eq!(healthz.status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&healthz.body).unwrap(),
        json!({"status": "ok"})
    );
    let _session = server.client().await;
    let health: Value = serde_json::from_str(&get("/health").await.body).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["service"], "ccx");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["active_sessions"], 1);
    assert_eq!(health["max_sessions"], 9);
    assert!(health["uptime_seconds"].as_f64().unwrap() >= 0.0);

    // /ws is the same endpoint as /ws/mcp.
    let ws = format!("ws://127.0.0.1:{}/ws", server.port);
    let mut client = Client::connect(&ConnectOptions::new(&ws)).await.unwrap();
    let out = outputs(&notifications(&mut client, "printf '1\\n2\\n'").await);
    assert_eq!(data(&out), ["1\n", "2\n"]);
    assert_eq!(get("/ws").await.status, 426, "plain GET on /ws");
}

#[tokio::test(flavor = "multi_thread")]
async fn ws_has_the_same_guards_as_ws_mcp() {
    let server = TestServer::start_with(&[("CCX_TOKEN", "s3cret")], &[]);
    for path in ["/ws", "/ws/mcp"] {
        let url = format!("ws://127.0.0.1:{}{path}", server.port);
        match Client::connect(&ConnectOptions::new(&url)).await {
            Err(ClientError::Http { status, .. }) => assert_eq!(status, 401, "{path}"),
            other => panic!("{path}: expected 401, got {:?}", other.map(|_| ())),
        }
        let with = ConnectOptions::new(&url).token(Some("s3cret".into()));
        assert!(Client::connect(&with).await.is_ok(), "{path}");
    }
}

#[test]
fn allowed_commands_alias_is_enforced_by_ccx_serve() {
    // Acceptance 4: `ALLOWED_COMMANDS=echo ccx serve --foreground`: `ls /` → -32001.
    let server = TestServer::start_with(&[("ALLOWED_COMMANDS", "echo")], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = server.client().await;
        send(&mut client, execute(1, "ls /")).await;
        assert_eq!(error_code(&response(&mut client, 1).await), -32001);
        let out = outputs(&notifications(&mut client, "echo allowed").await);
        assert_eq!(data(&out), ["allowed\n"]);
    });
}

#[test]
fn doctor_reports_alias_sources_and_warns_about_unsupported_variables() {
    let out = common::ccx_command()
        .args(["doctor", "--json", "--port", "0"])
        .env("MAX_SESSIONS", "12")
        .env("SESSION_TIMEOUT", "3600")
        .output()
        .expect("run ccx doctor");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let config = &report["steps"][0];
    assert_eq!(config["id"], "config");
    assert_eq!(config["status"], "warn", "{config}");
    let summary = config["summary"].as_str().unwrap();
    assert!(summary.contains("SESSION_TIMEOUT"), "{summary}");
    let detail: Vec<&str> = config["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        detail.iter().any(|d| d
            .contains("max_sessions from MAX_SESSIONS (cc_executor's name for CCX_MAX_SESSIONS)")),
        "{detail:?}"
    );
    assert!(detail.contains(&"port from --port"), "{detail:?}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "warnings do not fail the doctor"
    );
}
