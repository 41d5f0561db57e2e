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

/// A WebSocket whose socket has a receive buffer of `bytes`: the server's
/// queues fill with little output unless the test reads.
async fn connect_with_receive_buffer(server: &TestServer, bytes: u32) -> Ws {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    let stream = socket
        .connect(
            format!("127.0.0.1:{}", server.port)
                .parse()
                .expect("address"),
        )
        .await
        .expect("connect");
    let (ws, _) =
        tokio_tungstenite::client_async(server.url.as_str(), MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
    ws
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
    let mut ws = connect_with_receive_buffer(&server, 4096).await;
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

/// A client that reads slowly but steadily gets everything: 6 MB of
/// 100-byte lines read at about 600 KB/s take ten seconds, five times
/// WS_PING_TIMEOUT, while the server's keep-alive ping waits behind
/// megabytes of queued output. Reading counts as being alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_reader_gets_all_its_output() {
    const TOTAL: usize = 6_000_000;
    let server = TestServer::start_with(
        &[("WS_PING_INTERVAL", "1s"), ("WS_PING_TIMEOUT", "2s")],
        &[],
    );
    let mut ws = connect_with_receive_buffer(&server, 65536).await;
    let line = "x".repeat(99);
    let pid = start(&mut ws, &format!("yes {line} | head -c {TOTAL}")).await;
    let began = Instant::now();
    let mut received = 0usize;
    let mut since_pause = 0usize;
    let completed = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame within 30 s")
            .unwrap_or_else(|| {
                panic!(
                    "the server closed the connection after {received} bytes in {:?}; log:\n{}",
                    began.elapsed(),
                    server.stderr()
                )
            });
        let message = message.unwrap_or_else(|e| {
            panic!(
                "connection failed after {received} bytes in {:?}: {e}; log:\n{}",
                began.elapsed(),
                server.stderr()
            )
        });
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => panic!(
                "closed with {frame:?} after {received} of {TOTAL} bytes in {:?}",
                began.elapsed()
            ),
            _ => continue,
        };
        let value: Value = serde_json::from_str(&text).expect("frames are JSON");
        match value["method"].as_str() {
            Some("process.output") => {
                let n = value["params"]["data"].as_str().unwrap_or("").len();
                received += n;
                since_pause += n;
                if since_pause >= 60_000 {
                    since_pause = 0;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Some("process.completed") if value["params"]["pid"] == pid => break value,
            _ => {}
        }
    };
    assert_eq!(completed["params"]["exit_code"], 0, "{completed}");
    assert_eq!(received, TOTAL, "output lost on the way");
    assert!(
        began.elapsed() > Duration::from_secs(4),
        "the reader was not slow ({:?}): the test proves nothing",
        began.elapsed()
    );
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

/// How one client of a burst fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fate {
    /// Upgraded and greeted with `connected`.
    Connected,
    /// Upgraded, then refused with -32003 (CCX_MAX_SESSIONS).
    SessionLimit,
    /// HTTP 503 with Retry-After.
    Busy,
    /// Closed or failed without an answer.
    Silent,
}

/// One client of a burst: connects, reads its first frame, reports how it
/// fared on `answered`, then holds the connection until `release` (so that
/// the sessions of a burst add up).
async fn burst_client(
    url: String,
    answered: tokio::sync::mpsc::Sender<()>,
    mut release: tokio::sync::watch::Receiver<bool>,
) -> (Fate, String) {
    use tokio_tungstenite::tungstenite::Error;
    let attempt = tokio::time::timeout(Duration::from_secs(60), async {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((mut ws, _)) => {
                let fate = match ws.next().await {
                    Some(Ok(Message::Text(text))) if text.contains(r#""method":"connected""#) => {
                        Fate::Connected
                    }
                    Some(Ok(Message::Text(text))) if text.contains("-32003") => Fate::SessionLimit,
                    other => return (Fate::Silent, format!("first frame: {other:?}")),
                };
                let _ = answered.send(()).await;
                let _ = release.wait_for(|go| *go).await;
                (fate, String::new())
            }
            Err(Error::Http(response))
                if response.status() == 503 && response.headers().contains_key("retry-after") =>
            {
                (Fate::Busy, String::new())
            }
            Err(e) => (Fate::Silent, format!("handshake: {e}")),
        }
    })
    .await;
    let _ = answered.send(()).await;
    attempt.unwrap_or((Fate::Silent, "no answer within 60 s".into()))
}

