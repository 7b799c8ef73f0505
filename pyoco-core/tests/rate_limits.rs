//! Rate limits against a real gateway: 429 with `Retry-After` and the limit's name, counted in
//! `/metrics`; submits limited apart from reads; one API key's limit leaves others alone.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;

use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::config::AuthMode;
use pyoco::testkit::Stack;
use pyoco::{Config, Store};
use serde_json::{Value, json};

async fn submit(http: &reqwest::Client, base: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = http
        .post(format!("{base}/runs"))
        .json(&json!({"flow_name": "hello", "tag": "nowhere"}));
    if let Some(key) = key {
        req = req.header("X-API-Key", key);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_over_their_limit_get_429_with_retry_after_and_reads_go_on() {
    let stack = Stack::start_with(|c| c.http_submit_rpm = 2).await;
    let base = stack.gateway.url();
    let http = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(submit(&http, &base, None).await.status(), 200);
    }
    let refused = submit(&http, &base, None).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        (&body["code"], &body["detail"], &body["reason"]),
        (
            &json!("rate_limited"),
            &json!("rate limit exceeded"),
            &json!("submit")
        )
    );
    // Reads are not submits; health is never limited.
    for path in ["/runs", "/health"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l.contains("route=\"/runs\"")
            && l.contains("status=\"429\"")
            && l.contains("POST")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_noisy_key_is_limited_without_limiting_another() {
    let stack = Stack::start_with(|c: &mut Config| {
        c.http_auth_mode = AuthMode::ApiKey;
        c.http_tenant_rpm = 3;
    })
    .await;
    let store = Store::connect(Arc::new(stack.config.clone()), "limits-test")
        .await
        .unwrap();
    let mut keys = Vec::new();
    for tenant in ["noisy", "quiet"] {
        let key = ApiKey::generate().unwrap();
        let record = ApiKeyRecord::new(&key, tenant, "", false, 1.0).unwrap();
        store.api_keys().create(&record).await.unwrap();
        keys.push(key.to_header_value());
    }
    let base = stack.gateway.url();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(submit(&http, &base, Some(&keys[0])).await.status(), 200);
    }
    let refused = submit(&http, &base, Some(&keys[0])).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["reason"], "tenant");
    assert_eq!(submit(&http, &base, Some(&keys[1])).await.status(), 200);
}
