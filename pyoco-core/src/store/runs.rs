//! Run snapshots in the runs bucket. Every change after creation is compare-and-set on the KV
//! revision (DESIGN §4): read, apply the change to the fresh document, `update(rev)`, and on a
//! conflict start over. That is what keeps a cancel from being overwritten by progress.

use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use super::StoreError;
use crate::model::{RunSnapshot, json};

/// A document with the KV revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: u64,
}

pub use crate::model::Change;

/// One change of a key as a watch reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEvent {
    pub key: String,
    /// The written document; `None` for a delete or purge.
    pub value: Option<Bytes>,
    pub revision: u64,
    /// Changes still to come in the replay; 0 once the watch has caught up.
    pub pending: u64,
}

/// The runs bucket's stream, as [`RunStore::stream_state`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// Creation time, Unix nanoseconds.
    pub created_ns: i128,
    /// Messages stored: the latest write of every key (deletes leave a marker).
    pub messages: u64,
    /// Revision of the newest write.
    pub last_revision: u64,
}

/// The changes a watch reports, in order.
pub type KeyEvents = futures::stream::BoxStream<'static, Result<KeyEvent, StoreError>>;

/// How many conflicting writes an update retries before giving up (each retry re-reads).
const MAX_CAS_ATTEMPTS: u32 = 64;

/// Run snapshots with create-if-absent and compare-and-set updates.
#[derive(Debug, Clone)]
pub struct RunStore {
    /// Shared: a `kv::Store` clone copies its names and cached stream info, and the worker
    /// hands a `RunStore` to several tasks per run (that showed up as an allocation storm).
    kv: Arc<kv::Store>,
    compact_limit: usize,
}

impl RunStore {
    pub fn new(kv: kv::Store, compact_limit: usize) -> RunStore {
        RunStore {
            kv: Arc::new(kv),
            compact_limit,
        }
    }

    /// Writes `bytes` as `run_id`'s document without compare-and-set or validation: for
    /// tests and repair tools that must store a document no regular writer would make
    /// (a corrupt snapshot, a run claimed by a worker that is gone).
    pub async fn put_raw(&self, run_id: &str, bytes: Bytes) -> Result<u64, StoreError> {
        self.kv
            .put(run_id, bytes)
            .await
            .map_err(|e| StoreError::nats("put raw run snapshot", e))
    }

