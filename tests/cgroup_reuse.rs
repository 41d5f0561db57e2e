//! The reuse rules of command cgroups, through a real server, real clients
//! and real shells: a cgroup whose command left something behind, was
//! killed through `cgroup.kill`, or made a sub-cgroup is never handed to
//! another command (a killed cgroup SIGKILLs every process later born into
//! it), while a cgroup its command left untouched is reused. The same
//! workloads run in the fallback mode (`CCX_PROCESS_TRACKING=marker`).

mod common;

use std::time::Duration;

use ccx::client::{Client, RunOutcome};
use ccx::protocol::{ControlType, ExecuteParams};
use common::{eventually, kill_group_if, pids_with_cmdline, TestServer};

/// A tag no other test of this run uses, for finding our own processes.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    format!(
        "{}{:03}",
        std::process::id() % 1000,
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Prints the command's cgroup directory (mount point + path).
const PRINT_CGROUP: &str = r#"cg=$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)
mnt=$(awk '{for(i=1;i<=NF;i++) if($i=="-" && $(i+1)=="cgroup2"){print $5; exit}}' /proc/self/mountinfo)
d="$mnt$cg""#;

async fn run(client: &mut Client, command: &str) -> RunOutcome {
    let mut params = ExecuteParams::command(command);
    params.timeout = Some(30.0);
    client.run(&params).await.expect("run")
}

async fn in_cgroup_mode(server: &TestServer) -> bool {
    let info = server.client().await.info(&[]).await.expect("server.info");
    info.process_tracking.as_deref() == Some("cgroup-v2")
}

/// Where a test's leftovers write their pids (`echo $$ >> FILE`).
fn pid_file(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ccx-cgroup-reuse-{tag}.pids"))
}

/// Ends what the server should already have ended: each leftover recorded
/// in `tag`'s pid file and its group, if that pid still runs a command
/// carrying the tag.
fn kill_tagged(tag: &str) {
    let file = pid_file(tag);
    let pids = std::fs::read_to_string(&file).unwrap_or_default();
    for pid in pids.lines().filter_map(|l| l.trim().parse().ok()) {
        kill_group_if(pid, |argv| argv.iter().any(|a| a.contains(tag)));
    }
    let _ = std::fs::remove_file(file);
}

/// Leaves a process that ignores SIGTERM, so that the server ends it with
/// SIGKILL (`cgroup.kill` in cgroup mode): once at the command's natural
/// end, once on CANCEL.
async fn leave_a_term_ignoring_leftover(server: &TestServer, tag: &str) {
    let mut client = server.client().await;
    let pids = pid_file(tag).display().to_string();
    let leftover =
        format!("setsid sh -c 'echo $$ >> {pids}; trap \"\" TERM; sleep 60.{tag}' & sleep 0.2");
    let outcome = run(&mut client, &leftover).await;
    assert_eq!(outcome.completed.exit_code, 0, "{outcome:?}");

    let mut params = ExecuteParams::command(format!(
        "setsid sh -c 'echo $$ >> {pids}; trap \"\" TERM; sleep 61.{tag}' & sleep 62.{tag}"
    ));
    params.timeout = Some(30.0);
    client.execute(&params).await.expect("execute");
    assert!(
        eventually(Duration::from_secs(5), || !pids_with_cmdline(&format!(
            "sleep 61.{tag}"
        ))
        .is_empty()),
        "the leftover never started"
    );
    client.control(ControlType::Cancel).await.expect("cancel");
    loop {
        match client.next_event().await.expect("event") {
            ccx::client::Event::Completed(_) => break,
            _ => continue,
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || pids_with_cmdline(tag).is_empty()),
        "leftovers survived: {:?}",
        pids_with_cmdline(tag)
    );
}

