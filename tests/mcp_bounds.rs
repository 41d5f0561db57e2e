//! `/mcp` bounded like the WebSocket, seen from a raw HTTP client against
//! the real server: a stateless tool call holds a slot of CCX_MAX_SESSIONS,
//! a result keeps only CCX_MCP_MAX_OUTPUT of a command's output (and the
//! server's memory stays near it), and an authorized call in flight is
//! never the connection a flood of idle sockets evicts (CCX_MAX_PENDING).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{eventually, http, peak_rss, pids_with_cmdline, TestServer};
use serde_json::{json, Value};

/// A `tools/call` of `execute` outside any session (the handshake-less
/// revision: protocol version and capabilities in `_meta`).
fn stateless_call(port: u16, id: u64, command: &str) -> (u16, String, String) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": "execute", "arguments": {"command": command},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    }}});
    http(
        port,
        "POST",
        "/mcp",
        &[
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "execute"),
        ],
        &body.to_string(),
    )
}

/// The JSON-RPC message of a response body, plain JSON or one SSE event.
fn message(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str(body) {
        return v;
    }
    let data: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .filter(|d| d.starts_with('{'))
        .collect();
    serde_json::from_str(&data)
        .unwrap_or_else(|e| panic!("no JSON-RPC message ({e}) in {body:.500}"))
}

