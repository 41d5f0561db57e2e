//! `ccx doctor --server-cmd` on Python servers that fail the way real
//! projects do, read from the project on disk: the real cc_executor (a copy
//! of `../shared/peers/cc_executor`, run from its own venv) and a second,
//! small project the test writes itself (another package name, a flat
//! layout, a FastAPI app under uvicorn), so that the diagnosis is not
//! written for cc_executor's names. Each case asserts the named cause and
//! the fix in `--json`, and what must never be said.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cc_executor::{cc_executor_venv, copy_tree};
use common::python::{cc_executor_or_skip, require_venv};
use serde_json::Value;

/// A loopback port free right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `ccx doctor --json --server-cmd CMD` run in `dir`; the report and the
/// spawn step.
fn doctor(dir: &Path, port: u16, server_cmd: &str) -> (Value, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ccx"))
        .args([
            "doctor",
            "--json",
            "--spawn-timeout",
            "60s",
            "--timeout",
            "30s",
        ])
        .args(["--server-cmd", server_cmd])
        .current_dir(dir)
        .env("CCX_PORT", port.to_string())
        .env_remove("CCX_HOST")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run ccx doctor");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let spawn = step(&report, "spawn").clone();
    (report, spawn)
}

/// The step `id` of a report.
fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no {id} step in {report}"))
}

fn text_of(step: &Value) -> String {
    serde_json::to_string_pretty(step).unwrap()
}

/// Asserts that the step failed with `cause` as its first finding;
/// returns the step's text.
fn failed_with(step: &Value, cause: &str) -> String {
    let text = text_of(step);
    assert_eq!(step["status"], "fail", "{text}");
    assert_eq!(
        finding_ids(step).first().map(String::as_str),
        Some(cause),
        "{text}"
    );
    text
}

