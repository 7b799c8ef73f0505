//! Counters for the operations routes (`/stats`, `/progress`, `/throughput`, `/logs`,
//! `/results`), kept as writes of the runs bucket stream by, so a request costs the number of
//! groups of runs (distinct tenant, flow, tag and schedule), never the number of runs.
//!
//! [`Stats::observe_parsed`] sees every write the run index's KV watch sees (the fan-out hub
//! hands it over), the start-up replay included. Everything is derived from the documents —
//! statuses, `end_time`, `start_time`, errors — not from when this gateway saw them, so two
//! gateways on one NATS, or one restarted, agree. Per run only an 8-byte hash of its id, its
//! group and its status are kept, to move it between counters when it changes. A gateway that
//! starts from the run index's checkpoint restores them from it instead (`saved`).
//!
//! `routes`: the HTTP handlers; `window`: the 15-minute window; `saved`: the checkpoint part.

mod routes;
mod saved;
pub mod window;

#[allow(unused_imports)]
pub(crate) use routes::{
    __path_logs, __path_progress, __path_results, __path_stats, __path_throughput,
};
pub(crate) use routes::{logs, progress, results, stats, throughput};
pub use saved::{Restorer, Saved};

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::index::OrdF64;
use super::observed::Observed;
use crate::model::{RunStatus, json as lenient, now};
use window::{End, Totals, Window};

/// Failures kept for `/logs` (the newest by `end_time`).
pub const FAILURES_KEPT: usize = 1000;
/// Characters of an error message kept per failure.
const MESSAGE_CHARS: usize = 300;
/// Slot of statuses no [`RunStatus`] names.
const OTHER: usize = RunStatus::ALL.len();
const SLOTS: usize = OTHER + 1;

/// Which runs a group holds: every run with the same tenant, flow, tag and schedule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupKey {
    pub tenant: Option<Arc<str>>,
    pub flow: Option<Arc<str>>,
    pub tag: Option<Arc<str>>,
    pub schedule_id: Option<Arc<str>>,
}

/// A filter of the operations routes: every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub tenant: Option<String>,
    pub flow: Option<String>,
    pub tag: Option<String>,
    pub schedule_id: Option<String>,
}

impl Filter {
    fn matches(&self, key: &GroupKey) -> bool {
        let eq = |want: &Option<String>, have: &Option<Arc<str>>| {
            want.as_deref().is_none_or(|w| have.as_deref() == Some(w))
        };
        eq(&self.tenant, &key.tenant)
            && eq(&self.flow, &key.flow)
            && eq(&self.tag, &key.tag)
            && eq(&self.schedule_id, &key.schedule_id)
    }
}

#[derive(Debug, Default)]
struct Group {
    key: GroupKey,
    /// Stored runs by status slot.
    counts: [u64; SLOTS],
    /// Completed / failed / cancelled with `end_time` at or after the gateway's start.
    since_start: [u64; 3],
}

/// What is kept per run.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    group: u32,
    status: u8,
}

/// One failed run, for `/logs` (and as the index checkpoint saves it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Failure {
    pub run_id: Arc<str>,
    pub at: f64,
    pub group: u32,
    pub error_class: String,
    /// The task that failed, or `None` for a run-level error.
    pub task: Option<String>,
    /// Its callable, as its task record names it (records written by the original's worker
    /// do not: then `None`).
    pub callable: Option<String>,
    pub message: String,
}

/// Sort key of the failures kept: `end_time`, then run id.
type FailureKey = (OrdF64, Arc<str>);

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<u64, Tracked>,
    groups: Vec<Group>,
    group_ids: HashMap<GroupKey, u32>,
    strings: std::collections::HashSet<Arc<str>>,
    window: Window,
    failures: BTreeMap<FailureKey, Failure>,
    failure_of: HashMap<u64, FailureKey>,
}

/// The counters of one gateway.
#[derive(Debug)]
pub struct Stats {
    inner: Mutex<Inner>,
    hasher: std::collections::hash_map::RandomState,
    /// When this gateway started (Unix seconds): the origin of the since-start rates.
    started_at: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(now())
    }
}

/// The task records of a snapshot, read only when its run has just ended (progress writes
/// of running runs carry records that the counters do not need).
#[derive(Debug, Default, Deserialize)]
struct SeenRecords(indexmap::IndexMap<String, SeenTask>);

