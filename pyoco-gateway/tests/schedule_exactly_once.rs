//! Exactly once, no leader: three gateway processes on one nats-server dispatch an
//! every-second schedule for 30 s while one is SIGKILLed and another SIGSTOPped for 5 s
//! (a stall far past the slot-claim lease). Afterwards every slot from the first to the
//! schedule's `next_run_at` has exactly one run and exactly one job on the work stream — none
//! missing, none doubled. No worker runs, so every job stays on the stream to be counted.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pyoco::client::http::NewSchedule;
use pyoco::model::now;
use pyoco::model::schedule::slot_run_id;
use pyoco::testkit::{NatsServer, Spawned, free_port, wait_for};
use pyoco::{HttpClient, Store};

const YAML: &[u8] = b"flow: {graph: a}\ntasks: {a: {callable: 'pyoco:echo', inputs: {value: 1}}}\n";

fn gateway(nats_url: &str) -> (Spawned, HttpClient) {
    let port = free_port();
    let child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
            .args(["up", "--port", &port.to_string(), "--nats-url", nats_url])
            .env("PYOCO_LOAD_DOTENV", "0")
            .env("PYOCO_SCHEDULE_POLL_INTERVAL_SEC", "0.2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = HttpClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    (child, client)
}

fn signal(child: &Spawned, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_fire_each_slot_exactly_once_through_a_kill_and_a_stall() {
    let server = NatsServer::start();
    let mut gateways: Vec<(Spawned, HttpClient)> = (0..3).map(|_| gateway(&server.url())).collect();
    for (_, client) in &gateways {
        wait_for("a gateway to serve", Duration::from_secs(30), || async {
            client.list_schedules().await.ok().map(|_| ())
        })
        .await;
    }
    let start = (now() + 2.0).ceil();
    let start_at = jiff::Timestamp::from_second(start as i64)
        .unwrap()
        .to_string();
    let created = gateways[0]
        .1
        .create_yaml_schedule(
            YAML,
            "tick",
            None,
            &NewSchedule {
                interval_seconds: Some(1.0),
                start_at: Some(start_at),
                misfire: Some("run_once".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = created["schedule_id"].as_str().unwrap().to_string();
    assert_eq!(created["next_run_at"], start);

    // The scenario is a timeline, so it sleeps: 8 s with three gateways, kill one, 4 s, stall
    // another for 5 s, then 13 s more with the survivors.
    tokio::time::sleep(Duration::from_secs(8)).await;
    gateways[1].0.kill().unwrap();
    gateways[1].0.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(&gateways[2].0, "-STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&gateways[2].0, "-CONT");
    tokio::time::sleep(Duration::from_secs(13)).await;
    // Stop every dispatcher before counting.
    for (child, _) in &mut gateways {
        child.kill().ok();
        child.wait().ok();
    }

    let config = pyoco::Config {
        nats_url: server.url(),
        ..Default::default()
    };
    let store = Box::pin(Store::connect(Arc::new(config), "exactly-once-check"))
        .await
        .unwrap();
    let record = store.schedules().get(&id).await.unwrap().unwrap().value;
    let end = record.next_run_at.unwrap();
    let slots: Vec<f64> = (0..)
        .map(|k| start + f64::from(k))
        .take_while(|s| *s < end)
        .collect();
    assert!(
        slots.len() >= 25,
        "only {} slots fired in 30 s: the dispatchers fell behind",
        slots.len()
    );
    assert_eq!(record.dispatch_count, slots.len() as u64);
    assert_eq!(record.missed_slots, 0);

    // One run per slot, named after it, and no other run of the schedule.
    let expected: BTreeMap<String, f64> =
        slots.iter().map(|s| (slot_run_id(&id, *s), *s)).collect();
    for (run_id, slot) in &expected {
        let run = store.runs().get(run_id).await.unwrap();
        assert!(run.is_some(), "slot {slot} has no run");
    }
    let js = store.jetstream();
    let mut stream = js.get_stream("PYOCO_WORK").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let mut jobs: BTreeMap<String, u32> = BTreeMap::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        let job: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(job["schedule_id"], id.as_str());
        *jobs
            .entry(job["run_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let doubled: Vec<_> = jobs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "slots fired twice: {doubled:?}");
    // The kill at the end may have caught a gateway between publishing slot `end` and
    // advancing the record past it: that job is allowed (a restarted gateway would finish the
    // slot under the same run id), nothing else is.
    jobs.remove(&slot_run_id(&id, end));
    let fired: Vec<&String> = jobs.keys().collect();
    let wanted: Vec<&String> = expected.keys().collect();
    assert_eq!(fired, wanted, "jobs on the stream are not one per slot");
}
