//! The docs are checked like code. README.md and docs/*.md hold no
//! placeholder, machine path or internal jargon; and every sample that
//! shows a command's output (a fenced block starting with `$ `) says how it
//! is kept true, by a marker on a line before it:
//!
//! - `<!-- snapshot: NAME -->`: byte-identical to an insta snapshot
//!   (checked by tests/human_output.rs);
//! - `<!-- run -->`, `<!-- run with server -->`: run here, each `$ ` line
//!   by `/bin/sh -c` in a fresh state directory (after `ccx serve --port 0`
//!   for the second form), its stdout and stderr compared with the lines
//!   under it, digits aside (ports, pids and durations vary); a line `…`
//!   stands for any lines, a line ending in `…` for one line that starts
//!   as it does; a trailing `# exit N` comment is the exit status it must
//!   have;
//! - `<!-- not-run: WHY -->`: not run here, and why (another test checks
//!   it, or it needs a peer server, a container or a cluster).
//!
//! A new sample without a marker fails, so none can drift unnoticed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::background::{run_within, StateLab};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every file of docs/.
fn documents() -> Vec<(String, String)> {
    let mut paths = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn docs_hold_no_placeholder_machine_path_or_internal_jargon() {
    let forbidden: [(&str, &str); 9] = [
        ("FIGURES", "a placeholder"),
        ("TODO", "a placeholder"),
        ("XXX", "a placeholder"),
        ("TBD", "a placeholder"),
        ("/work/", "a path of the machine the docs were written on"),
        ("/root/", "a path of the machine the docs were written on"),
        ("the seed", "internal jargon: say what the user saw"),
        (
            "issue #",
            "internal jargon: the docs describe the tool, not its history",
        ),
        ("../shared/", "a path outside the repository"),
    ];
    let mut found = Vec::new();
    for (name, text) in documents() {
        for (n, line) in text.lines().enumerate() {
            for (needle, why) in forbidden {
                if line.contains(needle) {
                    found.push(format!("{name}:{}: {needle:?} ({why}): {line}", n + 1));
                }
            }
            // A home directory by name (`/home/alice/…`); `~` and
            // `$HOME` are how docs say it.
            if let Some(at) = line.find("/home/") {
                let rest = &line[at + 6..];
                if rest.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                    found.push(format!(
                        "{name}:{}: a home directory by name: {line}",
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "\n{}", found.join("\n"));
}

/// How a sample is kept true.
#[derive(Debug, Clone, PartialEq)]
enum Mark {
    Snapshot,
    Run { server: bool },
    NotRun,
}

/// A fenced block whose first line is a `$ ` command.
#[derive(Debug)]
struct Sample {
    doc: String,
    line: usize,
    mark: Option<Mark>,
    lines: Vec<String>,
}

fn samples(doc: &str, text: &str) -> Vec<Sample> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with("```") {
            i += 1;
            continue;
        }
        let open = i;
        let Some(len) = lines[open + 1..].iter().position(|l| l.starts_with("```")) else {
            break;
        };
        let close = open + 1 + len;
        let body: Vec<String> = lines[open + 1..close]
            .iter()
            .map(|l| l.to_string())
            .collect();
        i = close + 1;
        if !body.first().is_some_and(|l| l.starts_with("$ ")) {
            continue;
        }
        let marker = lines[..open]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim());
        let mark = match marker {
            Some(m) if m.starts_with("<!-- snapshot:") => Some(Mark::Snapshot),
            Some("<!-- run -->") => Some(Mark::Run { server: false }),
            Some("<!-- run with server -->") => Some(Mark::Run { server: true }),
            Some(m) if m.starts_with("<!-- not-run:") && m.len() > "<!-- not-run: -->".len() => {
                Some(Mark::NotRun)
            }
            _ => None,
        };
        out.push(Sample {
            doc: doc.to_string(),
            line: open + 1,
            mark,
            lines: body,
        });
    }
    out
}

fn all_samples() -> Vec<Sample> {
    documents()
        .iter()
        .flat_map(|(name, text)| samples(name, text))
        .collect()
}

#[test]
fn every_output_sample_says_how_it_is_kept_true() {
    let unmarked: Vec<String> = all_samples()
        .iter()
        .filter(|s| s.mark.is_none())
        .map(|s| format!("{}:{}: {}", s.doc, s.line, s.lines[0]))
        .collect();
    assert!(
        unmarked.is_empty(),
        "samples without <!-- snapshot: NAME -->, <!-- run --> or <!-- not-run: WHY -->:\n{}",
        unmarked.join("\n")
    );
}

/// Digits vary between runs (ports, pids, durations, timestamps).
fn normalize(text: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// Whether the lines `actual` are what the doc shows, `…` as described at
/// the top of this file.
fn matches(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"…", rest)) => (0..=actual.len()).any(|skip| matches(rest, &actual[skip..])),
        Some((line, rest)) => match actual.split_first() {
            None => false,
            Some((first, tail)) => {
                let same = match line.strip_suffix('…') {
                    Some(prefix) => first.starts_with(prefix),
                    None => line == first,
                };
                same && matches(rest, tail)
            }
        },
    }
}

