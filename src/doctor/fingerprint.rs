//! The environment fingerprint `--compare` takes of any server of the
//! dialect: one portable POSIX-sh probe ([`script`]) that the doctor runs
//! as a command (`execute` on a server, or `/bin/sh -c` locally when the
//! local server cannot start), and the parser of what it prints
//! ([`parse`]) into [`Environment`]. The same script on every side, so both
//! fingerprints have the same fields whatever the server is.
//!
//! The probe prints `key=value` lines between two marker lines carrying a
//! nonce; anything outside them (a server's hooks, a shell's greeting) is
//! ignored, and so is a line it does not know. A fact it could not get (no
//! Python, no /proc) is a fact, never an error. Each part of its output is
//! bounded (`head`), variable values are never printed (names only), and a
//! module that does not import within 10 s is reported as such.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the fingerprint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Run by the server itself, through `execute`.
    Execute,
    /// Run by the doctor with `/bin/sh -c`, in the cwd and environment the
    /// local server command gets (the local server did not start).
    Local,
}

/// What a command run on one side sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub source: Option<Source>,
    /// `uname -s`, `uname -m`.
    pub os: String,
    pub arch: String,
    pub uid: String,
    pub cwd: String,
    /// The shell running commands, as started (`$0`) and where it resolves.
    pub shell: String,
    pub shell_resolved: Option<String>,
    pub path: Vec<String>,
    /// Names (never values) of the variables a command sees, sorted.
    pub env_names: Vec<String>,
    /// `ulimit -n`.
    pub open_files: String,
    /// Signs of a container (`/.dockerenv`, `/run/.containerenv`, pid 1's
    /// cgroup); empty when none.
    pub container: Vec<String>,
    /// Each `--require` program → where `command -v` finds it.
    pub binaries: BTreeMap<String, Option<String>>,
    /// `python3`, then `python`.
    pub python3: Python,
    pub python: Python,
}

/// One Python interpreter as found on PATH.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Python {
    /// Where `command -v` finds it; `None`: not on PATH.
    pub path: Option<String>,
    pub version: Option<String>,
    /// `sys.executable`.
    pub executable: Option<String>,
    /// `sys.path` (empty for `python` when `python3` exists: its facts are
    /// the ones servers import with; `python` gets path and version).
    pub sys_path: Vec<String>,
    /// Each checked module → `imports from DIR` or the error of its import.
    pub modules: BTreeMap<String, Import>,
    /// Installed distributions, normalized name → version.
    pub distributions: BTreeMap<String, String>,
    /// Set when it is on PATH but did not report (it failed to run), with
    /// what it printed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a module imports, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Import {
    /// The package's directory (or the module's file).
    From(String),
    /// `ModuleNotFoundError: No module named 'x'`, …
    Fails(String),
}

impl std::fmt::Display for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Import::From(dir) => write!(f, "imports from {dir}"),
            Import::Fails(error) => f.write_str(error),
        }
    }
}

impl Environment {
    /// What a ccx's `server.info` says of the same facts (no Python: only
    /// the probe runs it), for a ccx whose command allowlist refuses the
    /// probe. Compared only with another read the same way.
    pub fn from_server_info(info: &crate::protocol::ServerInfo) -> Environment {
        let open = info.rlimits.open_files.soft;
        Environment {
            source: None,
            os: info.os.clone(),
            arch: info.arch.clone(),
            uid: info.uid.to_string(),
            cwd: info.cwd.clone(),
            shell: info.shell.clone(),
            shell_resolved: info.shell_resolved.clone(),
            path: info.path.clone(),
            env_names: info.env_names.clone(),
            open_files: open.map_or("unlimited".into(), |n| n.to_string()),
            container: if info.in_container {
                vec!["PID 1 or /.dockerenv".into()]
            } else {
                Vec::new()
            },
            binaries: info.binaries.clone(),
            python3: Python::default(),
            python: Python::default(),
        }
    }
}

/// The Python half of the probe, run as `python3 -c CODE MODULE…`: its
/// facts, the distributions, then each module (the named ones and the
/// packages found in `.` and `./src`), imported with stdout and stderr
/// (fd 1 and 2) sent to /dev/null so that what an import prints cannot mix
/// into the report. It sits in a single-quoted sh word: no single quote
/// (a test checks).
const PYTHON: &str = include_str!("fingerprint.py");

