//! Step `spawn`: starts `ccx serve --foreground` (or `--server-cmd` under
//! `/bin/sh -c`) and waits for readiness — the readiness line on stdout, or
//! for a user's server the port accepting a TCP connection — while its
//! stdout and stderr are read concurrently. Reports an early exit with its
//! status and the tail of its stderr, a hang with what it printed, and
//! warns when it wrote more than a pipe buffer to stderr before ready.
//! What the server printed (and the signal that killed it) is matched
//! against the catalogue of known failure signatures (`crate::doctor::signatures`):
//! each finding becomes a detail line with its fix, the most relevant one's
//! fix becomes the step's, and a server that exits 0 before it is ready is
//! named for what it is: a command that does not start a server.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

use super::address::{self, Announced};
use super::binaries::server_program;
use super::left_behind;
use super::{skipped_for_url, Outcome};
use crate::doctor::python;
use crate::doctor::server::ServerProcess;
use crate::doctor::signatures::{self, Finding, Observed, Severity};
use crate::doctor::{human_duration, Ctx, Status};

/// A pipe buffer on Linux: a launcher that never reads stderr blocks the
/// server once this much is unread.
pub const PIPE_BUFFER: u64 = 64 * 1024;
/// How often a user's server is probed for an open port.
const POLL: Duration = Duration::from_millis(10);

