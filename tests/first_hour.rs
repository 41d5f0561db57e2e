//! What a newcomer meets in the first hour, through the real binary and a
//! fresh state directory each: client commands that find the background
//! server (and say so), a doctor that passes under an allowlist and keeps
//! the user's list in its advice, captured output without terminal control
//! sequences, durations in minutes and hours, and errors that name the next
//! step.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use ccx::doctor::{Report, Status, StepId};
use common::background::{describe, run_within, StateLab};
use common::{ccx_command, TestServer};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn report(out: &Output) -> Report {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a doctor report ({e}):\n{}", describe(out)))
}

fn step(report: &Report, id: StepId) -> &ccx::doctor::StepResult {
    report
        .steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id:?}: {report:?}"))
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn client_commands_use_the_background_server_of_the_state_dir_and_say_so() {
    let lab = StateLab::new();
    let url = lab.serve(&[]);
    assert!(
        !url.contains(":8003/"),
        "port 0 gave the default port: {url}"
    );

    let exec = lab.run(&["exec", "--", "echo", "found it"]);
    assert_eq!(exec.status.code(), Some(0), "{}", describe(&exec));
    assert_eq!(stdout(&exec), "found it\n");
    let note = stderr(&exec);
    assert!(
        note.contains(&url) && note.contains("background server"),
        "exec does not say which server it chose: {note}"
    );

    let stress = lab.run(&["stress", "--clients", "1", "--requests", "2", "--json"]);
    assert_eq!(stress.status.code(), Some(0), "{}", describe(&stress));
    let doc: serde_json::Value = serde_json::from_slice(&stress.stdout).unwrap();
    assert_eq!(doc["targets"][0]["target"], url.as_str());
    assert!(stderr(&stress).contains(&url), "{}", describe(&stress));

    let doctor = lab.run(&["doctor", "--json"]);
    assert_eq!(doctor.status.code(), Some(0), "{}", describe(&doctor));
    let report = report(&doctor);
    assert_eq!(report.target, url, "the doctor checked another server");
    assert_eq!(
        step(&report, StepId::Spawn).status,
        Status::Skip,
        "the doctor started a second server"
    );
    assert!(stderr(&doctor).contains(&url), "{}", describe(&doctor));
}

