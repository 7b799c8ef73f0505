//! The run list index: every run's sort key and filterable fields, kept current by a KV
//! watch of the runs bucket, so `GET /runs` costs a page (plus one KV get per listed run), not a
//! scan of every stored run.
//!
//! Memory is what bounds it (one entry per stored run), so an entry is small: a fixed-size
//! 48-byte slot (the run id as 128 bits when it is a UUID, field values as interned numbers),
//! a 4-byte entry in the id lookup table, and a 12-byte key (`updated_at`, slot) in one
//! ordered set per field value the run has (`chunked::ChunkedSet`). Runs with equal
//! `updated_at` are put in run-id order when read, not in the sets. The unit test
//! `a_run_costs_under_150_bytes` holds it under 150 bytes per run (128 with every field set).
//!
//! Start-up time is what a replay of every stored run costs (6.6 s at a million runs), so
//! gateways share a checkpoint of the index in NATS (`checkpoint`, `store::checkpoints`): a
//! starting gateway loads the newest one and replays only the writes after it (1.4 s at a
//! million), and a watch that ends resumes from the last revision applied.

mod checkpoint;
mod chunked;
mod table;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use table::Field;
pub(crate) use table::OrdF64;
use table::{Inner, Key, ord_bits};

use super::fanout::Hub;
use super::observed::Observed;
use crate::model::now;
use crate::store::checkpoints::IndexCheckpoints;
use crate::store::runs::StreamState;
use crate::store::{Store, StoreError};
use checkpoint::Checkpoint;
use futures::StreamExt;
use tokio::sync::watch;

/// A list query against the index.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filters: Vec<(Field, String)>,
    /// Only runs with `updated_at` strictly greater.
    pub updated_after: Option<f64>,
    /// Only runs strictly after this `(updated_at, run_id)` in list order.
    pub cursor: Option<(f64, String)>,
    pub limit: usize,
}

/// One page: run ids in list order with their sort key, and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<(f64, String)>,
    pub more: bool,
}

/// A run as [`RunIndex::oldest`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Aged {
    pub run_id: String,
    pub tag: Option<String>,
    pub updated_at: f64,
}

/// The index and its readiness.
#[derive(Debug)]
pub struct RunIndex {
    inner: RwLock<Inner>,
    ready: watch::Sender<bool>,
    /// Revision of the checkpoint the last load started from (0: none, a full replay).
    loaded_checkpoint: AtomicU64,
}

impl Default for RunIndex {
    fn default() -> Self {
        RunIndex {
            inner: RwLock::default(),
            ready: watch::Sender::new(false),
            loaded_checkpoint: AtomicU64::new(0),
        }
    }
}