pub async fn run(ctx: &mut Ctx<'_>) -> Outcome {
    let opts = ctx.opts;
    if opts.url.is_some() {
        return skipped_for_url("the doctor starts no server");
    }
    let Some(config) = ctx.config.clone() else {
        return Outcome::skip("no valid configuration to start a server with");
    };
    let (program, args, what) = match (&opts.server_cmd, &opts.ccx_exe) {
        (Some(cmd), _) => (
            PathBuf::from("/bin/sh"),
            vec!["-c".to_string(), cmd.clone()],
            format!("/bin/sh -c {cmd:?}"),
        ),
        (None, Some(exe)) => {
            let overrides = match opts.overrides.to_args() {
                Ok(o) => o,
                Err(e) => return Outcome::fail(e),
            };
            let args: Vec<String> = ["serve", "--foreground", "--lifeline"]
                .into_iter()
                .map(String::from)
                .chain(overrides)
                .collect();
            let what = format!("{} {}", exe.display(), args.join(" "));
            (exe.clone(), args, what)
        }
        (None, None) => return Outcome::fail("the path of the ccx binary is unknown"),
    };
    let resolved = resolved_program(ctx, &program);
    // A user's server learns where to listen from the environment.
    let env = vec![
        ("CCX_HOST".to_string(), config.host.to_string()),
        ("CCX_PORT".to_string(), config.port.to_string()),
    ];
    let lifeline = opts.server_cmd.is_none();
    let server = match ServerProcess::start(&program, &args, &env, lifeline) {
        Ok(s) => ctx.server.insert(s),
        Err(e) => {
            return Outcome::fail(format!("cannot start {what}: {e}"))
                .fix("check the command and that its program is installed")
        }
    };
    let deadline = Instant::now() + opts.spawn_timeout;
    let user_server = opts.server_cmd.is_some();
    let probe = config.endpoint().authority();
    let started = Instant::now();
    let mut ready = server.ready.clone();
    let host = config.host.to_string();
    let flagged = opts
        .server_cmd
        .as_deref()
        .and_then(|cmd| address::from_flags(cmd, &host));
    let mut launcher: Option<std::io::Result<ExitStatus>> = None;
    let mut ready_open = true;
    let (url, elsewhere): (String, Option<Announced>) = loop {
        if let Some(line) = ready.borrow_and_update().clone() {
            break (line.url, None);
        }
        tokio::select! {
            status = server.exited(), if launcher.is_none() => {
                if let Some(detached) = server.detached.as_mut() {
                    detached.launcher_exited();
                    if !detached.running().is_empty() {
                        // A launcher that detached its server: follow the server.
                        launcher = Some(status);
                        continue;
                    }
                    if !detached.died().is_empty() {
                        server.drain().await;
                        return left_behind::died(server, &status, &what).await;
                    }
                }
                server.drain().await;
                return exited_early(server, status, &what, resolved.as_deref(), opts.server_cmd.as_deref());
            }
            changed = ready.changed(), if ready_open => {
                // The stdout reader ended (EOF): no readiness line can come,
                // and a closed channel must not spin this loop.
                ready_open = changed.is_ok();
            }
            _ = sleep(POLL), if user_server => {
                if let Some(detached) = server.detached.as_mut() {
                    detached.scan();
                    if let (Some(status), true) = (&launcher, detached.running().is_empty()) {
                        server.drain().await;
                        return left_behind::died(server, status, &what).await;
                    }
                }
                if let Some(found) = listening(server, &probe, flagged.as_ref()).await {
                    break found;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return hung(server, &what, opts.spawn_timeout, &probe, resolved.as_deref(), opts.server_cmd.as_deref());
            }
        }
    };
    let before_ready = server.stderr().total;
    let mut detail = vec![format!(
        "started: {what} (pid {}, own process group)",
        server.pid
    )];
    let mut pid = server.pid;
    if let (Some(status), Some(detached)) = (&launcher, &server.detached) {
        for d in detached.running() {
            detail.push(format!(
                "the launcher {} and left pid {} running: {}",
                describe_status(status),
                d.pid,
                d.argv.join(" ")
            ));
            pid = d.pid;
        }
    }
    detail.extend([
        format!("ready after {} at {url}", human_duration(started.elapsed())),
        format!("stderr before ready: {before_ready} bytes"),
    ]);
    detail.extend(
        server
            .stderr()
            .last_lines(3)
            .into_iter()
            .map(|l| format!("stderr: {l}")),
    );
    ctx.target = Some(url.clone());
    // A server that started may still have printed something alarming: the
    // findings are kept (and shown as notes), without failing the step.
    let findings = diagnose(
        server,
        None,
        resolved.as_deref(),
        opts.server_cmd.as_deref(),
    );
    detail.extend(findings.iter().map(|f| finding_line(f, None)));
    let note = started_note(&findings);
    if let Some(announced) = elsewhere {
        return Outcome::warn(format!(
            "ready at {url}, on port {} ({}), not on CCX_PORT {}",
            announced.port, announced.source, config.port
        ))
        .detail(detail)
        .findings(findings)
        .fix(format!(
            "clients that use CCX_PORT (or cc_executor's default) look on port {}: start the server with --port {}, or point clients at port {} (CCX_PORT={} ccx doctor --server-cmd …)",
            config.port, config.port, announced.port, announced.port
        ));
    }
    if before_ready > PIPE_BUFFER {
        return Outcome::warn(format!(
            "ready at {url}, but it wrote {} KiB to stderr before it was ready (more than a {} KiB pipe buffer)",
            before_ready / 1024,
            PIPE_BUFFER / 1024
        ))
        .detail(detail)
        .findings(findings)
        .fix("a launcher that captures stderr without reading it (e.g. subprocess.Popen(stderr=PIPE) never read) would deadlock here: read both pipes concurrently, or send stderr to a file; or log less at startup");
    }
    Outcome::pass(format!("ready at {url} (pid {pid}){note}"))
        .detail(detail)
        .findings(findings)
}

/// Where a user's server accepts connections: CCX_HOST:CCX_PORT, the
/// address it printed, or the one its flags name; `None` while none does.
/// The second value is set when it is not CCX_HOST:CCX_PORT.
async fn listening(
    server: &ServerProcess,
    expected: &str,
    flagged: Option<&Announced>,
) -> Option<(String, Option<Announced>)> {
    let printed = {
        let mut text = server.stderr().text();
        text.push('\n');
        text.push_str(&server.stdout().text());
        address::from_output(&text)
    };
    let mut candidates: Vec<(String, Option<Announced>)> = vec![(expected.to_string(), None)];
    for announced in printed.into_iter().chain(flagged.cloned()) {
        let authority = announced.authority();
        if !candidates.iter().any(|(a, _)| *a == authority) {
            candidates.push((authority, Some(announced)));
        }
    }
    for (authority, announced) in candidates {
        let connect = timeout(POLL * 5, TcpStream::connect(authority.as_str())).await;
        if matches!(connect, Ok(Ok(_))) {
            return Some((format!("ws://{authority}/ws/mcp"), announced));
        }
    }
    None
}

/// The program the server command starts, resolved on the PATH the server
/// sees (not canonicalized: a venv's `python` is a symlink to the system
/// one, and which of the two runs is the point).
fn resolved_program(ctx: &Ctx<'_>, program: &std::path::Path) -> Option<String> {
    let Some(cmd) = &ctx.opts.server_cmd else {
        return Some(program.display().to_string());
    };
    let path_var = ctx.opts.env.get("PATH").cloned().unwrap_or_default();
    server_program(cmd, &path_var)
}

/// Known signatures in what the server printed (stderr, then stdout) and
/// in how it died; causes first, harmless warnings last. For a Python
/// server, what the project on disk says about an import failure comes
/// first and replaces the generic reading of it.
fn diagnose(
    server: &ServerProcess,
    signal: Option<i32>,
    program: Option<&str>,
    server_cmd: Option<&str>,
) -> Vec<Finding> {
    let mut output = server.stderr().text();
    output.push('\n');
    output.push_str(&server.stdout().text());
    let base = std::env::current_dir().unwrap_or_default();
    findings_in(&output, signal, program, server_cmd, &base)
}

/// The findings for what a server command run from `base` printed.
pub(super) fn findings_in(
    output: &str,
    signal: Option<i32>,
    program: Option<&str>,
    server_cmd: Option<&str>,
    base: &std::path::Path,
) -> Vec<Finding> {
    let mut findings = signatures::diagnose(&Observed {
        output,
        signal,
        program: program.map(String::from),
    });
    if let Some(cmd) = server_cmd {
        let grounded = python::diagnose(cmd, base, output);
        if !grounded.is_empty() {
            findings.retain(|f| f.id != "module-not-found");
            findings.splice(0..0, grounded);
        }
    }
    findings.sort_by_key(|f| f.severity == Severity::Harmless);
    findings
}

/// One detail line per finding: what it means, what proves it, and its fix
/// (unless that is the step's own `fix:`, shown right below).
pub(super) fn finding_line(f: &Finding, step_fix: Option<&str>) -> String {
    let kind = match f.severity {
        Severity::Cause => "known cause",
        Severity::Harmless => "harmless",
    };
    let fix = if step_fix == Some(f.fix.as_str()) {
        String::new()
    } else {
        format!("; fix: {}", f.fix)
    };
    format!(
        "{kind} [{}]: {}; seen: {}{fix}",
        f.id, f.meaning, f.evidence
    )
}

/// The summary's note about findings on a server that started anyway.
fn started_note(findings: &[Finding]) -> String {
    let ids = |severity: Severity| -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.severity == severity)
            .map(|f| f.id.as_str())
            .collect()
    };
    let (harmless, causes) = (ids(Severity::Harmless), ids(Severity::Cause));
    let mut note = String::new();
    if !harmless.is_empty() {
        note.push_str(&format!(
            "; note: it printed a harmless warning ({})",
            harmless.join(", ")
        ));
    }
    if !causes.is_empty() {
        note.push_str(&format!(
            "; note: its output mentions {}, but it started",
            causes.join(", ")
        ));
    }
    note
}

