//! Retention of finished runs (`PYOCO_RUNS_RETENTION_SEC`) against a real nats-server:
//! finished runs past the cutoff are deleted (with their relation record) and vanish from
//! every gateway's list; unfinished and recent runs are never touched.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use bytes::Bytes;
use pyoco::gateway::retention;
use pyoco::model::now;
use pyoco::testkit::{GatewayHandle, NatsServer, fast_config, wait_for};
use serde_json::json;

async fn put(state: &pyoco::gateway::GatewayState, id: &str, status: &str, age: f64) {
    let doc = json!({"run_id": id, "flow_name": "f", "tag": "default", "tags": ["default"],
        "status": status, "params": {}, "tasks": {}, "task_records": {},
        "updated_at": now() - age, "heartbeat_at": now() - age});
    state
        .store()
        .unwrap()
        .runs()
        .put_raw(id, Bytes::from(doc.to_string()))
        .await
        .unwrap();
}

async fn listed(url: &str) -> Vec<String> {
    let runs: Vec<serde_json::Value> = reqwest::get(format!("{url}/runs?limit=100"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = runs
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_runs_past_the_retention_are_deleted_everywhere_and_nothing_else() {
    let server = NatsServer::start();
    let config = fast_config(&server);
    // Two gateways, background sweeps off (retention 0): the test sweeps by hand.
    let a = GatewayHandle::start(config.clone()).await;
    let b = GatewayHandle::start(config.clone()).await;
    let hour = 3600.0;
    for (id, status, age) in [
        ("old-completed", "COMPLETED", 2.0 * hour),
        ("old-failed", "FAILED", 2.0 * hour),
        ("old-cancelled", "CANCELLED", 2.0 * hour),
        ("old-running", "RUNNING", 2.0 * hour),
        ("old-pending", "PENDING", 2.0 * hour),
        ("old-cancelling", "CANCELLING", 2.0 * hour),
        ("new-completed", "COMPLETED", 60.0),
    ] {
        put(&a.state, id, status, age).await;
    }
    let relations = &a.state.store().unwrap().resources().run_relations;
    relations
        .put(
            "old-completed",
            Bytes::from_static(b"{\"run_id\":\"old-completed\"}"),
        )
        .await
        .unwrap();
    for g in [&a, &b] {
        wait_for(
            "both indexes see 7 runs",
            Duration::from_secs(10),
            || async { (listed(&g.url()).await.len() == 7).then_some(()) },
        )
        .await;
    }

    let deleted = retention::sweep(&a.state, Duration::from_secs(3600)).await;
    assert_eq!(deleted, 3);
    let kept = vec![
        "new-completed",
        "old-cancelling",
        "old-pending",
        "old-running",
    ];
    for g in [&a, &b] {
        wait_for(
            "the deletes reach both gateways",
            Duration::from_secs(10),
            || async { (listed(&g.url()).await == kept).then_some(()) },
        )
        .await;
    }
    let gone = reqwest::get(format!("{}/runs/old-failed", b.url()))
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert!(relations.get("old-completed").await.unwrap().is_none());
    // A second gateway sweeping the same cutoff finds nothing left to delete.
    assert_eq!(
        retention::sweep(&b.state, Duration::from_secs(3600)).await,
        0
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_short_retention_a_finished_run_goes_on_its_own() {
    let stack =
        pyoco::testkit::Stack::start_with(|c| c.runs_retention = Duration::from_secs(1)).await;
    let run = stack
        .run_to_end(
            "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n",
            "short",
        )
        .await;
    assert_eq!(run["status"], "COMPLETED");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    wait_for(
        "the background sweep to delete it",
        Duration::from_secs(15),
        || async {
            let r = reqwest::get(format!("{}/runs/{run_id}", stack.gateway.url()))
                .await
                .ok()?;
            (r.status() == 404).then_some(())
        },
    )
    .await;
    stack.stop().await;
}