impl RunIndex {
    /// True once the initial load has caught up with the bucket.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the initial load has caught up with the bucket.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The revision of the checkpoint the index was last loaded from; `None` when it was
    /// loaded by replaying the whole runs bucket.
    pub fn checkpoint_loaded(&self) -> Option<u64> {
        Some(self.loaded_checkpoint.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index holds on the heap, by size accounting (the memory test checks it
    /// against a counting allocator).
    pub fn heap_bytes(&self) -> usize {
        self.inner.read().map(|i| i.heap_bytes()).unwrap_or(0)
    }

    /// Applies one stored document (or its deletion when `value` is `None`); the follower
    /// parses once and calls [`RunIndex::apply_observed`].
    #[cfg(test)]
    fn apply(&self, run_id: &str, value: Option<&[u8]>) {
        self.apply_observed(run_id, Observed::of_write(run_id, value).as_ref());
    }

    /// Applies one write as [`Observed`] (`None`: deleted or unreadable, listed nowhere).
    pub fn apply_observed(&self, run_id: &str, seen: Option<&Observed>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        match seen {
            Some(doc) => inner.upsert(run_id, doc),
            None => inner.remove(run_id),
        }
    }

    /// The page for `query`: walks the smallest candidate set newest-first, so its cost is
    /// the page (plus skipped non-matching candidates), not the number of stored runs.
    pub fn page(&self, query: &Query) -> Page {
        let mut page = Page {
            items: Vec::new(),
            more: false,
        };
        let Ok(inner) = self.inner.read() else {
            return page;
        };
        // Filters as interned values: a value no run has matches nothing.
        let mut wanted = Vec::with_capacity(query.filters.len());
        for (field, value) in &query.filters {
            match inner.value_ids.get(value.as_str()) {
                Some(&v) => wanted.push((*field, v)),
                None => return page,
            }
        }
        let upper = query.cursor.as_ref().map(|(u, _)| Key::new(*u, u32::MAX));
        let smallest = wanted
            .iter()
            .map(|set_id| inner.by_value.get(set_id))
            .min_by_key(|set| set.map_or(0, |s| s.len()));
        let candidates: Box<dyn Iterator<Item = Key> + '_> = match smallest {
            None => Box::new(inner.all_desc(upper)),
            Some(None) => return page,
            Some(Some(set)) => Box::new(set.iter_desc(upper)),
        };
        let cursor = query
            .cursor
            .as_ref()
            .map(|(u, r)| (ord_bits(*u), r.as_str()));
        inner.in_list_order(candidates, true, |key| {
            let updated_at = key.updated_at();
            if query.updated_after.is_some_and(|after| updated_at <= after) {
                return ControlFlow::Break(());
            }
            let slot = inner.slot(key.slot);
            if !wanted.iter().all(|(f, v)| slot.values[f.at()] == *v) {
                return ControlFlow::Continue(());
            }
            let run_id = inner.run_id(key.slot);
            // Strictly after the cursor: at its `updated_at`, only lower run ids.
            if cursor.is_some_and(|(bits, r)| key.bits() == bits && run_id.as_str() >= r) {
                return ControlFlow::Continue(());
            }
            if page.items.len() == query.limit {
                page.more = true;
                return ControlFlow::Break(());
            }
            page.items.push((updated_at, run_id));
            ControlFlow::Continue(())
        });
        page
    }

    /// Up to `limit` runs whose `field` is `value` and whose `updated_at` is before
    /// `before`, oldest first, with their tag (the orphan sweep's candidates: O(limit)).
    pub fn oldest(&self, field: Field, value: &str, before: f64, limit: usize) -> Vec<Aged> {
        let mut out = Vec::new();
        let Ok(inner) = self.inner.read() else {
            return out;
        };
        let Some(set) = inner
            .value_ids
            .get(value)
            .and_then(|v| inner.by_value.get(&(field, *v)))
        else {
            return out;
        };
        let first = Key {
            hi: 0,
            lo: 0,
            slot: 0,
        };
        inner.in_list_order(set.iter_asc(first), false, |key| {
            let updated_at = key.updated_at();
            if updated_at >= before || out.len() == limit {
                return ControlFlow::Break(());
            }
            out.push(Aged {
                run_id: inner.run_id(key.slot),
                tag: inner.value(key.slot, Field::Tag).map(|t| t.to_string()),
                updated_at,
            });
            ControlFlow::Continue(())
        });
        out
    }

    /// Runs per status (for metrics); `since` counts only runs updated at or after it.
    pub fn status_counts(&self, since: Option<f64>) -> Vec<(String, u64)> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let mut counts: Vec<(String, u64)> = inner
            .by_value
            .iter()
            .filter(|((field, v), _)| *field == Field::Status && *v != 0)
            .map(|((_, v), set)| {
                let n = match since {
                    Some(since) => set.count_from(Key::new(since, 0)),
                    None => set.len(),
                };
                (inner.values[*v as usize].to_string(), n as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.sort();
        counts
    }

    /// Keeps the index current from the runs bucket until the task is dropped: loads the
    /// latest checkpoint (or replays the latest value of every key without one), replays the
    /// writes after it, marks itself ready when caught up, then follows every change, handing
    /// each write to the SSE watchers' `hub` too, and writes checkpoints as `policy` says. A
    /// watch that ends is resumed from the last revision applied.
    pub async fn follow(self: Arc<Self>, store: Store, hub: Arc<Hub>, policy: CheckpointPolicy) {
        // 250 ms doubling to 2 s, jittered, so many gateways do not re-watch in step.
        let retry =
            crate::backoff::Backoff::new(Duration::from_millis(250), 2.0, Duration::from_secs(2));
        let mut follower = Follower {
            index: self,
            store,
            checkpoints: None,
            hub,
            policy,
            at: None,
            writer: Writer::default(),
        };
        let mut attempt = 0;
        loop {
            match follower.follow_once().await {
                Ok(()) => attempt = 0,
                Err(e) => tracing::warn!(error = %e, "run index watch ended; restarting"),
            }
            attempt += 1;
            tokio::time::sleep(retry.jittered(attempt)).await;
        }
    }

    /// Replaces the whole index (a checkpoint load, or a start from scratch).
    fn replace(&self, inner: Inner) {
        if let Ok(mut current) = self.inner.write() {
            *current = inner;
        }
    }
}

/// When a gateway writes a checkpoint of its index (`PYOCO_INDEX_CHECKPOINT_SEC`,
/// `PYOCO_INDEX_CHECKPOINT_MIN_RUNS`).
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// Least time between two writes by this gateway; zero: none written or read.
    pub interval: Duration,
    /// Runs the index must hold, and writes seen since the last checkpoint, before a write.
    pub min_runs: usize,
}

impl CheckpointPolicy {
    pub fn of(config: &crate::config::Config) -> CheckpointPolicy {
        CheckpointPolicy {
            interval: config.index_checkpoint_interval,
            min_runs: config.index_checkpoint_min_runs,
        }
    }

    fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }
}

/// Largest checkpoint a gateway reads (a million runs take ~31 MB).
const MAX_CHECKPOINT_BYTES: usize = 1 << 30;

/// Writes replayed again before the revision a resumed watch or a loaded checkpoint starts
/// from. Applying a write twice changes nothing, and this covers a server that lost its last
/// writes (a machine crash before the store was synced) and numbered new ones the same.
const REPLAY_MARGIN: u64 = 10_000;

/// What the index holds: every write of the runs bucket up to `revision`, of the stream
/// created at `created_ns`.
#[derive(Debug, Clone, Copy)]
struct Position {
    created_ns: i128,
    revision: u64,
}

/// Checkpoint writing state of one gateway.
#[derive(Debug, Default)]
struct Writer {
    /// Revision of the newest checkpoint this gateway loaded or wrote.
    covered: Arc<AtomicU64>,
    last_attempt: Option<Instant>,
    in_flight: Arc<AtomicBool>,
}

struct Follower {
    index: Arc<RunIndex>,
    store: Store,
    checkpoints: Option<IndexCheckpoints>,
    hub: Arc<Hub>,
    policy: CheckpointPolicy,
    at: Option<Position>,
    writer: Writer,
}

impl Follower {
    async fn follow_once(&mut self) -> Result<(), StoreError> {
        let state = self.store.runs().stream_state().await?;
        if self.policy.enabled() && self.checkpoints.is_none() {
            match self.store.index_checkpoints().await {
                Ok(c) => self.checkpoints = Some(c),
                Err(e) => tracing::warn!(error = %e, "run index checkpoints unavailable"),
            }
        }
        let resume = self
            .at
            .filter(|at| at.created_ns == state.created_ns && at.revision <= state.last_revision);
        let from = match resume {
            Some(at) => at.revision,
            None => {
                // A start, or the bucket was created again: start from a clean index.
                self.index.replace(Inner::default());
                if let Some(stats) = self.hub.stats() {
                    stats.clear();
                }
                let loaded = self.load_checkpoint(&state).await;
                self.index
                    .loaded_checkpoint
                    .store(loaded.unwrap_or(0), Ordering::Relaxed);
                self.at = Some(Position {
                    created_ns: state.created_ns,
                    revision: loaded.unwrap_or(0),
                });
                loaded.unwrap_or(0)
            }
        };
        let mut watch = if from == 0 {
            self.store.runs().watch_with_history(">").await?
        } else {
            let start = from.saturating_sub(REPLAY_MARGIN) + 1;
            self.store.runs().watch_all_from(start).await?
        };
        if state.messages == 0 || from >= state.last_revision {
            self.index.ready.send_replace(true);
        }
        // Also checks for a due checkpoint while no write comes (after a burst).
        let mut tick = tokio::time::interval(self.policy.interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                event = watch.next() => event,
                _ = tick.tick() => {
                    if self.index.is_ready() {
                        self.maybe_checkpoint(state.created_ns);
                    }
                    continue;
                }
            };
            let Some(event) = event else { break };
            let event = event?;
            // Parsed once for the index, the counters and the watchers.
            let seen = Observed::of_write(&event.key, event.value.as_deref());
            self.index.apply_observed(&event.key, seen.as_ref());
            self.hub.publish(
                &event.key,
                event.revision,
                event.value.as_ref(),
                seen.as_ref(),
            );
            if let Some(at) = &mut self.at {
                at.revision = at.revision.max(event.revision);
            }
            if event.pending == 0 {
                self.index.ready.send_replace(true);
            }
            if self.index.is_ready() {
                self.maybe_checkpoint(state.created_ns);
            }
        }
        Err(StoreError::unavailable(
            "watch runs",
            "watch stream closed".into(),
        ))
    }

    /// Loads the stored checkpoint into the index (and the counters) and returns its revision;
    /// `None` when there is none or it cannot be used (then the bucket is replayed).
    async fn load_checkpoint(&mut self, state: &StreamState) -> Option<u64> {
        let checkpoints = self.checkpoints.as_ref()?;
        let started = Instant::now();
        let bytes = match checkpoints.get(MAX_CHECKPOINT_BYTES).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "run index checkpoint not read; replaying the bucket");
                return None;
            }
        };
        let size = bytes.len();
        let stats = self.hub.stats().cloned();
        let state = *state;
        let built = blocking(move || {
            let checkpoint = Checkpoint::decode(&bytes)?;
            drop(bytes);
            if checkpoint.stream_created_ns != state.created_ns {
                return Err("it was taken of a runs bucket since deleted".to_string());
            }
            if checkpoint.revision > state.last_revision {
                return Err(format!(
                    "it is at revision {}, the bucket only at {}",
                    checkpoint.revision, state.last_revision
                ));
            }
            if checkpoint.runs.len() as u64 > state.messages {
                return Err(format!(
                    "it lists {} runs, the bucket holds {} writes",
                    checkpoint.runs.len(),
                    state.messages
                ));
            }
            let inner = Inner::restored(checkpoint.values, checkpoint.runs)?;
            if let Some(stats) = stats {
                inner.restore_stats(&stats, checkpoint.stats.unwrap_or_default(), now());
            }
            Ok((inner, checkpoint.revision))
        });
        match built {
            Ok((inner, revision)) => {
                let runs = inner.by_id.len();
                self.index.replace(inner);
                self.writer.covered.store(revision, Ordering::Relaxed);
                tracing::info!(
                    runs,
                    revision,
                    bytes = size,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "run index loaded from its checkpoint"
                );
                Some(revision)
            }
            Err(reason) => {
                // The counters may hold part of it: start them over with the replay.
                if let Some(stats) = self.hub.stats() {
                    stats.clear();
                }
                tracing::warn!(%reason, "run index checkpoint not used; replaying the bucket");
                None
            }
        }
    }

    /// Writes a checkpoint when the policy says one is due (called between two writes, so
    /// the index and the counters agree with `self.at`). The upload runs in its own task.
    fn maybe_checkpoint(&mut self, created_ns: i128) {
        let (true, Some(at)) = (self.checkpoints.is_some(), self.at) else {
            return;
        };
        let policy = self.policy;
        let covered = self.writer.covered.load(Ordering::Relaxed);
        // Called for every write: the cheap tests first, the index's lock last.
        if !policy.enabled()
            || at.revision.saturating_sub(covered) < policy.min_runs.max(1) as u64
            || self.writer.in_flight.load(Ordering::Acquire)
            || self
                .writer
                .last_attempt
                .is_some_and(|t| t.elapsed() < policy.interval)
            || self.index.len() < policy.min_runs
        {
            return;
        }
        self.writer.last_attempt = Some(Instant::now());
        let started = Instant::now();
        let encoded = {
            let Ok(inner) = self.index.inner.read() else {
                return;
            };
            blocking(|| {
                let stats = self.hub.stats().map(|s| s.save(now()));
                checkpoint::encode(&inner, stats, created_ns, at.revision)
            })
        };
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "run index checkpoint not encoded");
                return;
            }
        };
        let encode_ms = started.elapsed().as_millis() as u64;
        let Some(checkpoints) = self.checkpoints.clone() else {
            return;
        };
        let covered = self.writer.covered.clone();
        let in_flight = self.writer.in_flight.clone();
        in_flight.store(true, Ordering::Release);
        tokio::spawn(async move {
            // Another gateway may have stored a newer one meanwhile: keep it.
            let newer = matches!(checkpoints.revision().await, Ok(Some(r)) if r >= at.revision);
            if newer {
                tracing::debug!("run index checkpoint skipped: a newer one is stored");
            } else {
                match checkpoints.put(&bytes, at.revision).await {
                    Ok(()) => tracing::info!(
                        revision = at.revision,
                        bytes = bytes.len(),
                        encode_ms,
                        "run index checkpoint written"
                    ),
                    Err(e) => tracing::warn!(error = %e, "run index checkpoint not written"),
                }
            }
            covered.fetch_max(at.revision, Ordering::Relaxed);
            in_flight.store(false, Ordering::Release);
        });
    }
}

