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

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chunked::ChunkedSet;
use hashbrown::HashTable;

use super::fanout::Hub;
use crate::store::{RunStore, StoreError};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use crate::model::json;

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

impl Field {
    fn at(self) -> usize {
        self as usize
    }
}

/// `f64` bits whose unsigned order is [`f64::total_cmp`]'s.
fn ord_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn from_ord_bits(o: u64) -> f64 {
    f64::from_bits(if o >> 63 == 1 { o & !(1 << 63) } else { !o })
}

/// A run's place in one ordered set: `updated_at` (as [`ord_bits`], split so the key is 12
/// bytes, not 16), then its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    hi: u32,
    lo: u32,
    slot: u32,
}

impl Key {
    fn new(updated_at: f64, slot: u32) -> Key {
        let bits = ord_bits(updated_at);
        Key {
            hi: (bits >> 32) as u32,
            lo: bits as u32,
            slot,
        }
    }

    fn bits(self) -> u64 {
        u64::from(self.hi) << 32 | u64::from(self.lo)
    }

    fn updated_at(self) -> f64 {
        from_ord_bits(self.bits())
    }
}

/// High word of a [`Slot::id`] naming a run id that is not a UUID (its low word indexes
/// `Inner::other_ids`). UUIDs with this high word are stored like other ids.
const OTHER_ID: u64 = u64::MAX;

/// A run id as the index holds it: a lower-case hyphenated UUID (what pyoco and the original
/// generate) as its 128 bits, anything else as text.
#[derive(Debug, Clone, Copy)]
enum RunId<'a> {
    Uuid(u128),
    Other(&'a str),
}

impl<'a> RunId<'a> {
    fn of(run_id: &'a str) -> RunId<'a> {
        // Only the form that formats back to the same text (36 characters, lower case).
        if run_id.len() == 36
            && !run_id.bytes().any(|b| b.is_ascii_uppercase())
            && let Ok(uuid) = uuid::Uuid::try_parse(run_id)
        {
            let v = uuid.as_u128();
            if (v >> 64) as u64 != OTHER_ID {
                return RunId::Uuid(v);
            }
        }
        RunId::Other(run_id)
    }

    fn hash(self, hasher: &RandomState) -> u64 {
        match self {
            RunId::Uuid(v) => hasher.hash_one(v),
            RunId::Other(s) => hasher.hash_one(s),
        }
    }
}

/// One run: 48 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// A UUID's high and low words, or `[OTHER_ID, index into other_ids]`.
    id: [u64; 2],
    updated_at: f64,
    /// The interned value of each of [`FIELDS`] (0: absent).
    values: [u32; 6],
}

/// Slots per allocation: the slot table grows by this, not by doubling.
const SLOTS_PER_CHUNK: usize = 4096;

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

#[derive(Debug)]
struct Inner {
    /// Every run, by slot number; freed slots are reused.
    slots: Vec<Vec<Slot>>,
    free: Vec<u32>,
    /// Slot numbers, found by run id.
    by_id: HashTable<u32>,
    hasher: RandomState,
    /// Run ids that are not UUIDs (tests, other writers), and their free places.
    other_ids: Vec<Box<str>>,
    free_other: Vec<u64>,
    /// Interned field values (0 is "absent"): a million runs share a handful of statuses,
    /// flows and tags.
    values: Vec<Arc<str>>,
    value_ids: HashMap<Arc<str>, u32>,
    /// The runs of each field value, by `updated_at`. Every run is in one status set (value 0
    /// when it has none), so together they are the list of all runs.
    by_value: HashMap<(Field, u32), ChunkedSet<Key>>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashTable::new(),
            hasher: RandomState::new(),
            other_ids: Vec::new(),
            free_other: Vec::new(),
            values: vec![Arc::from("")],
            value_ids: HashMap::new(),
            by_value: HashMap::new(),
        }
    }
}

impl Inner {
    fn slot(&self, n: u32) -> &Slot {
        let n = n as usize;
        &self.slots[n / SLOTS_PER_CHUNK][n % SLOTS_PER_CHUNK]
    }

