//! The last 15 minutes of finished runs in 5-second buckets, per group of runs: completed and
//! failed counts and a log-scale histogram of run durations. Pure bookkeeping; the time of a
//! run is its `end_time` (from the snapshot, so every gateway files it in the same bucket).

use std::collections::HashMap;

/// Width of one bucket in seconds.
pub const BUCKET_SEC: u64 = 5;
/// Buckets kept: 15 minutes.
pub const BUCKETS: usize = 180;
/// Histogram bins: bin 0 is under 1 ms; bin `b >= 1` holds `[2^((b-1)/4), 2^(b/4))` ms, so a
/// percentile is within ±9 % (the last bin, about 35 days, holds everything longer).
pub const BINS: usize = 128;

/// The bin of a duration in seconds.
pub fn bin_of(seconds: f64) -> u8 {
    let ms = seconds * 1000.0;
    if !ms.is_finite() || ms < 1.0 {
        return 0;
    }
    let b = (4.0 * ms.log2()).floor() as i64 + 1;
    b.clamp(1, BINS as i64 - 1) as u8
}

/// A representative duration (seconds) of bin `b`: its geometric middle.
pub fn bin_value(b: u8) -> f64 {
    if b == 0 {
        return 0.0005;
    }
    2f64.powf((f64::from(b) - 0.5) / 4.0) / 1000.0
}

/// What one group finished within one bucket.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cell {
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Tasks that needed more than one attempt.
    pub retried_tasks: u64,
    /// Sparse histogram: (bin, count), few bins per bucket.
    pub durations: Vec<(u8, u32)>,
}

impl Cell {
    fn add_duration(&mut self, bin: u8) {
        match self.durations.iter_mut().find(|(b, _)| *b == bin) {
            Some((_, n)) => *n += 1,
            None => self.durations.push((bin, 1)),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Start of the bucket (Unix seconds / BUCKET_SEC); a stale slot is reset on reuse.
    slot: u64,
    cells: HashMap<u32, Cell>,
}

/// How a run ended, as the window counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Completed,
    Failed,
    Cancelled,
}

/// The ring of buckets.
#[derive(Debug)]
pub struct Window {
    buckets: Vec<Bucket>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            buckets: vec![Bucket::default(); BUCKETS],
        }
    }
}

/// Sums over a window for the groups a query matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub retried_tasks: u64,
    pub histogram: Vec<u64>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            completed: 0,
            failed: 0,
            cancelled: 0,
            retried_tasks: 0,
            histogram: vec![0; BINS],
        }
    }
}

impl Totals {
    /// The `q` quantile (0..=1) of the durations, in seconds; `None` without any.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n: u64 = self.histogram.iter().sum();
        if n == 0 {
            return None;
        }
        // The rank of the quantile, 1-based (nearest rank).
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, count) in self.histogram.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bin_value(b as u8));
            }
        }
        None
    }
}

impl Window {
    /// True when a run that ended at `at` is still inside the window as seen at `now` (what
    /// [`Window::record`] would file).
    pub fn keeps(&self, now: f64, at: f64) -> bool {
        let slot = (at.min(now).max(0.0) as u64) / BUCKET_SEC;
        let newest = (now.max(0.0) as u64) / BUCKET_SEC;
        slot + (BUCKETS as u64) > newest
    }

