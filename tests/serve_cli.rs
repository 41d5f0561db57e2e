//! `ccx serve --foreground` as a user starts it: configuration errors exit 2
//! naming the variable, a busy port exits 1 naming the address.

mod common;

use std::process::Output;
use std::time::Duration;

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
