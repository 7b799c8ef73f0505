//! Histogram samples recorded into a `metrics-exporter-prometheus` recorder wait in it until
//! something drains them into the histograms (a scrape of `/metrics`, or `run_upkeep`). A
//! gateway or worker nobody scrapes would keep every sample of its life: a few dozen bytes
//! per run, forever. [`Upkeep`] drains every [`EVERY`] samples, which bounds that memory
//! whether or not anyone scrapes.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;

/// Samples between two drains.
pub(crate) const EVERY: u64 = 1024;

/// Counts recorded samples and drains the recorder every [`EVERY`] of them.
#[derive(Debug, Default)]
pub(crate) struct Upkeep {
    recorded: AtomicU64,
}

impl Upkeep {
    /// Call after recording `samples` histogram samples into the recorder of `handle`.
    pub(crate) fn recorded(&self, handle: &PrometheusHandle, samples: u64) {
        let before = self.recorded.fetch_add(samples, Ordering::Relaxed);
        if before / EVERY != (before + samples) / EVERY {
            handle.run_upkeep();
        }
    }

    /// Samples recorded so far.
    pub(crate) fn count(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }
}
