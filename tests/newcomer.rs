//! A newcomer's first minute, scripted: README.md's 60-second tour, line by
//! line, from a fresh state directory, with the server on a port other than
//! the default (`--port 0`) and no `--url` anywhere; every line must exit as
//! the README says (0, or the `exits N` its comment names).

mod common;

use std::path::Path;
use std::time::Duration;

use common::background::{describe, run_within, StateLab};

/// The commands of the README's tour block, each with the exit status its
/// comment promises.
fn tour() -> Vec<(String, i32)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme
        .find("## A 60-second tour")
        .expect("README has a 60-second tour");
    let rest = &readme[at..];
    let open = rest.find("```sh\n").expect("a sh block in the tour") + "```sh\n".len();
    let close = rest[open..].find("```").expect("the block closes") + open;
    rest[open..close]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (command, comment) = match line.find("  # ") {
                Some(i) => (line[..i].trim(), &line[i + 4..]),
                None => (line.trim(), ""),
            };
            let exit = comment
                .split_once("exits ")
                .and_then(|(_, n)| n.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (command.to_string(), exit)
        })
        .collect()
}

/// A non-default port everywhere the tour starts a server.
fn on_port_zero(command: &str) -> String {
    for start in ["ccx serve", "ccx doctor"] {
        if command == start {
            return format!("{start} --port 0");
        }
    }
    command.to_string()
}

#[test]
fn the_readme_tour_runs_as_the_readme_says_on_a_fresh_state_dir_and_port_0() {
    let steps = tour();
    let names: Vec<&str> = steps.iter().map(|(c, _)| c.as_str()).collect();
    for needed in ["ccx doctor", "ccx serve", "ccx stop"] {
        assert!(
            names.contains(&needed),
            "the tour lost `{needed}`: {names:?}"
        );
    }
    assert!(
        steps
            .iter()
            .any(|(c, e)| c.starts_with("ccx exec") && *e == 3),
        "the tour's exec exits 3: {steps:?}"
    );
    let lab = StateLab::new();
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut served = None;
    for (command, exit) in &steps {
        let command = on_port_zero(command);
        assert!(!command.contains("--url"), "{command}");
        let mut sh = common::isolated("/bin/sh");
        sh.args(["-c", &command])
            .current_dir(lab.path())
            .env("PATH", &path)
            .env("CCX_STATE_DIR", lab.path().join("state"));
        let out = run_within(sh, Duration::from_secs(120));
        assert_eq!(
            out.status.code(),
            Some(*exit),
            "`{command}` does not exit as the README says:\n{}",
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if command.starts_with("ccx serve") {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let url = stdout
                .split_whitespace()
                .find(|w| w.starts_with("ws://"))
                .unwrap_or_else(|| panic!("serve names no URL: {stdout}"))
                .to_string();
            assert!(!url.contains(":8003/"), "port 0 gave the default: {url}");
            served = Some(url);
        } else if command.starts_with("ccx exec") || command.starts_with("ccx stress") {
            let url = served.as_deref().expect("a server was started before");
            assert!(
                stderr.contains(url),
                "`{command}` did not say it used the background server {url}:\n{}",
                describe(&out)
            );
        }
    }
    // After the tour, nothing is left running.
    let status = lab.run_env(
        &["status"],
        &[("CCX_STATE_DIR", lab.path().join("state").to_str().unwrap())],
    );
    assert_eq!(status.status.code(), Some(1), "{}", describe(&status));
}
