//! The orphan sweep against a real nats-server: PENDING runs whose job never reached the
//! stream (their submitter died between the snapshot and the publish) are queued again and
//! run once; a run whose job cannot be rebuilt is failed with a reason; a run whose job *is*
//! queued is never duplicated; two gateways sweeping the same orphan publish it once.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyoco::flow::yaml::sha256_hex;
use pyoco::gateway::orphans::Sweeper;
use pyoco::model::RunSnapshot;
use pyoco::store::Store;
use pyoco::testkit::{GatewayHandle, NatsServer, WorkerHandle, fast_config, wait_for};
use pyoco::{Config, Registry};
use serde_json::{Map, Value, json};

const YAML: &str = "flow: {graph: a}\ntasks: {a: {callable: 'count:hit'}}\n";

/// A registry whose `count:hit` task counts its calls per run.
fn counting() -> (Registry, Arc<Mutex<HashMap<String, u32>>>) {
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut registry = Registry::with_builtins();
    let seen = hits.clone();
    registry.register("count:hit", &[], move |call| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap().entry(call.run_id.clone()).or_default() += 1;
            Ok(json!("hit"))
        }
    });
    registry.register_flow(
        "named",
        pyoco::flow::yaml::parse_flow_yaml(YAML.as_bytes()).unwrap(),
    );
    (registry, hits)
}

fn config(server: &NatsServer) -> Config {
    let mut c = fast_config(server);
    c.orphan_after = Duration::from_secs(1);
    c
}

/// Writes a PENDING snapshot without publishing its job: what a submitter killed between
/// its two writes leaves behind.
async fn orphan(store: &Store, run_id: &str, flow: &str, tag: &str, yaml: Option<&str>) {
    let mut params = Map::new();
    params.insert("n".into(), json!(1));
    let mut snapshot = RunSnapshot::pending(run_id, flow, tag, vec![tag.into()], params);
    if let Some(yaml) = yaml {
        snapshot.workflow_yaml_sha256 = Some(sha256_hex(yaml.as_bytes()));
        snapshot.workflow_yaml_bytes = Some(yaml.len() as u64);
    }
    store.runs().create(&mut snapshot).await.unwrap();
}

async fn run_of(store: &Store, run_id: &str) -> Value {
    store.runs().get_json(run_id).await.unwrap().unwrap().value
}