fn finding_ids(step: &Value) -> Vec<String> {
    step["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|f| f["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A copy of the real cc_executor (its whole tree: src, pyproject,
/// requirements, deployment/Dockerfile) and its venv's interpreter.
fn cc_executor_copy(test: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let snapshot = cc_executor_or_skip(test)?;
    let python = cc_executor_venv(&snapshot).python();
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&snapshot, dir.path());
    Some((dir, python))
}

fn py(python: &Path) -> String {
    shell_words::quote(&python.to_string_lossy()).into_owned()
}

#[test]
fn a_module_of_a_package_run_as_a_script_is_named_with_its_package_and_the_command_that_works() {
    let Some((dir, python)) = cc_executor_copy("script-in-package") else {
        return;
    };
    let port = free_port();
    let (report, spawn) = doctor(
        dir.path(),
        port,
        &format!(
            "{} src/cc_executor/core/server_runner.py --port {port}",
            py(&python)
        ),
    );
    assert_eq!(report["exit_code"], 1);
    assert_eq!(spawn["status"], "fail", "{}", text_of(&spawn));
    assert_eq!(
        finding_ids(&spawn)[0],
        "script-in-package",
        "{}",
        text_of(&spawn)
    );
    let fix = spawn["fix"].as_str().unwrap();
    assert!(
        fix.contains("cd src && ")
            && fix.contains("-m uvicorn cc_executor.core.main:app")
            && fix.contains(&format!("--port {port}")),
        "{fix}"
    );
    let text = text_of(&spawn);
    assert!(text.contains("cc_executor.core.main"), "{text}");
    assert!(text.contains("./deployment/Dockerfile runs"), "{text}");
    assert!(!text.contains("pip install PACKAGE") && !text.contains("pip install cc_executor"));
    // The fix really starts the server.
    let (fixed, _) = doctor(
        &dir.path().join("src"),
        port,
        &format!(
            "{} -m uvicorn cc_executor.core.main:app --port {port}",
            py(&python)
        ),
    );
    let handshake = step(&fixed, "handshake");
    assert_eq!(handshake["status"], "pass", "{}", text_of(&fixed));
}

#[test]
fn the_projects_own_package_not_importable_is_never_a_registry_install() {
    let Some((dir, python)) = cc_executor_copy("own-package") else {
        return;
    };
    let port = free_port();
    let (_, spawn) = doctor(
        dir.path(),
        port,
        &format!(
            "{} -m uvicorn cc_executor.core.main:app --port {port}",
            py(&python)
        ),
    );
    let text = failed_with(&spawn, "local-package-not-importable");
    assert!(text.contains("./src/cc_executor"), "{text}");
    let fix = spawn["fix"].as_str().unwrap();
    assert!(fix.contains("-m pip install -e ."), "{fix}");
    assert!(
        fix.contains("--app-dir src") && fix.contains("PYTHONPATH=src"),
        "{fix}"
    );
    assert!(
        !text.contains("pip install cc_executor") && !text.contains("pip install cc-executor"),
        "a registry install of the project's own name: {text}"
    );
}

#[test]
fn a_missing_third_party_module_points_at_the_projects_requirements() {
    let Some((dir, _)) = cc_executor_copy("third-party") else {
        return;
    };
    let bare = require_venv("bare", &["pip"]).python();
    let port = free_port();
    let (_, spawn) = doctor(
        dir.path(),
        port,
        &format!(
            "cd src && {} -m uvicorn cc_executor.core.main:app --port {port}",
            py(&bare)
        ),
    );
    let text = failed_with(&spawn, "missing-dependency");
    assert!(
        text.contains("declared by the project") && text.contains("./requirements.txt"),
        "{text}"
    );
    let fix = spawn["fix"].as_str().unwrap();
    assert!(fix.contains("-m pip install -r requirements.txt"), "{fix}");
}

#[test]
fn a_server_healthy_on_the_port_it_announces_passes_with_a_warning_naming_both_ports() {
    let Some((dir, python)) = cc_executor_copy("announced-port") else {
        return;
    };
    let report = found_where_it_announces(dir.path(), |port| {
        format!(
            "cd src && {} -m uvicorn cc_executor.core.main:app --port {port}",
            py(&python)
        )
    });
    let handshake = step(&report, "handshake");
    assert_eq!(handshake["status"], "pass", "{}", text_of(&report));
}

#[test]
fn a_launcher_that_detaches_a_dying_server_is_followed_and_its_lost_error_recovered() {
    let Some((dir, python)) = cc_executor_copy("detached-launcher") else {
        return;
    };
    std::fs::write(
        dir.path().join("launch.py"),
        "import subprocess, sys\n\
         p = subprocess.Popen([sys.executable, 'src/cc_executor/core/server_runner.py', '--port', sys.argv[1]],\n\
         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)\n\
         print('started', p.pid)\n",
    )
    .unwrap();
    let port = free_port();
    let (report, spawn) = doctor(
        dir.path(),
        port,
        &format!("{} launch.py {port}", py(&python)),
    );
    let text = text_of(&spawn);
    assert_eq!(spawn["status"], "fail", "{text}");
    assert!(!text.contains("does not start a server"), "{text}");
    let summary = spawn["summary"].as_str().unwrap();
    assert!(
        summary.contains("the launcher exited with exit status 0 and left pid")
            && summary.contains("server_runner.py")
            && summary.contains("exited with exit status 1")
            && summary.contains("attempted relative import"),
        "{summary}"
    );
    assert!(
        text.contains("a pipe") && text.contains("nobody reads"),
        "{text}"
    );
    assert!(text.contains("re-ran"), "{text}");
    assert_eq!(finding_ids(&spawn)[0], "script-in-package", "{text}");
    assert_eq!(report["exit_code"], 1);
}

#[test]
fn a_launcher_that_detaches_a_working_server_passes_and_the_server_is_ended_after() {
    let Some((dir, python)) = cc_executor_copy("detached-ok") else {
        return;
    };
    std::fs::write(
        dir.path().join("launch.py"),
        "import subprocess, sys\n\
         subprocess.Popen([sys.executable, '-m', 'uvicorn', 'cc_executor.core.main:app', '--port', sys.argv[1]],\n\
         cwd='src', stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)\n",
    )
    .unwrap();
    let port = free_port();
    let (report, spawn) = doctor(
        dir.path(),
        port,
        &format!("{} launch.py {port}", py(&python)),
    );
    assert_eq!(spawn["status"], "pass", "{}", text_of(&spawn));
    let ended = report["ended"].as_array().expect("ended processes listed");
    assert!(
        ended
            .iter()
            .any(|e| e.as_str().unwrap_or_default().contains("uvicorn")),
        "{ended:?}"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the detached server still holds port {port} after the doctor"
    );
}

/// A second project, laid out differently: a flat layout, the package
/// `webshop`, a FastAPI app started by a script inside the package.
fn webshop() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("webshop")).unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(
        root.join("pyproject.toml"),
        "[project]\nname = \"webshop\"\nversion = \"0.1.0\"\ndependencies = [\"fastapi\", \"uvicorn\"]\n",
    )
    .unwrap();
    std::fs::write(root.join("webshop/__init__.py"), "").unwrap();
    std::fs::write(root.join("webshop/settings.py"), "TITLE = 'shop'\n").unwrap();
    std::fs::write(
        root.join("webshop/api.py"),
        "from fastapi import FastAPI\nfrom .settings import TITLE\n\nshop = FastAPI(title=TITLE)\n",
    )
    .unwrap();
    std::fs::write(
        root.join("webshop/serve.py"),
        "import sys\nimport uvicorn\nfrom api import shop\n\nuvicorn.run(shop, port=int(sys.argv[1]))\n",
    )
    .unwrap();
    dir
}

#[test]
fn another_projects_script_in_its_package_gets_that_projects_names() {
    let Some((_, python)) = cc_executor_copy("webshop-script") else {
        return;
    };
    let dir = webshop();
    let port = free_port();
    let (_, spawn) = doctor(
        dir.path(),
        port,
        &format!("{} webshop/serve.py {port}", py(&python)),
    );
    assert_eq!(
        finding_ids(&spawn)[0],
        "script-in-package",
        "{}",
        text_of(&spawn)
    );
    let fix = spawn["fix"].as_str().unwrap();
    assert!(fix.contains("-m uvicorn webshop.api:shop"), "{fix}");
    assert!(
        !text_of(&spawn).contains("cc_executor.core"),
        "{}",
        text_of(&spawn)
    );
}

