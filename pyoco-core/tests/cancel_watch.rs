//! Cancel and SSE watch against a real nats-server.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::{Duration, Instant};

use futures::StreamExt;
use pyoco::testkit::{Stack, WorkerHandle, submit_yaml, wait_for};
use serde_json::{Value, json};

async fn submit(stack: &Stack, yaml: &str, tag: Option<&str>) -> String {
    submit_yaml(&stack.client, yaml, "c", tag).await
}

async fn cancel(stack: &Stack, run_id: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/runs/{run_id}/cancel", stack.gateway.url()))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn wait_task_running(stack: &Stack, run_id: &str, task: &str) {
    wait_for(
        &format!("{task} to run"),
        Duration::from_secs(20),
        || async {
            let run = stack.client.get_run(run_id, false).await.ok()?;
            (run["tasks"][task] == "RUNNING").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_running_run_reaches_the_worker_without_waiting_for_a_heartbeat() {
    // A 30 s heartbeat: only the watch of the run key can stop the flow quickly.
    let stack = Stack::start_with(|c| c.run_heartbeat_interval = Duration::from_secs(30)).await;
    let run_id = submit(&stack, "flow: {graph: 'a >> b'}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 60}}, b: {callable: 'pyoco:echo'}}\n", None).await;
    wait_task_running(&stack, &run_id, "a").await;
    let asked = Instant::now();
    let (status, body) = cancel(&stack, &run_id).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "CANCELLING");
    assert!(body["cancel_requested_at"].as_f64().unwrap() > 0.0);
    assert!(body.get("task_records").is_none());
    let run = stack.wait_terminal(&run_id).await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the cancel did not wait for the 30 s heartbeat"
    );
    assert_eq!(run["status"], "CANCELLED");
    assert_eq!(run["tasks"], json!({"a": "CANCELLED", "b": "CANCELLED"}));
    assert_eq!(run["cancel_requested_at"], body["cancel_requested_at"]);
    assert_eq!(run["error"], Value::Null);
    // Idempotent on a terminal run: nothing is written.
    let (status, again) = cancel(&stack, &run_id).await;
    assert_eq!(
        (status, &again["status"], &again["updated_at"]),
        (200, &json!("CANCELLED"), &run["updated_at"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_the_last_task_ends_cancelled_not_cancelling() {
    let stack = Stack::start().await;
    let run_id = submit(&stack, "flow: {graph: 'first >> last'}\ntasks: {first: {callable: 'pyoco:echo', inputs: {value: 1}}, last: {callable: 'pyoco:sleep', inputs: {seconds: 30}}}\n", None).await;
    wait_task_running(&stack, &run_id, "last").await;
    assert_eq!(cancel(&stack, &run_id).await.1["status"], "CANCELLING");
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "CANCELLED");
    assert_eq!(
        run["tasks"],
        json!({"first": "SUCCEEDED", "last": "CANCELLED"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_is_never_lost_to_progress_writes() {
    let stack = Stack::start().await;
    // 40 short steps: the worker writes progress all the time while the cancel lands.
    let names: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let tasks: Vec<String> = names
        .iter()
        .map(|n| format!("  {n}: {{callable: 'pyoco:sleep', inputs: {{seconds: 0.05}}}}"))
        .collect();
    let yaml = format!(
        "flow: {{graph: '{}'}}\ntasks:\n{}\n",
        names.join(" >> "),
        tasks.join("\n")
    );
    let run_id = submit(&stack, &yaml, None).await;
    wait_for(
        "the chain to be under way",
        Duration::from_secs(20),
        || async {
            let run = stack.client.get_run(&run_id, false).await.ok()?;
            (run["tasks"]["s5"] == "SUCCEEDED" && run["status"] == "RUNNING").then_some(())
        },
    )
    .await;
    let (_, body) = cancel(&stack, &run_id).await;
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(
        run["status"], "CANCELLED",
        "the cancel was lost: {}",
        run["status"]
    );
    assert_eq!(run["cancel_requested_at"], body["cancel_requested_at"]);
    assert_eq!(run["tasks"]["s39"], "CANCELLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_queued_run_without_a_worker_is_immediate_and_the_job_is_skipped_later() {
    let stack = Stack::start().await;
    let run_id = submit(
        &stack,
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:fail'}}\n",
        Some("nobody"),
    )
    .await;
    let (status, body) = cancel(&stack, &run_id).await;
    assert_eq!((status, &body["status"]), (200, &json!("CANCELLED")));
    assert!(body["end_time"].is_f64());
    let late = WorkerHandle::start(
        stack.config.clone(),
        pyoco::Registry::with_builtins(),
        "late",
        &["nobody"],
    )
    .await;
    let nats = pyoco::NatsClient::connect(stack.config.clone())
        .await
        .unwrap();
    let js = nats.store().jetstream().clone();
    wait_for(
        "the queued job to be acked",
        Duration::from_secs(10),
        || {
            let js = js.clone();
            async move {
                (js.get_stream("PYOCO_WORK")
                    .await
                    .ok()?
                    .get_info()
                    .await
                    .ok()?
                    .state
                    .messages
                    == 0)
                    .then_some(())
            }
        },
    )
    .await;
    let run = stack.client.get_run(&run_id, false).await.unwrap();
    assert_eq!(run["status"], "CANCELLED");
    assert_eq!(run["tasks"], json!({}));
    late.stop().await;
    assert_eq!(cancel(&stack, "no-such-run").await.0, 404);
}

/// A parsed SSE event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
    at: Instant,
}

/// Reads SSE events until the server closes the stream.
async fn read_events(url: &str, last_event_id: Option<&str>) -> Vec<Sse> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), body.next())
        .await
        .expect("stream stalled")
    {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = ("message".to_string(), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                events.push(Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                    at: Instant::now(),
                });
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_pushes_snapshots_with_revision_ids_and_closes_after_the_terminal_one() {
    let stack = Stack::start().await;
    let run_id = submit(&stack, "flow: {graph: 'a >> b'}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 0.3}}, b: {callable: 'pyoco:echo', inputs: {value: 1}}}\n", None).await;
    let url = format!(
        "{}/runs/{run_id}/watch?include=records",
        stack.gateway.url()
    );
    let events = read_events(&url, None).await;
    let snapshots: Vec<&Sse> = events.iter().filter(|e| e.event == "snapshot").collect();
    assert!(snapshots.len() >= 2, "{events:?}");
    let last = snapshots.last().unwrap();
    assert_eq!(last.data["snapshot"]["status"], "COMPLETED");
    assert_eq!(last.data["run_id"], run_id.as_str());
    assert!(
        last.data["snapshot"]["task_records"]["b"].is_object(),
        "include=records keeps records"
    );
    let ids: Vec<u64> = snapshots
        .iter()
        .map(|e| e.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids are increasing KV revisions: {ids:?}"
    );
    // Resuming after the first event gives the rest without repeating it.
    let resumed = read_events(&url, Some(&ids[0].to_string())).await;
    let resumed_ids: Vec<u64> = resumed
        .iter()
        .filter_map(|e| e.id.as_ref())
        .map(|i| i.parse().unwrap())
        .collect();
    assert!(resumed_ids.iter().all(|id| *id > ids[0]), "{resumed_ids:?}");
    assert_eq!(
        resumed
            .iter()
            .rfind(|e| e.event == "snapshot")
            .unwrap()
            .data["snapshot"]["status"],
        "COMPLETED"
    );
    // Without include, records are left out; after the end a watch shows the final state once.
    let done = read_events(
        &format!("{}/runs/{run_id}/watch", stack.gateway.url()),
        None,
    )
    .await;
    assert_eq!(done.len(), 1);
    assert!(done[0].data["snapshot"].get("task_records").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watch_gets_heartbeats_under_five_seconds_apart_and_honours_the_timeout() {
    let stack = Stack::start().await;
    let run_id = submit(
        &stack,
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo'}}\n",
        Some("nobody"),
    )
    .await;
    let started = Instant::now();
    let events = read_events(
        &format!("{}/runs/{run_id}/watch?timeout_sec=5", stack.gateway.url()),
        None,
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(5) && started.elapsed() < Duration::from_secs(15)
    );
    assert_eq!(events[0].event, "snapshot");
    let beats: Vec<&Sse> = events.iter().filter(|e| e.event == "heartbeat").collect();
    assert!(beats.len() >= 2, "{events:?}");
    assert_eq!(beats[0].data["run_id"], run_id.as_str());
    let mut last = events[0].at;
    for e in &events[1..] {
        assert!(
            e.at.duration_since(last) < Duration::from_secs(5),
            "gap before {e:?}"
        );
        last = e.at;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_validates_its_query_and_404s() {
    let stack = Stack::start().await;
    let base = stack.gateway.url();
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    assert_eq!(status(format!("{base}/runs/nope/watch")).await, 404);
    let run_id = submit(
        &stack,
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo'}}\n",
        None,
    )
    .await;
    assert_eq!(
        status(format!("{base}/runs/{run_id}/watch?timeout_sec=0")).await,
        422
    );
    assert_eq!(
        status(format!("{base}/runs/{run_id}/watch?since=soon")).await,
        422
    );
    stack.wait_terminal(&run_id).await;
    // `since` after the last update: no snapshot is sent, and the stream ends at the timeout.
    let events = read_events(
        &format!("{base}/runs/{run_id}/watch?since=99999999999&timeout_sec=1"),
        None,
    )
    .await;
    assert!(events.iter().all(|e| e.event == "heartbeat"));
}
