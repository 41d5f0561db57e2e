//! `ccx serve --foreground` as a user starts it: configuration errors exit 2
//! naming the variable, a busy port exits 1 naming the address; `ccx mcp`
//! reacts to SIGTERM through the same signal helper.

mod common;

use std::process::Output;
use std::time::Duration;

use common::background::run_within;
use common::{ccx_command, eventually, TestServer};

fn serve_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    ccx_command()
        .args(["serve", "--foreground"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run ccx")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A state directory set with bytes that are not UTF-8 is refused, naming
/// the variable, by the server and by the commands that only read the
/// state directory; nothing is created under the path ccx would have read.
#[test]
fn a_state_directory_that_is_not_utf8_exits_2_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    let base = tempfile::tempdir().expect("temp dir");
    let mut bytes = base.path().as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(b"/st\xffte");
    let dir = std::ffi::OsStr::from_bytes(&bytes);
    for args in [
        &["serve", "--foreground", "--port", "0"][..],
        &["status"],
        &["serve", "--port", "0"],
    ] {
        let mut cmd = ccx_command();
        cmd.args(args).env("CCX_STATE_DIR", dir);
        // A server that took the path would run on: the deadline ends it.
        let out = run_within(cmd, Duration::from_secs(20));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("CCX_STATE_DIR") && err.contains("UTF-8"),
            "{args:?}: {err}"
        );
    }
    let made: Vec<_> = std::fs::read_dir(base.path()).unwrap().collect();
    assert!(made.is_empty(), "{made:?}");
}

#[test]
fn malformed_variables_exit_2_naming_variable_value_and_expectation() {
    let cases = [
        ("CCX_PORT", "abc", "port number"),
        ("WS_MAX_SIZE", "10MB", "MiB"),
        ("CCX_MAX_OUTPUT", "lots", "KiB"),
        ("CCX_KILL_GRACE", "5 minutes", "ms"),
        ("CCX_MAX_SESSIONS", "0", "at least 1"),
        ("CCX_HOST", "my-laptop", "IP address"),
    ];
    for (var, value, expected) in cases {
        let out = serve_with(&[(var, value)], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(
            err.contains(var) && err.contains(value) && err.contains(expected),
            "{var}={value}: {err}"
        );
    }
}

#[test]
fn public_bind_without_token_is_refused_with_the_reason() {
    let out = serve_with(&[("CCX_HOST", "0.0.0.0")], &["--port", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CCX_TOKEN") && err.contains("--insecure-no-auth"),
        "{err}"
    );
}

#[test]
fn busy_port_exits_1_with_the_address_and_the_os_error() {
    let server = TestServer::start();
    let port = server.port.to_string();
    let out = serve_with(&[], &["--port", &port]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port} is already in use")),
        "{err}"
    );
}

#[test]
fn missing_shell_exits_1_after_binding() {
    let out = serve_with(&[("CCX_SHELL", "/nonexistent/sh")], &["--port", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/sh"), "{err}");
}

#[test]
fn invalid_flags_exit_2_with_clap_message() {
    let out = ccx_command()
        .args(["serve", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--no-such-flag"));
    let out = ccx_command()
        .args(["serve", "--foreground", "--port", "70000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn startup_log_names_the_listening_url() {
    let server = TestServer::start();
    let line = format!("listening on {}", server.url);
    assert!(
        eventually(Duration::from_secs(5), || server.stderr().contains(&line)),
        "{}",
        server.stderr()
    );
}

#[test]
fn mcp_on_stdio_stops_cleanly_on_sigterm_with_its_stdin_still_open() {
    use std::io::Read;
    use std::process::Stdio;

    let mut child = ccx_command()
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ccx mcp");
    let mut err = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let logged = |text: &str| log.lock().unwrap().contains(text);
    assert!(
        eventually(Duration::from_secs(10), || logged("serving MCP on stdio")),
        "{}",
        log.lock().unwrap()
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut status = None;
    eventually(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let _ = child.kill();
    drop(child.stdin.take());
    let _ = reader.join();
    let log = log.lock().unwrap();
    assert_eq!(
        status
            .expect("ccx mcp still runs 10 s after SIGTERM")
            .code(),
        Some(0),
        "{log}"
    );
    assert!(log.contains("SIGTERM received"), "{log}");
}
