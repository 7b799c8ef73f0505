//! `PYOCO_HTTP_AUTH_MODE=api_key` against a real gateway and nats-server: the auth matrix of
//! every route the gateway serves (taken from its own OpenAPI document, so a route added
//! without a guard fails here), tenant isolation, stamping, and the open `/metrics` switch.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::config::AuthMode;
use pyoco::testkit::{Stack, multipart, wait_for};
use pyoco::{Config, Store};
use serde_json::{Value, json};

const PEPPER: &str = "pep";

fn api_key_mode(c: &mut Config) {
    c.http_auth_mode = AuthMode::ApiKey;
    c.auth_pepper = Some(PEPPER.into());
}

async fn new_key(store: &Store, tenant: &str) -> ApiKey {
    let key = ApiKey::generate().unwrap();
    let record = ApiKeyRecord::new(&key, tenant, PEPPER, false, 1.0).unwrap();
    store.api_keys().create(&record).await.unwrap();
    key
}

struct Keys {
    good: String,
    other_tenant: String,
    revoked: String,
}

async fn keys(stack: &Stack) -> Keys {
    let store = Store::connect(Arc::new(stack.config.clone()), "auth-test")
        .await
        .unwrap();
    let good = new_key(&store, "acme").await;
    let other = new_key(&store, "beta").await;
    let revoked = new_key(&store, "acme").await;
    store
        .api_keys()
        .revoke(&revoked.key_id, 2.0)
        .await
        .unwrap()
        .unwrap();
    Keys {
        good: good.to_header_value(),
        other_tenant: other.to_header_value(),
        revoked: revoked.to_header_value(),
    }
}