/// The fix of the most relevant finding: the first cause.
pub(super) fn top_fix(findings: &[Finding]) -> Option<String> {
    findings
        .iter()
        .find(|f| f.severity == Severity::Cause)
        .map(|f| f.fix.clone())
}

/// The signal that ended the server: its own death by a signal, or the
/// 128+N exit status with which a shell in between (`sh -c`, a wrapper
/// script) reports that the command it ran was killed by signal N.
fn death_signal(status: &ExitStatus) -> Option<i32> {
    status.signal().or_else(|| {
        let n = status.code()? - 128;
        nix::sys::signal::Signal::try_from(n).ok().map(|_| n)
    })
}

/// How the server ended: "exited with exit status 1", "was killed by signal 11 (SIGSEGV)".
pub(super) fn describe_status(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), death_signal(s)) {
            (Some(127), _) => "exited with exit status 127 (command not found)".into(),
            (Some(126), _) => "exited with exit status 126 (found but not executable)".into(),
            (Some(code), Some(sig)) => format!(
                "was killed by signal {sig} ({}): its shell reported exit status {code} (128 + {sig})",
                crate::process::signal_name(sig)
            ),
            (Some(_), None) => format!("exited with {}", crate::process::exit_status_text(*s)),
            (None, Some(_)) => format!("was killed by {}", crate::process::exit_status_text(*s)),
            (None, None) => "exited with an unknown status".into(),
        },
        Err(e) => format!("exited with an unknown status ({e})"),
    }
}

