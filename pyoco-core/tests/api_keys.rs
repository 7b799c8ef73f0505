//! API keys against a real nats-server: records in the original's format, verification with
//! a cache that a revocation empties at once, and the outcomes the original answers.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::gateway::auth::{AuthFailure, Authenticator};
use pyoco::store::keys::{ApiKeys, KeyLookup};
use pyoco::testkit::NatsServer;
use pyoco::{Config, Store};

async fn keys(server: &NatsServer) -> ApiKeys {
    let config = Config {
        auth_pepper: Some("pep".into()),
        ..server.config()
    };
    let store = Store::connect(Arc::new(config), "api-keys-test")
        .await
        .unwrap();
    store.api_keys()
}

async fn new_key(keys: &ApiKeys, tenant: &str, created_at: f64) -> ApiKey {
    let key = ApiKey::generate().unwrap();
    let rec = ApiKeyRecord::new(&key, tenant, "pep", false, created_at).unwrap();
    keys.create(&rec).await.unwrap();
    key
}

fn following(keys: ApiKeys) -> (Arc<Authenticator>, tokio_util::sync::DropGuard) {
    let auth = Authenticator::new(keys, Some("pep"));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(auth.clone().follow(stop.clone()));
    (auth, stop.drop_guard())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_key_verifies_and_names_its_tenant() {
    let server = NatsServer::start();
    let keys = keys(&server).await;
    let key = new_key(&keys, "acme", 1.0).await;
    let (auth, _stop) = following(keys);
    let id = auth.check(Some(&key.to_header_value())).await.unwrap();
    assert_eq!(id.tenant_id, "acme");
    assert_eq!(id.key_id, key.key_id);
    assert!(!id.admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_unknown_wrong_and_corrupt_keys_are_refused() {
    let server = NatsServer::start();
    let keys = keys(&server).await;
    let key = new_key(&keys, "acme", 1.0).await;
    let (auth, _stop) = following(keys.clone());
    assert_eq!(auth.check(None).await, Err(AuthFailure::Missing));
    assert_eq!(auth.check(Some("  ")).await, Err(AuthFailure::Missing));
    for bad in ["garbage", "pyoco_bad.bad"] {
        assert_eq!(
            auth.check(Some(bad)).await,
            Err(AuthFailure::Invalid),
            "{bad}"
        );
    }
    let unknown = ApiKey::generate().unwrap();
    assert_eq!(
        auth.check(Some(&unknown.to_header_value())).await,
        Err(AuthFailure::Invalid)
    );
    let wrong = ApiKey {
        secret: "x".repeat(43),
        ..key.clone()
    };
    assert_eq!(
        auth.check(Some(&wrong.to_header_value())).await,
        Err(AuthFailure::Invalid)
    );
    // A record that is not JSON is refused like an unknown key.
    let corrupt = ApiKey::generate().unwrap();
    let nats = pyoco::store::async_nats::connect(server.url())
        .await
        .unwrap();
    let kv = pyoco::store::async_nats::jetstream::new(nats)
        .get_key_value("pyoco_auth")
        .await
        .unwrap();
    kv.put(ApiKeyRecord::kv_key(&corrupt.key_id), "not json".into())
        .await
        .unwrap();
    assert_eq!(
        auth.check(Some(&corrupt.to_header_value())).await,
        Err(AuthFailure::Invalid)
    );
    // A key checked with another pepper does not verify.
    let other_pepper = Authenticator::new(keys.clone(), Some("other"));
    assert_eq!(
        other_pepper.check(Some(&key.to_header_value())).await,
        Err(AuthFailure::Invalid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_key_stops_working_within_a_second_of_its_revocation() {
    let server = NatsServer::start();
    let keys = keys(&server).await;
    let key = new_key(&keys, "acme", 1.0).await;
    let (auth, _stop) = following(keys.clone());
    // Wait until the watch runs, so the first success is remembered.
    let header = key.to_header_value();
    auth.check(Some(&header)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let started = Instant::now();
        auth.check(Some(&header)).await.unwrap();
        // A remembered key costs no PBKDF2 (200k rounds): far under a millisecond.
        if started.elapsed() < Duration::from_millis(5) {
            break;
        }
        assert!(Instant::now() < deadline, "the key was never remembered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revoked = keys.revoke(&key.key_id, 2.0).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(2.0));
    let revoked_at = Instant::now();
    loop {
        if auth.check(Some(&header)).await == Err(AuthFailure::Invalid) {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "revocation not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Revoking again keeps the first time.
    let again = keys.revoke(&key.key_id, 3.0).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_newest_first_and_empty_is_an_empty_list() {
    let server = NatsServer::start();
    let keys = keys(&server).await;
    assert!(keys.list().await.unwrap().is_empty());
    let old = new_key(&keys, "a", 1.0).await;
    let new = new_key(&keys, "b", 2.0).await;
    let listed: Vec<String> = keys
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key_id)
        .collect();
    assert_eq!(listed, vec![new.key_id.clone(), old.key_id.clone()]);
    assert!(keys.revoke("nosuchkey1", 1.0).await.unwrap().is_none());
    assert!(matches!(
        keys.get(&new.key_id).await.unwrap(),
        KeyLookup::Found(r) if r.tenant_id == "b"
    ));
}
