//! Workflow bundles end to end against a real nats-server: `POST /runs/bundle` with every
//! validation reason of the original, the bundle kept under its sha256, the entry workflow run
//! as the root run; approval (PENDING_APPROVAL → approve / reject, with the original's 404s,
//! 409s and stamps); spawn tasks starting child runs on `PYOCO_SPAWN_CHILD_TAG` whose
//! summaries become the spawn task's output, with relation records, the child-run and
//! parallel limits, respawn refusal, failure and cancel propagation.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use pyoco::client::http::HttpError;
use pyoco::testkit::{Stack, WorkerHandle, multipart, wait_for};
use pyoco::{Config, Registry, Store};
use serde_json::{Value, json};

/// A bundle whose entry workflow has no spawn task: no approval needed.
const PLAIN: &str = "version: 1
workflows:
  main:
    flow: {graph: 'a >> b', defaults: {ignored: 1}}
    tasks:
      a: {callable: 'pyoco:echo', inputs: {value: '$ctx.params.x'}}
      b: {callable: 'pyoco:echo', inputs: {value: 2}}
submit: {entry_workflow: main, inputs: {x: 41}}
";

/// The entry prepares, fans out three children in parallel, then summarizes.
const FAN_OUT: &str = "workflows:
  main:
    flow: {graph: 'prep >> (k1 & k2 & k3) >> done'}
    tasks:
      prep: {callable: 'pyoco:echo', inputs: {value: 1}}
      k1: {spawn: child, inputs: {n: 1}}
      k2: {spawn: child, inputs: {n: 2}}
      k3: {spawn: child, inputs: {n: 3}}
      done: {callable: 'pyoco:echo', inputs: {value: '$node.k1.output.outputs.work'}}
  child:
    flow: {graph: work}
    tasks:
      work: {callable: 'pyoco:echo', inputs: {value: '$ctx.params.n'}}
submit: {entry_workflow: main, inputs: {shared: yes}}
";

fn sha256(bytes: &[u8]) -> String {
    pyoco::flow::yaml::sha256_hex(bytes)
}

async fn store_of(stack: &Stack) -> Store {
    Box::pin(Store::connect(
        Arc::new(stack.config.clone()),
        "bundles-test",
    ))
    .await
    .unwrap()
}

fn status_of(e: HttpError) -> (u16, Value, Option<String>) {
    match e {
        HttpError::Status(s) => (s.status, s.detail.clone(), s.code.clone()),
        other => panic!("expected an error status, got {other}"),
    }
}

/// A stack whose children run on tag `kids`, served by a second worker.
async fn spawning_stack(tweak: impl FnOnce(&mut Config) + Send + 'static) -> (Stack, WorkerHandle) {
    let stack = Stack::start_with(|c| {
        c.spawn_child_tag = "kids".into();
        tweak(c);
    })
    .await;
    let kids = WorkerHandle::start(
        stack.config.clone(),
        Registry::with_builtins(),
        "w-kids",
        &["kids"],
    )
    .await;
    (stack, kids)
}

