//! Attacks on the process side of the server, each reproduced from the
//! outside: a real server on a loopback port, a real client, a real shell.
//! Each test is a row of the "Attacks we test" table in docs/security.md:
//! the allowlist seen the way sh sees a command (its `env`, its program
//! word, `~`), and the property that the allowlist's program word is the
//! word `/bin/sh` runs.

mod common;

use std::path::Path;
use std::process::Command;

use ccx::client::{Client, ClientError};
use ccx::config::Config;
use ccx::process::admission::{check_allowed, program_word};
use ccx::protocol::ExecuteParams;
use common::TestServer;
use proptest::prelude::*;

fn exec(command: &str) -> ExecuteParams {
    ExecuteParams::command(command)
}

/// The refusal of `params`: panics when the command ran, showing what it
/// printed.
async fn refused(client: &mut Client, params: &ExecuteParams) -> ccx::protocol::RpcError {
    match client.run(params).await {
        Err(ClientError::Rpc(e)) => e,
        Ok(outcome) => panic!(
            "{:?} ran: stdout {:?}, stderr {:?}",
            params.command, outcome.stdout, outcome.stderr
        ),
        Err(other) => panic!("{:?}: expected an RPC error, got {other}", params.command),
    }
}

/// A path to bash, or `None` (with the reason printed) where it is absent;
/// under CI a missing bash fails the test.
fn bash() -> Option<&'static str> {
    let path = "/bin/bash";
    if Path::new(path).exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{path} is missing");
    eprintln!("skipped: {path} is missing");
    None
}

/// `{"command":"echo x","env":{"BASH_FUNC_echo%%":"() { id; }"}}` made bash
/// run `id` although only `echo` was allowed; `BASH_ENV` did too. With an
/// allowlist, `env` may only name CCX_ALLOWED_ENV's variables.
#[tokio::test(flavor = "multi_thread")]
async fn allowlist_refuses_env_that_chooses_code() {
    let Some(bash) = bash() else { return };
    let server = TestServer::start_with(
        &[("CCX_ALLOWED_COMMANDS", "echo"), ("CCX_SHELL", bash)],
        &[],
    );
    let mut client = server.client().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("startup");
    std::fs::write(&script, "echo pwned-by-startup-file\n").unwrap();
    let attacks = [
        (
            "BASH_FUNC_echo%%",
            "() { echo pwned-by-function; }".to_string(),
        ),
        ("BASH_ENV", script.display().to_string()),
        ("ENV", script.display().to_string()),
        ("PATH", dir.path().display().to_string()),
        (
            "LD_PRELOAD",
            dir.path().join("evil.so").display().to_string(),
        ),
    ];
    for (name, value) in attacks {
        let mut params = exec("echo x");
        params.env = Some([(name.to_string(), value)].into());
        let e = refused(&mut client, &params).await;
        assert_eq!(e.code, -32001, "{name}: {}", e.message);
        assert!(e.message.contains(name), "{name}: {}", e.message);
    }
    let mut params = exec("echo allowed");
    params.env = Some(
        [
            ("LC_ALL".to_string(), "C".to_string()),
            ("TERM".to_string(), "dumb".to_string()),
        ]
        .into(),
    );
    assert_eq!(client.run(&params).await.unwrap().stdout, "allowed\n");
}

/// With `mkdir` allowed, `mkdir 'mkdir\v'` then `mkdir\v/../../../bin/sh -c …`
/// ran a shell: `\v` is no separator for sh, so the program was the path
/// through the new directory, not `mkdir`.
#[tokio::test(flavor = "multi_thread")]
async fn allowlist_program_word_is_split_as_sh_splits_it() {
    let server = TestServer::start_with(&[("CCX_ALLOWED_COMMANDS", "mkdir")], &[]);
    let mut client = server.client().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let up = "../".repeat(cwd.components().count());
    let mut params = exec("mkdir 'mkdir\u{b}'");
    params.cwd = Some(cwd.display().to_string());
    let made = client.run(&params).await.unwrap();
    assert_eq!(made.completed.exit_code, 0, "{made:?}");
    assert!(cwd.join("mkdir\u{b}").is_dir());
    for separator in ['\u{b}', '\u{c}', '\r', '\u{a0}'] {
        let mut params = exec(&format!(
            "mkdir{separator}/{up}bin/sh -c \"echo pwned-by-separator\""
        ));
        params.cwd = Some(cwd.display().to_string());
        let e = refused(&mut client, &params).await;
        assert_eq!(e.code, -32001, "{separator:?}: {}", e.message);
    }
}

