//! Snapshot tests (insta) of the human output: the doctor's text report and
//! the stress summary table, each rendered from a fixed report value (the
//! values of the real runs the docs show, so nothing varies), and a check
//! that every sample in the docs marked `<!-- snapshot: NAME -->` is
//! byte-identical to snapshot NAME, so the docs cannot drift from what ccx
//! prints.
//!
//! A changed rendering fails `cargo test` (insta writes the new text beside
//! the old as `tests/snapshots/*.snap.new`; under CI it writes nothing).
//! Review and accept with `cargo insta review`, or by renaming the `.snap.new`
//! file, then copy the new text into the doc sample.

use std::path::Path;

use ccx::doctor::render::{self, Style};
use ccx::doctor::{Finding, Report, Severity, Status, StepId, StepResult, SCHEMA_VERSION};
use ccx::stress::render::render_human;
use ccx::stress::report::StressReport;
use serde_json::{json, Value};

const TARGET: &str = "ws://127.0.0.1:8003/ws/mcp";

fn step(
    id: StepId,
    status: Status,
    summary: &str,
    ms: u64,
    detail: &[&str],
    fix: Option<&str>,
) -> StepResult {
    StepResult {
        id,
        title: id.title().into(),
        status,
        summary: summary.into(),
        detail: detail.iter().map(|l| l.to_string()).collect(),
        fix: fix.map(String::from),
        duration_ms: ms,
        findings: Vec::new(),
    }
}

fn skipped(id: StepId, because: &str) -> StepResult {
    step(
        id,
        Status::Skip,
        &format!("skipped because `{because}` failed"),
        0,
        &[],
        None,
    )
}

fn report(target: &str, steps: Vec<StepResult>, duration_ms: u64) -> Report {
    let failed = steps.iter().any(|s| s.status.is_failure());
    Report {
        schema_version: SCHEMA_VERSION,
        ccx_version: "0.1.0".into(),
        target: target.into(),
        ok: !failed,
        exit_code: u8::from(failed),
        steps,
        duration_ms,
        error: None,
        server: None,
        ended: Vec::new(),
    }
}

fn plain(report: &Report) -> String {
    render::human(
        report,
        Style {
            color: false,
            verbose: false,
        },
    )
}

fn config_step(vars: usize, port: u16) -> StepResult {
    let set = if vars == 1 { "variable" } else { "variables" };
    step(
        StepId::Config,
        Status::Pass,
        &format!("valid: {vars} {set} set, server on 127.0.0.1:{port}"),
        0,
        &[],
        None,
    )
}

fn binaries_step(found: usize) -> StepResult {
    step(
        StepId::Binaries,
        Status::Pass,
        &format!("{found} found"),
        0,
        &[],
        None,
    )
}

fn port_step(port: u16) -> StepResult {
    step(
        StepId::Port,
        Status::Pass,
        &format!("127.0.0.1:{port} is free"),
        0,
        &[],
        None,
    )
}

#[test]
fn doctor_all_pass() {
    let r = report(
        TARGET,
        vec![
            config_step(0, 8003),
            binaries_step(2),
            port_step(8003),
            step(
                StepId::Spawn,
                Status::Pass,
                "ready at ws://127.0.0.1:8003/ws/mcp (pid 8602)",
                2,
                &[],
                None,
            ),
            step(
                StepId::Handshake,
                Status::Pass,
                "connected to ws://127.0.0.1:8003/ws/mcp (ccx 0.1.0)",
                2,
                &[],
                None,
            ),
            step(
                StepId::Echo,
                Status::Pass,
                "`echo` ran (pid 8605) and its output came back in 1ms",
                1,
                &[],
                None,
            ),
        ],
        8,
    );
    insta::assert_snapshot!("doctor_all_pass", plain(&r));
}