#[test]
fn ccx_port_still_wins_over_the_background_server() {
    let lab = StateLab::new();
    let background = lab.serve(&[]);
    let other = TestServer::start();
    let port = other.port.to_string();
    let out = lab.run_env(&["exec", "--", "echo", "hi"], &[("CCX_PORT", &port)]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let note = stderr(&out);
    assert!(note.contains(&other.url), "{note}");
    assert!(note.contains("CCX_PORT"), "{note}");
    assert!(!note.contains(&background), "{note}");
}

#[test]
fn a_refused_connection_suggests_ccx_serve_or_url() {
    let lab = StateLab::new();
    let port = free_port().to_string();
    let out = lab.run_env(&["exec", "--", "true"], &[("CCX_PORT", &port)]);
    assert_eq!(out.status.code(), Some(255), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("ccx serve") && err.contains("--url"), "{err}");

    let url = format!("ws://127.0.0.1:{port}/ws/mcp");
    let out = lab.run(&["stress", "--url", &url, "--clients", "1", "--requests", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("ccx serve"), "{}", describe(&out));
}

#[test]
fn doctor_under_an_allowlist_probes_with_an_allowed_program() {
    let allow = [("CCX_ALLOWED_COMMANDS", "ls,cat")];
    let mut cmd = ccx_command();
    cmd.args(["doctor", "--port", "0", "--json"]).envs(allow);
    let out = run_within(cmd, Duration::from_secs(60));
    let report = report(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let echo = step(&report, StepId::Echo);
    assert!(echo.summary.contains("`ls --version`"), "{echo:?}");
    assert!(
        echo.detail
            .iter()
            .any(|l| l.contains("CCX_ALLOWED_COMMANDS does not allow echo")),
        "{echo:?}"
    );
}

#[test]
fn doctor_fix_for_a_refused_probe_keeps_the_users_allowlist() {
    let mut cmd = ccx_command();
    cmd.args(["doctor", "--port", "0", "--json", "--probe-cmd", "echo hi"])
        .env("CCX_ALLOWED_COMMANDS", "git,ls,claude");
    let out = run_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&out);
    let echo = step(&report, StepId::Echo);
    assert_eq!(echo.status, Status::Fail, "{echo:?}");
    let fix = echo.fix.as_deref().unwrap_or_default();
    assert!(
        fix.contains("CCX_ALLOWED_COMMANDS=git,ls,claude,echo"),
        "the fix drops the user's programs: {fix}"
    );
    assert!(fix.contains("--probe-cmd"), "{fix}");
}

/// The HEALTHCHECK line of docker/Dockerfile, run as Docker runs it
/// (`/bin/sh -c`, the container's environment), against a server with the
/// same allowlist.
#[test]
fn the_docker_healthcheck_passes_under_an_allowlist() {
    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/Dockerfile"),
    )
    .unwrap();
    let at = dockerfile.find("HEALTHCHECK").expect("a HEALTHCHECK");
    let rest = &dockerfile[at..];
    let cmd_at = rest.find("CMD ").expect("HEALTHCHECK … CMD");
    let line = rest[cmd_at + 4..].lines().next().unwrap().trim();
    let allow = [("CCX_ALLOWED_COMMANDS", "ls")];
    let server = TestServer::start_with(&allow, &[]);
    let bin_dir = std::path::Path::new(common::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    // The same binary, found by name as in the image.
    let mut sh = common::isolated("/bin/sh");
    sh.args(["-c", line])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .env("PATH", path)
        .env("CCX_PORT", server.port.to_string())
        .envs(allow);
    let out = run_within(sh, Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(0),
        "HEALTHCHECK `{line}` failed under an allowlist:\n{}",
        describe(&out)
    );
}

#[test]
fn terminal_control_sequences_never_reach_the_report() {
    let script = r"printf '\033[31mERROR\033[0m: \033]0;title\007cannot bind\n' >&2; exit 3";
    let port = free_port().to_string();
    for args in [
        vec![
            "doctor",
            "--port",
            &port,
            "--color",
            "never",
            "--server-cmd",
            script,
        ],
        vec!["doctor", "--port", &port, "--json", "--server-cmd", script],
    ] {
        let mut cmd = ccx_command();
        cmd.args(&args).env("NO_COLOR", "1");
        let out = run_within(cmd, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let text = stdout(&out);
        assert!(
            text.contains("before it was ready: ERROR: cannot bind"),
            "{args:?}: {text}"
        );
        assert!(!text.contains('\u{1b}'), "{args:?}: raw escape in {text:?}");
        assert!(!text.contains("\\u001b"), "{args:?}: escape in JSON {text}");
    }
}

#[test]
fn doctor_quotes_the_first_line_a_finished_command_printed() {
    let script = "i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); done";
    let mut cmd = ccx_command();
    let port = free_port().to_string();
    cmd.args(["doctor", "--port", &port, "--json", "--server-cmd", script]);
    let out = run_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&out);
    let spawn = step(&report, StepId::Spawn);
    assert!(
        spawn.summary.ends_with("it printed: line-1"),
        "not the first line: {}",
        spawn.summary
    );
}

#[test]
fn doctor_mcp_honours_timeout() {
    let mut cmd = ccx_command();
    cmd.args([
        "doctor",
        "--mcp",
        "--json",
        "--timeout",
        "1s",
        "--server-cmd",
        "sleep 30",
    ]);
    let started = Instant::now();
    let out = run_within(cmd, Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&out);
    let init = step(&report, StepId::Initialize);
    assert_eq!(init.status, Status::Fail, "{init:?}");
    assert!(init.summary.contains("1s"), "{init:?}");
    assert!(took < Duration::from_secs(5), "--timeout 1s took {took:?}");
}

#[test]
fn durations_accept_minutes_and_hours_in_flags_and_variables() {
    let server = TestServer::start_with(&[("CCX_DEFAULT_TIMEOUT", "10m")], &[]);
    let out = ccx_command()
        .args([
            "exec",
            "--url",
            &server.url,
            "--timeout",
            "1h30m",
            "--keepalive",
            "2m",
        ])
        .args(["--", "echo", "long enough"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "long enough\n");

    let mut cmd = ccx_command();
    cmd.args(["doctor", "--json", "--port", "0", "--spawn-timeout", "1m"])
        .env("CCX_DEFAULT_TIMEOUT", "10m")
        .env("CCX_KILL_GRACE", "1m");
    let out = run_within(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let out = ccx_command()
        .args([
            "exec",
            "--url",
            &server.url,
            "--timeout",
            "5min",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("10m"),
        "the error shows the forms: {}",
        describe(&out)
    );
}

#[test]
fn doctor_mcp_at_the_websocket_endpoint_points_to_mcp() {
    let server = TestServer::start();
    let url = format!("http://127.0.0.1:{}/ws/mcp", server.port);
    let mut cmd = ccx_command();
    cmd.args(["doctor", "--mcp", "--json", "--url", &url]);
    let out = run_within(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&out);
    let init = step(&report, StepId::Initialize);
    let fix = init.fix.as_deref().unwrap_or_default();
    assert!(
        fix.contains("WebSocket endpoint") && fix.contains("/mcp"),
        "{init:?}"
    );
    assert!(!fix.contains("the HTTP answer above"), "{init:?}");
}

#[test]
fn doctor_url_without_a_path_offers_ws_mcp() {
    let server = TestServer::start();
    let url = format!("ws://127.0.0.1:{}", server.port);
    let mut cmd = ccx_command();
    cmd.args(["doctor", "--json", "--url", &url]);
    let out = run_within(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&out);
    let handshake = step(&report, StepId::Handshake);
    assert!(handshake.summary.contains("ccx"), "{handshake:?}");
    let fix = handshake.fix.as_deref().unwrap_or_default();
    assert!(fix.contains(&format!("{url}/ws/mcp")), "{handshake:?}");
}

#[test]
fn doctor_url_checks_require_on_the_running_server() {
    let server = TestServer::start();
    let mut cmd = ccx_command();
    cmd.args(["doctor", "--json", "--url", &server.url]).args([
        "--require",
        "sh",
        "--require",
        "no-such-program-ccx-test",
    ]);
    let out = run_within(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&out);
    let binaries = step(&report, StepId::Binaries);
    assert_eq!(binaries.status, Status::Fail, "{binaries:?}");
    assert!(
        binaries.summary.contains("no-such-program-ccx-test"),
        "{binaries:?}"
    );

    let mut cmd = ccx_command();
    cmd.args(["doctor", "--json", "--url", &server.url, "--require", "sh"]);
    let out = run_within(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        step(&self::report(&out), StepId::Binaries).status,
        Status::Pass
    );
}

#[test]
fn a_passing_url_run_says_how_many_steps_did_not_apply() {
    let server = TestServer::start();
    let mut cmd = ccx_command();
    cmd.args(["doctor", "--color", "never", "--url", &server.url]);
    let out = run_within(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let last = stdout(&out).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("2 of 2 checks passed (4 did not apply)"),
        "{last}"
    );
}

#[test]
fn status_after_a_sigkill_says_how_it_ended_and_shows_the_logs_last_lines() {
    let lab = StateLab::new();
    lab.serve(&[]);
    let status = lab.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let pid = doc["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || !matches!(
            common::state(pid as u32),
            Some(s) if s != 'Z'
        )),
        "the server survived SIGKILL"
    );
    let out = lab.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("was killed"), "{text}");
    assert!(text.contains("last lines of"), "{text}");
    assert!(text.contains("listening on"), "the log's own lines: {text}");
}

#[test]
fn doctor_mcp_shows_stdout_lines_that_are_not_json_rpc() {
    for script in [
        "echo 'Starting server on port 8003'; echo 'loaded' >&2; sleep 30",
        "echo 'Starting server on port 8003'; echo 'ImportError: no module' >&2; exit 1",
    ] {
        let mut cmd = ccx_command();
        cmd.args([
            "doctor",
            "--mcp",
            "--json",
            "--timeout",
            "3s",
            "--server-cmd",
            script,
        ]);
        let out = run_within(cmd, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let report = report(&out);
        let init = step(&report, StepId::Initialize);
        assert!(
            init.detail
                .iter()
                .any(|l| l == "server stdout, not JSON-RPC: Starting server on port 8003"),
            "{script}: {init:?}"
        );
        let all = format!(
            "{} {}",
            init.summary,
            init.fix.as_deref().unwrap_or_default()
        );
        assert!(all.contains("stderr"), "{script}: {init:?}");
    }
}
