//! The result of a run as data (rows with their figures, ratios, goals and
//! verdicts; the P8 curve; the machine), rendered twice: as the printed
//! table and as the JSON document.

use std::fmt::Write as _;

use serde::Serialize;

use crate::machine::Machine;

/// A measured value with its unit (`ms`, `req/s`, `MB`, `MB/s`;
/// MB = 10^6 bytes).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    pub value: f64,
    pub unit: &'static str,
}

impl Figure {
    pub fn ms(nanos: u64) -> Figure {
        Figure {
            value: nanos as f64 / 1e6,
            unit: "ms",
        }
    }

    pub fn per_second(value: f64) -> Figure {
        Figure {
            value,
            unit: "req/s",
        }
    }

    pub fn megabytes(bytes: u64) -> Figure {
        Figure {
            value: bytes as f64 / 1e6,
            unit: "MB",
        }
    }

    pub fn mb_per_second(value: f64) -> Figure {
        Figure {
            value,
            unit: "MB/s",
        }
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.value;
        let digits = if v >= 100.0 {
            0
        } else if v >= 10.0 {
            1
        } else {
            2
        };
        write!(f, "{} {}", group_thousands(v, digits), self.unit)
    }
}

fn group_thousands(v: f64, digits: usize) -> String {
    let text = format!("{v:.digits$}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        grouped
    } else {
        format!("{grouped}.{frac}")
    }
}

/// What a row must reach.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "limit")]
pub enum Goal {
    /// ccx / reference ≤ limit (latency, memory).
    RatioAtMost(f64),
    /// ccx / reference ≥ limit (throughput).
    RatioAtLeast(f64),
    /// ccx's figure ≤ limit.
    AtMost(f64),
    /// ccx's figure ≥ limit.
    AtLeast(f64),
}

/// One row's description, known before it is measured.
#[derive(Debug, Clone)]
pub struct Spec {
    pub id: &'static str,
    pub scenario: String,
    pub goal: Goal,
    pub goal_text: String,
}

impl Spec {
    pub fn new(id: &'static str, scenario: impl Into<String>, goal: Goal, text: &str) -> Spec {
        Spec {
            id,
            scenario: scenario.into(),
            goal,
            goal_text: text.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Miss,
    Skipped,
    Error,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Miss => "MISS",
            Verdict::Skipped => "skipped",
            Verdict::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub name: String,
    pub figure: Figure,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: &'static str,
    pub scenario: String,
    pub ccx: Option<Figure>,
    pub reference: Option<Reference>,
    /// ccx / reference.
    pub ratio: Option<f64>,
    pub goal: Goal,
    pub goal_text: String,
    pub verdict: Verdict,
    /// Further figures, or why the row was skipped or failed.
    pub note: String,
}

impl Row {
    pub fn measured(
        spec: &Spec,
        ccx: Figure,
        reference: Option<Reference>,
        note: impl Into<String>,
    ) -> Row {
        let ratio = reference
            .as_ref()
            .map(|r| ccx.value / r.figure.value.max(f64::MIN_POSITIVE));
        let pass = match (spec.goal, ratio) {
            (Goal::RatioAtMost(k), Some(r)) => Some(r <= k),
            (Goal::RatioAtLeast(k), Some(r)) => Some(r >= k),
            (Goal::RatioAtMost(_) | Goal::RatioAtLeast(_), None) => None,
            (Goal::AtMost(k), _) => Some(ccx.value <= k),
            (Goal::AtLeast(k), _) => Some(ccx.value >= k),
        };
        let mut note = note.into();
        let verdict = match pass {
            Some(true) => Verdict::Pass,
            Some(false) => Verdict::Miss,
            None => {
                if note.is_empty() {
                    note = "no reference measured".into();
                }
                Verdict::Skipped
            }
        };
        Row {
            id: spec.id,
            scenario: spec.scenario.clone(),
            ccx: Some(ccx),
            reference,
            ratio,
            goal: spec.goal,
            goal_text: spec.goal_text.clone(),
            verdict,
            note,
        }
    }

    pub fn skipped(spec: &Spec, reason: impl Into<String>) -> Row {
        Row::unmeasured(spec, Verdict::Skipped, reason.into())
    }

    pub fn error(spec: &Spec, error: impl std::fmt::Display) -> Row {
        Row::unmeasured(spec, Verdict::Error, error.to_string())
    }

    fn unmeasured(spec: &Spec, verdict: Verdict, note: String) -> Row {
        Row {
            id: spec.id,
            scenario: spec.scenario.clone(),
            ccx: None,
            reference: None,
            ratio: None,
            goal: spec.goal,
            goal_text: spec.goal_text.clone(),
            verdict,
            note,
        }
    }
}

/// One point of the P8 curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub clients: usize,
    pub throughput: Figure,
    pub p50: Figure,
    pub p99: Figure,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub mode: &'static str,
    pub date: String,
    pub command: String,
    pub server: String,
    pub machine: Machine,
    pub rows: Vec<Row>,
    pub curve: Vec<CurvePoint>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Error)
    }

    pub fn has_misses(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Miss)
    }

    /// The printed table (Markdown, so it pastes into docs as it is).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "ccx bench ({}), {}", self.mode, self.date);
        let _ = writeln!(out, "machine: {}", self.machine.summary());
        let _ = writeln!(out, "server:  {}", self.server);
        let _ = writeln!(out, "command: {}", self.command);
        let _ = writeln!(out);
        let header = [
            "id",
            "scenario",
            "ccx",
            "reference (same run)",
            "ratio",
            "goal",
            "verdict",
        ];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.id.to_string(),
                    r.scenario.clone(),
                    r.ccx.map_or("—".into(), |f| f.to_string()),
                    r.reference
                        .as_ref()
                        .map_or("—".into(), |x| format!("{} {}", x.name, x.figure)),
                    r.ratio.map_or("—".into(), |x| format!("{x:.2}×")),
                    r.goal_text.clone(),
                    r.verdict.label().to_string(),
                ]
            })
            .collect();
        table(&mut out, &header, &cells);
        if !self.curve.is_empty() {
            let _ = writeln!(out, "\nP8 curve (ccx, persistent sessions, echo x):\n");
            let header = ["clients", "throughput", "p50", "p99"];
            let cells: Vec<[String; 4]> = self
                .curve
                .iter()
                .map(|p| {
                    [
                        p.clients.to_string(),
                        p.throughput.to_string(),
                        p.p50.to_string(),
                        p.p99.to_string(),
                    ]
                })
                .collect();
            table(&mut out, &header, &cells);
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.note.is_empty())
            .map(|r| format!("{}: {}", r.id, r.note))
            .chain(self.notes.iter().cloned())
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(out, "\nnotes:");
            for note in notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

fn table<const N: usize>(out: &mut String, header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}