/// Runs CPU-bound work of the follower (a checkpoint's encoding or load, ~0.1–1 s at a
/// million runs) without stalling the other tasks of a multi-threaded runtime's thread.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(updated: f64, status: &str, flow: &str) -> Vec<u8> {
        serde_json::json!({"updated_at": updated, "status": status, "flow_name": flow, "tag": "default"}).to_string().into_bytes()
    }

    #[test]
    fn pages_newest_first_with_filters_and_cursor() {
        let index = RunIndex::default();
        for i in 0..10 {
            let status = if i % 2 == 0 { "COMPLETED" } else { "FAILED" };
            index.apply(&format!("run-{i}"), Some(&doc(i as f64, status, "f")));
        }
        let page = index.page(&Query {
            limit: 3,
            ..Default::default()
        });
        assert_eq!(
            page.items
                .iter()
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>(),
            ["run-9", "run-8", "run-7"]
        );
        assert!(page.more);
        let (u, r) = page.items.last().cloned().unwrap();
        let next = index.page(&Query {
            limit: 3,
            cursor: Some((u, r)),
            ..Default::default()
        });
        assert_eq!(next.items[0].1, "run-6");
        let failed = index.page(&Query {
            limit: 10,
            filters: vec![(Field::Status, "FAILED".into())],
            ..Default::default()
        });
        assert_eq!(failed.items.len(), 5);
        assert!(!failed.more);
        let recent = index.page(&Query {
            limit: 10,
            updated_after: Some(7.0),
            ..Default::default()
        });
        assert_eq!(recent.items.len(), 2);
        // An update moves a run to the top and changes its status.
        index.apply("run-0", Some(&doc(100.0, "FAILED", "f")));
        assert_eq!(
            index
                .page(&Query {
                    limit: 1,
                    ..Default::default()
                })
                .items[0]
                .1,
            "run-0"
        );
        assert_eq!(
            index.status_counts(None),
            vec![("COMPLETED".into(), 4), ("FAILED".into(), 6)]
        );
        assert_eq!(
            index.status_counts(Some(8.0)),
            vec![("COMPLETED".into(), 1), ("FAILED".into(), 2)]
        );
        index.apply("run-0", None);
        assert_eq!(index.len(), 9);
        let nothing = index.page(&Query {
            limit: 5,
            filters: vec![(Field::Flow, "other".into())],
            ..Default::default()
        });
        assert!(nothing.items.is_empty());
    }

    #[test]
    fn ties_on_updated_at_order_by_run_id_descending() {
        let index = RunIndex::default();
        for id in ["a", "c", "b"] {
            index.apply(id, Some(&doc(1.0, "PENDING", "f")));
        }
        let page = index.page(&Query {
            limit: 5,
            ..Default::default()
        });
        assert_eq!(
            page.items
                .iter()
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
    }

    #[test]
    fn a_cursor_inside_a_tie_continues_by_run_id() {
        let index = RunIndex::default();
        for id in ["b", "d", "a", "c"] {
            index.apply(id, Some(&doc(5.0, "COMPLETED", "f")));
        }
        index.apply("z", Some(&doc(4.0, "COMPLETED", "f")));
        let ids = |page: &Page| {
            page.items
                .iter()
                .map(|(_, r)| r.clone())
                .collect::<Vec<_>>()
        };
        let first = index.page(&Query {
            limit: 2,
            ..Default::default()
        });
        assert_eq!(ids(&first), ["d", "c"]);
        assert!(first.more);
        let rest = index.page(&Query {
            limit: 5,
            cursor: Some((5.0, "c".into())),
            ..Default::default()
        });
        assert_eq!(ids(&rest), ["b", "a", "z"]);
        assert!(!rest.more);
        let oldest = index.oldest(Field::Status, "COMPLETED", 5.5, 3);
        assert_eq!(
            oldest.iter().map(|a| a.run_id.as_str()).collect::<Vec<_>>(),
            ["z", "a", "b"]
        );
        assert_eq!(oldest[0].tag.as_deref(), Some("default"));
    }

    #[test]
    fn run_ids_come_back_as_written() {
        let index = RunIndex::default();
        let ids = [
            "0f8fad5b-d9cb-469f-a165-70867728950e".to_string(),
            // Upper case and a UUID whose high word marks other ids stay text.
            "7C9E6679-7425-40DE-944B-E07FC1F90AE7".to_string(),
            "ffffffff-ffff-ffff-0000-000000000001".to_string(),
            "run-with-a-name".to_string(),
            "f".repeat(300),
        ];
        for (i, id) in ids.iter().enumerate() {
            index.apply(id, Some(&doc(i as f64, "RUNNING", "f")));
        }
        let listed = index.page(&Query {
            limit: 10,
            ..Default::default()
        });
        let mut want = ids.to_vec();
        want.reverse();
        assert_eq!(
            listed.items.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
            want
        );
        // Each is found again by its text (an update replaces, a delete removes).
        for id in &ids {
            index.apply(id, Some(&doc(10.0, "COMPLETED", "g")));
        }
        assert_eq!(index.len(), ids.len());
        assert_eq!(index.status_counts(None), vec![("COMPLETED".into(), 5)]);
        for id in &ids {
            index.apply(id, None);
        }
        assert!(index.is_empty());
        assert!(index.status_counts(None).is_empty());
    }

    #[test]
    fn runs_without_status_are_listed_but_not_counted() {
        let index = RunIndex::default();
        index.apply("bare", Some(b"{}"));
        index.apply("done", Some(&doc(1.0, "COMPLETED", "f")));
        let page = index.page(&Query {
            limit: 5,
            ..Default::default()
        });
        assert_eq!(page.items, vec![(1.0, "done".into()), (0.0, "bare".into())]);
        assert_eq!(index.status_counts(None), vec![("COMPLETED".into(), 1)]);
    }

    /// Freed slots are reused: replacing runs does not grow the index.
    #[test]
    fn deleted_runs_leave_room_for_new_ones() {
        let index = RunIndex::default();
        for i in 0..20_000 {
            index.apply(&new_run_id_for(i), Some(&doc(i as f64, "COMPLETED", "f")));
        }
        let full = index.heap_bytes();
        for i in 0..20_000 {
            index.apply(&new_run_id_for(i), None);
            index.apply(
                &new_run_id_for(i + 20_000),
                Some(&doc((i + 20_000) as f64, "COMPLETED", "f")),
            );
        }
        assert_eq!(index.len(), 20_000);
        assert!(
            index.heap_bytes() <= full + full / 10,
            "{} > {full}",
            index.heap_bytes()
        );
    }

    /// What the index keeps per stored run, by size accounting (deterministic, not a
    /// timing), with every indexed field set — the most a run costs: under 150 bytes, so a
    /// million stored runs cost ~150 MB at most. Updating every run keeps the footprint.
    #[test]
    fn a_run_costs_under_150_bytes() {
        const RUNS: usize = 100_000;
        let snapshot = |i: usize, updated: f64| {
            serde_json::json!({
                "flow_name": format!("flow-{}", i % 5),
                "tag": (["default", "gpu", "io"][i % 3]),
                "tenant_id": format!("tenant-{}", i % 4),
                "schedule_id": format!("schedule-{}", i % 7),
                "workflow_yaml_sha256": format!("{:064x}", i % 11),
                "status": (if i % 10 == 9 { "FAILED" } else { "COMPLETED" }),
                "updated_at": updated,
                "params": {"x": i},
            })
            .to_string()
            .into_bytes()
        };
        let ids: Vec<String> = (0..RUNS).map(|_| crate::model::new_run_id()).collect();
        let index = RunIndex::default();
        for (i, id) in ids.iter().enumerate() {
            index.apply(id, Some(&snapshot(i, 1.7e9 + i as f64 * 0.01)));
        }
        let bytes = index.heap_bytes();
        eprintln!("run index: {} bytes per run", bytes / RUNS);
        assert!(bytes / RUNS <= 150, "{} bytes per run", bytes / RUNS);
        for (i, id) in ids.iter().enumerate().step_by(7) {
            index.apply(id, Some(&snapshot(i + 1, 1.8e9 + i as f64 * 0.01)));
        }
        assert_eq!(index.len(), RUNS);
        assert!(index.heap_bytes() <= bytes + bytes / 10);
        let page = index.page(&Query {
            filters: vec![(Field::Flow, "flow-3".into()), (Field::Tag, "gpu".into())],
            limit: 50,
            ..Default::default()
        });
        assert_eq!(page.items.len(), 50);
        assert!(page.more);
        assert!(page.items.windows(2).all(|w| w[0].0 > w[1].0));
    }

    fn new_run_id_for(i: u128) -> String {
        uuid::Uuid::from_u128(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) + 1)
            .hyphenated()
            .to_string()
    }
}
