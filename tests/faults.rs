//! Faults from the outside (a real server on a loopback port, real clients
//! and real processes): what the server answers, ends and logs when a
//! client leaves, pauses and leaves, stops reading, or sends what only the
//! JSON grammar allows.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(server: &TestServer) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(&server.url)
        .await
        .expect("connect to the test server");
    ws
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .expect("send a frame");
}

/// The next JSON frame `matches` accepts, within `limit`.
async fn frame_where(
    ws: &mut Ws,
    limit: Duration,
    mut matches: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ws.next())
            .await
            .expect("the awaited frame came in time")
            .expect("the connection is open")
            .expect("a readable frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("frames are JSON");
            if matches(&value) {
                return value;
            }
        }
    }
}

/// Starts `command` and returns its pid once `process.started` came.
async fn start(ws: &mut Ws, command: &str) -> u64 {
    send(
        ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "execute", "params": {"command": command}}),
    )
    .await;
    let started = frame_where(ws, Duration::from_secs(10), |v| {
        v["method"] == "process.started"
    })
    .await;
    started["params"]["pid"].as_u64().expect("a pid")
}

/// The server's log line for the end of the command `pid`, once it exists.
fn end_line(server: &TestServer, pid: u64, within: Duration) -> Option<String> {
    let find = || {
        server
            .stderr()
            .lines()
            .find(|l| l.contains("command ended") && l.contains(&format!("pid={pid} ")))
            .map(str::to_string)
    };
    eventually(within, || find().is_some());
    find()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_during_pause_ends_the_command_with_a_log_line() {
    let server = TestServer::start();
    let mut ws = connect(&server).await;
    let pid = start(&mut ws, "echo go; sleep 60").await;
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 2, "method": "control", "params": {"type": "PAUSE"}}),
    )
    .await;
    frame_where(&mut ws, Duration::from_secs(10), |v| v["id"] == 2).await;
    // Gone without a close frame.
    drop(ws);
    let line = end_line(&server, pid, Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "no log line for the end of command {pid}; log:\n{}",
            server.stderr()
        )
    });
    assert!(line.contains("canceled"), "{line}");
    assert!(line.contains("client disconnected"), "{line}");
    assert!(
        eventually(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "the paused command {pid} survived its client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gets_a_close_frame_and_the_log_a_line() {
    let stall = 2;
    let server = TestServer::start_with(&[("WS_PING_TIMEOUT", "2s")], &[]);
    // A small receive window: the server's queues fill with little output.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(
            format!("127.0.0.1:{}", server.port)
                .parse()
                .expect("address"),
        )
        .await
        .expect("connect");
    let (mut ws, _) =
        tokio_tungstenite::client_async(server.url.as_str(), MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
    let line = format!("yes {}", "x".repeat(4000));
    let pid = start(&mut ws, &line).await;
    // Stop reading: the server must give up after WS_PING_TIMEOUT, end the
    // command and say so in its log.
    let began = Instant::now();
    let line = end_line(&server, pid, Duration::from_secs(stall + 20)).unwrap_or_else(|| {
        panic!(
            "no log line for the end of command {pid}; log:\n{}",
            server.stderr()
        )
    });
    assert!(began.elapsed() >= Duration::from_secs(stall), "{line}");
    assert!(line.contains("canceled"), "{line}");
    assert!(
        line.contains("client stopped reading"),
        "{line}\n{}",
        server.stderr()
    );
    // Reading again: everything queued, then a close frame with a reason.
    let deadline = Instant::now() + Duration::from_secs(20);
    let close = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame after the stall: {other:?}"),
        }
    };
    let close = close.expect("the close frame carries a code and a reason");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    assert!(close.reason.contains("WS_PING_TIMEOUT"), "{close:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_escaped_process_that_keeps_printing_does_not_hold_completion_back() {
    // Marker tracking cannot see a process started with an empty
    // environment: only the drain's cap ends the command.
    let server = TestServer::start_with(&[("CCX_PROCESS_TRACKING", "marker")], &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("ticker.pid");
    let command = format!(
        "env -i setsid sh -c 'echo $$ > {}; while :; do echo tick; sleep 0.5; done' & sleep 0.3; echo started",
        pid_file.display()
    );
    let mut ws = connect(&server).await;
    let began = Instant::now();
    let pid = start(&mut ws, &command).await;
    let completed = frame_where(&mut ws, Duration::from_secs(20), |v| {
        v["method"] == "process.completed"
    })
    .await;
    let took = began.elapsed();
    let ticker: Option<i32> = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let ticker_gone = ticker.is_some_and(|t| {
        eventually(Duration::from_secs(5), || {
            !std::path::Path::new(&format!("/proc/{t}")).exists()
                || common::state(t as u32) == Some('Z')
        })
    });
    if let (Some(t), false) = (ticker, ticker_gone) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(t),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    println!("process.completed after {took:?}: {completed}");
    assert_eq!(completed["params"]["pid"], pid, "{completed}");
    assert!(took < Duration::from_secs(10), "completion took {took:?}");
    assert!(ticker.is_some(), "the ticker did not start");
    assert!(
        ticker_gone,
        "the untracked ticker outlived its command's pipes"
    );
    // The session is free again.
    send(
        &mut ws,
        json!({"jsonrpc": "2.0", "id": 9, "method": "execute", "params": {"command": "echo again"}}),
    )
    .await;
    frame_where(&mut ws, Duration::from_secs(10), |v| {
        v["method"] == "process.completed"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_held_by_an_outside_process_does_not_hold_completion_back() {
    // A process the server did not start and cannot attribute (here one the
    // test starts) opens the command's stdout and keeps printing: only the
    // drain's cap can end the command, then the server closes its pipes.
    let server = TestServer::start_with(&[("CCX_PROCESS_TRACKING", "marker")], &[]);
    let mut ws = connect(&server).await;
    let pid = start(&mut ws, "echo ready; sleep 1.5; echo shell-done").await;
    frame_where(&mut ws, Duration::from_secs(10), |v| {
        v["params"]["data"]
            .as_str()
            .is_some_and(|d| d.contains("ready"))
    })
    .await;
    let mut holder = Holder(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec >>/proc/{pid}/fd/1; while :; do echo tick; sleep 0.3; done"
            ))
            .spawn()
            .expect("start the holder"),
    );
    let began = Instant::now();
    let mut ticks = 0;
    let completed = frame_where(&mut ws, Duration::from_secs(20), |v| {
        if v["params"]["data"]
            .as_str()
            .is_some_and(|d| d.contains("tick"))
        {
            ticks += 1;
        }
        v["method"] == "process.completed"
    })
    .await;
    let took = began.elapsed();
    let holder_ended = eventually(Duration::from_secs(5), || {
        holder.0.try_wait().ok().flatten().is_some()
    });
    println!("process.completed {took:?} after the holder started, {ticks} ticks: {completed}");
    assert!(ticks > 0, "the holder never reached the command's stdout");
    assert_eq!(completed["params"]["pid"], pid, "{completed}");
    assert_eq!(completed["params"]["status"], "completed", "{completed}");
    assert!(took < Duration::from_secs(8), "completion took {took:?}");
    assert!(
        holder_ended,
        "the holder kept a pipe the server should have closed"
    );
}

/// A process the test started, ended by its pid when the test ends.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