async fn wait_status(store: &Store, run_id: &str, status: &str) -> Value {
    wait_for(
        &format!("{run_id} to be {status}"),
        Duration::from_secs(30),
        || async {
            let run = run_of(store, run_id).await;
            (run["status"] == status).then_some(run)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_queued_again_and_run_once_or_failed_with_a_reason() {
    let server = NatsServer::start();
    let config = config(&server);
    let gateway = GatewayHandle::start(config.clone()).await;
    let store = gateway.state.store().unwrap().clone();

    // A named run and a YAML run whose YAML was stashed, as a submit does before its writes.
    store
        .stash_workflow(&sha256_hex(YAML.as_bytes()), YAML)
        .await
        .unwrap();
    orphan(&store, "orphan-named", "named", "default", None).await;
    orphan(&store, "orphan-yaml", "from-yaml", "default", Some(YAML)).await;
    // A YAML run whose YAML is nowhere (written by something that does not stash).
    let lost = "flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo'}}\n";
    orphan(&store, "orphan-lost", "lost", "default", Some(lost)).await;

    // The sweep publishes their jobs and records it (no worker yet: nothing claims them
    // before the record is written; with one, a claim may come first and the record is
    // skipped, which changes nothing else).
    for id in ["orphan-named", "orphan-yaml"] {
        wait_for(
            &format!("{id} queued again"),
            Duration::from_secs(20),
            || async {
                let run = run_of(&store, id).await;
                (run["requeue_count"] == 1 && run["status"] == "PENDING").then_some(())
            },
        )
        .await;
    }
    let (registry, hits) = counting();
    let worker = WorkerHandle::start(config.clone(), registry, "w1", &["default"]).await;
    for id in ["orphan-named", "orphan-yaml"] {
        let run = wait_status(&store, id, "COMPLETED").await;
        assert!(run["requeued_at"].as_f64().is_some(), "{run}");
        assert_eq!(run["params"], json!({"n": 1}));
    }
    let failed = wait_status(&store, "orphan-lost", "FAILED").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("orphaned run") && error.contains("not stored"),
        "{error}"
    );
    assert_eq!(hits.lock().unwrap().get("orphan-named"), Some(&1));
    assert_eq!(hits.lock().unwrap().get("orphan-yaml"), Some(&1));
    worker.stop().await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_never_duplicated_and_two_sweeping_gateways_publish_once() {
    let server = NatsServer::start();
    let config = config(&server);
    // Two gateways sweep the same bucket; no worker serves tag "later" yet.
    let a = GatewayHandle::start(config.clone()).await;
    let b = GatewayHandle::start(config.clone()).await;
    let store = a.state.store().unwrap().clone();
    let queued = a
        .state
        .store()
        .unwrap()
        .submit(pyoco::store::NewRun {
            flow_name: "named".into(),
            tag: Some("later".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    orphan(&store, "orphan-later", "named", "later", None).await;
    // Both runs are past the orphan age: each sweep looks at both.
    wait_for(
        "the orphan queued again",
        Duration::from_secs(20),
        || async {
            let run = run_of(&store, "orphan-later").await;
            (run["requeue_count"] == 1).then_some(())
        },
    )
    .await;
    // More sweeps of both gateways, directly, on top of their own loops.
    let (mut sweep_a, mut sweep_b) = (Sweeper::default(), Sweeper::default());
    for _ in 0..3 {
        sweep_a.sweep(&a.state, Duration::from_secs(1)).await;
        sweep_b.sweep(&b.state, Duration::from_secs(1)).await;
        // A sweeper that forgot everything (a restarted gateway) does no harm either.
        Sweeper::default()
            .sweep(&b.state, Duration::from_secs(1))
            .await;
    }
    // The stream holds exactly the two jobs: the queued one was re-published within the
    // duplicate window (deduplicated), the orphan once.
    let mut work = store
        .jetstream()
        .get_stream(&config.work_stream)
        .await
        .unwrap();
    assert_eq!(work.info().await.unwrap().state.messages, 2);
    let orphaned = run_of(&store, "orphan-later").await;
    assert_eq!(orphaned["requeue_count"], 1, "{orphaned}");
    let was_queued = run_of(&store, &queued).await;
    assert!(
        was_queued.get("requeue_count").is_none(),
        "a queued run is not an orphan: {was_queued}"
    );

    let (registry, hits) = counting();
    let worker = WorkerHandle::start(config.clone(), registry, "w2", &["later"]).await;
    for id in [queued.as_str(), "orphan-later"] {
        wait_status(&store, id, "COMPLETED").await;
    }
    assert_eq!(hits.lock().unwrap().get(queued.as_str()), Some(&1));
    assert_eq!(hits.lock().unwrap().get("orphan-later"), Some(&1));
    worker.stop().await;
    a.stop().await;
    b.stop().await;
}

/// A PENDING snapshot last written `age` ago, with `requeues` earlier re-publishes.
async fn old_orphan(store: &Store, run_id: &str, tag: &str, age: f64, requeues: u64) {
    let mut snapshot = RunSnapshot::pending(run_id, "named", tag, vec![tag.into()], Map::new());
    snapshot.updated_at = Some(pyoco::model::now() - age);
    if requeues > 0 {
        snapshot
            .extra
            .insert("requeue_count".into(), json!(requeues));
    }
    store.runs().create(&mut snapshot).await.unwrap();
}

async fn queued_on(store: &Store, config: &Config, tag: &str) -> u64 {
    let work = store
        .jetstream()
        .get_stream(&config.work_stream)
        .await
        .unwrap();
    let info = work
        .info_with_subjects(format!("pyoco.work.{tag}"))
        .await
        .unwrap();
    use futures::TryStreamExt;
    let subjects: HashMap<String, usize> = info.try_collect().await.unwrap();
    subjects.values().sum::<usize>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_duplicate_window_only_a_tag_with_nothing_queued_is_requeued() {
    let server = NatsServer::start();
    let mut config = config(&server);
    // The background sweep off: this test sweeps by hand.
    config.orphan_after = Duration::ZERO;
    let gateway = GatewayHandle::start(config.clone()).await;
    let store = gateway.state.store().unwrap().clone();
    // t1: nothing queued → its orphan is queued again.
    old_orphan(&store, "old-orphan", "t1", 300.0, 0).await;
    // t2: a real job queued (no worker) → an old PENDING run there may be that job's: left.
    store
        .submit(pyoco::store::NewRun {
            flow_name: "named".into(),
            tag: Some("t2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    old_orphan(&store, "old-busy", "t2", 300.0, 0).await;
    // t3: queued three times already and still PENDING → failed with a reason.
    old_orphan(&store, "old-looping", "t3", 300.0, 3).await;

    let mut sweeper = Sweeper::default();
    wait_for(
        "the index to list the runs",
        Duration::from_secs(10),
        || async { (gateway.state.run_index().await.ok()?.len() == 4).then_some(()) },
    )
    .await;
    let swept = sweeper.sweep(&gateway.state, Duration::from_secs(30)).await;
    assert_eq!((swept.published, swept.failed), (1, 1), "{swept:?}");

    let requeued = run_of(&store, "old-orphan").await;
    assert_eq!(requeued["requeue_count"], 1, "{requeued}");
    assert_eq!(queued_on(&store, &config, "t1").await, 1);
    let left = run_of(&store, "old-busy").await;
    assert!(left.get("requeue_count").is_none(), "{left}");
    assert_eq!(queued_on(&store, &config, "t2").await, 1);
    let failed = run_of(&store, "old-looping").await;
    assert_eq!(failed["status"], "FAILED");
    assert!(
        failed["error"].as_str().unwrap().contains("queued 3 times"),
        "{failed}"
    );
    // Sweeping again changes nothing: the requeued run is young again, the rest decided.
    let again = sweeper.sweep(&gateway.state, Duration::from_secs(30)).await;
    assert_eq!((again.published, again.failed), (0, 0));
    assert_eq!(queued_on(&store, &config, "t1").await, 1);
    gateway.stop().await;
}
