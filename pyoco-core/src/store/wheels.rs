//! The wheel registry in NATS: the object store `pyoco_wheels` (stream `OBJ_<bucket>`) and the
//! history bucket `pyoco_wheel_history`.
//!
//! Objects are read and written through their raw messages — chunks on
//! `$O.<bucket>.C.<nuid>`, the JSON meta on `$O.<bucket>.M.<base64url(name)>` — rather than
//! async-nats' `ObjectStore`, because the two writers disagree on `headers`: nats-py (the
//! original) writes `{"x-pyoco-wheel-tags": "gpu,cpu"}`, async-nats `{"…": ["gpu,cpu"]}`, and
//! async-nats cannot parse the former at all while the original reads the latter as no tags.
//! So headers are read in both forms and written in the original's (flat strings), which
//! keeps a wheel uploaded by either gateway visible to, and correctly tagged for, both kinds
//! of worker.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Layout, Store, StoreError};
use crate::model::json as lenient_json;

mod meta;

pub use meta::{TAGS_HEADER, WheelObject, iso_utc, iso_utc_now, parse_tags_csv};

/// The chunk size both clients use (128 KiB).
const CHUNK_SIZE: usize = 128 * 1024;
/// Waiting longer than this for the next message of a listing or download is a failure.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle on the registry's object store and history bucket.
#[derive(Debug, Clone)]
pub struct WheelStore {
    client: async_nats::Client,
    js: jetstream::Context,
    layout: Layout,
    history: kv::Store,
}

impl WheelStore {
    pub fn new(store: &Store) -> WheelStore {
        WheelStore {
            client: store.client.clone(),
            js: store.js.clone(),
            layout: store.layout.clone(),
            history: store.resources.wheel_history.clone(),
        }
    }

    fn meta_subject(&self, name: &str) -> String {
        self.layout.wheel_meta_subject(&URL_SAFE.encode(name))
    }