/// The short form for `python` when `python3` exists.
const PYTHON_VERSION: &str = r#"import sys; sys.stdout.write("version=" + sys.version.split()[0] + "\nexecutable=" + sys.executable + "\ndone=1\n")"#;

/// Most lines one part of the probe may print.
const MAX_LINES: usize = 5000;

/// A module name the probe may import: dotted Python identifiers (so it is
/// safe in a shell word and in the line format).
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// `'text'` for sh, quotes inside escaped.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn begin(nonce: &str) -> String {
    format!("@@ccx-probe {nonce} begin")
}

fn end(nonce: &str) -> String {
    format!("@@ccx-probe {nonce} end")
}

/// The probe: one POSIX-sh command line. `programs` are resolved with
/// `command -v`; `modules` are imported (names that are not dotted
/// identifiers, or programs with control characters, are left out: they
/// would break the line format).
pub fn script(nonce: &str, programs: &[String], modules: &[String]) -> String {
    let mut s = String::new();
    s.push_str("exec 2>/dev/null </dev/null\n");
    s.push_str("p() { printf '%s=%s\\n' \"$1\" \"$2\"; }\n");
    s.push_str(&format!("printf '\\n%s\\n' {}\n", quote(&begin(nonce))));
    s.push_str(concat!(
        "p os \"$(uname -s)\"\n",
        "p arch \"$(uname -m)\"\n",
        "p uid \"$(id -u)\"\n",
        "p cwd \"$(pwd)\"\n",
        "p shell \"$0\"\n",
        "p shell_resolved \"$(readlink /proc/$$/exe)\"\n",
        "p path \"$PATH\"\n",
        "p open_files \"$(ulimit -n)\"\n",
        "[ -f /.dockerenv ] && p container /.dockerenv\n",
        "[ -f /run/.containerenv ] && p container /run/.containerenv\n",
        "c=$(grep -E 'docker|kubepods|containerd|libpod|lxc' /proc/1/cgroup | head -n 1) && [ -n \"$c\" ] && p container \"cgroup of pid 1: $c\"\n",
    ));
    s.push_str(&format!(
        "awk 'BEGIN {{ for (k in ENVIRON) print \"env=\" k }}' | sort | head -n {MAX_LINES}\n"
    ));
    for name in programs.iter().filter(|n| !n.chars().any(char::is_control)) {
        s.push_str(&format!(
            "printf 'bin=%s\\t%s\\n' {q} \"$(command -v {q})\"\n",
            q = quote(name)
        ));
    }
    let modules: Vec<String> = modules
        .iter()
        .filter(|m| is_module_name(m))
        .map(|m| quote(m))
        .collect();
    let full = format!("{} {}", quote(PYTHON), modules.join(" "));
    s.push_str(&format!(
        concat!(
            "P=$(command -v python3)\n",
            "p python3.path \"$P\"\n",
            "[ -n \"$P\" ] && \"$P\" -c {full} 2>&1 | head -n {max} | sed 's/^/python3./'\n",
            "Q=$(command -v python)\n",
            "p python.path \"$Q\"\n",
            "if [ -n \"$Q\" ] && [ -n \"$P\" ] && [ \"$Q\" -ef \"$P\" ]; then p python.same_as python3\n",
            "elif [ -n \"$Q\" ] && [ -n \"$P\" ]; then \"$Q\" -c {short} 2>&1 | head -n 20 | sed 's/^/python./'\n",
            "elif [ -n \"$Q\" ]; then \"$Q\" -c {full} 2>&1 | head -n {max} | sed 's/^/python./'; fi\n",
        ),
        full = full,
        short = quote(PYTHON_VERSION),
        max = MAX_LINES,
    ));
    s.push_str(&format!("printf '%s\\n' {}\n", quote(&end(nonce))));
    s
}

