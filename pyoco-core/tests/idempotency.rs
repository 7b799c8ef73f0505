//! `Idempotency-Key` on submits against real gateways on one nats-server: a retry returns the
//! first run, another request with the key is 409, it holds across gateways, a restart and
//! concurrent retries, and a key reserved by a gateway that died before creating the run still
//! gets its run.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use pyoco::store::requests::Reservation;
use pyoco::testkit::{GatewayHandle, Stack, wait_for};
use pyoco::{HttpClient, Store};
use serde_json::{Map, json};

const YAML: &[u8] = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";

fn client(base: &str, key: &str) -> HttpClient {
    HttpClient::new(base).unwrap().with_idempotency_key(key)
}

async fn run_count(base: &str) -> usize {
    HttpClient::new(base)
        .unwrap()
        .list_runs(&Default::default())
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_first_run_and_another_request_is_409() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let c = client(&base, "order-42");
    let first = c.submit_yaml(YAML, "idem", None).await.unwrap();
    let again = c.submit_yaml(YAML, "idem", None).await.unwrap();
    assert_eq!(first["run_id"], again["run_id"]);
    assert_eq!(again["status"], "PENDING");
    let err = c.submit_yaml(YAML, "another-name", None).await.unwrap_err();
    assert_eq!(err.code(), Some("idempotency_conflict"), "{err}");
    // The same key on the other route is another request too.
    let err = c
        .submit_run("idem", Map::new(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("idempotency_conflict"));
    let run = stack.wait_terminal(first["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(run_count(&base).await, 1, "one run, not two");

    // Without a key every submit is a new run; a bad key is refused.
    let plain = HttpClient::new(&base).unwrap();
    let a = plain.submit_yaml(YAML, "idem", None).await.unwrap();
    let b = plain.submit_yaml(YAML, "idem", None).await.unwrap();
    assert_ne!(a["run_id"], b["run_id"]);
    let err = client(&base, "with space")
        .submit_yaml(YAML, "idem", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_idempotency_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_holds_across_gateways_a_restart_and_concurrent_retries() {
    let stack = Stack::builder().no_worker().start().await;
    let other = GatewayHandle::start(stack.config.clone()).await;
    let (a, b) = (stack.gateway.url(), other.url());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let base = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            client(&base, "burst")
                .submit_run("hello", Map::new(), Some("nowhere"), None)
                .await
                .unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    other.stop().await;
    // A new gateway process (same NATS) still knows the key.
    let restarted = GatewayHandle::start(stack.config.clone()).await;
    let again = client(&restarted.url(), "burst")
        .submit_run("hello", Map::new(), Some("nowhere"), None)
        .await
        .unwrap();
    assert_eq!(again["run_id"], json!(ids[0]));
    wait_for("the index to list the run", Duration::from_secs(5), || {
        let a = a.clone();
        async move { (run_count(&a).await == 1).then_some(()) }
    })
    .await;
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reserved_by_a_gateway_that_died_before_the_run_still_gets_its_run() {
    let stack = Stack::start().await;
    let store = Store::connect(Arc::new(stack.config.clone()), "idem-test")
        .await
        .unwrap();
    // What a gateway killed right after reserving leaves behind: the key, no run.
    let body = json!({
        "flow_name": "idem",
        "params": {},
        "tag": null,
        "tags": [],
        "workflow_yaml_sha256": pyoco::flow::yaml::sha256_hex(YAML),
    });
    let fingerprint = pyoco::flow::yaml::sha256_hex(body.to_string().as_bytes());
    let reserved = store
        .idempotency()
        .reserve(
            None,
            "crashed",
            &fingerprint,
            "5f0e6a52-0000-4000-8000-00000000dead",
            1.0,
        )
        .await
        .unwrap();
    assert!(matches!(reserved, Reservation::New(_)));
    let resp = client(&stack.gateway.url(), "crashed")
        .submit_yaml(YAML, "idem", None)
        .await
        .unwrap();
    assert_eq!(resp["run_id"], "5f0e6a52-0000-4000-8000-00000000dead");
    let run = stack
        .wait_terminal("5f0e6a52-0000-4000-8000-00000000dead")
        .await;
    assert_eq!(run["status"], "COMPLETED");
}