#[test]
fn doctor_port_in_use() {
    // The /health body as ccx's server writes it (the shared type).
    let health = ccx::protocol::Health {
        active_sessions: Some(0),
        info: None,
        log_error: None,
        max_sessions: Some(256),
        pid: Some(8613),
        service: Some("ccx".into()),
        status: Some("healthy".into()),
        uptime_seconds: Some(0.015),
        version: Some("0.1.0".into()),
    };
    let body = serde_json::to_string(&health).unwrap();
    let probe = format!("GET http://127.0.0.1:8003/health → 200 {body}");
    let r = report(
        TARGET,
        vec![
            config_step(0, 8003),
            binaries_step(2),
            step(
                StepId::Port,
                Status::Fail,
                "127.0.0.1:8003 is in use by a healthy ccx already serving there: pid 8613 (/usr/local/bin/ccx serve --foreground)",
                14,
                &["listening: pid 8613 — /usr/local/bin/ccx serve --foreground", &probe],
                Some("check that server instead: `ccx doctor --url ws://127.0.0.1:8003/ws/mcp`; or stop it (`ccx stop` if `ccx serve` started it, else kill 8613), or set CCX_PORT to another port"),
            ),
            skipped(StepId::Spawn, "port"),
            skipped(StepId::Handshake, "port"),
            skipped(StepId::Echo, "port"),
        ],
        20,
    );
    insta::assert_snapshot!("doctor_port_in_use", plain(&r));
}

#[test]
fn doctor_server_crashes() {
    let r = report(
        "ws://127.0.0.1:18300/ws/mcp",
        vec![
            config_step(1, 18300),
            binaries_step(3),
            port_step(18300),
            step(
                StepId::Spawn,
                Status::Fail,
                "the server exited with exit status 1 before it was ready: RuntimeError: cannot import websockets",
                79,
                &[
                    r#"command: /bin/sh -c "python3 -c 'raise RuntimeError(\"cannot import websockets\")'""#,
                    "stderr: Traceback (most recent call last):",
                    r#"stderr:   File "<string>", line 1, in <module>"#,
                    "stderr: RuntimeError: cannot import websockets",
                ],
                Some("fix the cause its own error names (stderr above); run the same command in a terminal to see all of it"),
            ),
            skipped(StepId::Handshake, "spawn"),
            skipped(StepId::Echo, "spawn"),
        ],
        85,
    );
    insta::assert_snapshot!("doctor_server_crashes", plain(&r));
}

#[test]
fn doctor_verbose() {
    let mut config = config_step(0, 8003);
    config.detail = vec![
        "server address: 127.0.0.1:8003 (clients connect to ws://127.0.0.1:8003/ws/mcp)".into(),
        "no CCX_* or WS_* variable set: defaults apply".into(),
    ];
    let mut binaries = binaries_step(2);
    binaries.detail = vec![
        "server: /usr/local/bin/ccx".into(),
        "CCX_SHELL: /bin/sh".into(),
    ];
    let r = report(
        TARGET,
        vec![
            config,
            binaries,
            port_step(8003),
            step(
                StepId::Spawn,
                Status::Pass,
                "ready at ws://127.0.0.1:8003/ws/mcp (pid 8609)",
                2,
                &[
                    "started: /usr/local/bin/ccx serve --foreground (pid 8609, own process group)",
                    "ready after 2ms at ws://127.0.0.1:8003/ws/mcp",
                    "stderr before ready: 74 bytes",
                    "stderr: 2026-11-26T08:19:45.346081Z  INFO listening on ws://127.0.0.1:8003/ws/mcp",
                ],
                None,
            ),
            step(
                StepId::Handshake,
                Status::Pass,
                "connected to ws://127.0.0.1:8003/ws/mcp (ccx 0.1.0)",
                2,
                &[
                    "session 1e130a09-889f-4901-a8ac-92ec84a22c0f on ccx 0.1.0",
                    "capabilities: execute, control, stream, batched_output",
                    "token sent: no",
                ],
                None,
            ),
            step(
                StepId::Echo,
                Status::Pass,
                "`echo` ran (pid 8612) and its output came back in 2ms",
                2,
                &[
                    "command: echo ccx-doctor-f4db12d5093f40a49fcaed83faf441ac",
                    "pid 8612 in group 8612, exit code 0, 0 ms",
                    "stdout: ccx-doctor-f4db12d5093f40a49fcaed83faf441ac",
                ],
                None,
            ),
        ],
        8,
    );
    let text = render::human(
        &r,
        Style {
            color: false,
            verbose: true,
        },
    );
    insta::assert_snapshot!("doctor_verbose", text);
}

