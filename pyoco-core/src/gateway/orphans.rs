//! The orphan sweep: every gateway looks, every few seconds, at the PENDING runs its index
//! says were last written more than `PYOCO_ORPHAN_AFTER_SEC` ago, oldest first, and hands
//! them to the store's rules (`store::orphans`):
//! - a run still within the work stream's duplicate window is published again once by this
//!   gateway (a queued job is de-duplicated; an orphan's job is now queued);
//! - an older one only if its tag has nothing in the stream, with a compare-and-set claim so
//!   several gateways publish it once.
//!
//! Looking at a candidate costs no NATS request unless it needs one (its tag's queue is
//! checked once per sweep), so runs waiting behind a busy tag do not hold up the rest.
//! `PYOCO_ORPHAN_AFTER_SEC=0` turns the sweep off.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::GatewayState;
use super::index::Field;
use crate::model::now;
use crate::store::orphans::{DEDUP_SAFE_AGE, Requeue};

/// Candidates read from the index per sweep (memory only).
const SCAN: usize = 10_000;
/// Candidates that cost NATS requests per sweep; the rest wait for the next one.
const BATCH: usize = 500;

/// How often the sweep runs for a given `orphan_after`: a third of it, 1 to 10 s.
pub fn period(orphan_after: Duration) -> Duration {
    (orphan_after / 3).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub published: usize,
    pub failed: usize,
}

/// The sweeper's memory between sweeps: runs it already published within their duplicate
/// window (once is enough).
#[derive(Debug, Default)]
pub struct Sweeper {
    republished: HashSet<String>,
}

/// Sweeps until the gateway stops (spawned by the state once connected).
pub(crate) async fn run(state: GatewayState) {
    let orphan_after = state.config.orphan_after;
    if orphan_after.is_zero() {
        return;
    }
    let period = period(orphan_after);
    let mut sweeper = Sweeper::default();
    loop {
        // Jittered, so gateways started together do not sweep in step.
        let jitter = fastrand::u64(0..=period.as_millis() as u64 / 4);
        tokio::time::sleep(period + Duration::from_millis(jitter)).await;
        sweeper.sweep(&state, orphan_after).await;
    }
}

impl Sweeper {
    /// One sweep (the background loop's, and tests').
    pub async fn sweep(&mut self, state: &GatewayState, orphan_after: Duration) -> Swept {
        let mut swept = Swept::default();
        let (Ok(store), Ok(index)) = (state.store(), state.run_index().await) else {
            return swept;
        };
        let stamp = now();
        let candidates = index.oldest(
            Field::Status,
            "PENDING",
            stamp - orphan_after.as_secs_f64(),
            SCAN,
        );
        let mut busy: HashMap<String, bool> = HashMap::new();
        let mut requests = 0;
        for run in &candidates {
            if requests >= BATCH {
                break;
            }
            let within = stamp - run.updated_at < DEDUP_SAFE_AGE.as_secs_f64();
            let outcome = if within && !self.republished.contains(&run.run_id) {
                requests += 1;
                let outcome = store
                    .republish_within_window(&run.run_id, orphan_after)
                    .await;
                if outcome.is_ok() {
                    self.republished.insert(run.run_id.clone());
                }
                outcome
            } else {
                let tag = run
                    .tag
                    .clone()
                    .unwrap_or_else(|| state.config.default_tag.clone());
                let has_jobs = match busy.get(&tag) {
                    Some(b) => *b,
                    None => {
                        requests += 1;
                        match store.tag_has_jobs(&tag).await {
                            Ok(b) => *busy.entry(tag).or_insert(b),
                            Err(e) => {
                                tracing::warn!(error = %e, "orphan sweep stopped early");
                                break;
                            }
                        }
                    }
                };
                if has_jobs {
                    continue;
                }
                requests += 1;
                store.requeue_orphan(&run.run_id, orphan_after).await
            };
            match outcome {
                Ok(Requeue::Published) => swept.published += 1,
                Ok(Requeue::Failed(_)) => swept.failed += 1,
                Ok(Requeue::NotOrphan | Requeue::Undecidable) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "orphan sweep stopped early; retrying next time");
                    break;
                }
            }
        }
        // Forget runs that are no longer PENDING candidates (claimed, finished, deleted).
        let current: HashSet<&str> = candidates.iter().map(|c| c.run_id.as_str()).collect();
        self.republished.retain(|id| current.contains(id.as_str()));
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_every_third_of_the_orphan_age_within_1_to_10_s() {
        assert_eq!(period(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(period(Duration::from_secs(6)), Duration::from_secs(2));
        assert_eq!(period(Duration::from_millis(500)), Duration::from_secs(1));
        assert_eq!(period(Duration::from_secs(3600)), Duration::from_secs(10));
    }
}