const YAML: &[u8] = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let mut req = match method {
        "get" => http.get(&url),
        "post" => http.post(&url),
        "patch" => http.patch(&url),
        "delete" => http.delete(&url),
        other => panic!("method {other}"),
    };
    req = match (method, path) {
        ("post", "/runs") => req.json(&json!({"flow_name": "hello", "tag": "nowhere"})),
        ("post", "/runs/yaml") => {
            let (ct, body) = multipart(&[
                ("workflow", Some("flow.yaml"), YAML),
                ("flow_name", None, b"matrix"),
                ("tag", None, b"nowhere"),
            ]);
            req.header("content-type", ct).body(body)
        }
        ("patch", _) => req.json(&json!({"hidden": true})),
        // Approve and reject need a JSON body, as in the original.
        ("post", p) if p.ends_with("/approve") || p.ends_with("/reject") => req.json(&json!({})),
        _ => req,
    };
    if let Some(key) = key {
        req = req.header("X-API-Key", key);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_health_needs_a_valid_key_and_hides_other_tenants_runs() {
    let stack = Stack::start_with(api_key_mode).await;
    let base = stack.gateway.url();
    let keys = keys(&stack).await;
    let http = reqwest::Client::new();

    // A run of tenant acme, to put in the {run_id} of the matrix.
    let (status, body) = send(&http, &base, "post", "/runs", Some(&keys.good)).await;
    assert_eq!(status, 200, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();

    // The routes come from the served document, so none can be forgotten here.
    let (status, doc) = send(&http, &base, "get", "/openapi.json", Some(&keys.good)).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{}", paths.len());
    let unknown = ApiKey::generate().unwrap().to_header_value();
    let mut checked = 0;
    for (template, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let path = template
                .replace("{run_id}", &run_id)
                .replace("{worker_id}", "no-such-worker")
                .replace("{wheel_name}", "nosuch-1.0-py3-none-any.whl")
                .replace("{path}", "app.js");
            let what = format!("{method} {template}");
            // Open by design: the readiness probe and the dashboard's page and files (which
            // hold no data; the page asks for a key before it reads anything).
            let public = pyoco::gateway::ROUTES
                .iter()
                .any(|r| r.path == template.as_str() && r.access == pyoco::gateway::Access::Public);
            if public {
                let (status, _) = send(&http, &base, method, &path, None).await;
                assert_eq!(status, 200, "{what} is open");
                continue;
            }
            let (status, body) = send(&http, &base, method, &path, None).await;
            assert_eq!(
                (status, &body["code"]),
                (401, &json!("api_key_required")),
                "{what} without a key: {body}"
            );
            assert_eq!(body["detail"], "api key required");
            for (case, key) in [
                ("malformed", "garbage"),
                ("unknown", unknown.as_str()),
                ("revoked", keys.revoked.as_str()),
            ] {
                let (status, body) = send(&http, &base, method, &path, Some(key)).await;
                assert_eq!(
                    (status, &body["detail"]),
                    (403, &json!("invalid api key")),
                    "{what} with a {case} key: {body}"
                );
            }
            if template == "/shutdown" {
                // Admin only: a valid tenant key is not enough (and the gateway stays up).
                for key in [&keys.good, &keys.other_tenant] {
                    let (status, body) = send(&http, &base, method, &path, Some(key)).await;
                    assert_eq!(
                        (status, &body["code"]),
                        (403, &json!("shutdown_not_allowed")),
                        "{what}: {body}"
                    );
                }
                checked += 1;
                continue;
            }
            let (good, body) = send(&http, &base, method, &path, Some(&keys.good)).await;
            assert!(
                good != 401 && good != 403,
                "{what} with a good key: {good} {body}"
            );
            let (other, body) = send(&http, &base, method, &path, Some(&keys.other_tenant)).await;
            if template.contains("{run_id}") {
                // A plain run is not waiting for approval: the decision routes answer 409.
                let decision = template.ends_with("/approve") || template.ends_with("/reject");
                assert_eq!(
                    good,
                    if decision { 409 } else { 200 },
                    "{what} for the run's own tenant"
                );
                assert_eq!(
                    (other, &body["code"]),
                    (404, &json!("run_not_found")),
                    "{what} for another tenant"
                );
            } else {
                assert!(other != 401 && other != 403, "{what}: {other} {body}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");

    // Bearer works too.
    let r = http
        .get(format!("{base}/runs/{run_id}"))
        .bearer_auth(&keys.good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_stamped_listed_per_tenant_and_cancels_name_the_key() {
    let stack = Stack::start_with(api_key_mode).await;
    let base = stack.gateway.url();
    let keys = keys(&stack).await;
    let http = reqwest::Client::new();
    let (_, body) = send(&http, &base, "post", "/runs", Some(&keys.good)).await;
    let run_id = body["run_id"].as_str().unwrap().to_string();
    let key_id = keys
        .good
        .trim_start_matches("pyoco_")
        .split('.')
        .next()
        .unwrap();

    let (status, run) = send(
        &http,
        &base,
        "get",
        &format!("/runs/{run_id}"),
        Some(&keys.good),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&run["tenant_id"], &run["api_key_id"]),
        (&json!("acme"), &json!(key_id))
    );

    let listed = |key: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let (status, list) = send(&http, &base, "get", "/runs", Some(&key)).await;
            assert_eq!(status, 200);
            list.as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["run_id"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        }
    };
    let mine = wait_for("the run listed", Duration::from_secs(5), || {
        let f = listed(keys.good.clone());
        async move {
            let l = f.await;
            (!l.is_empty()).then_some(l)
        }
    })
    .await;
    assert_eq!(mine, vec![run_id.clone()]);
    assert!(listed(keys.other_tenant.clone()).await.is_empty());

    let (status, cancelled) = send(
        &http,
        &base,
        "post",
        &format!("/runs/{run_id}/cancel"),
        Some(&keys.good),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(
        cancelled["cancel_requested_by"],
        format!("api_key:{key_id}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_left_open_for_scrapers_alone() {
    let stack = Stack::start_with(|c| {
        api_key_mode(c);
        c.metrics_public = true;
    })
    .await;
    let base = stack.gateway.url();
    let http = reqwest::Client::new();
    assert_eq!(send(&http, &base, "get", "/metrics", None).await.0, 200);
    assert_eq!(send(&http, &base, "get", "/workers", None).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_api_key_mode_every_route_is_open_as_before() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let http = reqwest::Client::new();
    for path in ["/runs", "/workers", "/metrics", "/openapi.json", "/wheels"] {
        assert_eq!(send(&http, &base, "get", path, None).await.0, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_shuts_the_gateway_down_gracefully() {
    let server = pyoco::testkit::NatsServer::start();
    let mut config = pyoco::testkit::fast_config(&server);
    api_key_mode(&mut config);
    let store = Store::connect(Arc::new(config.clone()), "shutdown-test")
        .await
        .unwrap();
    let admin = ApiKey::generate().unwrap();
    let record = ApiKeyRecord::new(&admin, "ops", PEPPER, true, 1.0).unwrap();
    store.api_keys().create(&record).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = pyoco::gateway::GatewayState::connect(config);
    assert!(state.wait_connected(Duration::from_secs(10)).await);
    // The serve future ends only when something asks it to: here, the HTTP request.
    let served = tokio::spawn(pyoco::gateway::serve_state(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    let http = reqwest::Client::new();
    let key = admin.to_header_value();
    let (status, body) = send(&http, &base, "post", "/shutdown", Some(&key)).await;
    assert_eq!((status, body), (202, json!({"status": "shutting down"})));
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve_state returned after POST /shutdown")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "the port is closed"
    );
}
