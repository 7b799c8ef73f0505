//! The flow registry (`pyoco_flows`, pyoco only): versioned `flow.yaml` definitions by name,
//! per tenant. Keys are hashes of (tenant, name), since a flow name may hold any printable
//! character and a KV key may not: `m.<h>` is the name's [`FlowRecord`], `v.<h>.<n>` version
//! `n` ([`FlowVersion`]). A version is written with a KV create before the record points at
//! it (compare-and-set), so two registrations racing for the same number cannot both win.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{StoreError, Versioned};
use crate::model::flow_registry::{FlowRecord, FlowVersion, VersionInfo};
use crate::model::json;

/// Conflicting writes tolerated before giving up (another writer keeps winning).
const ATTEMPTS: u32 = 10;

/// The flow registry of one bucket.
#[derive(Debug, Clone)]
pub struct FlowStore {
    kv: kv::Store,
}

/// A YAML to register.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub tenant: Option<&'a str>,
    pub name: &'a str,
    pub yaml: &'a str,
    pub sha256: &'a str,
    pub registered_by: Option<&'a str>,
    pub now: f64,
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub record: FlowRecord,
    /// The version the YAML is (the new one, or the latest when it was identical).
    pub version: u64,
    /// False when the YAML was identical to the latest version (nothing written).
    pub created: bool,
}

/// What a rollback found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RolledBack {
    Done(FlowRecord),
    NoFlow,
    NoVersion,
}

fn scope(tenant: Option<&str>, name: &str) -> String {
    let mut h = Sha256::new();
    // The tenant is absent or a string: a prefix byte keeps "no tenant" apart from "".
    match tenant {
        None => h.update([0u8]),
        Some(t) => {
            h.update([1u8]);
            h.update(t.as_bytes());
        }
    }
    h.update([0u8]);
    h.update(name.as_bytes());
    hex::encode(&h.finalize()[..16])
}

fn record_key(tenant: Option<&str>, name: &str) -> String {
    format!("m.{}", scope(tenant, name))
}

fn version_key(tenant: Option<&str>, name: &str, version: u64) -> String {
    format!("v.{}.{version}", scope(tenant, name))
}

fn encode<T: Serialize>(doc: &T) -> Result<Bytes, StoreError> {
    serde_json::to_vec(doc)
        .map(Bytes::from)
        .map_err(|e| StoreError::failed("encode flow document", e))
}

impl FlowStore {
    pub(crate) fn new(kv: kv::Store) -> FlowStore {
        FlowStore { kv }
    }

