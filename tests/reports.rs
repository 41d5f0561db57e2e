//! The reports people and CI systems read, checked by the programs that read
//! them: `ccx doctor --format junit` parsed by Python's `junitparser`,
//! `--format github` checked line by line against the workflow-command
//! syntax, the bash completion script driven in a real bash, the man page
//! rendered by `man`, and `ccx stress --html` opened in headless Chromium.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ccx::doctor::{Report, Status};

/// Whether a test that needs a program absent here may skip: never in CI,
/// where `.ci/run` installs it.
fn skip_without(program: &str, test: &str) -> bool {
    if which::which(program).is_ok() {
        return false;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test} needs `{program}`, which .ci/run installs"
    );
    eprintln!("skipping {test}: `{program}` is not installed");
    true
}

/// Runs `ccx doctor ARGS` with `env`, and checks that it left no process behind.
fn doctor(args: &[&str], env: &[(&str, &str)]) -> Output {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let out = common::ccx_command()
        .arg("doctor")
        .args(args)
        .envs(env.iter().copied())
        .env(common::MARKER_VAR, &marker)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("run ccx doctor");
    assert!(
        common::eventually(Duration::from_secs(3), || common::marked_processes(&marker)
            .is_empty()),
        "ccx doctor {args:?} left processes behind"
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server command that complains (with `%`, `:` and `,`, and a line that
/// reads as a workflow command) and exits 3 before it is ready.
const FAILING_SERVER: &str =
    "echo 'boot 50% done, error: no config, giving up' >&2; echo '::error::injected' >&2; exit 3";

/// A free loopback port for a `--server-cmd` that never binds it.
fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string()
}

/// Two of the doctor's kinds of report, each run again with `--json` for
/// its twin: all pass; `spawn` fails (the rest skipped). The third, `--url`
/// (the local steps skipped), is [`skipping_run`].
enum Scenario {
    Passing,
    Failing,
}

fn run_scenario(scenario: &Scenario, format: &[&str]) -> Output {
    match scenario {
        Scenario::Passing => doctor(&[format, &["--port", "0"]].concat(), &[]),
        Scenario::Failing => {
            let port = free_port();
            doctor(
                &[format, &["--server-cmd", FAILING_SERVER]].concat(),
                &[("CCX_PORT", &port)],
            )
        }
    }
}

/// `junitparser` reads the document; its counts and each case's result
/// are printed as JSON for the test to compare with the report.
const JUNIT_READER: &str = r#"
import json, sys
from junitparser import JUnitXml, Failure, Skipped, Error
xml = JUnitXml.fromfile(sys.argv[1])
suites = list(xml) if hasattr(xml, "__iter__") else [xml]
cases = []
for suite in xml:
    for case in suite:
        results = []
        for r in case.result:
            kind = "failure" if isinstance(r, Failure) else "skipped" if isinstance(r, Skipped) else "error" if isinstance(r, Error) else type(r).__name__
            results.append({"kind": kind, "message": r.message, "type": r.type, "text": r.text})
        cases.append({"name": case.name, "classname": case.classname, "time": case.time, "results": results})
suite = next(iter(xml))
print(json.dumps({"tests": suite.tests, "failures": suite.failures, "errors": suite.errors, "skipped": suite.skipped, "cases": cases}))
"#;

fn junit_read(xml: &str) -> serde_json::Value {
    let venv = common::python::require_venv("junitparser", &["junitparser==3.2.0"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("report.xml");
    std::fs::write(&file, xml).expect("write the XML");
    let out = Command::new(venv.python())
        .args(["-c", JUNIT_READER])
        .arg(&file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "junitparser rejected the report:\n{}\n{xml}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the reader's JSON")
}

/// Compares what junitparser read with the JSON report of the same setup.
fn assert_junit_matches(junit: &serde_json::Value, report: &Report, xml: &str) {
    let failing = |s: &&ccx::doctor::StepResult| s.status.is_failure();
    let skipped = report
        .steps
        .iter()
        .filter(|s| s.status == Status::Skip)
        .count();
    assert_eq!(junit["tests"], report.steps.len(), "{xml}");
    assert_eq!(
        junit["failures"],
        report.steps.iter().filter(failing).count(),
        "{xml}"
    );
    assert_eq!(junit["errors"], 0, "{xml}");
    assert_eq!(junit["skipped"], skipped, "{xml}");
    let cases = junit["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), report.steps.len(), "{xml}");
    for (case, step) in cases.iter().zip(&report.steps) {
        assert_eq!(case["name"], step.id.as_str(), "{xml}");
        assert_eq!(case["classname"], "ccx.doctor", "{xml}");
        let results = case["results"].as_array().expect("results");
        match step.status {
            Status::Pass | Status::Warn => assert!(results.is_empty(), "{case}"),
            Status::Skip => {
                assert_eq!(results.len(), 1, "{case}");
                assert_eq!(results[0]["kind"], "skipped", "{case}");
                assert_eq!(results[0]["message"], step.summary.as_str(), "{case}");
            }
            Status::Fail | Status::Timeout => {
                assert_eq!(results.len(), 1, "{case}");
                assert_eq!(results[0]["kind"], "failure", "{case}");
                assert_eq!(results[0]["message"], step.summary.as_str(), "{case}");
                let body = results[0]["text"].as_str().expect("failure text");
                for line in &step.detail {
                    assert!(body.contains(line.as_str()), "{line:?} not in {body}");
                }
                let fix = step.fix.as_deref().expect("a failing step has a fix");
                assert!(body.contains(&format!("fix: {fix}")), "{body}");
            }
        }
    }
}

#[test]
fn junit_of_a_passing_run_reads_as_six_passed_cases_in_junitparser() {
    let out = run_scenario(&Scenario::Passing, &["--format", "junit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let xml = text(&out.stdout);
    let junit = junit_read(&xml);
    let json = run_scenario(&Scenario::Passing, &["--json"]);
    let report: Report = serde_json::from_slice(&json.stdout).expect("a Report");
    assert!(report.ok);
    assert_junit_matches(&junit, &report, &xml);
    assert_eq!(junit["tests"], 6);
}

#[test]
fn junit_of_a_failing_run_has_the_failure_with_detail_and_fix_and_the_rest_skipped() {
    let out = run_scenario(&Scenario::Failing, &["--format", "junit"]);
    assert_eq!(out.status.code(), Some(1), "exit code unchanged");
    let xml = text(&out.stdout);
    let junit = junit_read(&xml);
    let json = run_scenario(&Scenario::Failing, &["--json"]);
    let report: Report = serde_json::from_slice(&json.stdout).expect("a Report");
    let failed = report.first_failure().expect("a failed step");
    assert_eq!(failed.id.as_str(), "spawn", "{report:?}");
    assert_junit_matches(&junit, &report, &xml);
    assert_eq!(junit["failures"], 1);
    assert_eq!(junit["skipped"], 2);
    // The server's own words reach the failure text, markup-safe.
    assert!(
        xml.contains("boot 50% done, error: no config, giving up"),
        "{xml}"
    );
}

/// `--url` against a running server: config, binaries, port and spawn are
/// skipped with the reason, handshake and echo pass.
fn skipping_run(format: &[&str]) -> Output {
    let server = common::TestServer::start();
    doctor(&[format, &["--url", &server.url]].concat(), &[])
}

#[test]
fn junit_of_a_url_run_has_the_local_steps_skipped_and_passes() {
    let out = skipping_run(&["--format", "junit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let xml = text(&out.stdout);
    let junit = junit_read(&xml);
    let report: Report =
        serde_json::from_slice(&skipping_run(&["--json"]).stdout).expect("a Report");
    assert_junit_matches(&junit, &report, &xml);
    assert_eq!(junit["skipped"], 4);
    assert_eq!(junit["failures"], 0);
}

/// A workflow command's name, decoded properties and decoded message.
type WorkflowCommand = (String, Vec<(String, String)>, String);

/// One line of GitHub's workflow-command syntax:
/// `::name key=value,key=value::message`, with `%`, CR and LF escaped in the
/// message, and `:` and `,` too in the property values. Returns the name,
/// the decoded properties and the decoded message.
fn parse_command(line: &str) -> Result<WorkflowCommand, String> {
    let rest = line
        .strip_prefix("::")
        .ok_or_else(|| format!("not a command: {line:?}"))?;
    let end = rest
        .find("::")
        .ok_or_else(|| format!("no `::` after the command: {line:?}"))?;
    let (head, message) = (&rest[..end], &rest[end + 2..]);
    let (name, props) = head.split_once(' ').unwrap_or((head, ""));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("bad command name {name:?}"));
    }
    let decode = |s: &str, property: bool| -> Result<String, String> {
        if s.contains('\r') || s.contains('\n') {
            return Err(format!("raw line break in {s:?}"));
        }
        if property && (s.contains(':') || s.contains(',')) {
            return Err(format!("unescaped `:` or `,` in the property {s:?}"));
        }
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let code: String = chars.by_ref().take(2).collect();
            out.push(match code.as_str() {
                "25" => '%',
                "0D" => '\r',
                "0A" => '\n',
                "3A" if property => ':',
                "2C" if property => ',',
                _ => return Err(format!("bad escape %{code} in {s:?}")),
            });
        }
        Ok(out)
    };
    let mut properties = Vec::new();
    for pair in props.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("property without `=`: {pair:?}"))?;
        properties.push((key.to_string(), decode(value, true)?));
    }
    Ok((name.to_string(), properties, decode(message, false)?))
}

#[test]
fn workflow_command_syntax_is_checked_by_the_parser_the_tests_use() {
    assert!(parse_command("::error title=a: b::m").is_err());
    assert!(parse_command("::error title=a%2C b::m%0Ax").is_ok());
    assert!(parse_command("::error::50% done").is_err());
    let (_, props, message) = parse_command("::warning title=x%3Ay%2Cz%25::a%25b%0D%0Ac").unwrap();
    assert_eq!(props, vec![("title".into(), "x:y,z%".into())]);
    assert_eq!(message, "a%b\r\nc");
}

#[test]
fn github_format_annotates_the_failing_step_and_writes_the_job_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step's summary\n").expect("write");
    let port = free_port();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let out = common::ccx_command()
        .args([
            "doctor",
            "--format",
            "github",
            "--server-cmd",
            FAILING_SERVER,
        ])
        .env("CCX_PORT", &port)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env(common::MARKER_VAR, &marker)
        .output()
        .expect("run ccx doctor");
    assert_eq!(out.status.code(), Some(1), "exit code unchanged");
    let stdout = text(&out.stdout);
    let json = run_scenario(&Scenario::Failing, &["--json"]);
    let report: Report = serde_json::from_slice(&json.stdout).expect("a Report");
    let failed = report.first_failure().expect("a failed step");

    // Between ::stop-commands::TOKEN and ::TOKEN:: lines are plain text (the
    // server's `::error::injected` among them); every other line is a
    // well-formed command.
    let mut commands = Vec::new();
    let mut stopped: Option<String> = None;
    for line in stdout.lines() {
        if let Some(token) = &stopped {
            if line == format!("::{token}::") {
                stopped = None;
            }
            continue;
        }
        let (name, props, message) =
            parse_command(line).unwrap_or_else(|e| panic!("{e}\nin:\n{stdout}"));
        if name == "stop-commands" {
            assert!(message.len() >= 16, "a token no output can guess: {line}");
            stopped = Some(message);
            continue;
        }
        commands.push((name, props, message));
    }
    assert!(
        stopped.is_none(),
        "commands never turned back on:\n{stdout}"
    );
    assert!(
        stdout.contains("::error::injected"),
        "the server's line shows, as text:\n{stdout}"
    );
    let names: Vec<&str> = commands.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["group", "endgroup", "error"], "{stdout}");
    let (_, props, message) = &commands[2];
    assert_eq!(
        props,
        &vec![("title".to_string(), "ccx doctor: spawn".to_string())]
    );
    assert!(
        stdout.contains("title=ccx doctor%3A spawn::"),
        "the `:` of the title is escaped: {stdout}"
    );
    assert!(message.starts_with(&failed.summary), "{message}");
    assert!(message.contains('\n'), "detail on its own lines: {message}");
    assert!(
        message.contains("boot 50% done, error: no config, giving up"),
        "the server's words, `%`, `:` and `,` intact after decoding: {message}"
    );
    assert!(
        message.ends_with(&format!("fix: {}", failed.fix.as_deref().unwrap_or(""))),
        "{message}"
    );

    let written = std::fs::read_to_string(&summary).expect("the summary");
    assert!(
        written.starts_with("earlier step's summary\n### ccx doctor: ✗ failed (exit 1)"),
        "appended, not overwritten: {written}"
    );
    assert!(written.contains("| ✗ | `spawn` |"), "{written}");
    assert_eq!(written.matches("| - | `").count(), 2, "{written}");
    assert!(written.contains("**Fix:** "), "{written}");
}

#[test]
fn github_format_of_a_warning_is_a_warning_and_strict_makes_it_an_error() {
    // An unknown CCX_ variable is a warning of the config step.
    let env = [("CCX_PROT", "1")];
    let args = ["--format", "github", "--port", "0"];
    let lenient = doctor(&args, &env);
    assert_eq!(lenient.status.code(), Some(0), "{}", text(&lenient.stdout));
    let strict = doctor(&[&args[..], &["--strict"]].concat(), &env);
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict.stdout));
    for (out, expected) in [(&lenient, "warning"), (&strict, "error")] {
        let stdout = text(&out.stdout);
        let annotations: Vec<_> = stdout
            .lines()
            .filter(|l| l.starts_with("::warning") || l.starts_with("::error"))
            .map(|l| parse_command(l).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(annotations.len(), 1, "{stdout}");
        assert_eq!(annotations[0].0, expected, "{stdout}");
        assert_eq!(annotations[0].1[0].1, "ccx doctor: config", "{stdout}");
        assert!(annotations[0].2.contains("CCX_PROT"), "{stdout}");
    }
}

#[test]
fn json_and_format_other_than_json_together_are_a_usage_error() {
    let out = doctor(&["--json", "--format", "junit"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--json is --format json"));
    let out = doctor(
        &["--compare", "ws://127.0.0.1:1/ws/mcp", "--format", "github"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--format github is not available with --compare"),
        "{}",
        text(&out.stderr)
    );
    let out = doctor(&["--format", "xml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("junit"), "{}", text(&out.stderr));
}

#[test]
fn bash_completion_is_valid_and_completes_doc_to_doctor_in_a_real_bash() {
    let out = common::ccx_command()
        .args(["completions", "bash"])
        .output()
        .expect("run ccx completions");
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("ccx.bash");
    std::fs::write(&script, &out.stdout).expect("write the script");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));

    // What bash does on TAB: the function `complete -p ccx` names, called
    // with the words of the line, fills COMPREPLY.
    let complete = |line: &str| -> Vec<String> {
        let driver = r#"
source "$1"
spec=$(complete -p ccx) || exit 9
fn=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<<"$spec")
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
"$fn" ccx "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
        let out = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", driver, "driver"])
            .arg(&script)
            .arg(line)
            .output()
            .expect("bash");
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        text(&out.stdout).lines().map(String::from).collect()
    };
    assert_eq!(complete("ccx doc"), ["doctor"]);
    let formats = complete("ccx doctor --format ");
    for format in ["human", "json", "junit", "github"] {
        assert!(formats.iter().any(|f| f == format), "{formats:?}");
    }
    assert!(complete("ccx stress --ht").iter().any(|f| f == "--html"));
}

#[test]
fn other_shells_get_their_completion_scripts_and_a_bad_shell_is_a_usage_error() {
    for (shell, needle) in [
        ("zsh", "#compdef ccx"),
        ("fish", "complete -c ccx"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = common::ccx_command()
            .args(["completions", shell])
            .output()
            .expect("run ccx completions");
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(text(&out.stdout).contains(needle), "{shell}");
        assert!(text(&out.stdout).contains("doctor"), "{shell}");
    }
    let out = common::ccx_command()
        .args(["completions", "tcsh"])
        .output()
        .expect("run ccx completions");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_render_without_warnings() {
    if skip_without("man", "man_pages_render_without_warnings") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = common::ccx_command()
        .arg("man")
        .output()
        .expect("run ccx man");
    assert_eq!(out.status.code(), Some(0));
    let page = dir.path().join("printed.1");
    std::fs::write(&page, &out.stdout).expect("write the page");
    let out = common::ccx_command()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run ccx man --dir");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        std::fs::read(dir.path().join("ccx.1")).expect("ccx.1")
            == std::fs::read(&page).expect("printed.1"),
        "`ccx man` prints the ccx.1 that --dir writes"
    );
    let mut pages = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        pages += 1;
        let rendered = man(&path);
        assert!(
            rendered.status.success(),
            "{}: {}",
            path.display(),
            text(&rendered.stderr)
        );
        assert_eq!(
            text(&rendered.stderr),
            "",
            "man warned about {}",
            path.display()
        );
        if path.ends_with("ccx-doctor.1") {
            let body = text(&rendered.stdout);
            assert!(body.contains("--format"), "{body}");
        }
    }
    // ccx.1, printed.1 and one page per subcommand.
    assert!(pages >= 10, "{pages} pages");
    let out = common::ccx_command()
        .args(["man", "--dir"])
        .arg(dir.path().join("missing"))
        .output()
        .expect("run ccx man --dir");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a directory"),
        "{}",
        text(&out.stderr)
    );
}

fn man(page: &Path) -> Output {
    Command::new("man")
        .args(["-l", "--warnings"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("run man")
}

/// Headless Chromium with nothing in the background and no way off the
/// machine: every host name and address resolves to "not found" (so not
/// even a background service of the browser opens a connection), a fresh
/// profile, and the net log and console written out for the test to read.
struct Chromium {
    profile: tempfile::TempDir,
}

impl Chromium {
    fn new() -> Chromium {
        Chromium {
            profile: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Runs chromium on `page` with `extra` flags; returns (stdout, stderr).
    fn run(&self, page: &Path, extra: &[String]) -> (String, String) {
        use std::os::unix::process::CommandExt;
        let out_file = self.profile.path().join("stdout");
        let err_file = self.profile.path().join("stderr");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                // A container's /dev/shm may be too small for the renderer.
                "--disable-dev-shm-usage",
                "--host-resolver-rules=MAP * ~NOTFOUND",
            ])
            .arg(format!(
                "--user-data-dir={}",
                self.profile.path().join("profile").display()
            ))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out_file).expect("stdout file"))
            .stderr(std::fs::File::create(&err_file).expect("stderr file"))
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let exited = common::eventually(Duration::from_secs(90), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        // Its helpers (zygote, GPU, network service) share its group.
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let status = child.wait().expect("wait for chromium");
        let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
        assert!(exited, "chromium did not finish within 90 s: {stderr}");
        assert!(status.success(), "chromium failed ({status}): {stderr}");
        (
            std::fs::read_to_string(&out_file).unwrap_or_default(),
            stderr,
        )
    }
}

/// A shell that waits 20 ms before each command: a server that uses it
/// answers every request that much later.
fn slow_shell(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("slow-sh");
    std::fs::write(&path, "#!/bin/sh\nsleep 0.02\nexec /bin/sh \"$@\"\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// The `<td data-target=I data-key=K data-value=V>TEXT</td>` cells of the
/// results table, as Chromium's DOM has them.
fn result_cells(dom: &str) -> Vec<(usize, String, Option<f64>, String)> {
    let cell = regex::Regex::new(
        r#"<td data-target="(\d+)" data-key="([^"]+)"(?: data-value="([^"]+)")?[^>]*>([^<]*)</td>"#,
    )
    .expect("regex");
    cell.captures_iter(dom)
        .map(|c| {
            (
                c[1].parse().expect("index"),
                c[2].to_string(),
                c.get(3).map(|v| v.as_str().parse().expect("a number")),
                c[4].replace("&amp;", "&"),
            )
        })
        .collect()
}

#[test]
fn stress_html_of_two_servers_opens_offline_in_chromium_and_shows_the_json_numbers() {
    if skip_without(
        "chromium",
        "stress_html_of_two_servers_opens_offline_in_chromium_and_shows_the_json_numbers",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let fast = common::TestServer::start();
    let shell = slow_shell(dir.path());
    let slow =
        common::TestServer::start_with(&[("CCX_SHELL", shell.to_str().expect("utf-8"))], &[]);
    let page = dir.path().join("stress.html");
    let out = common::ccx_command()
        .args(["stress", "--url", &fast.url, "--url", &slow.url])
        .args(["--clients", "4", "--requests", "40", "--json", "--html"])
        .arg(&page)
        .output()
        .expect("run ccx stress");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: ccx::stress::report::StressReport =
        serde_json::from_slice(&out.stdout).expect("the --json report");
    let html = std::fs::read_to_string(&page).expect("the page");

    // Self-contained: nothing to fetch, nothing to run.
    assert!(html.len() < 1_000_000, "{} bytes", html.len());
    for needle in [
        "<script", "<link", "src=", "href=", "url(", "@import", "http://", "https://",
    ] {
        assert!(!html.contains(needle), "the page has {needle:?}");
    }
    let fast_p50 = report.targets[0].latency_ms.as_ref().expect("latency").p50;
    let slow_p50 = report.targets[1].latency_ms.as_ref().expect("latency").p50;
    assert!(
        slow_p50 > fast_p50,
        "the slow server is slower: {fast_p50} vs {slow_p50}"
    );

    let chromium = Chromium::new();
    let net_log = dir.path().join("net-log.json");
    let (dom, stderr) = chromium.run(
        &page,
        &[
            "--dump-dom".into(),
            "--enable-logging=stderr".into(),
            "--v=0".into(),
            format!("--log-net-log={}", net_log.display()),
        ],
    );
    assert!(
        !stderr.contains(":CONSOLE"),
        "console messages while loading the page:\n{stderr}"
    );
    // The browser's own background services may try (and fail: nothing
    // resolves); a request of the page carries the page's file:// origin.
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&net_log).expect("net log"))
            .expect("the net log is JSON");
    let page_requests: Vec<&serde_json::Value> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.contains("file://"))
        })
        .collect();
    assert!(
        page_requests.is_empty(),
        "the page made requests: {page_requests:?}"
    );
    assert!(
        dom.contains("</html>") && dom.contains("ccx stress"),
        "{dom}"
    );

    // One series per target in each chart, in the report's order.
    let charts: Vec<&str> = dom.split("<svg class=\"chart\"").skip(1).collect();
    assert_eq!(charts.len(), 2, "two charts");
    let series =
        regex::Regex::new(r#"<g class="series s(\d)" data-target="([^"]+)">"#).expect("regex");
    let path = regex::Regex::new(r#"<path class="line" d="M[^"]* L[^"]*"#).expect("regex");
    for chart in &charts {
        let chart = chart.split("</svg>").next().unwrap_or_default();
        let labels: Vec<String> = series
            .captures_iter(chart)
            .map(|c| c[2].to_string())
            .collect();
        let urls: Vec<String> = report.targets.iter().map(|t| t.target.clone()).collect();
        assert_eq!(labels, urls, "{chart}");
        assert_eq!(
            path.find_iter(chart).count(),
            2,
            "a drawn line per target: {chart}"
        );
    }

    // The numbers shown are the --json report's.
    let cells = result_cells(&dom);
    let expected = |t: &ccx::stress::report::TargetReport, key: &str| -> Option<f64> {
        let l = t.latency_ms.as_ref();
        match key {
            "success_percent" => Some(t.success_percent),
            "attempts" => Some(t.attempts as f64),
            "successes" => Some(t.successes as f64),
            "failures" => Some((t.attempts - t.successes) as f64),
            "throughput_rps" => Some(t.throughput_rps),
            "elapsed_s" => Some(t.elapsed_s),
            "p50" => l.map(|l| l.p50),
            "p90" => l.map(|l| l.p90),
            "p99" => l.map(|l| l.p99),
            "max" => l.map(|l| l.max),
            other => panic!("unexpected cell {other}"),
        }
    };
    assert_eq!(cells.len(), 10 * report.targets.len(), "{cells:?}");
    for (i, key, value, shown) in &cells {
        let target = &report.targets[*i];
        let want = expected(target, key).expect("a value");
        // serde_json reads floats to within one unit in the last place.
        let value = value.expect("a data-value");
        assert!(
            (value - want).abs() <= want.abs() * 1e-12,
            "{key} of target {i}: {value} shown, {want} in the JSON"
        );
        let number = ccx::stress::html::number(want);
        assert!(
            shown.contains(&number),
            "{key} of target {i}: {shown:?} should show {number}"
        );
    }
    for (i, target) in report.targets.iter().enumerate() {
        assert!(cells
            .iter()
            .any(|(j, k, _, shown)| *j == i && k == "attempts" && *shown == "160"));
        assert_eq!(target.attempts, 160);
    }
    let run = report.run.as_ref().expect("run info");
    assert!(dom.contains(&format!(
        "<time id=\"started-at\">{}</time>",
        run.started_at
    )));
    assert!(dom.contains(&format!("<span id=\"cores\">{}</span>", run.machine.cores)));
    assert!(dom.contains(&run.machine.kernel));

    // A screenshot: a page with text and both targets' colours on it.
    let shot = dir.path().join("shot.png");
    chromium.run(
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600".into(),
        ],
    );
    let bytes = std::fs::read(&shot).expect("the screenshot");
    assert!(
        (20_000..1_000_000).contains(&bytes.len()),
        "{} bytes",
        bytes.len()
    );
    let (width, height, pixels) = decode_png(&bytes);
    assert_eq!((width, height), (1200, 1600));
    let background = pixels[0];
    let ink = pixels.iter().filter(|p| **p != background).count();
    assert!(
        ink * 100 > pixels.len() * 3,
        "mostly blank: {ink} of {} pixels",
        pixels.len()
    );
    // The series colours of the page's light scheme (.s0, .s1).
    for (name, colour) in [
        ("first target", [0x09, 0x69, 0xda]),
        ("second target", [0xd1, 0x59, 0x0c]),
    ] {
        let near = |p: &[u8; 3]| p.iter().zip(colour).all(|(a, b)| a.abs_diff(b) < 24);
        let count = pixels.iter().filter(|p| near(p)).count();
        assert!(count > 500, "the {name}'s colour covers {count} pixels");
    }

    // The README's picture, when asked for: smaller, to stay light.
    if let Ok(target) = std::env::var("CCX_README_SCREENSHOT") {
        chromium.run(
            &page,
            &[
                format!("--screenshot={target}"),
                "--window-size=1000,1130".into(),
            ],
        );
        let size = std::fs::metadata(&target)
            .expect("the README screenshot")
            .len();
        assert!(size < 150_000, "{target}: {size} bytes");
    }
}

/// The RGB pixels of a PNG.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| match channels {
            1 | 2 => [p[0]; 3],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    (info.width, info.height, pixels)
}

#[test]
fn stress_html_to_a_path_that_cannot_be_written_is_a_usage_error_before_any_load() {
    let out = common::ccx_command()
        .args([
            "stress",
            "--url",
            "ws://127.0.0.1:1/ws/mcp",
            "--requests",
            "1",
        ])
        .args(["--html", "/nonexistent-dir/stress.html"])
        .output()
        .expect("run ccx stress");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--html /nonexistent-dir/stress.html: cannot create it"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no report: nothing ran");
}