/// 1,000 `echo` commands over 16 sessions at once; every one must exit 0
/// with its output.
async fn thousand_echoes_all_succeed(server: &TestServer) {
    let mut sessions = Vec::new();
    for session in 0..16 {
        let mut client = server.client().await;
        sessions.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let count = 1000 / 16 + usize::from(session < 1000 % 16);
            for n in 0..count {
                let word = format!("s{session}n{n}");
                let outcome = run(&mut client, &format!("echo {word}")).await;
                if outcome.completed.exit_code != 0 || outcome.stdout != format!("{word}\n") {
                    failures.push(format!(
                        "{word}: exit {} signal {:?} stdout {:?}",
                        outcome.completed.exit_code, outcome.completed.signal, outcome.stdout
                    ));
                }
            }
            (count, failures)
        }));
    }
    let mut total = 0;
    let mut failures = Vec::new();
    for session in sessions {
        let (count, failed) = session.await.expect("session task");
        total += count;
        failures.extend(failed);
    }
    assert_eq!(total, 1000);
    assert!(
        failures.is_empty(),
        "{} of 1000 commands failed after a killed leftover, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_after_a_killed_leftover_all_run_in_cgroup_mode() {
    let server = TestServer::start_with(&[("CCX_KILL_GRACE", "1s")], &[]);
    let tag = unique();
    leave_a_term_ignoring_leftover(&server, &tag).await;
    thousand_echoes_all_succeed(&server).await;
    kill_tagged(&tag);
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_after_a_killed_leftover_all_run_in_marker_mode() {
    let server = TestServer::start_with(
        &[("CCX_KILL_GRACE", "1s"), ("CCX_PROCESS_TRACKING", "marker")],
        &[],
    );
    let info = server.client().await.info(&[]).await.expect("server.info");
    assert_eq!(
        info.process_tracking.as_deref(),
        Some("subreaper+marker"),
        "CCX_PROCESS_TRACKING=marker must choose the fallback mode"
    );
    let tag = unique();
    leave_a_term_ignoring_leftover(&server, &tag).await;
    thousand_echoes_all_succeed(&server).await;
    kill_tagged(&tag);
}

/// The cgroup a command printed with [`PRINT_CGROUP`].
fn cgroup_of(outcome: &RunOutcome) -> String {
    outcome
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("cgroup "))
        .unwrap_or_else(|| panic!("no cgroup line in {outcome:?}"))
        .to_string()
}

/// Runs `command` after printing its cgroup; then twenty commands on the
/// same session must never be born in that cgroup, must all succeed, and
/// the cgroup directory must be removed.
async fn assert_retired_after(server: &TestServer, command: &str, expect_exit: i32) {
    let mut client = server.client().await;
    let first = run(
        &mut client,
        &format!("{PRINT_CGROUP}\necho cgroup $d\n{command}"),
    )
    .await;
    assert_eq!(first.completed.exit_code, expect_exit, "{first:?}");
    let retired = cgroup_of(&first);
    for _ in 0..20 {
        let next = run(&mut client, &format!("{PRINT_CGROUP}\necho cgroup $d")).await;
        assert_eq!(next.completed.exit_code, 0, "{next:?}");
        assert_ne!(
            cgroup_of(&next),
            retired,
            "a retired cgroup was reused after `{command}`"
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || !std::path::Path::new(&retired)
            .exists()),
        "the retired cgroup {retired} was not removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cgroup_its_command_left_untouched_is_reused() {
    let server = TestServer::start();
    if !in_cgroup_mode(&server).await {
        eprintln!("no writable cgroup v2 here: nothing to test");
        return;
    }
    let mut client = server.client().await;
    let command = format!("{PRINT_CGROUP}\necho cgroup $d");
    let first = cgroup_of(&run(&mut client, &command).await);
    // The cgroup goes back to the pool just after the completion is
    // written: the next commands get it once it is there.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let next = cgroup_of(&run(&mut client, &command).await);
        if next == first {
            return;
        }
        seen.push(next);
    }
    panic!("the clean cgroup {first} was never reused: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cgroup_with_a_killed_leftover_is_never_reused() {
    let server = TestServer::start_with(&[("CCX_KILL_GRACE", "1s")], &[]);
    if !in_cgroup_mode(&server).await {
        eprintln!("no writable cgroup v2 here: nothing to test");
        return;
    }
    let tag = unique();
    assert_retired_after(
        &server,
        &format!(
            "setsid sh -c 'echo $$ >> {}; trap \"\" TERM; sleep 63.{tag}' & sleep 0.2",
            pid_file(&tag).display()
        ),
        0,
    )
    .await;
    kill_tagged(&tag);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cgroup_its_command_killed_itself_is_never_reused() {
    let server = TestServer::start();
    if !in_cgroup_mode(&server).await {
        eprintln!("no writable cgroup v2 here: nothing to test");
        return;
    }
    assert_retired_after(&server, "echo 1 > \"$d/cgroup.kill\"; sleep 5", -9).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cgroup_with_a_sub_cgroup_is_never_reused() {
    let server = TestServer::start();
    if !in_cgroup_mode(&server).await {
        eprintln!("no writable cgroup v2 here: nothing to test");
        return;
    }
    assert_retired_after(&server, "mkdir \"$d/sub\"", 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cgroup_with_a_leftover_that_ended_in_its_grace_is_never_reused() {
    let server = TestServer::start();
    if !in_cgroup_mode(&server).await {
        eprintln!("no writable cgroup v2 here: nothing to test");
        return;
    }
    let tag = unique();
    let pids = pid_file(&tag).display().to_string();
    let command = format!("setsid sleep 64.{tag} & echo $! >> {pids}; sleep 0.1");
    assert_retired_after(&server, &command, 0).await;
    kill_tagged(&tag);
}
