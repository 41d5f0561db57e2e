//! Runs every scenario of `checks/` (see checks/README.md) against the real
//! binary: starts its helper processes, runs `ccx doctor --json`, parses the
//! report back into the doctor's own serde types and compares it with the
//! expected verdict. Adding a scenario means adding a file.
//!
//! All scenarios run in one test, in parallel, so that afterwards it can
//! assert that nothing is left behind: no process carrying this run's marker
//! in its environment (helpers, the doctor, servers it started, their
//! children) and no scenario port still bound.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccx::doctor::{Report, Status, StepId};
use serde::Deserialize;

use common::cc_executor::{cc_executor_venv, copy_tree};
use common::python::cc_executor_or_skip;
use common::{marked_processes, MARKER_VAR};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    #[serde(default)]
    setup: Vec<Setup>,
    #[serde(default)]
    doctor: DoctorRun,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    command: String,
    #[serde(default)]
    ready: Ready,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Ready {
    /// Wait until 127.0.0.1:{port} accepts a TCP connection.
    #[default]
    Port,
    /// Do not wait.
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoctorRun {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    exit_code: i32,
    #[serde(default)]
    steps: BTreeMap<StepId, Status>,
    #[serde(default)]
    contains: BTreeMap<StepId, Vec<String>>,
    #[serde(default = "default_max_seconds")]
    max_seconds: u64,
}

fn default_max_seconds() -> u64 {
    30
}

fn checks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checks")
}

fn fill(text: &str, port: u16, tmp: &Path) -> String {
    let mut text = text
        .replace("{port}", &port.to_string())
        .replace("{ccx}", common::BIN)
        .replace("{tmp}", &tmp.to_string_lossy())
        .replace("{checks}", &checks_dir().to_string_lossy());
    if let Some(peer) = PEER.get().and_then(Option::as_ref) {
        text = text
            .replace("{cc_executor_python}", &peer.python.to_string_lossy())
            .replace("{bare_venv_python}", &peer.bare_python.to_string_lossy())
            .replace(
                "{cc_executor_src}",
                &tmp.join("cc_executor/src").to_string_lossy(),
            );
    }
    text
}

/// What the scenarios built on the real cc_executor need: its snapshot,
/// the venv that runs it, and a venv without its dependencies.
struct Peer {
    snapshot: PathBuf,
    python: PathBuf,
    bare_python: PathBuf,
}

/// Set once, before the scenarios run (`None`: no snapshot here).
static PEER: std::sync::OnceLock<Option<Peer>> = std::sync::OnceLock::new();

/// Placeholders that need the real cc_executor.
const PEER_PLACEHOLDERS: [&str; 3] = [
    "{cc_executor_python}",
    "{cc_executor_src}",
    "{bare_venv_python}",
];

fn needs_peer(raw: &str) -> bool {
    PEER_PLACEHOLDERS.iter().any(|p| raw.contains(p))
}

/// A helper process in its own group, killed (group) and waited for on drop.
struct Helper {
    child: Child,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn start_helper(setup: &Setup, port: u16, tmp: &Path, marker: &str) -> Helper {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("/bin/sh");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CCX_")
            || name.starts_with("WS_")
            || name.to_ascii_uppercase().ends_with("_PROXY")
        {
            cmd.env_remove(name);
        }
    }
    cmd.arg("-c")
        .arg(fill(&setup.command, port, tmp))
        .current_dir(tmp)
        .envs(setup.env.iter().map(|(k, v)| (k, fill(v, port, tmp))))
        .env(MARKER_VAR, marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.join("helper.stderr")).unwrap())
        .process_group(0);
    let child = cmd.spawn().expect("start helper");
    let helper = Helper { child };
    if setup.ready == Ready::Port {
        let up = common::eventually(Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "helper `{}` did not listen on {port}; stderr: {}",
            setup.command,
            std::fs::read_to_string(tmp.join("helper.stderr")).unwrap_or_default()
        );
    }
    helper
}

/// The text of a step that `contains` is matched against: summary, detail
/// lines and `fix: …`, as the human renderer shows them.
fn step_text(report: &Report, id: StepId) -> String {
    let Some(step) = report.steps.iter().find(|s| s.id == id) else {
        return String::new();
    };
    let mut text = step.summary.clone();
    for line in &step.detail {
        text.push('\n');
        text.push_str(line);
    }
    if let Some(fix) = &step.fix {
        text.push_str("\nfix: ");
        text.push_str(fix);
    }
    text
}

