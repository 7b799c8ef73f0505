//! The run list index: every run's sort key and filterable fields, kept current by a KV
//! watch of the runs bucket, so `GET /runs` costs a page (plus one KV get per listed run), not a
//! scan of every stored run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::fanout::Hub;
use crate::store::{RunStore, StoreError};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use crate::model::json;

/// A run's position in the list: newest `updated_at` first, ties by `run_id` descending (the
/// original's order). Stored ascending and read backwards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    updated_at: OrdF64,
    run_id: Arc<str>,
}

/// `f64` with a total order (runs without `updated_at` sort as 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrdF64(pub(crate) f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The fields `GET /runs` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Status,
    Flow,
    Tag,
    WorkflowYamlSha256,
    ScheduleId,
    /// The run's `tenant_id` (lists of an API key show its tenant's runs only).
    Tenant,
}

const FIELDS: [Field; 6] = [
    Field::Status,
    Field::Flow,
    Field::Tag,
    Field::WorkflowYamlSha256,
    Field::ScheduleId,
    Field::Tenant,
];

#[derive(Debug)]
struct Entry {
    key: Key,
    values: [Option<Arc<str>>; 6],
}

/// Only what the index needs from a snapshot; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct Indexed {
    #[serde(default)]
    updated_at: Option<f64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    flow_name: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    workflow_yaml_sha256: Option<String>,
    #[serde(default)]
    schedule_id: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    order: BTreeSet<Key>,
    entries: HashMap<Arc<str>, Entry>,
    by_value: HashMap<(Field, Arc<str>), BTreeSet<Key>>,
    /// Interned field values: a million runs share a handful of statuses, flows and tags.
    strings: HashSet<Arc<str>>,
}

impl Inner {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(existing) = self.strings.get(s) {
            return existing.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        self.strings.insert(arc.clone());
        arc
    }

    fn remove(&mut self, run_id: &str) {
        let Some(entry) = self.entries.remove(run_id) else {
            return;
        };
        self.order.remove(&entry.key);
        for (field, value) in FIELDS.iter().zip(entry.values.iter()) {
            if let Some(value) = value {
                let slot = (*field, value.clone());
                if let Some(set) = self.by_value.get_mut(&slot) {
                    set.remove(&entry.key);
                    if set.is_empty() {
                        self.by_value.remove(&slot);
                    }
                }
            }
        }
    }

    fn upsert(&mut self, run_id: &str, doc: Indexed) {
        self.remove(run_id);
        let run_id = self.intern_run_id(run_id);
        let key = Key {
            updated_at: OrdF64(doc.updated_at.unwrap_or(0.0)),
            run_id: run_id.clone(),
        };
        let raw = [
            doc.status,
            doc.flow_name,
            doc.tag,
            doc.workflow_yaml_sha256,
            doc.schedule_id,
            doc.tenant_id,
        ];
        let mut values: [Option<Arc<str>>; 6] = Default::default();
        for (i, value) in raw.into_iter().enumerate() {
            if let Some(v) = value {
                let v = self.intern(&v);
                self.by_value
                    .entry((FIELDS[i], v.clone()))
                    .or_default()
                    .insert(key.clone());
                values[i] = Some(v);
            }
        }
        self.order.insert(key.clone());
        self.entries.insert(run_id, Entry { key, values });
    }

    /// Run ids are unique: they are not interned with the shared values.
    fn intern_run_id(&self, run_id: &str) -> Arc<str> {
        Arc::from(run_id)
    }
}

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
        self.inner.read().map(|i| i.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one stored document (or its deletion when `value` is `None`).
    pub fn apply(&self, run_id: &str, value: Option<&[u8]>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        match value.map(json::from_slice::<Indexed>) {
            Some(Ok(doc)) => inner.upsert(run_id, doc),
            // A document we cannot read is listed nowhere rather than breaking every list.
            Some(Err(e)) => {
                tracing::warn!(run_id, error = %e, "unreadable run snapshot left out of the index");
                inner.remove(run_id);
            }
            None => inner.remove(run_id),
        }
    }

    /// The page for `query`: walks the smallest candidate set newest-first, so its cost is
    /// the page (plus skipped non-matching candidates), not the number of stored runs.
    pub fn page(&self, query: &Query) -> Page {
        let Ok(inner) = self.inner.read() else {
            return Page {
                items: Vec::new(),
                more: false,
            };
        };
        let empty = BTreeSet::new();
        let mut candidates = &inner.order;
        for (field, value) in &query.filters {
            let set = inner
                .by_value
                .get(&(*field, Arc::from(value.as_str())))
                .unwrap_or(&empty);
            if set.len() < candidates.len() {
                candidates = set;
            }
        }
        let upper = match &query.cursor {
            Some((u, r)) => Bound::Excluded(Key {
                updated_at: OrdF64(*u),
                run_id: Arc::from(r.as_str()),
            }),
            None => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut more = false;
        for key in candidates.range((Bound::Unbounded, upper)).rev() {
            if query
                .updated_after
                .is_some_and(|after| key.updated_at.0 <= after)
            {
                break;
            }
            let Some(entry) = inner.entries.get(&key.run_id) else {
                continue;
            };
            let matches = query.filters.iter().all(|(field, value)| {
                let i = FIELDS.iter().position(|f| f == field).unwrap_or(0);
                entry.values[i].as_deref() == Some(value.as_str())
            });
            if !matches {
                continue;
            }
            if items.len() == query.limit {
                more = true;
                break;
            }
            items.push((key.updated_at.0, key.run_id.to_string()));
        }
        Page { items, more }
    }

    /// Up to `limit` runs whose `field` is `value` and whose `updated_at` is before
    /// `before`, oldest first, with their tag (the orphan sweep's candidates: O(limit)).
    pub fn oldest(&self, field: Field, value: &str, before: f64, limit: usize) -> Vec<Aged> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let Some(set) = inner.by_value.get(&(field, Arc::from(value))) else {
            return Vec::new();
        };
        let tag = FIELDS.iter().position(|f| *f == Field::Tag).unwrap_or(0);
        set.iter()
            .take_while(|key| key.updated_at.0 < before)
            .take(limit)
            .map(|key| Aged {
                run_id: key.run_id.to_string(),
                tag: inner
                    .entries
                    .get(&key.run_id)
                    .and_then(|e| e.values[tag].as_deref().map(str::to_string)),
                updated_at: key.updated_at.0,
            })
            .collect()
    }

    /// Runs per status (for metrics); `since` counts only runs updated at or after it.
    pub fn status_counts(&self, since: Option<f64>) -> Vec<(String, u64)> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let lower = Key {
            updated_at: OrdF64(since.unwrap_or(f64::NEG_INFINITY)),
            run_id: Arc::from(""),
        };
        let mut counts: Vec<(String, u64)> = inner
            .by_value
            .iter()
            .filter(|((field, _), _)| *field == Field::Status)
            .map(|((_, status), set)| {
                let n = if since.is_some() {
                    set.range(lower.clone()..).count() as u64
                } else {
                    set.len() as u64
                };
                (status.to_string(), n)
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
            self.apply(&event.key, event.value.as_deref());
            hub.publish(&event.key, event.revision, event.value.as_ref());
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
}