    /// Creates the snapshot; fails with [`StoreError::AlreadyExists`] if the key exists.
    pub async fn create(&self, snapshot: &mut RunSnapshot) -> Result<u64, StoreError> {
        let bytes = snapshot
            .to_compact_json(self.compact_limit)
            .map_err(|e| StoreError::failed("encode snapshot", e))?;
        match self.kv.create(&snapshot.run_id, Bytes::from(bytes)).await {
            Ok(rev) => Ok(rev),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists {
                    key: snapshot.run_id.clone(),
                })
            }
            Err(e) => Err(StoreError::nats("create run snapshot", e)),
        }
    }

    /// The raw stored document and its revision (`None` if absent or deleted).
    pub async fn get_raw(&self, run_id: &str) -> Result<Option<Versioned<Bytes>>, StoreError> {
        if !is_valid_key(run_id) {
            return Ok(None);
        }
        match self.kv.entry(run_id).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => Ok(Some(Versioned {
                value: entry.value,
                revision: entry.revision,
            })),
            Ok(_) => Ok(None),
            Err(e) => Err(StoreError::nats("get run snapshot", e)),
        }
    }

    /// The stored document as JSON, unknown fields and all.
    pub async fn get_json(&self, run_id: &str) -> Result<Option<Versioned<Value>>, StoreError> {
        self.get_decoded(run_id).await
    }

    /// The documents of `run_ids` as JSON, in their order, 32 reads in flight; a run deleted
    /// since it was listed is left out (a page of the run index).
    pub async fn get_listed(
        &self,
        run_ids: impl IntoIterator<Item = String>,
    ) -> Result<Vec<Value>, StoreError> {
        futures::stream::iter(run_ids)
            .map(|run_id| async move { self.get_json(&run_id).await })
            .buffered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .filter_map(|r| match r {
                Ok(Some(v)) => Some(Ok(v.value)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
    }

    /// The typed snapshot.
    pub async fn get(&self, run_id: &str) -> Result<Option<Versioned<RunSnapshot>>, StoreError> {
        self.get_decoded(run_id).await
    }

    /// The stored document decoded as `T` (Python's NaN/Infinity read as null).
    async fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        run_id: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(v) = self.get_raw(run_id).await? else {
            return Ok(None);
        };
        let value = json::from_slice(&v.value).map_err(|e| StoreError::Corrupt {
            key: run_id.to_string(),
            message: e.to_string(),
        })?;
        Ok(Some(Versioned {
            value,
            revision: v.revision,
        }))
    }

    /// Compare-and-set update: `change` is applied to the freshest document until a write
    /// lands or `change` returns [`Change::Keep`]. Returns the document as stored afterwards
    /// (`None` when the run does not exist). `change` must be idempotent: it can run more than
    /// once.
    pub async fn update<F>(
        &self,
        run_id: &str,
        change: F,
    ) -> Result<Option<Versioned<RunSnapshot>>, StoreError>
    where
        F: FnMut(&mut RunSnapshot) -> Change,
    {
        self.update_from(run_id, None, change).await
    }

    /// Asks the run to stop ([`crate::model::transition::request_cancel`]) with
    /// compare-and-set; `None` when it does not exist.
    pub async fn request_cancel(
        &self,
        run_id: &str,
        requested_by: Option<String>,
    ) -> Result<Option<Versioned<RunSnapshot>>, StoreError> {
        self.update(run_id, |doc| {
            crate::model::transition::request_cancel(
                doc,
                crate::model::now(),
                requested_by.as_deref(),
            )
        })
        .await
    }

    /// [`RunStore::update`] starting from `known`, a document this process read or wrote at
    /// that revision, instead of reading it again: one round trip less per write on the
    /// worker's run path. A stale `known` only costs the conflict and a re-read, and a
    /// [`Change::Keep`] decided on `known` is confirmed on a fresh read, so the outcome is the
    /// same as [`RunStore::update`]'s.
    pub async fn update_from<F>(
        &self,
        run_id: &str,
        mut known: Option<Versioned<RunSnapshot>>,
        mut change: F,
    ) -> Result<Option<Versioned<RunSnapshot>>, StoreError>
    where
        F: FnMut(&mut RunSnapshot) -> Change,
    {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let from_known = known.is_some();
            let mut current = match known.take() {
                Some(k) => k,
                None => match self.get(run_id).await? {
                    Some(c) => c,
                    None => return Ok(None),
                },
            };
            if change(&mut current.value) == Change::Keep {
                if from_known {
                    continue;
                }
                return Ok(Some(current));
            }
            let bytes = current
                .value
                .to_compact_json(self.compact_limit)
                .map_err(|e| StoreError::failed("encode snapshot", e))?;
            match self
                .kv
                .update(run_id, Bytes::from(bytes), current.revision)
                .await
            {
                Ok(revision) => {
                    return Ok(Some(Versioned {
                        value: current.value,
                        revision,
                    }));
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                // Outcome unknown: re-read and re-apply; the change is idempotent.
                Err(e) if e.kind() == kv::UpdateErrorKind::TimedOut => continue,
                Err(e) => return Err(StoreError::nats("update run snapshot", e)),
            }
        }
        Err(StoreError::Contended {
            key: run_id.to_string(),
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// The latest value of every key matching `keys` (`>` for all), then every change as
    /// it is made.
    pub async fn watch_with_history(&self, keys: &str) -> Result<KeyEvents, StoreError> {
        let watch = self
            .kv
            .watch_with_history(keys)
            .await
            .map_err(|e| StoreError::nats("watch runs", e))?;
        Ok(watch.map(key_event).boxed())
    }

    /// The latest write of every key written at `revision` or later, in revision order, then
    /// every later write (deletes included): what a run index loaded from a checkpoint at
    /// `revision - 1` still has to apply.
    pub async fn watch_all_from(&self, revision: u64) -> Result<KeyEvents, StoreError> {
        let watch = self
            .kv
            .watch_all_from_revision(revision.max(1))
            .await
            .map_err(|e| StoreError::nats("watch runs", e))?;
        Ok(watch.map(key_event).boxed())
    }

    /// The bucket's stream as it is now: when it was created (a recreated bucket starts its
    /// revisions again) and its revision range.
    pub async fn stream_state(&self) -> Result<StreamState, StoreError> {
        let info = self
            .kv
            .stream
            .get_info()
            .await
            .map_err(|e| StoreError::nats("read runs stream info", e))?;
        Ok(StreamState {
            created_ns: info.created.unix_timestamp_nanos(),
            messages: info.state.messages,
            last_revision: info.state.last_sequence,
        })
    }

    /// Every write of `run_id` from `revision` on (the SSE watch: the current revision, or
    /// the one after the client's `Last-Event-ID`).
    pub async fn watch_from(&self, run_id: &str, revision: u64) -> Result<KeyEvents, StoreError> {
        let watch = self
            .kv
            .watch_from_revision(run_id, revision)
            .await
            .map_err(|e| StoreError::nats("watch run", e))?;
        Ok(watch.map(key_event).boxed())
    }

    /// One cheap round trip to the bucket's stream (health).
    pub async fn reachable(&self) -> bool {
        self.kv.stream.get_info().await.is_ok()
    }

    /// The subject every write of `run_id`'s snapshot is published on (`$KV.<bucket>.<id>`):
    /// a plain subscription to it sees each write as it is made, without the JetStream
    /// consumer a KV watch creates. (pyoco's buckets use no JetStream domain or API prefix.)
    pub fn key_subject(&self, run_id: &str) -> String {
        let prefix = self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix);
        format!("{prefix}{run_id}")
    }

    /// Deletes the snapshot only if it is still at `revision` (nobody wrote it since).
    pub async fn delete_if_unchanged(&self, run_id: &str, revision: u64) -> Result<(), StoreError> {
        self.kv
            .delete_expect_revision(run_id, Some(revision))
            .await
            .map_err(|e| StoreError::nats("delete run snapshot", e))
    }

    /// Every stored run id. An empty bucket is an empty list, never an error.
    pub async fn keys(&self) -> Result<Vec<String>, StoreError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| StoreError::nats("list run keys", e))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            out.push(key.map_err(|e| StoreError::nats("list run keys", e))?);
        }
        Ok(out)
    }
}

fn key_event(entry: Result<kv::Entry, kv::WatcherError>) -> Result<KeyEvent, StoreError> {
    let entry = entry.map_err(|e| StoreError::nats("watch runs", e))?;
    Ok(KeyEvent {
        value: (entry.operation == kv::Operation::Put).then_some(entry.value),
        key: entry.key,
        revision: entry.revision,
        pending: entry.delta,
    })
}

/// KV keys may not be empty, contain spaces or wildcards, or start/end with a dot.
pub fn is_valid_key(key: &str) -> bool {
    // Longer keys are no id pyoco makes, and a key is part of a subject: a few KB would
    // exceed the server's control-line limit and cost the whole connection.
    key.len() <= crate::model::ident::MAX_ID_LEN
        && !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b'/'))
}
