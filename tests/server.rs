//! The server over the wire: the real `ccx serve --foreground` on port 0,
//! driven by the library `Client`, checked against /proc.

mod common;

use std::time::{Duration, Instant};

use ccx::client::{Client, ClientError, ConnectOptions, Event};
use ccx::protocol::{CompletionStatus, ControlType, ExecuteParams, StreamKind};
use common::{eventually, live_members, peak_rss, state, TestServer};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const LONG: Duration = Duration::from_secs(30);

async fn next(client: &mut Client) -> Event {
    timeout(LONG, client.next_event())
        .await
        .expect("event within deadline")
        .expect("event")
}

async fn completion(client: &mut Client) -> ccx::protocol::Completed {
    loop {
        if let Event::Completed(c) = next(client).await {
            return c;
        }
    }
}

/// The next frame that answers a request (skipping notifications).
async fn next_reply(client: &mut Client) -> ccx::protocol::Frame {
    loop {
        let frame = timeout(LONG, client.next_frame())
            .await
            .expect("reply in time")
            .expect("frame");
        if frame.method.is_none() {
            return frame;
        }
    }
}

/// Runs `sh -c 'sleep 300 & sleep 300'` and waits until its group has all
/// three processes (the shell and both sleeps).
async fn start_two_sleeps(client: &mut Client) -> ccx::protocol::ProcessStatus {
    let started = client
        .execute(&exec("sh -c 'sleep 300 & sleep 300'"))
        .await
        .unwrap();
    let all_three = || live_members(started.pgid.unwrap()).len() >= 3;
    assert!(
        eventually(Duration::from_secs(5), all_three),
        "the group did not start"
    );
    started
}