#[test]
fn doctor_harmless_warning() {
    let mut spawn = step(
        StepId::Spawn,
        Status::Pass,
        "ready at ws://127.0.0.1:8003/ws/mcp (pid 8922); note: it printed a harmless warning (sys-modules-runtime-warning)",
        16,
        &["harmless [sys-modules-runtime-warning]: …"],
        None,
    );
    spawn.findings.push(Finding {
        id: "sys-modules-runtime-warning".into(),
        severity: Severity::Harmless,
        meaning: "a warning, usually not the cause: `python -m pkg.mod` ran a module that its package had already imported; it runs twice but works".into(),
        fix: "nothing to do".into(),
        evidence: "RuntimeWarning: 'cc_executor.core.main' found in sys.modules".into(),
    });
    let r = report(
        TARGET,
        vec![
            config_step(1, 8003),
            binaries_step(3),
            port_step(8003),
            spawn,
            step(
                StepId::Handshake,
                Status::Pass,
                "connected to ws://127.0.0.1:8003/ws/mcp (ccx 0.1.0)",
                2,
                &[],
                None,
            ),
            step(
                StepId::Echo,
                Status::Pass,
                "`echo` ran (pid 8925) and its output came back in 2ms",
                2,
                &[],
                None,
            ),
        ],
        24,
    );
    insta::assert_snapshot!("doctor_harmless_warning", plain(&r));
}

const DIRECT: &str = "direct (no server)";

fn settings(requests: u64, workload: &str, detail: Option<&str>, clients: u32) -> Value {
    json!({
        "clients": clients, "requests_per_client": requests, "duration_s": null,
        "mode": "persistent", "timeout_s": 30.0, "workload": workload,
        "workload_detail": detail, "min_success_percent": 100.0
    })
}

/// One target's figures: `[attempts, successes]`, `[elapsed_s,
/// throughput_rps]` and the latency percentiles `[p50, p90, p99, max]`
/// (none when nothing succeeded), without failures or cases.
fn target(name: &str, counts: [u64; 2], time: [f64; 2], latency: Option<[f64; 4]>) -> Value {
    let [attempts, successes] = counts;
    let kind = if name == DIRECT { "direct" } else { "server" };
    let percent = match attempts {
        0 => 0.0,
        n => successes as f64 * 100.0 / n as f64,
    };
    let latency =
        latency.map(|[p50, p90, p99, max]| json!({"p50": p50, "p90": p90, "p99": p99, "max": max}));
    json!({
        "target": name, "kind": kind, "attempts": attempts, "successes": successes,
        "success_percent": percent, "met_min_success": successes == attempts,
        "elapsed_s": time[0], "throughput_rps": time[1], "latency_ms": latency,
        "failures": [], "cases": []
    })
}

/// `target` with its failures and cases set.
fn failing(mut target: Value, failures: Value, cases: Value) -> Value {
    target["failures"] = failures;
    target["cases"] = cases;
    target
}

fn stress(settings: Value, targets: Vec<Value>) -> String {
    let passed = targets.iter().all(|t| t["met_min_success"] == true);
    let report: StressReport = serde_json::from_value(json!({
        "schema_version": 1, "settings": settings, "targets": targets, "passed": passed
    }))
    .expect("a valid stress report");
    render_human(&report, false)
}

#[test]
fn stress_direct_beside_the_local_server() {
    let url = "ws://127.0.0.1:37759/ws/mcp";
    let server = target(
        url,
        [3200, 3200],
        [2.71, 1180.8],
        Some([13.13, 17.39, 21.07, 29.57]),
    );
    let direct = target(
        DIRECT,
        [3200, 3200],
        [1.83, 1747.4],
        Some([8.73, 12.54, 16.72, 21.44]),
    );
    let text = stress(settings(200, "echo", None, 16), vec![server, direct]);
    insta::assert_snapshot!("stress_direct_beside_the_local_server", text);
}

#[test]
fn stress_the_server_fails_here() {
    let failures = json!([{ "cause": "non_zero_exit", "count": 10,
        "example": "exit_code 127, stderr: \"/bin/sh: 1: python3: not found\"",
        "case_id": null, "pattern": null }]);
    let url = "ws://127.0.0.1:40729/ws/mcp";
    let server = failing(target(url, [10, 0], [0.02, 0.0], None), failures, json!([]));
    let direct = target(
        DIRECT,
        [10, 10],
        [0.47, 21.5],
        Some([89.47, 97.60, 99.65, 99.65]),
    );
    let command = settings(5, "command", Some("python3 -c 'print(42)'"), 2);
    let text = stress(command, vec![server, direct]);
    insta::assert_snapshot!("stress_the_server_fails_here", text);
}

