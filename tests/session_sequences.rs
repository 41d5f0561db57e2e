//! What a cc_executor user's client sees over a session's life, driven by a
//! plain Python `websockets` script (tests/python/sequence_client.py)
//! against the real server: stdout and stderr lines in the order the
//! command wrote them, an `execute` sent right after a CANCEL accepted, and
//! one message per line while ccx's own client gets the same bytes in
//! batches (and one message per line from a server that offers none).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::process::Stdio;

use ccx::client::{Client, ConnectOptions, Event};
use ccx::protocol::{ExecuteParams, Framing};
use common::cc_executor::CcExecutor;
use common::python::require_venv;
use common::{ccx_command, TestServer};
use serde_json::Value;

/// 10 MiB of output in lines of 1,000 bytes, the last one unterminated.
const TEN_MB: &str = "head -c 10485760 /dev/zero | tr '\\0' x | fold -w 999";

/// What [`TEN_MB`] prints.
fn ten_mb() -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = 10_485_760;
    while left > 0 {
        let n = left.min(999);
        out.extend(std::iter::repeat_n(b'x', n));
        left -= n;
        if left > 0 || n == 999 {
            out.push(b'\n');
        }
    }
    out
}

/// An interpreter that can `import websockets`: the system's when it can
/// (`.ci/run` installs the package there), otherwise a venv of its own.
fn python() -> PathBuf {
    let system = Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    if system {
        return PathBuf::from("python3");
    }
    require_venv("websockets", &["websockets"]).python()
}

/// Runs the sequence client in `mode` against `server`; its JSON summary.
fn sequence(server: &TestServer, mode: &str, runs: u32) -> Value {
    sequence_with(&server.url, mode, &[&runs.to_string()], || server.stderr())
}

fn sequence_with(url: &str, mode: &str, args: &[&str], log: impl Fn() -> String) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sequence_client.py");
    let started = Instant::now();
    let output = common::background::run_within(
        {
            let mut cmd = Command::new(python());
            cmd.arg(script).arg(url).arg(mode).args(args);
            cmd
        },
        Duration::from_secs(300),
    );
    assert!(
        output.status.success(),
        "the python client failed ({mode}):\n{}\nserver stderr:\n{}",
        String::from_utf8_lossy(&output.stderr),
        log()
    );
    eprintln!("{mode}: {:?}", started.elapsed());
    serde_json::from_slice(&output.stdout).expect("summary JSON")
}

#[test]
fn stdout_and_stderr_lines_arrive_in_the_order_they_were_written() {
    let server = TestServer::start();
    let runs = 1000;
    let summary = sequence(&server, "order", runs);
    for pattern in ["out_then_err", "err_then_out"] {
        let result = &summary[pattern];
        let in_order = result["in_order"].as_u64().expect("in_order");
        eprintln!("{pattern}: {in_order} of {runs} in write order");
        assert!(
            in_order * 100 >= u64::from(runs) * 99,
            "{pattern}: only {in_order} of {runs} runs arrived in write order \
             (goal: 99 %); e.g. {}",
            result["examples"]
        );
    }
}

#[test]
fn an_execute_sent_right_after_cancel_waits_for_the_canceled_command() {
    let server = TestServer::start();
    let runs = 100;
    let summary = sequence(&server, "cancel-then-execute", runs);
    assert_eq!(
        summary["refusals"],
        serde_json::json!([]),
        "an execute after CANCEL was refused: {summary}"
    );
    assert_eq!(summary["accepted"], runs, "{summary}");
    assert_eq!(summary["canceled"], runs, "{summary}");
    assert_eq!(summary["last"], "completed", "{summary}");
}

/// `ccx exec --url URL -- COMMAND`, its stdout in a file (it is large);
/// returns that file's bytes.
fn ccx_exec_stdout(url: &str, command: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stdout");
    let file = std::fs::File::create(&path).expect("stdout file");
    let mut child = ccx_command()
        .args(["exec", "--url", url, "--", command])
        .stdout(Stdio::from(file))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ccx exec");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ccx exec did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "ccx exec failed: {status}");
    std::fs::read(&path).expect("read stdout")
}

/// What the Python client collected for `command`: its stdout and summary.
fn python_collect(url: &str, command: &str, log: impl Fn() -> String) -> (Vec<u8>, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stdout");
    let path_arg = path.to_str().expect("utf-8 temp path");
    let summary = sequence_with(url, "collect", &[path_arg, command], log);
    (std::fs::read(&path).expect("read stdout"), summary)
}

/// Output messages of `command` run by ccx's own client with `params` as
/// `prefer_batches` makes them; and its stdout.
async fn client_messages(url: &str, command: &str) -> (bool, usize, Vec<u8>) {
    let mut client = Client::connect(&ConnectOptions::new(url))
        .await
        .expect("connect");
    let params = client.prefer_batches(&ExecuteParams::command(command));
    let batched = params.framing == Some(Framing::Batched);
    client.execute(&params).await.expect("execute");
    let (mut messages, mut stdout) = (0, Vec::new());
    loop {
        match client.next_event().await.expect("event") {
            Event::Output(o) => {
                messages += 1;
                stdout.extend_from_slice(o.data.as_bytes());
            }
            Event::Completed(_) => return (batched, messages, stdout),
            _ => {}
        }
    }
}

#[test]
fn cc_executor_clients_get_lines_and_ccx_exec_gets_batches_of_the_same_bytes() {
    let server = TestServer::start();
    let (python, summary) = python_collect(&server.url, TEN_MB, || server.stderr());
    let exec = ccx_exec_stdout(&server.url, TEN_MB);
    let expected = ten_mb();
    assert!(
        python == expected,
        "the Python client got {} bytes, not the command's {}",
        python.len(),
        expected.len()
    );
    assert!(
        python == exec,
        "ccx exec and the Python client got different bytes ({} and {})",
        exec.len(),
        python.len()
    );
    let lines = python.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(summary["not_one_line"], 0, "{summary}");
    assert_eq!(
        summary["messages"],
        lines + 1,
        "one message per line: {summary}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (batched, messages, stdout) = runtime.block_on(client_messages(&server.url, TEN_MB));
    assert!(
        batched,
        "ccx announces batched output and its client asks for it"
    );
    assert_eq!(stdout, python);
    assert!(
        (messages as u64) * 20 < lines,
        "batches carry many lines each: {messages} messages for {lines} lines"
    );
}

#[test]
fn against_cc_executor_ccx_exec_falls_back_to_one_message_per_line() {
    let Some(peer) =
        CcExecutor::start("against_cc_executor_ccx_exec_falls_back_to_one_message_per_line")
    else {
        return;
    };
    let command = "seq 1 20000";
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    let exec = ccx_exec_stdout(&peer.url, command);
    assert_eq!(String::from_utf8_lossy(&exec), expected, "{}", peer.log());

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (batched, messages, stdout) = runtime.block_on(client_messages(&peer.url, command));
    assert!(!batched, "cc_executor announces no batched output");
    assert_eq!(String::from_utf8_lossy(&stdout), expected);
    assert_eq!(messages, 20000, "one message per line from cc_executor");
}
