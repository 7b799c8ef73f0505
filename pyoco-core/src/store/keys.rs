//! The API key bucket (`pyoco_auth`): records under `api_keys.<key_id>` in the original's
//! format ([`ApiKeyRecord`]), so keys made by pyoco-server's admin CLI work here and back.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::StoreError;
use crate::auth::ApiKeyRecord;
use crate::model::json;

/// Prefix of every key record in the bucket.
const PREFIX: &str = "api_keys.";

/// What the bucket holds for one key id.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KeyLookup {
    /// No record: an unknown key.
    Missing,
    /// A record that does not decode: the original answers 403 for it, and so do we.
    Corrupt,
    Found(Box<ApiKeyRecord>),
}

/// Access to the API key records.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    kv: kv::Store,
}

impl ApiKeys {
    pub(crate) fn new(kv: kv::Store) -> ApiKeys {
        ApiKeys { kv }
    }

    /// The record of `key_id`.
    pub async fn get(&self, key_id: &str) -> Result<KeyLookup, StoreError> {
        let entry = self
            .kv
            .get(ApiKeyRecord::kv_key(key_id))
            .await
            .map_err(|e| StoreError::nats("get api key", e))?;
        Ok(match entry {
            None => KeyLookup::Missing,
            Some(bytes) => match json::from_slice::<ApiKeyRecord>(&bytes) {
                Ok(rec) => KeyLookup::Found(Box::new(rec)),
                Err(_) => KeyLookup::Corrupt,
            },
        })
    }

    /// Stores a new record; fails with `AlreadyExists` when the key id is taken.
    pub async fn create(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let key = ApiKeyRecord::kv_key(&record.key_id);
        match self.kv.create(&key, bytes).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists { key })
            }
            Err(e) => Err(StoreError::nats("create api key", e)),
        }
    }

    /// Every readable record (corrupt ones are skipped and logged), newest first like the
    /// original's `api-key list`. An empty bucket is an empty list, not an error.
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut keys = match self.kv.keys().await {
            Ok(keys) => keys,
            Err(e) => return Err(StoreError::nats("list api keys", e)),
        };
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| StoreError::nats("list api keys", e))?;
            let Some(key_id) = key.strip_prefix(PREFIX) else {
                continue;
            };
            match self.get(key_id).await? {
                KeyLookup::Found(rec) => out.push(*rec),
                KeyLookup::Corrupt => {
                    tracing::warn!(key_id, "api key record does not decode; skipped")
                }
                KeyLookup::Missing => {}
            }
        }
        out.sort_by(|a, b| b.created_at.total_cmp(&a.created_at));
        Ok(out)
    }

    /// Sets `revoked_at` (the record is kept, as the original does) with compare-and-set.
    /// `Ok(None)` when there is no such key; an already revoked key keeps its first time.
    pub async fn revoke(&self, key_id: &str, at: f64) -> Result<Option<ApiKeyRecord>, StoreError> {
        let key = ApiKeyRecord::kv_key(key_id);
        for _ in 0..16 {
            let entry = self
                .kv
                .entry(&key)
                .await
                .map_err(|e| StoreError::nats("get api key", e))?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                return Ok(None);
            };
            let mut rec: ApiKeyRecord =
                json::from_slice(&entry.value).map_err(|e| StoreError::Corrupt {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
            if rec.revoked_at.is_some() {
                return Ok(Some(rec));
            }
            rec.revoked_at = Some(at);
            match self.kv.update(&key, encode(&rec)?, entry.revision).await {
                Ok(_) => return Ok(Some(rec)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(StoreError::nats("revoke api key", e)),
            }
        }
        Err(StoreError::Contended { key, attempts: 16 })
    }

    /// Key ids as their records change (put, revoke, delete, purge), from now on. The stream
    /// ends when the watch breaks; callers then forget what they cached and watch again.
    pub async fn changes(
        &self,
    ) -> Result<impl Stream<Item = Result<String, StoreError>> + use<>, StoreError> {
        super::key_changes(&self.kv, PREFIX, "watch api keys").await
    }
}

fn encode(record: &ApiKeyRecord) -> Result<Bytes, StoreError> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| StoreError::failed("encode api key", e))
}

impl super::Store {
    /// The API key records of this deployment.
    pub fn api_keys(&self) -> ApiKeys {
        ApiKeys::new(self.resources.auth.clone())
    }
}
