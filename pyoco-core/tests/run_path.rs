//! The run path end to end against a real nats-server: submit over HTTP, a worker runs the
//! flow, the snapshot is read back.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use pyoco::testkit::{Stack, fast_config, submit_yaml};
use serde_json::json;

const FAN_OUT_IN: &str = r#"
version: 1
flow:
  graph: a >> (b & c) >> d
  defaults: {greeting: hello}
tasks:
  a: {callable: "pyoco:echo", inputs: {value: "$ctx.params.greeting"}}
  b: {callable: "pyoco:sleep", inputs: {seconds: 0.3}}
  c: {callable: "pyoco:sleep", inputs: {seconds: 0.3}}
  d: {callable: "pyoco:echo", inputs: {value: "$node.a.output"}}
  unused: {callable: "pyoco:fail"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_flow_with_fan_out_and_fan_in_completes() {
    let stack = Stack::start().await;
    let submitted = stack
        .client
        .submit_yaml(FAN_OUT_IN.as_bytes(), "fan", None)
        .await
        .expect("submit");
    assert_eq!(submitted["status"], "PENDING");
    assert_eq!(submitted["bundle_hash"], serde_json::Value::Null);
    let run_id = submitted["run_id"].as_str().expect("run_id").to_string();

    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    assert_eq!(run["flow_name"], "fan");
    assert_eq!(
        run["tasks"],
        json!({"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED", "d": "SUCCEEDED"})
    );
    assert_eq!(run["params"], json!({"greeting": "hello"}));
    assert_eq!(run["worker_id"], "w1");
    assert_eq!(
        run["workflow_yaml_sha256"],
        pyoco::flow::yaml::sha256_hex(FAN_OUT_IN.as_bytes())
    );
    assert!(run["end_time"].as_f64().unwrap() >= run["start_time"].as_f64().unwrap());
    let rec = &run["task_records"];
    assert_eq!(rec["a"]["output"], "hello");
    assert_eq!(rec["d"]["output"], "hello");
    assert_eq!(rec["d"]["inputs"], json!({"value": "hello"}));
    // b and c ran concurrently, d only after both.
    let (b0, b1) = (
        rec["b"]["started_at"].as_f64().unwrap(),
        rec["b"]["ended_at"].as_f64().unwrap(),
    );
    let (c0, c1) = (
        rec["c"]["started_at"].as_f64().unwrap(),
        rec["c"]["ended_at"].as_f64().unwrap(),
    );
    assert!(b0 < c1 && c0 < b1, "b and c should overlap");
    assert!(rec["d"]["started_at"].as_f64().unwrap() >= b1.max(c1));
    // A task not named in the graph never runs.
    assert!(run["tasks"].get("unused").is_none());
    // Without include=records, records are left out.
    let plain = stack.client.get_run(&run_id, false).await.unwrap();
    assert!(plain.get("task_records").is_none());
    assert_eq!(plain["worker_alive"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_flow_resolves_from_a_flows_directory_and_nats_client_reads_it() {
    let server = pyoco::testkit::NatsServer::start();
    let config = fast_config(&server);
    let mut registry = pyoco::Registry::with_builtins();
    registry.flows_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flows"));
    let worker =
        pyoco::testkit::WorkerHandle::start(config.clone(), registry, "w-named", &["default"])
            .await;
    let client = pyoco::NatsClient::connect(config).await.unwrap();
    let mut params = serde_json::Map::new();
    params.insert("name".into(), json!("pyoco"));
    let run_id = client
        .submit_run("hello", params, None, vec![])
        .await
        .unwrap();
    let pending = client
        .get_run(&run_id)
        .await
        .unwrap()
        .expect("snapshot exists at once");
    assert!(matches!(
        pending.status,
        pyoco::RunStatus::Pending | pyoco::RunStatus::Running | pyoco::RunStatus::Completed
    ));
    let run = client
        .wait_for_terminal(&run_id, std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(run.status, pyoco::RunStatus::Completed);
    assert_eq!(run.task_records["done"].output, json!("pyoco"));
    assert_eq!(run.tags, vec!["default".to_string()]);
    assert!(client.get_run("no-such-run").await.unwrap().is_none());
    let bad_tag = client
        .submit_run("hello", Default::default(), Some("a.b"), vec![])
        .await;
    assert!(matches!(
        bad_tag,
        Err(pyoco::Error::Submit(pyoco::store::SubmitError::InvalidTag(
            _
        )))
    ));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_snapshots_are_compacted_on_every_write_and_the_run_completes() {
    let stack = Stack::start_with(|c| c.max_run_snapshot_bytes = 4096).await;
    // A 10 kB output followed by a task that outlives several heartbeats.
    let big = "x".repeat(10_000);
    let yaml = format!(
        "flow: {{graph: 'big >> wait'}}\ntasks:\n  big: {{callable: 'pyoco:echo', inputs: {{value: '{big}'}}}}\n  wait: {{callable: 'pyoco:sleep', inputs: {{seconds: 0.5}}}}\n"
    );
    let run_id = submit_yaml(&stack.client, &yaml, "big", None).await;
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(run["task_records_truncated"], true);
    assert_eq!(run["task_records"], json!({}));
    assert_eq!(
        run["tasks"],
        json!({"big": "SUCCEEDED", "wait": "SUCCEEDED"})
    );
    let tasks = stack.client.get_tasks(&run_id).await.unwrap();
    assert_eq!(tasks["task_records_truncated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_registry_goes_idle_running_idle_and_stopped_graceful() {
    let mut stack = Stack::start().await;
    let nats = pyoco::NatsClient::connect(stack.config.clone())
        .await
        .unwrap();
    let workers = nats.store().resources().workers.clone();
    let record = |kv: async_nats::jetstream::kv::Store| async move {
        let bytes = kv.get("w1").await.ok()??;
        serde_json::from_slice::<serde_json::Value>(&bytes).ok()
    };
    let first = record(workers.clone()).await.expect("registered");
    assert_eq!(first["state"], "IDLE");
    assert_eq!(first["tags"], json!(["default"]));
    assert_eq!(first["heartbeat_at"], first["last_heartbeat_at"]);
    let yaml = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 0.4}}}\n";
    let run_id = submit_yaml(&stack.client, yaml, "s", None).await;
    pyoco::testkit::wait_for(
        "RUNNING in the registry",
        std::time::Duration::from_secs(10),
        || {
            let kv = workers.clone();
            let run_id = run_id.clone();
            async move {
                let r = record(kv).await?;
                (r["state"] == "RUNNING" && r["current_run_id"] == run_id.as_str()).then_some(())
            }
        },
    )
    .await;
    stack.wait_terminal(&run_id).await;
    let idle = pyoco::testkit::wait_for(
        "IDLE with last_run_*",
        std::time::Duration::from_secs(10),
        || {
            let kv = workers.clone();
            async move {
                let r = record(kv).await?;
                (r["state"] == "IDLE" && r["last_run_status"] == "COMPLETED").then_some(r)
            }
        },
    )
    .await;
    assert_eq!(idle["last_run_id"], run_id.as_str());
    assert_eq!(idle["instance_id"], first["instance_id"]);
    stack.worker.take().unwrap().stop().await;
    let stopped = record(workers.clone()).await.unwrap();
    assert_eq!(stopped["state"], "STOPPED_GRACEFUL");
    assert_eq!(stopped["stop_reason"], "graceful_shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serving_several_tags_takes_turns_between_them() {
    let server = pyoco::testkit::NatsServer::start();
    let mut config = fast_config(&server);
    // One job at a time, so the order of starts is the order of polls.
    config.worker_concurrency = 1;
    let client = pyoco::NatsClient::connect(config.clone()).await.unwrap();
    let yaml = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";
    // A backlog on both tags before any worker exists: a busy first tag must not starve the second.
    let mut runs = Vec::new();
    for tag in ["busy", "quiet"] {
        for _ in 0..6 {
            runs.push((tag, client.submit_yaml(yaml, tag, Some(tag)).await.unwrap()));
        }
    }
    let worker = pyoco::testkit::WorkerHandle::start(
        config,
        pyoco::Registry::with_builtins(),
        "w-both",
        &["busy", "quiet"],
    )
    .await;
    let mut finished = Vec::new();
    for (tag, run_id) in &runs {
        let run = client
            .wait_for_terminal(run_id, std::time::Duration::from_secs(20))
            .await
            .unwrap();
        finished.push((run.start_time.unwrap(), *tag));
    }
    finished.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first_half: Vec<&str> = finished[..6].iter().map(|(_, t)| *t).collect();
    assert!(
        first_half.contains(&"quiet") && first_half.contains(&"busy"),
        "order: {finished:?}"
    );
    worker.stop().await;
}

/// The original gateway's cancel reads a snapshot and puts it back without compare-and-set:
/// landing just after a worker's terminal write, it makes a finished run look RUNNING again.
/// With `PYOCO_TERMINAL_GUARD_SEC` the worker looks again after that delay and restores the
/// terminal snapshot; without it (the default: pyoco's writers all compare-and-set) nothing
/// re-reads the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_guard_restores_a_snapshot_a_blind_put_made_stale() {
    for guard in [true, false] {
        let mut stack = Stack::start_with(move |c| {
            if guard {
                c.terminal_guard = std::time::Duration::from_secs(2);
            }
        })
        .await;
        let run_id = submit_yaml(
            &stack.client,
            "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 0.3}}}\n",
            "guarded",
            None,
        )
        .await;
        // What a read-then-put writer read while the run was RUNNING...
        let store = stack.gateway.state.store().unwrap().clone();
        let wait = std::time::Duration::from_secs(10);
        let stale = pyoco::testkit::wait_for("the run RUNNING", wait, || async {
            let raw = store.runs().get_raw(&run_id).await.ok().flatten()?;
            let doc: serde_json::Value = serde_json::from_slice(&raw.value).ok()?;
            (doc["status"] == "RUNNING").then_some(raw.value)
        })
        .await;
        let done = stack.wait_terminal(&run_id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
        // ...and put back after the terminal write.
        store.runs().put_raw(&run_id, stale).await.unwrap();
        let read = |run_id: String| {
            let store = store.clone();
            async move {
                let raw = store.runs().get_raw(&run_id).await.unwrap().unwrap();
                serde_json::from_slice::<serde_json::Value>(&raw.value).unwrap()["status"].clone()
            }
        };
        assert_eq!(read(run_id.clone()).await, "RUNNING");
        if guard {
            pyoco::testkit::wait_for("the terminal snapshot restored", wait, || {
                let read = read(run_id.clone());
                async move { (read.await == "COMPLETED").then_some(()) }
            })
            .await;
            let run = stack.client.get_run(&run_id, true).await.unwrap();
            assert_eq!(run["task_records"]["a"]["state"], "SUCCEEDED", "{run}");
        } else {
            // The worker stops only after its own background checks: none was pending.
            if let Some(worker) = stack.worker.take() {
                worker.stop().await;
            }
            assert_eq!(read(run_id.clone()).await, "RUNNING");
        }
        stack.stop().await;
    }
}
