//! The operations routes (`/stats`, `/progress`, `/throughput`, `/logs`, `/results`) against a
//! real nats-server, gateway and worker: counts by filter, rates and percentiles, failures
//! grouped, cursor paging, 422s, a second gateway that agrees with the first (everything is
//! derived from the stored runs), and tenant scoping with API keys.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::client::http::{ResultsQuery, StatsFilter};
use pyoco::config::AuthMode;
use pyoco::testkit::{GatewayHandle, Stack, submit_yaml, wait_for};
use pyoco::{HttpClient, Store};
use serde_json::Value;

const OK_YAML: &str =
    "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";
const FAIL_YAML: &str =
    "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:fail', inputs: {message: boom}}}\n";

fn flow(name: &str) -> StatsFilter {
    StatsFilter {
        flow: Some(name.into()),
        ..StatsFilter::default()
    }
}

/// Runs 3 `ok` and 2 `bad` runs to their end; returns the failed run ids.
async fn run_mix(stack: &Stack) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(submit_yaml(&stack.client, OK_YAML, "ok", None).await);
    }
    let mut failed = Vec::new();
    for _ in 0..2 {
        let id = submit_yaml(&stack.client, FAIL_YAML, "bad", None).await;
        failed.push(id.clone());
        ids.push(id);
    }
    for id in &ids {
        stack.wait_terminal(id).await;
    }
    failed
}

/// Waits until `/progress` of `filter` shows `done` finished runs (the counters follow the
/// KV watch, a moment behind the write the client saw).
async fn wait_done(client: &HttpClient, filter: &StatsFilter, done: u64) -> Value {
    wait_for("progress to catch up", Duration::from_secs(10), || async {
        let p = client.progress(filter).await.ok()?;
        let n = p["completed"].as_u64()? + p["failed"].as_u64()? + p["cancelled"].as_u64()?;
        (n == done).then_some(p)
    })
    .await
}

