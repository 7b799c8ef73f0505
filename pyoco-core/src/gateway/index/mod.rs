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

mod chunked;
mod table;

use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use table::Field;
pub(crate) use table::OrdF64;
use table::{Inner, Key, ord_bits};

use super::fanout::Hub;
use super::observed::Observed;
use crate::store::{RunStore, StoreError};
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
}

impl Default for RunIndex {
    fn default() -> Self {
        RunIndex {
            inner: RwLock::default(),
            ready: watch::Sender::new(false),
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

    /// Keeps the index current from the runs bucket until the task is dropped: replays the
    /// latest value of every key, marks itself ready when caught up, then follows every
    /// change, handing each write to the SSE watchers' `hub` too. Restarts the watch (from
    /// scratch) if it ends.
    pub async fn follow(self: Arc<Self>, runs: RunStore, hub: Arc<Hub>) {
        // 250 ms doubling to 2 s, jittered, so many gateways do not re-watch in step.
        let retry =
            crate::backoff::Backoff::new(Duration::from_millis(250), 2.0, Duration::from_secs(2));
        let mut attempt = 0;
        loop {
            match self.follow_once(&runs, &hub).await {
                Ok(()) => attempt = 0,
                Err(e) => tracing::warn!(error = %e, "run index watch ended; restarting"),
            }
            attempt += 1;
            tokio::time::sleep(retry.jittered(attempt)).await;
        }
    }

    async fn follow_once(&self, runs: &RunStore, hub: &Hub) -> Result<(), StoreError> {
        let mut watch = runs.watch_with_history(">").await?;
        let empty = runs.is_empty().await;
        // A restarted watch replays everything: start from a clean index.
        if let Ok(mut inner) = self.inner.write() {
            *inner = Inner::default();
        }
        if empty {
            self.ready.send_replace(true);
        }
        while let Some(event) = watch.next().await {
            let event = event?;
            // Parsed once for the index, the counters and the watchers.
            let seen = Observed::of_write(&event.key, event.value.as_deref());
            self.apply_observed(&event.key, seen.as_ref());
            hub.publish(
                &event.key,
                event.revision,
                event.value.as_ref(),
                seen.as_ref(),
            );
            if event.pending == 0 {
                self.ready.send_replace(true);
            }
        }
        Err(StoreError::unavailable(
            "watch runs",
            "watch stream closed".into(),
        ))
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
