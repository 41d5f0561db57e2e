//! The renderers of a `--compare` report ([`CompareReport`]): human text
//! (each side's checks as [`super::render::human`] renders them, then the
//! differences, most likely culprits first, then a verdict) and JSON.

use owo_colors::OwoColorize;

use super::compare::{CompareReport, Side};
use super::render::{human, Style};
use super::Status;
use crate::doctor::fingerprint::{Environment, Source};
use crate::protocol::ServerInfo;

/// The human form of `--compare`: each side's checks (as `human` renders
/// them), then the differences, most likely culprits first, then a verdict.
pub fn compare_human(report: &CompareReport, style: Style) -> String {
    let paint = |text: &str, status: Status| -> String {
        match (style.color, status) {
            (false, _) => text.to_string(),
            (true, Status::Pass) => text.green().to_string(),
            (true, Status::Warn) => text.yellow().to_string(),
            (true, _) => text.red().bold().to_string(),
        }
    };
    let bold = |text: &str| -> String {
        if style.color {
            text.bold().to_string()
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    for side in &report.sides {
        out.push_str(&bold(&format!("side {}", side.label())));
        out.push('\n');
        out.push_str(&human(&side.report, style));
        match (&side.info, &side.info_error) {
            (Some(info), _) => out.push_str(&format!("server.info: {}\n", fingerprint_line(info))),
            (None, Some(e)) => out.push_str(&format!("server.info: {e}\n")),
            (None, None) => {}
        }
        match (&side.environment, &side.environment_error) {
            (Some(env), _) => out.push_str(&format!("environment: {}\n", environment_line(env))),
            (None, Some(e)) => out.push_str(&format!("environment: {e}\n")),
            (None, None) => {}
        }
        out.push('\n');
    }
    let names: Vec<String> = report.sides.iter().map(Side::label).collect();
    if report.compared {
        if report.differences.is_empty() {
            out.push_str(&format!(
                "no difference that could matter between {}: they match in everything compared (pid, hostname and CCX_*/WS_* variable names aside)\n",
                names.join(" and ")
            ));
        } else {
            out.push_str(&bold(&format!(
                "differences between {}, most likely culprits first:",
                names.join(" and ")
            )));
            out.push('\n');
            for d in &report.differences {
                out.push_str(&format!("  {}\n", paint(&d.field, Status::Warn)));
                out.push_str(&format!("      A: {}\n", d.a));
                out.push_str(&format!("      B: {}\n", d.b));
                out.push_str(&format!("      why: {}\n", d.why));
            }
        }
    }
    for what in &report.not_compared {
        out.push_str(&format!("not compared: {what}\n"));
    }
    let count = match report.differences.len() {
        _ if !report.compared => "not compared".to_string(),
        1 => "1 difference".to_string(),
        n => format!("{n} differences"),
    };
    let verdict = if report.ok {
        paint(
            &format!("both sides pass; {count} (exit 0)"),
            if report.differences.is_empty() {
                Status::Pass
            } else {
                Status::Warn
            },
        )
    } else {
        let failed: Vec<&str> = report
            .sides
            .iter()
            .filter(|s| !s.report.ok || s.environment.is_none())
            .map(|s| s.name.as_str())
            .collect();
        let what = match &report.error {
            Some(e) => e.clone(),
            None => format!("side {} failed", failed.join(" and side ")),
        };
        paint(
            &format!("{what}; {count} (exit {})", report.exit_code),
            Status::Fail,
        )
    };
    out.push_str(&verdict);
    out.push('\n');
    out
}

/// A fingerprint in one line: version, platform, identity, shell, and where
/// each `--require` name resolves.
fn fingerprint_line(info: &ServerInfo) -> String {
    let shell = info.shell_resolved.as_deref().unwrap_or("not found");
    let mut line = format!(
        "ccx {} on {} {} ({}), uid {}, shell {} → {shell}",
        info.ccx_version, info.os, info.kernel, info.arch, info.uid, info.shell
    );
    for (name, path) in &info.binaries {
        line.push_str(&format!(
            ", {name} → {}",
            path.as_deref().unwrap_or("not found")
        ));
    }
    line
}

/// What a command sees on a side, in one line: how the probe ran, the
/// platform, the shell, the Python and each checked module.
fn environment_line(env: &Environment) -> String {
    let how = match env.source {
        Some(Source::Local) => {
            "taken here (the local server did not start), in its command's cwd and environment"
        }
        _ => "taken through `execute`",
    };
    let mut line = format!(
        "{how}: {} {}, uid {}, cwd {}, shell {} → {}",
        env.os,
        env.arch,
        env.uid,
        env.cwd,
        env.shell,
        env.shell_resolved.as_deref().unwrap_or("not found")
    );
    for (name, python) in [("python3", &env.python3), ("python", &env.python)] {
        match (&python.path, &python.version, &python.error) {
            (None, _, _) => line.push_str(&format!(", no {name}")),
            (Some(path), Some(version), _) => {
                line.push_str(&format!(", {name} {version} ({path})"));
                if !python.distributions.is_empty() {
                    line.push_str(&format!(", {} distributions", python.distributions.len()));
                }
            }
            (Some(path), None, error) => line.push_str(&format!(
                ", {name} ({path}): {}",
                error.as_deref().unwrap_or("did not report")
            )),
        }
        for (module, import) in &python.modules {
            line.push_str(&format!(", {module}: {import}"));
        }
    }
    line
}

/// The `--compare --json` document, pretty-printed, ending with a newline.
pub fn compare_json(report: &CompareReport) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        format!(
            "{{\"schema_version\":{},\"error\":\"cannot serialise the report: {e}\"}}",
            super::compare::COMPARE_SCHEMA_VERSION
        )
    });
    text.push('\n');
    text
}
