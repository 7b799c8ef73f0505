//! The flow registry end to end: versions of a `flow.yaml` by name in the `pyoco_flows` bucket,
//! `POST /runs` by name running the active version (recording `flow_version` and the sha256),
//! rollback that never changes a run already submitted, tenants with registries of their own.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::client::http::HttpError;
use pyoco::config::AuthMode;
use pyoco::testkit::{GatewayHandle, Stack, WorkerHandle, wait_for};
use pyoco::{HttpClient, Registry, Store};
use serde_json::{Map, Value, json};

fn flow(greeting: &str) -> String {
    format!(
        "flow: {{graph: say, defaults: {{greeting: {greeting}}}}}\ntasks:\n  say: {{callable: 'pyoco:echo', inputs: {{value: $ctx.params.greeting}}}}\n"
    )
}

fn status_of(err: &HttpError) -> (u16, Value) {
    let HttpError::Status(s) = err else {
        panic!("{err}")
    };
    (s.status, serde_json::from_str(&s.body).unwrap())
}

/// Runs `name` by name synchronously and returns the terminal snapshot.
async fn run_named(client: &HttpClient, name: &str, params: Value) -> Value {
    let Value::Object(params) = params else {
        panic!()
    };
    let run = client
        .clone()
        .with_sync_wait(Duration::from_secs(30))
        .submit_run(name, params, None, None)
        .await
        .unwrap();
    assert!(
        matches!(run["status"].as_str(), Some("COMPLETED" | "FAILED")),
        "{run}"
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_by_name_use_the_active_version_and_a_rollback_changes_no_submitted_run() {
    let stack = Stack::start().await;
    let client = &stack.client;
    let v1 = client
        .register_flow("etl", flow("one").as_bytes())
        .await
        .unwrap();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["created"], true);
    // The same bytes again are not a new version.
    let again = client
        .register_flow("etl", flow("one").as_bytes())
        .await
        .unwrap();
    assert_eq!(again["version"], 1);
    assert_eq!(again["created"], false);
    let v2 = client
        .register_flow("etl", flow("two").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        (v2["version"].clone(), v2["active_version"].clone()),
        (json!(2), json!(2))
    );

    let run = run_named(client, "etl", json!({})).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["task_records"]["say"]["output"], "two");
    assert_eq!(run["flow_version"], 2);
    assert_eq!(run["workflow_yaml_sha256"], v2["sha256"]);
    // The body's params override the flow's defaults.
    let run = run_named(client, "etl", json!({"greeting": "yo"})).await;
    assert_eq!(run["task_records"]["say"]["output"], "yo");

    // A run waiting for a worker when the rollback happens keeps version 2.
    let pending = client
        .submit_run("etl", Map::new(), Some("later"), None)
        .await
        .unwrap();
    let pending_id = pending["run_id"].as_str().unwrap().to_string();
    let record = client.rollback_flow("etl", 1).await.unwrap();
    assert_eq!(record["active_version"], 1);
    assert_eq!(record["latest_version"], 2);
    let run = run_named(client, "etl", json!({})).await;
    assert_eq!(run["task_records"]["say"]["output"], "one");
    assert_eq!(run["flow_version"], 1);
    let late = WorkerHandle::start(
        stack.config.clone(),
        Registry::with_builtins(),
        "late",
        &["later"],
    )
    .await;
    let done = stack.wait_terminal(&pending_id).await;
    assert_eq!(done["task_records"]["say"]["output"], "two", "{done}");
    assert_eq!(done["flow_version"], 2);
    late.stop().await;
    stack.stop().await;
}

/// The `flow_version` a submit by name got (`None`: the name was not registered for it).
async fn submitted_version(client: &HttpClient, name: &str) -> Option<u64> {
    let run = client
        .submit_run(name, Map::new(), None, None)
        .await
        .unwrap();
    let id = run["run_id"].as_str().unwrap();
    client.get_run(id, false).await.unwrap()["flow_version"].as_u64()
}

