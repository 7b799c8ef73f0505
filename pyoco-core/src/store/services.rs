//! Task cache and circuit breakers in KV, shared by every worker: cache entries carry their
//! own expiry (checked on read, so any server version works); breaker records change only by
//! compare-and-set, so concurrent workers never lose a failure count or a state change.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::flow::policy::BreakerPolicy;
use crate::flow::services::{Breaker, TaskServices};
use crate::model::{json as lenient, now};

/// Cache and breakers over two KV buckets.
#[derive(Debug, Clone)]
pub struct KvServices {
    cache: kv::Store,
    breakers: kv::Store,
}

impl super::Store {
    /// The task cache and circuit breakers every worker shares.
    pub fn task_services(&self) -> KvServices {
        KvServices {
            cache: self.resources.task_cache.clone(),
            breakers: self.resources.circuit_breakers.clone(),
        }
    }
}

/// A KV-safe key for a callable (`module:function` has a colon KV keys do not allow).
pub fn breaker_key(callable: &str) -> String {
    callable
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl KvServices {
    async fn update_breaker(
        &self,
        callable: &str,
        mut change: impl FnMut(&mut Breaker) -> bool,
    ) -> Option<Breaker> {
        let key = breaker_key(callable);
        for _ in 0..16 {
            let entry = match self.breakers.entry(&key).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(callable, error = %e, "circuit breaker unavailable; allowing the call");
                    return None;
                }
            };
            let (mut breaker, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => (
                    lenient::from_slice::<Breaker>(&e.value).unwrap_or_default(),
                    Some(e.revision),
                ),
                Some(e) => (Breaker::default(), Some(e.revision)),
                None => (Breaker::default(), None),
            };
            if !change(&mut breaker) {
                return Some(breaker);
            }
            let mut doc = serde_json::to_value(&breaker).unwrap_or(Value::Null);
            doc["callable"] = json!(callable);
            doc["updated_at"] = json!(now());
            let bytes = Bytes::from(doc.to_string());
            let written = match revision {
                Some(rev) => self.breakers.update(&key, bytes, rev).await.is_ok(),
                None => self.breakers.create(&key, bytes).await.is_ok(),
            };
            if written {
                return Some(breaker);
            }
        }
        tracing::warn!(
            callable,
            "circuit breaker write kept conflicting; allowing the call"
        );
        None
    }
}

impl TaskServices for KvServices {
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async move {
            let bytes = self.cache.get(key).await.ok()??;
            let doc: Value = lenient::from_slice(&bytes).ok()?;
            let fresh = doc
                .get("expires_at")
                .and_then(Value::as_f64)
                .is_some_and(|exp| exp > now());
            fresh.then(|| doc.get("value").cloned()).flatten()
        })
    }

    fn cache_put<'a>(&'a self, key: &'a str, value: &'a Value, ttl: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let doc = json!({"value": value, "expires_at": now() + ttl.as_secs_f64(), "stored_at": now()});
            if let Err(e) = self.cache.put(key, Bytes::from(doc.to_string())).await {
                tracing::warn!(error = %e, "could not store a task result in the cache");
            }
        })
    }

    fn breaker_allow<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let t = now();
            let mut verdict = Ok(());
            self.update_breaker(callable, |b| match b.allow(policy, t) {
                Ok(changed) => {
                    verdict = Ok(());
                    changed
                }
                Err(retry_in) => {
                    verdict = Err(Breaker::open_message(
                        callable,
                        b.consecutive_failures,
                        retry_in,
                    ));
                    false
                }
            })
            .await;
            verdict
        })
    }

    fn breaker_record<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
        ok: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let t = now();
            self.update_breaker(callable, |b| {
                let before = b.clone();
                b.record(policy, ok, t);
                *b != before
            })
            .await;
        })
    }
}