#[test]
fn another_projects_own_package_from_a_subdirectory_is_not_a_registry_install() {
    let Some((_, python)) = cc_executor_copy("webshop-own") else {
        return;
    };
    let dir = webshop();
    let port = free_port();
    let (_, spawn) = doctor(
        dir.path(),
        port,
        &format!(
            "cd docs && {} -m uvicorn webshop.api:shop --port {port}",
            py(&python)
        ),
    );
    assert_eq!(
        finding_ids(&spawn)[0],
        "local-package-not-importable",
        "{}",
        text_of(&spawn)
    );
    let text = text_of(&spawn);
    assert!(text.contains("./webshop"), "{text}");
    assert!(!text.contains("pip install webshop"), "{text}");
    assert!(spawn["fix"]
        .as_str()
        .unwrap()
        .contains("-m pip install -e ."));
}

#[test]
fn another_projects_missing_dependency_is_declared_in_its_pyproject() {
    let dir = webshop();
    let bare = require_venv("bare", &["pip"]).python();
    let port = free_port();
    let (_, spawn) = doctor(
        dir.path(),
        port,
        &format!("{} -m uvicorn webshop.api:shop --port {port}", py(&bare)),
    );
    assert_eq!(
        finding_ids(&spawn)[0],
        "missing-dependency",
        "{}",
        text_of(&spawn)
    );
    let text = text_of(&spawn);
    assert!(
        text.contains("`uvicorn`") && text.contains("./pyproject.toml"),
        "{text}"
    );
    assert!(spawn["fix"]
        .as_str()
        .unwrap()
        .contains("-m pip install -e ."));
}

#[test]
fn a_launcher_that_logs_to_a_file_gets_that_files_new_lines_not_a_rerun() {
    let Some((_, python)) = cc_executor_copy("webshop-launcher") else {
        return;
    };
    let dir = webshop();
    std::fs::write(dir.path().join("server.log"), "an older run\n").unwrap();
    std::fs::write(
        dir.path().join("launch.py"),
        "import subprocess, sys\n\
         log = open('server.log', 'a')\n\
         subprocess.Popen([sys.executable, 'webshop/serve.py', sys.argv[1]],\n\
         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)\n",
    )
    .unwrap();
    let port = free_port();
    let (_, spawn) = doctor(
        dir.path(),
        port,
        &format!("{} launch.py {port}", py(&python)),
    );
    let text = text_of(&spawn);
    assert_eq!(spawn["status"], "fail", "{text}");
    assert!(
        text.contains("server.log") && text.contains("log: ImportError"),
        "{text}"
    );
    assert!(
        !text.contains("an older run"),
        "old log lines shown: {text}"
    );
    assert!(!text.contains("re-ran"), "{text}");
    assert_eq!(finding_ids(&spawn)[0], "script-in-package", "{text}");
    assert!(spawn["fix"]
        .as_str()
        .unwrap()
        .contains("-m uvicorn webshop.api:shop"));
}

#[test]
fn a_wrapper_script_whose_python_cannot_find_the_projects_package_is_never_a_registry_install() {
    let dir = webshop();
    std::fs::write(
        dir.path().join("start.sh"),
        "#!/bin/sh\ncd docs && exec python3 -c 'import webshop.api'\n",
    )
    .unwrap();
    let port = free_port();
    let (_, spawn) = doctor(dir.path(), port, "sh start.sh");
    let text = text_of(&spawn);
    assert_eq!(spawn["status"], "fail", "{text}");
    assert!(!text.contains("pip install webshop"), "{text}");
    assert_eq!(
        finding_ids(&spawn)[0],
        "local-package-not-importable",
        "{text}"
    );
}

#[test]
fn another_projects_server_on_the_port_it_announces_is_found_there() {
    let Some((_, python)) = cc_executor_copy("webshop-port") else {
        return;
    };
    let dir = webshop();
    found_where_it_announces(dir.path(), |port| {
        format!("{} -m uvicorn webshop.api:shop --port {port}", py(&python))
    });
}

/// Runs the doctor with CCX_PORT on one free port and a server command
/// (`command(port)`) that listens on another; asserts that `spawn` warns
/// naming both and that the later steps target the announced port.
/// Returns the report.
fn found_where_it_announces(dir: &Path, command: impl Fn(u16) -> String) -> Value {
    let (expected, announced) = (free_port(), free_port());
    let (report, spawn) = doctor(dir, expected, &command(announced));
    assert_eq!(spawn["status"], "warn", "{}", text_of(&spawn));
    let summary = spawn["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("on port {announced}"))
            && summary.contains(&format!("CCX_PORT {expected}")),
        "{summary}"
    );
    assert_eq!(
        report["target"],
        format!("ws://127.0.0.1:{announced}/ws/mcp")
    );
    report
}
