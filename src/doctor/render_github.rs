//! The GitHub Actions view of a [`Report`] (`ccx doctor --format github`):
//! workflow commands (an `::error` per failing step, a `::warning` per
//! warning, the human report folded in a `::group::` with commands off), and the Markdown job
//! summary the CLI appends to `$GITHUB_STEP_SUMMARY`. A renderer only: it
//! reads the report, runs nothing and writes no file.

use std::fmt::Write as _;

use super::render::{human, symbol, Style};
use super::{Report, Status, StepResult};

/// The workflow commands, ending with a newline.
pub fn commands(report: &Report) -> String {
    let mut out = String::new();
    let header = if report.target.is_empty() {
        "ccx doctor".to_string()
    } else {
        format!("ccx doctor · {}", report.target)
    };
    let _ = writeln!(out, "::group::{}", data(&header));
    // The human lines quote what a server printed; a line of it that reads
    // as a workflow command must not run as one, so commands are off
    // around them (the token that turns them back on is new every run).
    let token = format!("ccx-doctor-{}", uuid::Uuid::new_v4().simple());
    let _ = writeln!(out, "::stop-commands::{token}");
    out.push_str(&human(
        report,
        Style {
            color: false,
            verbose: true,
        },
    ));
    let _ = writeln!(out, "::{token}::");
    out.push_str("::endgroup::\n");
    let warnings_fail = !report.ok && report.first_failure().is_none() && report.error.is_none();
    for step in &report.steps {
        let command = match step.status {
            Status::Fail | Status::Timeout => "error",
            Status::Warn if warnings_fail => "error",
            Status::Warn => "warning",
            Status::Pass | Status::Skip => continue,
        };
        let title = format!("ccx doctor: {}", step.id.as_str());
        let _ = writeln!(
            out,
            "::{command} title={}::{}",
            property(&title),
            data(&message(step))
        );
    }
    if let Some(error) = &report.error {
        let _ = writeln!(
            out,
            "::error title={}::{}",
            property("ccx doctor"),
            data(error)
        );
    }
    out
}

/// A step's annotation: summary, detail lines, fix.
fn message(step: &StepResult) -> String {
    let mut text = step.summary.clone();
    for line in &step.detail {
        text.push('\n');
        text.push_str(line);
    }
    if let Some(fix) = &step.fix {
        text.push_str("\nfix: ");
        text.push_str(fix);
    }
    text
}

/// The Markdown job summary: a verdict line, a table of the steps, then
/// the detail and fix of each failing or warning step.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.ok {
        format!("✓ passed ({} of {})", report.passed(), report.steps.len())
    } else {
        format!("✗ failed (exit {})", report.exit_code)
    };
    let _ = writeln!(out, "### ccx doctor: {verdict}\n");
    if !report.target.is_empty() {
        let _ = writeln!(out, "Target: `{}`\n", report.target.replace('`', "'"));
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "**Error:** {}\n", cell(error));
    }
    if !report.steps.is_empty() {
        out.push_str("| | step | summary | ms |\n| --- | --- | --- | ---: |\n");
        for step in &report.steps {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} |",
                symbol(step.status),
                step.id.as_str(),
                cell(&step.summary),
                if step.status == Status::Skip {
                    String::new()
                } else {
                    step.duration_ms.to_string()
                }
            );
        }
        out.push('\n');
    }
    for step in report
        .steps
        .iter()
        .filter(|s| matches!(s.status, Status::Fail | Status::Timeout | Status::Warn))
    {
        let _ = writeln!(
            out,
            "#### `{}`: {}\n",
            step.id.as_str(),
            cell(&step.summary)
        );
        if !step.detail.is_empty() {
            out.push_str("```text\n");
            for line in &step.detail {
                let _ = writeln!(out, "{}", line.replace("```", "'''"));
            }
            out.push_str("```\n\n");
        }
        if let Some(fix) = &step.fix {
            let _ = writeln!(out, "**Fix:** {}\n", cell(fix));
        }
    }
    out
}

/// Text in a Markdown table cell or paragraph: no table break, no HTML.
fn cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('\r', "")
        .replace('\n', "<br>")
}

/// A workflow command's message: `%`, CR and LF escaped, as the Actions
/// toolkit's `escapeData` does.
pub fn data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as [`data`], plus `:` and `,`
/// (the toolkit's `escapeProperty`), which would end the value.
pub fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_properties_are_escaped_as_the_actions_toolkit_does() {
        assert_eq!(data("50%\r\nnext: a,b"), "50%25%0D%0Anext: a,b");
        assert_eq!(property("50%\r\nnext: a,b"), "50%25%0D%0Anext%3A a%2Cb");
        assert_eq!(cell("a|b\n<c>"), "a\\|b<br>&lt;c&gt;");
    }
}