fn exec(command: &str) -> ExecuteParams {
    ExecuteParams::command(command)
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_announces_session_version_and_capabilities() {
    let server = TestServer::start();
    let client = server.client().await;
    assert!(!client.connected.session_id.is_empty());
    assert_eq!(client.connected.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        client.connected.capabilities,
        ["execute", "control", "stream", "batched_output"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_streams_result_started_output_completed_in_order() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let started = client.execute(&exec("echo hi")).await.unwrap();
    assert_eq!(started.status, "started");
    assert!(started.pid > 0);
    assert_eq!(
        started.pgid.unwrap(),
        started.pid,
        "the command leads its own group"
    );
    assert_eq!(next(&mut client).await, Event::Started(started.clone()));
    match next(&mut client).await {
        Event::Output(o) => {
            assert_eq!(
                (o.stream, o.data.as_text(), o.truncated, o.lossy),
                (StreamKind::Stdout, Some("hi\n"), false, false)
            )
        }
        other => panic!("expected output, got {other:?}"),
    }
    match next(&mut client).await {
        Event::Completed(c) => {
            assert_eq!(c.status, CompletionStatus::Completed);
            assert_eq!(
                (c.exit_code, c.signal, c.pid, c.pgid.unwrap()),
                (0, None, started.pid, started.pgid.unwrap())
            );
            assert!(c.duration_ms.unwrap() < 5_000);
        }
        other => panic!("expected completion, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_status_and_signal_are_reported_like_python_clients_expect() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let c = client.run(&exec("exit 7")).await.unwrap().completed;
    assert_eq!(
        (c.status, c.exit_code, c.signal),
        (CompletionStatus::Failed, 7, None)
    );
    let c = client.run(&exec("kill -9 $$")).await.unwrap().completed;
    assert_eq!(
        (c.status, c.exit_code, c.signal),
        (CompletionStatus::Failed, -9, Some(9))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_keep_their_type_and_their_order() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let script = "i=0; while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done";
    let outcome = client.run(&exec(script)).await.unwrap();
    let expected = |prefix: &str| {
        (0..300)
            .map(|i| format!("{prefix}{i}\n"))
            .collect::<String>()
    };
    assert_eq!(outcome.stdout, expected("out"));
    assert_eq!(outcome.stderr, expected("err"));
    assert_eq!(outcome.completed.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_megabyte_line_arrives_whole_with_bounded_server_memory() {
    let server = TestServer::start_with(&[("CCX_MAX_OUTPUT", "256MiB")], &[]);
    let mut client = server.client().await;
    let start = Instant::now();
    client
        .execute(&exec("head -c 100000000 /dev/zero | tr '\\0' a"))
        .await
        .unwrap();
    let mut bytes = 0usize;
    let mut all_a = true;
    let mut chunks = 0u32;
    let mut last_truncated = true;
    let completed = loop {
        match next(&mut client).await {
            Event::Output(o) => {
                assert_eq!(o.stream, StreamKind::Stdout);
                assert_eq!(o.chunk_index, Some(chunks), "chunks numbered in order");
                assert!(o.data.len() <= 65536);
                chunks += 1;
                last_truncated = o.truncated;
                all_a &= o.data.as_bytes().iter().all(|&b| b == b'a');
                bytes += o.data.len();
            }
            Event::Completed(c) => break c,
            _ => {}
        }
    };
    let elapsed = start.elapsed();
    assert_eq!(completed.exit_code, 0);
    assert_eq!(bytes, 100_000_000);
    assert!(all_a);
    assert!(!last_truncated, "the line's last chunk ends it");
    let rss = peak_rss(server.pid()).expect("server VmHWM");
    eprintln!(
        "100 MB line: {:.1} MB/s end to end, server peak RSS {:.1} MB",
        100.0 / elapsed.as_secs_f64(),
        rss as f64 / 1e6
    );
    assert!(rss < 64 * 1024 * 1024, "server peak RSS {rss} bytes");
}

/// A figure (run it with `--release -- --ignored --nocapture`): 100 MB of
/// 100-byte lines, one `process.output` per line, through the server to a
/// client that parses every message into the typed `Output` (serde derive
/// straight from the text, as a streaming client would; `Client::next_event`
/// goes through `serde_json::Value` and costs more than the server).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a figure: cargo test --release --test server hundred_megabyte_in_lines -- --ignored --nocapture"]
async fn hundred_megabyte_in_lines_streams_one_message_per_line() {
    use futures_util::{SinkExt, StreamExt};

    #[derive(serde::Deserialize)]
    struct Typed {
        method: Option<String>,
        params: Option<ccx::protocol::Output>,
    }

    let server = TestServer::start_with(&[("CCX_MAX_OUTPUT", "256MiB")], &[]);
    let mut socket = Client::open(&server.options()).await.unwrap();
    let connected = timeout(LONG, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(connected.to_text().unwrap().contains("connected"));
    let line = "l".repeat(99);
    let start = Instant::now();
    let request = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "execute",
        "params": {"command": format!("yes {line} | head -n 1000000")}});
    socket
        .send(Message::text(request.to_string()))
        .await
        .unwrap();
    let (mut bytes, mut messages, mut whole_lines) = (0usize, 0usize, true);
    let completed = loop {
        let message = timeout(LONG, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        match serde_json::from_str::<Typed>(&text) {
            Ok(Typed {
                method: Some(m),
                params: Some(o),
            }) if m == "process.output" => {
                whole_lines &= o.data.len() == 100 && o.data.as_bytes().ends_with(b"\n");
                bytes += o.data.len();
                messages += 1;
            }
            Ok(_) => {}
            Err(_) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["method"] == "process.completed" {
                    break frame["params"].clone();
                }
            }
        }
    };
    let elapsed = start.elapsed();
    assert_eq!(completed["exit_code"], 0);
    assert_eq!((messages, bytes), (1_000_000, 100_000_000));
    assert!(whole_lines, "every message is one 100-byte line");
    let rss = peak_rss(server.pid()).expect("server VmHWM");
    eprintln!(
        "100 MB in 100-byte lines: {:.1} MB/s end to end ({:.0} messages/s), server peak RSS {:.1} MB",
        100.0 / elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        rss as f64 / 1e6
    );
    assert!(rss < 64 * 1024 * 1024, "server peak RSS {rss} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_that_does_not_read_slows_the_process_not_the_server_memory() {
    let server = TestServer::start_with(&[("CCX_MAX_OUTPUT", "1GiB")], &[]);
    let mut client = server.client().await;
    let started = client
        .execute(&exec("head -c 300000000 /dev/zero | tr '\\0' b"))
        .await
        .unwrap();
    // Not reading: the producer must block on its full pipe, not finish.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !live_members(started.pgid.unwrap()).is_empty(),
        "the producer finished although nobody read its output"
    );
    let rss = peak_rss(server.pid()).unwrap();
    assert!(
        rss < 64 * 1024 * 1024,
        "server buffered output: peak RSS {rss} bytes"
    );
    client.control(ControlType::Cancel).await.unwrap();
    assert_eq!(
        completion(&mut client).await.status,
        CompletionStatus::Canceled
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn output_cap_truncates_once_and_the_process_still_completes() {
    let server = TestServer::start_with(&[("CCX_MAX_OUTPUT", "1000")], &[]);
    let mut client = server.client().await;
    let outcome = client
        .run(&exec(
            "head -c 500000 /dev/zero | tr '\\0' x; echo done >&2",
        ))
        .await
        .unwrap();
    assert_eq!(outcome.stdout.len() + outcome.stderr.len(), 1000);
    assert!(outcome.truncated);
    assert_eq!(outcome.completed.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn multibyte_output_reassembles_byte_exact_and_invalid_bytes_are_flagged() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let command = "yes 'aé€😀' | head -n 300000";
    let outcome = client.run(&exec(command)).await.unwrap();
    let local = std::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(outcome.stdout.len(), local.len());
    assert!(
        outcome.stdout.as_bytes() == local.as_slice(),
        "reassembled output differs"
    );
    assert!(!outcome.lossy);

    let outcome = client
        .run(&exec("printf 'ok\\377\\376ok\\n'"))
        .await
        .unwrap();
    assert_eq!(outcome.stdout, "ok\u{fffd}\u{fffd}ok\n");
    assert!(outcome.lossy);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_the_whole_process_group() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let started = start_two_sleeps(&mut client).await;
    let result = client.control(ControlType::Cancel).await.unwrap();
    assert_eq!(result.status, "canceled");
    let c = completion(&mut client).await;
    assert_eq!(c.status, CompletionStatus::Canceled);
    assert!(
        eventually(Duration::from_secs(2), || live_members(
            started.pgid.unwrap()
        )
        .is_empty()),
        "left: {:?}",
        live_members(started.pgid.unwrap())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_stops_the_group_and_resume_continues_it() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let started = start_two_sleeps(&mut client).await;
    assert_eq!(
        client.control(ControlType::Pause).await.unwrap().status,
        "paused"
    );
    let all_stopped = || {
        let m = live_members(started.pgid.unwrap());
        !m.is_empty() && m.iter().all(|&p| state(p) == Some('T'))
    };
    assert!(
        eventually(Duration::from_secs(5), all_stopped),
        "not all stopped"
    );
    assert_eq!(
        client.control(ControlType::Resume).await.unwrap().status,
        "resumed"
    );
    let none_stopped = || {
        live_members(started.pgid.unwrap())
            .iter()
            .all(|&p| state(p) != Some('T'))
    };
    assert!(
        eventually(Duration::from_secs(5), none_stopped),
        "still stopped"
    );
    // Cancelling a paused group works too.
    client.control(ControlType::Pause).await.unwrap();
    client.control(ControlType::Cancel).await.unwrap();
    assert_eq!(
        completion(&mut client).await.status,
        CompletionStatus::Canceled
    );
    assert!(eventually(Duration::from_secs(2), || live_members(
        started.pgid.unwrap()
    )
    .is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_ends_the_group_as_timed_out() {
    let server = TestServer::start_with(&[("CCX_KILL_GRACE", "1")], &[]);
    let mut client = server.client().await;
    let begin = Instant::now();
    let params = ExecuteParams {
        timeout: Some(1.0),
        ..exec("sleep 300")
    };
    let started = client.execute(&params).await.unwrap();
    let c = completion(&mut client).await;
    assert_eq!(c.status, CompletionStatus::TimedOut);
    assert_eq!((c.exit_code, c.signal), (-15, Some(15)));
    assert!(
        begin.elapsed() < Duration::from_secs(3),
        "took {:?}",
        begin.elapsed()
    );
    assert!(live_members(started.pgid.unwrap()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ignoring_command_is_killed_after_the_grace_period() {
    let server = TestServer::start_with(&[("CCX_KILL_GRACE", "300ms")], &[]);
    let mut client = server.client().await;
    let started = client
        .execute(&exec("trap '' TERM; echo armed; sleep 300"))
        .await
        .unwrap();
    loop {
        if let Event::Output(o) = next(&mut client).await {
            assert_eq!(o.data.as_text(), Some("armed\n"));
            break;
        }
    }
    client.control(ControlType::Cancel).await.unwrap();
    let c = completion(&mut client).await;
    assert_eq!((c.status, c.signal), (CompletionStatus::Canceled, Some(9)));
    assert!(eventually(Duration::from_secs(2), || live_members(
        started.pgid.unwrap()
    )
    .is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_ends_the_group_within_a_second() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let started = start_two_sleeps(&mut client).await;
    drop(client); // the TCP connection closes without a close frame
    assert!(
        eventually(Duration::from_secs(1), || live_members(
            started.pgid.unwrap()
        )
        .is_empty()),
        "left: {:?}",
        live_members(started.pgid.unwrap())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_process_per_session_and_control_needs_a_process() {
    let server = TestServer::start();
    let mut client = server.client().await;
    match client.control(ControlType::Pause).await {
        Err(ClientError::Rpc(e)) => assert_eq!(e.code, -32002, "no process: {}", e.message),
        other => panic!("expected -32002, got {other:?}"),
    }
    client.execute(&exec("sleep 300")).await.unwrap();
    match client.execute(&exec("echo second")).await {
        Err(ClientError::Rpc(e)) => {
            assert_eq!(e.code, -32602, "{}", e.message);
            assert!(
                e.message.starts_with("A process is already running"),
                "{}",
                e.message
            );
        }
        other => panic!("expected -32602, got {other:?}"),
    }
    client.control(ControlType::Cancel).await.unwrap();
    completion(&mut client).await;
    // Once completed, the session runs the next command.
    assert_eq!(
        client.run(&exec("echo again")).await.unwrap().stdout,
        "again\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_error_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let cases: Vec<(&str, Message, i64)> = vec![
        ("not JSON", Message::text("this is not json"), -32700),
        ("empty frame", Message::text(""), -32700),
        ("JSON array", Message::text("[1, 2, 3]"), -32600),
        (
            "missing jsonrpc",
            Message::text(r#"{"id":1,"method":"execute","params":{"command":"echo"}}"#),
            -32600,
        ),
        (
            "missing method",
            Message::text(r#"{"jsonrpc":"2.0","id":2}"#),
            -32600,
        ),
        (
            "unknown method",
            Message::text(r#"{"jsonrpc":"2.0","id":3,"method":"launch"}"#),
            -32601,
        ),
        (
            "execute without command",
            Message::text(r#"{"jsonrpc":"2.0","id":4,"method":"execute","params":{}}"#),
            -32602,
        ),
        (
            "command not a string",
            Message::text(r#"{"jsonrpc":"2.0","id":5,"method":"execute","params":{"command":42}}"#),
            -32602,
        ),
        (
            "negative timeout",
            Message::text(
                r#"{"jsonrpc":"2.0","id":6,"method":"execute","params":{"command":"echo","timeout":-1}}"#,
            ),
            -32602,
        ),
        (
            "unknown control",
            Message::text(
                r#"{"jsonrpc":"2.0","id":7,"method":"control","params":{"type":"STOP"}}"#,
            ),
            -32602,
        ),
        ("binary frame", Message::binary(vec![0u8, 1, 2]), -32600),
        (
            "missing cwd",
            Message::text(
                r#"{"jsonrpc":"2.0","id":8,"method":"execute","params":{"command":"echo","cwd":"/no/such/dir"}}"#,
            ),
            -32602,
        ),
    ];
    for (what, message, code) in cases {
        client.send_message(message).await.unwrap();
        let reply = next_reply(&mut client).await;
        let error = reply
            .error
            .clone()
            .unwrap_or_else(|| panic!("{what}: no error in {reply:?}"));
        assert_eq!(error.code, code, "{what}: {}", error.message);
        assert!(!error.message.is_empty());
    }
    assert_eq!(
        client.run(&exec("echo still here")).await.unwrap().stdout,
        "still here\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_message_closes_with_1009_and_others_are_still_served() {
    let server = TestServer::start_with(&[("WS_MAX_SIZE", "64KiB")], &[]);
    let mut big = server.client().await;
    let mut other = server.client().await;
    let command = "x".repeat(100 * 1024);
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"execute","params":{{"command":"{command}"}}}}"#
    );
    big.send_text(&huge).await.unwrap();
    match timeout(LONG, big.next_frame()).await.unwrap() {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, Some(1009)),
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_eq!(
        other.run(&exec("echo fine")).await.unwrap().stdout,
        "fine\n"
    );
    assert_eq!(
        server
            .client()
            .await
            .run(&exec("echo new"))
            .await
            .unwrap()
            .stdout,
        "new\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_within_two_seconds_and_ends_running_commands() {
    let mut server = TestServer::start();
    let mut client = server.client().await;
    let started = start_two_sleeps(&mut client).await;
    let begin = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("server exited");
    let took = begin.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        server.stderr()
    );
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert!(live_members(started.pgid.unwrap()).is_empty());
    // The client saw its command end and the session close with 1001.
    let mut saw_completed = false;
    let close = loop {
        match timeout(LONG, client.next_frame()).await.unwrap() {
            Ok(f) if f.method.as_deref() == Some("process.completed") => saw_completed = true,
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(saw_completed);
    assert!(
        matches!(
            close,
            ClientError::Closed {
                code: Some(1001),
                ..
            }
        ),
        "{close:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn escaped_descendants_are_reaped_not_left_as_zombies() {
    let server = TestServer::start();
    let mut client = server.client().await;
    // setsid puts the sleep in a session of its own: it escapes the group and,
    // when its parent shell exits, is re-parented to the (subreaper) server.
    let outcome = client
        .run(&exec(
            "setsid sh -c 'sleep 0.3' </dev/null >/dev/null 2>&1 & echo ok",
        ))
        .await
        .unwrap();
    assert_eq!(outcome.stdout, "ok\n");
    let children = || common::children_of(server.pid());
    assert!(
        eventually(Duration::from_secs(5), || children().is_empty()),
        "children of the server: {:?}",
        children()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_json_and_unknown_paths_are_404() {
    let server = TestServer::start();
    let authority = format!("127.0.0.1:{}", server.port);
    let health = ccx::client::http::get(&authority, "/health", LONG)
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    let body: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["service"], "ccx");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    for field in ["active_sessions", "max_sessions", "uptime_seconds"] {
        assert!(body[field].is_number(), "{field}: {body}");
    }
    let missing = ccx::client::http::get(&authority, "/nope", LONG)
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    let plain = ccx::client::http::get(&authority, "/ws/mcp", LONG)
        .await
        .unwrap();
    assert_eq!(
        plain.status, 426,
        "plain GET on the WebSocket path: {}",
        plain.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_limit_answers_32003() {
    let server = TestServer::start_with(&[("CCX_MAX_SESSIONS", "1")], &[]);
    let _first = server.client().await;
    match Client::connect(&server.options()).await {
        Err(ClientError::Rpc(e)) => assert_eq!(e.code, -32003, "{}", e.message),
        Err(other) => panic!("expected -32003, got {other:?}"),
        Ok(_) => panic!("second session accepted over the limit"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_required_when_set() {
    let server = TestServer::start_with(&[("CCX_TOKEN", "s3cret")], &[]);
    match Client::connect(&server.options()).await {
        Err(ClientError::Http { status, .. }) => assert_eq!(status, 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let wrong = ConnectOptions::new(&server.url).token(Some("nope".into()));
    assert!(matches!(
        Client::connect(&wrong).await,
        Err(ClientError::Http { status: 401, .. })
    ));
    let right = ConnectOptions::new(&server.url).token(Some("s3cret".into()));
    assert_eq!(
        Client::connect(&right)
            .await
            .unwrap()
            .run(&exec("echo in"))
            .await
            .unwrap()
            .stdout,
        "in\n"
    );
    let query = ConnectOptions::new(format!("{}?token=s3cret", server.url));
    assert!(Client::connect(&query).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn allowlist_refuses_other_programs_with_32001() {
    let server = TestServer::start_with(&[("CCX_ALLOWED_COMMANDS", "echo")], &[]);
    let mut client = server.client().await;
    assert_eq!(
        client.run(&exec("echo allowed")).await.unwrap().stdout,
        "allowed\n"
    );
    for refused in ["ls /", "echo a; ls /", "echo $(ls)"] {
        match client.execute(&exec(refused)).await {
            Err(ClientError::Rpc(e)) => assert_eq!(e.code, -32001, "{refused}: {}", e.message),
            other => panic!("{refused}: expected -32001, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cwd_and_env_reach_the_command_and_stdin_is_empty() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let dir = tempfile::tempdir().unwrap();
    let params = ExecuteParams {
        cwd: Some(dir.path().to_string_lossy().into_owned()),
        env: Some([("CCX_TEST_VALUE".to_string(), "42".to_string())].into()),
        ..exec("pwd; echo $CCX_TEST_VALUE; cat; echo end")
    };
    let outcome = client.run(&params).await.unwrap();
    let canonical = dir.path().canonicalize().unwrap();
    assert_eq!(
        outcome.stdout,
        format!("{}\n42\nend\n", canonical.display())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_info_reports_the_environment_fingerprint() {
    let server = TestServer::start_with(&[("CCX_MAX_SESSIONS", "7"), ("CCX_SHELL", "sh")], &[]);
    let mut client = server.client().await;
    let info = client
        .info(&["sh".to_string(), "no-such-program-ccx".to_string()])
        .await
        .unwrap();
    assert_eq!(info.ccx_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.os, "linux");
    assert_eq!(info.pid, server.pid());
    assert_eq!(info.shell, "sh");
    assert!(info.shell_resolved.is_some());
    assert!(!info.path.is_empty());
    assert!(info.env_names.iter().any(|n| n == "CCX_MAX_SESSIONS"));
    assert_eq!(info.limits.max_sessions, 7);
    assert!(info.binaries["sh"].is_some());
    assert_eq!(info.binaries["no-such-program-ccx"], None);
    assert!(info.rlimits.open_files.soft.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_health_needs_the_token_when_one_is_set() {
    let server = TestServer::start_with(&[("CCX_TOKEN", "s3cret")], &[]);
    let authority = format!("127.0.0.1:{}", server.port);
    let plain = ccx::client::http::get(&authority, "/health", LONG)
        .await
        .unwrap();
    assert_eq!(plain.status, 200);
    let refused = ccx::client::http::get(&authority, "/health?verbose=1", LONG)
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    let verbose = ccx::client::http::get(&authority, "/health?verbose=1&token=s3cret", LONG)
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&verbose.body).unwrap();
    assert_eq!(body["info"]["limits"]["token_required"], true);
    assert!(
        !body.to_string().contains("s3cret"),
        "the fingerprint must not leak values"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stuck_client_is_dropped_after_the_ping_timeout_and_its_group_ended() {
    let env = [
        ("WS_PING_INTERVAL", "500ms"),
        ("WS_PING_TIMEOUT", "1"),
        ("CCX_MAX_OUTPUT", "1GiB"),
        ("RUST_LOG", "debug"),
    ];
    let server = TestServer::start_with(&env, &[]);
    let mut client = server.client().await;
    let started = client
        .execute(&exec("head -c 500000000 /dev/zero | tr '\\0' c"))
        .await
        .unwrap();
    // The client never reads again: no pongs, and the socket fills up.
    assert!(
        eventually(Duration::from_secs(5), || live_members(
            started.pgid.unwrap()
        )
        .is_empty()),
        "the group of a stuck client is still running: {:?}\n{}",
        live_members(started.pgid.unwrap()),
        server.stderr()
    );
    drop(client);
    assert_eq!(
        server
            .client()
            .await
            .run(&exec("echo alive"))
            .await
            .unwrap()
            .stdout,
        "alive\n"
    );
}
