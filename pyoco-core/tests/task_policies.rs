//! Task policies end to end: retries, a circuit breaker and a result cache shared by two
//! workers through NATS KV, typed Rust tasks and a flow resolver.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pyoco::flow::embed::FlowBuilder;
use pyoco::testkit::{Stack, WorkerHandle, run_to_end, wait_for};
use pyoco::{HttpClient, Registry, TaskError};
use serde_json::{Value, json};

/// Two workers on one tag whose `t:svc` task fails while `down` is set, counting calls.
async fn two_workers(
    config: &pyoco::Config,
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
) -> (WorkerHandle, WorkerHandle) {
    let registry = || {
        let mut r = Registry::with_builtins();
        let (down, calls) = (down.clone(), calls.clone());
        r.register("t:svc", &["k"], move |call| {
            let (down, calls) = (down.clone(), calls.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if down.load(Ordering::SeqCst) {
                    Err(TaskError::new("service down"))
                } else {
                    Ok(json!({"k": call.args.get("k")}))
                }
            }
        });
        r
    };
    let a = WorkerHandle::start(config.clone(), registry(), "wa", &["default"]).await;
    let b = WorkerHandle::start(config.clone(), registry(), "wb", &["default"]).await;
    (a, b)
}

async fn run(client: &HttpClient, yaml: &str) -> Value {
    run_to_end(client, yaml, "p").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_opens_and_recovers_across_two_workers() {
    let stack = Stack::builder().no_worker().start().await;
    let (config, client) = (stack.config.clone(), stack.client.clone());
    let (down, calls) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (a, b) = two_workers(&config, down.clone(), calls.clone()).await;
    let yaml = "flow: {graph: s}\ntasks: {s: {callable: 't:svc', circuit_breaker: {failure_threshold: 3, reset_after_sec: 1}}}\n";
    let mut workers = std::collections::HashSet::new();
    for _ in 0..3 {
        let r = run(&client, yaml).await;
        assert_eq!(r["error"], "service down");
        workers.insert(r["worker_id"].as_str().unwrap().to_string());
    }
    // Open now, whichever worker takes the next run: it fails fast without calling.
    for _ in 0..2 {
        let r = run(&client, yaml).await;
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .starts_with("circuit open for 't:svc' after 3 consecutive failures"),
            "{}",
            r["error"]
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // After the cool-down one trial goes through; it succeeds and closes the breaker.
    down.store(false, Ordering::SeqCst);
    let nats = pyoco::NatsClient::connect(config).await.unwrap();
    let breaker = || async {
        let bytes = nats
            .store()
            .resources()
            .circuit_breakers
            .get("t_svc")
            .await
            .unwrap()
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    // Wait for the cool-down by the time the breaker opened, not a fixed sleep.
    let opened_at = breaker().await["opened_at"].as_f64().unwrap();
    wait_for(
        "the 1 s cool-down to pass",
        Duration::from_secs(10),
        || async { (pyoco::model::now() > opened_at + 1.05).then_some(()) },
    )
    .await;
    assert_eq!(run(&client, yaml).await["status"], "COMPLETED");
    assert_eq!(run(&client, yaml).await["status"], "COMPLETED");
    let state = breaker().await;
    assert_eq!(state["state"], "closed");
    assert_eq!(state["consecutive_failures"], 0);
    eprintln!("failing runs were taken by {workers:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_result_is_reused_by_any_worker_and_retries_are_counted() {
    let stack = Stack::builder().no_worker().start().await;
    let (config, client) = (stack.config.clone(), stack.client.clone());
    let (down, calls) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (a, b) = two_workers(&config, down, calls.clone()).await;
    let yaml =
        "flow: {graph: s}\ntasks: {s: {callable: 't:svc', inputs: {k: 7}, cache_ttl_sec: 60}}\n";
    let first = run(&client, yaml).await;
    let second = run(&client, yaml).await;
    assert_eq!(first["task_records"]["s"]["cache"], "miss");
    assert_eq!(second["task_records"]["s"]["cache"], "hit");
    assert_eq!(second["task_records"]["s"]["output"], json!({"k": 7}));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second run did not call the task"
    );
    let other = run(&client, &yaml.replace("k: 7", "k: 8")).await;
    assert_eq!(other["task_records"]["s"]["cache"], "miss");
    a.stop().await;
    b.stop().await;

    // Retries: a task failing twice, then succeeding.
    let flaky = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::with_builtins();
    let f = flaky.clone();
    registry.register("t:flaky", &[], move |_| {
        let f = f.clone();
        async move {
            if f.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(TaskError::new("not yet"))
            } else {
                Ok(json!("ok"))
            }
        }
    });
    let worker = WorkerHandle::start(config.clone(), registry, "wf", &["default"]).await;
    let r = run(
        &client,
        "flow: {graph: f}\ntasks: {f: {callable: 't:flaky', retries: 3, retry_backoff_ms: 20}}\n",
    )
    .await;
    assert_eq!(r["status"], "COMPLETED");
    assert_eq!(r["task_records"]["f"]["attempts"], 3);
    worker.stop().await;
}

#[derive(serde::Deserialize)]
struct Greet {
    name: String,
    #[serde(default)]
    punctuation: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rust_tasks_and_a_flow_resolver_serve_named_runs() {
    let stack = Stack::builder().no_worker().start().await;
    let (config, client) = (stack.config.clone(), stack.client.clone());
    let mut registry = Registry::with_builtins();
    registry.register_fn("demo:greet", |g: Greet| async move {
        Ok::<_, String>(format!(
            "hello {}{}",
            g.name,
            g.punctuation.unwrap_or_default()
        ))
    });
    registry.flow_resolver(|name| {
        let punctuation = name.strip_prefix("greet")?.to_string();
        FlowBuilder::new("greet")
            .task("greet", "demo:greet", |t| {
                t.input("punctuation", punctuation)
            })
            .build()
            .ok()
    });
    let worker = WorkerHandle::start(config.clone(), registry, "wr", &["default"]).await;
    let mut params = serde_json::Map::new();
    params.insert("name".into(), json!("ada"));
    let resp = client
        .submit_run("greet!", params, None, None)
        .await
        .unwrap();
    let run_id = resp["run_id"].as_str().unwrap();
    let r = client
        .wait_until_terminal(
            run_id,
            Duration::from_millis(50),
            Some(Duration::from_secs(20)),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(r["task_records"]["greet"]["output"], "hello ada!");
    // A run missing the typed input fails with a clear message.
    let resp = client
        .submit_run("greet?", Default::default(), None, None)
        .await
        .unwrap();
    let r = client
        .wait_until_terminal(
            resp["run_id"].as_str().unwrap(),
            Duration::from_millis(50),
            Some(Duration::from_secs(20)),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(r["status"], "FAILED");
    assert_eq!(
        r["error"],
        "invalid inputs for demo:greet: missing field `name`"
    );
    // The resolver says no: flow_not_found.
    let resp = client
        .submit_run("nope", Default::default(), None, None)
        .await
        .unwrap();
    let r = client
        .wait_until_terminal(
            resp["run_id"].as_str().unwrap(),
            Duration::from_millis(50),
            Some(Duration::from_secs(20)),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(r["error"], "flow_not_found: 'nope'");
    worker.stop().await;
}
