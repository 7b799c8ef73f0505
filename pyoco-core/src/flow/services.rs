//! What the engine needs from outside for task policies: a result cache and circuit
//! breakers shared by all workers. The worker passes NATS-backed ones
//! (`store::services::KvServices`); [`NoServices`] disables both and [`MemoryServices`]
//! keeps them in this process (tests, embedding without NATS).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::policy::BreakerPolicy;

/// Cache and circuit-breaker storage.
pub trait TaskServices: Send + Sync + Debug {
    /// A cached output for `key`, if present and not expired.
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Value>>;
    /// Stores a successful output for `ttl`.
    fn cache_put<'a>(&'a self, key: &'a str, value: &'a Value, ttl: Duration) -> BoxFuture<'a, ()>;
    /// `Err(message)` while the breaker of `callable` is open; lets one trial through once the
    /// cool-down has passed (half-open).
    fn breaker_allow<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Records the outcome of a call that was allowed.
    fn breaker_record<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
        ok: bool,
    ) -> BoxFuture<'a, ()>;
    /// A task finished (after all its attempts), for metrics. Default: nothing.
    fn task_finished(&self, _callable: &str, _ok: bool, _elapsed: Duration) {}
}

/// The cache key of a call: the callable and a hash of its arguments (canonical JSON: object
/// keys sorted), so equal inputs hit whatever their order.
pub fn cache_key(callable: &str, args: &serde_json::Map<String, Value>) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for i in items {
                    canonical(i, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(&Value::Object(args.clone()), &mut text);
    let mut h = Sha256::new();
    h.update(callable.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

/// Breaker states, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// One breaker's record; the pure transition logic shared by every storage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Breaker {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Unix seconds when it last opened.
    pub opened_at: Option<f64>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
        }
    }
}

impl Breaker {
    /// Decides a call at `now`: `Ok(changed)` lets it through (an open breaker past its
    /// cool-down turns half-open and lets exactly this one trial through); `Err(retry_in)`
    /// rejects it.
    pub fn allow(&mut self, policy: &BreakerPolicy, now: f64) -> Result<bool, f64> {
        match self.state {
            BreakerState::Closed => Ok(false),
            // Half-open: one trial is out. If it never reports (its worker died), another
            // trial is allowed after a further cool-down.
            BreakerState::Open | BreakerState::HalfOpen => {
                let reopen = self.opened_at.unwrap_or(0.0) + policy.reset_after.as_secs_f64();
                if now >= reopen {
                    self.state = BreakerState::HalfOpen;
                    self.opened_at = Some(now);
                    Ok(true)
                } else {
                    Err(reopen - now)
                }
            }
        }
    }

    /// Records an outcome at `now`.
    pub fn record(&mut self, policy: &BreakerPolicy, ok: bool, now: f64) {
        if ok {
            *self = Breaker::default();
            return;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == BreakerState::HalfOpen
            || self.consecutive_failures >= policy.failure_threshold
        {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
        }
    }

    pub fn open_message(callable: &str, failures: u32, retry_in: f64) -> String {
        format!(
            "circuit open for '{callable}' after {failures} consecutive failures; retry in {retry_in:.1}s"
        )
    }
}

/// Neither cache nor breakers.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoServices;

impl TaskServices for NoServices {
    fn cache_get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async { None })
    }
    fn cache_put<'a>(&'a self, _: &'a str, _: &'a Value, _: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    fn breaker_allow<'a>(
        &'a self,
        _: &'a str,
        _: &'a BreakerPolicy,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn breaker_record<'a>(
        &'a self,
        _: &'a str,
        _: &'a BreakerPolicy,
        _: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The time source of [`MemoryServices`]: Unix seconds.
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Cache and breakers in this process only.
pub struct MemoryServices {
    cache: Mutex<HashMap<String, (Value, f64)>>,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Where cache expiry and breaker cool-downs read the time; tests inject a manual clock
    /// instead of sleeping through a cool-down.
    clock: Clock,
}

impl Debug for MemoryServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryServices").finish_non_exhaustive()
    }
}

impl Default for MemoryServices {
    fn default() -> Self {
        MemoryServices::with_clock(Arc::new(crate::model::now))
    }
}

impl MemoryServices {
    /// Services that read the time from `clock` (Unix seconds).
    pub fn with_clock(clock: Clock) -> MemoryServices {
        MemoryServices {
            cache: Mutex::default(),
            breakers: Mutex::default(),
            clock,
        }
    }
}