    fn slot_mut(&mut self, n: u32) -> &mut Slot {
        let n = n as usize;
        &mut self.slots[n / SLOTS_PER_CHUNK][n % SLOTS_PER_CHUNK]
    }

    fn run_id(&self, n: u32) -> String {
        match self.slot(n).id {
            [OTHER_ID, i] => self.other_ids[i as usize].to_string(),
            [hi, lo] => uuid::Uuid::from_u128(u128::from(hi) << 64 | u128::from(lo))
                .hyphenated()
                .to_string(),
        }
    }

    fn value(&self, n: u32, field: Field) -> Option<&Arc<str>> {
        match self.slot(n).values[field.at()] {
            0 => None,
            v => self.values.get(v as usize),
        }
    }

    fn find(&self, id: RunId<'_>) -> Option<u32> {
        let hash = id.hash(&self.hasher);
        self.by_id
            .find(hash, |&n| match (id, self.slot(n).id) {
                (RunId::Uuid(v), [hi, lo]) => {
                    hi != OTHER_ID && v == (u128::from(hi) << 64 | u128::from(lo))
                }
                (RunId::Other(s), [OTHER_ID, i]) => *self.other_ids[i as usize] == *s,
                _ => false,
            })
            .copied()
    }

    fn intern(&mut self, s: String) -> u32 {
        if let Some(&id) = self.value_ids.get(s.as_str()) {
            return id;
        }
        let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        let arc: Arc<str> = Arc::from(s);
        self.values.push(arc.clone());
        self.value_ids.insert(arc, id);
        id
    }