    /// Files one finished run of `group` that ended at `at` (Unix seconds) and took
    /// `duration` seconds; ignored when older than the window as seen at `now`.
    pub fn record(
        &mut self,
        now: f64,
        at: f64,
        group: u32,
        end: End,
        duration: Option<f64>,
        retried_tasks: u64,
    ) {
        if !self.keeps(now, at) {
            return;
        }
        let slot = (at.min(now).max(0.0) as u64) / BUCKET_SEC;
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            bucket.slot = slot;
            bucket.cells.clear();
        }
        let cell = bucket.cells.entry(group).or_default();
        match end {
            End::Completed => cell.completed += 1,
            End::Failed => cell.failed += 1,
            End::Cancelled => cell.cancelled += 1,
        }
        cell.retried_tasks += retried_tasks;
        if let Some(d) = duration.filter(|d| d.is_finite() && *d >= 0.0) {
            cell.add_duration(bin_of(d));
        }
    }

    /// The cells of every bucket still in the window at `now`, by bucket (for a checkpoint).
    pub fn saved(&self, now: f64) -> Vec<(u64, Vec<(u32, Cell)>)> {
        let newest = (now.max(0.0) as u64) / BUCKET_SEC;
        self.buckets
            .iter()
            .filter(|b| !b.cells.is_empty() && b.slot + (BUCKETS as u64) > newest)
            .map(|b| {
                let mut cells: Vec<(u32, Cell)> =
                    b.cells.iter().map(|(g, c)| (*g, c.clone())).collect();
                cells.sort_by_key(|(g, _)| *g);
                (b.slot, cells)
            })
            .collect()
    }

    /// Puts back what [`Window::saved`] returned, into an empty window: buckets that have
    /// left the window by `now` are dropped.
    pub fn restore(&mut self, now: f64, saved: Vec<(u64, Vec<(u32, Cell)>)>) {
        let newest = (now.max(0.0) as u64) / BUCKET_SEC;
        for (slot, cells) in saved {
            if slot + (BUCKETS as u64) <= newest {
                continue;
            }
            let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
            if bucket.slot > slot {
                continue;
            }
            bucket.slot = slot;
            bucket.cells = cells.into_iter().collect();
        }
    }

    /// Totals of the last `seconds` (whole buckets, the current one included) for the groups
    /// `matches` accepts.
    pub fn totals(&self, now: f64, seconds: u64, matches: impl Fn(u32) -> bool) -> Totals {
        let newest = (now.max(0.0) as u64) / BUCKET_SEC;
        let span = seconds.div_ceil(BUCKET_SEC).min(BUCKETS as u64);
        let mut t = Totals::default();
        for bucket in &self.buckets {
            if bucket.slot > newest || bucket.slot + span <= newest {
                continue;
            }
            for (group, cell) in &bucket.cells {
                if !matches(*group) {
                    continue;
                }
                t.completed += cell.completed;
                t.failed += cell.failed;
                t.cancelled += cell.cancelled;
                t.retried_tasks += cell.retried_tasks;
                for (b, n) in &cell.durations {
                    t.histogram[usize::from(*b)] += u64::from(*n);
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotonic_and_within_nine_percent() {
        for ms in [1.0, 3.0, 10.0, 250.0, 1234.0, 60_000.0, 3_600_000.0] {
            let s = ms / 1000.0;
            let v = bin_value(bin_of(s));
            assert!((v - s).abs() / s < 0.1, "{ms} ms -> {v}");
        }
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(f64::NAN), 0);
        assert_eq!(bin_of(1e12), (BINS - 1) as u8);
        assert!(bin_of(0.002) < bin_of(0.003));
    }

    #[test]
    fn windows_count_only_their_buckets_and_groups() {
        let mut w = Window::default();
        let now = 1_000_000.0;
        w.record(now, now - 1.0, 1, End::Completed, Some(0.1), 0);
        w.record(now, now - 2.0, 1, End::Failed, Some(1.0), 2);
        w.record(now, now - 120.0, 1, End::Completed, Some(10.0), 0);
        w.record(now, now - 600.0, 2, End::Completed, None, 0);
        w.record(now, now - 2000.0, 1, End::Completed, None, 0); // too old: dropped
        w.record(now, now + 50.0, 1, End::Cancelled, None, 0); // future: counted now
        let one = w.totals(now, 60, |_| true);
        assert_eq!((one.completed, one.failed, one.cancelled), (1, 1, 1));
        assert_eq!(one.retried_tasks, 2);
        let five = w.totals(now, 300, |g| g == 1);
        assert_eq!(five.completed, 2);
        let fifteen = w.totals(now, 900, |_| true);
        assert_eq!(fifteen.completed, 3);
        let p50 = fifteen.quantile(0.5).unwrap();
        assert!((p50 - 1.0).abs() < 0.1, "{p50}");
        let p99 = fifteen.quantile(0.99).unwrap();
        assert!((p99 - 10.0).abs() < 1.0, "{p99}");
        assert_eq!(Totals::default().quantile(0.5), None);
        // A bucket slot reused 15 minutes later starts empty.
        let later = now + 900.0;
        w.record(later, later, 1, End::Failed, None, 0);
        assert_eq!(w.totals(later, 900, |_| true).completed, 0);
    }
}
