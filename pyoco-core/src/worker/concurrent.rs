//! Several jobs at once (`Worker::set_concurrency`, `pyoco-worker --concurrency`): pulls are
//! sized to the free slots and each message is processed exactly as when one runs at a time
//! (same claim, cancel, ack, NAK and give-up rules, each run with its own grace period on
//! shutdown) — the runs only overlap, so a worker is not idle while NATS round trips are in
//! flight.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::Worker;
use crate::error::Error;
use crate::store::StoreError;
use crate::store::queue::{Delivery, Pull};

impl Worker {
    /// One round of `run` with concurrency: syncs wheels when due (nothing is running then),
    /// then pulls and processes jobs, up to `concurrency` at once, until a poll of `timeout`
    /// brings nothing while nothing runs, or shutdown. Returns the number of jobs processed.
    pub(super) async fn run_concurrently(&mut self, timeout: Duration) -> Result<usize, Error> {
        if let Some(sync) = self.wheel_sync.as_mut()
            && let Some(state) = sync.maybe_sync().await
        {
            self.heartbeat.set_wheel_sync(state).await;
        }
        self.burst(timeout).await
    }

    async fn burst(&self, timeout: Duration) -> Result<usize, Error> {
        let mut in_flight = FuturesUnordered::new();
        let mut batch: Option<Pull> = None;
        let mut batch_delivered = 0usize;
        let mut processed = 0usize;
        let mut failed: Option<Error> = None;
        // Set while a few slots are free but fewer than `refill_at`: pull when it fires.
        let mut refill: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            let stopping = self.shutdown.is_cancelled() || failed.is_some();
            let free = self.concurrency.saturating_sub(in_flight.len());
            if free == 0 || batch.is_some() || stopping {
                refill = None;
            } else if free >= refill_at(self.concurrency)
                || refill.as_ref().is_some_and(|r| r.is_elapsed())
            {
                refill = None;
                match self.open_batch(free, timeout).await {
                    Ok(b) => {
                        batch = Some(b);
                        batch_delivered = 0;
                    }
                    Err(e) => failed = Some(e),
                }
                continue;
            } else if refill.is_none() {
                refill = Some(Box::pin(tokio::time::sleep(REFILL_DELAY)));
            }
            if batch.is_none() && in_flight.is_empty() {
                return match failed {
                    Some(e) => Err(e),
                    None => Ok(processed),
                };
            }
            tokio::select! {
                // A pull already sent is drained even during shutdown: what it brings is
                // processed (with the grace period), never left to the ack-wait timeout.
                item = next_in(&mut batch), if batch.is_some() => match item {
                    Some(Ok(msg)) => {
                        batch_delivered += 1;
                        in_flight.push(self.process(msg));
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "pull ended without a message");
                    }
                    None => {
                        batch = None;
                        // A whole poll window without a job while nothing runs: round over.
                        if batch_delivered == 0 && in_flight.is_empty() {
                            return Ok(processed);
                        }
                    }
                },
                Some(_) = in_flight.next(), if !in_flight.is_empty() => processed += 1,
                () = async { if let Some(r) = refill.as_mut() { r.await } }, if refill.is_some() => {}
                _ = self.shutdown.cancelled(), if !stopping => {}
            }
        }
    }

    /// A pull request for up to `max` messages on the next tag (round-robin; long-polled with
    /// one tag, 100 ms each with several, as one at a time).
    async fn open_batch(&self, max: usize, timeout: Duration) -> Result<Pull, Error> {
        let n = self.consumers.len().max(1);
        let consumer = self
            .consumers
            .get(self.next_tag.fetch_add(1, Ordering::Relaxed) % n)
            .ok_or_else(|| Error::InvalidArgument("the worker serves no tag".into()))?;
        let wait = if n == 1 {
            timeout
        } else {
            timeout.min(Duration::from_millis(100))
        };
        Ok(consumer
            .pull(max, wait.max(Duration::from_millis(10)))
            .await?)
    }
}

/// Free slots that send the next pull request at once: half the concurrency. Pulling for
/// every slot as it freed made one pull request (and its inbox subscription) per job under
/// load. Fewer free slots pull after [`REFILL_DELAY`], so a slot freed next to long-running
/// jobs is not left idle; one job at a time is unchanged.
fn refill_at(concurrency: usize) -> usize {
    concurrency.div_ceil(2).max(1)
}

/// How long a few free slots wait for more to free before they pull anyway.
const REFILL_DELAY: Duration = Duration::from_millis(2);

/// The next item of the open pull (pending forever when there is none).
async fn next_in(batch: &mut Option<Pull>) -> Option<Result<Delivery, StoreError>> {
    match batch {
        Some(b) => b.next().await,
        None => std::future::pending().await,
    }
}
