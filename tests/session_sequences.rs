//! What a cc_executor user's client sees over a session's life, driven by a
//! plain Python `websockets` script (tests/python/sequence_client.py)
//! against the real server: stdout and stderr lines in the order the
//! command wrote them, and an `execute` sent right after a CANCEL accepted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::python::require_venv;
use common::TestServer;
use serde_json::Value;

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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sequence_client.py");
    let started = Instant::now();
    let output = common::background::run_within(
        {
            let mut cmd = Command::new(python());
            cmd.arg(script)
                .arg(&server.url)
                .arg(mode)
                .arg(runs.to_string());
            cmd
        },
        Duration::from_secs(300),
    );
    assert!(
        output.status.success(),
        "the python client failed ({mode}):\n{}\nserver stderr:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.stderr()
    );
    eprintln!("{mode}: {runs} runs in {:?}", started.elapsed());
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
