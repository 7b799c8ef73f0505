//! One KV watch feeds every SSE watcher of the gateway. The run index already follows every
//! write of the runs bucket; it hands each one to the [`Hub`], which passes it to the
//! watchers of that run id through a broadcast channel. So 10,000 watchers cost one NATS
//! consumer, not 10,000 (the server's consumer limit used to turn watcher 1,000 into a 503),
//! and a snapshot is parsed and rendered once per write, not once per watcher.
//!
//! Past `PYOCO_SSE_MAX_WATCHERS` open watches, [`Hub::subscribe`] refuses (429).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::observed::Observed;
use crate::model::{RunStatus, json as lenient, now};

/// Writes of one run a slow watcher may fall behind by before it re-reads the current
/// snapshot instead (nothing is lost: snapshots are whole documents).
const CHANNEL: usize = 16;

/// One write of a run's snapshot (`value` is `None` for a delete or purge).
#[derive(Debug)]
pub struct Update {
    pub revision: u64,
    pub value: Option<Bytes>,
    rendered: OnceLock<Option<Rendered>>,
}

/// An update as the SSE route sends it, made once for all watchers.
#[derive(Debug)]
pub struct Rendered {
    pub terminal: bool,
    pub updated_at: f64,
    /// `data` of the `snapshot` event with `task_records`.
    pub with_records: String,
    /// `data` without `task_records` / `task_records_truncated` (the default).
    pub without_records: String,
}

impl Update {
    pub fn new(revision: u64, value: Option<Bytes>) -> Update {
        Update {
            revision,
            value,
            rendered: OnceLock::new(),
        }
    }

    /// The event data for this write; `None` when the run was deleted or the document cannot
    /// be read.
    pub fn rendered(&self, run_id: &str) -> Option<&Rendered> {
        self.rendered
            .get_or_init(|| render(run_id, self.value.as_deref()?))
            .as_ref()
    }
}

fn render(run_id: &str, value: &[u8]) -> Option<Rendered> {
    let mut snapshot = lenient::from_slice::<Value>(value).ok()?;
    let terminal = snapshot
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(RunStatus::is_terminal_str);
    let updated_at = snapshot
        .get("updated_at")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let ts = now();
    let with_records = json!({"run_id": run_id, "snapshot": snapshot, "ts": ts}).to_string();
    if let Value::Object(m) = &mut snapshot {
        m.shift_remove("task_records");
        m.shift_remove("task_records_truncated");
    }
    let without_records = json!({"run_id": run_id, "snapshot": snapshot, "ts": ts}).to_string();
    Some(Rendered {
        terminal,
        updated_at,
        with_records,
        without_records,
    })
}

/// The watchers of every run, by run id.
#[derive(Debug)]
pub struct Hub {
    runs: Mutex<HashMap<Arc<str>, broadcast::Sender<Arc<Update>>>>,
    /// The operations counters, which see every write too.
    stats: Option<Arc<super::stats::Stats>>,
    watchers: AtomicUsize,
    max: usize,
}

/// Every allowed watch is open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub max: usize,
}

impl Hub {
    pub fn new(max: usize) -> Hub {
        Hub {
            runs: Mutex::default(),
            stats: None,
            watchers: AtomicUsize::new(0),
            max,
        }
    }

    /// Also hands every write to `stats`.
    /// The operations counters this hub feeds, if any.
    pub fn stats(&self) -> Option<&Arc<super::stats::Stats>> {
        self.stats.as_ref()
    }

    pub fn with_stats(mut self, stats: Arc<super::stats::Stats>) -> Hub {
        self.stats = Some(stats);
        self
    }

    /// Open watches right now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Passes one write on to the watchers of `run_id` (nothing to do when it has none), and
    /// to the counters as `seen` (the write as the index parsed it).
    pub fn publish(
        &self,
        run_id: &str,
        revision: u64,
        value: Option<&Bytes>,
        seen: Option<&Observed>,
    ) {
        if let Some(stats) = &self.stats {
            stats.observe_parsed(run_id, seen);
        }
        if self.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Ok(runs) = self.runs.lock() else { return };
        if let Some(sender) = runs.get(run_id) {
            // No receiver left is not an error: the last one is being dropped.
            let _ = sender.send(Arc::new(Update::new(revision, value.cloned())));
        }
    }

