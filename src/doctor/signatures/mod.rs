//! Known failure signatures: a catalogue kept as data (catalogue.toml) of
//! what a server that fails to start typically prints, what it means and how
//! to fix it, plus the one signature that is not text: death by a signal.
//!
//! The doctor's `spawn` step hands the captured output here; this module
//! knows nothing of processes or the network.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

const CATALOGUE: &str = include_str!("catalogue.toml");
/// Import names whose PyPI distribution is named differently (`yaml` → PyYAML).
const PYTHON_PACKAGES: &str = include_str!("python_packages.toml");

/// Whether a finding explains the failure or only looks alarming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Cause,
    Harmless,
}

/// Which lines a finding quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EvidenceKind {
    #[default]
    Line,
    Traceback,
}

/// One catalogue entry, as written in catalogue.toml.
#[derive(Debug, Clone, Deserialize)]
pub struct Signature {
    pub id: String,
    pub severity: Severity,
    pub pattern: String,
    pub meaning: String,
    pub fix: String,
    pub example: String,
    #[serde(default)]
    evidence: EvidenceKind,
}

#[derive(Deserialize)]
struct CatalogueFile {
    signature: Vec<Signature>,
}

/// A signature found in a server's output (or exit), with what proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub meaning: String,
    pub fix: String,
    /// The lines that matched (or the signal), quoted for the user.
    pub evidence: String,
}

/// What is known about the failed server.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    /// Captured stderr and stdout.
    pub output: &'a str,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The resolved path of the program the server command starts with
    /// (the interpreter, for `python …` commands).
    pub program: Option<String>,
}

/// The parsed catalogue with compiled patterns.
pub fn catalogue() -> &'static [(Signature, Regex)] {
    static PARSED: OnceLock<Vec<(Signature, Regex)>> = OnceLock::new();
    PARSED.get_or_init(|| {
        let Ok(file) = toml::from_str::<CatalogueFile>(CATALOGUE) else {
            return Vec::new(); // the tests prove the shipped catalogue parses
        };
        file.signature
            .into_iter()
            .filter_map(|s| Regex::new(&s.pattern).ok().map(|r| (s, r)))
            .collect()
    })
}

/// Every signature found, in catalogue order (each at most once), then the
/// signal finding.
pub fn diagnose(observed: &Observed) -> Vec<Finding> {
    let lines: Vec<&str> = observed.output.lines().collect();
    let mut findings = Vec::new();
    for (signature, regex) in catalogue() {
        let Some(at) = lines.iter().position(|l| regex.is_match(l)) else {
            continue;
        };
        let mut evidence = match signature.evidence {
            EvidenceKind::Line => lines[at].trim().to_string(),
            EvidenceKind::Traceback => traceback_evidence(&lines[at..]),
        };
        let mut fix = signature.fix.clone();
        if signature.id == "module-not-found" {
            let interpreter = observed.program.as_deref().unwrap_or("(unknown)");
            evidence = format!("{evidence} (the command resolves to {interpreter})");
            fix = fix.replace("INTERPRETER", interpreter);
            if let Some(module) = missing_module(lines[at]) {
                fix = fix.replace("PACKAGE", &distribution_of(&module));
            }
        }
        findings.push(Finding {
            id: signature.id.clone(),
            severity: signature.severity,
            meaning: signature.meaning.clone(),
            fix,
            evidence,
        });
    }
    if let Some(signal) = observed.signal {
        findings.push(signal_finding(signal));
    }
    // Two wordings of one cause (uvicorn's and Rust's) are reported once.
    findings.dedup_by(|a, b| a.meaning == b.meaning);
    findings
}

/// The PyPI distribution that provides top-level module `module`: its own
/// name unless python_packages.toml says otherwise.
pub fn distribution_of(module: &str) -> String {
    static TABLE: OnceLock<std::collections::BTreeMap<String, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| toml::from_str(PYTHON_PACKAGES).unwrap_or_default())
        .get(module)
        .cloned()
        .unwrap_or_else(|| module.to_string())
}

/// The top-level package of `No module named 'a.b'` (`a`).
fn missing_module(line: &str) -> Option<String> {
    let name = line.split("No module named '").nth(1)?.split('\'').next()?;
    let top = name.split('.').next()?;
    (!top.is_empty()).then(|| top.to_string())
}

/// The exception line (the traceback's last line) and the innermost frame.
fn traceback_evidence(from_header: &[&str]) -> String {
    let body: Vec<&str> = from_header
        .iter()
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t') || l.trim().is_empty())
        .copied()
        .collect();
    let exception = from_header
        .get(body.len() + 1)
        .map(|l| l.trim())
        .unwrap_or("(the traceback was cut off)");
    let innermost = body
        .iter()
        .rev()
        .find(|l| l.trim_start().starts_with("File \""))
        .map(|l| l.trim());
    match innermost {
        Some(frame) => format!("{exception} — innermost frame: {frame}"),
        None => exception.to_string(),
    }
}

