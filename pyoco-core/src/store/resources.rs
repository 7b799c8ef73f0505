//! `ensure_resources`: the original's streams, KV buckets and object store, created when
//! missing and never modified when present (whoever created them first decides their config).

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

use super::{Layout, StoreError};
use crate::config::Config;

/// Handles on every bucket, bound once.
#[derive(Clone)]
pub struct Resources {
    pub runs: kv::Store,
    pub workers: kv::Store,
    pub auth: kv::Store,
    pub schedules: kv::Store,
    pub bundles: kv::Store,
    pub run_relations: kv::Store,
    pub wheel_history: kv::Store,
    pub task_cache: kv::Store,
    pub circuit_breakers: kv::Store,
    /// Used HMAC nonces; entries expire after twice the signature window.
    pub nonces: kv::Store,
    /// `Idempotency-Key` → run, for `PYOCO_IDEMPOTENCY_TTL_SEC`.
    pub idempotency: kv::Store,
    /// Schedule slot claims (pyoco only); a day is far longer than any claim matters.
    pub schedule_claims: kv::Store,
    /// The flow registry (pyoco only).
    pub flows: kv::Store,
    pub wheels: object_store::ObjectStore,
    /// Resources whose replicas differ from `PYOCO_JS_REPLICAS` (they existed before with
    /// another config, which is kept): `"<stream> has N replicas"`.
    pub replica_mismatches: Vec<String>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("runs", &self.runs.name)
            .field("workers", &self.workers.name)
            .finish_non_exhaustive()
    }
}

/// Makes sure every resource exists and returns handles on the buckets. Idempotent and safe
/// to race: a create that loses to another process falls back to binding the winner's.
pub async fn ensure_resources(
    js: &jetstream::Context,
    config: &Config,
) -> Result<Resources, StoreError> {
    let names = Layout::new(config);
    let streams = [
        stream::Config {
            name: names.work_stream.clone(),
            subjects: vec![names.work_subjects()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            num_replicas: config.js_replicas,
            ..Default::default()
        },
        stream::Config {
            name: names.dlq_stream.clone(),
            subjects: vec![names.dlq_subjects()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: config.dlq_max_age,
            max_messages: config.dlq_max_msgs,
            max_bytes: config.dlq_max_bytes,
            num_replicas: config.js_replicas,
            ..Default::default()
        },
    ];
    // One call site per kind of resource, in a loop: debug builds give every inlined NATS
    // future its own stack slot, and nine of them overflowed a test thread's stack.
    let mut replica_mismatches = Vec::new();
    let mut check = |stream: &str, replicas: usize| {
        if replicas != config.js_replicas {
            replica_mismatches.push(format!("{stream} has {replicas} replicas"));
        }
    };
    for stream in streams {
        let name = stream.name.clone();
        check(&name, ensure_stream(js, stream).await?);
    }
    // (name, history, max age), in the order of the `Resources` fields.
    let buckets: [(&str, i64, Duration); 13] = [
        (&names.runs_bucket, 1, Duration::ZERO),
        (&names.workers_bucket, 1, config.workers_kv_ttl),
        (&names.auth_bucket, 1, Duration::ZERO),
        (&names.schedules_bucket, 5, Duration::ZERO),
        (&names.bundles_bucket, 1, Duration::ZERO),
        (&names.run_relations_bucket, 1, Duration::ZERO),
        (&names.wheel_history_bucket, 1, config.wheel_history_ttl),
        // Cache entries carry their own expiry; the bucket's 30-day age bounds what is kept.
        (
            &names.task_cache_bucket,
            1,
            Duration::from_secs(30 * 86_400),
        ),
        (&names.circuit_breakers_bucket, 1, Duration::ZERO),
        // A nonce must outlive every timestamp that could still carry it (±TTL).
        (
            &names.nonces_bucket,
            1,
            (config.http_hmac_ttl * 2).max(Duration::from_secs(60)),
        ),
        (&names.idempotency_bucket, 1, config.idempotency_ttl),
        (
            &names.schedule_claims_bucket,
            1,
            Duration::from_secs(86_400),
        ),
        (&names.flows_bucket, 1, Duration::ZERO),
    ];
    let config_replicas = config.js_replicas;
    let mut bound = Vec::with_capacity(buckets.len());
    for (name, history, max_age) in buckets {
        let config = kv::Config {
            bucket: name.to_string(),
            history,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: config_replicas,
            ..Default::default()
        };
        let store = ensure_kv(js, config).await?;
        let info = &store.stream.cached_info().config;
        check(&info.name, info.num_replicas);
        bound.push(store);
    }
    let wheels = match js.get_object_store(&names.wheels_bucket).await {
        Ok(store) => store,
        Err(_) => {
            let created = js
                .create_object_store(object_store::Config {
                    bucket: names.wheels_bucket.clone(),
                    max_bytes: i64::try_from(config.wheel_max_bytes).unwrap_or(i64::MAX),
                    storage: stream::StorageType::File,
                    num_replicas: config.js_replicas,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(store) => store,
                Err(e) => js
                    .get_object_store(&names.wheels_bucket)
                    .await
                    .map_err(|_| StoreError::nats("create object store", e))?,
            }
        }
    };
    // The object store's stream is not reachable through its handle: ask for it.
    let wheel_stream = format!("OBJ_{}", names.wheels_bucket);
    // Boxed, like every extra NATS call here: debug-build stacks are tight (see above).
    if let Ok(stream) = Box::pin(js.get_stream(&wheel_stream)).await {
        check(&wheel_stream, stream.cached_info().config.num_replicas);
    }
    let mut bound = bound.into_iter();
    let mut next = || {
        bound.next().ok_or_else(|| StoreError::Failed {
            op: "bind kv buckets",
            message: "a bucket is missing".into(),
            source: None,
        })
    };
    Ok(Resources {
        runs: next()?,
        workers: next()?,
        auth: next()?,
        schedules: next()?,
        bundles: next()?,
        run_relations: next()?,
        wheel_history: next()?,
        task_cache: next()?,
        circuit_breakers: next()?,
        nonces: next()?,
        idempotency: next()?,
        schedule_claims: next()?,
        flows: next()?,
        wheels,
        replica_mismatches,
    })
}

/// Creates the stream unless it exists; returns its replicas (the existing config's).
async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<usize, StoreError> {
    match js.get_stream(&config.name).await {
        Ok(s) => Ok(s.cached_info().config.num_replicas),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(_)
            ) =>
        {
            let name = config.name.clone();
            match js.create_stream(config).await {
                Ok(s) => Ok(s.cached_info().config.num_replicas),
                // Lost a race with another process: the stream exists now.
                Err(create) => js
                    .get_stream(&name)
                    .await
                    .map(|s| s.cached_info().config.num_replicas)
                    .map_err(|_| StoreError::nats("create stream", create)),
            }
        }
        Err(e) => Err(StoreError::nats("get stream", e)),
    }
}

async fn ensure_kv(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, StoreError> {
    match js.get_key_value(&config.bucket).await {
        Ok(store) => Ok(store),
        Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {
            let bucket = config.bucket.clone();
            match js.create_key_value(config).await {
                Ok(store) => Ok(store),
                Err(create) => js
                    .get_key_value(&bucket)
                    .await
                    .map_err(|_| StoreError::nats("create kv bucket", create)),
            }
        }
        Err(e) => Err(StoreError::nats("get kv bucket", e)),
    }
}