    fn chunk_subject(&self, nuid: &str) -> String {
        self.layout.wheel_chunk_subject(nuid)
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, StoreError> {
        self.js
            .get_stream(self.layout.wheel_stream())
            .await
            .map_err(|e| StoreError::nats("open wheel store", e))
    }

    /// Every message on `filter` (the last per subject with `last_per_subject`), in order.
    async fn read_all(
        &self,
        filter: String,
        last_per_subject: bool,
    ) -> Result<Vec<Bytes>, StoreError> {
        let stream = self.stream().await?;
        let ordered = stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: filter,
                deliver_policy: if last_per_subject {
                    consumer::DeliverPolicy::LastPerSubject
                } else {
                    consumer::DeliverPolicy::All
                },
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::nats("read wheel store", e))?;
        if ordered.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = ordered
            .messages()
            .await
            .map_err(|e| StoreError::nats("read wheel store", e))?;
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(READ_TIMEOUT, messages.next())
                .await
                .map_err(|_| StoreError::unavailable("read wheel store", "timed out".into()))?;
            let Some(msg) = next else { break };
            let msg = msg.map_err(|e| StoreError::nats("read wheel store", e))?;
            let pending = msg.info().map(|i| i.pending).unwrap_or(0);
            out.push(msg.payload.clone());
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Every object that is not deleted (empty store: `[]`).
    pub async fn list(&self) -> Result<Vec<WheelObject>, StoreError> {
        let metas = self
            .read_all(self.layout.wheel_meta_subjects(), true)
            .await?;
        Ok(metas
            .iter()
            .filter_map(|m| WheelObject::from_meta(m))
            .filter(|o| !o.deleted)
            .collect())
    }

    /// The meta of `name`, deleted ones included; `None` when it was never stored.
    async fn meta(&self, name: &str) -> Result<Option<WheelObject>, StoreError> {
        let stream = self.stream().await?;
        match stream
            .get_last_raw_message_by_subject(&self.meta_subject(name))
            .await
        {
            Ok(msg) => Ok(WheelObject::from_meta(&msg.payload)),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(StoreError::nats("read wheel meta", e)),
        }
    }

    /// The object `name`, unless missing or deleted.
    pub async fn info(&self, name: &str) -> Result<Option<WheelObject>, StoreError> {
        Ok(self.meta(name).await?.filter(|o| !o.deleted))
    }

    /// The object and its bytes (digest checked), unless missing or deleted.
    pub async fn get(&self, name: &str) -> Result<Option<(WheelObject, Vec<u8>)>, StoreError> {
        let Some(object) = self.info(name).await? else {
            return Ok(None);
        };
        let mut data = Vec::with_capacity(usize::try_from(object.size).unwrap_or(0));
        if object.chunks > 0 {
            for chunk in self
                .read_all(self.chunk_subject(&object.nuid), false)
                .await?
            {
                data.extend_from_slice(&chunk);
            }
        }
        if let Some(expected) = &object.digest {
            let actual = format!("SHA-256={}", URL_SAFE.encode(Sha256::digest(&data)));
            if !expected.eq_ignore_ascii_case(&actual) && expected != &actual {
                return Err(StoreError::Failed {
                    op: "read wheel",
                    message: format!("{name}: digest mismatch (stored {expected}, read {actual})"),
                    source: None,
                });
            }
        }
        Ok(Some((object, data)))
    }

    /// Stores `data` as `name` with `headers` (flat strings, like the original), replacing any
    /// previous object of that name (its chunks are purged). On failure nothing new stays.
    pub async fn put(
        &self,
        name: &str,
        data: &[u8],
        headers: &[(String, String)],
    ) -> Result<WheelObject, StoreError> {
        let digest: [u8; 32] = Sha256::digest(data).into();
        self.put_from(name, data, data.len() as u64, digest, headers)
            .await
    }

    /// [`WheelStore::put`] of `size` bytes read from `source` (an upload spooled to a file)
    /// chunk by chunk: memory use is a window of chunks, whatever the size. `sha256` is the
    /// digest of those bytes, computed while they were received.
    pub async fn put_from<R>(
        &self,
        name: &str,
        mut source: R,
        size: u64,
        sha256: [u8; 32],
        headers: &[(String, String)],
    ) -> Result<WheelObject, StoreError>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        use tokio::io::AsyncReadExt;
        let previous = self.meta(name).await?;
        let nuid = uuid::Uuid::new_v4().simple().to_string();
        let chunk_subject = self.chunk_subject(&nuid);
        let stream = self.stream().await?;
        let chunks = size.div_ceil(CHUNK_SIZE as u64);
        let result = async {
            let mut sent = 0u64;
            let mut chunk = vec![0u8; CHUNK_SIZE];
            // Publish a window of chunks, then wait for their acks.
            while sent < size {
                let mut acks = Vec::new();
                for _ in 0..16 {
                    if sent >= size {
                        break;
                    }
                    let want = (size - sent).min(CHUNK_SIZE as u64) as usize;
                    source
                        .read_exact(&mut chunk[..want])
                        .await
                        .map_err(|e| StoreError::failed("read wheel upload", e))?;
                    sent += want as u64;
                    let ack = self
                        .js
                        .publish(chunk_subject.clone(), Bytes::copy_from_slice(&chunk[..want]))
                        .await
                        .map_err(|e| StoreError::nats("store wheel chunk", e))?;
                    acks.push(ack);
                }
                for ack in acks {
                    ack.await
                        .map_err(|e| StoreError::nats("store wheel chunk", e))?;
                }
            }
            let meta = json!({
                "name": name,
                "description": null,
                "headers": headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
                "options": {"max_chunk_size": CHUNK_SIZE},
                "bucket": self.layout.wheels_bucket,
                "nuid": nuid,
                "size": size,
                "mtime": iso_utc_now(),
                "chunks": chunks,
                "digest": format!("SHA-256={}", URL_SAFE.encode(sha256)),
            });
            self.publish_meta(name, &meta).await?;
            Ok::<Value, StoreError>(meta)
        }
        .await;
        let meta = match result {
            Ok(meta) => meta,
            Err(e) => {
                stream.purge().filter(&chunk_subject).await.ok();
                return Err(e);
            }
        };
        if let Some(prev) = previous.filter(|p| !p.nuid.is_empty() && p.nuid != nuid)
            && let Err(e) = stream.purge().filter(self.chunk_subject(&prev.nuid)).await
        {
            tracing::warn!(wheel = name, error = %e, "could not purge the replaced wheel's chunks");
        }
        WheelObject::from_meta(&serde_json::to_vec(&meta).unwrap_or_default()).ok_or(
            StoreError::Failed {
                op: "store wheel",
                message: "meta not readable".into(),
                source: None,
            },
        )
    }

