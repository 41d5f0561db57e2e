//! The `spawn` step's verdict on a launcher that detached its server and
//! exited, when that server then died before it was ready: which process
//! died (pid, argv, directory), how, where its output went (the doctor's
//! pipe, a log file and its new lines, /dev/null, a pipe nobody reads),
//! and, when that output was lost, what a re-run of the same argv in the
//! foreground printed, said as such. The findings come from that output,
//! read as the spawn step reads a server's own.

use std::process::ExitStatus;

use super::spawn::{describe_status, finding_line, findings_in, short_tail, top_fix};
use super::Outcome;
use crate::doctor::detached::{rerun, Descendant, RERUN_LIMIT};
use crate::doctor::human_duration;
use crate::doctor::server::ServerProcess;

/// The outcome for a server its launcher (exit `status`) left behind and
/// that died.
pub async fn died(
    server: &mut ServerProcess,
    status: &std::io::Result<ExitStatus>,
    what: &str,
) -> Outcome {
    let Some(detached) = server.detached.as_ref() else {
        return Outcome::fail("the server command's processes were not followed");
    };
    let dead: Vec<Descendant> = detached.died().into_iter().cloned().collect();
    let captured = detached.captured.clone();
    let dead_pids: Vec<u32> = dead.iter().map(|d| d.pid).collect();
    let launcher = describe_status(status);
    let mut detail = vec![format!("command: {what}: the launcher {launcher}")];
    for line in server.stderr().last_lines(5) {
        detail.push(format!("launcher stderr: {line}"));
    }
    let mut findings = Vec::new();
    let mut last_words: Option<String> = None;
    for d in &dead {
        let ended = d.ended.map(|e| e.to_string()).unwrap_or_default();
        detail.push(format!(
            "left behind: pid {} `{}` in {}: it {ended}",
            d.pid,
            d.argv.join(" "),
            d.cwd
                .as_ref()
                .map(|c| c.display().to_string())
                .unwrap_or_else(|| "an unknown directory".into())
        ));
        let mut output = String::new();
        let mut lost = false;
        for n in 0..2 {
            let fate = d.fate(n, &captured, &dead_pids);
            detail.push(format!("  {}", fate.description));
            for line in &fate.lines {
                detail.push(format!("  log: {line}"));
                output.push_str(line);
                output.push('\n');
            }
            lost |= fate.lost;
        }
        if lost && output.is_empty() {
            match rerun(d, RERUN_LIMIT).await {
                Ok(re) => {
                    let how = match re.ended {
                        Some(s) => describe_status(&Ok(s)),
                        None => format!(
                            "was still running after {} and was stopped (in the foreground it may start: then detaching is what fails)",
                            human_duration(RERUN_LIMIT)
                        ),
                    };
                    detail.push(format!(
                        "its output was lost, so the doctor re-ran `{}` in the foreground (same directory and environment): it {how}",
                        d.argv.join(" ")
                    ));
                    let lines: Vec<&str> =
                        re.output.lines().filter(|l| !l.trim().is_empty()).collect();
                    for line in &lines[lines.len().saturating_sub(15)..] {
                        detail.push(format!("  re-run: {line}"));
                    }
                    output = re.output;
                }
                Err(e) => detail.push(format!(
                    "its output was lost, and re-running it failed: {e}"
                )),
            }
        } else {
            // Its output reached the doctor's own pipe: it is in the
            // launcher's captured text.
            output.push_str(&server.stderr().text());
            output.push_str(&server.stdout().text());
        }
        if let Some(last) = output.lines().rev().find(|l| !l.trim().is_empty()) {
            last_words.get_or_insert_with(|| short_tail(last));
        }
        let cmd = shell_words::join(&d.argv);
        let base = d.cwd.clone().unwrap_or_default();
        let signal = match d.ended {
            Some(crate::doctor::detached::Ended::Signaled(sig)) => Some(sig),
            _ => None,
        };
        findings.extend(findings_in(
            &output,
            signal,
            d.argv.first().map(String::as_str),
            Some(&cmd),
            &base,
        ));
    }
    let top = top_fix(&findings);
    detail.extend(findings.iter().map(|f| finding_line(f, top.as_deref())));
    let first = &dead[0];
    let summary = format!(
        "the launcher {launcher} and left pid {} (`{}`) running, which {} before it was ready{}",
        first.pid,
        short_tail(&first.argv.join(" ")),
        first.ended.map(|e| e.to_string()).unwrap_or_default(),
        last_words.map(|l| format!(": {l}")).unwrap_or_default()
    );
    Outcome::fail(summary)
        .detail(detail)
        .findings(findings)
        .fix(top.unwrap_or_else(|| {
            "fix the error the detached server printed (above); have the launcher send the server's stderr to a file, or read its pipes, so the next failure is not lost".into()
        }))
}
