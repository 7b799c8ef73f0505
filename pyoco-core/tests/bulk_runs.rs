//! `POST /runs/cancel` (cancel every run of a filter) and `POST /runs/{run_id}/replay`
//! against a real nats-server, through `HttpClient`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use pyoco::client::http::{CancelFilter, HttpError, NewSchedule};
use pyoco::testkit::{Stack, wait_for};
use pyoco::{HttpClient, Store};
use serde_json::{Value, json};

fn status_of(e: HttpError) -> (u16, Value, Option<String>) {
    match e {
        HttpError::Status(s) => (s.status, s.detail.clone(), s.code.clone()),
        other => panic!("expected an error status, got {other}"),
    }
}

async fn submit(client: &HttpClient, flow: &str, params: Value) -> String {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    client.submit_run(flow, params, None, None).await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn status(client: &HttpClient, run_id: &str) -> String {
    client.get_run(run_id, false).await.unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cancel_cancels_exactly_the_matching_runs_and_is_safe_to_repeat() {
    let stack = Stack::builder().no_worker().start().await;
    let client = &stack.client;
    let mut a = BTreeSet::new();
    for i in 0..3 {
        a.insert(submit(client, "alpha", json!({"i": i})).await);
    }
    let b1 = submit(client, "beta", json!({})).await;
    let b2 = submit(client, "beta", json!({})).await;
    // The index sees every submit before the filter runs.
    wait_for("five listed runs", Duration::from_secs(10), || async {
        let runs = client.list_runs(&Default::default()).await.ok()?;
        (runs.len() == 5).then_some(())
    })
    .await;

    let by_flow = CancelFilter {
        flow: Some("alpha".into()),
        ..Default::default()
    };
    let done = client.cancel_runs(&by_flow).await.unwrap();
    assert_eq!(done["count"], 3);
    assert_eq!(done["truncated"], false);
    let ids: BTreeSet<String> = serde_json::from_value(done["run_ids"].clone()).unwrap();
    assert_eq!(ids, a);
    for id in &a {
        // Never claimed by a worker: CANCELLED at once.
        assert_eq!(status(client, id).await, "CANCELLED");
    }
    assert_eq!(status(client, &b1).await, "PENDING");
    // Repeating matches nothing: terminal runs are never matched.
    let again = client.cancel_runs(&by_flow).await.unwrap();
    assert_eq!(again["count"], 0);

    let too_old = CancelFilter {
        flow: Some("beta".into()),
        updated_before: Some(1.0),
        ..Default::default()
    };
    assert_eq!(client.cancel_runs(&too_old).await.unwrap()["count"], 0);
    let one = CancelFilter {
        run_ids: Some(vec![b2.clone(), "no-such-run".into()]),
        ..Default::default()
    };
    let done = client.cancel_runs(&one).await.unwrap();
    assert_eq!(done["run_ids"], json!([b2]));
    assert_eq!(status(client, &b1).await, "PENDING");

    let (code, detail, name) =
        status_of(client.cancel_runs(&Default::default()).await.unwrap_err());
    assert_eq!(
        (code, detail, name.as_deref()),
        (
            422,
            json!("specify at least one filter"),
            Some("empty_cancel_filter")
        )
    );
    let bad = CancelFilter {
        status: Some("SLEEPING".into()),
        ..Default::default()
    };
    let (code, _, name) = status_of(client.cancel_runs(&bad).await.unwrap_err());
    assert_eq!(
        (code, name.as_deref()),
        (422, Some("invalid_cancel_filter"))
    );
    let raw = reqwest::Client::new()
        .post(format!("{}/runs/cancel", stack.gateway.url()))
        .json(&json!({"run_ids": "x", "updated_before": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 422);
    let body: Value = raw.json().await.unwrap();
    let kinds: Vec<&str> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["list_type", "float_parsing"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cancel_stops_running_runs() {
    let stack = Stack::start().await;
    let client = &stack.client;
    let yaml =
        b"flow: {graph: nap}\ntasks: {nap: {callable: 'pyoco:sleep', inputs: {seconds: 30}}}\n";
    let run_id = client.submit_yaml(yaml, "napper", None).await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the run to start", Duration::from_secs(20), || async {
        (status(client, &run_id).await == "RUNNING").then_some(())
    })
    .await;
    let done = client
        .cancel_runs(&CancelFilter {
            status: Some("RUNNING".into()),
            tag: Some("default".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done["run_ids"], json!([run_id]));
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "CANCELLED");
    assert!(run["cancel_requested_at"].is_f64());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_starts_the_same_flow_params_and_tag_linked_to_the_original() {
    let stack = Stack::start_with(|c| c.schedule_poll_interval = Duration::from_millis(200)).await;
    let client = &stack.client;

    // By name: the worker cannot resolve it, so it FAILS; the replay is the same request.
    let failed = submit(client, "no-such-flow", json!({"x": 1})).await;
    assert_eq!(stack.wait_terminal(&failed).await["status"], "FAILED");
    let replayed = client.replay_run(&failed).await.unwrap();
    assert_eq!(replayed["replay_of"], failed.as_str());
    assert_eq!(replayed["status"], "PENDING");
    let copy = stack
        .wait_terminal(replayed["run_id"].as_str().unwrap())
        .await;
    assert_eq!(copy["replay_of"], failed.as_str());
    assert_eq!(copy["flow_name"], "no-such-flow");
    assert_eq!(copy["params"], json!({"x": 1}));
    assert_eq!(copy["tags"], json!(["default"]));

    // A YAML run: its text must still be found, by content hash.
    let yaml: &[u8] =
        b"flow: {graph: a, defaults: {value: 3}}\ntasks: {a: {callable: 'pyoco:echo'}}\n";
    let run_id = client.submit_yaml(yaml, "echo", None).await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(stack.wait_terminal(&run_id).await["status"], "COMPLETED");
    let store = Box::pin(Store::connect(
        Arc::new(stack.config.clone()),
        "replay-test",
    ))
    .await
    .unwrap();
    let sha = pyoco::flow::yaml::sha256_hex(yaml);
    let texts = &store.resources().bundles;
    // Without its text under its hash the run cannot be replayed...
    texts.purge(&sha).await.unwrap();
    let (code, detail, name) = status_of(client.replay_run(&run_id).await.unwrap_err());
    assert_eq!(
        (code, detail, name.as_deref()),
        (
            409,
            json!("workflow yaml not available"),
            Some("replay_unavailable")
        )
    );
    // ...with it, it can.
    texts.put(&sha, yaml.to_vec().into()).await.unwrap();
    let replayed = client.replay_run(&run_id).await.unwrap();
    let copy = stack
        .wait_terminal(replayed["run_id"].as_str().unwrap())
        .await;
    assert_eq!(copy["status"], "COMPLETED");
    assert_eq!(copy["workflow_yaml_sha256"], sha.as_str());
    assert_eq!(copy["task_records"]["a"]["output"], 3);

    // A scheduled run: the YAML comes from its schedule; the copy is not a slot of it.
    let schedule = client
        .create_yaml_schedule(
            b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 9}}}\n",
            "sched",
            None,
            &NewSchedule {
                interval_seconds: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sid = schedule["schedule_id"].as_str().unwrap().to_string();
    let fired = wait_for("the scheduled run", Duration::from_secs(20), || {
        let (client, sid) = (client.clone(), sid.clone());
        async move {
            let runs = client.list_schedule_runs(&sid, false, None).await.ok()?;
            runs.first()?["run_id"].as_str().map(str::to_string)
        }
    })
    .await;
    client.set_schedule_paused(&sid, true).await.unwrap();
    stack.wait_terminal(&fired).await;
    let replayed = client.replay_run(&fired).await.unwrap();
    let copy = stack
        .wait_terminal(replayed["run_id"].as_str().unwrap())
        .await;
    assert_eq!(copy["status"], "COMPLETED");
    assert_eq!(copy["task_records"]["a"]["output"], 9);
    assert_eq!(copy["schedule_id"], Value::Null);
    assert_eq!(copy["replay_of"], fired.as_str());

    let (code, ..) = status_of(client.replay_run("nope").await.unwrap_err());
    assert_eq!(code, 404);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cancel_and_replay_are_tenant_scoped() {
    use pyoco::auth::{ApiKey, ApiKeyRecord};
    let stack = Stack::builder()
        .no_worker()
        .config(|c| {
            c.http_auth_mode = pyoco::config::AuthMode::ApiKey;
            c.auth_pepper = Some("pep".into());
        })
        .start()
        .await;
    let store = Box::pin(Store::connect(
        Arc::new(stack.config.clone()),
        "bulk-tenants",
    ))
    .await
    .unwrap();
    let mut clients = Vec::new();
    for tenant in ["acme", "beta"] {
        let key = ApiKey::generate().unwrap();
        let record = ApiKeyRecord::new(&key, tenant, "pep", false, 1.0).unwrap();
        store.api_keys().create(&record).await.unwrap();
        clients.push(
            stack
                .client
                .clone()
                .with_api_key("X-API-Key", &key.to_header_value()),
        );
    }
    let (acme, beta) = (&clients[0], &clients[1]);
    let mine = submit(acme, "shared", json!({})).await;
    let theirs = submit(beta, "shared", json!({})).await;
    wait_for("both runs indexed", Duration::from_secs(10), || async {
        let a = acme.list_runs(&Default::default()).await.ok()?;
        let b = beta.list_runs(&Default::default()).await.ok()?;
        (a.len() == 1 && b.len() == 1).then_some(())
    })
    .await;
    let done = acme
        .cancel_runs(&CancelFilter {
            flow: Some("shared".into()),
            run_ids: Some(vec![mine.clone(), theirs.clone()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done["run_ids"], json!([mine]));
    assert_eq!(status(beta, &theirs).await, "PENDING");
    assert_eq!(
        status_of(acme.replay_run(&theirs).await.unwrap_err()).0,
        404
    );
    let copy = beta.replay_run(&theirs).await.unwrap();
    let copy = beta
        .get_run(copy["run_id"].as_str().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(copy["tenant_id"], "beta");
    stack.stop().await;
}
