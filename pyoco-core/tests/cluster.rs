//! pyoco on a real 3-node NATS cluster (loopback, JetStream on every node): resources get
//! `PYOCO_JS_REPLICAS` replicas, a mismatch is reported by `/health`, and under a submit load
//! through two gateways and two workers attached to different nodes, losing a node — then the
//! node leading the work stream, then the one leading the runs bucket — loses no accepted run
//! and runs none twice. An SSE watch resumes on the other gateway with `Last-Event-ID`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyoco::testkit::{GatewayHandle, NatsCluster, WorkerHandle, wait_for};
use pyoco::{Config, HttpClient, Registry};
use serde_json::Value;

const YAML: &str = "flow: {graph: a}\ntasks: {a: {callable: 'count:hit'}}\n";
const RUNS: usize = 2_000;

/// A cluster config with the short intervals of `fast_config`.
fn config(cluster: &NatsCluster, node: usize) -> Config {
    let mut c = cluster.config(node, 3);
    c.run_heartbeat_interval = Duration::from_millis(100);
    c.worker_heartbeat_interval = Duration::from_millis(200);
    // A submit cut off between its snapshot and its job is queued again within seconds.
    c.orphan_after = Duration::from_secs(2);
    c
}

async fn stream_info(url: &str, stream: &str) -> pyoco::store::async_nats::jetstream::stream::Info {
    let client = pyoco::store::async_nats::connect(url).await.unwrap();
    let js = pyoco::store::async_nats::jetstream::new(client);
    // Right after a node (re)starts it may not know every stream yet: ask until it does.
    wait_for(
        &format!("info of {stream}"),
        Duration::from_secs(20),
        || async {
            let mut s = js.get_stream(stream).await.ok()?;
            s.info().await.ok().cloned()
        },
    )
    .await
}

/// The gateway's store once connected (creating R3 resources on a fresh cluster can take a
/// while on a loaded machine).
async fn connected(gateway: &GatewayHandle) -> pyoco::Store {
    wait_for(
        "the gateway to connect",
        Duration::from_secs(60),
        || async { gateway.state.store().ok().cloned() },
    )
    .await
}

