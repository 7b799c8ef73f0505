//! Run index checkpoints against a real nats-server: a gateway writes one once its index is
//! big enough, a second gateway loads it plus the later writes (updates, deletes, new runs)
//! and then lists and counts exactly what the first does; a checkpoint that cannot be used
//! (garbage, or taken of a runs bucket since deleted and created again) is ignored and the
//! bucket replayed.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyoco::config::Config;
use pyoco::model::now;
use pyoco::store::Store;
use pyoco::testkit::{GatewayHandle, NatsServer, fast_config, wait_for};
use serde_json::{Value, json};

/// Checkpoints from 20 runs on, at most every 0.2 s.
fn checkpointing(server: &NatsServer) -> Config {
    let mut config = fast_config(server);
    config.index_checkpoint_min_runs = 20;
    config.index_checkpoint_interval = Duration::from_millis(200);
    config
}

async fn put(store: &Store, id: &str, i: usize, status: &str) {
    let t = now() - 30.0 + i as f64 * 0.01;
    let failed = status == "FAILED";
    let doc = json!({"run_id": id, "flow_name": format!("flow-{}", i % 3), "tag": "default",
        "tags": ["default"], "tenant_id": if i.is_multiple_of(4) { json!("acme") } else { Value::Null },
        "status": status, "params": {}, "tasks": {}, "updated_at": t, "start_time": t - 0.5,
        "end_time": if status == "RUNNING" { Value::Null } else { json!(t) },
        "error": if failed { json!("ValueError: bad row") } else { Value::Null },
        "task_records": {"load": {"state": if failed { "FAILED" } else { "SUCCEEDED" },
            "error": if failed { json!("ValueError: bad row") } else { Value::Null },
            "callable": "etl:load", "attempts": 1}}});
    store
        .runs()
        .put_raw(id, Bytes::from(doc.to_string()))
        .await
        .unwrap();
}

async fn connect(config: &Config) -> Store {
    Store::connect(Arc::new(config.clone()), "index-checkpoint-test")
        .await
        .unwrap()
}