#[tokio::test]
async fn operations_routes_count_page_and_agree_across_gateways() {
    let stack = Stack::start().await;
    let failed = run_mix(&stack).await;
    let c = &stack.client;
    let all = StatsFilter::default();
    let p = wait_done(c, &all, 5).await;
    assert_eq!(p["total"], 5);
    assert_eq!(p["percent_done"], 100.0);
    let ok = c.progress(&flow("ok")).await.unwrap();
    assert_eq!(
        (
            ok["total"].as_u64(),
            ok["completed"].as_u64(),
            ok["failed"].as_u64()
        ),
        (Some(3), Some(3), Some(0))
    );
    let nothing = c.progress(&flow("nope")).await.unwrap();
    assert_eq!(nothing["total"], 0);
    assert_eq!(nothing["percent_done"], 0.0);

    let s = c.stats(&all).await.unwrap();
    assert_eq!(s["runs_by_status"]["COMPLETED"], 3, "{s}");
    assert_eq!(s["runs_by_status"]["FAILED"], 2, "{s}");
    assert_eq!(s["totals"]["submitted"], 5);
    assert_eq!(s["totals"]["active"], 0);
    assert_eq!(s["queue_depth"], 0);
    assert_eq!(s["queue"]["default"]["live_workers"], 1, "{s}");
    let live = s["workers"]["IDLE"].as_u64().unwrap() + s["workers"]["RUNNING"].as_u64().unwrap();
    assert_eq!(live, 1, "{s}");
    assert!(
        s["dlq_messages"].as_u64().unwrap() >= 2,
        "execution errors go to the DLQ: {s}"
    );

    let t = c.throughput(&all).await.unwrap();
    assert_eq!(t["windows"]["1m"]["completed"], 3, "{t}");
    assert_eq!(t["windows"]["1m"]["failed"], 2, "{t}");
    assert_eq!(t["windows"]["15m"]["completed"], 3, "{t}");
    assert_eq!(t["windows"]["since_start"]["completed"], 3, "{t}");
    assert_eq!(t["runs_completed"], 3);
    assert!(t["windows"]["1m"]["duration_p50_sec"].as_f64().unwrap() >= 0.0);
    assert!(t["windows"]["1m"]["completed_per_sec"].as_f64().unwrap() > 0.0);
    assert!(t["elapsed_sec"].as_f64().unwrap() > 0.0);
    let t_bad = c.throughput(&flow("bad")).await.unwrap();
    assert_eq!(t_bad["windows"]["5m"]["completed"], 0, "{t_bad}");
    assert_eq!(t_bad["windows"]["5m"]["failed"], 2, "{t_bad}");

    let logs = c.logs(&all, None).await.unwrap();
    let errors = logs["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{logs}");
    assert_eq!(errors[0]["count"], 2);
    assert_eq!(errors[0]["task"], "a");
    assert_eq!(
        errors[0]["callable"], "pyoco:fail",
        "grouped by callable: {logs}"
    );
    assert!(
        failed
            .iter()
            .any(|id| errors[0]["example_run_id"] == id.as_str())
    );
    assert!(
        errors[0]["example_message"]
            .as_str()
            .unwrap()
            .contains("boom"),
        "{logs}"
    );
    assert!(errors[0]["first_seen"].as_f64() <= errors[0]["last_seen"].as_f64());
    assert!(
        logs["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["kind"] == "dlq"),
        "{logs}"
    );
    let dlq_jobs: Vec<&Value> = logs["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "dlq_job")
        .collect();
    assert_eq!(dlq_jobs.len(), 2, "{logs}");
    for job in dlq_jobs {
        assert_eq!(job["reason"], "execution_error");
        assert!(
            failed.iter().any(|id| job["run_id"] == id.as_str()),
            "{job}"
        );
    }
    let ok_logs = c.logs(&flow("ok"), None).await.unwrap();
    assert_eq!(ok_logs["errors"], serde_json::json!([]));
    assert!(
        !ok_logs["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["kind"] == "dlq_job"),
        "{ok_logs}"
    );

    // Results: newest first, two per page, then the end.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = c
            .results(&ResultsQuery {
                limit: Some(2),
                cursor: cursor.clone(),
                ..ResultsQuery::default()
            })
            .await
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            assert!(item["duration_sec"].as_f64().unwrap() >= 0.0, "{item}");
            assert!(item.as_object().unwrap().contains_key("result_summary"));
            seen.push(item.clone());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let updated: Vec<f64> = seen
        .iter()
        .map(|i| i["updated_at"].as_f64().unwrap())
        .collect();
    assert!(updated.windows(2).all(|w| w[0] >= w[1]), "{updated:?}");
    let only_failed = c
        .results(&ResultsQuery {
            status: Some("FAILED".into()),
            ..ResultsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(only_failed["items"].as_array().unwrap().len(), 2);

    // Bad input: precise 422s.
    let http = reqwest::Client::new();
    let base = stack.gateway.url();
    for (path, code) in [
        ("/results?status=RUNNING", "validation_error"),
        ("/results?limit=0", "validation_error"),
        ("/results?limit=x", "validation_error"),
        ("/results?cursor=%%%", "invalid_list_query"),
        ("/logs?limit=500", "validation_error"),
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{path}: {body}");
    }

    // A second gateway on the same NATS, started later, agrees on everything it derives.
    let second = GatewayHandle::start(stack.config.clone()).await;
    let c2 = HttpClient::new(&second.url()).unwrap();
    let p2 = wait_done(&c2, &all, 5).await;
    assert_eq!(p2, p);
    let s2 = c2.stats(&all).await.unwrap();
    for key in ["runs_by_status", "totals", "queue_depth"] {
        assert_eq!(s2[key], s[key], "{key}");
    }
    let t2 = c2.throughput(&all).await.unwrap();
    for w in ["1m", "5m", "15m"] {
        for k in [
            "completed",
            "failed",
            "duration_p50_sec",
            "duration_p99_sec",
        ] {
            assert_eq!(t2["windows"][w][k], t["windows"][w][k], "{w} {k}");
        }
    }
    // Runs that ended before it started are not "since start" for the second gateway.
    assert_eq!(t2["windows"]["since_start"]["completed"], 0, "{t2}");
    let logs2 = c2.logs(&all, None).await.unwrap();
    assert_eq!(logs2["errors"], logs["errors"]);
    second.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn operations_routes_count_only_the_callers_tenant() {
    const PEPPER: &str = "pep";
    let stack = Stack::start_with(|c| {
        c.http_auth_mode = AuthMode::ApiKey;
        c.auth_pepper = Some(PEPPER.into());
    })
    .await;
    let store = Store::connect(Arc::new(stack.config.clone()), "ops-test")
        .await
        .unwrap();
    let mut clients = Vec::new();
    for tenant in ["acme", "beta"] {
        let key = ApiKey::generate().unwrap();
        let record = ApiKeyRecord::new(&key, tenant, PEPPER, false, 1.0).unwrap();
        store.api_keys().create(&record).await.unwrap();
        clients.push(
            HttpClient::new(&stack.gateway.url())
                .unwrap()
                .with_api_key("X-API-Key", &key.to_header_value()),
        );
    }
    let (acme, beta) = (&clients[0], &clients[1]);
    for _ in 0..2 {
        let id = submit_yaml(acme, OK_YAML, "ok", None).await;
        pyoco::testkit::wait_terminal(acme, &id).await;
    }
    let id = submit_yaml(beta, FAIL_YAML, "bad", None).await;
    pyoco::testkit::wait_terminal(beta, &id).await;
    let all = StatsFilter::default();
    let a = wait_done(acme, &all, 2).await;
    assert_eq!(
        (a["total"].as_u64(), a["failed"].as_u64()),
        (Some(2), Some(0))
    );
    let b = wait_done(beta, &all, 1).await;
    assert_eq!(
        (b["total"].as_u64(), b["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        acme.logs(&all, None).await.unwrap()["errors"],
        serde_json::json!([])
    );
    // Dead-lettered jobs are shown to their tenant only.
    let dlq_jobs = |logs: &Value| {
        logs["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == "dlq_job")
            .count()
    };
    assert_eq!(dlq_jobs(&acme.logs(&all, None).await.unwrap()), 0);
    assert_eq!(dlq_jobs(&beta.logs(&all, None).await.unwrap()), 1);
    let results = acme.results(&ResultsQuery::default()).await.unwrap();
    assert_eq!(results["items"].as_array().unwrap().len(), 2);
    assert_eq!(beta.stats(&all).await.unwrap()["totals"]["submitted"], 1);
    let anonymous = HttpClient::new(&stack.gateway.url()).unwrap();
    assert!(anonymous.stats(&all).await.is_err(), "no key: 401");
    stack.stop().await;
}