impl TaskServices for MemoryServices {
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Value>> {
        let now = (self.clock)();
        let hit = self.cache.lock().ok().and_then(|c| {
            c.get(key)
                .filter(|(_, expires)| *expires > now)
                .map(|(v, _)| v.clone())
        });
        Box::pin(async move { hit })
    }
    fn cache_put<'a>(&'a self, key: &'a str, value: &'a Value, ttl: Duration) -> BoxFuture<'a, ()> {
        let expires = (self.clock)() + ttl.as_secs_f64();
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key.to_string(), (value.clone(), expires));
        }
        Box::pin(async {})
    }
    fn breaker_allow<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
    ) -> BoxFuture<'a, Result<(), String>> {
        let now = (self.clock)();
        let result = match self.breakers.lock() {
            Ok(mut b) => {
                let breaker = b.entry(callable.to_string()).or_default();
                breaker.allow(policy, now).map(|_| ()).map_err(|retry_in| {
                    Breaker::open_message(callable, breaker.consecutive_failures, retry_in)
                })
            }
            Err(_) => Ok(()),
        };
        Box::pin(async move { result })
    }
    fn breaker_record<'a>(
        &'a self,
        callable: &'a str,
        policy: &'a BreakerPolicy,
        ok: bool,
    ) -> BoxFuture<'a, ()> {
        let now = (self.clock)();
        if let Ok(mut b) = self.breakers.lock() {
            b.entry(callable.to_string())
                .or_default()
                .record(policy, ok, now);
        }
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_keys_ignore_object_key_order() {
        let a = json!({"x": 1, "y": {"b": 2, "a": [1, {"d": 0, "c": 1}]}});
        let b = json!({"y": {"a": [1, {"c": 1, "d": 0}], "b": 2}, "x": 1});
        assert_eq!(
            cache_key("m:f", a.as_object().unwrap()),
            cache_key("m:f", b.as_object().unwrap())
        );
        assert_ne!(
            cache_key("m:f", a.as_object().unwrap()),
            cache_key("m:g", a.as_object().unwrap())
        );
    }

    #[test]
    fn breaker_opens_after_the_threshold_and_half_opens_after_the_cool_down() {
        let policy = BreakerPolicy {
            failure_threshold: 2,
            reset_after: Duration::from_secs(10),
        };
        let mut b = Breaker::default();
        assert_eq!(b.allow(&policy, 0.0), Ok(false));
        b.record(&policy, false, 0.0);
        assert_eq!(b.state, BreakerState::Closed);
        b.record(&policy, false, 1.0);
        assert_eq!(b.state, BreakerState::Open);
        assert_eq!(b.allow(&policy, 5.0), Err(6.0));
        assert_eq!(
            b.allow(&policy, 11.0),
            Ok(true),
            "one trial after the cool-down"
        );
        assert_eq!(b.state, BreakerState::HalfOpen);
        assert!(b.allow(&policy, 11.1).is_err(), "only one trial at a time");
        b.record(&policy, false, 11.5);
        assert_eq!(
            (b.state, b.opened_at),
            (BreakerState::Open, Some(11.5)),
            "a failed trial reopens it"
        );
        assert!(b.allow(&policy, 21.6).is_ok());
        b.record(&policy, true, 21.7);
        assert_eq!(b, Breaker::default(), "a successful trial closes it");
    }

    /// A clock the test moves by hand.
    fn manual_clock() -> (Arc<Mutex<f64>>, Clock) {
        let t = Arc::new(Mutex::new(1_000.0));
        let read = t.clone();
        (t, Arc::new(move || *read.lock().unwrap()))
    }

    #[tokio::test]
    async fn memory_breaker_half_opens_after_the_cool_down_on_the_injected_clock() {
        let (t, clock) = manual_clock();
        let services = MemoryServices::with_clock(clock);
        let policy = BreakerPolicy {
            failure_threshold: 1,
            reset_after: Duration::from_secs(30),
        };
        services.breaker_allow("m:f", &policy).await.unwrap();
        services.breaker_record("m:f", &policy, false).await;
        *t.lock().unwrap() += 29.0;
        let err = services.breaker_allow("m:f", &policy).await.unwrap_err();
        assert!(err.ends_with("retry in 1.0s"), "{err}");
        *t.lock().unwrap() += 1.0;
        services.breaker_allow("m:f", &policy).await.unwrap();
        services.breaker_record("m:f", &policy, true).await;
        services.breaker_allow("m:f", &policy).await.unwrap();
    }

    #[tokio::test]
    async fn memory_cache_entries_expire_on_the_injected_clock() {
        let (t, clock) = manual_clock();
        let services = MemoryServices::with_clock(clock);
        services
            .cache_put("k", &json!(1), Duration::from_secs(60))
            .await;
        *t.lock().unwrap() += 59.0;
        assert_eq!(services.cache_get("k").await, Some(json!(1)));
        *t.lock().unwrap() += 1.0;
        assert_eq!(services.cache_get("k").await, None);
    }
}
