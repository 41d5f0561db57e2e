//! The background server's lifecycle through the real binary: `ccx serve`
//! (detached, ready or failing with the child's own words), `status`,
//! `stop`, `logs`, stale pid files, and concurrent launches. Each test has
//! its own state directory and port 0 (or a port it holds itself), and
//! cleans up through a Drop guard even when it fails.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ccx::client::{Client, ConnectOptions};
use ccx::lifecycle::{ServerState, StatusReport, StopOutcome, StopReport};
use ccx::protocol::ExecuteParams;
use common::{ccx_command, eventually, live_members, pids_with_cmdline};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// One state directory; on drop, `ccx stop`s it and SIGKILLs anything whose
/// command line still names it.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn pid_file(&self) -> PathBuf {
        self.path().join("ccx.pid")
    }

    /// A `ccx` command for this state directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = ccx_command();
        cmd.args(args)
            .env("CCX_STATE_DIR", self.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run_with_deadline(self.command(args), Duration::from_secs(30))
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        run_with_deadline(cmd, Duration::from_secs(30))
    }

    fn status(&self) -> (Output, StatusReport) {
        let out = self.run(&["status", "--json"]);
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}\n{}", text(&out)));
        (out, report)
    }

    /// Server processes (`serve --foreground`) started for this state directory.
    fn servers(&self) -> Vec<u32> {
        let dir = self.path().to_string_lossy().into_owned();
        pids_with_cmdline(&dir)
            .into_iter()
            .filter(|&pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains("--foreground"))
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = run_with_deadline(self.command(&["stop"]), Duration::from_secs(15));
        let dir = self.path().to_string_lossy().into_owned();
        for pid in pids_with_cmdline(&dir) {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// A child process killed and reaped on drop.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Output {
    let child = cmd.spawn().expect("spawn ccx");
    wait_output(child, deadline)
}

fn wait_output(mut child: Child, deadline: Duration) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("ccx did not finish within {deadline:?}:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn alive(pid: u32) -> bool {
    !matches!(common::state(pid), None | Some('Z'))
}

#[test]
fn serve_returns_only_once_health_answers_and_stop_frees_the_port() {
    let lab = Lab::new();
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("ws://127.0.0.1:"), "{stdout}");
    assert!(
        stdout.contains(&lab.path().join("ccx.log").display().to_string()),
        "{stdout}"
    );

    // The very first probe after the return must succeed: no retry.
    let (status_out, report) = lab.status();
    assert_eq!(status_out.status.code(), Some(0), "{}", text(&status_out));
    assert_eq!(report.schema_version, 1);
    assert_eq!(report.state, ServerState::Running);
    assert!(report.healthy, "{report:?}");
    let pid = report.pid.unwrap();
    let port = report.port.unwrap();
    assert_ne!(port, 0, "the real port of --port 0 is recorded");
    assert!(stdout.contains(&pid.to_string()), "{stdout}");
    assert_eq!(lab.servers(), vec![pid]);
    assert!(!port_is_free(port));

    let stop = lab.run(&["stop", "--json"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    let stopped: StopReport = serde_json::from_slice(&stop.stdout).unwrap();
    assert_eq!(stopped.outcome, StopOutcome::Stopped);
    assert_eq!(stopped.pid, Some(pid));
    assert_eq!(stopped.signal.as_deref(), Some("SIGTERM"));
    assert_eq!(stopped.port_freed, Some(true));
    assert!(!alive(pid), "the server is gone when stop returns");
    assert!(lab.servers().is_empty());
    assert!(port_is_free(port));
    assert!(!lab.pid_file().exists());

    let (after, report) = lab.status();
    assert_eq!(
        after.status.code(),
        Some(1),
        "status exits 1 when nothing runs"
    );
    assert_eq!(report.state, ServerState::Stopped);
}

#[test]
fn serve_reports_the_childs_bind_error_when_the_port_is_taken() {
    let lab = Lab::new();
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let started = Instant::now();
    let out = lab.run(&["serve", "--port", &port.to_string()]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("exit status 1"), "{stderr}");
    assert!(
        took < Duration::from_secs(3),
        "a startup death is reported at once, took {took:?}"
    );
    assert!(
        !lab.pid_file().exists(),
        "no pid file for a server that never ran"
    );
    assert!(lab.servers().is_empty());
}

#[test]
fn malformed_config_exits_2_naming_the_variable_before_spawning() {
    let lab = Lab::new();
    let out = lab.run_env(&["serve"], &[("CCX_PORT", "abc")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CCX_PORT") && stderr.contains("abc"),
        "{stderr}"
    );
    assert!(
        !lab.path().join("ccx.log").exists(),
        "validated in the parent: no server was started, so no log"
    );
}

#[test]
fn server_dying_after_bind_is_reported_with_exit_status_and_log_tail() {
    let lab = Lab::new();
    let out = lab.run_env(&["serve", "--port", "0"], &[("CCX_SHELL", "/nonexistent")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exited with exit status 1"), "{stderr}");
    assert!(
        stderr.contains(r#"CCX_SHELL "/nonexistent" does not exist"#),
        "the child's own words: {stderr}"
    );
    assert!(stderr.contains("ccx.log"), "names the log: {stderr}");
    assert!(!lab.pid_file().exists());
}

#[test]
fn ready_timeout_stops_the_server_and_says_so() {
    let lab = Lab::new();
    let out = lab.run(&["serve", "--port", "0", "--ready-timeout", "1ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("was not ready within 1ms"), "{stderr}");
    assert!(stderr.contains("It was stopped"), "{stderr}");
    // The tail is read after the stop, so it may show a readiness line
    // that came too late: the message must not deny it.
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(!stderr.contains("no readiness line"), "{stderr}");
    if stderr.contains(r#""event":"ready""#) {
        assert!(stderr.contains("came only after the deadline"), "{stderr}");
    }
    assert!(lab.servers().is_empty(), "the unready server was stopped");
    assert!(!lab.pid_file().exists());
}

#[test]
fn stale_pid_file_of_a_dead_process_is_reported_and_replaced() {
    let lab = Lab::new();
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(lab.pid_file(), format!("{dead_pid}\n")).unwrap();

    let (out, report) = lab.status();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report.state, ServerState::Stale);
    assert_eq!(report.stale.as_ref().unwrap().pid, Some(dead_pid));
    assert!(report.stale_removed);
    assert!(!lab.pid_file().exists(), "a stale pid file is cleaned");

    std::fs::write(lab.pid_file(), format!("{dead_pid}\n")).unwrap();
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stale"),
        "{}",
        text(&out)
    );
    let (_, report) = lab.status();
    assert_eq!(report.state, ServerState::Running);
    assert_ne!(report.pid, Some(dead_pid));
}

#[test]
fn pid_file_naming_an_unrelated_live_process_never_gets_it_signalled() {
    let lab = Lab::new();
    let sleeper = Guarded(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = sleeper.0.id();
    let claim = format!(
        r#"{{"schema_version":1,"pid":{pid},"url":"ws://127.0.0.1:1/ws/mcp","port":1,"host":"127.0.0.1"}}"#
    );

    std::fs::write(lab.pid_file(), &claim).unwrap();
    let (out, report) = lab.status();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report.state, ServerState::Stale, "{report:?}");
    assert!(
        report.stale.as_ref().unwrap().reason.contains("sleep"),
        "{report:?}"
    );

    std::fs::write(lab.pid_file(), &claim).unwrap();
    let stop = lab.run(&["stop", "--json"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    let stopped: StopReport = serde_json::from_slice(&stop.stdout).unwrap();
    assert_eq!(stopped.outcome, StopOutcome::NotRunning);
    assert_eq!(stopped.stale.unwrap().pid, Some(pid));

    std::fs::write(lab.pid_file(), &claim).unwrap();
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "serve starts anyway: {}",
        text(&out)
    );
    let stop = lab.run(&["stop"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));

    let mut sleeper = sleeper;
    assert!(
        sleeper.0.try_wait().unwrap().is_none(),
        "the unrelated process was killed"
    );
    assert_eq!(
        common::state(pid).map(|s| s != 'T'),
        Some(true),
        "it was stopped"
    );
}

/// Starts a background server in `lab` and makes it run `sleep 300`; returns
/// its status, the session (kept open by the caller) and the started process.
async fn serve_running_a_sleep(lab: &Lab) -> (StatusReport, Client, ccx::protocol::ProcessStatus) {
    serve_running_a_sleep_with(lab, &[]).await
}

async fn serve_running_a_sleep_with(
    lab: &Lab,
    env: &[(&str, &str)],
) -> (StatusReport, Client, ccx::protocol::ProcessStatus) {
    let out = lab.run_env(&["serve", "--port", "0"], env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, report) = lab.status();
    let url = report.url.clone().unwrap();
    let mut client = Client::connect(&ConnectOptions::new(url)).await.unwrap();
    let started = client
        .execute(&ExecuteParams::command("sleep 300"))
        .await
        .unwrap();
    let running = || !live_members(started.pgid.unwrap()).is_empty();
    assert!(eventually(Duration::from_secs(5), running));
    (report, client, started)
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_the_commands_the_server_runs() {
    let lab = Lab::new();
    let (_, _client, started) = serve_running_a_sleep(&lab).await;

    let stop = tokio::task::spawn_blocking({
        let cmd = lab.command(&["stop", "--json"]);
        move || run_with_deadline(cmd, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    let stopped: StopReport = serde_json::from_slice(&stop.stdout).unwrap();
    assert_eq!(stopped.outcome, StopOutcome::Stopped);
    assert!(
        live_members(started.pgid.unwrap()).is_empty(),
        "sleep 300 outlived the server"
    );
    assert!(!alive(started.pid));
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_kills_a_hung_server_and_what_it_left_in_its_session() {
    let lab = Lab::new();
    // The server's own grace period is what `stop` waits before SIGKILL,
    // whatever the environment `stop` runs in says.
    let (report, _client, started) =
        serve_running_a_sleep_with(&lab, &[("CCX_KILL_GRACE", "300ms")]).await;
    let server = report.pid.unwrap();
    // A stopped server cannot act on SIGTERM: only SIGKILL ends it, and
    // then nobody is left to end its commands but `ccx stop`.
    kill(Pid::from_raw(server as i32), Signal::SIGSTOP).unwrap();

    let stop = tokio::task::spawn_blocking({
        let mut cmd = lab.command(&["stop", "--json"]);
        cmd.env("CCX_KILL_GRACE", "10min");
        move || run_with_deadline(cmd, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    let stopped: StopReport = serde_json::from_slice(&stop.stdout).unwrap();
    assert_eq!(stopped.signal.as_deref(), Some("SIGKILL"));
    assert!(
        stopped.leftovers_killed.contains(&started.pid),
        "{stopped:?}"
    );
    assert!(!alive(server));
    assert!(
        live_members(started.pgid.unwrap()).is_empty(),
        "sleep 300 outlived the server"
    );
}

#[test]
fn simultaneous_serves_start_exactly_one_server() {
    // Three rounds; in each, both launchers are held stopped right after
    // spawn and released together, so they race for the state directory.
    for round in 0..3 {
        let lab = Lab::new();
        let first = lab.command(&["serve", "--port", "0"]).spawn().unwrap();
        let _ = kill(Pid::from_raw(first.id() as i32), Signal::SIGSTOP);
        let second = lab.command(&["serve", "--port", "0"]).spawn().unwrap();
        let _ = kill(Pid::from_raw(second.id() as i32), Signal::SIGSTOP);
        let _ = kill(Pid::from_raw(first.id() as i32), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(second.id() as i32), Signal::SIGCONT);
        let outs = [
            wait_output(first, Duration::from_secs(30)),
            wait_output(second, Duration::from_secs(30)),
        ];
        let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
        let both = format!("round {round}\n{}\n---\n{}", text(&outs[0]), text(&outs[1]));
        assert!(
            codes.contains(&Some(0)) && codes.contains(&Some(1)),
            "{both}"
        );
        let loser = outs.iter().find(|o| o.status.code() == Some(1)).unwrap();
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert!(stderr.contains("already running"), "{both}");
        let (_, report) = lab.status();
        let pid = report.pid.unwrap();
        assert!(
            stderr.contains(&format!("pid {pid}")),
            "names the winner: {both}"
        );
        assert_eq!(lab.servers(), vec![pid], "exactly one server runs: {both}");
    }
}

#[test]
fn second_server_on_the_same_state_dir_is_refused_but_another_state_dir_works() {
    let lab = Lab::new();
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, first) = lab.status();

    let again = lab.run(&["serve", "--port", "0"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(first.url.as_deref().unwrap()), "{stderr}");

    let other = Lab::new();
    let out = other.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, second) = other.status();
    assert_eq!(code.status.code(), Some(0));
    assert!(second.healthy);
    assert_ne!(first.port, second.port);
    assert_ne!(first.pid, second.pid);

    // A bare pid naming the other state directory's server is not ours.
    let third = Lab::new();
    std::fs::write(third.pid_file(), first.pid.unwrap().to_string()).unwrap();
    let (_, report) = third.status();
    assert_eq!(report.state, ServerState::Stale, "{report:?}");
    assert!(report
        .stale
        .unwrap()
        .reason
        .contains("another state directory"));
    assert_eq!(third.run(&["stop"]).status.code(), Some(0));
    assert!(
        alive(first.pid.unwrap()),
        "stop must not touch another state dir's server"
    );
}

#[test]
fn the_server_does_not_inherit_the_launchers_extra_descriptors() {
    let lab = Lab::new();
    let marker = lab.path().join("inherited-marker");
    // The same environment as every other ccx command of this test.
    let ccx = lab.command(&[]);
    // `sh` opens fd 7 without close-on-exec, as a CI runner or a shell may.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#""$0" serve --port 0 7>>"$1""#)
        .arg(ccx.get_program())
        .arg(&marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in ccx.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    let out = run_with_deadline(sh, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, report) = lab.status();
    let pid = report.pid.unwrap();
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        !fds.iter().any(|f| f.contains("inherited-marker")),
        "the server holds the launcher's fd 7: {fds:?}"
    );
}

#[test]
fn status_stop_and_logs_need_only_the_state_dir() {
    let lab = Lab::new();
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Malformed settings that only the server reads do not concern them.
    let bad = [("CCX_PORT", "not-a-port"), ("CCX_KILL_GRACE", "soon")];
    let status = lab.run_env(&["status"], &bad);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let logs = lab.run_env(&["logs", "-n", "1"], &bad);
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs));
    let stop = lab.run_env(&["stop"], &bad);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains("stopped the ccx server"),
        "{}",
        text(&stop)
    );
}

#[test]
fn stop_with_a_state_dir_that_was_never_used_exits_0_and_creates_nothing() {
    let lab = Lab::new();
    let never_used = lab.path().join("never").join("used");
    let mut cmd = ccx_command();
    cmd.args(["stop"])
        .env("CCX_STATE_DIR", &never_used)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no ccx server is running"),
        "{}",
        text(&out)
    );
    assert!(!never_used.exists(), "stop created the state directory");
}

#[test]
fn stop_when_nothing_runs_says_so_and_exits_0() {
    let lab = Lab::new();
    for _ in 0..2 {
        let out = lab.run(&["stop"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("no ccx server is running"), "{stdout}");
    }
}

#[test]
fn logs_prints_the_log_its_last_lines_and_follows_it() {
    let lab = Lab::new();
    let out = lab.run(&["logs"]);
    assert_eq!(out.status.code(), Some(1), "no log yet: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no log"));

    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = lab.run(&["logs"]);
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(all.contains("listening on ws://127.0.0.1:"), "{all}");
    assert!(all.contains(r#""event":"ready""#), "{all}");

    let last = lab.run(&["logs", "-n", "1"]);
    let last = String::from_utf8_lossy(&last.stdout).into_owned();
    assert_eq!(last.lines().count(), 1, "{last}");
    assert_eq!(last.trim_end(), all.trim_end().lines().last().unwrap());

    let mut follower = Guarded(lab.command(&["logs", "-f", "-n", "0"]).spawn().unwrap());
    let output = watch_stdout(&mut follower.0);
    let marker = format!("marker-{}", std::process::id());
    let seen = append_until_seen(&lab.path().join("ccx.log"), &marker, &output);
    assert!(
        !seen.contains("listening on"),
        "-n 0 starts at the end: {seen:?}"
    );
}

/// Reads a child's stdout on a thread; every read sends all text seen so far.
fn watch_stdout(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(seen.clone());
        }
    });
    rx
}

/// Appends `line` to `log` until `seen` shows it (the follower may still be
/// starting); returns everything seen.
fn append_until_seen(log: &Path, line: &str, seen: &std::sync::mpsc::Receiver<String>) -> String {
    use std::io::Write;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while !text.contains(line) && Instant::now() < deadline {
        let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        writeln!(file, "{line}").unwrap();
        if let Ok(s) = seen.recv_timeout(Duration::from_millis(200)) {
            text = s;
        }
    }
    assert!(
        text.contains(line),
        "logs -f never printed {line:?}: {text:?}"
    );
    text
}

#[test]
fn logs_follow_is_woken_by_the_file_system_and_survives_rotation() {
    let lab = Lab::new();
    // `logs -f` follows a running server only.
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = lab.path().join("ccx.log");
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(file, "before").unwrap();
    }
    let mut follower = Guarded(lab.command(&["logs", "-f"]).spawn().unwrap());
    let seen = watch_stdout(&mut follower.0);
    append_until_seen(&log, "warm-up", &seen);

    // The follower sleeps until notified; its safety net is seconds long,
    // so a line printed within 100 ms was delivered by the notification.
    let mut latencies = Vec::new();
    for i in 0..5 {
        use std::io::Write;
        let line = format!("fresh-{i}");
        let written = Instant::now();
        writeln!(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            "{line}"
        )
        .unwrap();
        loop {
            let text = seen
                .recv_timeout(Duration::from_secs(10))
                .expect("follower output");
            if text.contains(&line) {
                break;
            }
        }
        latencies.push(written.elapsed());
    }
    latencies.sort();
    assert!(
        latencies[2] < Duration::from_millis(100),
        "median latency of logs -f: {latencies:?}"
    );

    // Rotation as the server does it: rename, then a new file.
    {
        use std::io::Write;
        let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::fs::rename(&log, lab.path().join("ccx.log.1")).unwrap();
        writeln!(old, "last words of the old file").unwrap();
        std::fs::write(&log, "").unwrap();
    }
    let text = append_until_seen(&log, "first of the new file", &seen);
    assert!(text.contains("last words of the old file"), "{text:?}");
    assert_eq!(
        text.matches("before").count(),
        1,
        "nothing printed twice: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_server_rotates_its_log_by_size() {
    let lab = Lab::new();
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = lab.path().join("ccx.log");
    // As if the server had written more than the limit (10 MiB).
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let filler = "x".repeat(1023) + "\n";
        for _ in 0..(11 * 1024) {
            file.write_all(filler.as_bytes()).unwrap();
        }
    }
    let rotated = lab.path().join("ccx.log.1");
    assert!(
        eventually(Duration::from_secs(10), || rotated.exists()),
        "ccx.log was not rotated"
    );
    assert!(std::fs::metadata(&log).unwrap().len() < 1024 * 1024);
    // The server now writes into the fresh file.
    let (_, report) = lab.status();
    let mut client = Client::connect(&ConnectOptions::new(report.url.unwrap()))
        .await
        .unwrap();
    client
        .execute(&ExecuteParams::command("true"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("started")),
        "the server does not log into the new file: {:?}",
        std::fs::read_to_string(&log)
    );
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("listening on"));
}

#[test]
fn logs_follow_starts_with_the_last_lines_and_ends_when_the_server_stops() {
    let lab = Lab::new();
    let out = lab.run(&["serve", "--port", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    {
        use std::io::Write;
        let log = lab.path().join("ccx.log");
        let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        for i in 0..30 {
            writeln!(file, "numbered-{i:02}").unwrap();
        }
    }
    for (args, first) in [
        (vec!["logs", "-f", "-n", "3"], 27),
        (vec!["logs", "-f"], 20),
    ] {
        let mut follower = Guarded(lab.command(&args).spawn().unwrap());
        let seen = watch_stdout(&mut follower.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut text = String::new();
        while !text.contains("numbered-29") && Instant::now() < deadline {
            if let Ok(s) = seen.recv_timeout(Duration::from_millis(200)) {
                text = s;
            }
        }
        assert!(
            text.contains(&format!("numbered-{first:02}")),
            "{args:?}: {text}"
        );
        assert!(
            !text.contains(&format!("numbered-{:02}", first - 1)),
            "{args:?} printed more than its last lines: {text}"
        );
        assert!(!text.contains("listening on"), "{args:?}: {text}");
        assert!(
            follower.0.try_wait().unwrap().is_none(),
            "{args:?} stopped following while the server runs"
        );
    }

    let mut follower = Guarded(lab.command(&["logs", "-f", "-n", "1"]).spawn().unwrap());
    let seen = watch_stdout(&mut follower.0);
    let _ = seen.recv_timeout(Duration::from_secs(10));
    let stop = lab.run(&["stop"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = follower.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "logs -f still follows a stopped server"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// Figures for README.lifecycle.md:
/// `cargo test --test lifecycle -- --ignored --nocapture startup_figures`
#[test]
#[ignore = "measurement, not a check"]
fn startup_figures() {
    let mut ready = Vec::new();
    for _ in 0..20 {
        let lab = Lab::new();
        let started = Instant::now();
        let out = lab.run(&["serve", "--port", "0"]);
        ready.push(started.elapsed());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stop = lab.run(&["stop"]);
        assert_eq!(stop.status.code(), Some(0));
    }
    let mut death = Vec::new();
    for _ in 0..20 {
        let lab = Lab::new();
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port().to_string();
        let started = Instant::now();
        let out = lab.run(&["serve", "--port", &port]);
        death.push(started.elapsed());
        assert_eq!(out.status.code(), Some(1));
    }
    let summary = |name: &str, v: &mut Vec<Duration>| {
        v.sort();
        println!(
            "{name}: median {:.1} ms, min {:.1} ms, max {:.1} ms (n={})",
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[0].as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3,
            v.len()
        );
    };
    summary("ccx serve → ready and returned", &mut ready);
    summary("ccx serve → port-in-use death reported", &mut death);
}

#[test]
fn a_planted_log_symlink_is_never_written_through() {
    let lab = Lab::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("bashrc");
    std::fs::write(&victim, "original\n").unwrap();
    std::os::unix::fs::symlink(&victim, lab.path().join("ccx.log")).unwrap();
    let out = lab.run(&["serve", "--port", "0"]);
    let said = text(&out);
    assert_ne!(
        out.status.code(),
        Some(0),
        "served through the link: {said}"
    );
    assert!(
        said.contains("ccx.log") && said.contains("symbolic link"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original\n");
    assert!(lab.servers().is_empty(), "a server started anyway");
}

#[test]
fn a_state_dir_another_user_owns_and_anyone_may_write_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let me = nix::unistd::geteuid();
    let lab = Lab::new();
    let dir = lab.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let foreign = if me.is_root() {
        // Root can give it away: owned by nobody, writable by all.
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        dir.clone()
    } else {
        // Others can't: the system's temporary directory is such a place.
        let tmp = std::env::temp_dir();
        let meta = std::fs::metadata(&tmp).unwrap();
        assert!(meta.uid() != me.as_raw() && meta.mode() & 0o002 != 0);
        tmp
    };
    let mut cmd = lab.command(&["serve", "--port", "0"]);
    cmd.env("CCX_STATE_DIR", &foreign);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&foreign.display().to_string()),
        "names the path: {said}"
    );
    assert!(said.contains("CCX_STATE_DIR"), "says the fix: {said}");
    assert!(
        !foreign.join("ccx.pid").exists() || foreign != dir,
        "wrote a pid file"
    );
    if foreign == dir {
        assert!(!dir.join("ccx.log").exists(), "wrote a log");
    }

    // A directory of our own that its group may write is refused too, with
    // `chmod 700` as the fix; created afresh, it is 0700 and its files 0600.
    let group = lab.path().join("group");
    std::fs::create_dir(&group).unwrap();
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o770)).unwrap();
    let mut cmd = lab.command(&["serve", "--port", "0"]);
    cmd.env("CCX_STATE_DIR", &group);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("chmod 700"), "{}", text(&out));

    let fresh = lab.path().join("fresh").join("state");
    let mut cmd = lab.command(&["serve", "--port", "0"]);
    cmd.env("CCX_STATE_DIR", &fresh);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&fresh), 0o700);
    for file in ["ccx.pid", "ccx.log", "ccx.lock"] {
        assert_eq!(mode(&fresh.join(file)), 0o600, "{file}");
    }
    let mut stop = lab.command(&["stop"]);
    stop.env("CCX_STATE_DIR", &fresh);
    let out = run_with_deadline(stop, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Spawns `program` until it gets `pid` (the kernel's next pid is set
/// through ns_last_pid, which needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
/// `None` (with why) when the pid cannot be chosen here.
fn spawn_with_pid(pid: u32, program: &str, args: &[&str]) -> Result<Guarded, String> {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .map_err(|e| format!("cannot set /proc/sys/kernel/ns_last_pid: {e}"))?;
        let child = Guarded(Command::new(program).args(args).spawn().unwrap());
        if child.0.id() == pid {
            return Ok(child);
        }
        // Another process of the machine forked first: try again.
    }
    Err(format!("pid {pid} was taken by others 200 times"))
}

#[test]
fn stop_never_signals_a_process_that_reused_the_servers_pid() {
    use std::os::unix::process::CommandExt;
    let lab = Lab::new();
    // A stand-in server: `ccx… serve --foreground` as far as its command
    // line goes; it notes the SIGTERM it gets and ignores it.
    let noted = lab.path().join("got-sigterm");
    let script = format!(
        "trap 'touch {}' TERM; while :; do sleep 0.01; done",
        noted.display()
    );
    let mut server = Guarded(
        Command::new("bash")
            .arg0("ccx-stand-in")
            .args(["-c", &script, "serve", "--foreground"])
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with("ccx-stand-in"))
    }));
    let ticks = ccx::lifecycle::state::start_ticks(pid).unwrap();
    let record =
        format!(r#"{{"schema_version":1,"pid":{pid},"start_ticks":{ticks},"kill_grace_ms":3000}}"#);
    std::fs::write(lab.pid_file(), record).unwrap();

    let stop = lab.command(&["stop", "--json"]).spawn().unwrap();
    let stopper = Pid::from_raw(stop.id() as i32);
    assert!(
        eventually(Duration::from_secs(10), || noted.exists()),
        "stop sent no SIGTERM"
    );
    // Between two of stop's looks, the server exits and its pid goes to an
    // unrelated process (stop is paused to make "between" certain).
    kill(stopper, Signal::SIGSTOP).unwrap();
    let _ = server.0.kill();
    let _ = server.0.wait();
    let reused = spawn_with_pid(pid, "sleep", &["30"]);
    kill(stopper, Signal::SIGCONT).unwrap();
    let mut unrelated = match reused {
        Ok(child) => child,
        Err(why) if std::env::var("CI").is_err() => {
            eprintln!("skipped: {why}");
            let _ = wait_output(stop, Duration::from_secs(30));
            return;
        }
        Err(why) => panic!("{why}"),
    };
    assert_ne!(ccx::lifecycle::state::start_ticks(pid), Some(ticks));
    let out = wait_output(stop, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        unrelated.0.try_wait().unwrap().is_none(),
        "stop killed the process that reused its server's pid: {}",
        text(&out)
    );
    let report: StopReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.outcome, StopOutcome::Stopped, "{report:?}");
    assert_eq!(report.signal.as_deref(), Some("SIGTERM"), "{report:?}");
}
