//! Nonces and idempotency keys in KV against a real nats-server: first use wins across
//! clients (two connections stand for two gateways), a retry finds the first run, another body
//! conflicts, tenants do not share keys.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;

use pyoco::Store;
use pyoco::store::requests::Reservation;
use pyoco::testkit::NatsServer;

/// A store with its own connection: two of them stand for two gateways.
async fn store(server: &NatsServer) -> Store {
    Store::connect(Arc::new(server.config()), "request-memory")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_accepted_once_across_gateways() {
    let server = NatsServer::start();
    let one = store(&server).await.nonces();
    let two = store(&server).await.nonces();
    assert!(one.first_use("nonce-0001").await.unwrap());
    assert!(
        !two.first_use("nonce-0001").await.unwrap(),
        "replay to a second gateway"
    );
    assert!(!one.first_use("nonce-0001").await.unwrap());
    assert!(two.first_use("nonce-0002").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_run_and_conflicts_on_another_body() {
    let server = NatsServer::start();
    let idem = store(&server).await.idempotency();
    let first = idem
        .reserve(Some("acme"), "req-1", "sha-a", "run-1", 1.0)
        .await
        .unwrap();
    assert!(matches!(&first, Reservation::New(r) if r.run_id == "run-1"));
    let retry = idem
        .reserve(Some("acme"), "req-1", "sha-a", "run-2", 2.0)
        .await
        .unwrap();
    assert!(
        matches!(&retry, Reservation::Existing(r) if r.run_id == "run-1"),
        "{retry:?}"
    );
    let other = idem
        .reserve(Some("acme"), "req-1", "sha-b", "run-3", 3.0)
        .await
        .unwrap();
    assert!(
        matches!(&other, Reservation::Conflict(r) if r.run_id == "run-1"),
        "{other:?}"
    );
    // Another tenant (or no tenant) with the same key gets its own run.
    let beta = idem
        .reserve(Some("beta"), "req-1", "sha-a", "run-4", 4.0)
        .await
        .unwrap();
    assert!(matches!(&beta, Reservation::New(r) if r.run_id == "run-4"));
    let anon = idem
        .reserve(None, "req-1", "sha-a", "run-5", 5.0)
        .await
        .unwrap();
    assert!(matches!(&anon, Reservation::New(r) if r.run_id == "run-5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_of_one_key_make_one_run() {
    let server = NatsServer::start();
    let idem = store(&server).await.idempotency();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let idem = idem.clone();
        tasks.push(tokio::spawn(async move {
            idem.reserve(None, "same", "sha", &format!("run-{i}"), 1.0)
                .await
                .unwrap()
        }));
    }
    let mut new = Vec::new();
    let mut existing = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Reservation::New(r) => new.push(r.run_id),
            Reservation::Existing(r) => existing.push(r.run_id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(existing.iter().all(|r| r == &new[0]), "{existing:?}");
}