#[derive(Debug, Deserialize)]
struct SeenTask {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    traceback: Option<String>,
    #[serde(default)]
    attempts: Option<f64>,
    #[serde(default)]
    callable: Option<String>,
}

fn slot_of(status: Option<&str>) -> usize {
    status
        .and_then(RunStatus::parse)
        .and_then(|s| RunStatus::ALL.iter().position(|x| *x == s))
        .unwrap_or(OTHER)
}

fn is_terminal_slot(slot: usize) -> bool {
    RunStatus::ALL.get(slot).is_some_and(|s| s.is_terminal())
}

fn end_of(slot: usize) -> Option<End> {
    match RunStatus::ALL.get(slot)? {
        RunStatus::Completed => Some(End::Completed),
        RunStatus::Failed => Some(End::Failed),
        RunStatus::Cancelled => Some(End::Cancelled),
        _ => None,
    }
}

/// The error class of a failure: the exception name on the last line of a Python traceback
/// (`ValueError: boom`), else a leading `Name:` of the message, else `Error`.
pub fn error_class(message: Option<&str>, traceback: Option<&str>) -> String {
    let name_before_colon = |line: &str| -> Option<String> {
        let (head, _) = line.split_once(':').unwrap_or((line, ""));
        let head = head.trim();
        let ok = !head.is_empty()
            && head.len() <= 100
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && head
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || head.contains('.'));
        ok.then(|| head.to_string())
    };
    traceback
        .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
        .and_then(name_before_colon)
        .or_else(|| {
            message
                .and_then(|m| m.contains(':').then_some(m))
                .and_then(name_before_colon)
        })
        .unwrap_or_else(|| "Error".to_string())
}