/// `echo ~` printed the server's `$HOME` although `$` expansions are
/// refused: a tilde expansion is refused the same way.
#[tokio::test(flavor = "multi_thread")]
async fn allowlist_refuses_tilde_expansion() {
    let server = TestServer::start_with(&[("CCX_ALLOWED_COMMANDS", "echo")], &[]);
    let mut client = server.client().await;
    for command in ["echo ~", "echo ~root", "echo a=~/x", "echo PATH=/x:~"] {
        let e = refused(&mut client, &exec(command)).await;
        assert_eq!(e.code, -32001, "{command}: {}", e.message);
        assert!(e.message.contains("tilde"), "{command}: {}", e.message);
    }
    assert_eq!(
        client.run(&exec("echo '~' \\~")).await.unwrap().stdout,
        "~ ~\n"
    );
}

/// The first word `/bin/sh` parses from `command`: `set -- COMMAND` makes
/// the shell split it into words with its own rules, quotes removed;
/// `None` when sh does not accept it. (A newline in `command` ends the
/// `set`: what follows runs with no PATH, in an empty directory.)
fn sh_first_word(command: &str) -> Option<String> {
    static EMPTY: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let empty = EMPTY.get_or_init(|| tempfile::tempdir().unwrap());
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("set -- {command}\nprintf %s \"$1\""))
        .env_clear()
        .env("PATH", empty.path())
        .env("LC_ALL", "C.UTF-8")
        .current_dir(empty.path())
        .output()
        .expect("run /bin/sh");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Every character that is Unicode white space or a control character
/// (NUL excepted: no argument can carry it).
fn separators() -> Vec<char> {
    (1..=0x10ffff_u32)
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace() || c.is_control())
        .collect()
}

/// Each such character, between two words and around a quoted one: the
/// allowlist's program word is sh's first word.
#[test]
fn every_white_space_and_control_character_splits_as_in_sh() {
    for c in separators() {
        for command in [
            format!("mkdir{c}x y"),
            format!("{c}'mk'dir{c}x"),
            format!("mkdir\t{c}"),
        ] {
            let sh = sh_first_word(&command);
            if let Ok(ours) = program_word(&command) {
                assert_eq!(Some(ours), sh, "{command:?}");
            } else {
                assert!(c == '\n' || sh.is_none(), "{command:?}: sh runs {sh:?}");
            }
        }
    }
}

fn piece() -> impl Strategy<Value = String> {
    let special = separators();
    prop_oneof![
        3 => proptest::sample::select(special).prop_map(String::from),
        1 => proptest::sample::select(vec![
            "mkdir", "x", "'a b'", "\"q r\"", "\\ ", "'", "\"", "-c", "/", "=",
        ])
        .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever white space or control characters surround it, the
    /// allowlist's program word is the word /bin/sh runs, and `mkdir` is
    /// admitted only when sh's first word is `mkdir`.
    #[test]
    fn the_allowlists_program_word_is_the_word_sh_runs(
        pieces in proptest::collection::vec(piece(), 0..6),
    ) {
        let command = format!("mkdir{}", pieces.concat());
        let sh = sh_first_word(&command);
        if let Ok(ours) = program_word(&command) {
            prop_assert_eq!(Some(ours), sh.clone(), "{:?}", command);
        }
        let config = Config {
            allowed_commands: Some(vec!["mkdir".into()]),
            ..Config::default()
        };
        if check_allowed(&exec(&command), &config).is_ok() {
            prop_assert_eq!(sh.as_deref(), Some("mkdir"), "admitted {:?}", command);
        }
    }
}

/// A server started with a descriptor it did not mark close-on-exec
/// (`ccx serve --foreground 9<secret`) handed it to every command: `cat
/// /dev/fd/9` printed the file. Commands get descriptors 0, 1 and 2 only.
#[tokio::test(flavor = "multi_thread")]
async fn commands_do_not_inherit_the_servers_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "inherited-secret-contents\n").unwrap();
    let secret = secret.display().to_string();
    let server = TestServer::start_via(
        &["/bin/sh", "-c", "exec 9<\"$0\"; exec \"$@\"", &secret],
        &[],
        &[],
    );
    // (A server not running as root is not dumpable: its fd/ is closed to
    // this process then.)
    if nix::unistd::geteuid().is_root() {
        assert!(
            std::fs::read_link(format!("/proc/{}/fd/9", server.pid())).is_ok(),
            "the server did not get fd 9: the test proves nothing"
        );
    }
    let mut client = server.client().await;
    let outcome = client
        .run(&exec("cat /dev/fd/9; ls /proc/self/fd"))
        .await
        .unwrap();
    assert!(
        !outcome.stdout.contains("inherited-secret-contents"),
        "{outcome:?}"
    );
    let fds: Vec<&str> = outcome.stdout.split_whitespace().collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "ls sees 0-2 and its own directory"
    );
}