/// Opens `clients` WebSocket connections at once, holds every upgraded one
/// until all are answered, and returns how each fared.
async fn burst(server: &TestServer, clients: usize) -> Vec<(Fate, String)> {
    let (release, held) = tokio::sync::watch::channel(false);
    let (answered, mut answers) = tokio::sync::mpsc::channel(2 * clients);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(burst_client(
                server.url.clone(),
                answered.clone(),
                held.clone(),
            ))
        })
        .collect();
    drop(answered);
    // A client reports once when answered and once when done: wait for one
    // report per client (or the clients' own deadline).
    let mut reports = 0;
    while reports < clients {
        match tokio::time::timeout(Duration::from_secs(70), answers.recv()).await {
            Ok(Some(())) => reports += 1,
            _ => break,
        }
    }
    let _ = release.send(true);
    let mut fates = Vec::new();
    for task in tasks {
        fates.push(task.await.unwrap_or((Fate::Silent, "task failed".into())));
    }
    fates
}

fn tally(fates: &[(Fate, String)]) -> std::collections::HashMap<Fate, usize> {
    let mut counts = std::collections::HashMap::new();
    for (fate, _) in fates {
        *counts.entry(*fate).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_up_to_the_session_cap_is_served_and_a_bigger_one_is_answered() {
    let server = TestServer::start();
    let fates = burst(&server, 256).await;
    let counts = tally(&fates);
    println!("burst of 256: {counts:?}");
    let silent: Vec<_> = fates
        .iter()
        .filter(|f| f.0 == Fate::Silent)
        .take(3)
        .collect();
    assert_eq!(
        counts.get(&Fate::Connected),
        Some(&256),
        "{counts:?} {silent:?}"
    );

    let fates = burst(&server, 400).await;
    let counts = tally(&fates);
    println!("burst of 400: {counts:?}");
    let silent: Vec<_> = fates
        .iter()
        .filter(|f| f.0 == Fate::Silent)
        .take(3)
        .collect();
    assert!(silent.is_empty(), "{counts:?}: {silent:?}");
    assert!(
        counts.get(&Fate::Connected).copied().unwrap_or(0) <= 256,
        "{counts:?}"
    );
}

#[test]
fn an_evicted_connection_gets_503_and_the_log_counts_it() {
    use std::io::Read;
    let server = TestServer::start_with(&[("CCX_MAX_PENDING", "8")], &[]);
    // 12 silent connections, one at a time so that the server admits them
    // in order: the 4 oldest make room for the newest.
    let mut silent = Vec::new();
    for _ in 0..12 {
        let s = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        silent.push(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut refused = 0;
    let mut answers = Vec::new();
    for s in &mut silent[..4] {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).to_string();
        if text.starts_with("HTTP/1.1 503") && text.contains("Retry-After: 1") {
            refused += 1;
        }
        answers.push(text);
    }
    assert_eq!(
        refused, 4,
        "the oldest were not refused with 503: {answers:?}"
    );
    for s in &mut silent[4..] {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(
            matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut),
            "a connection within CCX_MAX_PENDING was answered or closed"
        );
    }
    let counted = || -> u64 {
        server
            .stderr()
            .lines()
            .filter(|l| l.contains("pending connection(s) refused with 503"))
            .filter_map(|l| {
                let tail = l.split("WARN").nth(1)?.trim_start();
                tail.split(' ').next()?.parse::<u64>().ok()
            })
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(5), || counted() == 4),
        "the log does not count 4 refusals: {}",
        server.stderr()
    );
}

/// Past CCX_MAX_PENDING, the connection that has sent the least makes
/// room, not merely the oldest: 4 connections that sent part of a request
/// head come first, then 4 silent ones; once all are older than the
/// newcomers' grace, 4 newcomers push out the 4 silent ones, and the
/// partial senders and the newcomers are kept.
#[test]
fn the_connections_that_sent_least_are_refused_first() {
    use std::io::{Read, Write};
    let server = TestServer::start_with(&[("CCX_MAX_PENDING", "8")], &[]);
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    };
    let mut partial = Vec::new();
    for _ in 0..4 {
        let mut s = connect();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        partial.push(s);
    }
    let mut silent: Vec<_> = (0..4).map(|_| connect()).collect();
    // Past the 0.5 s in which a newcomer is spared.
    std::thread::sleep(Duration::from_millis(800));
    let mut newcomers: Vec<_> = (0..4).map(|_| connect()).collect();
    let mut answers = Vec::new();
    for s in &mut silent {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        answers.push(String::from_utf8_lossy(&answer).to_string());
    }
    assert!(
        answers.iter().all(|a| a.starts_with("HTTP/1.1 503")),
        "the silent connections were not the ones refused: {answers:?}"
    );
    for (what, s) in partial
        .iter_mut()
        .map(|s| ("a partial sender", s))
        .chain(newcomers.iter_mut().map(|s| ("a newcomer", s)))
    {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(
            matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut),
            "{what} was answered or closed"
        );
    }
}