/// Reads the probe's block out of everything the command printed. `None`
/// when the begin marker is absent (the probe did not run); a block
/// without its end marker is read as far as it goes.
pub fn parse(output: &str, nonce: &str) -> Option<Environment> {
    let (begin, end) = (begin(nonce), end(nonce));
    let mut lines = output.lines().skip_while(|l| l.trim_end() != begin);
    lines.next()?;
    let mut env = Environment::default();
    let mut stray: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    // `python` is the same file as `python3`: its facts are python3's.
    let mut same_as_python3 = false;
    for line in lines.take_while(|l| l.trim_end() != end) {
        let line = line.trim_end_matches('\r');
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key {
            "os" => env.os = value.into(),
            "arch" => env.arch = value.into(),
            "uid" => env.uid = value.into(),
            "cwd" => env.cwd = value.into(),
            "shell" => env.shell = value.into(),
            "shell_resolved" => env.shell_resolved = opt(value),
            "path" => env.path = value.split(':').map(String::from).collect(),
            "open_files" => env.open_files = value.into(),
            "container" => env.container.push(value.into()),
            "env" if !value.is_empty() => env.env_names.push(value.into()),
            "python.same_as" => same_as_python3 = true,
            "bin" => {
                let (name, found) = value.split_once('\t').unwrap_or((value, ""));
                env.binaries.insert(name.into(), opt(found));
            }
            _ => {
                let (python, which) = if let Some(k) = key.strip_prefix("python3.") {
                    (&mut env.python3, (k, "python3"))
                } else if let Some(k) = key.strip_prefix("python.") {
                    (&mut env.python, (k, "python"))
                } else {
                    continue;
                };
                if !python_fact(python, which.0, value) {
                    let rest = line.split_once('.').map_or(line, |(_, r)| r);
                    let kept = stray.entry(which.1).or_default();
                    if kept.len() < 5 {
                        kept.push(rest.to_string());
                    }
                }
            }
        }
    }
    env.env_names.sort();
    env.env_names.dedup();
    for (which, python) in [("python3", &mut env.python3), ("python", &mut env.python)] {
        if python.path.is_some() && python.version.is_none() {
            let said = stray.remove(which).unwrap_or_default();
            python.error = Some(if said.is_empty() {
                "it is on PATH but reported nothing (it failed to run)".into()
            } else {
                format!("it is on PATH but failed to run: {}", said.join(" | "))
            });
        }
    }
    if same_as_python3 {
        env.python.version = env.python3.version.clone();
        env.python.executable = env.python.path.clone();
        env.python.error = env.python3.error.clone();
    }
    Some(env)
}

