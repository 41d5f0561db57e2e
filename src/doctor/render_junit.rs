//! The JUnit XML view of a [`Report`] (`ccx doctor --format junit`), in the
//! shape Jenkins, GitLab and GitHub test reporters read: one `<testsuite>`,
//! a `<testcase>` per step, a `<failure>` (summary, detail, fix) for a
//! failing step, `<skipped>` for a skipped one. A renderer only: it reads
//! the report and runs nothing.

use std::fmt::Write as _;

use super::{Report, Status, StepResult};

/// The `classname` of every test case: the suite's name as reporters group it.
const CLASSNAME: &str = "ccx.doctor";

/// The JUnit XML document, ending with a newline.
pub fn junit(report: &Report) -> String {
    // With --strict a warning fails the run: the report is not ok although
    // no step failed, so the warnings are what failed.
    let warnings_fail = !report.ok && report.first_failure().is_none() && report.error.is_none();
    let failed =
        |s: &StepResult| s.status.is_failure() || (warnings_fail && s.status == Status::Warn);
    let tests = report.steps.len() + usize::from(report.error.is_some());
    let failures = report.steps.iter().filter(|s| failed(s)).count();
    let errors = usize::from(report.error.is_some());
    let skipped = report
        .steps
        .iter()
        .filter(|s| s.status == Status::Skip)
        .count();
    let time = seconds(report.duration_ms);
    let counts = format!(
        "tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\""
    );

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"ccx doctor\" {counts}>");
    let _ = writeln!(out, "  <testsuite name=\"ccx doctor\" {counts}>");
    out.push_str("    <properties>\n");
    for (name, value) in [
        ("target", report.target.as_str()),
        ("ccx_version", report.ccx_version.as_str()),
        ("exit_code", &report.exit_code.to_string()),
    ] {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            attr(value)
        );
    }
    out.push_str("    </properties>\n");
    for step in &report.steps {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{CLASSNAME}\" time=\"{}\"",
            attr(step.id.as_str()),
            seconds(step.duration_ms)
        );
        if step.status == Status::Skip {
            let _ = writeln!(out, ">");
            let _ = writeln!(out, "      <skipped message=\"{}\"/>", attr(&step.summary));
        } else if failed(step) {
            let kind = match step.status {
                Status::Timeout => "timeout",
                Status::Warn => "warning",
                _ => "fail",
            };
            let _ = writeln!(out, ">");
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"{kind}\">{}</failure>",
                attr(&step.summary),
                text(&body(step))
            );
        } else {
            // Passing steps keep their detail (resolved paths, the server's
            // name) and a warning its fix, where a reader of the log finds them.
            let body = body(step);
            let _ = writeln!(out, ">");
            let _ = writeln!(out, "      <system-out>{}</system-out>", text(&body));
        }
        out.push_str("    </testcase>\n");
    }
    if let Some(error) = &report.error {
        let _ = writeln!(
            out,
            "    <testcase name=\"doctor\" classname=\"{CLASSNAME}\" time=\"{time}\">"
        );
        let _ = writeln!(
            out,
            "      <error message=\"{}\" type=\"doctor\">{}</error>",
            attr(error),
            text(error)
        );
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// A step as text: its title, status and summary, the detail lines, the
/// fix and any finding.
fn body(step: &StepResult) -> String {
    let mut body = format!(
        "{} ({}): {}\n",
        step.title,
        status_word(step.status),
        step.summary
    );
    for line in &step.detail {
        let _ = writeln!(body, "  {line}");
    }
    if let Some(fix) = &step.fix {
        let _ = writeln!(body, "fix: {fix}");
    }
    for f in &step.findings {
        let _ = writeln!(body, "finding [{}]: {} (fix: {})", f.id, f.meaning, f.fix);
    }
    body
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Warn => "warning",
        Status::Fail => "fail",
        Status::Timeout => "timeout",
        Status::Skip => "skipped",
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Character data: markup escaped, and characters XML 1.0 cannot carry at
/// all (a server's stderr may hold ANSI escapes) written out as `\u{1b}`.
fn text(s: &str) -> String {
    crate::sanitize::escape_markup(s, |c, out| {
        if allowed_in_xml(c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    })
}

/// An attribute value (double-quoted): as [`text`], plus quotes, and line
/// breaks and tabs as character references so a parser keeps them.
fn attr(s: &str) -> String {
    text(s)
        .replace('"', "&quot;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

/// XML 1.0's `Char` production.
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::{StepId, SCHEMA_VERSION};

    fn report(status: Status, ok: bool, error: Option<&str>) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            ccx_version: "0.1.0".into(),
            target: "ws://127.0.0.1:8003/ws/mcp".into(),
            ok,
            exit_code: if ok { 0 } else { 1 },
            steps: vec![StepResult {
                id: StepId::Config,
                title: StepId::Config.title().into(),
                status,
                summary: "unknown variable CCX_PROT".into(),
                detail: vec!["did you mean CCX_PORT?".into()],
                fix: Some("rename it".into()),
                duration_ms: 3,
                findings: Vec::new(),
            }],
            duration_ms: 5,
            error: error.map(String::from),
            server: None,
            ended: Vec::new(),
        }
    }

    #[test]
    fn a_warning_passes_unless_strict_made_it_fail_and_an_interruption_is_an_error() {
        let lenient = junit(&report(Status::Warn, true, None));
        assert!(!lenient.contains("<failure"), "{lenient}");
        assert!(
            lenient.contains("<system-out>configuration (warning)"),
            "{lenient}"
        );
        let strict = junit(&report(Status::Warn, false, None));
        assert!(
            strict.contains("<failure message=\"unknown variable CCX_PROT\" type=\"warning\">"),
            "{strict}"
        );
        assert!(strict.contains("failures=\"1\" errors=\"0\""), "{strict}");
        let interrupted = junit(&report(Status::Skip, false, Some("interrupted by SIGINT")));
        assert!(
            interrupted.contains("<testcase name=\"doctor\"")
                && interrupted.contains("<error message=\"interrupted by SIGINT\""),
            "{interrupted}"
        );
        assert!(
            interrupted.contains("tests=\"2\" failures=\"0\" errors=\"1\" skipped=\"1\""),
            "{interrupted}"
        );
    }

    #[test]
    fn markup_and_characters_xml_cannot_carry_are_escaped() {
        assert_eq!(text("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(text("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(attr("say \"hi\"\nnow"), "say &quot;hi&quot;&#10;now");
        assert_eq!(seconds(1234), "1.234");
        assert_eq!(seconds(7), "0.007");
    }
}
