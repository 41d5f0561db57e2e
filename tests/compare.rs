//! `ccx doctor --compare` as a user runs it, against real servers started
//! with different environments: the JSON document parses back into
//! `CompareReport`, the differences are exactly the ones set up (and none
//! when the servers match), a failing side fails the run, and nothing is
//! left behind.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use ccx::doctor::compare::{CompareReport, COMPARE_SCHEMA_VERSION};
use ccx::doctor::{Status, StepId};
use common::TestServer;

/// Runs `ccx doctor ARGS` with the marker in its environment, then asserts
/// that it left no process behind (the test servers, `keep`, carry the
/// marker too).
fn doctor(args: &[&str], marker: &str, keep: &[&TestServer]) -> Output {
    let out = common::ccx_command()
        .arg("doctor")
        .args(args)
        .env(common::MARKER_VAR, marker)
        .output()
        .expect("run ccx doctor");
    assert!(
        common::eventually(Duration::from_secs(3), || {
            common::marked_processes(marker)
                .iter()
                .all(|(pid, _)| keep.iter().any(|s| s.pid() == *pid))
        }),
        "ccx doctor {args:?} left processes behind: {:?}",
        common::marked_processes(marker)
    );
    out
}

fn report(out: &Output) -> CompareReport {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a CompareReport ({e}):\n{}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn fields(r: &CompareReport) -> BTreeSet<String> {
    r.differences.iter().map(|d| d.field.clone()).collect()
}

fn marker() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// PATH with one more directory in front, holding an executable `name`.
fn path_with_tool(dir: &std::path::Path, name: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let tool = dir.join(name);
    std::fs::write(&tool, "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn servers_with_different_path_and_shell_differ_in_exactly_path_and_shell() {
    let m = marker();
    let extra = tempfile::tempdir().unwrap();
    let path = path_with_tool(extra.path(), "only-on-b");
    let a = TestServer::start_with(&[(common::MARKER_VAR, &m)], &[]);
    let b = TestServer::start_with(
        &[
            (common::MARKER_VAR, &m),
            ("PATH", &path),
            ("CCX_SHELL", "/bin/bash"),
        ],
        &[],
    );
    let out = doctor(
        &["--json", "--compare", &a.url, &b.url, "--require", "sh"],
        &m,
        &[&a, &b],
    );
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#?}");
    assert_eq!(r.schema_version, COMPARE_SCHEMA_VERSION);
    assert!(r.ok && r.compared);
    assert_eq!(r.exit_code, 0);
    assert_eq!(
        fields(&r),
        BTreeSet::from(["path".to_string(), "shell".to_string()]),
        "{:#?}",
        r.differences
    );
    let shell = r.differences.iter().find(|d| d.field == "shell").unwrap();
    assert!(shell.a.starts_with("/bin/sh → "), "{shell:?}");
    assert!(shell.b.starts_with("/bin/bash → "), "{shell:?}");
    let path_diff = r.differences.iter().find(|d| d.field == "path").unwrap();
    assert!(path_diff.b.starts_with(&extra.path().display().to_string()));
    // Both sides ran handshake and echo; the fingerprints name the sides' shells.
    assert_eq!(r.sides.len(), 2);
    for (side, server) in r.sides.iter().zip([&a, &b]) {
        assert_eq!(side.target, server.url);
        assert!(!side.local);
        for id in [StepId::Handshake, StepId::Echo] {
            let step = side.report.steps.iter().find(|s| s.id == id).unwrap();
            assert_eq!(step.status, Status::Pass, "{step:?}");
        }
        let info = side.info.as_ref().expect("a fingerprint");
        assert_eq!(info.pid, server.pid());
        assert!(info.binaries["sh"].is_some());
    }
}

#[test]
fn matching_servers_have_no_differences() {
    let m = marker();
    let a = TestServer::start_with(&[(common::MARKER_VAR, &m)], &[]);
    let b = TestServer::start_with(&[(common::MARKER_VAR, &m)], &[]);
    let out = doctor(&["--json", "--compare", &a.url, &b.url], &m, &[&a, &b]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#?}");
    assert!(r.compared);
    assert_eq!(r.differences, vec![]);
}

#[test]
fn a_required_program_missing_on_one_side_is_the_first_difference() {
    let m = marker();
    let extra = tempfile::tempdir().unwrap();
    let path = path_with_tool(extra.path(), "only-on-b");
    let a = TestServer::start_with(&[(common::MARKER_VAR, &m)], &[]);
    let b = TestServer::start_with(&[(common::MARKER_VAR, &m), ("PATH", &path)], &[]);
    let out = doctor(
        &[
            "--json",
            "--compare",
            &a.url,
            &b.url,
            "--require",
            "only-on-b",
        ],
        &m,
        &[&a, &b],
    );
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#?}");
    let first = &r.differences[0];
    assert_eq!(first.field, "binaries.only-on-b");
    assert_eq!(first.a, "not found");
    assert!(first.b.ends_with("/only-on-b"), "{first:?}");
    assert_eq!(
        fields(&r),
        BTreeSet::from(["binaries.only-on-b".to_string(), "path".to_string()])
    );
}

#[test]
fn one_url_compares_it_with_the_local_server_the_doctor_starts() {
    let m = marker();
    let remote =
        TestServer::start_with(&[(common::MARKER_VAR, &m), ("CCX_SHELL", "/bin/bash")], &[]);
    let out = doctor(
        &["--json", "--port", "0", "--compare", &remote.url],
        &m,
        &[&remote],
    );
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#?}");
    let (a, b) = (&r.sides[0], &r.sides[1]);
    assert!(a.local && !b.local);
    assert_eq!(b.target, remote.url);
    assert!(a.report.steps.iter().all(|s| s.status == Status::Pass));
    assert_eq!(fields(&r), BTreeSet::from(["shell".to_string()]));
}

#[test]
fn a_side_that_fails_its_checks_fails_the_comparison() {
    let m = marker();
    let a = TestServer::start_with(&[(common::MARKER_VAR, &m)], &[]);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("ws://127.0.0.1:{closed}/ws/mcp");
    let out = doctor(&["--json", "--compare", &a.url, &dead], &m, &[&a]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#?}");
    assert!(!r.ok && !r.compared);
    assert_eq!(r.differences, vec![]);
    let b = &r.sides[1];
    let handshake = b.report.steps.iter().find(|s| s.id == StepId::Handshake);
    assert_eq!(handshake.map(|s| s.status), Some(Status::Fail));
    assert!(b.info.is_none() && b.info_error.is_some());
}

#[test]
fn human_output_lists_each_difference_with_both_values_and_why() {
    let m = marker();
    let a = TestServer::start_with(&[(common::MARKER_VAR, &m)], &[]);
    let b = TestServer::start_with(&[(common::MARKER_VAR, &m), ("CCX_SHELL", "/bin/bash")], &[]);
    let out = doctor(
        &["--color", "never", "--compare", &a.url, &b.url],
        &m,
        &[&a, &b],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("side A ({})", a.url)), "{text}");
    assert!(text.contains(&format!("side B ({})", b.url)), "{text}");
    assert!(text.contains("most likely culprits first:\n  shell\n      A: /bin/sh → "));
    assert!(text.contains("\n      B: /bin/bash → "), "{text}");
    assert!(text.contains("      why: commands run under a different shell"));
    assert!(
        text.ends_with("both sides pass; 1 difference (exit 0)\n"),
        "{text}"
    );
}

#[test]
fn compare_takes_at_most_two_urls_and_not_with_url() {
    let m = marker();
    let u = "ws://127.0.0.1:1/ws/mcp";
    let out = doctor(&["--compare", u, u, u], &m, &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = doctor(&["--compare", u, "--url", u], &m, &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = doctor(&["--compare", "http://127.0.0.1:1/"], &m, &[]);
    assert_eq!(out.status.code(), Some(2));
    // --require-module belongs to --compare, and takes a Python module name.
    let out = doctor(&["--require-module", "cc_executor"], &m, &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = doctor(
        &["--compare", u, "--require-module", "x; rm -rf /"],
        &m,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected a Python module name"), "{stderr}");
}

/// PATH with cc_executor's venv first, as after `source VENV/bin/activate`
/// (so `python3` in its commands is the venv's, as in its Docker image);
/// `None` (after saying why) without the cc_executor snapshot.
fn cc_executor_path(test: &str) -> Option<String> {
    let snapshot = common::python::cc_executor_or_skip(test)?;
    let venv = common::cc_executor::cc_executor_venv(&snapshot);
    Some(format!(
        "{}:{}",
        venv.dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    ))
}

fn difference<'r>(r: &'r CompareReport, field: &str) -> &'r ccx::doctor::differences::Difference {
    r.differences
        .iter()
        .find(|d| d.field == field)
        .unwrap_or_else(|| panic!("no difference {field}: {:#?}", r.differences))
}

#[test]
fn a_local_server_that_fails_to_start_is_compared_with_a_real_cc_executor_by_its_environment() {
    let m = marker();
    let Some(path) = cc_executor_path("compare_failing_local") else {
        return;
    };
    // The working side: cc_executor from its src/, its venv first on PATH.
    let cc = common::cc_executor::CcExecutor::start_with(
        "compare_failing_local",
        &[("PATH", &path), (common::MARKER_VAR, &m)],
    )
    .unwrap();
    // The failing side: Docker's command, run from the project root where
    // the src-layout package is not importable (not installed, no PYTHONPATH).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let out = common::ccx_command()
        .current_dir(&cc.root)
        .env("PATH", &path)
        .env_remove("PYTHONPATH")
        .env(common::MARKER_VAR, &m)
        .args([
            "doctor",
            "--json",
            "--port",
            &port,
            "--timeout",
            "40s",
            "--spawn-timeout",
            "60s",
            "--server-cmd",
            "python -m uvicorn cc_executor.core.main:app --host 127.0.0.1 --port $CCX_PORT",
            "--compare",
            &cc.url,
        ])
        .output()
        .expect("run ccx doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#?}");
    assert!(r.compared && !r.ok, "{r:#?}");
    let (a, b) = (&r.sides[0], &r.sides[1]);
    let spawn = a
        .report
        .steps
        .iter()
        .find(|s| s.id == StepId::Spawn)
        .unwrap();
    assert_eq!(spawn.status, Status::Fail, "{spawn:#?}");
    let local = a.environment.as_ref().expect("the local environment");
    assert_eq!(local.source, Some(ccx::doctor::fingerprint::Source::Local));
    assert_eq!(local.cwd, cc.root.display().to_string());
    assert_eq!(
        b.environment.as_ref().and_then(|e| e.source),
        Some(ccx::doctor::fingerprint::Source::Execute)
    );
    // The culprit comes first: the package imports there, not here.
    let first = &r.differences[0];
    assert_eq!(first.field, "modules.cc_executor", "{:#?}", r.differences);
    assert_eq!(
        first.a, "ModuleNotFoundError: No module named 'cc_executor'",
        "{first:?}"
    );
    let there = cc.root.join("src/cc_executor");
    assert_eq!(first.b, format!("imports from {}", there.display()));
    assert!(first.why.contains("on one side only"), "{first:?}");
    let cwd = difference(&r, "cwd");
    assert_eq!(cwd.b, cc.root.join("src").display().to_string());
    assert!(r
        .not_compared
        .iter()
        .any(|n| n.contains("a side was not reached")));
    // The human form names the culprit and how A's fingerprint was taken.
    let human = ccx::doctor::render::compare_human(
        &r,
        ccx::doctor::render::Style {
            color: false,
            verbose: false,
        },
    );
    assert!(
        human.contains("environment: taken here (the local server did not start)"),
        "{human}"
    );
    assert!(
        human.contains(
            "  modules.cc_executor\n      A: ModuleNotFoundError: No module named 'cc_executor'\n"
        ),
        "{human}"
    );
    assert!(
        common::eventually(Duration::from_secs(3), || common::marked_processes(&m)
            .iter()
            .all(|(pid, _)| *pid == cc.pid())),
        "left behind: {:?}",
        common::marked_processes(&m)
    );
}

#[test]
fn two_real_cc_executors_with_different_environments_list_their_differences() {
    let m = marker();
    let Some(path) = cc_executor_path("compare_two_cc_executors") else {
        return;
    };
    let extra = tempfile::tempdir().unwrap();
    std::fs::create_dir(extra.path().join("onlyonb")).unwrap();
    std::fs::write(extra.path().join("onlyonb/__init__.py"), "").unwrap();
    let extra_path = extra.path().display().to_string();
    let a = common::cc_executor::CcExecutor::start_with(
        "compare_two_cc_executors",
        &[("PATH", &path), (common::MARKER_VAR, &m)],
    )
    .unwrap();
    let b = common::cc_executor::CcExecutor::start_with(
        "compare_two_cc_executors",
        &[
            ("PATH", &path),
            ("PYTHONPATH", &extra_path),
            ("ONLY_ON_B", "1"),
            (common::MARKER_VAR, &m),
        ],
    )
    .unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let out = common::ccx_command()
        .current_dir(nowhere.path())
        .args([
            "doctor",
            "--json",
            "--timeout",
            "40s",
            "--require-module",
            "onlyonb",
            "--compare",
            &a.url,
            &b.url,
        ])
        .output()
        .expect("run ccx doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#?}");
    assert!(r.compared && r.ok, "{r:#?}");
    let first = &r.differences[0];
    assert_eq!(first.field, "modules.onlyonb", "{:#?}", r.differences);
    assert_eq!(first.a, "ModuleNotFoundError: No module named 'onlyonb'");
    assert_eq!(
        first.b,
        format!("imports from {}", extra.path().join("onlyonb").display())
    );
    let env = difference(&r, "env_names");
    assert_eq!(env.a, "only here: (none)", "{env:?}");
    assert_eq!(env.b, "only here: ONLY_ON_B", "{env:?}");
    let sys_path = difference(&r, "python3.sys_path");
    assert!(sys_path.b.contains(&extra_path), "{sys_path:?}");
    // Each imports its own copy of the project's package, found in its cwd.
    let own = difference(&r, "modules.cc_executor");
    assert_eq!(
        (own.a.clone(), own.b.clone()),
        (
            format!("imports from {}", a.root.join("src/cc_executor").display()),
            format!("imports from {}", b.root.join("src/cc_executor").display())
        )
    );
    // Same venv, same interpreter: no Python or distribution difference.
    assert!(
        !r.differences.iter().any(
            |d| d.field.starts_with("python3.version") || d.field.starts_with("distributions.")
        ),
        "{:#?}",
        r.differences
    );
    // No server.info on cc_executor: said, not hidden.
    assert!(r.not_compared.iter().any(|n| n.contains("server.info")));
}

#[test]
fn servers_whose_allowlist_refuses_the_probe_are_compared_from_server_info() {
    let m = marker();
    let extra = tempfile::tempdir().unwrap();
    let path = path_with_tool(extra.path(), "only-on-b");
    let allow = ("CCX_ALLOWED_COMMANDS", "echo");
    let a = TestServer::start_with(&[(common::MARKER_VAR, &m), allow], &[]);
    let b = TestServer::start_with(&[(common::MARKER_VAR, &m), ("PATH", &path), allow], &[]);
    let out = doctor(&["--json", "--compare", &a.url, &b.url], &m, &[&a, &b]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#?}");
    assert!(r.compared);
    assert_eq!(fields(&r), BTreeSet::from(["path".to_string()]));
    for side in &r.sides {
        assert!(side.environment.is_none());
        let refused = side.environment_error.as_deref().unwrap_or_default();
        assert!(
            refused.contains("refused the fingerprint probe"),
            "{refused}"
        );
    }
    assert!(
        r.not_compared
            .iter()
            .any(|n| n.contains("both environments are read from server.info")),
        "{:#?}",
        r.not_compared
    );
}