/// Gateways remember which names are registered; a registration, rollback or delete reaches
/// the gateway that made it at once and every other gateway through its registry watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_sees_registrations_made_after_it_remembered_a_name() {
    let stack = Stack::builder().no_worker().start().await;
    let a = &stack.client;
    let other = GatewayHandle::start(stack.config.clone()).await;
    let b = &HttpClient::new(&other.url()).unwrap();
    // Both gateways now remember "etl" as not registered.
    assert_eq!(submitted_version(a, "etl").await, None);
    assert_eq!(submitted_version(b, "etl").await, None);
    a.register_flow("etl", flow("one").as_bytes())
        .await
        .unwrap();
    assert_eq!(submitted_version(a, "etl").await, Some(1));
    let seen = |want: Option<u64>| {
        wait_for(
            "gateway b follows the registry",
            Duration::from_secs(10),
            move || async move { (submitted_version(b, "etl").await == want).then_some(()) },
        )
    };
    seen(Some(1)).await;
    a.register_flow("etl", flow("two").as_bytes())
        .await
        .unwrap();
    assert_eq!(submitted_version(a, "etl").await, Some(2));
    seen(Some(2)).await;
    a.rollback_flow("etl", 1).await.unwrap();
    assert_eq!(submitted_version(a, "etl").await, Some(1));
    seen(Some(1)).await;
    b.delete_flow("etl").await.unwrap();
    assert_eq!(submitted_version(b, "etl").await, None);
    wait_for(
        "gateway a follows the delete",
        Duration::from_secs(10),
        || async { submitted_version(a, "etl").await.is_none().then_some(()) },
    )
    .await;
    other.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_shown_listed_and_deleted_with_precise_errors() {
    let stack = Stack::start().await;
    let client = &stack.client;
    client
        .register_flow("etl", flow("one").as_bytes())
        .await
        .unwrap();
    client
        .register_flow("etl", flow("two").as_bytes())
        .await
        .unwrap();
    client
        .register_flow("other", flow("x").as_bytes())
        .await
        .unwrap();

    let record = client.get_flow("etl").await.unwrap();
    assert_eq!(record["active_version"], 2);
    let versions = record["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["registered_by"], Value::Null);
    assert!(versions[0]["registered_at"].as_f64().unwrap() > 0.0);
    assert_eq!(
        versions[0]["sha256"],
        pyoco::flow::yaml::sha256_hex(flow("one").as_bytes())
    );
    let v1 = client.get_flow_version("etl", 1).await.unwrap();
    assert_eq!(v1["yaml"], flow("one"));
    assert_eq!(v1["version"], 1);
    let names: Vec<Value> = client
        .list_flows()
        .await
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, [json!("etl"), json!("other")]);

    let (status, body) = status_of(&client.get_flow_version("etl", 9).await.unwrap_err());
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("flow_version_not_found"))
    );
    let (status, body) = status_of(&client.get_flow("nope").await.unwrap_err());
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("flow_not_found"))
    );
    let (status, body) = status_of(&client.rollback_flow("etl", 5).await.unwrap_err());
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("flow_version_not_found"))
    );
    let (status, body) = status_of(
        &client
            .register_flow("etl", b"flow: {graph: a}\ntasks: {}\n")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert_eq!(body["reason"], "unknown_graph_task: a");
    let resp = reqwest::Client::new()
        .post(format!("{}/flows/etl/rollback", stack.gateway.url()))
        .json(&json!({"version": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "version"]));

    assert_eq!(client.delete_flow("etl").await.unwrap()["deleted"], true);
    let (status, _) = status_of(&client.get_flow("etl").await.unwrap_err());
    assert_eq!(status, 404);
    assert!(client.get_flow_version("etl", 1).await.is_err());
    // The name is the worker's to resolve again: this one knows no such flow.
    let run = run_named(client, "etl", json!({})).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert!(run.get("flow_version").is_none());
    // Re-registered, it starts again at version 1.
    let again = client
        .register_flow("etl", flow("three").as_bytes())
        .await
        .unwrap();
    assert_eq!(again["version"], 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_has_a_registry_of_its_own() {
    let stack = Stack::start_with(|c| c.http_auth_mode = AuthMode::ApiKey).await;
    let store = Store::connect(Arc::new(stack.config.clone()), "keys")
        .await
        .unwrap();
    let mut clients = Vec::new();
    for tenant in ["acme", "globex"] {
        let key = ApiKey::generate().unwrap();
        let record = ApiKeyRecord::new(&key, tenant, "", false, 1.0).unwrap();
        store.api_keys().create(&record).await.unwrap();
        clients.push(
            HttpClient::new(&stack.gateway.url())
                .unwrap()
                .with_api_key("X-API-Key", &key.to_header_value()),
        );
    }
    let (acme, globex) = (&clients[0], &clients[1]);
    acme.register_flow("etl", flow("acme").as_bytes())
        .await
        .unwrap();
    acme.register_flow("etl", flow("acme2").as_bytes())
        .await
        .unwrap();
    assert!(globex.list_flows().await.unwrap().is_empty());
    let (status, _) = status_of(&globex.get_flow("etl").await.unwrap_err());
    assert_eq!(status, 404);
    let theirs = globex
        .register_flow("etl", flow("globex").as_bytes())
        .await
        .unwrap();
    assert_eq!(theirs["version"], 1);
    let record = acme.get_flow("etl").await.unwrap();
    assert_eq!(record["tenant_id"], "acme");
    assert!(
        record["versions"][0]["registered_by"].is_string(),
        "{record}"
    );

    let run = run_named(globex, "etl", json!({})).await;
    assert_eq!(run["task_records"]["say"]["output"], "globex");
    let run = run_named(acme, "etl", json!({})).await;
    assert_eq!(run["task_records"]["say"]["output"], "acme2");
    assert_eq!(run["flow_version"], 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_every_problem_with_its_line_and_dry_run_plans_without_running() {
    let stack = Stack::builder().no_worker().start().await;
    let client = &stack.client;
    let bad = "flow:\n  graph: a >> b\ntasks:\n  a: {callable: 'pyoco:echo', retries: -1}\n  b:\n    callable: 'pyoco:echo'\n    fail_policy: maybe\n    colour: red\n";
    let answer = client.validate_flow(bad.as_bytes()).await.unwrap();
    assert_eq!(answer["valid"], false);
    let found: Vec<(Value, Value, Value)> = answer["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["reason"].clone(), p["line"].clone(), p["column"].clone()))
        .collect();
    assert_eq!(
        found,
        [
            (json!("invalid_task_retries: a"), json!(4), json!(31)),
            (
                json!("unknown_task_keys: b: ['colour']"),
                json!(8),
                json!(5)
            ),
            (json!("invalid_task_fail_policy: b"), json!(7), json!(5)),
        ]
    );
    assert_eq!(answer["plan"], Value::Null);

    let good = "flow: {graph: 'a >> (b & c) >> d'}\ntasks:\n  a: {callable: 'pyoco:echo'}\n  b: {callable: 'pyoco:echo', retries: 2}\n  c: {callable: 'pyoco:echo', continue_on_error: true}\n  d: {callable: 'pyoco:echo'}\n";
    let answer = client.validate_flow(good.as_bytes()).await.unwrap();
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["plan"]["stages"], json!([["a"], ["b", "c"], ["d"]]));

    // Nothing was stored by validate; dry-run plans a registered version and runs nothing.
    assert!(client.list_flows().await.unwrap().is_empty());
    client.register_flow("fan", good.as_bytes()).await.unwrap();
    client
        .register_flow("fan", flow("x").as_bytes())
        .await
        .unwrap();
    let plan = client.dry_run_flow("fan", Some(1)).await.unwrap();
    assert_eq!(plan["version"], 1);
    assert_eq!(plan["active"], false);
    let tasks = plan["plan"]["tasks"].as_array().unwrap();
    assert_eq!(tasks[0]["feeds"], json!(["b", "c"]));
    assert_eq!(tasks[3]["join"], "all");
    assert_eq!(tasks[1]["retries"], 2);
    assert_eq!(tasks[2]["fail_policy"], "continue");
    let active = client.dry_run_flow("fan", None).await.unwrap();
    assert_eq!(
        (active["version"].clone(), active["active"].clone()),
        (json!(2), json!(true))
    );
    let (status, body) = status_of(&client.dry_run_flow("nope", None).await.unwrap_err());
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("flow_not_found"))
    );
    assert!(
        client
            .list_runs(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    stack.stop().await;
}
