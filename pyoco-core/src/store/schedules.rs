//! Schedule records (`pyoco_yaml_schedules`, the original's bucket and documents) and slot
//! claims (`pyoco_yaml_schedules_claims`, pyoco only).
//!
//! A claim is a KV create of `<schedule_id>.<slot ms>`: among the gateways that find the same
//! slot due, the first create wins and fires it. A claim older than its lease can be taken
//! over (compare-and-set on its revision), so a gateway that stalls or dies after claiming
//! does not lose the slot; the run it fires has an id derived from the same key, so the
//! original claimant waking up late cannot fire a second run.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{StoreError, Versioned};
use crate::model::ident::{IdKind, is_valid_id};
use crate::model::json;
use crate::model::schedule::{Schedule, slot_millis};

/// Schedule records and slot claims.
#[derive(Debug, Clone)]
pub struct ScheduleStore {
    records: kv::Store,
    claims: kv::Store,
}

/// A slot claim as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotClaim {
    pub schedule_id: String,
    pub slot: f64,
    pub run_id: String,
    /// Who holds it (a gateway instance id), for logs.
    pub holder: String,
    pub claimed_at: f64,
}

/// The outcome of claiming a slot.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Claim {
    /// This caller fires the slot.
    Won,
    /// Another gateway claimed it within the lease: leave it alone.
    Held(SlotClaim),
}

impl ScheduleStore {
    pub(crate) fn new(records: kv::Store, claims: kv::Store) -> ScheduleStore {
        ScheduleStore { records, claims }
    }

    /// Every readable record with its revision; corrupt ones are logged and left out.
    pub async fn list(&self) -> Result<Vec<Versioned<Schedule>>, StoreError> {
        let mut keys = self
            .records
            .keys()
            .await
            .map_err(|e| StoreError::nats("list schedules", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| StoreError::nats("list schedules", e))?);
        }
        let mut out = Vec::with_capacity(names.len());
        for key in names {
            if let Some(s) = self.get(&key).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// One record; `None` when missing or deleted (a corrupt one is logged and `None`), and
    /// for an id that breaks the schedule id rule (it cannot exist; NATS is not asked). The key
    /// is the record's id, whatever its `schedule_id` field says.
    pub async fn get(&self, schedule_id: &str) -> Result<Option<Versioned<Schedule>>, StoreError> {
        if !is_valid_id(IdKind::ScheduleId, schedule_id) {
            return Ok(None);
        }
        let entry = self
            .records
            .entry(schedule_id)
            .await
            .map_err(|e| StoreError::nats("read schedule", e))?;
        let Some(entry) = entry else { return Ok(None) };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        match json::from_slice::<Schedule>(&entry.value) {
            Ok(mut value) => Ok(Some(Versioned {
                value: {
                    value.schedule_id = schedule_id.to_string();
                    value
                },
                revision: entry.revision,
            })),
            Err(e) => {
                tracing::warn!(schedule_id, error = %e, "corrupt schedule record skipped");
                Ok(None)
            }
        }
    }

    /// Stores a new record (fails if the id exists).
    pub async fn create(&self, schedule: &Schedule) -> Result<u64, StoreError> {
        let bytes = encode(schedule)?;
        self.records
            .create(&schedule.schedule_id, bytes)
            .await
            .map_err(|e| StoreError::nats("create schedule", e))
    }

    /// Writes `schedule` if the record is still at `revision`; `Ok(None)` on a conflict.
    pub async fn update(
        &self,
        schedule: &Schedule,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        let bytes = encode(schedule)?;
        match self
            .records
            .update(&schedule.schedule_id, bytes, revision)
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(StoreError::nats("update schedule", e)),
        }
    }

    /// Deletes the record (its history stays, like the original's delete).
    pub async fn delete(&self, schedule_id: &str) -> Result<(), StoreError> {
        self.records
            .delete(schedule_id)
            .await
            .map_err(|e| StoreError::nats("delete schedule", e))
    }

    fn claim_key(schedule_id: &str, slot: f64) -> String {
        format!("{schedule_id}.{}", slot_millis(slot))
    }

    /// Claims a slot for `holder`: won when nobody has, or when the claim is older than
    /// `lease` seconds (its holder stalled or died; the run id is the same, so taking over is
    /// safe); held otherwise.
    pub async fn claim_slot(
        &self,
        claim: &SlotClaim,
        lease: f64,
        now: f64,
    ) -> Result<Claim, StoreError> {
        let key = ScheduleStore::claim_key(&claim.schedule_id, claim.slot);
        let bytes = Bytes::from(
            serde_json::to_vec(claim).map_err(|e| StoreError::failed("encode claim", e))?,
        );
        match self.claims.create(&key, bytes.clone()).await {
            Ok(_) => return Ok(Claim::Won),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::nats("claim slot", e)),
        }
        let Some(entry) = self
            .claims
            .entry(&key)
            .await
            .map_err(|e| StoreError::nats("read slot claim", e))?
        else {
            // Expired in between: the next tick claims it.
            return Ok(Claim::Held(claim.clone()));
        };
        let current: SlotClaim = match json::from_slice(&entry.value) {
            Ok(c) => c,
            Err(_) => SlotClaim {
                claimed_at: 0.0,
                ..claim.clone()
            },
        };
        // Our own claim (a fire whose advance failed last tick) is ours to finish.
        if now - current.claimed_at < lease && current.holder != claim.holder {
            return Ok(Claim::Held(current));
        }
        match self.claims.update(&key, bytes, entry.revision).await {
            Ok(_) => {
                tracing::info!(
                    schedule_id = %claim.schedule_id,
                    slot = claim.slot,
                    stale_holder = %current.holder,
                    "took over a stale slot claim"
                );
                Ok(Claim::Won)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Ok(Claim::Held(current))
            }
            Err(e) => Err(StoreError::nats("take over slot claim", e)),
        }
    }

    /// Gives a claim back after a failed fire, so the next tick retries at once.
    pub async fn release_slot(&self, schedule_id: &str, slot: f64) {
        let key = ScheduleStore::claim_key(schedule_id, slot);
        if let Err(e) = self.claims.delete(&key).await {
            tracing::debug!(schedule_id, error = %e, "release slot claim failed");
        }
    }
}

fn encode(schedule: &Schedule) -> Result<Bytes, StoreError> {
    serde_json::to_vec(schedule)
        .map(Bytes::from)
        .map_err(|e| StoreError::failed("encode schedule", e))
}

impl super::Store {
    /// Schedule records and slot claims.
    pub fn schedules(&self) -> ScheduleStore {
        ScheduleStore::new(
            self.resources.schedules.clone(),
            self.resources.schedule_claims.clone(),
        )
    }
}
