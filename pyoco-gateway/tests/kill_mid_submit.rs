//! A gateway SIGKILLed during a burst of submits strands nothing: whatever it had written is
//! either never listed (no snapshot) or, through another gateway's orphan sweep, run to its
//! end exactly once; every submit the client saw accepted ends COMPLETED.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyoco::testkit::{
    GatewayHandle, NatsServer, Spawned, WorkerHandle, fast_config, free_port, wait_for,
};
use pyoco::{HttpClient, Registry};

const YAML: &str = "flow: {graph: a}\ntasks: {a: {callable: 'count:hit'}}\n";
const TRIALS: usize = 3;

/// Starts `pyoco-gateway up` on its own (no NATS, no worker of its own) against `nats_url`.
fn gateway_process(nats_url: &str, port: u16) -> Spawned {
    Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
            .args(["up", "--port", &port.to_string()])
            .env("PYOCO_NATS_URL", nats_url)
            .env("PYOCO_LOAD_DOTENV", "0")
            .env("PYOCO_ORPHAN_AFTER_SEC", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Submits from 32 clients until told to stop; returns the run ids they saw accepted.
async fn burst(url: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..32 {
        let client = HttpClient::new(&url).unwrap();
        let stop = stop.clone();
        clients.spawn(async move {
            let mut accepted = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Distinct YAMLs too, so stash writes race the kill as well.
                let yaml = format!("{YAML}# client {i} submit {n}\n");
                match client.submit_yaml(yaml.as_bytes(), "burst", None).await {
                    Ok(answer) => accepted.push(answer["run_id"].as_str().unwrap().to_string()),
                    Err(_) => break,
                }
            }
            accepted
        });
    }
    let mut all = Vec::new();
    while let Some(ids) = clients.join_next().await {
        all.extend(ids.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_burst_strands_no_run_and_runs_none_twice() {
    let server = NatsServer::start();
    let mut accepted: Vec<String> = Vec::new();
    for trial in 0..TRIALS {
        let port = free_port();
        let mut child = gateway_process(&server.url(), port);
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/health");
        wait_for(
            "the gateway to be ready",
            Duration::from_secs(20),
            || async {
                let r = reqwest::get(&health).await.ok()?;
                (r.status() == 200).then_some(())
            },
        )
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        let submitting = tokio::spawn(burst(url, stop.clone()));
        // Kill at a different point of the burst each trial.
        tokio::time::sleep(Duration::from_millis(300 + 200 * trial as u64)).await;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let ids = submitting.await.unwrap();
        eprintln!(
            "trial {trial}: {} submits accepted before the kill",
            ids.len()
        );
        accepted.extend(ids);
    }
    assert!(
        !accepted.is_empty(),
        "no submit was accepted: the test proved nothing"
    );

    // A surviving gateway sweeps; a worker runs whatever is queued.
    let mut config = fast_config(&server);
    config.orphan_after = Duration::from_secs(1);
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut registry = Registry::with_builtins();
    let seen = hits.clone();
    registry.register("count:hit", &[], move |call| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap().entry(call.run_id.clone()).or_default() += 1;
            Ok(serde_json::json!("hit"))
        }
    });
    let gateway = GatewayHandle::start(config.clone()).await;
    let worker = WorkerHandle::start(config.clone(), registry, "w-kill", &["default"]).await;
    let store = gateway.state.store().unwrap().clone();
    let runs = wait_for(
        "every stored run to end",
        Duration::from_secs(90),
        || async {
            let mut runs = Vec::new();
            for id in store.runs().keys().await.ok()? {
                let run = store.runs().get_json(&id).await.ok()??.value;
                if run["status"] != "COMPLETED" {
                    return None;
                }
                runs.push(run);
            }
            Some(runs)
        },
    )
    .await;
    let stored: HashSet<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    for id in &accepted {
        assert!(stored.contains(id.as_str()), "accepted run {id} is missing");
    }
    let requeued = runs.iter().filter(|r| r["requeue_count"] == 1).count();
    eprintln!(
        "{} runs stored ({} accepted), {requeued} were orphans queued again by the sweep",
        runs.len(),
        accepted.len()
    );
    // Each stored run ran exactly once (the worker saw it once).
    let hits = hits.lock().unwrap().clone();
    for id in &stored {
        assert_eq!(
            hits.get(*id),
            Some(&1),
            "run {id} ran {:?} times",
            hits.get(*id)
        );
    }
    worker.stop().await;
    gateway.stop().await;
}