/// Reads one `python3.KEY=VALUE` fact; false for a line that is none
/// (what a broken interpreter printed instead).
fn python_fact(python: &mut Python, key: &str, value: &str) -> bool {
    let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
    match key {
        "path" => python.path = opt(value),
        "version" => python.version = opt(value),
        "executable" => python.executable = opt(value),
        "sys_path" => python.sys_path.push(value.into()),
        "dist" => {
            if let Some((name, version)) = value.split_once("==") {
                python.distributions.insert(name.into(), version.into());
            }
        }
        "module" => {
            let mut parts = value.splitn(3, '\t');
            let (Some(name), Some(status), Some(detail)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return false;
            };
            let import = match status {
                "ok" => Import::From(detail.into()),
                _ => Import::Fails(detail.into()),
            };
            python.modules.insert(name.into(), import);
        }
        "done" | "dist_error" => {}
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the probe with `shell` here, as the doctor does locally.
    fn run_with(shell: &str, programs: &[String], modules: &[String]) -> (String, Environment) {
        run_in(&[shell], None, programs, modules)
    }

    /// Runs the probe with `shell…`, with PATH `path` when given.
    fn run_in(
        shell: &[&str],
        path: Option<&str>,
        programs: &[String],
        modules: &[String],
    ) -> (String, Environment) {
        let nonce = "n0nce";
        let mut command = std::process::Command::new(shell[0]);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let out = command
            .args(&shell[1..])
            .arg("-c")
            .arg(script(nonce, programs, modules))
            .env("CCX_PROBE_TEST_SECRET", "s3cr3t-value")
            .output()
            .expect("run /bin/sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let env = parse(&text, nonce).unwrap_or_else(|| panic!("no block in:\n{text}"));
        (text, env)
    }

    #[test]
    fn the_probe_reports_this_machine_and_names_no_value() {
        let (text, env) = run_with(
            "/bin/sh",
            &["sh".into(), "no-such-program-x".into()],
            &["json".into(), "no_such_module_x".into()],
        );
        assert!(!text.contains("s3cr3t-value"));
        assert!(env.env_names.contains(&"CCX_PROBE_TEST_SECRET".to_string()));
        assert_eq!(env.os, "Linux");
        assert_eq!(env.uid, nix::unistd::getuid().as_raw().to_string());
        assert_eq!(env.shell, "/bin/sh");
        assert!(env.binaries["sh"]
            .as_deref()
            .is_some_and(|p| p.ends_with("/sh")));
        assert_eq!(env.binaries["no-such-program-x"], None);
        assert!(!env.open_files.is_empty());
        let py = &env.python3;
        assert!(
            py.version.as_deref().is_some_and(|v| v.starts_with('3')),
            "{py:?}"
        );
        assert!(py.modules["json"].to_string().starts_with("imports from /"));
        assert_eq!(
            py.modules["no_such_module_x"],
            Import::Fails("ModuleNotFoundError: No module named 'no_such_module_x'".into())
        );
        assert!(!py.sys_path.is_empty());
    }

    #[test]
    fn bash_reads_the_probe_as_sh_does() {
        if !std::path::Path::new("/bin/bash").exists() {
            eprintln!("skipped: no /bin/bash");
            return;
        }
        let (_, sh) = run_with("/bin/sh", &["sh".into()], &["json".into()]);
        let (_, bash) = run_with("/bin/bash", &["sh".into()], &["json".into()]);
        assert_eq!(bash.shell, "/bin/bash");
        assert_eq!(
            (&bash.path, &bash.binaries, &bash.python3, &bash.uid),
            (&sh.path, &sh.binaries, &sh.python3, &sh.uid)
        );
    }

    /// ccx's image is FROM scratch with a static busybox as /bin/sh and
    /// nothing else: its applets (awk, head, sed, uname …) must serve.
    #[test]
    fn a_lone_static_busybox_sh_reports_too() {
        let Some(busybox) = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "this test needs busybox (apt-get install busybox-static; .ci/run installs it)"
            );
            eprintln!("skipped: no busybox (apt-get install busybox-static)");
            return;
        };
        let empty = tempfile::tempdir().unwrap();
        let path = empty.path().display().to_string();
        let (text, env) = run_in(&[busybox, "sh"], Some(&path), &["sh".into()], &[]);
        assert_eq!(env.os, "Linux", "{text}");
        assert!(!env.uid.is_empty() && !env.arch.is_empty(), "{text}");
        assert!(env.env_names.contains(&"PATH".to_string()), "{text}");
        assert_eq!(env.python3.path, None);
        assert_eq!(env.path, [path]);
    }

    #[test]
    fn only_the_delimited_block_is_read_and_a_missing_python_is_a_fact() {
        let out = "hook: pre-execute\nenv=NOT_MINE\n@@ccx-probe n begin\nos=Linux\nenv=HOME\npython3.path=\npython.path=/usr/bin/python\npython.Traceback (most recent call last):\n@@ccx-probe n end\nenv=AFTER\n";
        let env = parse(out, "n").unwrap();
        assert_eq!(env.env_names, ["HOME"]);
        assert_eq!(env.python3, Python::default());
        assert_eq!(
            env.python.error.as_deref(),
            Some("it is on PATH but failed to run: Traceback (most recent call last):")
        );
        assert_eq!(parse("no block here\n", "n"), None);
        assert_eq!(parse(out, "other"), None);
    }

    #[test]
    fn the_python_code_fits_in_a_single_quoted_word() {
        assert!(!PYTHON.contains('\''));
    }

    #[test]
    fn module_names_must_be_dotted_identifiers() {
        assert!(is_module_name("cc_executor.core"));
        assert!(!is_module_name("a'; rm -rf /"));
        assert!(!is_module_name("1abc") && !is_module_name("a..b") && !is_module_name(""));
    }
}