async fn get(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Waits until the gateway at `url` lists `runs` runs.
async fn wait_listed(url: &str, runs: usize) {
    let what = format!("{url} lists {runs} runs");
    wait_for(&what, Duration::from_secs(10), || async {
        let listed = get(&format!("{url}/runs?limit=200")).await;
        (listed.as_array().unwrap().len() == runs).then_some(())
    })
    .await;
}

/// What two gateways must agree on: lists (whole documents, in order, filtered or not) and
/// the counters that outlive a restart.
async fn view(url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for query in [
        "runs?limit=200",
        "runs?limit=200&status=FAILED",
        "runs?limit=200&flow=flow-1&status=COMPLETED",
        "runs?limit=5",
    ] {
        out.push(get(&format!("{url}/{query}")).await);
    }
    let stats = get(&format!("{url}/stats")).await;
    out.push(stats["runs_by_status"].clone());
    out.push(stats["totals"].clone());
    out.push(get(&format!("{url}/progress?flow=flow-2")).await);
    let logs = get(&format!("{url}/logs")).await;
    out.push(logs["errors"].clone());
    out.push(logs["failures_considered"].clone());
    let throughput = get(&format!("{url}/throughput")).await;
    for window in ["1m", "5m", "15m"] {
        let w = &throughput["windows"][window];
        out.push(json!([w["completed"], w["failed"], w["duration_p50_sec"]]));
    }
    out
}

async fn checkpoint_revision(store: &Store) -> Option<u64> {
    store
        .index_checkpoints()
        .await
        .unwrap()
        .revision()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starts_from_the_checkpoint_plus_the_later_writes() {
    let server = NatsServer::start();
    let config = checkpointing(&server);
    let store = connect(&config).await;
    let ids: Vec<String> = (0..60usize)
        .map(|i| {
            if i.is_multiple_of(9) {
                format!("named-{i}")
            } else {
                pyoco::model::new_run_id()
            }
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let status = ["COMPLETED", "FAILED", "RUNNING"][i % 3];
        put(&store, id, i, status).await;
    }
    // Its replay of all 60 writes makes the first gateway write a checkpoint of them.
    let last = store.runs().stream_state().await.unwrap();
    let a = GatewayHandle::start(config.clone()).await;
    let covered = wait_for(
        "a checkpoint of all 60 writes",
        Duration::from_secs(10),
        || async { checkpoint_revision(&store).await },
    )
    .await;
    assert_eq!(covered, last.last_revision);
    assert_eq!(a.state.index_as_is().checkpoint_loaded(), None);

    // Fewer writes after it than the policy's 20: no newer checkpoint covers them.
    for (i, id) in ids.iter().enumerate().take(6) {
        put(&store, id, i, "COMPLETED").await;
    }
    let runs = store.runs();
    for id in &ids[40..44] {
        let current = runs.get(id).await.unwrap().unwrap();
        runs.delete_if_unchanged(id, current.revision)
            .await
            .unwrap();
    }
    for i in 60..68 {
        put(&store, &pyoco::model::new_run_id(), i, "FAILED").await;
    }
    wait_listed(&a.url(), 64).await;

    let b = GatewayHandle::start(config.clone()).await;
    wait_listed(&b.url(), 64).await;
    assert_eq!(b.state.index_as_is().checkpoint_loaded(), Some(covered));
    assert_eq!(checkpoint_revision(&store).await, Some(covered));
    assert_eq!(view(&a.url()).await, view(&b.url()).await);
    let logs = get(&format!("{}/logs", b.url())).await;
    assert_eq!(logs["errors"][0]["error_class"], "ValueError");
    assert_eq!(logs["errors"][0]["callable"], "etl:load");

    // Enough writes since: a newer checkpoint, and a third gateway starts from it.
    for i in 100..130 {
        put(&store, &pyoco::model::new_run_id(), i, "COMPLETED").await;
    }
    let newer = wait_for("a newer checkpoint", Duration::from_secs(10), || async {
        checkpoint_revision(&store).await.filter(|r| *r > covered)
    })
    .await;
    let c = GatewayHandle::start(config).await;
    wait_listed(&c.url(), 94).await;
    assert!(c.state.index_as_is().checkpoint_loaded() >= Some(newer));
    assert_eq!(view(&a.url()).await, view(&c.url()).await);
    for g in [a, b, c] {
        g.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_that_cannot_be_used_are_ignored() {
    let server = NatsServer::start();
    let config = checkpointing(&server);
    let store = connect(&config).await;
    for i in 0..30 {
        put(&store, &pyoco::model::new_run_id(), i, "COMPLETED").await;
    }
    let a = GatewayHandle::start(config.clone()).await;
    wait_for("a checkpoint", Duration::from_secs(10), || async {
        checkpoint_revision(&store).await
    })
    .await;
    a.stop().await;

    // The runs bucket deleted and created again: its revisions start over, the checkpoint
    // (of 30 runs) describes runs that are gone.
    store
        .jetstream()
        .delete_key_value(&config.runs_kv_bucket)
        .await
        .unwrap();
    let fresh = connect(&config).await;
    for i in 0..5 {
        put(&fresh, &pyoco::model::new_run_id(), i, "COMPLETED").await;
    }
    let b = GatewayHandle::start(config.clone()).await;
    wait_listed(&b.url(), 5).await;
    assert_eq!(b.state.index_as_is().checkpoint_loaded(), None);
    b.stop().await;

    // Garbage where the checkpoint should be.
    fresh
        .index_checkpoints()
        .await
        .unwrap()
        .put(b"not a checkpoint", 3)
        .await
        .unwrap();
    let c = GatewayHandle::start(config).await;
    wait_listed(&c.url(), 5).await;
    assert_eq!(c.state.index_as_is().checkpoint_loaded(), None);
    c.stop().await;
}
