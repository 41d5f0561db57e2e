//! Renderers of a [`Report`]: human text (one line per step, details and
//! fix hints under failing or warning steps, or under every step with
//! `-v`, a final verdict line) and JSON (the serde document itself). Both
//! read the same data; neither runs a check.

use owo_colors::OwoColorize;

pub use super::render_compare::{compare_human, compare_json};
#[cfg(test)]
use super::StepResult;
use super::{Report, Severity, Status};

/// The symbol of a status, readable without colour.
pub fn symbol(status: Status) -> &'static str {
    match status {
        Status::Pass => "✓",
        Status::Warn => "!",
        Status::Fail => "✗",
        Status::Timeout => "⧖",
        Status::Skip => "-",
    }
}

/// How to render human text.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    pub verbose: bool,
}

/// The human report, ending with a newline.
pub fn human(report: &Report, style: Style) -> String {
    let mut out = String::new();
    let paint = |text: &str, status: Status| -> String {
        if !style.color {
            return text.to_string();
        }
        match status {
            Status::Pass => text.green().to_string(),
            Status::Warn => text.yellow().to_string(),
            Status::Fail | Status::Timeout => text.red().bold().to_string(),
            Status::Skip => text.dimmed().to_string(),
        }
    };
    let dim = |text: &str| -> String {
        if style.color {
            text.dimmed().to_string()
        } else {
            text.to_string()
        }
    };
    let header = if report.target.is_empty() {
        "ccx doctor".to_string()
    } else {
        format!("ccx doctor · {}", report.target)
    };
    out.push_str(&header);
    out.push('\n');
    let width = report
        .steps
        .iter()
        .map(|s| s.id.as_str().len())
        .max()
        .unwrap_or(0);
    for step in &report.steps {
        let marker = paint(&format!("[{}]", symbol(step.status)), step.status);
        let duration = if step.status == Status::Skip {
            String::new()
        } else {
            dim(&format!(" ({} ms)", step.duration_ms))
        };
        out.push_str(&format!(
            "{marker} {:width$}  {}{duration}\n",
            step.id.as_str(),
            step.summary,
        ));
        let show =
            style.verbose || matches!(step.status, Status::Warn | Status::Fail | Status::Timeout);
        if show {
            for line in &step.detail {
                out.push_str(&format!("      {}\n", dim(line)));
            }
            if let Some(fix) = &step.fix {
                out.push_str(&format!("      {} {fix}\n", paint("fix:", step.status)));
            }
        } else {
            // A passing step's findings (a harmless warning the server
            // printed) are shown even without -v: the user saw that
            // warning and wonders whether it matters.
            for f in &step.findings {
                let kind = match f.severity {
                    Severity::Harmless => "harmless",
                    Severity::Cause => "seen, but not fatal here",
                };
                out.push_str(&format!(
                    "      {} [{}] {kind}: {}\n",
                    paint("note:", Status::Warn),
                    f.id,
                    f.meaning
                ));
            }
        }
    }
    if !report.ended.is_empty() {
        out.push_str(&format!(
            "the doctor ended what the server command left running: {}\n",
            report.ended.join(", ")
        ));
    }
    out.push_str(&verdict(report, &paint));
    out.push('\n');
    out
}

fn verdict(report: &Report, paint: &dyn Fn(&str, Status) -> String) -> String {
    let total = report.steps.len();
    let passed = report.passed();
    let warned = report
        .steps
        .iter()
        .filter(|s| s.status == Status::Warn)
        .count();
    if let Some(error) = &report.error {
        if report.steps.is_empty() {
            return paint(&format!("the doctor could not run: {error}"), Status::Fail);
        }
    }
    if let Some(failed) = report.first_failure() {
        let what = if failed.status == Status::Timeout {
            "timed out"
        } else {
            "failed"
        };
        let skipped = report
            .steps
            .iter()
            .filter(|s| s.status == Status::Skip)
            .count();
        return paint(
            &format!(
                "`{}` {what}: {passed} of {total} checks passed, {skipped} skipped (exit {})",
                failed.id.as_str(),
                report.exit_code
            ),
            Status::Fail,
        );
    }
    let warnings = match warned {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    };
    let status = if !report.ok {
        Status::Fail
    } else if warned > 0 {
        Status::Warn
    } else {
        Status::Pass
    };
    let strict = if !report.ok && warned > 0 {
        " (--strict: warnings fail)"
    } else {
        ""
    };
    // Steps skipped without a failure did not apply (a running server
    // named with --url has no local configuration, binary or port).
    let skipped = report
        .steps
        .iter()
        .filter(|s| s.status == Status::Skip)
        .count();
    let applied = match skipped {
        0 => String::new(),
        n => format!(" ({n} did not apply)"),
    };
    paint(
        &format!(
            "{passed} of {} checks passed{applied}{warnings} in {} ms{strict}",
            total - skipped,
            report.duration_ms
        ),
        status,
    )
}

