//! A full disk under the state directory, on a small tmpfs the test mounts
//! and unmounts (root only; elsewhere the test says it skipped): `serve`
//! names the write error at once instead of waiting for a readiness line
//! that cannot come, and `status` and the doctor report a running server
//! whose log cannot be written.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::background::{describe, run_within};
use common::ccx_command;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![b'f'; 4096];
    loop {
        if let Err(e) = file.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
            return path;
        }
    }
}

fn ccx(state: &Path, args: &[&str]) -> Output {
    let mut cmd = ccx_command();
    cmd.args(args).env("CCX_STATE_DIR", state);
    run_within(cmd, Duration::from_secs(30))
}

/// Stops the background server of `state` when dropped.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = ccx(&self.0, &["stop"]);
    }
}

#[test]
fn a_full_disk_is_named_by_serve_status_and_the_doctor() {
    let fs = match Tmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs here ({e}); this test needs root");
            return;
        }
    };
    let state = fs.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let _stop = StopOnDrop(state.clone());

    // 1. A full disk before the start: named at once.
    let filler = fill(fs.path());
    let began = Instant::now();
    let out = ccx(&state, &["serve", "--port", "0"]);
    let took = began.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr.contains("No space left on device") && stderr.contains("ccx.log"),
        "serve must name the write error and the log:\n{}",
        describe(&out)
    );
    assert!(took < Duration::from_secs(3), "serve took {took:?}");

    // 2. The disk fills while the server runs: status and doctor say so.
    std::fs::remove_file(&filler).unwrap();
    let out = ccx(&state, &["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = ccx(&state, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.get("log_error").is_none(), "{report}");
    let url = report["url"].as_str().unwrap().to_string();

    fill(fs.path());
    // The server logs every command it runs; short lines still fit in the
    // last block of its log, so run commands until one does not (the
    // server keeps serving meanwhile).
    let port = report["port"].as_u64().unwrap() as u16;
    let mut told = false;
    for _ in 0..200 {
        let out = ccx(&state, &["exec", "--", "echo", "still-serving"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("still-serving"));
        let (_, _, body) = common::http(port, "GET", "/health", &[], "");
        if body.contains("log_error") {
            told = true;
            break;
        }
    }
    assert!(told, "/health never reported the failed log writes");

    let out = ccx(&state, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let log_error = report["log_error"].as_str().unwrap_or_default();
    assert!(
        log_error.contains("No space left on device"),
        "status --json: {report}"
    );
    let out = ccx(&state, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CANNOT BE WRITTEN") && text.contains("No space left on device"),
        "{}",
        describe(&out)
    );

    let out = ccx(&state, &["doctor", "--url", &url, "--json"]);
    let doctor: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", describe(&out)));
    let handshake = doctor["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == "handshake"))
        .unwrap_or_else(|| panic!("no handshake step: {doctor}"));
    assert_eq!(handshake["status"], "warn", "{handshake}");
    assert!(
        handshake["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot write its log"),
        "{handshake}"
    );
}