/// Runs one scenario; returns the problems found (empty when it passed).
fn run_scenario(path: &Path, port: u16, marker: &str) -> (u16, Vec<String>) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let raw = std::fs::read_to_string(path).unwrap();
    let scenario: Scenario = match toml::from_str(&raw) {
        Ok(s) => s,
        Err(e) => return (0, vec![format!("{name}: not a valid scenario: {e}")]),
    };
    let tmp = tempfile::tempdir().unwrap();
    if needs_peer(&raw) {
        match PEER.get().and_then(Option::as_ref) {
            // It writes logs into its own tree: each scenario gets a copy.
            Some(peer) => copy_tree(
                &peer.snapshot.join("src"),
                &tmp.path().join("cc_executor/src"),
            ),
            None => {
                eprintln!(
                    "skipped {name}: it runs the real cc_executor, which needs the snapshot at ../shared/peers/cc_executor (or CCX_CC_EXECUTOR_DIR)"
                );
                return (0, Vec::new());
            }
        }
    }
    let helpers: Vec<Helper> = scenario
        .setup
        .iter()
        .map(|s| start_helper(s, port, tmp.path(), marker))
        .collect();

    let mut cmd = common::ccx_command();
    cmd.arg("doctor")
        .arg("--json")
        .args(
            scenario
                .doctor
                .args
                .iter()
                .map(|a| fill(a, port, tmp.path())),
        )
        .env("CCX_PORT", port.to_string())
        .envs(
            scenario
                .doctor
                .env
                .iter()
                .map(|(k, v)| (k, fill(v, port, tmp.path()))),
        )
        .env(MARKER_VAR, marker)
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = cmd.output().expect("run ccx doctor");
    let elapsed = started.elapsed();
    drop(helpers);

    let mut problems = Vec::new();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Report = match serde_json::from_str(&stdout) {
        Ok(r) => r,
        Err(e) => {
            return (
                port,
                vec![format!(
                    "{name}: stdout is not a doctor report ({e}):\n{stdout}\nstderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                )],
            )
        }
    };
    let expect = &scenario.expect;
    let code = output.status.code().unwrap_or(-1);
    if code != expect.exit_code {
        problems.push(format!("exit code {code}, expected {}", expect.exit_code));
    }
    if i32::from(report.exit_code) != code {
        problems.push(format!(
            "report says exit_code {} but the process exited {code}",
            report.exit_code
        ));
    }
    if report.ok != (code == 0) {
        problems.push(format!(
            "report says ok={} with exit code {code}",
            report.ok
        ));
    }
    if elapsed > Duration::from_secs(expect.max_seconds) {
        problems.push(format!(
            "took {elapsed:?}, more than {} s",
            expect.max_seconds
        ));
    }
    let ids: Vec<StepId> = report.steps.iter().map(|s| s.id).collect();
    if ids != StepId::ALL {
        problems.push(format!("steps {ids:?}, expected all six in order"));
    }
    for (id, status) in &expect.steps {
        let got = report.steps.iter().find(|s| s.id == *id).map(|s| s.status);
        if got != Some(*status) {
            problems.push(format!(
                "step {} is {got:?}, expected {status:?}",
                id.as_str()
            ));
        }
    }
    for (id, needles) in &expect.contains {
        let text = step_text(&report, *id);
        for needle in needles {
            let needle = fill(needle, port, tmp.path());
            if !text.contains(&needle) {
                problems.push(format!(
                    "step {} does not say {needle:?}; it says:\n{text}",
                    id.as_str()
                ));
            }
        }
    }
    if !problems.is_empty() {
        problems.insert(0, format!("{name} ({}):", scenario.description));
        problems.push(format!("report:\n{stdout}"));
    }
    (port, problems)
}

#[test]
fn every_checks_scenario_gets_its_verdict_and_leaves_nothing_behind() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(checks_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 17,
        "the catalogue has {} scenarios",
        files.len()
    );
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let any_peer = files
        .iter()
        .any(|f| needs_peer(&std::fs::read_to_string(f).unwrap()));
    PEER.get_or_init(|| {
        if !any_peer {
            return None;
        }
        let snapshot = cc_executor_or_skip("checks scenarios built on cc_executor")?;
        let python = cc_executor_venv(&snapshot).python();
        // A venv that has nothing but pip: cc_executor's dependencies missing.
        let bare_python = common::python::require_venv("bare", &["pip"]).python();
        Some(Peer {
            snapshot,
            python,
            bare_python,
        })
    });

    // Distinct ports: all listeners are held open while they are chosen.
    let listeners: Vec<TcpListener> = files
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(listeners);

    // Two batches: the scenarios that run the real cc_executor load the
    // machine for seconds (Python imports), which must not eat into the
    // short deadlines of the others.
    let (peer, plain): (Vec<_>, Vec<_>) = files
        .iter()
        .zip(ports)
        .partition(|(f, _)| needs_peer(&std::fs::read_to_string(f).unwrap()));
    let mut results: Vec<(u16, Vec<String>)> = Vec::new();
    for batch in [plain, peer] {
        results.extend(std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .into_iter()
                .map(|(f, port)| {
                    let marker = marker.clone();
                    s.spawn(move || run_scenario(f, port, &marker))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }));
    }

    let failures: Vec<String> = results
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(_, p)| p.join("\n  "))
        .collect();

    let clean = common::eventually(Duration::from_secs(3), || {
        marked_processes(&marker).is_empty()
    });
    let leftovers = marked_processes(&marker);
    let bound: Vec<u16> = results
        .iter()
        .map(|(port, _)| *port)
        .filter(|&port| port != 0 && TcpListener::bind(("127.0.0.1", port)).is_err())
        .collect();

    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(clean, "processes left behind: {leftovers:?}");
    assert!(
        bound.is_empty(),
        "ports still bound after the run: {bound:?}"
    );
}
