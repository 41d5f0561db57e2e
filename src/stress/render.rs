//! The stress report as a human table: one column per target side by side,
//! or, from [`ROWS_FROM_TARGETS`] targets on, a row each and a total. It
//! only reads the report; no I/O.

use std::fmt::Write as _;

use owo_colors::OwoColorize;

use super::report::*;

/// The human report: one column per target, side by side.
pub fn render_human(report: &StressReport, color: bool) -> String {
    let mut out = String::new();
    let s = &report.settings;
    let load = match (s.requests_per_client, s.duration_s) {
        (Some(r), Some(d)) => format!("{r} requests per client, at most {d} s"),
        (Some(r), None) => format!("{r} requests per client"),
        (None, Some(d)) => format!("for {d} s"),
        (None, None) => String::new(),
    };
    let workload = match &s.workload_detail {
        Some(detail) => format!("{} ({detail})", s.workload),
        None => s.workload.clone(),
    };
    let _ = writeln!(
        out,
        "ccx stress: {} clients × {load}, {} mode, workload {workload}, per-request timeout {} s",
        s.clients, s.mode, s.timeout_s
    );
    let _ = writeln!(out);

    let has_failures = report.targets.iter().any(|t| !t.failures.is_empty());
    if report.targets.len() >= ROWS_FROM_TARGETS {
        render_rows(report, color, &mut out);
    } else {
        render_columns(report, color, &mut out);
    }
    if has_failures {
        let _ = writeln!(out);
        let _ = writeln!(out, "examples");
        for t in &report.targets {
            for f in &t.failures {
                let case = f.case_suffix();
                let _ = writeln!(
                    out,
                    "  {} {}{case}: {}",
                    t.target,
                    f.cause.label(),
                    f.example
                );
            }
        }
    }
    let case_failures: Vec<_> = report
        .targets
        .iter()
        .flat_map(|t| t.cases.iter().map(move |c| (t, c)))
        .filter(|(_, c)| c.successes < c.attempts)
        .collect();
    if !case_failures.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "failing cases");
        for (t, c) in case_failures {
            let causes = c
                .failures
                .iter()
                .map(|(cause, n)| format!("{} {n}", cause.label()))
                .collect::<Vec<_>>()
                .join(", ");
            let patterns = if c.missing_patterns.is_empty() {
                String::new()
            } else {
                format!(
                    "; pattern not found: {}",
                    c.missing_patterns
                        .iter()
                        .map(|p| format!("{p:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let _ = writeln!(
                out,
                "  {} {} ({}): {}/{} passed; {causes}{patterns}",
                t.target, c.id, c.name, c.successes, c.attempts
            );
        }
    }
    let _ = writeln!(out);
    let verdict = if report.passed {
        format!(
            "every target met the minimum success rate of {} %",
            s.min_success_percent
        )
    } else {
        format!(
            "{} of {} targets below the minimum success rate of {} %",
            report.targets.iter().filter(|t| !t.met_min_success).count(),
            report.targets.len(),
            s.min_success_percent
        )
    };
    let _ = writeln!(out, "{verdict}");
    out
}

/// Up to two targets (local vs Docker, server vs `--direct`) read best side
/// by side, a column each; from three on, a fleet reads best a row each.
fn render_columns(report: &StressReport, color: bool, out: &mut String) {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let col =
        |f: &dyn Fn(&TargetReport) -> String| report.targets.iter().map(f).collect::<Vec<_>>();
    rows.push(("target".into(), col(&|t| t.target.clone())));
    rows.push(("attempts".into(), col(&|t| t.attempts.to_string())));
    rows.push(("successes".into(), col(&|t| t.successes.to_string())));
    rows.push((
        "success rate".into(),
        col(&|t| {
            let mark = if t.met_min_success { "✓" } else { "✗" };
            format!("{mark} {:.1} %", t.success_percent)
        }),
    ));
    rows.push(("elapsed".into(), col(&|t| format!("{:.2} s", t.elapsed_s))));
    rows.push((
        "throughput".into(),
        col(&|t| format!("{:.1} req/s", t.throughput_rps)),
    ));
    for (name, pick) in [
        ("latency p50", (|l: &Latency| l.p50) as fn(&Latency) -> f64),
        ("latency p90", |l| l.p90),
        ("latency p99", |l| l.p99),
        ("latency max", |l| l.max),
    ] {
        rows.push((
            name.into(),
            col(&|t| match &t.latency_ms {
                Some(l) => format!("{:.2} ms", pick(l)),
                None => "-".into(),
            }),
        ));
    }
    for cause in Cause::ALL {
        if report
            .targets
            .iter()
            .any(|t| t.failures.iter().any(|f| f.cause == cause))
        {
            rows.push((
                format!("  {}", cause.label()),
                col(&|t| {
                    t.failures
                        .iter()
                        .find(|f| f.cause == cause)
                        .map(|f| f.count.to_string())
                        .unwrap_or_else(|| "-".into())
                }),
            ));
        }
    }
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let widths: Vec<usize> = (0..report.targets.len())
        .map(|i| {
            rows.iter()
                .map(|(_, cells)| cells.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
                + 3
        })
        .collect();
    let has_failures = report.targets.iter().any(|t| !t.failures.is_empty());
    for (label, cells) in &rows {
        if label.starts_with("  ") && !out.contains("\nfailures") && has_failures {
            let _ = writeln!(out, "failures");
        }
        let _ = write!(out, "{label:<label_width$}");
        for (i, cell) in cells.iter().enumerate() {
            let padded = format!("{cell:<width$}", width = widths[i]);
            if color && label == "success rate" {
                if report.targets[i].met_min_success {
                    let _ = write!(out, "{}", padded.green());
                } else {
                    let _ = write!(out, "{}", padded.red());
                }
            } else {
                let _ = write!(out, "{padded}");
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
}

/// From this many targets on, the human report is a row per target.
pub const ROWS_FROM_TARGETS: usize = 3;

/// A row per target and a total row, numbers right-aligned, so that ten
/// pods behind a Service read at a glance: which one is slow, which fails.
fn render_rows(report: &StressReport, color: bool, out: &mut String) {
    const HEADERS: [&str; 11] = [
        "target", "attempts", "ok", "success", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s",
        "elapsed", "failures",
    ];
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    let failures = |groups: &mut dyn Iterator<Item = (Cause, u64)>| {
        let text = groups
            .map(|(cause, n)| format!("{} {n}", cause.label()))
            .collect::<Vec<_>>()
            .join(", ");
        if text.is_empty() {
            "-".into()
        } else {
            text
        }
    };
    let mut rows: Vec<(bool, [String; 11])> = report
        .targets
        .iter()
        .map(|t| {
            let l = t.latency_ms.as_ref();
            (
                t.met_min_success,
                [
                    t.target.clone(),
                    t.attempts.to_string(),
                    t.successes.to_string(),
                    success_cell(t.met_min_success, t.success_percent),
                    ms(l.map(|l| l.p50)),
                    ms(l.map(|l| l.p90)),
                    ms(l.map(|l| l.p99)),
                    ms(l.map(|l| l.max)),
                    format!("{:.1}", t.throughput_rps),
                    format!("{:.2} s", t.elapsed_s),
                    failures(&mut t.failures.iter().map(|f| (f.cause, f.count))),
                ],
            )
        })
        .collect();

    // The targets ran one after another: the total adds counts and times;
    // its throughput is the mean over the run, its max the worst of all.
    // Percentiles of different targets cannot be combined, hence "-".
    let attempts: u64 = report.targets.iter().map(|t| t.attempts).sum();
    let successes: u64 = report.targets.iter().map(|t| t.successes).sum();
    let elapsed: f64 = report.targets.iter().map(|t| t.elapsed_s).sum();
    let max = report
        .targets
        .iter()
        .filter_map(|t| t.latency_ms.as_ref().map(|l| l.max))
        .reduce(f64::max);
    let mut by_cause: Vec<(Cause, u64)> = Cause::ALL
        .iter()
        .map(|&c| {
            let n = report
                .targets
                .iter()
                .flat_map(|t| &t.failures)
                .filter(|f| f.cause == c)
                .map(|f| f.count)
                .sum();
            (c, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    by_cause.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let percent = if attempts == 0 {
        0.0
    } else {
        successes as f64 * 100.0 / attempts as f64
    };
    rows.push((
        report.passed,
        [
            format!("total ({} targets, in turn)", report.targets.len()),
            attempts.to_string(),
            successes.to_string(),
            success_cell(report.passed, percent),
            "-".into(),
            "-".into(),
            "-".into(),
            ms(max),
            if elapsed > 0.0 {
                format!("{:.1}", successes as f64 / elapsed)
            } else {
                "0.0".into()
            },
            format!("{elapsed:.2} s"),
            failures(&mut by_cause.into_iter()),
        ],
    ));

    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|i| {
            rows.iter()
                .map(|(_, cells)| cells[i].chars().count())
                .chain([HEADERS[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Text columns (target, success, failures) left-aligned, numbers right.
    let left = |i: usize| matches!(i, 0 | 3 | 10);
    let line = |cells: &[String], ok: Option<bool>, out: &mut String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            let padded = if left(i) {
                format!("{cell:<width$}")
            } else {
                format!("{cell:>width$}")
            };
            let padded = match ok {
                Some(true) if color && i == 3 => padded.green().to_string(),
                Some(false) if color && i == 3 => padded.red().to_string(),
                _ => padded,
            };
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(&padded);
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    let header: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    line(&header, None, out);
    let total = rows.len() - 1;
    for (i, (ok, cells)) in rows.iter().enumerate() {
        if i == total {
            let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(rule.min(160)));
        }
        line(cells, Some(*ok), out);
    }
}

fn success_cell(met: bool, percent: f64) -> String {
    let mark = if met { "✓" } else { "✗" };
    format!("{mark} {percent:.1} %")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: usize, successes: u64, failures: Vec<FailureGroup>) -> TargetReport {
        TargetReport {
            target: format!("ws://10.1.{i}.7:8003/ws/mcp"),
            kind: TargetKind::Server,
            attempts: 100,
            successes,
            success_percent: successes as f64,
            met_min_success: successes == 100,
            elapsed_s: 0.5,
            throughput_rps: successes as f64 / 0.5,
            latency_ms: Some(Latency {
                p50: 1.0 + i as f64,
                p90: 2.0 + i as f64,
                p99: 3.0 + i as f64,
                max: 4.0 + i as f64,
            }),
            failures,
            cases: Vec::new(),
            latency_cdf: Vec::new(),
            timeline: None,
        }
    }

    fn fleet(n: usize) -> StressReport {
        let mut targets: Vec<TargetReport> = (0..n).map(|i| target(i, 100, Vec::new())).collect();
        targets[n.min(4) - 1] = target(
            n.min(4) - 1,
            97,
            vec![FailureGroup {
                cause: Cause::Handshake,
                count: 3,
                example: "HTTP 503: server is draining".into(),
                case_id: None,
                pattern: None,
            }],
        );
        StressReport {
            schema_version: SCHEMA_VERSION,
            settings: Settings {
                clients: 4,
                requests_per_client: Some(25),
                duration_s: None,
                mode: "persistent".into(),
                timeout_s: 30.0,
                workload: "echo".into(),
                workload_detail: None,
                min_success_percent: 100.0,
            },
            passed: false,
            targets,
            run: None,
        }
    }

    #[test]
    fn ten_targets_read_as_a_row_each_and_an_aligned_total() {
        let text = render_human(&fleet(10), false);
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("target"))
            .take_while(|l| !l.is_empty())
            .collect();
        // Header, ten targets, a rule, the total.
        assert_eq!(table.len(), 13, "{text}");
        for i in 0..10 {
            let url = format!("ws://10.1.{i}.7:8003/ws/mcp");
            assert_eq!(
                table.iter().filter(|l| l.starts_with(&url)).count(),
                1,
                "{text}"
            );
        }
        let total = table[12];
        assert!(total.starts_with("total (10 targets, in turn)"), "{text}");
        assert!(
            total.contains(" 1000 ") && total.contains(" 997 "),
            "{total}"
        );
        assert!(
            total.contains("✗ 99.7 %") && total.contains("13.00"),
            "{total}"
        );
        assert!(
            total.contains("handshake 3") && total.contains("5.00 s"),
            "{total}"
        );
        assert!(table[4].contains("✗ 97.0 %") && table[4].ends_with("handshake 3"));
        // Every column starts at the same place on every line.
        let at = |line: &str, needle: &str| line.find(needle).map(|b| line[..b].chars().count());
        let success_at = at(table[0], "success").unwrap();
        for line in &table[1..] {
            if !line.starts_with('-') {
                let mark = at(line, "✓").or_else(|| at(line, "✗")).unwrap();
                assert_eq!(mark, success_at, "{text}");
            }
        }
        assert!(table.iter().all(|l| l.chars().count() <= 160), "{text}");
        assert!(text.contains("1 of 10 targets below the minimum success rate"));
    }

    #[test]
    fn two_targets_stay_side_by_side() {
        let text = render_human(&fleet(2), false);
        let header = text.lines().find(|l| l.starts_with("target")).unwrap();
        assert!(header.contains("ws://10.1.0.7") && header.contains("ws://10.1.1.7"));
        assert!(!text.contains("total ("));
    }
}
