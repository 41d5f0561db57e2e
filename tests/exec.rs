//! `ccx exec` against a real server: streams, exit codes, Ctrl-C, errors,
//! and its keep-alive through a relay that can black-hole the connection.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ccx_command, descendants, eventually, TestServer};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn exec(server: &TestServer, args: &[&str]) -> Output {
    ccx_command()
        .args(["exec", "--url", &server.url])
        .args(args)
        .output()
        .expect("run ccx exec")
}

/// `ccx exec ARGS` (stdout discarded, stderr piped), once its command runs
/// on `server`.
fn exec_running(server: &TestServer, args: &[&str]) -> std::process::Child {
    let child = ccx_command()
        .arg("exec")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !descendants(server.pid())
            .is_empty()),
        "the remote command never started"
    );
    child
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_passes_stdout_stderr_and_exit_code_through() {
    let server = TestServer::start();
    let out = exec(
        &server,
        &["--", "sh", "-c", "printf out; printf err >&2; exit 3"],
    );
    assert_eq!(text(&out.stdout), "out");
    assert_eq!(text(&out.stderr), "err");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn exec_reports_death_by_signal_as_128_plus_n() {
    let server = TestServer::start();
    let out = exec(&server, &["--", "kill -TERM $$"]);
    assert_eq!(
        out.status.code(),
        Some(143),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn exec_runs_a_single_word_as_a_shell_command_line() {
    let server = TestServer::start();
    let out = exec(&server, &["--", "echo a | wc -c"]);
    assert_eq!(text(&out.stdout).trim(), "2");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn exec_streams_15_mb_byte_exact() {
    let server = TestServer::start();
    let out = exec(&server, &["--", "seq", "1", "2000000"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let local = Command::new("seq")
        .args(["1", "2000000"])
        .output()
        .expect("local seq");
    assert!(local.stdout.len() > 14_000_000);
    assert_eq!(out.stdout.len(), local.stdout.len());
    assert!(
        out.stdout == local.stdout,
        "remote output differs from local seq"
    );
}

#[test]
fn exec_defaults_to_the_local_server_from_ccx_port() {
    let server = TestServer::start();
    let out = ccx_command()
        .args(["exec", "--", "echo", "via config"])
        .env("CCX_PORT", server.port.to_string())
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "via config\n",
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn exec_passes_cwd_env_and_timeout() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let out = exec(
        &server,
        &[
            "--cwd",
            dir_path.to_str().unwrap(),
            "--env",
            "GREETING=hi there",
            "--",
            "pwd; echo \"$GREETING\"",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        format!("{}\nhi there\n", dir_path.display())
    );
    let started = Instant::now();
    let out = exec(&server, &["--timeout", "0.5", "--", "sleep", "30"]);
    assert_eq!(
        out.status.code(),
        Some(124),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("--timeout"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn exec_json_prints_one_event_per_line_ending_with_completed() {
    let server = TestServer::start();
    let out = exec(&server, &["--json", "--", "sh", "-c", "echo hi; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "process.started");
    assert!(events
        .iter()
        .any(|e| e["event"] == "process.output" && e["type"] == "stdout" && e["data"] == "hi\n"));
    let last = events.last().unwrap();
    assert_eq!(last["event"], "process.completed");
    assert_eq!(last["exit_code"], 3);
}

#[test]
fn exec_prints_bytes_that_are_not_utf8_exactly() {
    let server = TestServer::start();
    // Batched output carries bytes: nothing is replaced, nothing to note.
    let command = "printf '\\377a\\n'; printf '\\376b\\n'; printf '\\342\\202'";
    let out = exec(&server, &["--", command]);
    assert_eq!(out.stdout, b"\xffa\n\xfeb\n\xe2\x82");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("U+FFFD"), "{stderr}");
    // --json keeps the line framing, whose text says what it replaced.
    let out = exec(&server, &["--json", "--", command]);
    let replaced = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .filter(|e| e["event"] == "process.output" && e["lossy"] == true)
        .count();
    assert_eq!(replaced, 3, "{}", text(&out.stdout));
}

#[test]
fn exec_ctrl_c_cancels_the_remote_group_and_exits_130() {
    let server = TestServer::start();
    let mut child = exec_running(&server, &["--url", &server.url, "--", "sleep", "300"]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let sent = Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || descendants(server.pid())
            .is_empty()),
        "remote processes still alive 1 s after Ctrl-C: {:?}",
        descendants(server.pid())
    );
    assert!(sent.elapsed() < Duration::from_secs(1));
    let status = wait_with_deadline(&mut child, Duration::from_secs(5)).expect("ccx exec exited");
    assert_eq!(status.code(), Some(130));
}

#[test]
fn exec_second_ctrl_c_exits_without_waiting() {
    // The command ignores SIGTERM, so CANCEL waits for the 30 s grace before SIGKILL.
    let server = TestServer::start_with(&[("CCX_KILL_GRACE", "30s")], &[]);
    let mut child = ccx_command()
        .args([
            "exec",
            "--url",
            &server.url,
            "--",
            "trap '' TERM; sleep 300",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || descendants(
        server.pid()
    )
    .len()
        >= 2));
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGINT).unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut first_line = Vec::new();
    let mut byte = [0u8; 1];
    while stderr.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first_line.push(byte[0]);
    }
    assert!(
        text(&first_line).contains("cancelling"),
        "{}",
        text(&first_line)
    );
    assert!(
        wait_with_deadline(&mut child, Duration::from_millis(300)).is_none(),
        "exited on the first Ctrl-C"
    );
    kill(pid, Signal::SIGINT).unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(2));
    // The remote group ignores SIGTERM: end it here rather than leave it behind.
    for pid in descendants(server.pid()) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    assert_eq!(
        status.expect("exits at once on the second Ctrl-C").code(),
        Some(130)
    );
}

#[test]
fn exec_unreachable_server_exits_255_naming_the_cause() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = ccx_command()
        .args([
            "exec",
            "--url",
            &format!("ws://127.0.0.1:{port}/ws/mcp"),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot reach") && stderr.contains("refused"),
        "{stderr}"
    );
}

#[test]
fn exec_with_a_wrong_token_exits_254_and_says_so() {
    let server = TestServer::start_with(&[("CCX_TOKEN", "right")], &[]);
    let out = ccx_command()
        .args(["exec", "--url", &server.url, "--", "true"])
        .env("CCX_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("CCX_TOKEN"),
        "{stderr}"
    );
    let ok = ccx_command()
        .args(["exec", "--url", &server.url, "--", "echo", "in"])
        .env("CCX_TOKEN", "right")
        .output()
        .unwrap();
    assert_eq!(text(&ok.stdout), "in\n");
}

#[test]
fn exec_without_a_command_is_a_usage_error() {
    let out = ccx_command().args(["exec"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn exec_with_a_url_it_cannot_use_is_a_usage_error_naming_it() {
    for url in [
        "http://127.0.0.1:1/ws/mcp",
        "wss://127.0.0.1:1/ws/mcp",
        "not a url",
    ] {
        let out = ccx_command()
            .args(["exec", "--url", url, "--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains(url), "{url}: {err}");
    }
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    deadline: Duration,
) -> Option<std::process::ExitStatus> {
    let mut status = None;
    eventually(deadline, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

#[test]
fn exec_closed_stdout_cancels_the_remote_command_and_exits_141() {
    let server = TestServer::start();
    let mut child = ccx_command()
        .args(["exec", "--url", &server.url, "--", "seq", "1", "1000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"1\n");
    drop(stdout);
    let status = wait_with_deadline(&mut child, Duration::from_secs(5)).expect("ccx exec exits");
    assert_eq!(status.code(), Some(141));
    assert!(
        eventually(Duration::from_secs(2), || descendants(server.pid())
            .is_empty()),
        "the remote seq is still running"
    );
}

/// A TCP relay on a loopback port 0 in front of a server that can turn into
/// a black hole, as a partitioned network does: from then on nothing is
/// forwarded either way (not even a close), and both sockets stay open.
struct Relay {
    port: u16,
    black_hole: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn to(server: &TestServer) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream_port = server.port;
        let black_hole = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let (hole, kept) = (black_hole.clone(), sockets.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if hole.load(Ordering::SeqCst) {
                    return;
                }
                let upstream = TcpStream::connect(("127.0.0.1", upstream_port)).unwrap();
                kept.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                let (c, u) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (h1, h2) = (hole.clone(), hole.clone());
                std::thread::spawn(move || pump(client, upstream, &h1));
                std::thread::spawn(move || pump(u, c, &h2));
            }
        });
        Relay {
            port,
            black_hole,
            sockets,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws/mcp", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.black_hole.store(true, Ordering::SeqCst);
        for socket in self.sockets.lock().unwrap().iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Wakes the accept loop, which then sees the flag and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` until the black hole opens; then reads and drops
/// everything, and an end of stream is not passed on either.
fn pump(mut from: TcpStream, mut to: TcpStream, black_hole: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                if !black_hole.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) if !black_hole.load(Ordering::SeqCst) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

#[test]
fn exec_gives_up_with_253_when_the_network_goes_silent() {
    let server = TestServer::start();
    let relay = Relay::to(&server);
    let url = relay.url();
    let mut child = exec_running(
        &server,
        &["--url", &url, "--keepalive", "2s", "--", "sleep", "30"],
    );
    relay.black_hole.store(true, Ordering::SeqCst);
    let hole = Instant::now();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    let waited = hole.elapsed();
    let _ = child.kill();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = status.expect("ccx exec still waits 20 s into a black hole");
    assert_eq!(status.code(), Some(253), "{stderr}");
    assert!(
        stderr.contains("no answer from the server") && stderr.contains("for 2s"),
        "{stderr}"
    );
    // Its last pong may have come up to a third of the limit before the hole.
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(12),
        "gave up {waited:?} after the black hole opened, with --keepalive 2s"
    );
}

#[test]
fn exec_keepalive_does_not_cut_off_a_long_silent_command() {
    let server = TestServer::start();
    let relay = Relay::to(&server);
    let started = Instant::now();
    // Silent for three times the keep-alive limit: only pongs come back.
    let out = ccx_command()
        .args(["exec", "--url", &relay.url(), "--keepalive", "2s"])
        .args(["--", "sleep 6; echo done"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
    assert!(started.elapsed() >= Duration::from_secs(6));
}