    /// Marks `name` deleted (its meta kept, size and chunks 0) and purges its chunks; returns
    /// the object as it was, `None` when missing or already deleted.
    pub async fn delete(&self, name: &str) -> Result<Option<WheelObject>, StoreError> {
        let Some(object) = self.info(name).await? else {
            return Ok(None);
        };
        let mut meta = object.raw.clone();
        meta.insert("deleted".into(), Value::Bool(true));
        meta.insert("size".into(), json!(0));
        meta.insert("chunks".into(), json!(0));
        meta.insert("mtime".into(), Value::String(iso_utc_now()));
        self.publish_meta(name, &Value::Object(meta)).await?;
        if !object.nuid.is_empty() {
            let stream = self.stream().await?;
            if let Err(e) = stream
                .purge()
                .filter(self.chunk_subject(&object.nuid))
                .await
            {
                tracing::warn!(wheel = name, error = %e, "could not purge a deleted wheel's chunks");
            }
        }
        Ok(Some(object))
    }

    /// Publishes the meta, replacing earlier ones of that subject (`Nats-Rollup: sub`).
    async fn publish_meta(&self, name: &str, meta: &Value) -> Result<(), StoreError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        let payload =
            serde_json::to_vec(meta).map_err(|e| StoreError::failed("encode wheel meta", e))?;
        self.js
            .publish_with_headers(self.meta_subject(name), headers, payload.into())
            .await
            .map_err(|e| StoreError::nats("store wheel meta", e))?
            .await
            .map_err(|e| StoreError::nats("store wheel meta", e))?;
        Ok(())
    }

    /// Appends an event under `<epoch ms, 13 digits>_<event_id>`.
    pub async fn append_history(&self, event: &Value) -> Result<(), StoreError> {
        let occurred = event
            .get("occurred_at")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let id = event.get("event_id").and_then(Value::as_str).unwrap_or("");
        let key = format!("{:013}_{id}", (occurred * 1000.0) as u64);
        let payload =
            serde_json::to_vec(event).map_err(|e| StoreError::failed("encode wheel history", e))?;
        self.history
            .put(key, payload.into())
            .await
            .map_err(|e| StoreError::nats("write wheel history", e))?;
        Ok(())
    }

    /// Every history event that is a JSON object (empty bucket: `[]`).
    pub async fn history(&self) -> Result<Vec<Map<String, Value>>, StoreError> {
        let keys: Vec<String> = match self.history.keys().await {
            Ok(keys) => keys
                .try_collect()
                .await
                .map_err(|e| StoreError::nats("list wheel history", e))?,
            Err(e) => return Err(StoreError::nats("list wheel history", e)),
        };
        let mut events = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self
                .history
                .get(&key)
                .await
                .map_err(|e| StoreError::nats("read wheel history", e))?;
            if let Some(event) = value.and_then(|v| lenient_json::from_slice(&v).ok()) {
                events.push(event);
            }
        }
        Ok(events)
    }
}