fn active_sessions(port: u16) -> u64 {
    let (status, _, body) = http(port, "GET", "/health", &[], "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["active_sessions"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stateless_mcp_calls_hold_a_session_slot() {
    let server = TestServer::start_with(&[("CCX_MAX_SESSIONS", "1")], &[]);
    let port = server.port;

    // The one slot is held by a WebSocket session: a stateless call is
    // refused as a second session would be.
    let websocket = server.client().await;
    let (status, head, body) =
        tokio::task::spawn_blocking(move || stateless_call(port, 7, "echo ran-over-the-limit"))
            .await
            .unwrap();
    assert_eq!(status, 503, "{head}{body}");
    assert!(head.contains("retry-after:"), "{head}");
    let refusal = message(&body);
    assert_eq!(refusal["error"]["code"], -32003, "{body}");
    assert_eq!(refusal["id"], 7, "{body}");
    assert!(!body.contains("ran-over-the-limit\\n"), "{body}");
    drop(websocket);
    assert!(
        eventually(Duration::from_secs(5), || active_sessions(port) == 0),
        "the WebSocket session still counts"
    );

    // A running stateless call holds the slot: a second call, and a
    // WebSocket session, are refused until it has answered.
    let marker = "stateless-call-holding-the-slot";
    let first =
        std::thread::spawn(move || stateless_call(port, 1, &format!("sleep 2; echo {marker}")));
    assert!(
        eventually(Duration::from_secs(10), || !pids_with_cmdline(marker)
            .is_empty()),
        "the first call's command did not start"
    );
    assert_eq!(active_sessions(port), 1);
    let (status, head, body) = stateless_call(port, 2, "echo second");
    assert_eq!(status, 503, "{head}{body}");
    assert_eq!(message(&body)["error"]["code"], -32003, "{body}");
    match ccx::client::Client::connect(&server.options()).await {
        Err(ccx::client::ClientError::Rpc(e)) => assert_eq!(e.code, -32003, "{}", e.message),
        Err(other) => panic!("expected -32003, got {other:?}"),
        Ok(_) => panic!("a WebSocket session was accepted beside a running /mcp call"),
    }
    let (status, _, body) = first.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(marker), "{body}");
    // Answered: the slot is free again.
    assert!(
        eventually(Duration::from_secs(5), || active_sessions(port) == 0),
        "the finished call still holds its slot"
    );
    let (status, _, body) = stateless_call(port, 3, "echo third");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn mcp_output_keeps_head_and_tail_within_its_own_limit_and_bounded_memory() {
    let server = TestServer::start();
    let port = server.port;
    let before = peak_rss(server.pid()).expect("server VmHWM");
    // 32 MiB of output between a first and a last line.
    let command = "echo FIRST-LINE; head -c 33554432 /dev/zero | tr '\\0' x; echo; echo LAST-LINE";
    let (status, _, body) = stateless_call(port, 1, command);
    assert_eq!(status, 200, "{body:.300}");
    let after = peak_rss(server.pid()).expect("server VmHWM");
    let result = &message(&body)["result"];
    let text = result["content"][0]["text"].as_str().expect("output text");
    assert!(text.starts_with("FIRST-LINE\n"), "{:.100}", text);
    assert!(
        text.ends_with("LAST-LINE\n"),
        "{}",
        &text[text.len().saturating_sub(100)..]
    );
    assert!(text.contains("bytes of output left out"), "no marker");
    assert!(
        text.contains("CCX_MCP_MAX_OUTPUT"),
        "the marker names the limit"
    );
    // The default limit is 1 MiB: head and tail, plus the marker.
    assert!(text.len() <= 1024 * 1024 + 256, "{} bytes kept", text.len());
    assert!(text.len() >= 1024 * 1024 - 8, "{} bytes kept", text.len());
    assert_eq!(
        result["structuredContent"]["truncated"], true,
        "{result:.300}"
    );
    let grew = after.saturating_sub(before);
    eprintln!(
        "peak RSS: {} KiB before, {} KiB after 32 MiB of output (+{} KiB)",
        before / 1024,
        after / 1024,
        grew / 1024
    );
    assert!(
        grew < 16 * 1024 * 1024,
        "32 MiB of output raised the server's peak RSS by {} KiB",
        grew / 1024
    );

    // Its own limit: a smaller one keeps less.
    drop(server);
    let server = TestServer::start_with(&[("CCX_MCP_MAX_OUTPUT", "1KiB")], &[]);
    let (status, _, body) = stateless_call(server.port, 2, "seq 1 10000");
    assert_eq!(status, 200, "{body:.300}");
    let text = message(&body)["result"]["content"][0]["text"]
        .as_str()
        .expect("output text")
        .to_string();
    assert!(text.starts_with("1\n2\n3\n"), "{text}");
    assert!(text.ends_with("9999\n10000\n"), "{text}");
    assert!(text.len() < 1024 + 256, "{text}");
}

#[test]
fn idle_sockets_never_evict_an_authorized_mcp_call_in_flight() {
    let server = TestServer::start_with(&[("CCX_MAX_PENDING", "8")], &[]);
    let port = server.port;
    let marker = "authorized-call-outlives-idle-sockets";
    let call =
        std::thread::spawn(move || stateless_call(port, 1, &format!("sleep 2; echo {marker}")));
    assert!(
        eventually(Duration::from_secs(10), || !pids_with_cmdline(marker)
            .is_empty()),
        "the call's command did not start"
    );
    // A request whose body never comes stays evictable: only a whole
    // authorized request takes a connection out of reach. Its `100
    // Continue` says the server has read its head and waits for the body.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\
             Expect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match slow.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            other => panic!(
                "no 100 Continue: {other:?} {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // 20 silent connections: more than CCX_MAX_PENDING, so the oldest
    // pending ones are refused (503) and closed. The call's connection is
    // not pending.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let (status, head, body) = call.join().unwrap();
    assert_eq!(status, 200, "the call was cut: {head}{body}");
    assert!(body.contains(marker), "{body}");
    // The flood was capped: the oldest idle sockets were refused and closed.
    let refused = |s: &mut TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let read = s.read_to_end(&mut answer);
        read.is_ok() && answer.starts_with(b"HTTP/1.1 503")
    };
    let closed = idle
        .into_iter()
        .filter(|s| refused(&mut s.try_clone().unwrap()))
        .count();
    assert!(
        closed >= 12,
        "only {closed} of 20 idle sockets were dropped"
    );
    assert!(
        refused(&mut slow),
        "the request without its body was not refused"
    );
    drop(server);
}