/// Commands run as the server's user and `/health` gives its pid, so `cat
/// /proc/<server pid>/environ` printed `CCX_TOKEN`. The server re-execs
/// itself without it: neither its environment nor its command line holds
/// the token, from CCX_TOKEN or from CCX_TOKEN_FILE.
#[tokio::test(flavor = "multi_thread")]
async fn commands_cannot_read_the_token_from_the_servers_proc() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "token-from-a-file-7c1e\n").unwrap();
    let file = file.display().to_string();
    for (env, token) in [
        (
            ("CCX_TOKEN", "token-in-the-environment-9f3a"),
            "token-in-the-environment-9f3a",
        ),
        (("CCX_TOKEN_FILE", file.as_str()), "token-from-a-file-7c1e"),
    ] {
        let server = TestServer::start_with(&[env], &[]);
        let options = server.options().token(Some(token.into()));
        let mut client = Client::connect(&options).await.unwrap();
        let pid = server.pid();
        let outcome = client
            .run(&exec(&format!(
                "tr '\\0' '\\n' </proc/{pid}/environ && echo ENVIRON-READ; \
                 tr '\\0' ' ' </proc/{pid}/cmdline; echo; echo OTHERS; \
                 cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'"
            )))
            .await
            .unwrap();
        let (own, _) = outcome.stdout.split_once("OTHERS").unwrap();
        // Root reads any environ; another user is refused the server's
        // (it is not dumpable), which is a protection too.
        if nix::unistd::geteuid().is_root() {
            assert!(
                own.contains("ENVIRON-READ") && own.contains("PATH="),
                "the server's environ was not read: the test proves nothing: {outcome:?}"
            );
        }
        assert!(
            own.contains("serve"),
            "the server's cmdline was not read: {own}"
        );
        assert!(!own.contains("CCX_TOKEN="), "{}: {own}", env.0);
        assert!(
            !outcome.stdout.contains(token),
            "{}: {}",
            env.0,
            outcome.stdout
        );
        let unauthorized = Client::connect(&server.options()).await;
        assert!(unauthorized.is_err(), "the token is still required");
    }
}

/// In cgroup mode `cgroup.procs` is writable by the server's user, so a
/// command could write itself out of its cgroup, clear its marker (`env
/// -i`), and outlive its command: `setsid sh -c 'echo $$ >
/// <parent>/cgroup.procs; exec sleep'`. It is still re-parented to the
/// server when its command's shell exits, and ends with the command (so
/// does the same escapee where commands have no cgroup: it clears its
/// marker).
#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_writes_itself_out_of_its_cgroup_still_ends_with_it() {
    let server = TestServer::start();
    let mut client = server.client().await;
    let info = client.info(&[]).await.unwrap();
    let cgroups = info.process_tracking.as_deref() == Some("cgroup-v2");
    // Without cgroup tracking there is no cgroup to leave: the escapee
    // still clears its marker, which the old rule needed to end it.
    let parent = match (
        ccx::process::procfs::cgroup2_mount(),
        ccx::process::procfs::own_cgroup_v2(),
    ) {
        (Some(mount), Some(own)) if cgroups => {
            mount.join(own.trim_start_matches('/')).join("cgroup.procs")
        }
        _ => "/dev/null".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("escapee");
    let script = format!(
        "setsid env -i sh -c 'echo $$ > {parent}; echo $$ > {tmp}; mv {tmp} {pid}; exec sleep 23' \
         </dev/null >/dev/null 2>&1 &\n\
         while [ ! -s {pid} ]; do sleep 0.01; done; cat /proc/$(cat {pid})/cgroup",
        parent = parent.display(),
        tmp = dir.path().join("tmp").display(),
        pid = pid_file.display(),
    );
    let mut params = exec(&script);
    params.timeout = Some(20.0);
    let outcome = client.run(&params).await.unwrap();
    let escapee: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = common::eventually(std::time::Duration::from_secs(5), || {
        !ccx::process::procfs::is_alive(escapee as u32)
    });
    if !gone {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(escapee),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        !cgroups || !outcome.stdout.contains(&format!("/ccx.{}/", server.pid())),
        "the escapee did not leave its cgroup: the test proves nothing: {outcome:?}"
    );
    assert!(
        gone,
        "the escapee {escapee} outlived its command: {outcome:?}"
    );
}