    async fn read<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| StoreError::nats("read flow registry", e))?;
        let Some(entry) = entry else { return Ok(None) };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        json::from_slice::<T>(&entry.value)
            .map(|value| {
                Some(Versioned {
                    value,
                    revision: entry.revision,
                })
            })
            .map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                message: e.to_string(),
            })
    }

    /// The record of `name` in `tenant`'s registry.
    pub async fn get(
        &self,
        tenant: Option<&str>,
        name: &str,
    ) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        self.read(&record_key(tenant, name)).await
    }

    /// Version `version` of `name`, YAML included.
    pub async fn version(
        &self,
        tenant: Option<&str>,
        name: &str,
        version: u64,
    ) -> Result<Option<FlowVersion>, StoreError> {
        Ok(self
            .read::<FlowVersion>(&version_key(tenant, name, version))
            .await?
            .map(|v| v.value))
    }

    /// The active version of `name`, if it is registered.
    pub async fn active(
        &self,
        tenant: Option<&str>,
        name: &str,
    ) -> Result<Option<FlowVersion>, StoreError> {
        let Some(record) = self.get(tenant, name).await? else {
            return Ok(None);
        };
        self.version(tenant, name, record.value.active_version)
            .await
    }

    /// What identifies `name` in `tenant`'s registry in [`FlowStore::record_changes`].
    pub fn scope_of(tenant: Option<&str>, name: &str) -> String {
        scope(tenant, name)
    }

    /// The [`FlowStore::scope_of`] of every flow whose record changes (register, rollback,
    /// delete) from now on. The stream ends when the watch breaks.
    pub async fn record_changes(
        &self,
    ) -> Result<impl futures::Stream<Item = Result<String, StoreError>> + use<>, StoreError> {
        super::key_changes(&self.kv, "m.", "watch flow registry").await
    }

    /// Every record of `tenant`'s registry, by name.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<FlowRecord>, StoreError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| StoreError::nats("list flows", e))?;
        let mut records = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| StoreError::nats("list flows", e))?;
            if !key.starts_with("m.") {
                continue;
            }
            match self.read::<FlowRecord>(&key).await {
                Ok(Some(r)) if r.value.tenant_id.as_deref() == tenant => records.push(r.value),
                Ok(_) => {}
                Err(StoreError::Corrupt { key, message }) => {
                    tracing::warn!(%key, %message, "corrupt flow record skipped");
                }
                Err(e) => return Err(e),
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Registers `new` as the next version of its name and makes it active; a YAML identical
    /// to the latest version is not a new version.
    pub async fn register(&self, new: &NewVersion<'_>) -> Result<Registered, StoreError> {
        let key = record_key(new.tenant, new.name);
        for _ in 0..ATTEMPTS {
            let current = self.read::<FlowRecord>(&key).await?;
            if let Some(current) = &current
                && let Some(latest) = current.value.version(current.value.latest_version)
                && latest.sha256 == new.sha256
            {
                return Ok(Registered {
                    version: latest.version,
                    record: current.value.clone(),
                    created: false,
                });
            }
            let version = current.as_ref().map_or(1, |c| c.value.latest_version + 1);
            let info = VersionInfo {
                version,
                sha256: new.sha256.to_string(),
                bytes: new.yaml.len() as u64,
                registered_at: new.now,
                registered_by: new.registered_by.map(str::to_string),
            };
            let doc = FlowVersion {
                name: new.name.to_string(),
                tenant_id: new.tenant.map(str::to_string),
                info: info.clone(),
                yaml: new.yaml.to_string(),
            };
            let vkey = version_key(new.tenant, new.name, version);
            match self.kv.create(&vkey, encode(&doc)?).await {
                Ok(_) => {}
                // Another registration took this number: read again.
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::nats("store flow version", e)),
            }
            let (record, written) = match current {
                None => {
                    let record = FlowRecord {
                        name: new.name.to_string(),
                        tenant_id: new.tenant.map(str::to_string),
                        active_version: version,
                        latest_version: version,
                        versions: vec![info],
                        created_at: new.now,
                        updated_at: new.now,
                    };
                    let written = match self.kv.create(&key, encode(&record)?).await {
                        Ok(_) => true,
                        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                        Err(e) => return Err(StoreError::nats("store flow record", e)),
                    };
                    (record, written)
                }
                Some(Versioned {
                    value: mut record,
                    revision,
                }) => {
                    record.active_version = version;
                    record.latest_version = version;
                    record.versions.push(info);
                    record.updated_at = new.now;
                    let written = match self.kv.update(&key, encode(&record)?, revision).await {
                        Ok(_) => true,
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                        Err(e) => return Err(StoreError::nats("store flow record", e)),
                    };
                    (record, written)
                }
            };
            if written {
                return Ok(Registered {
                    record,
                    version,
                    created: true,
                });
            }
            // The record moved under us: drop the orphan version and start over.
            let _ = self.kv.purge(&vkey).await;
        }
        Err(StoreError::Contended {
            key,
            attempts: ATTEMPTS,
        })
    }

    /// Makes `version` the active one.
    pub async fn rollback(
        &self,
        tenant: Option<&str>,
        name: &str,
        version: u64,
        now: f64,
    ) -> Result<RolledBack, StoreError> {
        let key = record_key(tenant, name);
        for _ in 0..ATTEMPTS {
            let Some(Versioned {
                value: mut record,
                revision,
            }) = self.read::<FlowRecord>(&key).await?
            else {
                return Ok(RolledBack::NoFlow);
            };
            if record.version(version).is_none() {
                return Ok(RolledBack::NoVersion);
            }
            record.active_version = version;
            record.updated_at = now;
            match self.kv.update(&key, encode(&record)?, revision).await {
                Ok(_) => return Ok(RolledBack::Done(record)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(StoreError::nats("roll back flow", e)),
            }
        }
        Err(StoreError::Contended {
            key,
            attempts: ATTEMPTS,
        })
    }

    /// Removes `name` and every version of it; false when it was not registered.
    pub async fn delete(&self, tenant: Option<&str>, name: &str) -> Result<bool, StoreError> {
        let key = record_key(tenant, name);
        let Some(record) = self.read::<FlowRecord>(&key).await? else {
            return Ok(false);
        };
        // The record first: once it is gone, no run resolves the name any more.
        self.kv
            .purge(&key)
            .await
            .map_err(|e| StoreError::nats("delete flow", e))?;
        for v in &record.value.versions {
            self.kv
                .purge(version_key(tenant, name, v.version))
                .await
                .map_err(|e| StoreError::nats("delete flow version", e))?;
        }
        Ok(true)
    }
}

impl super::Store {
    /// The flow registry.
    pub fn flows(&self) -> FlowStore {
        FlowStore::new(self.resources.flows.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_tenant_and_safe_for_any_name() {
        let a = record_key(None, "etl / nightly ✓");
        assert!(a.starts_with("m.") && a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, record_key(Some(""), "etl / nightly ✓"));
        assert_ne!(record_key(Some("t1"), "x"), record_key(Some("t2"), "x"));
        assert_eq!(
            version_key(Some("t1"), "x", 3),
            format!("v.{}.3", scope(Some("t1"), "x"))
        );
    }
}