    /// Starts receiving the writes of `run_id`; refused past the watcher limit. Subscribe
    /// before reading the current snapshot, so no write falls between the two.
    pub fn subscribe(self: &Arc<Self>, run_id: &str) -> Result<Subscription, Full> {
        let reserved = self
            .watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if reserved.is_err() {
            return Err(Full { max: self.max });
        }
        let mut runs = match self.runs.lock() {
            Ok(runs) => runs,
            Err(poisoned) => poisoned.into_inner(),
        };
        let run_id: Arc<str> = Arc::from(run_id);
        let rx = runs
            .entry(run_id.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL).0)
            .subscribe();
        Ok(Subscription {
            hub: self.clone(),
            run_id,
            rx,
        })
    }
}

/// One watcher's feed; dropping it frees its place.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    run_id: Arc<str>,
    rx: broadcast::Receiver<Arc<Update>>,
}

/// What [`Subscription::recv`] hands back.
#[derive(Debug)]
pub enum Received {
    Update(Arc<Update>),
    /// The watcher fell more than a channel's worth behind: re-read the current snapshot.
    Lagged,
    /// The hub is gone (the gateway is shutting down).
    Closed,
}

impl Subscription {
    pub async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(update) => Received::Update(update),
            Err(broadcast::error::RecvError::Lagged(_)) => Received::Lagged,
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut runs = match self.hub.runs.lock() {
            Ok(runs) => runs,
            Err(poisoned) => poisoned.into_inner(),
        };
        // This receiver still counts: it is the last one when the count is 1.
        if runs
            .get(&self.run_id)
            .is_some_and(|s| s.receiver_count() <= 1)
        {
            runs.remove(&self.run_id);
        }
        drop(runs);
        self.hub.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(status: &str) -> Bytes {
        Bytes::from(
            json!({"run_id": "r1", "status": status, "updated_at": 5.0, "task_records": {"a": {}}})
                .to_string(),
        )
    }

    #[tokio::test]
    async fn passes_writes_to_the_watchers_of_that_run_only() {
        let hub = Arc::new(Hub::new(10));
        let mut a = hub.subscribe("r1").unwrap();
        let mut b = hub.subscribe("r1").unwrap();
        let mut other = hub.subscribe("r2").unwrap();
        hub.publish("r1", 7, Some(&doc("RUNNING")), None);
        for sub in [&mut a, &mut b] {
            let Received::Update(u) = sub.recv().await else {
                panic!("no update")
            };
            assert_eq!(u.revision, 7);
            let r = u.rendered("r1").unwrap();
            assert!(!r.terminal);
            assert_eq!(r.updated_at, 5.0);
            assert!(r.with_records.contains("task_records"));
            assert!(!r.without_records.contains("task_records"));
        }
        assert!(other.rx.try_recv().is_err());
        hub.publish("r1", 8, None, None);
        let Received::Update(gone) = a.recv().await else {
            panic!("no update")
        };
        assert!(gone.rendered("r1").is_none());
    }

    #[tokio::test]
    async fn refuses_past_the_limit_and_frees_places_on_drop() {
        let hub = Arc::new(Hub::new(2));
        let a = hub.subscribe("r1").unwrap();
        let _b = hub.subscribe("r2").unwrap();
        assert_eq!(hub.subscribe("r1").unwrap_err(), Full { max: 2 });
        drop(a);
        assert_eq!(hub.watchers(), 1);
        assert!(
            hub.runs.lock().unwrap().get("r1").is_none(),
            "last watcher removes the run"
        );
        let _c = hub.subscribe("r1").unwrap();
        assert_eq!(hub.watchers(), 2);
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_to_re_read() {
        let hub = Arc::new(Hub::new(10));
        let mut slow = hub.subscribe("r1").unwrap();
        for rev in 0..(CHANNEL as u64 + 4) {
            hub.publish("r1", rev, Some(&doc("RUNNING")), None);
        }
        assert!(matches!(slow.recv().await, Received::Lagged));
    }

    #[test]
    fn nothing_is_kept_for_runs_nobody_watches() {
        let hub = Hub::new(10);
        hub.publish("r1", 1, Some(&doc("RUNNING")), None);
        assert!(hub.runs.lock().unwrap().is_empty());
    }
}
