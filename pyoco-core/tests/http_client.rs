//! `pyoco::HttpClient` end to end: every method against a real nats-server, an in-process
//! gateway and worker; the SSE watch across server-side closes; typed errors.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pyoco::client::http::{
    HttpClient, HttpError, ListRuns, ListRunsVnext, ListWorkers, WatchEvent, WatchOptions,
    WorkerScope,
};
use pyoco::testkit::{Stack, wait_for};
use serde_json::{Map, Value, json};

const FAN: &str = "flow: {graph: 'a >> (b & c)', defaults: {greeting: hi}}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: {value: '$ctx.params.greeting'}}\n  b: {callable: 'pyoco:sleep', inputs: {seconds: 0.1}}\n  c: {callable: 'pyoco:echo', inputs: {value: '$node.a.output'}}\n";

/// About 2.4 s in three steps, so snapshots keep coming across several 1 s connections.
const SLOW: &str = "flow: {graph: 'a >> b >> c'}\ntasks:\n  a: {callable: 'pyoco:sleep', inputs: {seconds: 0.8}}\n  b: {callable: 'pyoco:sleep', inputs: {seconds: 0.8}}\n  c: {callable: 'pyoco:sleep', inputs: {seconds: 0.8}}\n";

const LONG: &str = "flow: {graph: 'a >> b'}\ntasks:\n  a: {callable: 'pyoco:sleep', inputs: {seconds: 60}}\n  b: {callable: 'pyoco:echo'}\n";

async fn submit(client: &HttpClient, yaml: &str, tag: Option<&str>) -> String {
    let resp = client.submit_yaml(yaml.as_bytes(), "t", tag).await.unwrap();
    assert_eq!(resp["status"], "PENDING", "{resp}");
    resp["run_id"].as_str().unwrap().to_string()
}

fn status_error(e: &HttpError) -> (u16, Option<&str>) {
    (e.status().unwrap_or(0), e.code())
}

