//! `/livez`, `/readyz` and the SIGTERM drain, against the real binary on
//! port 0: what a Kubernetes kubelet and Service would see.

mod common;

use std::time::{Duration, Instant};

use ccx::client::{http, Client, ClientError, ConnectOptions, Event};
use ccx::protocol::{CompletionStatus, ExecuteParams};
use ccx::server::probes::{Liveness, Readiness};
use common::{live_members, TestServer};
use nix::sys::signal::Signal;
use tokio::time::timeout;

const LONG: Duration = Duration::from_secs(10);

async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let response = http::get(&format!("127.0.0.1:{}", server.port), path, LONG)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (response.status, response.body)
}

async fn readiness(server: &TestServer) -> (u16, Readiness) {
    let (status, body) = get(server, "/readyz").await;
    let parsed = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, parsed)
}

async fn liveness(server: &TestServer) -> u16 {
    let (status, body) = get(server, "/livez").await;
    let parsed: Liveness = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(parsed.status, "alive");
    status
}

/// Polls `/readyz` until it answers `want`, within `deadline`.
async fn readiness_becomes(server: &TestServer, want: u16, deadline: Duration) -> Readiness {
    let begin = Instant::now();
    loop {
        let (status, body) = readiness(server).await;
        if status == want {
            return body;
        }
        assert!(
            begin.elapsed() < deadline,
            "/readyz still {status} after {deadline:?}: {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn exec(command: &str) -> ExecuteParams {
    ExecuteParams {
        command: command.into(),
        ..Default::default()
    }
}

/// Collects a command's stdout (the concatenated `data` of its output
/// notifications) until its completion.
async fn finish(client: &mut Client) -> (String, ccx::protocol::Completed) {
    let mut stdout = String::new();
    loop {
        match timeout(LONG, client.next_event()).await {
            Ok(Ok(Event::Output(o))) if o.stream == ccx::protocol::StreamKind::Stdout => {
                stdout.push_str(&o.data.to_text())
            }
            Ok(Ok(Event::Completed(done))) => return (stdout, done),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the session ended before process.completed: {e}"),
            Err(_) => panic!("no process.completed within {LONG:?}"),
        }
    }
}

/// Reads frames until the session closes; returns the close code.
async fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match timeout(LONG, client.next_frame()).await {
            Ok(Ok(_)) => {}
            Ok(Err(ClientError::Closed { code, .. })) => return code,
            Ok(Err(e)) => panic!("expected a close frame, got {e}"),
            Err(_) => panic!("the session was not closed within {LONG:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_server_is_live_and_ready() {
    let server = TestServer::start();
    assert_eq!(liveness(&server).await, 200);
    let (status, ready) = readiness(&server).await;
    assert_eq!(status, 200, "{ready:?}");
    assert_eq!(ready.status, "ready");
    assert!(ready.reasons.is_empty() && ready.shell_ok && !ready.draining);
    assert_eq!((ready.sessions, ready.max_sessions), (0, 256));
    // /health keeps answering beside the probes.
    assert_eq!(get(&server, "/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_session_limit_readiness_fails_while_liveness_holds() {
    let server = TestServer::start_with(&[("CCX_MAX_SESSIONS", "2")], &[]);
    let first = server.client().await;
    let (status, ready) = readiness(&server).await;
    assert_eq!((status, ready.sessions), (200, 1), "{ready:?}");
    let second = server.client().await;
    let ready = readiness_becomes(&server, 503, LONG).await;
    assert_eq!((ready.sessions, ready.max_sessions), (2, 2));
    assert!(
        ready.reasons.iter().any(|r| r.contains("CCX_MAX_SESSIONS")),
        "{ready:?}"
    );
    assert!(!ready.draining && ready.shell_ok);
    assert_eq!(liveness(&server).await, 200);

    second.close().await;
    let ready = readiness_becomes(&server, 200, LONG).await;
    assert_eq!(ready.sessions, 1);
    first.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_that_cannot_run_a_command_makes_the_server_not_ready() {
    // An executable file, so the server starts, but `false -c :` exits 1:
    // every command would fail, so no session should be routed here.
    let server = TestServer::start_with(&[("CCX_SHELL", "/bin/false")], &[]);
    let (status, ready) = readiness(&server).await;
    assert_eq!(status, 503, "{ready:?}");
    assert!(!ready.shell_ok);
    assert!(
        ready.reasons.iter().any(|r| r.contains("/bin/false")),
        "{ready:?}"
    );
    assert_eq!(liveness(&server).await, 200);
    // The verdict is cached: a probe soon after reads it instead of spawning again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, again) = readiness(&server).await;
    assert!(again.shell_checked_ms_ago >= 200, "{again:?}");
    assert!(!again.shell_ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_running_commands_refuses_new_sessions_and_exits_0_early() {
    let drain = Duration::from_secs(10);
    let mut server = TestServer::start_with(&[("CCX_DRAIN_PERIOD", "10s")], &[]);
    let mut busy = server.client().await;
    let started = busy.execute(&exec("sleep 2; echo done")).await.unwrap();
    let mut idle = server.client().await;
    assert_eq!(readiness(&server).await.0, 200);

    let begin = Instant::now();
    server.signal(Signal::SIGTERM);
    let ready = readiness_becomes(&server, 503, Duration::from_secs(2)).await;
    let not_ready_after = begin.elapsed();
    assert!(ready.draining, "{ready:?}");
    assert!(ready.reasons.iter().any(|r| r.contains("draining")));
    // Still draining: the command has not finished yet.
    assert!(!live_members(started.pgid.unwrap()).is_empty());
    assert_eq!(liveness(&server).await, 200);

    match Client::connect(&ConnectOptions::new(&server.url)).await {
        Err(ClientError::Http { status: 503, body }) => {
            assert!(body.contains("draining"), "{body}")
        }
        Err(e) => panic!("expected HTTP 503, got {e}"),
        Ok(_) => panic!("a new session was accepted while draining"),
    }
    // The idle session is closed at once ("going away": reconnect elsewhere).
    assert_eq!(close_code(&mut idle).await, Some(1001));

    let (stdout, done) = finish(&mut busy).await;
    assert_eq!(stdout, "done\n");
    assert_eq!(done.status, CompletionStatus::Completed);
    assert_eq!(done.exit_code, 0);
    assert_eq!(close_code(&mut busy).await, Some(1001));

    let status = server.wait_exit(drain).expect("the server exited");
    let exited_after = begin.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        server.stderr()
    );
    assert!(
        exited_after < drain,
        "exited after {exited_after:?}, not before the drain period"
    );
    eprintln!(
        "drain: /readyz 503 after {not_ready_after:?}, exit 0 after {exited_after:?} \
         (command of 2 s, CCX_DRAIN_PERIOD {drain:?})"
    );
    let log = server.stderr();
    assert!(
        log.contains("draining") && log.contains("drained in"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_outlasting_the_drain_period_is_ended_and_the_server_exits_0() {
    let mut server = TestServer::start_with(&[("CCX_DRAIN_PERIOD", "1s")], &[]);
    let mut client = server.client().await;
    let started = client.execute(&exec("sleep 60")).await.unwrap();
    let begin = Instant::now();
    server.signal(Signal::SIGTERM);
    let (_, done) = finish(&mut client).await;
    assert_eq!(done.status, CompletionStatus::Canceled);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exited");
    let took = begin.elapsed();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    // 1 s of drain, then the shutdown's grace (at most 1 s) and the close.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(live_members(started.pgid.unwrap()).is_empty());
    assert!(server.stderr().contains("drain period over"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_or_a_second_sigterm_stops_at_once_despite_the_drain_period() {
    for signals in [&[Signal::SIGINT][..], &[Signal::SIGTERM, Signal::SIGTERM]] {
        let mut server = TestServer::start_with(&[("CCX_DRAIN_PERIOD", "60s")], &[]);
        let mut client = server.client().await;
        let started = client.execute(&exec("sleep 60")).await.unwrap();
        let begin = Instant::now();
        for (i, &signal) in signals.iter().enumerate() {
            server.signal(signal);
            if i + 1 < signals.len() {
                // The first SIGTERM started the drain; the next one cuts it short.
                readiness_becomes(&server, 503, LONG).await;
            }
        }
        let status = server
            .wait_exit(Duration::from_secs(10))
            .expect("the server exited");
        let took = begin.elapsed();
        assert!(status.success(), "{signals:?}: {status:?}");
        // Far below the 60 s drain: the drain was skipped.
        assert!(took < Duration::from_secs(6), "{signals:?} took {took:?}");
        assert!(live_members(started.pgid.unwrap()).is_empty());
    }
}

/// The `execute` tool over `/mcp`: its result (`isError`, text content,
/// structured content).
async fn mcp_execute(server: &TestServer, command: &str) -> serde_json::Value {
    use ccx::client::mcp::{McpClient, McpTarget};
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let mut mcp = McpClient::connect(&McpTarget::Http { url, token: None }).expect("an MCP client");
    mcp.initialize(LONG).await.expect("initialize");
    let arguments = serde_json::json!({"name": "execute", "arguments": {"command": command}});
    let result = mcp.request("tools/call", arguments, LONG).await;
    mcp.close().await;
    result.expect("tools/call answered")
}

/// One executor behind every front end: with one rule changed (an allowlist
/// of `ls`), `echo hi` is refused in the same words on the WebSocket, by the
/// MCP tool and by `process::Executor` built from the same variable; the readiness probe,
/// the server's own command, still runs. With another rule changed (a shell
/// that always exits 7), the WebSocket, the MCP tool and the probe all see
/// that shell.
#[tokio::test(flavor = "multi_thread")]
async fn one_executor_admits_and_spawns_for_websocket_mcp_probe_and_direct() {
    let server = TestServer::start_with(&[("CCX_ALLOWED_COMMANDS", "ls")], &[]);
    let mut client = server.client().await;
    let refused = match client.run(&exec("echo hi")).await {
        Err(ClientError::Rpc(e)) => e,
        other => panic!("echo ran under an allowlist of ls: {other:?}"),
    };
    assert_eq!(refused.code, -32001, "{refused:?}");
    assert!(
        refused.message.contains("CCX_ALLOWED_COMMANDS"),
        "{refused:?}"
    );
    client.close().await;

    let mcp = mcp_execute(&server, "echo hi").await;
    assert_eq!(mcp["isError"], true, "{mcp}");
    assert_eq!(mcp["content"][0]["text"], refused.message.as_str(), "{mcp}");

    let home = tempfile::tempdir().unwrap();
    let env = [
        ("HOME".to_string(), home.path().display().to_string()),
        ("CCX_ALLOWED_COMMANDS".to_string(), "ls".to_string()),
    ]
    .into();
    let config = ccx::config::Config::load(&Default::default(), &env).expect("a configuration");
    let direct = ccx::process::Executor::from_config(&config)
        .admit(&exec("echo hi"))
        .expect_err("the direct executor admitted echo under an allowlist of ls");
    assert_eq!(direct.to_string(), refused.message);
    let (status, ready) = readiness(&server).await;
    assert_eq!(
        status, 200,
        "the probe is not a client's command: {ready:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let shell = dir.path().join("exits-7");
    std::fs::write(&shell, "#!/bin/sh\nexit 7\n").unwrap();
    std::fs::set_permissions(&shell, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let server = TestServer::start_with(&[("CCX_SHELL", &shell.display().to_string())], &[]);
    let mut client = server.client().await;
    let outcome = client.run(&exec("echo hi")).await.expect("a completion");
    assert_eq!(outcome.completed.exit_code, 7, "{outcome:?}");
    client.close().await;
    let mcp = mcp_execute(&server, "echo hi").await;
    assert_eq!(mcp["structuredContent"]["exit_code"], 7, "{mcp}");
    let ready = readiness_becomes(&server, 503, LONG).await;
    assert!(
        ready.reasons.iter().any(|r| r.contains("exit code 7")),
        "{ready:?}"
    );
}
