//! Latency over time, pre-binned: what each client records as its requests
//! finish (a count and a coarse log histogram per time bin, never the
//! samples), merged into a target's [`Timeline`], so a run of 100 000
//! requests reports a few hundred numbers. Bins start at 10 ms and double in
//! width whenever the run outgrows [`MAX_BINS`]. Plain data; no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most bins a timeline holds; past that, bins double in width.
pub const MAX_BINS: usize = 120;

/// The narrowest bin.
const FIRST_WIDTH_MS: u64 = 10;

/// Log-histogram buckets per doubling of latency: a bucket's bounds are
/// about 4.4 % apart, fine enough for a picture (the report's percentiles
/// come from the HdrHistogram, not from here).
const BUCKETS_PER_OCTAVE: f64 = 16.0;

/// Latency over time of one target, as the report carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The width of every bin.
    pub bin_ms: f64,
    /// Consecutive bins from the target's start to its last finished
    /// request; a bin in which nothing finished is present, empty.
    pub bins: Vec<TimeBin>,
}

/// The requests that finished within one bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeBin {
    /// When the bin starts, in seconds from the target's start.
    pub start_s: f64,
    pub successes: u64,
    pub failures: u64,
    /// Of the successes only, within about 4.4 %; `None` without any.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Exact.
    pub max_ms: Option<f64>,
}

/// What one client (then the merged target) recorded.
#[derive(Debug, Clone)]
pub struct TimeTally {
    width_ms: u64,
    bins: Vec<BinTally>,
}

#[derive(Debug, Clone, Default)]
struct BinTally {
    successes: u64,
    failures: u64,
    max_us: u64,
    /// Log-bucket index → count; sparse, as a bin sees few distinct buckets.
    buckets: BTreeMap<u16, u64>,
}

impl BinTally {
    fn add(&mut self, other: BinTally) {
        self.successes += other.successes;
        self.failures += other.failures;
        self.max_us = self.max_us.max(other.max_us);
        for (bucket, n) in other.buckets {
            *self.buckets.entry(bucket).or_default() += n;
        }
    }

    /// The latency below which `q` of the successes lie, from the buckets.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.successes == 0 {
            return None;
        }
        let rank = ((q * self.successes as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (&bucket, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let us = 2f64
                    .powf((f64::from(bucket) + 0.5) / BUCKETS_PER_OCTAVE)
                    .round()
                    .min(self.max_us as f64);
                return Some(us / 1000.0);
            }
        }
        Some(self.max_us as f64 / 1000.0)
    }
}

impl Default for TimeTally {
    fn default() -> Self {
        TimeTally {
            width_ms: FIRST_WIDTH_MS,
            bins: Vec::new(),
        }
    }
}

impl TimeTally {
    /// A request that finished `at` after the target's start: its latency
    /// when it succeeded, `None` when it failed.
    pub fn record(&mut self, at: Duration, latency: Option<Duration>) {
        let at_ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
        while at_ms / self.width_ms >= MAX_BINS as u64 {
            self.widen();
        }
        let index = (at_ms / self.width_ms) as usize;
        if self.bins.len() <= index {
            self.bins.resize_with(index + 1, BinTally::default);
        }
        let bin = &mut self.bins[index];
        match latency {
            Some(latency) => {
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                bin.successes += 1;
                bin.max_us = bin.max_us.max(us);
                let bucket = ((us as f64).log2() * BUCKETS_PER_OCTAVE).floor() as u16;
                *bin.buckets.entry(bucket).or_default() += 1;
            }
            None => bin.failures += 1,
        }
    }

    /// Doubles the bin width, merging neighbours.
    fn widen(&mut self) {
        self.width_ms = self.width_ms.saturating_mul(2);
        let old = std::mem::take(&mut self.bins);
        for (i, bin) in old.into_iter().enumerate() {
            if self.bins.len() <= i / 2 {
                self.bins.push(BinTally::default());
            }
            self.bins[i / 2].add(bin);
        }
    }

    /// Adds another client's tally (of the same target and start).
    pub fn merge(&mut self, mut other: TimeTally) {
        while self.width_ms < other.width_ms {
            self.widen();
        }
        while other.width_ms < self.width_ms {
            other.widen();
        }
        if self.bins.len() < other.bins.len() {
            self.bins.resize_with(other.bins.len(), BinTally::default);
        }
        for (mine, theirs) in self.bins.iter_mut().zip(other.bins) {
            mine.add(theirs);
        }
    }

    /// The timeline as the report carries it.
    pub fn finish(&self) -> Timeline {
        Timeline {
            bin_ms: self.width_ms as f64,
            bins: self
                .bins
                .iter()
                .enumerate()
                .map(|(i, bin)| TimeBin {
                    start_s: (i as u64 * self.width_ms) as f64 / 1000.0,
                    successes: bin.successes,
                    failures: bin.failures,
                    p50_ms: bin.quantile_ms(0.50),
                    p99_ms: bin.quantile_ms(0.99),
                    max_ms: (bin.successes > 0).then(|| bin.max_us as f64 / 1000.0),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_widen_to_stay_within_the_limit_and_keep_every_request() {
        let mut tally = TimeTally::default();
        for i in 0..10_000u64 {
            let at = Duration::from_millis(i * 7);
            let latency = (i % 10 != 0).then(|| Duration::from_micros(1000 + i % 500));
            tally.record(at, latency);
        }
        let timeline = tally.finish();
        assert!(timeline.bins.len() <= MAX_BINS, "{}", timeline.bins.len());
        assert!(timeline.bin_ms * MAX_BINS as f64 >= 70_000.0);
        let successes: u64 = timeline.bins.iter().map(|b| b.successes).sum();
        let failures: u64 = timeline.bins.iter().map(|b| b.failures).sum();
        assert_eq!((successes, failures), (9_000, 1_000));
        for bin in timeline.bins.iter().filter(|b| b.successes > 0) {
            let (p50, max) = (bin.p50_ms.unwrap(), bin.max_ms.unwrap());
            assert!(
                (0.95..=1.5).contains(&p50) && p50 <= max && max < 1.5,
                "{bin:?}"
            );
        }
    }

    #[test]
    fn merging_tallies_of_different_widths_adds_them_up() {
        let mut short = TimeTally::default();
        short.record(Duration::from_millis(5), Some(Duration::from_millis(2)));
        let mut long = TimeTally::default();
        long.record(Duration::from_secs(60), Some(Duration::from_millis(40)));
        long.record(Duration::from_millis(1), None);
        short.merge(long);
        let timeline = short.finish();
        assert!(timeline.bins.len() <= MAX_BINS);
        let first = &timeline.bins[0];
        assert_eq!((first.successes, first.failures), (1, 1));
        let last = timeline.bins.last().unwrap();
        assert_eq!(last.max_ms, Some(40.0));
        let p50 = last.p50_ms.unwrap();
        assert!((38.0..=40.0).contains(&p50), "{p50}");
    }
}