fn truncate(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Stats {
    pub fn new(started_at: f64) -> Stats {
        Stats {
            inner: Mutex::default(),
            hasher: std::collections::hash_map::RandomState::new(),
            started_at,
        }
    }

    /// When this gateway started counting (Unix seconds).
    pub fn started_at(&self) -> f64 {
        self.started_at
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Applies one write of the runs bucket, as the follower parsed it (`None`: the run was
    /// deleted, or its document is unreadable). Idempotent: a run seen again in the same
    /// status changes nothing, so a replayed watch counts nothing twice.
    pub fn observe_parsed(&self, run_id: &str, seen: Option<&Observed>) {
        let hash = self.hasher.hash_one(run_id);
        let now = now();
        let mut inner = self.lock();
        inner.apply(hash, run_id, seen, now, self.started_at);
    }

    /// [`Stats::observe_parsed`] from the stored bytes (the tests' way in).
    #[cfg(test)]
    fn observe(&self, run_id: &str, value: Option<&[u8]>) {
        self.observe_parsed(run_id, Observed::of_write(run_id, value).as_ref());
    }

    /// Stored runs by status for the groups `filter` matches (statuses with none left out).
    pub fn status_counts(&self, filter: &Filter) -> BTreeMap<&'static str, u64> {
        let inner = self.lock();
        let mut counts = [0u64; SLOTS];
        for g in inner.groups.iter().filter(|g| filter.matches(&g.key)) {
            for (i, n) in g.counts.iter().enumerate() {
                counts[i] += n;
            }
        }
        counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (RunStatus::ALL.get(i).map_or("OTHER", |s| s.as_str()), *n))
            .collect()
    }

    /// Completed, failed and cancelled runs that ended since the gateway started.
    pub fn since_start(&self, filter: &Filter) -> [u64; 3] {
        let inner = self.lock();
        let mut out = [0u64; 3];
        for g in inner.groups.iter().filter(|g| filter.matches(&g.key)) {
            for (i, n) in g.since_start.iter().enumerate() {
                out[i] += n;
            }
        }
        out
    }

    /// Window totals of the last `seconds` for `filter`.
    pub fn window(&self, filter: &Filter, now: f64, seconds: u64) -> Totals {
        let inner = self.lock();
        let wanted: Vec<bool> = inner
            .groups
            .iter()
            .map(|g| filter.matches(&g.key))
            .collect();
        inner.window.totals(now, seconds, |g| {
            wanted.get(g as usize).copied().unwrap_or(false)
        })
    }

    /// The kept failures `filter` matches, newest first.
    pub fn failures(&self, filter: &Filter) -> Vec<Failure> {
        let inner = self.lock();
        inner
            .failures
            .values()
            .rev()
            .filter(|f| {
                inner
                    .groups
                    .get(f.group as usize)
                    .is_some_and(|g| filter.matches(&g.key))
            })
            .cloned()
            .collect()
    }

    /// Forgets every run (the index is being loaded again from scratch).
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// Runs tracked (for tests and sizing).
    pub fn len(&self) -> usize {
        self.lock().runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn intern(&mut self, s: Option<&str>) -> Option<Arc<str>> {
        let s = s.filter(|s| !s.is_empty())?;
        if let Some(existing) = self.strings.get(s) {
            return Some(existing.clone());
        }
        let arc: Arc<str> = Arc::from(s);
        self.strings.insert(arc.clone());
        Some(arc)
    }

    fn group(&mut self, key: GroupKey) -> u32 {
        if let Some(id) = self.group_ids.get(&key) {
            return *id;
        }
        let id = u32::try_from(self.groups.len()).unwrap_or(u32::MAX);
        self.groups.push(Group {
            key: key.clone(),
            ..Group::default()
        });
        self.group_ids.insert(key, id);
        id
    }

    fn forget_failure(&mut self, hash: u64) {
        if let Some(key) = self.failure_of.remove(&hash) {
            self.failures.remove(&key);
        }
    }

    fn apply(&mut self, hash: u64, run_id: &str, seen: Option<&Observed>, now: f64, started: f64) {
        let before = self.runs.get(&hash).copied();
        let Some(seen) = seen else {
            // Deleted (or unreadable, which the index also leaves out): out of every count.
            if let Some(t) = before {
                if let Some(g) = self.groups.get_mut(t.group as usize) {
                    let slot = usize::from(t.status);
                    g.counts[slot] = g.counts[slot].saturating_sub(1);
                }
                self.runs.remove(&hash);
                self.forget_failure(hash);
            }
            return;
        };
        let key = GroupKey {
            tenant: self.intern(seen.tenant_id.as_deref()),
            flow: self.intern(seen.flow_name.as_deref()),
            tag: self.intern(seen.tag.as_deref()),
            schedule_id: self.intern(seen.schedule_id.as_deref()),
        };
        let group = self.group(key);
        let slot = slot_of(seen.status.as_deref());
        if let Some(t) = before {
            if t.group == group && usize::from(t.status) == slot {
                return;
            }
            if let Some(g) = self.groups.get_mut(t.group as usize) {
                let old = usize::from(t.status);
                g.counts[old] = g.counts[old].saturating_sub(1);
            }
        }
        if let Some(g) = self.groups.get_mut(group as usize) {
            g.counts[slot] += 1;
        }
        self.runs.insert(
            hash,
            Tracked {
                group,
                status: slot as u8,
            },
        );
        // A run becoming terminal (first seen terminal, at start-up too) is filed by its end.
        let newly_terminal = is_terminal_slot(slot)
            && !before.is_some_and(|t| is_terminal_slot(usize::from(t.status)));
        let Some(end) = end_of(slot).filter(|_| newly_terminal) else {
            return;
        };
        let at = seen.end_time.or(seen.updated_at).unwrap_or(now);
        let duration = match (seen.start_time, seen.end_time) {
            (Some(s), Some(e)) if e >= s => Some(e - s),
            _ => None,
        };
        // Read only when something keeps what they say: the window (recent ends) or the
        // failure list. Runs that ended long ago (most of a start-up replay) skip them.
        let records = if end == End::Failed || self.window.keeps(now, at) {
            seen.task_records
                .as_deref()
                .and_then(|raw| lenient::from_slice::<SeenRecords>(raw.get().as_bytes()).ok())
                .map(|r| r.0)
                .unwrap_or_default()
        } else {
            indexmap::IndexMap::new()
        };
        let retried = records
            .values()
            .filter(|r| r.attempts.is_some_and(|a| a > 1.0))
            .count() as u64;
        self.window.record(now, at, group, end, duration, retried);
        if at >= started
            && let Some(g) = self.groups.get_mut(group as usize)
        {
            let i = match end {
                End::Completed => 0,
                End::Failed => 1,
                End::Cancelled => 2,
            };
            g.since_start[i] += 1;
        }
        if end == End::Failed {
            let failed_task = records
                .iter()
                .find(|(_, r)| r.state.as_deref() == Some("FAILED") && r.error.is_some())
                .or_else(|| {
                    records
                        .iter()
                        .find(|(_, r)| r.state.as_deref() == Some("FAILED"))
                });
            let (task, callable, message, traceback) = match failed_task {
                Some((name, r)) => (
                    Some(name.clone()),
                    r.callable.clone(),
                    r.error.clone().or(seen.error.clone()),
                    r.traceback.as_deref(),
                ),
                None => (None, None, seen.error.clone(), None),
            };
            let failure = Failure {
                run_id: Arc::from(run_id),
                at,
                group,
                error_class: error_class(message.as_deref(), traceback),
                task,
                callable,
                message: truncate(message.as_deref().unwrap_or(""), MESSAGE_CHARS),
            };
            let fkey = (OrdF64(at), failure.run_id.clone());
            self.forget_failure(hash);
            self.failures.insert(fkey.clone(), failure);
            self.failure_of.insert(hash, fkey);
            while self.failures.len() > FAILURES_KEPT {
                if let Some((_, oldest)) = self.failures.pop_first() {
                    let h = self
                        .failure_of
                        .iter()
                        .find(|(_, k)| k.1 == oldest.run_id)
                        .map(|(h, _)| *h);
                    if let Some(h) = h {
                        self.failure_of.remove(&h);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(status: &str, flow: &str, end: Option<f64>) -> Vec<u8> {
        json!({"status": status, "flow_name": flow, "tag": "default", "start_time": end.map(|e| e - 2.0),
               "end_time": end, "updated_at": end.unwrap_or(1.0), "error": if status == "FAILED" {json!("boom")} else {json!(null)},
               "task_records": {"a": {"state": if status == "FAILED" {"FAILED"} else {"SUCCEEDED"}, "error": if status == "FAILED" {json!("ValueError: boom")} else {json!(null)}, "attempts": 2}}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn moves_runs_between_counters_and_counts_each_end_once() {
        let t = now();
        let s = Stats::new(t - 100.0);
        s.observe("r1", Some(&doc("PENDING", "f", None)));
        s.observe("r2", Some(&doc("PENDING", "g", None)));
        s.observe("r1", Some(&doc("RUNNING", "f", None)));
        s.observe("r1", Some(&doc("FAILED", "f", Some(t - 1.0))));
        // Seen again (a replayed watch): nothing moves.
        s.observe("r1", Some(&doc("FAILED", "f", Some(t - 1.0))));
        let all = s.status_counts(&Filter::default());
        assert_eq!(all, BTreeMap::from([("FAILED", 1), ("PENDING", 1)]));
        let f = Filter {
            flow: Some("g".into()),
            ..Filter::default()
        };
        assert_eq!(s.status_counts(&f), BTreeMap::from([("PENDING", 1)]));
        assert_eq!(s.since_start(&Filter::default()), [0, 1, 0]);
        let w = s.window(&Filter::default(), t, 60);
        assert_eq!((w.failed, w.retried_tasks), (1, 1));
        let failures = s.failures(&Filter::default());
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].error_class, "ValueError");
        assert_eq!(failures[0].task.as_deref(), Some("a"));
        s.observe("r1", None);
        assert!(s.failures(&Filter::default()).is_empty());
        assert_eq!(
            s.status_counts(&Filter::default()),
            BTreeMap::from([("PENDING", 1)])
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn keeps_only_the_newest_failures() {
        let t = now();
        let s = Stats::new(t);
        for i in 0..(FAILURES_KEPT + 5) {
            s.observe(
                &format!("r{i}"),
                Some(&doc("FAILED", "f", Some(t - 1000.0 + i as f64 * 0.1))),
            );
        }
        let kept = s.failures(&Filter::default());
        assert_eq!(kept.len(), FAILURES_KEPT);
        assert_eq!(&*kept[0].run_id, format!("r{}", FAILURES_KEPT + 4));
        // Deleting a kept one frees its place; deleting an evicted one is harmless.
        s.observe("r0", None);
        s.observe(&format!("r{}", FAILURES_KEPT + 4), None);
        assert_eq!(s.failures(&Filter::default()).len(), FAILURES_KEPT - 1);
    }

    #[test]
    fn error_classes_come_from_tracebacks_then_messages() {
        let tb = "Traceback (most recent call last):\n  File \"x.py\"\nzipfile.BadZipFile: bad\n";
        assert_eq!(error_class(Some("bad"), Some(tb)), "zipfile.BadZipFile");
        assert_eq!(error_class(Some("KeyError: 'x'"), None), "KeyError");
        assert_eq!(
            error_class(Some("task 'a' timed out after 1s"), None),
            "Error"
        );
        assert_eq!(error_class(None, None), "Error");
    }
}
