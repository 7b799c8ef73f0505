//! The retention sweep (`PYOCO_RUNS_RETENTION_SEC`): every gateway, every tenth of the
//! retention (1 s to 1 min), deletes up to a batch of the finished runs its index says were
//! last written before the cutoff, oldest first (`Store::expire_run` re-checks each one).
//! Costs O(expired runs), never a scan of every run.

use std::time::Duration;

use futures::StreamExt;

use super::GatewayState;
use super::index::Field;
use crate::model::now;

/// Runs deleted per sweep at most; a backlog is worked off over several sweeps, back to back
/// while sweeps come back full.
const BATCH: usize = 2_000;

/// Deletions in flight at once: each is three round trips (read, check, delete), so one at a
/// time removed only ~300 runs/s — less than a busy install finishes (the 200k-run soak).
const IN_FLIGHT: usize = 32;

/// The finished statuses, whose runs may be removed.
const FINISHED: [&str; 3] = ["COMPLETED", "FAILED", "CANCELLED"];

/// How often the sweep runs: a tenth of the retention, 1 s to 1 min.
pub fn period(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Sweeps until the gateway stops; off when the retention is 0.
pub(crate) async fn run(state: GatewayState) {
    let retention = state.config.runs_retention;
    if retention.is_zero() {
        return;
    }
    let period = period(retention);
    let mut backlog = false;
    loop {
        let pause = if backlog {
            // Long enough for the index to see the deletions just made.
            Duration::from_millis(200)
        } else {
            period + Duration::from_millis(fastrand::u64(0..=period.as_millis() as u64 / 4))
        };
        tokio::time::sleep(pause).await;
        backlog = sweep(&state, retention).await >= BATCH;
    }
}

/// One sweep; returns how many runs it deleted.
pub async fn sweep(state: &GatewayState, retention: Duration) -> usize {
    let (Ok(store), Ok(index)) = (state.store(), state.run_index().await) else {
        return 0;
    };
    let cutoff = now() - retention.as_secs_f64();
    let mut deleted = 0;
    for status in FINISHED {
        let runs = index.oldest(Field::Status, status, cutoff, BATCH - deleted);
        let mut results = futures::stream::iter(runs)
            .map(|run| async move { store.expire_run(&run.run_id, cutoff).await })
            .buffer_unordered(IN_FLIGHT);
        while let Some(result) = results.next().await {
            match result {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep stopped early; retrying next time");
                    return deleted;
                }
            }
        }
        if deleted >= BATCH {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(
            deleted,
            "finished runs past PYOCO_RUNS_RETENTION_SEC deleted"
        );
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_every_tenth_of_the_retention_within_1_s_to_1_min() {
        assert_eq!(period(Duration::from_secs(86_400)), Duration::from_secs(60));
        assert_eq!(period(Duration::from_secs(100)), Duration::from_secs(10));
        assert_eq!(period(Duration::from_secs(3)), Duration::from_secs(1));
    }
}