fn signal_finding(signal: i32) -> Finding {
    let name = nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"));
    let (meaning, fix) = match signal {
        9 => (
            "killed by SIGKILL: often the kernel's OOM killer (out of memory), or a supervisor that gave up waiting",
            "check the kernel log: `dmesg | grep -i -E 'killed process|out of memory'` (or `journalctl -k`); for Docker, `docker inspect --format '{{.State.OOMKilled}}' CONTAINER`; give it more memory",
        ),
        11 => (
            "crashed with a segmentation fault (a bug or a broken native extension)",
            "run it by hand to reproduce; check native dependencies were built for this machine",
        ),
        6 => ("aborted (an assertion or a fatal runtime error)", "read the last lines it printed; run it by hand to reproduce"),
        15 | 2 | 1 => (
            "stopped by a termination signal sent by someone else (a supervisor, a terminal, a script)",
            "find who sent it (a process manager's stop, a closed terminal) and start the server detached",
        ),
        _ => ("killed by a signal", "run it by hand to see whether it is reproducible"),
    };
    Finding {
        id: "killed-by-signal".into(),
        severity: Severity::Cause,
        meaning: meaning.into(),
        fix: fix.into(),
        evidence: format!("the process was killed by {name} ({signal})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(output: &str) -> Vec<String> {
        diagnose(&Observed {
            output,
            ..Default::default()
        })
        .into_iter()
        .map(|f| f.id)
        .collect()
    }

    #[test]
    fn shipped_catalogue_parses_and_every_example_matches_its_own_pattern() {
        let parsed: CatalogueFile = toml::from_str(CATALOGUE).expect("catalogue.toml parses");
        assert_eq!(
            catalogue().len(),
            parsed.signature.len(),
            "every pattern compiles"
        );
        for (signature, regex) in catalogue() {
            assert!(
                regex.is_match(&signature.example),
                "{}: example does not match",
                signature.id
            );
            assert!(
                ids(&signature.example).contains(&signature.id),
                "{}",
                signature.id
            );
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (s, _) in catalogue() {
            assert!(seen.insert(&s.id), "duplicate id {}", s.id);
        }
    }

    #[test]
    fn traceback_shows_last_line_and_innermost_frame() {
        let output = "starting\nTraceback (most recent call last):\n  File \"/app/main.py\", line 3, in <module>\n    run()\n  File \"/app/server.py\", line 42, in run\n    raise ValueError('bad config')\nValueError: bad config\n";
        let f = diagnose(&Observed {
            output,
            ..Default::default()
        });
        let tb = f.iter().find(|f| f.id == "python-traceback").unwrap();
        assert_eq!(
            tb.evidence,
            "ValueError: bad config — innermost frame: File \"/app/server.py\", line 42, in run"
        );
    }

    #[test]
    fn module_not_found_names_the_interpreter() {
        let f = diagnose(&Observed {
            output: "ModuleNotFoundError: No module named 'fastapi'",
            program: Some("/usr/bin/python3.11".into()),
            ..Default::default()
        });
        assert!(f[0].evidence.contains("/usr/bin/python3.11"));
        assert!(f[0]
            .fix
            .contains("/usr/bin/python3.11 -m pip install fastapi"));
        let f = diagnose(&Observed {
            output: "ModuleNotFoundError: No module named 'cc_executor.core'",
            ..Default::default()
        });
        assert!(f[0].fix.contains("(unknown) -m pip install cc_executor"));
    }

    #[test]
    fn module_not_found_names_the_distribution_when_it_differs() {
        for (module, package) in [
            ("yaml", "PyYAML"),
            ("cv2", "opencv-python"),
            ("PIL.Image", "Pillow"),
        ] {
            let f = diagnose(&Observed {
                output: &format!("ModuleNotFoundError: No module named '{module}'"),
                program: Some("python3".into()),
                ..Default::default()
            });
            assert!(
                f[0].fix
                    .contains(&format!("python3 -m pip install {package}")),
                "{module}: {}",
                f[0].fix
            );
        }
    }

    #[test]
    fn the_python_package_table_parses() {
        let table: std::collections::BTreeMap<String, String> =
            toml::from_str(PYTHON_PACKAGES).expect("python_packages.toml");
        assert!(table.len() > 10);
    }

    #[test]
    fn sigkill_points_at_the_oom_killer() {
        let f = diagnose(&Observed {
            signal: Some(9),
            ..Default::default()
        });
        assert!(f[0].evidence.contains("SIGKILL"));
        assert!(f[0].meaning.contains("OOM"));
    }

    #[test]
    fn the_runtime_warning_is_marked_harmless() {
        let (s, _) = catalogue()
            .iter()
            .find(|(s, _)| s.id == "sys-modules-runtime-warning")
            .unwrap();
        let f = diagnose(&Observed {
            output: &s.example,
            ..Default::default()
        });
        assert_eq!(f[0].severity, Severity::Harmless);
    }

    #[test]
    fn uvicorn_and_rust_wordings_of_a_busy_port_are_one_finding() {
        let found = ids("ERROR:    [Errno 98] address already in use\nError: Os { code: 98, kind: AddrInUse, message: \"Address in use\" }");
        assert_eq!(found, ["address-in-use"]);
    }

    #[test]
    fn clean_output_has_no_findings() {
        assert!(ids("INFO: Uvicorn running on http://127.0.0.1:8003\n").is_empty());
    }
}