    /// The sets a slot is in: its status (even none), and each other field it has.
    fn sets_of(slot: &Slot) -> impl Iterator<Item = (Field, u32)> + '_ {
        FIELDS
            .iter()
            .zip(slot.values)
            .filter(|(field, v)| **field == Field::Status || *v != 0)
            .map(|(field, v)| (*field, v))
    }

    fn unlink(&mut self, n: u32) {
        let slot = *self.slot(n);
        let key = Key::new(slot.updated_at, n);
        for set_id in Self::sets_of(&slot) {
            if let Some(set) = self.by_value.get_mut(&set_id) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_value.remove(&set_id);
                }
            }
        }
    }

    fn link(&mut self, n: u32) {
        let slot = *self.slot(n);
        let key = Key::new(slot.updated_at, n);
        for set_id in Self::sets_of(&slot) {
            self.by_value.entry(set_id).or_default().insert(key);
        }
    }

    fn remove(&mut self, run_id: &str) {
        let id = RunId::of(run_id);
        let Some(n) = self.find(id) else {
            return;
        };
        self.unlink(n);
        let hash = id.hash(&self.hasher);
        if let Ok(entry) = self.by_id.find_entry(hash, |&m| m == n) {
            entry.remove();
        }
        if let [OTHER_ID, i] = self.slot(n).id {
            self.other_ids[i as usize] = Box::from("");
            self.free_other.push(i);
        }
        *self.slot_mut(n) = Slot::default();
        self.free.push(n);
    }

    /// A slot for a run not in the index yet, entered in the id table.
    fn add(&mut self, run_id: &str) -> u32 {
        let id = match RunId::of(run_id) {
            RunId::Uuid(v) => [(v >> 64) as u64, v as u64],
            RunId::Other(s) => {
                let i = match self.free_other.pop() {
                    Some(i) => {
                        self.other_ids[i as usize] = Box::from(s);
                        i
                    }
                    None => {
                        self.other_ids.push(Box::from(s));
                        self.other_ids.len() as u64 - 1
                    }
                };
                [OTHER_ID, i]
            }
        };
        let n = match self.free.pop() {
            Some(n) => n,
            None => {
                let n = self.slots.iter().map(Vec::len).sum::<usize>();
                if self.slots.last().is_none_or(|c| c.len() == SLOTS_PER_CHUNK) {
                    self.slots.push(Vec::with_capacity(SLOTS_PER_CHUNK));
                }
                if let Some(chunk) = self.slots.last_mut() {
                    chunk.push(Slot::default());
                }
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        self.slot_mut(n).id = id;
        let hash = RunId::of(run_id).hash(&self.hasher);
        let Inner {
            by_id,
            slots,
            other_ids,
            hasher,
            ..
        } = self;
        by_id.insert_unique(hash, n, |&m| {
            let m = m as usize;
            match slots[m / SLOTS_PER_CHUNK][m % SLOTS_PER_CHUNK].id {
                [OTHER_ID, i] => RunId::Other(&other_ids[i as usize]).hash(hasher),
                [hi, lo] => RunId::Uuid(u128::from(hi) << 64 | u128::from(lo)).hash(hasher),
            }
        });
        n
    }

    fn upsert(&mut self, run_id: &str, doc: Indexed) {
        let n = match self.find(RunId::of(run_id)) {
            Some(n) => {
                self.unlink(n);
                n
            }
            None => self.add(run_id),
        };
        let raw = [
            doc.status,
            doc.flow_name,
            doc.tag,
            doc.workflow_yaml_sha256,
            doc.schedule_id,
            doc.tenant_id,
        ];
        let mut values = [0u32; 6];
        for (value, raw) in values.iter_mut().zip(raw) {
            if let Some(raw) = raw {
                *value = self.intern(raw);
            }
        }
        let slot = self.slot_mut(n);
        slot.updated_at = doc.updated_at.unwrap_or(0.0);
        slot.values = values;
        self.link(n);
    }

    /// Calls `visit` with the keys of `keys` (in `updated_at`, slot order, ascending or
    /// descending) in list order: runs with equal `updated_at` by run id, in the same
    /// direction. Ties are rare (timestamps have microseconds), so they are sorted here
    /// rather than paying for the run id in every set.
    fn in_list_order(
        &self,
        keys: impl Iterator<Item = Key>,
        descending: bool,
        mut visit: impl FnMut(Key) -> ControlFlow<()>,
    ) {
        let mut keys = keys.peekable();
        let mut group: Vec<(String, Key)> = Vec::new();
        while let Some(key) = keys.next() {
            let ends_group = keys.peek().is_none_or(|next| next.bits() != key.bits());
            if ends_group && group.is_empty() {
                if visit(key).is_break() {
                    return;
                }
                continue;
            }
            group.push((self.run_id(key.slot), key));
            if ends_group {
                group.sort();
                if descending {
                    group.reverse();
                }
                for (_, key) in group.drain(..) {
                    if visit(key).is_break() {
                        return;
                    }
                }
            }
        }
    }

    /// Every run, newest first, from `upper` down: the status sets merged.
    fn all_desc(&self, upper: Option<Key>) -> impl Iterator<Item = Key> + '_ {
        let mut heads: Vec<_> = self
            .by_value
            .iter()
            .filter(|((field, _), _)| *field == Field::Status)
            .map(|(_, set)| set.iter_desc(upper).peekable())
            .collect();
        std::iter::from_fn(move || {
            let (_, best) = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(i, head)| head.peek().map(|k| (*k, i)))
                .max()?;
            heads[best].next()
        })
    }

    /// Bytes held on the heap (the id table, slots, sets, ids and values).
    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let slots = self.slots.capacity() * size_of::<Vec<Slot>>()
            + self.slots.iter().map(Vec::capacity).sum::<usize>() * size_of::<Slot>();
        let sets = self.by_value.capacity() * size_of::<((Field, u32), ChunkedSet<Key>)>()
            + self
                .by_value
                .values()
                .map(ChunkedSet::heap_bytes)
                .sum::<usize>();
        let ids = self.by_id.allocation_size()
            + (self.free.capacity() + self.free_other.capacity() * 2) * size_of::<u32>()
            + self.other_ids.capacity() * size_of::<Box<str>>()
            + self.other_ids.iter().map(|s| s.len()).sum::<usize>();
        let values = self.values.iter().map(|v| v.len() + 16).sum::<usize>()
            + self.values.capacity() * size_of::<Arc<str>>()
            + self.value_ids.capacity() * size_of::<(Arc<str>, u32)>();
        slots + sets + ids + values
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
