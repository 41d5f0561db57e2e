//! `ccx doctor` as a user runs it: the JSON report parses back into the
//! doctor's types, the human output has its symbols, details and verdict,
//! colour follows --color, bad flags exit 2, a closed stdout does not panic,
//! and Ctrl-C during a check stops the server the doctor started.

mod common;

use std::io::Read;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use ccx::doctor::{Report, Status, StepId, SCHEMA_VERSION};

/// Runs `ccx doctor ARGS`, then asserts that it left no process behind
/// (the server it started, that server's children).
fn doctor(args: &[&str], env: &[(&str, &str)]) -> Output {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let out = common::ccx_command()
        .arg("doctor")
        .args(args)
        .envs(env.iter().copied())
        .env(common::MARKER_VAR, &marker)
        .output()
        .expect("run ccx doctor");
    assert!(
        common::eventually(Duration::from_secs(3), || common::marked_processes(&marker)
            .is_empty()),
        "ccx doctor {args:?} left processes behind: {:?}",
        common::marked_processes(&marker)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn full_local_run_passes_all_six_and_json_parses_into_the_report_type() {
    let out = doctor(&["--json", "--port", "0"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: Report = serde_json::from_slice(&out.stdout).expect("a Report");
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert_eq!(report.ccx_version, env!("CARGO_PKG_VERSION"));
    assert!(report.ok);
    assert_eq!(report.exit_code, 0);
    assert!(
        report.target.starts_with("ws://127.0.0.1:"),
        "{}",
        report.target
    );
    let ids: Vec<StepId> = report.steps.iter().map(|s| s.id).collect();
    assert_eq!(ids, StepId::ALL);
    assert!(report.steps.iter().all(|s| s.status == Status::Pass));
    assert!(report.steps.iter().all(|s| s.fix.is_none()));
}

#[test]
fn json_is_printed_on_failure_too_and_nothing_else_is_on_stdout() {
    let out = doctor(&["--json"], &[("CCX_PORT", "abc")]);
    assert_eq!(out.status.code(), Some(1));
    let report: Report = serde_json::from_slice(&out.stdout).expect("a Report");
    assert!(!report.ok);
    assert_eq!(report.steps[0].status, Status::Fail);
    assert!(report.steps[0].fix.is_some());
    assert!(report.steps[1..].iter().all(|s| s.status == Status::Skip));
}

#[test]
fn human_output_has_one_line_per_step_and_a_final_verdict() {
    let out = doctor(&["--port", "0", "--color", "never"], &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for id in StepId::ALL {
        assert!(
            text.lines()
                .any(|l| l.starts_with("[✓] ") && l.contains(id.as_str())),
            "no pass line for {id:?}:\n{text}"
        );
    }
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("6 of 6 checks passed"), "{last}");
    assert!(
        !text.lines().any(|l| l.starts_with("      ")),
        "details only with -v:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour with --color never");
}

#[test]
fn verbose_shows_details_of_every_step() {
    let out = doctor(&["--port", "0", "-v"], &[]);
    let text = stdout(&out);
    assert!(text.contains("      CCX_SHELL: /bin/sh"), "{text}");
    assert!(text.contains("      capabilities: execute"), "{text}");
    // The mechanism that ends escaped descendants is named (cgroup-v2 where
    // a writable cgroup v2 hierarchy exists, subreaper+marker elsewhere).
    assert!(
        text.contains("escaped descendants are tracked by: cgroup-v2")
            || text.contains("escaped descendants are tracked by: subreaper+marker"),
        "{text}"
    );
}

#[test]
fn failing_step_shows_detail_fix_and_which_step_failed() {
    let out = doctor(&["--color", "never"], &[("CCX_SHELL", "/nonexistent")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[✗] binaries"), "{text}");
    assert!(text.contains("      fix: "), "{text}");
    assert!(
        text.contains("[-] port       skipped because `binaries` failed"),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("`binaries` failed"),
        "{text}"
    );
}

/// Runs `ccx doctor ARGS` with stdout on a pseudo-terminal (Python's pty
/// module), so that `--color auto` sees a terminal; returns what it printed.
fn doctor_on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
        ])
        .arg(common::BIN)
        .arg("doctor")
        .args(args)
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("python3 for a pseudo-terminal");
    stdout(&out)
}

#[test]
fn color_always_paints_and_no_color_does_not_in_auto_mode() {
    let out = doctor(&["--port", "0", "--color", "always"], &[]);
    assert!(stdout(&out).contains("\u{1b}["));
    // On a terminal, auto paints unless NO_COLOR is set.
    let painted = doctor_on_a_terminal(&["--port", "0"], &[]);
    assert!(
        painted.contains("\u{1b}["),
        "auto on a terminal: {painted:?}"
    );
    assert!(painted.contains("echo"), "{painted:?}");
    let plain = doctor_on_a_terminal(&["--port", "0"], &[("NO_COLOR", "1")]);
    assert!(plain.contains("echo"), "{plain:?}");
    assert!(
        !plain.contains("\u{1b}["),
        "NO_COLOR on a terminal: {plain:?}"
    );
}

#[test]
fn invalid_flags_exit_2_with_clap_message() {
    let out = doctor(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument"));
    let out = doctor(&["--url", "http://127.0.0.1:1/"], &[]);
    assert_eq!(out.status.code(), Some(2));
    // A URL that cannot be read is named, with what is wrong with it.
    let out = doctor(&["--url", "ws://::1:8003/ws/mcp"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`ws://::1:8003/ws/mcp`") && err.contains("in brackets"),
        "{err}"
    );
    let out = doctor(&["--spawn-timeout", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sigkilled_doctor_leaves_no_server_behind() {
    // A shell that takes 30 s to start makes the echo step wait, with the
    // bundled server running, until the doctor is killed.
    let dir = tempfile::tempdir().unwrap();
    let shell = dir.path().join("slow-sh");
    std::fs::write(&shell, "#!/bin/sh\nsleep 30\nexec /bin/sh \"$@\"\n").unwrap();
    std::fs::set_permissions(&shell, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let mut doctor = common::ccx_command()
        .args(["doctor", "--port", "0"])
        .env("CCX_SHELL", &shell)
        .env(common::MARKER_VAR, &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let echo_running = || {
        common::marked_processes(&marker)
            .iter()
            .any(|(_, cmdline)| cmdline.starts_with("sleep 30"))
    };
    assert!(
        common::eventually(Duration::from_secs(20), echo_running),
        "the echo step never ran: {:?}",
        common::marked_processes(&marker)
    );
    doctor.kill().unwrap();
    doctor.wait().unwrap();
    let killed = Instant::now();
    assert!(
        common::eventually(Duration::from_secs(2), || common::marked_processes(&marker)
            .is_empty()),
        "left behind 2 s after the doctor was SIGKILLed: {:?}",
        common::marked_processes(&marker)
    );
    eprintln!(
        "server gone {:?} after the doctor's SIGKILL",
        killed.elapsed()
    );
}

#[test]
fn report_into_a_pipe_closed_before_the_first_write_exits_quietly() {
    // The reader is gone before the doctor writes a byte: every write fails
    // with EPIPE, however small the report.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    for args in [&["--json", "--port", "0"][..], &["--port", "0"][..]] {
        let out = common::ccx_command()
            .arg("doctor")
            .args(args)
            .stdout(Stdio::from(write_end.try_clone().unwrap()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn json_into_a_closed_pipe_exits_quietly() {
    // Like `ccx doctor --json | head -c 10`.
    let mut child = common::ccx_command()
        .args(["doctor", "--json", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    pipe.read_exact(&mut first).unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(&first[..1], b"{");
}

#[test]
fn sigint_during_spawn_stops_the_whole_server_group_and_reports_it() {
    let marker = format!("sleep 3{}", std::process::id() % 100_000 + 100_000);
    let marker = marker.as_str();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = common::ccx_command()
        .args([
            "doctor",
            "--json",
            "--spawn-timeout",
            "20s",
            "--server-cmd",
            &format!("{marker} & {marker}6; wait"),
        ])
        .env("CCX_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || sleeping(marker) == 2),
        "the server command did not start"
    );
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(130));
    assert!(
        common::eventually(Duration::from_secs(2), || common::pids_with_cmdline(marker)
            .is_empty()),
        "left behind: {:?}",
        common::pids_with_cmdline(marker)
    );
    let report: Report =
        serde_json::from_slice(&out.stdout).expect("a Report even when interrupted");
    assert_eq!(report.exit_code, 130);
    assert_eq!(report.error.as_deref(), Some("interrupted by SIGINT"));
    let spawn = report.steps.iter().find(|s| s.id == StepId::Spawn).unwrap();
    assert_eq!(spawn.status, Status::Fail);
    assert!(
        spawn.summary.contains("interrupted by SIGINT"),
        "{}",
        spawn.summary
    );
}

/// How many processes run exactly `MARKER` or `MARKER6` (not the shell or
/// the doctor whose command lines mention them).
fn sleeping(marker: &str) -> usize {
    common::pids_with_cmdline(marker)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.trim_end() == marker || cmdline.trim_end() == format!("{marker}6")
        })
        .count()
}

#[test]
fn url_mode_skips_local_steps_with_the_reason_and_checks_the_server() {
    let server = common::TestServer::start_with(&[("CCX_TOKEN", "t0ken")], &[]);
    let out = doctor(&["--json", "--url", &server.url], &[("CCX_TOKEN", "t0ken")]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.target, server.url);
    for step in &report.steps[..4] {
        assert_eq!(step.status, Status::Skip);
        assert!(
            step.summary.starts_with("not checked with --url"),
            "{}",
            step.summary
        );
    }
    assert_eq!(report.steps[4].status, Status::Pass);
    assert_eq!(report.steps[5].status, Status::Pass);
}

#[test]
fn server_cmd_gets_stdin_from_dev_null() {
    // A server that would block forever reading stdin must see EOF at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cmd = format!("cat; exec {} serve --foreground", common::BIN);
    let out = doctor(
        &["--json", "--spawn-timeout", "5s", "--server-cmd", &cmd],
        &[("CCX_PORT", &port.to_string())],
    );
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.exit_code, 0, "{}", stdout(&out));
}

#[test]
fn a_server_under_a_launcher_shell_is_stopped_without_waiting_out_the_grace() {
    // The launcher shell stays the group's leader and dies of the SIGTERM
    // at once; a member that takes a moment to exit (a TERM trap) is
    // re-parented to the doctor first, and must not hold the doctor for
    // the 2 s grace (and the SIGKILL wait) as an unreaped zombie in the
    // group.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cmd = format!(
        "sh -c 'trap \"sleep 0.2; exit 0\" TERM; while :; do sleep 0.05; done' & {} serve --foreground; true",
        common::BIN
    );
    let started = Instant::now();
    let out = doctor(
        &["--json", "--spawn-timeout", "30s", "--server-cmd", &cmd],
        &[("CCX_PORT", &port.to_string())],
    );
    let took = started.elapsed();
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.exit_code, 0, "{}", stdout(&out));
    let steps: u64 = report.steps.iter().map(|s| s.duration_ms).sum();
    let after_steps = took.saturating_sub(Duration::from_millis(steps));
    assert!(
        after_steps < Duration::from_millis(1500),
        "the doctor took {after_steps:?} beyond its steps ({steps} ms): the server's stop waited"
    );
}

#[test]
fn a_refused_url_names_the_address_tried_and_what_answers_on_the_other_loopback_family() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback (::1) to try");
        return;
    }
    // ccx listens on 127.0.0.1 only; the URL names ::1.
    let server = common::TestServer::start();
    let url = format!("ws://[::1]:{}/ws/mcp", server.port);
    let out = doctor(&["--json", "--url", &url], &[]);
    let r: Report = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let handshake = r.steps.iter().find(|s| s.id == StepId::Handshake).unwrap();
    assert_eq!(handshake.status, Status::Fail);
    assert_eq!(
        handshake.summary,
        format!(
            "connection refused at [::1]:{port}, but something accepts connections at 127.0.0.1:{port}",
            port = server.port
        )
    );
    assert!(handshake
        .fix
        .as_deref()
        .unwrap()
        .contains(&format!("use 127.0.0.1:{} in the URL", server.port)));
}

#[test]
fn the_handshake_names_the_server_by_what_its_health_says() {
    let server = common::TestServer::start();
    let out = doctor(&["--json", "--url", &server.url], &[]);
    let r: Report = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{r:#?}");
    let identity = r.server.expect("the report names the server");
    assert_eq!(identity.service.as_deref(), Some("ccx"));
    let handshake = r.steps.iter().find(|s| s.id == StepId::Handshake).unwrap();
    assert!(
        handshake
            .summary
            .ends_with(&format!("(ccx {})", identity.version)),
        "{handshake:#?}"
    );
    let echo = r.steps.iter().find(|s| s.id == StepId::Echo).unwrap();
    assert!(
        echo.detail
            .iter()
            .any(|l| l.starts_with("round trip measured by ccx: ")),
        "{echo:#?}"
    );
}