/// Every event of a watch, with the time each arrived; fails if it takes over 30 s.
async fn collect(
    client: &HttpClient,
    run_id: &str,
    opts: WatchOptions,
) -> Vec<(Instant, Result<WatchEvent, HttpError>)> {
    let mut stream = client.watch_run(run_id, opts);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(item) = stream.next().await {
            out.push((Instant::now(), item));
        }
    })
    .await
    .expect("the watch did not end in 30 s");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_submitted_by_name_keeps_its_params_tag_and_tags() {
    let stack = Stack::start().await;
    let client = &stack.client;
    assert_eq!(client.health().await.unwrap()["status"], "ok");

    let mut params = Map::new();
    params.insert("x".into(), json!(1));
    let by_name = client
        .submit_run("named", params, Some("idle"), Some(vec!["t1".into()]))
        .await
        .unwrap();
    assert_eq!(by_name["status"], "PENDING");
    let named_id = by_name["run_id"].as_str().unwrap();
    let named = client.get_run(named_id, false).await.unwrap();
    assert_eq!(
        (
            &named["flow_name"],
            &named["params"],
            &named["tag"],
            &named["tags"]
        ),
        (
            &json!("named"),
            &json!({"x": 1}),
            &json!("idle"),
            &json!(["t1"])
        )
    );
    let full = client
        .list_runs(&ListRuns {
            tag: Some("idle".into()),
            full: true,
            limit: Some(5),
            ..ListRuns::default()
        })
        .await
        .unwrap();
    assert_eq!(full[0]["params"], json!({"x": 1}), "include=full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_run_is_waited_to_completion_then_read_listed_and_its_tasks_shown() {
    let stack = Stack::start().await;
    let client = &stack.client;

    let run_id = submit(client, FAN, None).await;
    let mut seen = Vec::new();
    let run = client
        .wait_until_terminal(
            &run_id,
            Duration::from_millis(50),
            Some(Duration::from_secs(20)),
            |s| seen.push(s["status"].as_str().unwrap_or_default().to_string()),
        )
        .await
        .unwrap();
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["task_records"]["c"]["output"], "hi");
    assert_eq!(run["worker_id"], "w1");
    assert_eq!(seen.last().map(String::as_str), Some("COMPLETED"));

    let plain = client.get_run(&run_id, false).await.unwrap();
    assert!(plain.get("task_records").is_none());
    assert!(plain["worker_state"].as_str().is_some(), "{plain}");
    let tasks = client.get_tasks(&run_id).await.unwrap();
    assert_eq!(
        tasks["tasks"],
        json!({"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED"})
    );

    let listed = client
        .list_runs(&ListRuns {
            status: Some("COMPLETED".into()),
            flow: Some("t".into()),
            ..ListRuns::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["run_id"], run_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_run_routes_are_typed_with_status_code_and_detail() {
    let stack = Stack::start().await;
    let client = &stack.client;
    // Typed errors: status, code and detail.
    let missing = client.get_run("nope", false).await.unwrap_err();
    assert_eq!(status_error(&missing), (404, Some("run_not_found")));
    assert_eq!(missing.detail(), Some(&json!("run not found")));
    assert!(missing.to_string().starts_with("HTTP 404 GET /runs/nope: "));
    let tasks_missing = client.get_tasks("nope").await.unwrap_err();
    assert_eq!(status_error(&tasks_missing), (404, Some("run_not_found")));
    let blank = client
        .submit_run("   ", Map::new(), None, None)
        .await
        .unwrap_err();
    assert_eq!(status_error(&blank), (422, Some("missing_flow_name")));
    let bad_tag = client
        .submit_run("x", Map::new(), Some("a.b"), None)
        .await
        .unwrap_err();
    assert_eq!(status_error(&bad_tag), (422, Some("validation_error")));
    let problems = bad_tag.detail().and_then(Value::as_array).unwrap();
    assert_eq!(problems[0]["loc"], json!(["body", "tag"]));
    let bad_yaml = client
        .submit_yaml(b"pipes: {}\n", "t", None)
        .await
        .unwrap_err();
    assert_eq!(
        status_error(&bad_yaml),
        (422, Some("invalid_workflow_yaml"))
    );
    let bad_cursor = client
        .list_runs_vnext(&ListRunsVnext {
            cursor: Some("abc".into()),
            ..ListRunsVnext::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_error(&bad_cursor), (422, Some("invalid_list_query")));
    let bad_limit = client
        .list_runs(&ListRuns {
            limit: Some(0),
            ..ListRuns::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_error(&bad_limit), (422, Some("validation_error")));
}

#[tokio::test]
async fn a_gateway_that_is_not_there_is_a_transport_error() {
    // Nothing listens there: a transport error, not a status.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let nowhere = HttpClient::new(&format!("http://127.0.0.1:{port}/")).unwrap();
    assert_eq!(nowhere.base_url(), format!("http://127.0.0.1:{port}"));
    let err = nowhere.health().await.unwrap_err();
    assert!(matches!(err, HttpError::Transport(_)), "{err:?}");
    assert_eq!(err.status(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_runs_vnext_pages_with_cursors_and_filters() {
    let stack = Stack::start().await;
    let client = &stack.client;
    let mut ids = HashSet::new();
    for i in 0..5 {
        let resp = client
            .submit_run(&format!("f{i}"), Map::new(), Some("idle"), None)
            .await
            .unwrap();
        ids.insert(resp["run_id"].as_str().unwrap().to_string());
    }
    let yaml_id = submit(client, FAN, Some("idle2")).await;
    let by_tag = ListRunsVnext {
        tag: Some("idle".into()),
        limit: Some(2),
        ..ListRunsVnext::default()
    };
    // The list index follows the bucket within milliseconds.
    wait_for("5 listed runs", Duration::from_secs(10), || async {
        let all = client.list_all_runs(&by_tag).await.ok()?;
        (all.len() == 5).then_some(())
    })
    .await;

    let mut query = by_tag.clone();
    let mut paged = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.list_runs_vnext(&query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        paged.extend(page.items);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let paged_ids: HashSet<String> = paged
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paged_ids, ids);
    let stamps: Vec<f64> = paged
        .iter()
        .map(|r| r["updated_at"].as_f64().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {stamps:?}"
    );

    let all = client.list_all_runs(&by_tag).await.unwrap();
    assert_eq!(all, paged);
    // Diff mode even without a diff-mode option: an object with next_cursor.
    let first = client
        .list_runs_vnext(&ListRunsVnext {
            limit: Some(1),
            ..ListRunsVnext::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    assert!(first.next_cursor.is_some());

    let newest = stamps[0];
    let after = client
        .list_runs_vnext(&ListRunsVnext {
            tag: Some("idle".into()),
            updated_after: Some(newest),
            ..ListRunsVnext::default()
        })
        .await
        .unwrap();
    assert_eq!((after.items.len(), after.next_cursor), (0, None));

    let sha = pyoco::flow::yaml::sha256_hex(FAN.as_bytes());
    let by_sha = client
        .list_runs_vnext(&ListRunsVnext {
            workflow_yaml_sha256: Some(sha.clone()),
            full: true,
            ..ListRunsVnext::default()
        })
        .await
        .unwrap();
    assert_eq!(by_sha.items.len(), 1, "{by_sha:?}");
    assert_eq!(by_sha.items[0]["run_id"], yaml_id.as_str());
    assert_eq!(by_sha.items[0]["workflow_yaml_sha256"], sha.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_run_reconnects_after_server_closes_and_delivers_the_terminal_snapshot_once() {
    let stack = Stack::start().await;
    let client = &stack.client;
    let run_id = submit(client, SLOW, None).await;
    let started = Instant::now();
    // Each connection lasts 1 s; the run takes about 2.4 s.
    let events = collect(
        client,
        &run_id,
        WatchOptions {
            include_records: true,
            timeout_sec: Some(1),
            ..WatchOptions::default()
        },
    )
    .await;
    let mut revisions = Vec::new();
    let mut terminal = 0;
    let mut late = 0;
    let mut last = Value::Null;
    for (at, item) in &events {
        match item.as_ref().unwrap() {
            WatchEvent::Snapshot {
                run_id: id,
                snapshot,
                revision,
                ts,
            } => {
                assert_eq!(id, &run_id);
                assert!(*ts > 0.0);
                revisions.push(revision.expect("our gateway sends revisions"));
                if snapshot["status"] == "COMPLETED" {
                    terminal += 1;
                }
                // Anything after the first connection's 1 s came over a reconnect.
                if at.duration_since(started) > Duration::from_millis(1300) {
                    late += 1;
                }
                last = snapshot.clone();
            }
            WatchEvent::Heartbeat { run_id: id, .. } => assert_eq!(id, &run_id),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(terminal, 1, "{events:?}");
    assert!(
        events.last().unwrap().1.as_ref().unwrap().is_terminal(),
        "the stream ends with the terminal snapshot"
    );
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "no revision repeated: {revisions:?}"
    );
    assert!(late >= 1, "nothing arrived after a reconnect: {events:?}");
    assert_eq!(last["status"], "COMPLETED");
    assert_eq!(
        last["tasks"],
        json!({"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED"})
    );
    assert!(last["task_records"]["c"].is_object(), "include_records");

    // A finished run: exactly its terminal snapshot, then the end, records left out.
    let done = collect(client, &run_id, WatchOptions::default()).await;
    assert_eq!(done.len(), 1, "{done:?}");
    let only = done[0].1.as_ref().unwrap();
    assert_eq!(only.status(), Some("COMPLETED"));
    assert!(only.snapshot().unwrap().get("task_records").is_none());
    assert_eq!(only.to_json()["event"], "snapshot");
    assert_eq!(only.to_json()["data"]["run_id"], run_id.as_str());

    // A finished run watched with `since` after its last update: nothing will ever come, so
    // the watch ends at once instead of reconnecting until it gives up.
    let started = Instant::now();
    let nothing = collect(
        client,
        &run_id,
        WatchOptions {
            since: Some(99_999_999_999.0),
            ..WatchOptions::default()
        },
    )
    .await;
    assert!(nothing.is_empty(), "{nothing:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watch_heartbeats_until_its_deadline_and_resumes_after_the_snapshot() {
    let stack = Stack::start().await;
    let client = &stack.client;
    // Nobody serves this tag: the run stays PENDING.
    let idle = submit(client, FAN, Some("nobody")).await;
    let started = Instant::now();
    // Connections of 3 s each: a snapshot and a heartbeat on the first, then only heartbeats.
    // A reconnect after a connection whose only event was a heartbeat must still resume
    // after the snapshot's revision rather than replay the snapshot.
    let events = collect(
        client,
        &idle,
        WatchOptions {
            timeout_sec: Some(3),
            deadline: Some(Duration::from_millis(7500)),
            ..WatchOptions::default()
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(7400) && took < Duration::from_secs(12),
        "{took:?}"
    );
    let events: Vec<WatchEvent> = events.into_iter().map(|(_, e)| e.unwrap()).collect();
    assert_eq!(events[0].status(), Some("PENDING"));
    let beats = events
        .iter()
        .filter(|e| matches!(e, WatchEvent::Heartbeat { run_id, .. } if *run_id == idle))
        .count();
    assert!(
        beats >= 2,
        "a heartbeat on each full connection: {events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.name() == "snapshot").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_since_the_last_update_sends_only_heartbeats() {
    let stack = Stack::start().await;
    let client = &stack.client;
    // Nobody serves this tag: the run stays PENDING.
    let idle = submit(client, FAN, Some("nobody")).await;
    // `since` after the last update: no snapshot of the idle run.
    let quiet = collect(
        client,
        &idle,
        WatchOptions {
            since: Some(99_999_999_999.0),
            deadline: Some(Duration::from_millis(2500)),
            ..WatchOptions::default()
        },
    )
    .await;
    assert!(
        quiet
            .iter()
            .all(|(_, e)| matches!(e, Ok(WatchEvent::Heartbeat { .. }))),
        "{quiet:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_terminal_gives_up_with_a_timeout_naming_the_status() {
    let stack = Stack::start().await;
    let client = &stack.client;
    // Nobody serves this tag: the run stays PENDING.
    let idle = submit(client, FAN, Some("nobody")).await;
    // wait_until_terminal gives up with a Timeout naming the status.
    let err = client
        .wait_until_terminal(
            &idle,
            Duration::from_millis(100),
            Some(Duration::from_secs(1)),
            |_| {},
        )
        .await
        .unwrap_err();
    match err {
        HttpError::Timeout(msg) => assert_eq!(msg, format!("run {idle} is still PENDING")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_errors_before_the_stream_opens_end_it_with_the_typed_error() {
    let stack = Stack::start().await;
    let client = &stack.client;
    // Nobody serves this tag: the run stays PENDING.
    let idle = submit(client, FAN, Some("nobody")).await;
    // Errors before the stream opens end it with the typed error.
    let missing = collect(client, "nope", WatchOptions::default()).await;
    assert_eq!(missing.len(), 1, "{missing:?}");
    let e = missing[0].1.as_ref().unwrap_err();
    assert_eq!(status_error(e), (404, Some("run_not_found")));
    assert!(e.to_string().starts_with("HTTP 404 GET /runs/nope/watch: "));
    let bad = collect(
        client,
        &idle,
        WatchOptions {
            since: Some(f64::NAN),
            ..WatchOptions::default()
        },
    )
    .await;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(
        status_error(bad[0].1.as_ref().unwrap_err()),
        (422, Some("validation_error"))
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let nowhere = HttpClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let refused = collect(&nowhere, &idle, WatchOptions::default()).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        matches!(refused[0].1, Err(HttpError::Transport(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_run_waits_on_the_watch_and_times_out_on_a_stuck_run() {
    let stack = Stack::start().await;
    let client = &stack.client;
    let run_id = submit(client, LONG, None).await;
    wait_for("task a to run", Duration::from_secs(20), || async {
        let run = client.get_run(&run_id, false).await.ok()?;
        (run["tasks"]["a"] == "RUNNING").then_some(())
    })
    .await;
    let asked = Instant::now();
    let run = client
        .cancel_run(&run_id, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(15));
    assert_eq!(run["status"], "CANCELLED", "{run}");
    assert!(run.get("worker_state").is_some(), "shaped like get_run");
    assert_eq!(run["tasks"], json!({"a": "CANCELLED", "b": "CANCELLED"}));
    // Idempotent on a terminal run, with or without wait.
    let again = client.cancel_run(&run_id, None).await.unwrap();
    assert_eq!(
        (&again["status"], &again["updated_at"]),
        (&json!("CANCELLED"), &run["updated_at"])
    );
    let again = client
        .cancel_run(&run_id, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(again["status"], "CANCELLED");

    // A queued run nobody claimed is CANCELLED at once; without wait the answer says so.
    let queued = submit(client, FAN, Some("nobody")).await;
    assert_eq!(
        client.cancel_run(&queued, None).await.unwrap()["status"],
        "CANCELLED"
    );

    // A run "claimed" by a worker that does not exist stays CANCELLING: the wait times out.
    let ghost = submit(client, FAN, Some("nobody")).await;
    let nats = pyoco::NatsClient::connect(stack.config.clone())
        .await
        .unwrap();
    let mut doc = client.get_run(&ghost, false).await.unwrap();
    let doc_map = doc.as_object_mut().unwrap();
    for key in ["worker_alive", "worker_state", "worker_heartbeat_at"] {
        doc_map.remove(key);
    }
    doc_map.insert("status".into(), json!("RUNNING"));
    doc_map.insert("worker_id".into(), json!("ghost"));
    doc_map.insert("start_time".into(), json!(pyoco::model::now()));
    nats.store()
        .runs()
        .put_raw(ghost.as_str(), serde_json::to_vec(&doc).unwrap().into())
        .await
        .unwrap();
    let started = Instant::now();
    let err = client
        .cancel_run(&ghost, Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match err {
        HttpError::Timeout(msg) => {
            assert_eq!(msg, format!("cancel wait timeout for run_id={ghost}"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.get_run(&ghost, false).await.unwrap()["status"],
        "CANCELLING"
    );
    let missing = client.cancel_run("nope", None).await.unwrap_err();
    assert_eq!(status_error(&missing), (404, Some("run_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_can_be_listed_hidden_and_shown_and_metrics_are_served() {
    let stack = Stack::start().await;
    let client = &stack.client;
    let run_id = submit(client, FAN, None).await;
    stack.wait_terminal(&run_id).await;

    let workers = client
        .get_workers(&ListWorkers::default())
        .await
        .unwrap_or_else(|e| {
            panic!("GET /workers failed ({e}); is the route served by the gateway yet?")
        });
    let w1 = workers
        .iter()
        .find(|w| w["worker_id"] == "w1")
        .unwrap_or_else(|| panic!("w1 not listed: {workers:?}"));
    assert!(
        matches!(w1["state"].as_str(), Some("IDLE" | "RUNNING")),
        "{w1}"
    );
    assert_eq!(w1["tags"], json!(["default"]));
    let idle = client
        .get_workers(&ListWorkers {
            scope: Some(WorkerScope::All),
            state: Some("IDLE".into()),
            limit: Some(10),
            ..ListWorkers::default()
        })
        .await
        .unwrap();
    assert!(idle.iter().all(|w| w["state"] == "IDLE"), "{idle:?}");

    let hidden = client.patch_worker_hidden("w1", true).await.unwrap();
    assert_eq!(
        (&hidden["worker_id"], &hidden["hidden"]),
        (&json!("w1"), &json!(true))
    );
    assert!(hidden["updated_at"].as_f64().is_some());
    let visible = client.get_workers(&ListWorkers::default()).await.unwrap();
    assert!(
        visible.iter().all(|w| w["worker_id"] != "w1"),
        "{visible:?}"
    );
    let with_hidden = client
        .get_workers(&ListWorkers {
            include_hidden: true,
            ..ListWorkers::default()
        })
        .await
        .unwrap();
    let w1 = with_hidden.iter().find(|w| w["worker_id"] == "w1").unwrap();
    assert_eq!(w1["hidden"], true);
    // The worker's own heartbeats keep the flag: wait until it has written its record twice
    // more (every 200 ms here) rather than sleeping a fixed time.
    let patched_at = hidden["updated_at"].as_f64().unwrap();
    let all = ListWorkers {
        include_hidden: true,
        ..ListWorkers::default()
    };
    wait_for("two worker heartbeats", Duration::from_secs(10), || async {
        let workers = client.get_workers(&all).await.ok()?;
        let w1 = workers.iter().find(|w| w["worker_id"] == "w1")?;
        (w1["last_heartbeat_at"].as_f64()? > patched_at + 0.4).then_some(())
    })
    .await;
    let still = client.get_workers(&ListWorkers::default()).await.unwrap();
    assert!(still.iter().all(|w| w["worker_id"] != "w1"), "{still:?}");
    let shown = client.patch_worker_hidden("w1", false).await.unwrap();
    assert_eq!(shown["hidden"], false);
    let back = client.get_workers(&ListWorkers::default()).await.unwrap();
    assert!(back.iter().any(|w| w["worker_id"] == "w1"), "{back:?}");

    let unknown = client
        .patch_worker_hidden("nobody", true)
        .await
        .unwrap_err();
    assert_eq!(status_error(&unknown), (404, Some("worker_not_found")));
    let bad_state = client
        .get_workers(&ListWorkers {
            state: Some("SLEEPING".into()),
            ..ListWorkers::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_error(&bad_state).0, 422);

    let text = client.metrics().await.unwrap_or_else(|e| {
        panic!("GET /metrics failed ({e}); is the route served by the gateway yet?")
    });
    assert!(text.contains("# TYPE pyoco_runs_total gauge"), "{text}");
    assert!(
        text.contains("pyoco_runs_total{status=\"COMPLETED\"} 1"),
        "{text}"
    );
    assert!(text.ends_with('\n'));
}
