//! What the clients counted, and the report a target's tally becomes
//! (latency percentiles, distribution, failures grouped by cause, cases).

use super::*;

#[derive(Default, Clone)]
pub(super) struct CaseTally {
    pub(super) attempts: u64,
    pub(super) successes: u64,
    pub(super) failures: BTreeMap<Cause, u64>,
    pub(super) missing_patterns: BTreeSet<String>,
}

/// What one client saw; merged into the target's.
pub(super) struct Tally {
    pub(super) attempts: u64,
    pub(super) successes: u64,
    pub(super) latency_us: Histogram<u64>,
    pub(super) failures: BTreeMap<Cause, (u64, Failure, Option<usize>)>,
    pub(super) cases: Vec<CaseTally>,
    pub(super) timeline: TimeTally,
}

/// Latencies up to an hour, 3 significant digits.
pub(super) const MAX_LATENCY_US: u64 = 3_600_000_000;

impl Tally {
    pub(super) fn new(cases: usize) -> Tally {
        Tally {
            attempts: 0,
            successes: 0,
            // Constant bounds, valid for HdrHistogram: no input can make this fail.
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            failures: BTreeMap::new(),
            cases: vec![CaseTally::default(); cases],
            timeline: TimeTally::default(),
        }
    }

    /// One finished request; `at` is when it finished, from the target's start.
    pub(super) fn record(
        &mut self,
        case: Option<usize>,
        result: Result<Duration, Failure>,
        at: Duration,
    ) {
        self.attempts += 1;
        self.timeline.record(at, result.as_ref().ok().copied());
        let case_tally = case.and_then(|i| self.cases.get_mut(i));
        match result {
            Ok(latency) => {
                self.successes += 1;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                self.latency_us.saturating_record(us);
                if let Some(c) = case_tally {
                    c.attempts += 1;
                    c.successes += 1;
                }
            }
            Err(failure) => {
                if let Some(c) = case_tally {
                    c.attempts += 1;
                    *c.failures.entry(failure.cause).or_default() += 1;
                    if let Some(p) = &failure.pattern {
                        if c.missing_patterns.len() < 32 {
                            c.missing_patterns.insert(p.clone());
                        }
                    }
                }
                self.failures
                    .entry(failure.cause)
                    .and_modify(|(n, _, _)| *n += 1)
                    .or_insert((1, failure, case));
            }
        }
    }

    pub(super) fn merge(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.successes += other.successes;
        let _ = self.latency_us.add(&other.latency_us);
        self.timeline.merge(other.timeline);
        for (cause, (n, failure, case)) in other.failures {
            self.failures
                .entry(cause)
                .and_modify(|(m, _, _)| *m += n)
                .or_insert((n, failure, case));
        }
        for (mine, theirs) in self.cases.iter_mut().zip(other.cases) {
            mine.attempts += theirs.attempts;
            mine.successes += theirs.successes;
            for (cause, n) in theirs.failures {
                *mine.failures.entry(cause).or_default() += n;
            }
            for p in theirs.missing_patterns {
                if mine.missing_patterns.len() < 32 {
                    mine.missing_patterns.insert(p);
                }
            }
        }
    }
}

pub(super) fn report(
    target: &Target,
    plan: &Plan,
    total: Tally,
    elapsed: Duration,
    min_success_percent: f64,
) -> TargetReport {
    let success_percent = if total.attempts == 0 {
        0.0
    } else {
        total.successes as f64 * 100.0 / total.attempts as f64
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let h = &total.latency_us;
    let latency_ms = (total.successes > 0).then(|| Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    });
    let latency_cdf = if total.successes > 0 {
        cdf(h)
    } else {
        Vec::new()
    };
    let cases = plan.cases();
    let mut failures: Vec<FailureGroup> = total
        .failures
        .into_iter()
        .map(|(cause, (count, failure, case))| FailureGroup {
            cause,
            count,
            example: failure.message,
            case_id: case.and_then(|i| cases.get(i)).map(|c| c.id.clone()),
            pattern: failure.pattern,
        })
        .collect();
    failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(&b.cause)));
    let elapsed_s = elapsed.as_secs_f64();
    TargetReport {
        target: target.label(),
        kind: target.kind(),
        attempts: total.attempts,
        successes: total.successes,
        success_percent,
        met_min_success: total.attempts > 0 && success_percent + 1e-9 >= min_success_percent,
        elapsed_s,
        throughput_rps: if elapsed_s > 0.0 {
            total.successes as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ms,
        failures,
        cases: cases
            .iter()
            .zip(total.cases)
            .map(|(case, t)| CaseReport {
                id: case.id.clone(),
                name: case.name.clone(),
                category: case.category.clone(),
                attempts: t.attempts,
                successes: t.successes,
                failures: t.failures.into_iter().collect(),
                missing_patterns: t.missing_patterns.into_iter().collect(),
            })
            .collect(),
        latency_cdf,
        timeline: Some(total.timeline.finish()),
    }
}

/// At most this many points on a cumulative latency curve.
pub(super) const CDF_POINTS: usize = 200;

/// The cumulative distribution of `h` (µs) as points in ms, from the first
/// value to the max, denser towards the tail where the interest is.
pub(super) fn cdf(h: &Histogram<u64>) -> Vec<CdfPoint> {
    let mut points: Vec<CdfPoint> = Vec::new();
    for v in h.iter_quantiles(4) {
        let point = CdfPoint {
            ms: h.highest_equivalent(v.value_iterated_to()).min(h.max()) as f64 / 1000.0,
            fraction: v.quantile(),
        };
        match points.last_mut() {
            Some(last) if last.ms == point.ms => last.fraction = point.fraction,
            _ => points.push(point),
        }
    }
    if points.len() > CDF_POINTS {
        let step = points.len().div_ceil(CDF_POINTS);
        let last = points[points.len() - 1];
        points = points.into_iter().step_by(step).collect();
        if points.last() != Some(&last) {
            points.push(last);
        }
    }
    points
}
