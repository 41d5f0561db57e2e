//! `ccx stress` against real servers: the JSON report parses into the
//! documented types, failures are grouped by cause, bad input is refused.

mod common;

use std::process::Output;

use ccx::stress::report::{Cause, StressReport, SCHEMA_VERSION};
use common::{ccx_command, TestServer};

fn stress(args: &[&str]) -> Output {
    ccx_command()
        .arg("stress")
        .args(args)
        .output()
        .expect("run ccx stress")
}

fn report(out: &Output) -> StressReport {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a StressReport ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn stress_16_clients_200_echo_requests_all_succeed() {
    let server = TestServer::start();
    let out = stress(&[
        "--url",
        &server.url,
        "--clients",
        "16",
        "--requests",
        "200",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(
        out.stderr.is_empty(),
        "no progress bar when stderr is not a terminal: {}",
        stderr(&out)
    );
    let report = report(&out);
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert!(report.passed);
    let target = &report.targets[0];
    assert_eq!(target.target, server.url);
    assert_eq!(target.attempts, 3200);
    assert_eq!(target.successes, 3200);
    assert_eq!(target.success_percent, 100.0);
    assert!(target.failures.is_empty());
    let latency = target.latency_ms.as_ref().expect("latency");
    assert!(
        latency.p50 > 0.0
            && latency.p50 <= latency.p90
            && latency.p90 <= latency.p99
            && latency.p99 <= latency.max
    );
    assert!(target.throughput_rps > 0.0);
}

#[test]
fn stress_reports_a_dead_target_as_connect_refused_beside_a_live_one() {
    let server = TestServer::start();
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    let out = stress(&[
        "--url",
        &server.url,
        "--url",
        &dead,
        "--clients",
        "2",
        "--requests",
        "10",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report = report(&out);
    assert!(!report.passed);
    let (live, down) = (&report.targets[0], &report.targets[1]);
    assert_eq!(live.success_percent, 100.0);
    assert!(live.met_min_success);
    assert_eq!(down.target, dead);
    assert_eq!(down.attempts, 20);
    assert_eq!(down.success_percent, 0.0);
    assert_eq!(down.failures.len(), 1);
    assert_eq!(down.failures[0].cause, Cause::ConnectRefused);
    assert_eq!(down.failures[0].count, 20);
    assert!(
        down.failures[0].example.contains("refused"),
        "{}",
        down.failures[0].example
    );
}

#[test]
fn stress_human_table_shows_targets_side_by_side_with_causes() {
    let server = TestServer::start();
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    let out = stress(&[
        "--url",
        &server.url,
        "--url",
        &dead,
        "--clients",
        "1",
        "--requests",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table
        .lines()
        .find(|l| l.starts_with("target"))
        .expect("target row");
    assert!(
        header.contains(&server.url) && header.contains(&dead),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("connect refused")),
        "{table}"
    );
    assert!(
        table.contains("✓ 100.0 %") && table.contains("✗ 0.0 %"),
        "{table}"
    );
}

#[test]
fn stress_cases_file_names_the_pattern_that_did_not_match() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("simple_stress_tests.json");
    std::fs::write(
        &path,
        r#"{
  "task_list_id": "SIMPLE",
  "timeout": 20,
  "tests": [
    {"id": "echo_test", "name": "Echo Test", "command": "echo \"Testing basic echo command\"",
     "expected_patterns": ["testing BASIC echo"], "description": "case-insensitive"},
    {"id": "never", "name": "Cannot match", "command": "echo hello",
     "expected_patterns": ["hello", "no-such-text-xyzzy"]},
    {"id": "fails", "name": "Expected failure", "command": "exit 4", "expect_non_zero_exit": true}
  ]
}"#,
    )
    .unwrap();
    let out = stress(&[
        "--url",
        &server.url,
        "--cases",
        path.to_str().unwrap(),
        "--clients",
        "2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report = report(&out);
    let target = &report.targets[0];
    assert_eq!(target.attempts, 6, "2 clients × one pass over 3 cases");
    assert_eq!(target.successes, 4);
    let wrong = target
        .failures
        .iter()
        .find(|f| f.cause == Cause::WrongOutput)
        .expect("wrong output");
    assert_eq!(wrong.count, 2);
    assert_eq!(wrong.case_id.as_deref(), Some("never"));
    assert_eq!(wrong.pattern.as_deref(), Some("no-such-text-xyzzy"));
    assert!(wrong.example.contains("no-such-text-xyzzy"));
    let never = target.cases.iter().find(|c| c.id == "never").unwrap();
    assert_eq!((never.attempts, never.successes), (2, 0));
    assert_eq!(
        never.missing_patterns,
        vec!["no-such-text-xyzzy".to_string()]
    );
    let table = stress(&[
        "--url",
        &server.url,
        "--cases",
        path.to_str().unwrap(),
        "--clients",
        "1",
    ]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("wrong output") && table.contains("\"no-such-text-xyzzy\""),
        "{table}"
    );
}

#[test]
fn stress_reads_the_categories_shape() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.json");
    std::fs::write(
        &path,
        r#"{"categories": {
            "simple": {"timeout": 10, "tests": [{"id": "a", "name": "A", "command": "echo alpha", "expected_patterns": ["alpha"]}]},
            "edge_cases": {"tests": [{"id": "empty", "name": "Empty", "command": "echo \"\"", "expected_patterns": []}]}}}"#,
    )
    .unwrap();
    let out = stress(&[
        "--url",
        &server.url,
        "--cases",
        path.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = report(&out);
    assert_eq!(report.targets[0].cases.len(), 2);
    assert_eq!(report.targets[0].success_percent, 100.0);
}

#[test]
fn stress_oneshot_mode_and_command_workload() {
    let server = TestServer::start();
    let out = stress(&[
        "--url",
        &server.url,
        "--mode",
        "oneshot",
        "--clients",
        "3",
        "--requests",
        "5",
        "--command",
        "exit 7",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = report(&out);
    assert_eq!(report.settings.mode, "oneshot");
    let target = &report.targets[0];
    assert_eq!(target.attempts, 15);
    assert_eq!(target.failures[0].cause, Cause::NonZeroExit);
    assert!(
        target.failures[0].example.contains("exit_code 7"),
        "{}",
        target.failures[0].example
    );
    let pass = stress(&[
        "--url",
        &server.url,
        "--mode",
        "oneshot",
        "--requests",
        "5",
        "--min-success",
        "0",
        "--command",
        "exit 7",
    ]);
    assert_eq!(
        pass.status.code(),
        Some(0),
        "--min-success 0 accepts anything"
    );
}

#[test]
fn stress_duration_caps_the_run() {
    let server = TestServer::start();
    let started = std::time::Instant::now();
    let out = stress(&[
        "--url",
        &server.url,
        "--duration",
        "1s",
        "--clients",
        "2",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let report = report(&out);
    assert_eq!(report.settings.requests_per_client, None);
    assert!(report.targets[0].attempts > 0);
}

#[test]
fn stress_command_timeout_is_reported_as_timeout() {
    let server = TestServer::start();
    let out = stress(&[
        "--url",
        &server.url,
        "--requests",
        "1",
        "--clients",
        "1",
        "--timeout",
        "300ms",
        "--command",
        "sleep 5",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = report(&out);
    assert_eq!(report.targets[0].failures[0].cause, Cause::Timeout);
}

#[test]
fn stress_refuses_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let out = stress(&["--cases", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.json"), "{}", stderr(&out));

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"tests\": [\n    {\"id\": \"a\" \"command\": \"x\"}\n  ]\n}",
    )
    .unwrap();
    let out = stress(&["--cases", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3:", bad.display())),
        "names the file and line: {err}"
    );

    let tasks = dir.path().join("tasks.json");
    std::fs::write(
        &tasks,
        r#"{"categories": {"simple": {"tasks": [{"id": "x"}]}}}"#,
    )
    .unwrap();
    let out = stress(&["--cases", tasks.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("task-list"), "{}", stderr(&out));

    for args in [
        &["--clients", "0"][..],
        &["--mode", "sometimes"],
        &["--requests", "0"],
        &["--min-success", "120"],
        &["--duration", "forever"],
        &["--url", "http://127.0.0.1:1/ws/mcp"],
        &["--url", "wss://127.0.0.1:1/ws/mcp"],
    ] {
        let out = stress(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn stress_wrong_token_is_a_handshake_failure() {
    let server = TestServer::start_with(&[("CCX_TOKEN", "right")], &[]);
    let out = ccx_command()
        .args([
            "stress",
            "--url",
            &server.url,
            "--clients",
            "1",
            "--requests",
            "2",
            "--json",
        ])
        .env("CCX_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = report(&out);
    let failure = &report.targets[0].failures[0];
    assert_eq!(failure.cause, Cause::Handshake);
    assert!(failure.example.contains("401"), "{}", failure.example);
}

// --direct: the same workload with no server, as a baseline column.

use ccx::stress::direct;
use ccx::stress::report::TargetKind;

fn direct_target(report: &StressReport) -> &ccx::stress::report::TargetReport {
    let direct: Vec<_> = report
        .targets
        .iter()
        .filter(|t| t.kind == TargetKind::Direct)
        .collect();
    assert_eq!(direct.len(), 1, "exactly one direct target: {report:?}");
    assert_eq!(direct[0].target, direct::LABEL);
    direct[0]
}

#[test]
fn stress_direct_beside_a_real_server_both_succeed_in_one_table() {
    let server = TestServer::start();
    let out = stress(&[
        "--direct",
        "--url",
        &server.url,
        "--clients",
        "4",
        "--requests",
        "25",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}\nstdout: {}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let report = report(&out);
    assert!(report.passed);
    assert_eq!(report.targets.len(), 2);
    let served = &report.targets[0];
    assert_eq!(served.kind, TargetKind::Server);
    assert_eq!(served.target, server.url);
    let direct = direct_target(&report);
    for t in [served, direct] {
        assert_eq!((t.attempts, t.successes), (100, 100), "{t:?}");
        assert_eq!(t.success_percent, 100.0);
        assert!(t.failures.is_empty(), "{t:?}");
        let latency = t.latency_ms.as_ref().expect("latency");
        assert!(latency.p50 > 0.0 && latency.p50 <= latency.p99);
    }

    let out = stress(&[
        "--direct",
        "--url",
        &server.url,
        "--clients",
        "2",
        "--requests",
        "5",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}\nstdout: {table}",
        stderr(&out)
    );
    let header = table
        .lines()
        .find(|l| l.starts_with("target"))
        .expect("target row");
    let (url_at, direct_at) = (
        header.find(&server.url).expect("server column"),
        header.find("direct (no server)").expect("direct column"),
    );
    assert!(
        url_at < direct_at,
        "direct comes after the --url targets: {table}"
    );
    let rate = table
        .lines()
        .find(|l| l.starts_with("success rate"))
        .expect("success rate row");
    assert_eq!(rate.matches("✓ 100.0 %").count(), 2, "{table}");
}

#[test]
fn stress_direct_succeeds_where_nothing_listens_and_the_server_target_fails() {
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    let out = stress(&[
        "--direct",
        "--url",
        &dead,
        "--clients",
        "3",
        "--requests",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report = report(&out);
    assert!(!report.passed);
    let down = &report.targets[0];
    assert_eq!(down.kind, TargetKind::Server);
    assert_eq!(down.success_percent, 0.0);
    assert_eq!(down.failures[0].cause, Cause::ConnectRefused);
    assert_eq!(down.failures[0].count, 12);
    let direct = direct_target(&report);
    assert_eq!((direct.attempts, direct.successes), (12, 12));
    assert!(direct.met_min_success);
}

#[test]
fn stress_direct_without_url_still_loads_the_local_server() {
    let server = TestServer::start();
    let out = ccx_command()
        .args([
            "stress",
            "--direct",
            "--clients",
            "1",
            "--requests",
            "3",
            "--json",
        ])
        .env("CCX_HOST", "127.0.0.1")
        .env("CCX_PORT", server.port.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = report(&out);
    assert_eq!(report.targets.len(), 2);
    assert_eq!(report.targets[0].target, server.url);
    assert_eq!(report.targets[0].successes, 3);
    assert_eq!(direct_target(&report).successes, 3);
}

#[test]
fn stress_direct_cases_file_names_the_pattern_that_did_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(
        &path,
        r#"{"timeout": 20, "tests": [
    {"id": "echo_test", "name": "Echo Test", "command": "echo \"Testing basic echo command\"",
     "expected_patterns": ["testing BASIC echo"]},
    {"id": "never", "name": "Cannot match", "command": "echo hello",
     "expected_patterns": ["hello", "no-such-text-xyzzy"]}
  ]}"#,
    )
    .unwrap();
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    let out = stress(&[
        "--direct",
        "--url",
        &dead,
        "--cases",
        path.to_str().unwrap(),
        "--clients",
        "2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report = report(&out);
    let direct = direct_target(&report);
    assert_eq!((direct.attempts, direct.successes), (4, 2));
    assert_eq!(direct.failures.len(), 1, "{:?}", direct.failures);
    let wrong = &direct.failures[0];
    assert_eq!(wrong.cause, Cause::WrongOutput);
    assert_eq!(wrong.count, 2);
    assert_eq!(wrong.case_id.as_deref(), Some("never"));
    assert_eq!(wrong.pattern.as_deref(), Some("no-such-text-xyzzy"));
    assert!(
        wrong.example.contains("no-such-text-xyzzy"),
        "{}",
        wrong.example
    );
    let never = direct.cases.iter().find(|c| c.id == "never").unwrap();
    assert_eq!(
        never.missing_patterns,
        vec!["no-such-text-xyzzy".to_string()]
    );

    let out = stress(&[
        "--direct",
        "--url",
        &dead,
        "--cases",
        path.to_str().unwrap(),
        "--clients",
        "1",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("direct (no server) never (Cannot match): 0/1 passed; wrong output 1; pattern not found: \"no-such-text-xyzzy\""),
        "{table}"
    );
}

#[test]
fn stress_direct_command_exit_3_is_a_non_zero_exit_failure() {
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    let out = stress(&[
        "--direct",
        "--url",
        &dead,
        "--clients",
        "2",
        "--requests",
        "3",
        "--command",
        "echo oops >&2; exit 3",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = report(&out);
    let direct = direct_target(&report);
    assert_eq!(direct.attempts, 6);
    assert_eq!(direct.successes, 0);
    assert_eq!(direct.failures.len(), 1);
    assert_eq!(direct.failures[0].cause, Cause::NonZeroExit);
    assert_eq!(direct.failures[0].count, 6);
    assert!(
        direct.failures[0].example.contains("exit_code 3")
            && direct.failures[0].example.contains("oops"),
        "{}",
        direct.failures[0].example
    );
}

#[test]
fn stress_direct_with_a_missing_shell_is_spawn_failed() {
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    let out = ccx_command()
        .args([
            "stress",
            "--direct",
            "--url",
            &dead,
            "--requests",
            "2",
            "--json",
        ])
        .env("CCX_SHELL", "/no/such/shell")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report = report(&out);
    let failure = &direct_target(&report).failures[0];
    assert_eq!(failure.cause, Cause::SpawnFailed);
    assert!(
        failure.example.contains("/no/such/shell"),
        "{}",
        failure.example
    );
}

#[test]
fn stress_direct_timeout_counts_as_timeout_and_leaves_no_process() {
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    // A unique duration marks this test's sleeps; one escapes the group with
    // setsid, as a daemonising command would.
    let marker = format!("30.{}", std::process::id());
    let command = format!("setsid sleep {marker} & sleep {marker}");
    let started = std::time::Instant::now();
    let out = stress(&[
        "--direct",
        "--url",
        &dead,
        "--clients",
        "1",
        "--requests",
        "1",
        "--timeout",
        "300ms",
        "--command",
        &command,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let report = report(&out);
    let failure = &direct_target(&report).failures[0];
    assert_eq!(failure.cause, Cause::Timeout);
    assert!(failure.example.contains("300ms"), "{}", failure.example);
    let left = common::pids_with_cmdline(&format!("sleep {marker}"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The report goes out through the one output helper: a stdout that cannot
/// be written (a full disk behind `>`) is an I/O error, exit 3, with a
/// message; a reader that went away (`| head`) is quiet and keeps the verdict.
#[test]
fn stress_surfaces_a_failed_write_of_its_report_and_is_quiet_on_a_closed_pipe() {
    let dead = format!("ws://127.0.0.1:{}/ws/mcp", free_port());
    let args = [
        "stress",
        "--url",
        &dead,
        "--clients",
        "1",
        "--requests",
        "1",
    ];
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let out = ccx_command()
        .args(args)
        .stdout(full)
        .output()
        .expect("run ccx stress");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "stderr: {}",
        stderr(&out)
    );

    // A pipe whose reader is gone before ccx writes: EPIPE, not a failure
    // of its own (the target is dead, so the verdict is 1).
    let mut child = ccx_command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ccx stress");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for ccx stress");
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("panicked"),
        "stderr: {}",
        stderr(&out)
    );
}

/// The engine reports progress as events, one per finished request, and
/// draws nothing itself: a counting receiver sees every request, and as
/// many `ok` events as the report counts successes.
#[test]
fn the_engine_emits_one_event_per_request() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use ccx::stress::{run_target, Mode, Plan, Progress, ProgressEvent, Target, Workload};

    #[derive(Default)]
    struct Count {
        done: AtomicU64,
        ok: AtomicU64,
    }
    impl Progress for Count {
        fn event(&self, event: ProgressEvent) {
            let ProgressEvent::RequestDone { ok } = event;
            self.done.fetch_add(1, Ordering::SeqCst);
            if ok {
                self.ok.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    let home = tempfile::tempdir().unwrap();
    let env = [("HOME".to_string(), home.path().display().to_string())].into();
    let config =
        ccx::config::Config::load(&Default::default(), &env).expect("the default configuration");
    let rules = ccx::process::Executor::from_config(&config);
    let plan = Plan {
        clients: 2,
        requests: Some(3),
        duration: None,
        mode: Mode::Persistent,
        timeout: Duration::from_secs(30),
        workload: Workload::Command("true".into()),
    };
    let count = Arc::new(Count::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(run_target(
        &Target::Direct(rules.clone()),
        &plan,
        100.0,
        count.clone(),
    ));
    assert_eq!(count.done.load(Ordering::SeqCst), 6);
    assert_eq!(count.ok.load(Ordering::SeqCst), report.successes);
    assert_eq!(report.successes, 6);

    let failing = Plan {
        workload: Workload::Command("exit 1".into()),
        ..plan
    };
    let count = Arc::new(Count::default());
    let report = runtime.block_on(run_target(
        &Target::Direct(rules),
        &failing,
        100.0,
        count.clone(),
    ));
    assert_eq!(count.done.load(Ordering::SeqCst), 6);
    assert_eq!((report.successes, count.ok.load(Ordering::SeqCst)), (0, 0));
}