async fn health(url: &str) -> Value {
    reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_get_the_configured_replicas_and_a_mismatch_is_degraded() {
    let cluster = NatsCluster::start(3);
    let a = GatewayHandle::start(config(&cluster, 0)).await;
    connected(&a).await;
    for stream in [
        "PYOCO_WORK",
        "PYOCO_DLQ",
        "KV_pyoco_runs",
        "KV_pyoco_workers",
        "OBJ_pyoco_wheels",
    ] {
        let info = stream_info(&cluster.url(1), stream).await;
        assert_eq!(info.config.num_replicas, 3, "{stream}");
        assert!(
            info.cluster.unwrap().replicas.len() >= 2,
            "{stream}: placed on every node"
        );
    }
    let h = health(&a.url()).await;
    assert_eq!(h["components"]["replicas"]["status"], "ok", "{h}");
    // A gateway configured for 1 replica keeps the existing R3 resources and says so.
    let mut one = config(&cluster, 1);
    one.js_replicas = 1;
    let b = GatewayHandle::start(one).await;
    connected(&b).await;
    let h = health(&b.url()).await;
    assert_eq!(h["health"], "degraded", "{h}");
    assert_eq!(h["components"]["replicas"]["status"], "mismatch", "{h}");
    assert!(
        h["components"]["replicas"]["detail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "KV_pyoco_runs has 3 replicas"),
        "{h}"
    );
    a.stop().await;
    b.stop().await;
}

/// Submits through `urls` (round robin) from 24 clients until `RUNS` are accepted; failed
/// submits (a gateway between nodes) are retried as new submits, never counted.
async fn submit_load(urls: Vec<String>, accepted: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..24 {
        let client = HttpClient::new(&urls[i % urls.len()]).unwrap();
        let accepted = accepted.clone();
        let stop = stop.clone();
        clients.spawn(async move {
            while !stop.load(Ordering::Relaxed) && accepted.lock().unwrap().len() < RUNS {
                match client.submit_yaml(YAML.as_bytes(), "cluster", None).await {
                    Ok(answer) => accepted
                        .lock()
                        .unwrap()
                        .push(answer["run_id"].as_str().unwrap().to_string()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
}

/// The node leading `stream`, by stream info asked of node `via`.
async fn leader_of(cluster: &NatsCluster, via: usize, stream: &str) -> usize {
    let info = stream_info(&cluster.url(via), stream).await;
    let leader = info.cluster.and_then(|c| c.leader).unwrap();
    cluster.index_of(&leader).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_node_then_the_work_and_runs_leaders_loses_no_run_and_runs_none_twice() {
    let mut cluster = NatsCluster::start(3);
    // Gateways on nodes 0 and 1, workers on nodes 1 and 2.
    let a = GatewayHandle::start(config(&cluster, 0)).await;
    let b = GatewayHandle::start(config(&cluster, 1)).await;
    connected(&a).await;
    connected(&b).await;
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let registry = || {
        let mut registry = Registry::with_builtins();
        let seen = hits.clone();
        registry.register("count:hit", &[], move |call| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap().entry(call.run_id.clone()).or_default() += 1;
                Ok(serde_json::json!("hit"))
            }
        });
        registry
    };
    let w1 = WorkerHandle::start(config(&cluster, 1), registry(), "w1", &["default"]).await;
    let w2 = WorkerHandle::start(config(&cluster, 2), registry(), "w2", &["default"]).await;

    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(submit_load(
        vec![a.url(), b.url()],
        accepted.clone(),
        stop.clone(),
    ));
    let progress = |n: usize| {
        let accepted = accepted.clone();
        async move {
            wait_for(
                &format!("{n} runs accepted"),
                Duration::from_secs(120),
                || async { (accepted.lock().unwrap().len() >= n).then_some(()) },
            )
            .await;
        }
    };

    // 1. A node that leads nothing in particular: kill it, bring it back.
    progress(RUNS / 4).await;
    let work_leader = leader_of(&cluster, 0, "PYOCO_WORK").await;
    let other = (0..3).find(|i| *i != work_leader).unwrap();
    cluster.kill(other);
    progress(RUNS / 2).await;
    cluster.restart(other);

    // 2. The node leading the work stream.
    progress(RUNS * 5 / 8).await;
    let work_leader = leader_of(&cluster, other, "PYOCO_WORK").await;
    cluster.kill(work_leader);
    progress(RUNS * 6 / 8).await;
    cluster.restart(work_leader);

    // 3. The node leading the runs bucket.
    progress(RUNS * 7 / 8).await;
    let runs_leader = leader_of(&cluster, work_leader, "KV_pyoco_runs").await;
    cluster.kill(runs_leader);
    progress(RUNS * 15 / 16).await;
    cluster.restart(runs_leader);
    load.await.unwrap();
    stop.store(true, Ordering::Relaxed);

    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= RUNS, "{}", accepted.len());
    let store = connected(&a).await;
    wait_for(
        "every accepted run COMPLETED",
        Duration::from_secs(180),
        || async {
            for id in &accepted {
                let run = store.runs().get_json(id).await.ok()??.value;
                if run["status"] != "COMPLETED" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // Every stored run ends COMPLETED and ran once: also one whose submit was cut off by a
    // node loss between its snapshot and its job (the client saw an error), which the
    // orphan sweep queues again.
    let stored = wait_for(
        "every stored run COMPLETED",
        Duration::from_secs(120),
        || async {
            let keys = store.runs().keys().await.ok()?;
            for id in &keys {
                let run = store.runs().get_json(id).await.ok()??.value;
                if run["status"] != "COMPLETED" {
                    return None;
                }
            }
            Some(keys)
        },
    )
    .await;
    let hits = hits.lock().unwrap().clone();
    for id in &stored {
        assert_eq!(
            hits.get(id),
            Some(&1),
            "run {id} ran {:?} times",
            hits.get(id)
        );
    }
    eprintln!(
        "{} accepted, {} stored, all COMPLETED once, across three node losses",
        accepted.len(),
        stored.len()
    );

    // An SSE watch resumes on the other gateway after the last revision it saw.
    let run_id = &accepted[0];
    let first = reqwest::get(format!("{}/runs/{run_id}/watch", a.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let seen: u64 = first
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let resumed = reqwest::Client::new()
        .get(format!("{}/runs/{run_id}/watch?timeout_sec=2", b.url()))
        .header("last-event-id", seen.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !resumed.contains("event: snapshot"),
        "nothing after the terminal revision is repeated: {resumed}"
    );
    let older = reqwest::Client::new()
        .get(format!("{}/runs/{run_id}/watch", b.url()))
        .header("last-event-id", (seen - 1).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(older.contains(&format!("id: {seen}")), "{older}");

    w1.stop().await;
    w2.stop().await;
    a.stop().await;
    b.stop().await;
}

/// Workers with a short lease, so a partition outlasts it quickly.
fn short_lease(mut c: Config) -> Config {
    c.consumer_ack_wait = Duration::from_secs(2);
    c.ack_progress_interval = Duration::from_millis(500);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_past_its_lease_loses_the_run_and_its_late_write_changes_nothing() {
    let cluster = NatsCluster::start(3);
    let gateway = GatewayHandle::start(config(&cluster, 1)).await;
    let store = connected(&gateway).await;
    // Worker 1 reaches node 0 only through a proxy: cutting it partitions that worker alone
    // (its connection stays open, its bytes are held — no reset, no failover).
    let target = format!("127.0.0.1:{}", cluster.url(0).rsplit(':').next().unwrap())
        .parse()
        .unwrap();
    let proxy = pyoco::testkit::TcpProxy::start(target).await;
    let mut cut_off = short_lease(config(&cluster, 0));
    cut_off.nats_url = proxy.nats_url();
    let w1 = WorkerHandle::start(cut_off, Registry::with_builtins(), "w1", &["default"]).await;
    let run_id = pyoco::testkit::submit_yaml(
        &HttpClient::new(&gateway.url()).unwrap(),
        "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 4}}}\n",
        "partition",
        None,
    )
    .await;
    wait_for("w1 runs it", Duration::from_secs(20), || async {
        let run = store.runs().get_json(&run_id).await.ok()??.value;
        (run["worker_id"] == "w1" && run["tasks"]["a"] == "RUNNING").then_some(())
    })
    .await;
    let w2 = WorkerHandle::start(
        short_lease(config(&cluster, 2)),
        Registry::with_builtins(),
        "w2",
        &["default"],
    )
    .await;

    proxy.cut();
    // Past the lease the job is redelivered; w2 holds it while w1 could still be alive, then
    // takes the run over once w1 has been silent for 5 s, and finishes it.
    let done = wait_for("w2 finishes the run", Duration::from_secs(60), || async {
        let run = store.runs().get_json(&run_id).await.ok()??.value;
        (run["status"] == "COMPLETED").then_some(run)
    })
    .await;
    assert_eq!(done["worker_id"], "w2", "{done}");

    proxy.heal();
    // w1 comes back: its held writes and its own terminal write meet a newer revision and a
    // terminal run, and change nothing. Wait until w1 has settled its attempt.
    let workers = HttpClient::new(&gateway.url()).unwrap();
    wait_for(
        "w1 to report its run handled",
        Duration::from_secs(60),
        || async {
            let list = workers.get_workers(&Default::default()).await.ok()?;
            let w1 = list.iter().find(|w| w["worker_id"] == "w1")?.clone();
            (w1["last_run_id"] == run_id.as_str()).then_some(())
        },
    )
    .await;
    let after = store.runs().get_json(&run_id).await.unwrap().unwrap().value;
    assert_eq!(after["status"], "COMPLETED");
    assert_eq!(
        after["worker_id"], "w2",
        "the late write did not take the run back: {after}"
    );
    assert_eq!(after["updated_at"], done["updated_at"], "{after}");
    w1.stop().await;
    w2.stop().await;
    gateway.stop().await;
}
