//! A worker processing several jobs at once (`Worker::set_concurrency`) against a real
//! nats-server: the runs overlap, each completes as it would one at a time, and a cancel
//! still reaches exactly the run it is for.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::{Duration, Instant};

use pyoco::store::Change;
use pyoco::testkit::{NatsServer, WorkerHandle, wait_for};
use pyoco::{NatsClient, Registry, RunStatus, TaskState, Worker};

const SLEEPY: &[u8] = b"flow: {graph: 'a >> b'}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 0.5}}, b: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";
const LONG: &[u8] =
    b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:sleep', inputs: {seconds: 30}}}\n";

/// A worker `wc` on tag `default` running `jobs` at once, tuned further by `tune`.
async fn start_worker(
    config: &pyoco::config::Config,
    jobs: usize,
    tune: impl FnOnce(&mut Worker),
) -> WorkerHandle {
    WorkerHandle::start_tuned(
        config.clone(),
        Registry::with_builtins(),
        "wc",
        &["default"],
        |w| {
            w.set_concurrency(jobs);
            w.set_poll_timeout(Duration::from_millis(200));
            tune(w);
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_concurrency_overlaps_runs_and_cancels_only_the_one_asked() {
    let server = NatsServer::start();
    let config = server.config();
    let worker = start_worker(&config, 8, |_| {}).await;
    let client = NatsClient::connect(config).await.unwrap();

    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(client.submit_yaml(SLEEPY, "sleepy", None).await.unwrap());
    }
    for id in &ids {
        let run = client
            .wait_for_terminal(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(run.tasks["b"], TaskState::Succeeded);
        assert_eq!(run.worker_id.as_deref(), Some("wc"));
    }
    // One at a time these take 8 × 0.5 s; overlapped, about one.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the runs did not overlap: {:?}",
        started.elapsed()
    );

    let victim = client.submit_yaml(LONG, "long", None).await.unwrap();
    let other = client.submit_yaml(SLEEPY, "sleepy", None).await.unwrap();
    wait_for("the long run to start", Duration::from_secs(20), || async {
        let run = client.get_run(&victim).await.ok()??;
        (run.tasks.get("a") == Some(&TaskState::Running)).then_some(())
    })
    .await;
    // A cancel as any writer makes it: compare-and-set on the stored snapshot.
    client
        .store()
        .runs()
        .update(&victim, |doc| {
            doc.cancel_requested_at = Some(pyoco::model::now());
            Change::Write
        })
        .await
        .unwrap();
    let cancelled = client
        .wait_for_terminal(&victim, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let completed = client
        .wait_for_terminal(&other, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(completed.status, RunStatus::Completed);

    worker.finish().await.unwrap();
}

/// Pulls wait to gather free slots (half the concurrency) only briefly: a single slot free
/// next to long-running jobs still takes the next job at once, not when a long one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_free_slot_next_to_long_runs_still_takes_work() {
    let server = NatsServer::start();
    let config = server.config();
    // The long runs are handed back at once on stop.
    let worker = start_worker(&config, 4, |w| w.set_shutdown_grace(Duration::ZERO)).await;
    let client = NatsClient::connect(config).await.unwrap();
    let mut long = Vec::new();
    for _ in 0..3 {
        long.push(client.submit_yaml(LONG, "long", None).await.unwrap());
    }
    for id in &long {
        wait_for("a long run to start", Duration::from_secs(20), || async {
            let run = client.get_run(id).await.ok()??;
            (run.tasks.get("a") == Some(&TaskState::Running)).then_some(())
        })
        .await;
    }
    let short = client.submit_yaml(SLEEPY, "sleepy", None).await.unwrap();
    let done = client
        .wait_for_terminal(&short, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    for id in &long {
        let run = client.get_run(id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Running, "{id} still runs");
    }
    worker.finish().await.unwrap();
}