/// The state directory the samples name when they show it; the others get
/// the default one, as a newcomer has it.
const DOC_STATE_DIR: &str = "/tmp/ccx-demo";
const DEFAULT_STATE_DIR: &str = "~/.local/state/ccx";

/// A `$ ` line: the command, and the exit status its `# exit N` comment names.
fn command_of(line: &str) -> (String, Option<i32>) {
    let command = line.trim_start_matches("$ ");
    match command.rfind("  # ") {
        Some(at) => {
            let comment = &command[at + 4..];
            let exit = comment
                .split(|c: char| !c.is_ascii_alphanumeric())
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0] == "exit")
                .and_then(|w| w[1].parse().ok());
            (command[..at].trim_end().to_string(), exit)
        }
        None => (command.to_string(), None),
    }
}

fn run_sample(sample: &Sample, server: bool) -> Vec<String> {
    let lab = StateLab::new();
    let named = sample.lines.iter().any(|l| l.contains(DOC_STATE_DIR));
    let (state, shown, var, value) = if named {
        let state = lab.path().join("ccx-demo");
        let value = state.clone();
        (state, DOC_STATE_DIR, "CCX_STATE_DIR", value)
    } else {
        let xdg = lab.path().join("xdg");
        (xdg.join("ccx"), DEFAULT_STATE_DIR, "XDG_STATE_HOME", xdg)
    };
    let env = |cmd: &mut std::process::Command| {
        cmd.env_remove("CCX_STATE_DIR").env(var, &value);
    };
    if server {
        let mut serve = lab.command(&["serve", "--port", "0"]);
        env(&mut serve);
        let out = run_within(serve, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}",
            common::background::describe(&out)
        );
    }
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut problems = Vec::new();
    let mut at = 0;
    while at < sample.lines.len() {
        let (command, exit) = command_of(&sample.lines[at]);
        let end = sample.lines[at + 1..]
            .iter()
            .position(|l| l.starts_with("$ "))
            .map(|p| at + 1 + p)
            .unwrap_or(sample.lines.len());
        let expected = normalize(&sample.lines[at + 1..end].join("\n"));
        let mut sh = common::isolated("/bin/sh");
        sh.arg("-c")
            .arg(format!(
                "exec 2>&1; {}",
                command.replace(DOC_STATE_DIR, state.to_str().unwrap())
            ))
            .current_dir(lab.path())
            .env("PATH", &path)
            .env("NO_COLOR", "1");
        env(&mut sh);
        let out = run_within(sh, Duration::from_secs(60));
        let actual = String::from_utf8_lossy(&out.stdout)
            .replace(state.to_str().unwrap(), shown)
            .replace(lab.path().to_str().unwrap(), "/tmp");
        let actual = normalize(&actual);
        let line = sample.line + at + 1;
        let (want, got): (Vec<&str>, Vec<&str>) =
            (expected.lines().collect(), actual.lines().collect());
        if !matches(&want, &got) {
            problems.push(format!(
                "{}:{line}: `{command}` printed something else (digits aside):\n--- doc\n{expected}\n--- ccx\n{actual}",
                sample.doc
            ));
        }
        if let Some(code) = exit {
            if out.status.code() != Some(code) {
                problems.push(format!(
                    "{}:{line}: `{command}` exited {:?}, the doc says {code}",
                    sample.doc,
                    out.status.code()
                ));
            }
        }
        at = end;
    }
    problems
}

#[test]
fn samples_marked_run_print_what_the_docs_show() {
    let mut problems = Vec::new();
    let mut ran = 0;
    for sample in all_samples() {
        if let Some(Mark::Run { server }) = sample.mark {
            problems.extend(run_sample(&sample, server));
            ran += 1;
        }
    }
    assert!(ran > 0, "no sample is marked <!-- run -->");
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}

#[test]
fn the_sample_reader_finds_marks_commands_and_exit_comments() {
    let doc = "<!-- run -->\n```\n$ ccx stop    # idempotent, exit 0\nno server\n```\n\n```\n$ ccx x\n```\n";
    let found = samples("d.md", doc);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].mark, Some(Mark::Run { server: false }));
    assert_eq!(found[1].mark, None);
    assert_eq!(
        command_of(&found[0].lines[0]),
        ("ccx stop".to_string(), Some(0))
    );
    assert_eq!(normalize("pid 123 in 4 ms  \n\n"), "pid N in N ms");
    assert!(matches(&["a", "…", "d"], &["a", "b", "c", "d"]));
    assert!(matches(&["a", "…"], &["a"]));
    assert!(matches(&["  | …", "z"], &["  | x y", "z"]));
    assert!(!matches(&["  | …", "z"], &["x", "z"]));
    assert!(!matches(&["a", "b"], &["a", "b", "c"]));
}