async fn wait_status(stack: &Stack, run_id: &str, status: &str) -> Value {
    wait_for(
        &format!("{run_id} {status}"),
        Duration::from_secs(30),
        || {
            let client = stack.client.clone();
            let run_id = run_id.to_string();
            let status = status.to_string();
            async move {
                let run = client.get_run(&run_id, true).await.ok()?;
                (run["status"] == status.as_str()).then_some(run)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bundle_validation_reason_is_answered_like_the_original() {
    let stack = Stack::builder().no_worker().start().await;
    let wf = |body: &str| format!("workflows:\n  m:\n{body}\nsubmit: {{entry_workflow: m}}\n");
    let cases: Vec<(String, &str)> = vec![
        ("\u{0}".into(), "invalid_yaml"),
        ("a: [1".into(), "invalid_yaml"),
        ("- a".into(), "invalid_yaml_root"),
        ("workflows: {}\nflows: 1".into(), "unknown_bundle_top_level_keys: ['flows']"),
        ("workflows: {}".into(), "invalid_bundle_workflows"),
        ("workflows: [a]".into(), "invalid_bundle_workflows"),
        ("workflows: {1: {}}".into(), "invalid_workflow_name"),
        ("workflows: {m: 3}".into(), "invalid_bundle_workflow: m"),
        (wf("    flow: {graph: a}\n    extra: 1"), "unknown_bundle_workflow_keys: m: ['extra']"),
        (wf("    tasks: {}"), "invalid_bundle_flow: m"),
        (wf("    flow: {graph: a, when: x}"), "unknown_flow_keys: m: ['when']"),
        (wf("    flow: {graph: ' '}"), "missing_flow_graph: m"),
        (wf("    flow: {graph: a, defaults: [1]}"), "invalid_flow_defaults: m"),
        (wf("    flow: {graph: a}\n    tasks: [a]"), "invalid_tasks: m"),
        (wf("    flow: {graph: a}\n    tasks: {1: {callable: 'x:y'}}"), "invalid_task_name: m"),
        (wf("    flow: {graph: a}\n    tasks: {a: 1}"), "invalid_task_config: m.a"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y', use: 1}}"), "unknown_task_keys: m.a: ['use']"),
        (wf("    flow: {graph: a}\n    tasks: {a: {inputs: {}}}"), "invalid_task_kind: m.a"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y', spawn: m}}"), "invalid_task_kind: m.a"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'nocolon'}}"), "invalid_task_callable: m.a"),
        (wf("    flow: {graph: a}\n    tasks: {a: {spawn: [m]}}"), "invalid_task_spawn: m.a"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y', inputs: [1]}}"), "invalid_task_inputs: m.a"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y', outputs: [1]}}"), "invalid_task_outputs: m.a"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y', retries: -1}}"), "invalid_task_retries"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y'}}\n    runtime: [1]"), "invalid_runtime: m"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y'}}\n    runtime: {env: 1}"), "unknown_runtime_keys: m: ['env']"),
        (wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y'}}\n    runtime: {expose_env: [1]}"), "invalid_runtime_expose_env: m"),
        (wf("    flow: {graph: 'a >>'}\n    tasks: {a: {callable: 'x:y'}}"), "invalid_flow_graph_syntax: m"),
        ("workflows: {m: {flow: {graph: a}, tasks: {a: {callable: 'x:y'}}}}".into(), "invalid_bundle_submit"),
        ("workflows: {m: {flow: {graph: a}, tasks: {a: {callable: 'x:y'}}}}\nsubmit: {entry_workflow: m, at: 1}".into(), "unknown_bundle_submit_keys: ['at']"),
        ("workflows: {m: {flow: {graph: a}, tasks: {a: {callable: 'x:y'}}}}\nsubmit: {entry_workflow: ' '}".into(), "invalid_entry_workflow"),
        ("workflows: {m: {flow: {graph: a}, tasks: {a: {callable: 'x:y'}}}}\nsubmit: {entry_workflow: n}".into(), "missing_entry_workflow: n"),
        ("workflows: {m: {flow: {graph: a}, tasks: {a: {callable: 'x:y'}}}}\nsubmit: {entry_workflow: m, inputs: [1]}".into(), "invalid_bundle_submit_inputs"),
        (wf("    flow: {graph: a}\n    tasks: {a: {spawn: nowhere}}"), "unknown_spawn_target: m.a: nowhere"),
        (format!("version: one\n{}", wf("    flow: {graph: a}\n    tasks: {a: {callable: 'x:y'}}")), "invalid_version"),
        (wf("    flow: {graph: b}\n    tasks: {a: {callable: 'x:y'}}"), "unknown_graph_task: m: b"),
    ];
    let http = reqwest::Client::new();
    let url = format!("{}/runs/bundle", stack.gateway.url());
    for (yaml, reason) in &cases {
        let (ct, body) = multipart(&[("bundle", Some("bundle.yaml"), yaml.as_bytes())]);
        let resp = http
            .post(&url)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{yaml}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["detail"], "invalid workflow bundle", "{yaml}");
        assert_eq!(body["code"], "invalid_workflow_bundle");
        let got = body["reason"].as_str().unwrap();
        assert!(got.starts_with(reason), "{yaml}: got {got}, want {reason}");
    }
    // Not UTF-8.
    let (ct, body) = multipart(&[("bundle", Some("bundle.yaml"), b"\xff\xfe")]);
    let resp = http
        .post(&url)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "invalid_utf8");
    // The tag rule comes before the bundle, as in the original.
    let (ct, body) = multipart(&[
        ("bundle", Some("bundle.yaml"), b"- nonsense"),
        ("tag", None, b"a.b"),
    ]);
    let resp = http
        .post(&url)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(resp.json::<Value>().await.unwrap()["detail"], "invalid tag");
    // No file part: FastAPI's list of problems.
    let (ct, body) = multipart(&[("tag", None, b"x")]);
    let resp = http
        .post(&url)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "bundle"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_over_the_size_limit_is_413() {
    let stack = Stack::builder()
        .no_worker()
        .config(|c| c.workflow_bundle_max_bytes = 64)
        .start()
        .await;
    let big = format!("{PLAIN}# {}\n", "x".repeat(64));
    let (status, detail, code) = status_of(
        stack
            .client
            .submit_bundle_yaml(big.as_bytes(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, detail, code.as_deref()),
        (
            413,
            json!("workflow bundle too large"),
            Some("workflow_bundle_too_large")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_without_spawns_runs_its_entry_workflow_as_the_root_run() {
    let stack = Stack::start().await;
    let submitted = stack
        .client
        .submit_bundle_yaml(PLAIN.as_bytes(), None)
        .await
        .unwrap();
    let hash = sha256(PLAIN.as_bytes());
    assert_eq!(submitted["status"], "PENDING");
    assert_eq!(submitted["bundle_hash"], hash);
    let run_id = submitted["run_id"].as_str().unwrap();
    let run = stack.wait_terminal(run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["flow_name"], "main");
    assert_eq!(
        run["params"],
        json!({"x": 41}),
        "submit.inputs, not flow.defaults"
    );
    assert_eq!(run["task_records"]["a"]["output"], 41);
    for (field, want) in [
        ("bundle_hash", json!(hash)),
        ("workflow_bundle_bytes", json!(PLAIN.len())),
        ("root_run_id", json!(run_id)),
        ("parent_run_id", Value::Null),
        ("spawn_depth", json!(0)),
        ("entry_workflow", json!("main")),
        ("approval_required", json!(false)),
        ("approval_status", json!("not_required")),
        ("child_run_ids", json!([])),
        ("spawn_count", json!(0)),
    ] {
        assert_eq!(run[field], want, "{field}");
    }
    let summary = &run["result_summary"];
    assert_eq!(summary["status"], "COMPLETED");
    assert_eq!(summary["outputs"], json!({"a": 41, "b": 2}));
    assert_eq!(summary["summary_metrics"], json!({"a": 41.0, "b": 2.0}));

    // The raw bundle is kept under its sha256; the root's relation record has depth 0.
    let store = store_of(&stack).await;
    let kept = store.resources().bundles.get(&hash).await.unwrap().unwrap();
    assert_eq!(&kept[..], PLAIN.as_bytes());
    let relation = store.relation(run_id).await.unwrap().unwrap();
    assert_eq!(relation.root_run_id, run_id);
    assert_eq!(relation.depth, 0);
    assert_eq!(relation.workflow_name, "main");
    assert_eq!(relation.bundle_hash, hash);
    assert_eq!(relation.parent_run_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_bundle_spawns_children_on_the_child_tag_and_gets_their_results() {
    let (stack, kids) = spawning_stack(|_| {}).await;
    let client = &stack.client;
    let submitted = client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(submitted["status"], "PENDING_APPROVAL");
    let root_id = submitted["run_id"].as_str().unwrap().to_string();
    let waiting = client.get_run(&root_id, false).await.unwrap();
    assert_eq!(waiting["status"], "PENDING_APPROVAL");
    assert_eq!(waiting["approval_required"], true);
    assert_eq!(waiting["approval_status"], "pending");
    assert!(waiting["approval_requested_at"].as_f64().is_some());

    let approved = client.approve_run(&root_id, Some("go")).await.unwrap();
    assert_eq!(approved["status"], "PENDING");
    assert_eq!(approved["approval_status"], "approved");
    assert_eq!(approved["approval_comment"], "go");
    assert_eq!(approved["approved_by"], Value::Null, "no keys: no actor");
    assert!(approved["approved_at"].as_f64().is_some());
    assert!(approved.get("task_records").is_none());
    // A second decision finds it no longer waiting.
    let (status, detail, code) = status_of(client.approve_run(&root_id, None).await.unwrap_err());
    assert_eq!(
        (status, detail, code.as_deref()),
        (
            409,
            json!("run is not pending approval"),
            Some("run_not_pending_approval")
        )
    );

    let root = stack.wait_terminal(&root_id).await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    let children: Vec<String> = root["child_run_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(children.len(), 3);
    assert_eq!(root["spawn_count"], 3);
    assert_eq!(
        root["task_records"]["done"]["output"], 1,
        "k1's child output flows on"
    );

    let store = store_of(&stack).await;
    let mut seen_tasks = Vec::new();
    for child_id in &children {
        let child = client.get_run(child_id, true).await.unwrap();
        assert_eq!(child["status"], "COMPLETED", "{child}");
        assert_eq!(child["tag"], "kids");
        assert_eq!(child["flow_name"], "child");
        assert_eq!(child["root_run_id"], root_id.as_str());
        assert_eq!(child["parent_run_id"], root_id.as_str());
        assert_eq!(child["spawn_depth"], 1);
        assert_eq!(child["bundle_hash"], submitted["bundle_hash"]);
        assert_eq!(child["approval_status"], "not_required");
        assert_eq!(child["worker_id"], "w-kids");
        let task = child["spawned_from_task"].as_str().unwrap().to_string();
        let n = child["params"]["n"].as_i64().unwrap();
        assert_eq!(
            format!("k{n}"),
            task,
            "the spawn's inputs over the parent's params"
        );
        assert_eq!(child["params"]["shared"], "yes");
        // The child's summary is the spawn task's output.
        assert_eq!(
            root["task_records"][&task]["output"],
            child["result_summary"]
        );
        assert_eq!(child["result_summary"]["outputs"]["work"], n);
        let relation = store.relation(child_id).await.unwrap().unwrap();
        assert_eq!(relation.depth, 1);
        assert_eq!(relation.root_run_id, root_id);
        assert_eq!(relation.parent_run_id.as_deref(), Some(root_id.as_str()));
        assert_eq!(relation.spawned_from_task.as_deref(), Some(task.as_str()));
        assert_eq!(relation.workflow_name, "child");
        assert_eq!(relation.entry_workflow, "main");
        seen_tasks.push(task);
    }
    seen_tasks.sort();
    assert_eq!(seen_tasks, ["k1", "k2", "k3"]);
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_cancels_and_decisions_answer_the_originals_errors() {
    let stack = Stack::builder().no_worker().start().await;
    let client = &stack.client;
    let submitted = client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), Some("gpu"))
        .await
        .unwrap();
    let run_id = submitted["run_id"].as_str().unwrap();
    // Waiting for approval: nothing is queued yet. Approving queues the job.
    let store = store_of(&stack).await;
    assert!(!store.tag_has_jobs("gpu").await.unwrap());
    let other = client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), Some("blue"))
        .await
        .unwrap();
    assert!(!store.tag_has_jobs("blue").await.unwrap());
    client
        .approve_run(other["run_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert!(store.tag_has_jobs("blue").await.unwrap());
    // Listed by its status (the dashboard's approvals view asks for it this way).
    wait_for(
        "the waiting run listed",
        Duration::from_secs(10),
        || async {
            let listed = client
                .list_runs(&pyoco::client::http::ListRuns {
                    status: Some("PENDING_APPROVAL".into()),
                    ..Default::default()
                })
                .await
                .ok()?;
            listed.iter().any(|r| r["run_id"] == run_id).then_some(())
        },
    )
    .await;
    let rejected = client.reject_run(run_id, Some("too costly")).await.unwrap();
    assert_eq!(rejected["status"], "CANCELLED");
    assert_eq!(rejected["approval_status"], "rejected");
    assert_eq!(rejected["rejection_reason"], "too costly");
    assert_eq!(rejected["rejected_by"], Value::Null);
    assert!(rejected["rejected_at"].as_f64().is_some());
    assert!(rejected["end_time"].as_f64().is_some());
    assert_eq!(rejected["tag"], "gpu");
    let (status, detail, _) = status_of(client.reject_run(run_id, None).await.unwrap_err());
    assert_eq!(
        (status, detail),
        (409, json!("run is not pending approval"))
    );
    let (status, detail, _) = status_of(client.approve_run(run_id, None).await.unwrap_err());
    assert_eq!(
        (status, detail),
        (409, json!("run is not pending approval"))
    );
    for result in [
        client.approve_run("nope", None).await,
        client.reject_run("nope", None).await,
    ] {
        let (status, detail, _) = status_of(result.unwrap_err());
        assert_eq!((status, detail), (404, json!("run not found")));
    }
    // A plain run is not waiting for approval either.
    let plain = client
        .submit_bundle_yaml(PLAIN.as_bytes(), None)
        .await
        .unwrap();
    let (status, ..) = status_of(
        client
            .approve_run(plain["run_id"].as_str().unwrap(), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    // The body must be JSON (`{}` will do), as in the original.
    let resp = reqwest::Client::new()
        .post(format!("{}/runs/{run_id}/approve", stack.gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "missing");
    assert_eq!(body["detail"][0]["loc"], json!(["body"]));

    // The bundle was deleted while the run waited: 409, and the run keeps waiting.
    let waiting = client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), None)
        .await
        .unwrap();
    store
        .resources()
        .bundles
        .purge(waiting["bundle_hash"].as_str().unwrap())
        .await
        .unwrap();
    let waiting_id = waiting["run_id"].as_str().unwrap();
    let (status, detail, code) = status_of(client.approve_run(waiting_id, None).await.unwrap_err());
    assert_eq!(
        (status, detail, code.as_deref()),
        (
            409,
            json!("workflow bundle not found"),
            Some("workflow_bundle_not_found")
        )
    );
    assert_eq!(
        client.get_run(waiting_id, false).await.unwrap()["status"],
        "PENDING_APPROVAL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_required_approval_a_spawning_bundle_runs_at_once() {
    let (stack, kids) = spawning_stack(|c| c.spawn_requires_approval = false).await;
    let submitted = stack
        .client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), None)
        .await
        .unwrap();
    assert_eq!(submitted["status"], "PENDING");
    let root = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    assert_eq!(root["approval_required"], false);
    assert_eq!(root["spawn_count"], 3);
    kids.stop().await;
}

/// A bundle whose entry spawns `child` from each of the tasks in `graph`.
fn spawner(graph: &str, tasks: &[&str], child: &str) -> String {
    let tasks: Vec<String> = tasks
        .iter()
        .map(|t| format!("      {t}: {{spawn: child}}"))
        .collect();
    format!(
        "workflows:\n  main:\n    flow: {{graph: '{graph}'}}\n    tasks:\n{}\n  child:\n{child}\nsubmit: {{entry_workflow: main}}\n",
        tasks.join("\n")
    )
}

const SLOW_CHILD: &str = "    flow: {graph: nap}\n    tasks:\n      nap: {callable: 'pyoco:sleep', inputs: {seconds: 0.3}}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_run_limit_fails_the_spawn_past_it() {
    let (stack, kids) = spawning_stack(|c| {
        c.spawn_requires_approval = false;
        c.spawn_max_child_runs = 2;
    })
    .await;
    let bundle = spawner(
        "s1 >> s2 >> s3",
        &["s1", "s2", "s3"],
        "    flow: {graph: w}\n    tasks: {w: {callable: 'pyoco:echo'}}",
    );
    let submitted = stack
        .client
        .submit_bundle_yaml(bundle.as_bytes(), None)
        .await
        .unwrap();
    let root = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(root["status"], "FAILED", "{root}");
    assert_eq!(root["error"], "spawn_max_child_runs_exceeded");
    assert_eq!(root["spawn_count"], 2);
    assert_eq!(root["tasks"]["s3"], "FAILED");
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parallel_limit_keeps_children_from_overlapping() {
    let (stack, kids) = spawning_stack(|c| {
        c.spawn_requires_approval = false;
        c.spawn_max_parallel_child_runs = 1;
    })
    .await;
    // A child worker that could run all three at once.
    let wide = WorkerHandle::start_tuned(
        stack.config.clone(),
        Registry::with_builtins(),
        "w-wide",
        &["kids"],
        |w| w.set_concurrency(3),
    )
    .await;
    let bundle = spawner("s1 & s2 & s3", &["s1", "s2", "s3"], SLOW_CHILD);
    let submitted = stack
        .client
        .submit_bundle_yaml(bundle.as_bytes(), None)
        .await
        .unwrap();
    let root = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    let mut spans = Vec::new();
    for child in root["child_run_ids"].as_array().unwrap() {
        let child = stack
            .client
            .get_run(child.as_str().unwrap(), false)
            .await
            .unwrap();
        spans.push((
            child["start_time"].as_f64().unwrap(),
            child["end_time"].as_f64().unwrap(),
        ));
    }
    assert_eq!(spans.len(), 3);
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "children overlapped: {spans:?}");
    }
    wide.finish().await.unwrap();
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_may_not_spawn_and_a_failed_child_fails_the_spawn_task() {
    let (stack, kids) = spawning_stack(|c| c.spawn_requires_approval = false).await;
    // The child's own workflow spawns: refused before it runs anything.
    let respawn = "workflows:
  main:
    flow: {graph: s}
    tasks: {s: {spawn: child}}
  child:
    flow: {graph: again}
    tasks: {again: {spawn: leaf}}
  leaf:
    flow: {graph: w}
    tasks: {w: {callable: 'pyoco:echo'}}
submit: {entry_workflow: main}
";
    let submitted = stack
        .client
        .submit_bundle_yaml(respawn.as_bytes(), None)
        .await
        .unwrap();
    let root = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(root["status"], "FAILED", "{root}");
    let child_id = root["child_run_ids"][0].as_str().unwrap();
    let child = stack.client.get_run(child_id, false).await.unwrap();
    assert_eq!(child["status"], "FAILED");
    assert_eq!(child["error"], "child_respawn_not_allowed");
    assert_eq!(
        root["error"],
        format!("child_run_failed: {child_id}: child_respawn_not_allowed")
    );

    // A child that fails fails its spawn task; with `fail_policy: isolate` the rest goes on.
    let failing = "workflows:
  main:
    flow: {graph: 's >> after'}
    tasks:
      s: {spawn: child, fail_policy: isolate}
      after: {callable: 'pyoco:echo'}
  child:
    flow: {graph: boom}
    tasks: {boom: {callable: 'pyoco:fail', inputs: {message: broken}}}
submit: {entry_workflow: main}
";
    let submitted = stack
        .client
        .submit_bundle_yaml(failing.as_bytes(), None)
        .await
        .unwrap();
    let root = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    assert_eq!(root["tasks"]["s"], "FAILED");
    assert_eq!(
        root["task_records"]["after"]["error"], "upstream task of 'after' failed",
        "isolated: its dependents do not run"
    );
    let child_id = root["child_run_ids"][0].as_str().unwrap();
    assert_eq!(
        root["task_records"]["s"]["error"],
        format!("child_run_failed: {child_id}: broken")
    );
    assert_eq!(root["task_records"]["s"]["child_run_id"], child_id);
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_parent_cancels_its_children() {
    let (stack, kids) = spawning_stack(|c| c.spawn_requires_approval = false).await;
    let bundle = spawner(
        "s1 & s2",
        &["s1", "s2"],
        "    flow: {graph: nap}\n    tasks:\n      nap: {callable: 'pyoco:sleep', inputs: {seconds: 60}}",
    );
    let submitted = stack
        .client
        .submit_bundle_yaml(bundle.as_bytes(), None)
        .await
        .unwrap();
    let root_id = submitted["run_id"].as_str().unwrap();
    let running = wait_for("two children", Duration::from_secs(30), || {
        let client = stack.client.clone();
        let root_id = root_id.to_string();
        async move {
            let root = client.get_run(&root_id, false).await.ok()?;
            (root["spawn_count"] == 2).then_some(root)
        }
    })
    .await;
    let first = running["child_run_ids"][0].as_str().unwrap().to_string();
    wait_status(&stack, &first, "RUNNING").await;
    stack.client.cancel_run(root_id, None).await.unwrap();
    let root = stack.wait_terminal(root_id).await;
    assert_eq!(root["status"], "CANCELLED", "{root}");
    for child in running["child_run_ids"].as_array().unwrap() {
        let child = stack.wait_terminal(child.as_str().unwrap()).await;
        assert_eq!(child["status"], "CANCELLED", "{child}");
        assert_eq!(child["cancel_requested_by"], format!("run:{root_id}"));
    }
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_stamped_with_the_callers_key() {
    use pyoco::auth::{ApiKey, ApiKeyRecord};
    let stack = Stack::builder()
        .no_worker()
        .config(|c| {
            c.http_auth_mode = pyoco::config::AuthMode::ApiKey;
            c.auth_pepper = Some("pep".into());
        })
        .start()
        .await;
    let store = store_of(&stack).await;
    let key = ApiKey::generate().unwrap();
    let record = ApiKeyRecord::new(&key, "acme", "pep", false, 1.0).unwrap();
    store.api_keys().create(&record).await.unwrap();
    let client = pyoco::HttpClient::new(&stack.gateway.url())
        .unwrap()
        .with_api_key("X-API-Key", &key.to_header_value());
    let actor = format!("api_key:{}", record.key_id);

    let first = client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), None)
        .await
        .unwrap();
    let approved = client
        .approve_run(first["run_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(approved["approved_by"], actor.as_str());
    assert_eq!(approved["tenant_id"], "acme");
    assert_eq!(approved["approval_comment"], Value::Null);
    let second = client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), None)
        .await
        .unwrap();
    let rejected = client
        .reject_run(second["run_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(rejected["rejected_by"], actor.as_str());
    assert_eq!(rejected["rejection_reason"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_root_is_replayed_from_its_bundle_and_a_child_is_not() {
    let (stack, kids) = spawning_stack(|_| {}).await;
    let client = &stack.client;
    let submitted = client
        .submit_bundle_yaml(FAN_OUT.as_bytes(), Some("default"))
        .await
        .unwrap();
    let root_id = submitted["run_id"].as_str().unwrap().to_string();
    client.approve_run(&root_id, None).await.unwrap();
    let root = stack.wait_terminal(&root_id).await;
    assert_eq!(root["status"], "COMPLETED", "{root}");

    // The replay is a new root of the same bundle, params and tag, approved like a submit.
    let replay = client.replay_run(&root_id).await.unwrap();
    assert_eq!(replay["status"], "PENDING_APPROVAL");
    assert_eq!(replay["replay_of"], root_id.as_str());
    let new_id = replay["run_id"].as_str().unwrap().to_string();
    client.approve_run(&new_id, None).await.unwrap();
    let again = stack.wait_terminal(&new_id).await;
    assert_eq!(again["status"], "COMPLETED", "{again}");
    for field in [
        "bundle_hash",
        "params",
        "tag",
        "flow_name",
        "entry_workflow",
    ] {
        assert_eq!(again[field], root[field], "{field}");
    }
    assert_eq!(again["root_run_id"], new_id.as_str());
    assert_eq!(again["replay_of"], root_id.as_str());
    assert_eq!(again["spawn_count"], 3);
    assert!(
        again["child_run_ids"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !root["child_run_ids"].as_array().unwrap().contains(c)),
        "new children"
    );

    let child = root["child_run_ids"][0].as_str().unwrap();
    let (status, detail, _) = status_of(client.replay_run(child).await.unwrap_err());
    assert_eq!(
        (status, detail),
        (
            409,
            json!("bundle child runs cannot be replayed; replay their root run")
        )
    );
    // Without its bundle a root cannot be replayed either.
    let store = store_of(&stack).await;
    store
        .resources()
        .bundles
        .purge(root["bundle_hash"].as_str().unwrap())
        .await
        .unwrap();
    let (status, detail, _) = status_of(client.replay_run(&root_id).await.unwrap_err());
    assert_eq!(
        (status, detail),
        (409, json!("workflow bundle not available"))
    );
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_past_the_spawn_timeout_is_cancelled_and_fails_the_task() {
    let (stack, kids) = spawning_stack(|c| {
        c.spawn_requires_approval = false;
        c.spawn_timeout = Duration::from_millis(500);
    })
    .await;
    let bundle = spawner(
        "s",
        &["s"],
        "    flow: {graph: nap}\n    tasks:\n      nap: {callable: 'pyoco:sleep', inputs: {seconds: 60}}",
    );
    let submitted = stack
        .client
        .submit_bundle_yaml(bundle.as_bytes(), None)
        .await
        .unwrap();
    let root = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(root["status"], "FAILED", "{root}");
    assert_eq!(root["error"], "child_wait_timeout");
    let child = stack
        .wait_terminal(root["child_run_ids"][0].as_str().unwrap())
        .await;
    assert_eq!(child["status"], "CANCELLED", "{child}");
    kids.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_child_tag_children_run_on_the_parents_tag() {
    // One worker on the parent's tag, taking two jobs at once: the parent and its child.
    let stack = Stack::builder()
        .no_worker()
        .config(|c| c.spawn_requires_approval = false)
        .start()
        .await;
    let worker = WorkerHandle::start_tuned(
        stack.config.clone(),
        Registry::with_builtins(),
        "w-both",
        &["blue"],
        |w| w.set_concurrency(2),
    )
    .await;
    let submitted = stack
        .client
        .submit_bundle_yaml(FAN_OUT.replace("k2 & k3", "k2").as_bytes(), Some("blue"))
        .await;
    // FAN_OUT with k3 defined but not in the graph is still a valid bundle.
    let submitted = submitted.unwrap();
    let root = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(root["status"], "COMPLETED", "{root}");
    for child in root["child_run_ids"].as_array().unwrap() {
        let child = stack
            .client
            .get_run(child.as_str().unwrap(), false)
            .await
            .unwrap();
        assert_eq!(child["tag"], "blue");
    }
    worker.finish().await.unwrap();
}
