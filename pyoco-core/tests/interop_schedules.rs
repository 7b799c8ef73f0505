//! Schedules shared with the original pyoco-server 0.7.0 on one nats-server: a schedule made
//! through the Python gateway is fired by ours (and the Python gateway reads what ours wrote),
//! and one made through ours is fired by the Python gateway, which leaves our cron and paused
//! schedules alone.
//!
//! PyPI has only pyoco-server 0.5.1, which has no schedules; 0.7.0 is installed from its
//! source by `scripts/install-interop07.sh` (GitHub, or a checkout named by
//! `PYOCO_SERVER_07_SRC`). That needs network access the rest of the suite does not, so these
//! tests are ignored by default: `cargo nextest run -p pyoco-core --test interop_schedules
//! --run-ignored all`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pyoco::client::http::NewSchedule;
use pyoco::model::now;
use pyoco::model::schedule::{PYOCO_ONLY_LEASE, slot_run_id};
use pyoco::testkit::{Spawned, Stack, free_port, wait_for, wait_terminal};
use pyoco::{Config, HttpClient, Store};
use serde_json::{Value, json};

const YAML: &[u8] =
    b"flow:\n  graph: a\n  defaults: {value: 7}\ntasks: {a: {callable: 'pyoco:echo'}}\n";

fn fast_schedules(c: &mut Config) {
    c.schedule_poll_interval = Duration::from_millis(200);
}