/// A server SIGKILLed with commands running: `verb` (`stop` or `status`)
/// finds what it left (by cgroup, or by marker under `tracking`), ends it
/// and reports it.
async fn leftovers_of_a_killed_server_are_ended_by(verb: &str, tracking: &str, tag: &str) {
    use common::background::StateLab;
    let lab = StateLab::new();
    let url = lab.serve(&[("CCX_PROCESS_TRACKING", tracking)]);
    let status = lab.run(&["status", "--json"]);
    let report: Value = serde_json::from_slice(&status.stdout).expect("status --json");
    let server = report["pid"].as_u64().expect("the server's pid") as i32;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    // A detached one that ignores SIGTERM, and the shell's own.
    let command =
        format!("setsid sh -c 'trap \"\" TERM; exec sleep 300.{tag}1' & exec sleep 300.{tag}2");
    start(&mut ws, &command).await;
    let ours = || {
        let mut pids = common::pids_with_cmdline(&format!("300.{tag}"));
        pids.sort_unstable();
        pids
    };
    assert!(
        eventually(Duration::from_secs(10), || ours().len() == 2),
        "the command's two processes did not start: {:?}",
        ours()
    );
    let before = ours();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the server");
    assert!(eventually(
        Duration::from_secs(10),
        || !std::path::Path::new(&format!("/proc/{server}")).exists()
            || common::state(server as u32) == Some('Z')
    ));
    drop(ws);
    let out = match verb {
        "serve" => lab.run(&["serve", "--port", "0"]),
        _ => lab.run(&[verb, "--json"]),
    };
    let report: Value = match verb {
        // serve says it in a warning: `killed N process(es) … left running: [a, b]`.
        "serve" => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let list = stderr
                .lines()
                .find(|l| l.contains("the dead server left running"))
                .and_then(|l| l.rsplit_once(": "))
                .map(|(_, list)| list.to_string())
                .unwrap_or_else(|| "[]".into());
            json!({"leftovers_killed": serde_json::from_str::<Value>(&list).unwrap_or_default(), "stderr": stderr})
        }
        _ => serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{verb} --json: {e}: {}", common::background::describe(&out))
        }),
    };
    let gone = eventually(Duration::from_secs(5), || ours().is_empty());
    let left = ours();
    for pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let killed: Vec<u64> = report["leftovers_killed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert!(gone, "{verb} left {left:?} running: {report}");
    for pid in before {
        assert!(
            killed.contains(&(pid as u64)),
            "{verb} did not report {pid}: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_what_a_sigkilled_server_left_in_its_cgroups() {
    leftovers_of_a_killed_server_are_ended_by(
        "stop",
        "auto",
        &format!("{}7", std::process::id() % 1000),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_ends_what_a_sigkilled_server_left_with_its_marker() {
    leftovers_of_a_killed_server_are_ended_by(
        "status",
        "marker",
        &format!("{}8", std::process::id() % 1000),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_serve_ends_what_a_sigkilled_server_left_with_its_marker_and_says_so() {
    leftovers_of_a_killed_server_are_ended_by(
        "serve",
        "marker",
        &format!("{}9", std::process::id() % 1000),
    )
    .await;
}