#[test]
fn stress_the_command_fails_on_both_sides() {
    let wrong = json!([{ "cause": "wrong_output", "count": 2,
        "example": "pattern \"four\" not found in the output (2 bytes, stdout: \"4\")",
        "case_id": "math", "pattern": "four" }]);
    let cases = json!([
        { "id": "echo", "name": "Echo", "category": null, "attempts": 2, "successes": 2,
          "failures": [], "missing_patterns": [] },
        { "id": "math", "name": "Basic Math", "category": null, "attempts": 2, "successes": 0,
          "failures": [["wrong_output", 2]], "missing_patterns": ["four"] },
        { "id": "date", "name": "Date", "category": null, "attempts": 2, "successes": 2,
          "failures": [], "missing_patterns": [] }
    ]);
    let server = "ws://127.0.0.1:37759/ws/mcp";
    let on_server = target(
        server,
        [6, 4],
        [0.09, 44.2],
        Some([4.17, 83.14, 83.14, 83.14]),
    );
    let direct = target(
        DIRECT,
        [6, 4],
        [0.08, 47.2],
        Some([1.32, 79.55, 79.55, 79.55]),
    );
    let text = stress(
        settings(3, "cases", Some("cases.json"), 2),
        vec![
            failing(on_server, wrong.clone(), cases.clone()),
            failing(direct, wrong, cases),
        ],
    );
    insta::assert_snapshot!("stress_the_command_fails_on_both_sides", text);
}

/// The text of snapshot `name` (what follows insta's header).
fn snapshot(name: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("human_output__{name}.snap"));
    let text = std::fs::read_to_string(path).ok()?;
    let body = text.strip_prefix("---\n")?;
    let (_, contents) = body.split_once("\n---\n")?;
    Some(contents.trim_end_matches('\n').to_string())
}

/// Every fenced block right after a `<!-- snapshot: NAME -->` line, as
/// (name, line number, block). A block may open with one `$ command` line
/// and close with `$ echo $?` and the status: those are the shell around the
/// output, not ccx's output.
fn marked_samples(doc: &str) -> Vec<(String, usize, String)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- snapshot:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let open = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("```"))
            .map(|p| i + 1 + p)
            .unwrap_or_else(|| panic!("line {}: no code block after the marker", i + 1));
        let close = lines[open + 1..]
            .iter()
            .position(|l| l.starts_with("```"))
            .map(|p| open + 1 + p)
            .unwrap_or_else(|| panic!("line {}: the code block never closes", open + 1));
        let mut block = &lines[open + 1..close];
        if block.first().is_some_and(|l| l.starts_with("$ ")) {
            block = &block[1..];
        }
        if block.len() >= 2 && block[block.len() - 2] == "$ echo $?" {
            block = &block[..block.len() - 2];
        }
        out.push((name.trim().to_string(), i + 1, block.join("\n")));
    }
    out
}

#[test]
fn doc_samples_are_the_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = Vec::new();
    for doc in ["docs/doctor.md", "docs/stress.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (name, line, block) in marked_samples(&text) {
            let snap =
                snapshot(&name).unwrap_or_else(|| panic!("{doc}:{line}: no snapshot named {name}"));
            assert!(
                block == snap,
                "{doc}:{line}: the sample differs from snapshot {name}; copy the snapshot's text into the doc:\n--- doc\n{block}\n--- snapshot\n{snap}"
            );
            checked.push(name);
        }
    }
    for name in [
        "doctor_all_pass",
        "doctor_port_in_use",
        "doctor_server_crashes",
        "doctor_verbose",
        "doctor_harmless_warning",
        "stress_direct_beside_the_local_server",
        "stress_the_server_fails_here",
        "stress_the_command_fails_on_both_sides",
    ] {
        assert!(
            checked.iter().any(|c| c == name),
            "snapshot {name} is shown in no doc (mark its sample with <!-- snapshot: {name} -->)"
        );
    }
}

#[test]
fn the_marker_reader_strips_only_the_shell_around_the_output() {
    let doc = "x\n<!-- snapshot: a -->\n\n```\n$ ccx stress\nline 1\n\nline 3\n$ echo $?\n1\n```\n";
    assert_eq!(
        marked_samples(doc),
        vec![("a".to_string(), 2, "line 1\n\nline 3".to_string())]
    );
}