/// The JSON document, pretty-printed, ending with a newline.
pub fn json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        format!(
            "{{\"schema_version\":{},\"error\":\"cannot serialise the report: {e}\"}}",
            super::SCHEMA_VERSION
        )
    });
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::{StepId, SCHEMA_VERSION};

    fn step(id: StepId, status: Status, summary: &str, fix: Option<&str>) -> StepResult {
        StepResult {
            id,
            title: id.title().into(),
            status,
            summary: summary.into(),
            detail: vec![format!("detail of {}", id.as_str())],
            fix: fix.map(String::from),
            duration_ms: 7,
            findings: Vec::new(),
        }
    }

    fn report(steps: Vec<StepResult>, exit_code: u8) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            ccx_version: "0.1.0".into(),
            target: "ws://127.0.0.1:8003/ws/mcp".into(),
            ok: exit_code == 0,
            exit_code,
            steps,
            duration_ms: 42,
            error: None,
            server: None,
            ended: Vec::new(),
        }
    }

    #[test]
    fn failing_report_shows_symbols_details_under_problems_only_and_the_failed_step() {
        let r = report(
            vec![
                step(
                    StepId::Config,
                    Status::Warn,
                    "CCX_PROT: did you mean CCX_PORT?",
                    Some("rename it"),
                ),
                step(StepId::Binaries, Status::Pass, "2 found", None),
                step(StepId::Port, Status::Pass, "free", None),
                step(
                    StepId::Spawn,
                    Status::Timeout,
                    "not ready within 1s",
                    Some("raise --spawn-timeout"),
                ),
                step(
                    StepId::Handshake,
                    Status::Skip,
                    "skipped because `spawn` failed",
                    None,
                ),
                step(
                    StepId::Echo,
                    Status::Skip,
                    "skipped because `spawn` failed",
                    None,
                ),
            ],
            1,
        );
        let text = human(
            &r,
            Style {
                color: false,
                verbose: false,
            },
        );
        let expected = "\
ccx doctor · ws://127.0.0.1:8003/ws/mcp
[!] config     CCX_PROT: did you mean CCX_PORT? (7 ms)
      detail of config
      fix: rename it
[✓] binaries   2 found (7 ms)
[✓] port       free (7 ms)
[⧖] spawn      not ready within 1s (7 ms)
      detail of spawn
      fix: raise --spawn-timeout
[-] handshake  skipped because `spawn` failed
[-] echo       skipped because `spawn` failed
`spawn` timed out: 2 of 6 checks passed, 2 skipped (exit 1)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn passing_report_ends_with_n_of_6_and_verbose_shows_every_detail() {
        let steps = StepId::ALL
            .iter()
            .map(|&id| step(id, Status::Pass, "ok", None))
            .collect();
        let r = report(steps, 0);
        let text = human(
            &r,
            Style {
                color: false,
                verbose: true,
            },
        );
        assert!(text.ends_with("6 of 6 checks passed in 42 ms\n"), "{text}");
        assert_eq!(text.matches("      detail of ").count(), 6);
        let coloured = human(
            &r,
            Style {
                color: true,
                verbose: false,
            },
        );
        assert!(coloured.contains("\u{1b}["));
    }

    #[test]
    fn a_passing_step_shows_its_findings_as_notes_without_verbose() {
        let mut spawn = step(StepId::Spawn, Status::Pass, "ready", None);
        spawn.findings.push(crate::doctor::signatures::Finding {
            id: "sys-modules-runtime-warning".into(),
            severity: Severity::Harmless,
            meaning: "a warning, usually not the cause".into(),
            fix: "ignore it".into(),
            evidence: "RuntimeWarning: …".into(),
        });
        let r = report(vec![spawn], 0);
        let text = human(
            &r,
            Style {
                color: false,
                verbose: false,
            },
        );
        assert!(
            text.contains(
                "      note: [sys-modules-runtime-warning] harmless: a warning, usually not the cause\n"
            ),
            "{text}"
        );
        assert!(!text.contains("detail of spawn"), "{text}");
        let back: Report = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn json_round_trips_through_the_serde_types() {
        let r = report(
            vec![step(StepId::Config, Status::Fail, "bad", Some("fix it"))],
            1,
        );
        let back: Report = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["steps"][0]["status"], "fail");
        assert_eq!(v["steps"][0]["id"], "config");
    }
}
