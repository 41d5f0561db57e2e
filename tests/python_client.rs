//! Compatibility with existing cc_executor clients: a plain Python
//! `websockets` script drives the real server.
//!
//! The `websockets` package is installed into target/python-deps when the
//! interpreter does not have it, so `cargo test` works on a fresh machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use serde_json::Value;

/// A PYTHONPATH under which `import websockets` works, installing the
/// package with pip when needed.
fn python_with_websockets() -> Option<PathBuf> {
    let deps = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-deps");
    let importable = |path: &Path| {
        Command::new("python3")
            .args(["-c", "import websockets"])
            .env("PYTHONPATH", path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable(&deps) {
        return Some(deps);
    }
    let installed = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&deps)
        .arg("websockets")
        .status()
        .is_ok_and(|s| s.success());
    (installed && importable(&deps)).then_some(deps)
}

#[test]
fn python_websockets_client_executes_streams_and_controls() {
    let pythonpath = python_with_websockets()
        .expect("python3 with the websockets package (pip install websockets)");
    let server = TestServer::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/cc_executor_client.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&server.url)
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python client failed:\n{}\nserver stderr:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.stderr()
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary JSON");
    assert_eq!(summary["connected"], true);
    assert_eq!(summary["started"], true);
    assert_eq!(summary["stdout"], "hello from python\n");
    assert_eq!(summary["stderr"], "oops\n");
    assert_eq!(summary["exit_code"], 3);
    assert_eq!(summary["status"], "failed");
    assert_eq!(
        summary["controls"],
        serde_json::json!(["paused", "resumed", "canceled"])
    );
    assert_eq!(summary["cancelled"], "canceled");
    assert_eq!(summary["parse_error"], -32700);
}
