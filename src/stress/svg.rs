//! Static SVG line charts for the HTML stress report: linear or log axes
//! with 1-2-5 ticks, and one `<g class="series">` per target holding its
//! lines (gaps where a bin is empty) and marks. Colours come from the
//! page's CSS (`.s0`, `.s1`, …), so one chart reads in light and dark mode
//! and in print. Strings in, a string out; no I/O, no script.

use std::fmt::Write as _;

use super::html::escape;

/// How values map onto an axis.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    Linear { min: f64, max: f64 },
    Log { min: f64, max: f64 },
}

impl Scale {
    /// A log scale spanning `values` (positive ones), padded to whole 1-2-5 steps.
    pub fn log_over(values: impl Iterator<Item = f64>) -> Scale {
        let (lo, hi) = values
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi {
            return Scale::Log {
                min: 0.1,
                max: 10.0,
            };
        }
        let min = step_below(lo);
        let mut max = step_above(hi);
        if max <= min {
            max = min * 10.0;
        }
        Scale::Log { min, max }
    }

    /// The position of `v` from 0 (min) to 1 (max), clamped.
    fn fraction(self, v: f64) -> f64 {
        let f = match self {
            Scale::Linear { min, max } => (v - min) / (max - min),
            Scale::Log { min, max } => (v.max(min).ln() - min.ln()) / (max.ln() - min.ln()),
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Tick values: 1-2-5 steps on a log scale, about six even steps on a
    /// linear one.
    fn ticks(self) -> Vec<f64> {
        match self {
            Scale::Log { min, max } => {
                let mut ticks = Vec::new();
                let mut decade = 10f64.powf(min.log10().floor());
                while decade <= max * 1.0001 {
                    for m in [1.0, 2.0, 5.0] {
                        let t = decade * m;
                        if t >= min * 0.9999 && t <= max * 1.0001 {
                            ticks.push(t);
                        }
                    }
                    decade *= 10.0;
                }
                ticks
            }
            Scale::Linear { min, max } => {
                let step = nice_step((max - min) / 6.0);
                let mut ticks = Vec::new();
                let mut t = (min / step).ceil() * step;
                while t <= max + step * 1e-6 {
                    ticks.push(t);
                    t += step;
                }
                ticks
            }
        }
    }
}

/// The largest 1-2-5 value at or below `v`.
fn step_below(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| decade * m)
        .find(|&t| t <= v * 1.0001)
        .unwrap_or(decade)
}

/// The smallest 1-2-5 value at or above `v`.
fn step_above(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| decade * m)
        .find(|&t| t >= v * 0.9999)
        .unwrap_or(decade * 10.0)
}

/// A round step (1, 2 or 5 × 10ⁿ) near `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    step_above(raw)
}

/// An axis: its scale, its label, and how a tick value reads.
pub struct Axis {
    pub scale: Scale,
    pub label: String,
    pub format: fn(f64) -> String,
}

/// One line of a series; `None` points break it (an empty time bin).
pub struct Line {
    pub points: Vec<Option<(f64, f64)>>,
    /// A secondary line (drawn dashed and thinner).
    pub secondary: bool,
}

/// What one target contributes to a chart.
pub struct Series {
    /// The target's position in the report, which picks its colour.
    pub index: usize,
    pub label: String,
    pub lines: Vec<Line>,
    /// X positions to mark on the bottom edge (failures).
    pub marks: Vec<f64>,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 52.0;

/// A line chart as an inline `<svg>` element.
pub fn line_chart(title: &str, x: &Axis, y: &Axis, series: &[Series]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |v: f64| LEFT + x.scale.fraction(v) * plot_w;
    let py = |v: f64| TOP + (1.0 - y.scale.fraction(v)) * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        "<rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\"/>"
    );
    for t in x.scale.ticks() {
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\"/><text class=\"tick\" x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            px(t),
            TOP + plot_h,
            TOP + plot_h + 16.0,
            escape(&(x.format)(t))
        );
    }
    for t in y.scale.ticks() {
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{1:.1}\"/><text class=\"tick\" x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            LEFT + plot_w,
            py(t),
            LEFT - 6.0,
            py(t) + 4.0,
            escape(&(y.format)(t))
        );
    }
    let _ = writeln!(
        out,
        "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        escape(&x.label)
    );
    let _ = writeln!(
        out,
        "<text class=\"axis\" transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        TOP + plot_h / 2.0,
        escape(&y.label)
    );
    for s in series {
        let _ = writeln!(
            out,
            "<g class=\"series s{}\" data-target=\"{}\">",
            s.index % PALETTE,
            escape(&s.label)
        );
        let _ = writeln!(out, "<title>{}</title>", escape(&s.label));
        for line in &s.lines {
            let mut d = String::new();
            let mut pen_down = false;
            for point in &line.points {
                match point {
                    Some((vx, vy)) => {
                        let _ = write!(
                            d,
                            "{}{:.1},{:.1}",
                            if pen_down { " L" } else { " M" },
                            px(*vx),
                            py(*vy)
                        );
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            let class = if line.secondary {
                "line secondary"
            } else {
                "line"
            };
            let _ = writeln!(out, "<path class=\"{class}\" d=\"{}\"/>", d.trim());
        }
        for m in &s.marks {
            let _ = writeln!(
                out,
                "<line class=\"mark\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\"/>",
                px(*m),
                TOP + plot_h - 8.0 - 6.0 * (s.index % PALETTE) as f64,
                TOP + plot_h - 2.0 - 6.0 * (s.index % PALETTE) as f64,
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

/// Series colours the page's CSS defines (`.s0` … `.s7`).
pub const PALETTE: usize = 8;

/// A number as a tick reads: `0.5`, `2`, `1000`.
pub fn plain(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scales_pad_to_1_2_5_steps_and_tick_on_them() {
        let Scale::Log { min, max } = Scale::log_over([1.7, 42.0].into_iter()) else {
            panic!("log")
        };
        assert_eq!((min, max), (1.0, 50.0));
        let ticks = Scale::Log { min, max }.ticks();
        assert_eq!(ticks, vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(plain(0.5), "0.5");
        assert_eq!(plain(20.0), "20");
    }

    #[test]
    fn a_chart_has_one_group_per_series_and_breaks_lines_at_gaps() {
        let axis = |label: &str| Axis {
            scale: Scale::Linear {
                min: 0.0,
                max: 10.0,
            },
            label: label.into(),
            format: plain,
        };
        let series: Vec<Series> = (0..2)
            .map(|i| Series {
                index: i,
                label: format!("ws://127.0.0.1:{i}/ws/mcp <&>"),
                lines: vec![Line {
                    points: vec![Some((0.0, 1.0)), None, Some((2.0, 3.0)), Some((4.0, 5.0))],
                    secondary: false,
                }],
                marks: vec![3.0],
            })
            .collect();
        let svg = line_chart("t", &axis("x"), &axis("y"), &series);
        assert_eq!(svg.matches("<g class=\"series").count(), 2);
        assert!(svg.contains("&lt;&amp;&gt;"));
        // Each line starts once, and starts again after its gap.
        assert_eq!(svg.matches("d=\"M").count(), 2, "{svg}");
        assert_eq!(svg.matches(" M").count(), 2, "{svg}");
        assert!(!svg.contains("NaN"));
    }
}
