//! Request-level memory shared by every gateway, in KV buckets with a TTL:
//! - [`Nonces`]: HMAC request nonces, each usable once within the signature window, so a
//!   request replayed to another gateway (or after a restart) is refused too;
//! - [`Idempotency`]: `Idempotency-Key` → the run it created, so a retried submit returns the
//!   first run instead of creating a second, across gateways and restarts.
//!
//! Both rely on KV `create` (fails when the key exists): the first writer wins, atomically.

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::model::json;

/// Used HMAC nonces.
#[derive(Debug, Clone)]
pub struct Nonces {
    kv: kv::Store,
}

impl Nonces {
    pub(crate) fn new(kv: kv::Store) -> Nonces {
        Nonces { kv }
    }

    /// Records `nonce` as used. `Ok(false)` when it was used before (a replay). The bucket's
    /// max age must cover the signature window so a nonce outlives every timestamp that
    /// could still carry it.
    pub async fn first_use(&self, nonce: &str) -> Result<bool, StoreError> {
        // Nonces are validated as token characters before they get here; hashing keeps the
        // KV key short and valid whatever the rule becomes.
        let key = format!("n.{}", hex::encode(Sha256::digest(nonce.as_bytes())));
        match self.kv.create(&key, Bytes::new()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StoreError::nats("record nonce", e)),
        }
    }
}

/// What an idempotency key points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub run_id: String,
    /// SHA-256 of the request body that reserved the key: the same key with another body is a
    /// client bug (409), not a retry.
    pub body_sha256: String,
    pub created_at: f64,
}

/// The outcome of reserving a key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reservation {
    /// First use: submit the run under this id (its `Nats-Msg-Id` too).
    New(IdempotencyRecord),
    /// A retry of the same request: answer with this run (and finish its submit if the first
    /// attempt died half-way — the snapshot create and the publish are both idempotent).
    Existing(IdempotencyRecord),
    /// The key was used for a different body.
    Conflict(IdempotencyRecord),
}

/// Idempotency keys per tenant.
#[derive(Debug, Clone)]
pub struct Idempotency {
    kv: kv::Store,
}

impl Idempotency {
    pub(crate) fn new(kv: kv::Store) -> Idempotency {
        Idempotency { kv }
    }

    /// KV key of a client key: tenant-scoped (two tenants may use the same key) and hashed
    /// (clients choose any characters).
    fn kv_key(tenant: Option<&str>, client_key: &str) -> String {
        let mut h = Sha256::new();
        h.update(tenant.unwrap_or_default().as_bytes());
        h.update([0]);
        h.update(client_key.as_bytes());
        format!("k.{}", hex::encode(h.finalize()))
    }

    /// Reserves `client_key` for a new run with `run_id`, or finds what reserved it before.
    pub async fn reserve(
        &self,
        tenant: Option<&str>,
        client_key: &str,
        body_sha256: &str,
        run_id: &str,
        now: f64,
    ) -> Result<Reservation, StoreError> {
        let key = Idempotency::kv_key(tenant, client_key);
        let record = IdempotencyRecord {
            run_id: run_id.to_owned(),
            body_sha256: body_sha256.to_owned(),
            created_at: now,
        };
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| StoreError::failed("encode idempotency record", e))?;
        match self.kv.create(&key, Bytes::from(bytes)).await {
            Ok(_) => return Ok(Reservation::New(record)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::nats("reserve idempotency key", e)),
        }
        let existing = self
            .kv
            .get(&key)
            .await
            .map_err(|e| StoreError::nats("read idempotency key", e))?
            .ok_or_else(|| StoreError::Contended {
                // Expired between the create and the read: the caller retries.
                key: key.clone(),
                attempts: 1,
            })?;
        let existing: IdempotencyRecord =
            json::from_slice(&existing).map_err(|e| StoreError::Corrupt {
                key,
                message: e.to_string(),
            })?;
        Ok(if existing.body_sha256 == body_sha256 {
            Reservation::Existing(existing)
        } else {
            Reservation::Conflict(existing)
        })
    }
}

impl super::Store {
    /// The used-nonce memory of HMAC request signing.
    pub fn nonces(&self) -> Nonces {
        Nonces::new(self.resources.nonces.clone())
    }

    /// The `Idempotency-Key` reservations of submits.
    pub fn idempotency(&self) -> Idempotency {
        Idempotency::new(self.resources.idempotency.clone())
    }
}