/// Starts the Python 0.7.0 gateway on `nats_url`, dispatching every `poll` seconds.
async fn python_gateway(nats_url: &str, poll: &str) -> (Spawned, HttpClient) {
    let venv = pyoco::testkit::python_tool("install-interop07.sh");
    let port = free_port();
    let child = Spawned(
        Command::new(venv.join("bin/pyoco-server"))
            .args(["up", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--nats-url", nats_url])
            .env("PYOCO_NATS_URL", nats_url)
            .env("PYOCO_SCHEDULE_POLL_INTERVAL_SEC", poll)
            .env("PYOCO_LOAD_DOTENV", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = HttpClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    wait_for("the Python gateway", Duration::from_secs(30), || async {
        client.list_schedules().await.ok().map(|_| ())
    })
    .await;
    (child, client)
}

async fn store_of(config: &Config) -> Store {
    Box::pin(Store::connect(
        Arc::new(config.clone()),
        "interop-schedules",
    ))
    .await
    .unwrap()
}

fn iso(t: f64) -> String {
    jiff::Timestamp::from_microsecond((t * 1e6) as i64)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pyoco-server 0.7.0 source (scripts/install-interop07.sh)"]
async fn schedules_made_by_the_python_gateway_are_fired_by_ours() {
    let stack = Stack::start_with(fast_schedules).await;
    // Its dispatcher runs once at start-up (nothing is due then), then sleeps an hour.
    let (_python, py) = python_gateway(&stack.config.nats_url, "3600").await;
    let run_at = now() + 2.0;
    let once = py
        .create_yaml_schedule(
            YAML,
            "py-once",
            Some("default"),
            &NewSchedule {
                run_at: Some(iso(run_at)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let every = py
        .create_yaml_schedule(
            YAML,
            "py-every",
            Some("default"),
            &NewSchedule {
                interval_seconds: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The original's answer: exactly its 19 keys.
    assert_eq!(once.as_object().unwrap().len(), 19, "{once}");
    let once_id = once["schedule_id"].as_str().unwrap().to_string();
    let every_id = every["schedule_id"].as_str().unwrap().to_string();

    // Ours fires both; the Python gateway reads the records ours advanced.
    let done = wait_for(
        "the once-schedule to complete",
        Duration::from_secs(30),
        || {
            let (py, id) = (py.clone(), once_id.clone());
            async move {
                let all = py.list_schedules().await.ok()?;
                let s = all.into_iter().find(|s| s["schedule_id"] == id.as_str())?;
                (s["status"] == "COMPLETED").then_some(s)
            }
        },
    )
    .await;
    assert_eq!(done["dispatch_count"], 1);
    let run_id = slot_run_id(&once_id, once["run_at"].as_f64().unwrap());
    assert_eq!(done["last_run_id"], run_id.as_str());
    let run = wait_terminal(&stack.client, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["schedule_id"], once_id.as_str());
    assert_eq!(run["params"], json!({"value": 7}));

    let runs = wait_for(
        "two runs listed by the Python gateway",
        Duration::from_secs(30),
        || {
            let (py, id) = (py.clone(), every_id.clone());
            async move {
                let runs = py.list_schedule_runs(&id, false, None).await.ok()?;
                (runs.len() >= 2).then_some(runs)
            }
        },
    )
    .await;
    assert!(runs.iter().all(|r| r["schedule_id"] == every_id.as_str()));
    assert_eq!(
        py.delete_schedule(&every_id).await.unwrap(),
        json!({"schedule_id": every_id, "deleted": true})
    );
    let ours = stack.client.list_schedules().await.unwrap();
    assert_eq!(ours.len(), 1, "{ours:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pyoco-server 0.7.0 source (scripts/install-interop07.sh)"]
async fn schedules_made_by_ours_are_fired_by_the_python_gateway_except_cron_and_paused() {
    let Stack {
        gateway,
        worker,
        client,
        config,
        server,
    } = Stack::start_with(fast_schedules).await;
    let every = client
        .create_yaml_schedule(
            YAML,
            "ours-every",
            None,
            &NewSchedule {
                interval_seconds: Some(1.0),
                misfire: Some("skip".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let cron = client
        .create_yaml_schedule(
            YAML,
            "ours-cron",
            None,
            &NewSchedule {
                cron: Some("* * * * * *".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let paused = client
        .create_yaml_schedule(
            YAML,
            "ours-paused",
            None,
            &NewSchedule {
                interval_seconds: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let every_id = every["schedule_id"].as_str().unwrap().to_string();
    let cron_id = cron["schedule_id"].as_str().unwrap().to_string();
    let paused_id = paused["schedule_id"].as_str().unwrap().to_string();
    client.set_schedule_paused(&paused_id, true).await.unwrap();
    // Only the Python gateway dispatches from here on.
    gateway.stop().await;
    let store = store_of(&config).await;
    let cron_before = store
        .schedules()
        .get(&cron_id)
        .await
        .unwrap()
        .unwrap()
        .value;
    let (_python, py) = python_gateway(&config.nats_url, "0.2").await;

    let fired = wait_for(
        "the Python gateway to fire ours twice",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            let id = every_id.clone();
            async move {
                let s = store.schedules().get(&id).await.ok()??.value;
                (s.dispatch_count >= 2).then_some(s)
            }
        },
    )
    .await;
    // Our fields survive the original's rewrite; its run is ours to run.
    assert_eq!(fired.misfire.as_deref(), Some("skip"));
    assert_eq!(fired.lease_until, None);
    let run_id = fired.last_run_id.clone().unwrap();
    // Our gateway is gone: read the run through the Python one.
    let run = wait_terminal(&py, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["schedule_id"], every_id.as_str());
    let listed: Vec<Value> = py.list_schedules().await.unwrap();
    assert_eq!(listed.len(), 3);

    // Several of its polls later, the cron and the paused schedule are untouched.
    wait_for("more Python dispatches", Duration::from_secs(30), || {
        let store = store.clone();
        let id = every_id.clone();
        let seen = fired.dispatch_count;
        async move {
            let s = store.schedules().get(&id).await.ok()??.value;
            (s.dispatch_count >= seen + 3).then_some(())
        }
    })
    .await;
    let cron_after = store
        .schedules()
        .get(&cron_id)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(cron_after, cron_before);
    assert_eq!(cron_after.lease_until, Some(PYOCO_ONLY_LEASE));
    let paused_after = store
        .schedules()
        .get(&paused_id)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(paused_after.status, "PAUSED");
    assert_eq!(paused_after.dispatch_count, 0);
    if let Some(worker) = worker {
        worker.stop().await;
    }
    drop(server);
}