fn exited_early(
    server: &mut ServerProcess,
    status: std::io::Result<ExitStatus>,
    what: &str,
    program: Option<&str>,
    server_cmd: Option<&str>,
) -> Outcome {
    let how = describe_status(&status);
    let signal = status.as_ref().ok().and_then(death_signal);
    let findings = diagnose(server, signal, program, server_cmd);
    let stderr = server.stderr().last_lines(15);
    let stdout = server.stdout().last_lines(15);
    let mut detail = vec![format!("command: {what}")];
    detail.extend(stderr.iter().map(|l| format!("stderr: {l}")));
    detail.extend(stdout.iter().map(|l| format!("stdout: {l}")));
    let top = top_fix(&findings);
    detail.extend(findings.iter().map(|f| finding_line(f, top.as_deref())));
    let exited_zero = matches!(&status, Ok(s) if s.code() == Some(0));
    if exited_zero {
        // A usage text, a `--help`, a one-shot script: it did its job and
        // left. Its first line says best what it is.
        let first = server
            .stdout()
            .first_line()
            .or_else(|| server.stderr().first_line())
            .map(|l| format!("it printed: {}", short_tail(&l)))
            .unwrap_or_else(|| "it printed nothing".into());
        let fix = top.unwrap_or_else(|| {
            "run the command that starts the server (often a subcommand or flag, e.g. `serve` or `--server`: see what it printed), and make it stay in the foreground".into()
        });
        return Outcome::fail(format!(
            "the server exited successfully before it was ready: this command does not start a server; {first}"
        ))
        .detail(detail)
        .findings(findings)
        .fix(fix);
    }
    let last = stderr
        .last()
        .or(stdout.last())
        .cloned()
        .map(|l| short_tail(&l))
        .unwrap_or_else(|| "it printed nothing".into());
    let fix = top.unwrap_or_else(|| {
        "fix the cause its own error names (stderr above); run the same command in a terminal to see all of it".into()
    });
    Outcome::fail(format!("the server {how} before it was ready: {last}"))
        .detail(detail)
        .findings(findings)
        .fix(fix)
}

/// The end of a line, short enough for a summary.
pub(super) fn short_tail(line: &str) -> String {
    const KEEP: usize = 120;
    let line = line.trim_start_matches('…');
    let count = line.chars().count();
    if count <= KEEP {
        return line.to_string();
    }
    format!("…{}", line.chars().skip(count - KEEP).collect::<String>())
}

fn hung(
    server: &mut ServerProcess,
    what: &str,
    after: Duration,
    probe: &str,
    program: Option<&str>,
    server_cmd: Option<&str>,
) -> Outcome {
    let user_server = server_cmd.is_some();
    let findings = diagnose(server, None, program, server_cmd);
    let stderr = server.stderr().last_lines(10);
    let stdout = server.stdout().last_lines(10);
    let waited_for = if user_server {
        format!("it does not accept connections on {probe}")
    } else {
        "it did not print its readiness line".to_string()
    };
    let printed = match (stdout.is_empty(), stderr.is_empty()) {
        (true, true) => "it printed nothing".to_string(),
        _ => format!(
            "it printed: {}",
            stdout.last().or(stderr.last()).cloned().unwrap_or_default()
        ),
    };
    let left: Vec<String> = server
        .detached
        .as_ref()
        .map(|d| {
            d.running()
                .iter()
                .map(|p| {
                    format!(
                        "left running by its launcher, which exited: pid {} `{}`",
                        p.pid,
                        p.argv.join(" ")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut detail = vec![if left.is_empty() {
        format!("command: {what} (pid {}, still running)", server.pid)
    } else {
        format!("command: {what}")
    }];
    detail.extend(left);
    detail.extend(stdout.iter().map(|l| format!("stdout: {l}")));
    detail.extend(stderr.iter().map(|l| format!("stderr: {l}")));
    let fix = top_fix(&findings);
    detail.extend(findings.iter().map(|f| finding_line(f, fix.as_deref())));
    Outcome::new(
        Status::Timeout,
        format!(
            "not ready within {}: {waited_for}; {printed}",
            human_duration(after)
        ),
    )
    .detail(detail)
    .fix(fix.unwrap_or_else(|| if user_server {
        format!("make the server listen on {probe} (the doctor passes CCX_HOST and CCX_PORT in its environment), or raise --spawn-timeout if it is just slow")
    } else {
        "raise --spawn-timeout if the machine is slow; otherwise run `ccx serve --foreground` in a terminal and see where it stops".to_string()
    }))
    .findings(findings)
}
