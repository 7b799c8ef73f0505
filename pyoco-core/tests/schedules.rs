//! Schedules end to end against a real nats-server: the original 0.7 routes with their
//! validation messages, interval / once / cron schedules fired by the gateway's dispatcher and
//! run by a worker, pause and resume, misfire policies, records written by the original, and
//! tenant scoping. (Exactly once across several gateway processes: pyoco-gateway's
//! `tests/schedule_exactly_once.rs`.)
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;
use std::time::Duration;

use pyoco::client::http::{HttpError, NewSchedule};
use pyoco::model::now;
use pyoco::model::schedule::{Schedule, slot_run_id};
use pyoco::testkit::{Stack, multipart, wait_for};
use pyoco::{Config, Store};
use serde_json::{Value, json};

const YAML: &[u8] =
    b"flow:\n  graph: a\n  defaults: {value: 7}\ntasks: {a: {callable: 'pyoco:echo'}}\n";

fn fast_schedules(c: &mut Config) {
    c.schedule_poll_interval = Duration::from_millis(200);
}

async fn store_of(stack: &Stack) -> Store {
    // Boxed: connecting inlines every bucket's future, too big for a test thread's stack in
    // a debug build next to the rest of a test.
    Box::pin(Store::connect(
        Arc::new(stack.config.clone()),
        "schedules-test",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_schedule_fires_runs_that_complete_then_delete_stops_it() {
    let stack = Stack::start_with(fast_schedules).await;
    let client = &stack.client;
    let every = NewSchedule {
        interval_seconds: Some(1.0),
        ..Default::default()
    };
    let created = client
        .create_yaml_schedule(YAML, "ticker", None, &every)
        .await
        .unwrap();
    assert_eq!(created.as_object().unwrap().len(), 23, "{created}");
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["schedule_type"], "interval");
    assert_eq!(created["interval_seconds"], 1.0);
    assert_eq!(created["tag"], "default");
    assert_eq!(created["dispatch_count"], 0);
    assert_eq!(created["misfire"], "run_once");
    assert!(created.get("workflow_yaml").is_none());
    let id = created["schedule_id"].as_str().unwrap().to_string();
    let start_at = created["start_at"].as_f64().unwrap();

    // Two completed runs, each named after its slot.
    let runs = wait_for(
        "two completed scheduled runs",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let id = id.clone();
            async move {
                let runs = client.list_schedule_runs(&id, false, None).await.ok()?;
                let done = runs.iter().filter(|r| r["status"] == "COMPLETED").count();
                (done >= 2).then_some(runs)
            }
        },
    )
    .await;
    for run in &runs {
        assert_eq!(run["schedule_id"], id.as_str());
        assert_eq!(run["flow_name"], "ticker");
    }
    let first = stack.wait_terminal(&slot_run_id(&id, start_at)).await;
    assert_eq!(first["status"], "COMPLETED");
    assert_eq!(first["params"], json!({"value": 7}));
    assert_eq!(first["task_records"]["a"]["output"], 7);

    let listed = client.list_schedules().await.unwrap();
    let mine = listed
        .iter()
        .find(|s| s["schedule_id"] == id.as_str())
        .unwrap();
    assert!(mine["dispatch_count"].as_u64().unwrap() >= 2);
    assert!(mine["last_run_id"].is_string());
    assert!(mine["next_run_at"].as_f64().unwrap() > start_at);

    assert_eq!(
        client.delete_schedule(&id).await.unwrap(),
        json!({"schedule_id": id, "deleted": true})
    );
    let (status, detail, code) = status_of(client.delete_schedule(&id).await.unwrap_err());
    assert_eq!(
        (status, detail, code.as_deref()),
        (404, json!("schedule not found"), Some("schedule_not_found"))
    );
    let (status, ..) = status_of(
        client
            .list_schedule_runs(&id, false, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_schedule_runs_once_and_completes() {
    let stack = Stack::start_with(fast_schedules).await;
    let client = &stack.client;
    let at = now() + 1.0;
    let run_at = jiff::Timestamp::from_microsecond((at * 1e6) as i64)
        .unwrap()
        .to_string();
    let created = client
        .create_yaml_schedule(
            YAML,
            "once",
            Some("default"),
            &NewSchedule {
                run_at: Some(run_at),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = created["schedule_id"].as_str().unwrap().to_string();
    assert_eq!(created["schedule_type"], "once");
    assert_eq!(created["run_at"], created["next_run_at"]);
    assert_eq!(created["start_at"], Value::Null);
    let done = wait_for(
        "the once-schedule to complete",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let id = id.clone();
            async move {
                let all = client.list_schedules().await.ok()?;
                let s = all.into_iter().find(|s| s["schedule_id"] == id.as_str())?;
                (s["status"] == "COMPLETED").then_some(s)
            }
        },
    )
    .await;
    assert_eq!(done["dispatch_count"], 1);
    assert_eq!(done["next_run_at"], Value::Null);
    let run_id = done["last_run_id"].as_str().unwrap();
    assert_eq!(
        run_id,
        slot_run_id(&id, created["run_at"].as_f64().unwrap())
    );
    assert_eq!(stack.wait_terminal(run_id).await["status"], "COMPLETED");
    let (status, detail, _) = status_of(client.set_schedule_paused(&id, true).await.unwrap_err());
    assert_eq!((status, detail), (409, json!("schedule is completed")));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_schedule_pauses_and_resumes() {
    let stack = Stack::builder()
        .no_worker()
        .config(fast_schedules)
        .start()
        .await;
    let client = &stack.client;
    let created = client
        .create_yaml_schedule(
            YAML,
            "cron",
            None,
            &NewSchedule {
                cron: Some("* * * * * *".into()),
                timezone: Some("Asia/Tokyo".into()),
                misfire: Some("skip".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created["schedule_type"], "cron");
    assert_eq!(created["cron"], "* * * * * *");
    assert_eq!(created["timezone"], "Asia/Tokyo");
    assert_eq!(created["misfire"], "skip");
    let id = created["schedule_id"].as_str().unwrap().to_string();
    let count = |client: pyoco::HttpClient, id: String| async move {
        client
            .list_schedule_runs(&id, false, Some(200))
            .await
            .unwrap()
            .len()
    };
    wait_for("a cron run", Duration::from_secs(20), || {
        let (c, id) = (client.clone(), id.clone());
        async move { (count(c, id).await >= 1).then_some(()) }
    })
    .await;

    let paused = client.set_schedule_paused(&id, true).await.unwrap();
    assert_eq!(paused["status"], "PAUSED");
    assert_eq!(paused["next_run_at"], Value::Null);
    // Nothing fires while paused: wait past several slots (an absence has no event to wait on).
    let before = count(client.clone(), id.clone()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = count(client.clone(), id.clone()).await;
    assert!(
        after <= before + 1,
        "fired while paused: {before} -> {after}"
    );
    let listed = client.list_schedules().await.unwrap();
    assert_eq!(listed[0]["status"], "PAUSED");

    let resumed = client.set_schedule_paused(&id, false).await.unwrap();
    assert_eq!(resumed["status"], "ACTIVE");
    // Slots passed while paused are not misfires.
    assert!(resumed["next_run_at"].as_f64().unwrap() > now() - 1.0);
    assert_eq!(resumed["missed_slots"], 0);
    wait_for("runs after resume", Duration::from_secs(20), || {
        let (c, id) = (client.clone(), id.clone());
        async move { (count(c, id).await >= after + 2).then_some(()) }
    })
    .await;

    let (status, detail, code) = status_of(
        client
            .set_schedule_paused("no-such-schedule", true)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, detail), (404, json!("schedule not found")));
    assert_eq!(code.as_deref(), Some("schedule_not_found"));
    // Invalid ids never reach NATS (and cannot exist).
    let (status, ..) = status_of(client.delete_schedule(&"x".repeat(300)).await.unwrap_err());
    assert_eq!(status, 404);
    stack.stop().await;
}

/// One multipart part: name, file name (a file part when given), data.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// `POST /schedules/yaml` of `parts`.
async fn post(stack: &Stack, parts: &[Part<'_>]) -> (u16, Value) {
    let (content_type, body) = multipart(parts);
    let resp = reqwest::Client::new()
        .post(format!("{}/schedules/yaml", stack.gateway.url()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_checks_and_messages_follow_the_original() {
    let stack = Stack::builder()
        .no_worker()
        .config(|c| c.workflow_yaml_max_bytes = 1024)
        .start()
        .await;
    let wf: Part = ("workflow", Some("flow.yaml"), YAML);
    let name: Part = ("flow_name", None, b"main");
    let every: Part = ("interval_seconds", None, b"5");

    let (status, body) = post(&stack, &[("interval_seconds", None, b"soon")]).await;
    assert_eq!(status, 422);
    let kinds: Vec<_> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["type"].as_str().unwrap(), p["loc"][1].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("missing", "workflow"),
            ("missing", "flow_name"),
            ("float_parsing", "interval_seconds")
        ]
    );

    let big = vec![b'#'; 2000];
    let cases: Vec<(Vec<Part>, u16, &str, &str)> = vec![
        (
            vec![wf, name, every, ("tag", None, b"a.b")],
            422,
            "invalid tag",
            "invalid_tag",
        ),
        (
            vec![("workflow", Some("flow.yaml"), &big), name, every],
            413,
            "workflow too large",
            "workflow_too_large",
        ),
        (
            vec![("workflow", Some("flow.yaml"), b"- a list"), name, every],
            422,
            "invalid workflow yaml",
            "invalid_workflow_yaml",
        ),
        (
            vec![wf, ("flow_name", None, b"  "), every],
            422,
            "missing flow_name",
            "missing_flow_name",
        ),
        (
            vec![wf, name],
            422,
            "specify either run_at or interval_seconds",
            "invalid_schedule",
        ),
        (
            vec![wf, name, every, ("run_at", None, b"2099-01-01T00:00:00Z")],
            422,
            "specify either run_at or interval_seconds",
            "invalid_schedule",
        ),
        (
            vec![
                wf,
                name,
                ("run_at", None, b"2099-01-01T00:00:00Z"),
                ("start_at", None, b"2099-01-01T00:00:00Z"),
            ],
            422,
            "start_at is only valid with interval_seconds",
            "invalid_schedule",
        ),
        (
            vec![wf, name, ("run_at", None, b"next week")],
            422,
            "run_at must be ISO 8601 datetime",
            "invalid_schedule",
        ),
        (
            vec![wf, name, ("run_at", None, b"2099-01-01T00:00:00")],
            422,
            "run_at must include timezone offset",
            "invalid_schedule",
        ),
        (
            vec![wf, name, ("run_at", None, b"2001-01-01T00:00:00+09:00")],
            422,
            "run_at must be in the future",
            "invalid_schedule",
        ),
        (
            vec![wf, name, ("interval_seconds", None, b"-1")],
            422,
            "interval_seconds must be positive",
            "invalid_schedule",
        ),
        (
            vec![wf, name, every, ("start_at", None, b"2026")],
            422,
            "start_at must be ISO 8601 datetime",
            "invalid_schedule",
        ),
        (
            vec![wf, name, ("cron", None, b"every day")],
            422,
            "invalid cron expression",
            "invalid_schedule",
        ),
        (
            vec![
                wf,
                name,
                ("cron", None, b"0 9 * * 1-5"),
                ("timezone", None, b"Nowhere/City"),
            ],
            422,
            "unknown timezone",
            "invalid_schedule",
        ),
        (
            vec![wf, name, every, ("misfire", None, b"sometimes")],
            422,
            "misfire must be skip or run_once",
            "invalid_schedule",
        ),
    ];
    for (parts, status, detail, code) in cases {
        let got = post(&stack, &parts).await;
        assert_eq!(got.0, status, "{got:?} for {detail}");
        assert_eq!(got.1["detail"], detail, "{got:?}");
        assert_eq!(got.1["code"], code, "{got:?}");
    }
    // A blank run_at counts as absent; a past start_at is allowed.
    let (status, body) = post(
        &stack,
        &[
            wf,
            name,
            every,
            ("run_at", None, b" "),
            ("start_at", None, b"2001-01-01T00:00:00Z"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["next_run_at"].as_f64().unwrap() > now());
    // Nothing rejected was stored.
    assert_eq!(stack.client.list_schedules().await.unwrap().len(), 1);
    stack.stop().await;
}

/// A record as the original writes it, due `late` seconds ago, with an optional policy.
fn original_record(id: &str, late: f64, misfire: Option<&str>) -> Value {
    let t = now();
    let mut v = json!({
        "schedule_id": id, "flow_name": "legacy", "tag": "default", "status": "ACTIVE",
        "schedule_type": "interval", "workflow_yaml": String::from_utf8_lossy(YAML),
        "workflow_yaml_sha256": "x", "workflow_yaml_bytes": YAML.len(), "params": {"value": 7},
        "tenant_id": null, "api_key_id": null, "created_at": t - 1000.0, "updated_at": t - 1000.0,
        "last_submitted_at": null, "last_run_id": null, "dispatch_count": 0, "last_error": null,
        "lease_until": null, "run_at": null, "next_run_at": t - late, "interval_seconds": 60.0,
        "start_at": t - late,
    });
    if let Some(m) = misfire {
        v["misfire"] = json!(m);
    }
    v
}

async fn put_record(store: &Store, record: &Value) {
    let s: Schedule = serde_json::from_value(record.clone()).unwrap();
    store.schedules().create(&s).await.unwrap();
}

async fn record_after_dispatch(store: &Store, id: &str) -> Schedule {
    wait_for(
        "the dispatcher to move the record on",
        Duration::from_secs(20),
        || {
            let store = store.clone();
            async move {
                let s = store.schedules().get(id).await.unwrap()?.value;
                (s.next_run_at? > now()).then_some(s)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_slots_follow_the_misfire_policy_and_original_records_fire() {
    let stack = Stack::start_with(fast_schedules).await;
    let store = store_of(&stack).await;
    // Written the way the original writes it (no pyoco fields): behaves as run_once.
    let legacy = original_record("legacy-1", 3600.0, None);
    put_record(&store, &legacy).await;
    // Slots every 60 s from 3630 s ago: 61 are missed, the next is 30 s ahead.
    let skip = original_record("skipper-1", 3630.0, Some("skip"));
    put_record(&store, &skip).await;

    let fired = record_after_dispatch(&store, "legacy-1").await;
    assert_eq!(fired.dispatch_count, 1);
    let slot = legacy["next_run_at"].as_f64().unwrap();
    let run_id = slot_run_id("legacy-1", slot);
    assert_eq!(fired.last_run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(fired.missed_slots, 0);
    assert_eq!(fired.lease_until, None);
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(run["schedule_id"], "legacy-1");
    assert_eq!(run["params"], json!({"value": 7}));

    let skipped = record_after_dispatch(&store, "skipper-1").await;
    assert_eq!(skipped.dispatch_count, 0);
    assert_eq!(skipped.last_run_id, None);
    assert_eq!(skipped.missed_slots, 61);
    let missing = stack
        .client
        .list_schedule_runs("skipper-1", false, None)
        .await
        .unwrap();
    assert!(missing.is_empty(), "{missing:?}");

    // A lease held by a Python gateway is respected.
    let mut leased = original_record("leased-1", 1.0, None);
    leased["lease_until"] = json!(now() + 3600.0);
    put_record(&store, &leased).await;
    let corrupt = Schedule {
        schedule_type: "weekly".into(),
        ..serde_json::from_value(original_record("bad-1", 1.0, None)).unwrap()
    };
    store.schedules().create(&corrupt).await.unwrap();
    let bad = wait_for("the error to be recorded", Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            let s = store.schedules().get("bad-1").await.unwrap()?.value;
            s.last_error.is_some().then_some(s)
        }
    })
    .await;
    assert_eq!(
        bad.last_error.as_deref(),
        Some("unknown schedule_type \"weekly\"")
    );
    let untouched = store
        .schedules()
        .get("leased-1")
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(untouched.dispatch_count, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_tenant_scoped_with_api_keys() {
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
    let mut clients = Vec::new();
    for tenant in ["acme", "beta"] {
        let key = ApiKey::generate().unwrap();
        let record = ApiKeyRecord::new(&key, tenant, "pep", false, 1.0).unwrap();
        store.api_keys().create(&record).await.unwrap();
        clients.push(
            stack
                .client
                .clone()
                .with_api_key("X-API-Key", &key.to_header_value()),
        );
    }
    let (acme, beta) = (&clients[0], &clients[1]);
    let every = NewSchedule {
        interval_seconds: Some(3600.0),
        ..Default::default()
    };
    let created = acme
        .create_yaml_schedule(YAML, "mine", None, &every)
        .await
        .unwrap();
    assert_eq!(created["tenant_id"], "acme");
    assert!(created["api_key_id"].is_string());
    let id = created["schedule_id"].as_str().unwrap();
    assert_eq!(acme.list_schedules().await.unwrap().len(), 1);
    assert!(beta.list_schedules().await.unwrap().is_empty());
    for result in [
        beta.list_schedule_runs(id, false, None)
            .await
            .map(|_| Value::Null),
        beta.set_schedule_paused(id, true).await,
        beta.delete_schedule(id).await,
    ] {
        assert_eq!(status_of(result.unwrap_err()).0, 404);
    }
    let (status, ..) = status_of(stack.client.list_schedules().await.unwrap_err());
    assert_eq!(status, 401);
    assert_eq!(acme.delete_schedule(id).await.unwrap()["deleted"], true);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_claims_are_won_once_held_while_fresh_and_taken_over_when_stale() {
    use pyoco::store::{Claim, SlotClaim};
    let stack = Stack::builder().no_worker().start().await;
    let store = store_of(&stack).await;
    let claims = store.schedules();
    let claim = |holder: &str, claimed_at: f64| SlotClaim {
        schedule_id: "s1".into(),
        slot: 1000.0,
        run_id: slot_run_id("s1", 1000.0),
        holder: holder.into(),
        claimed_at,
    };
    let t = 5000.0;
    assert_eq!(
        claims.claim_slot(&claim("a", t), 1.0, t).await.unwrap(),
        Claim::Won
    );
    // Within the lease another gateway is kept off; the holder itself is not.
    match claims
        .claim_slot(&claim("b", t + 0.5), 1.0, t + 0.5)
        .await
        .unwrap()
    {
        Claim::Held(held) => assert_eq!(held.holder, "a"),
        other => panic!("expected held, got {other:?}"),
    }
    assert_eq!(
        claims
            .claim_slot(&claim("a", t + 0.5), 1.0, t + 0.5)
            .await
            .unwrap(),
        Claim::Won
    );
    // Past the lease (the holder stalled or died) it is taken over, by one gateway only.
    assert_eq!(
        claims
            .claim_slot(&claim("b", t + 5.0), 1.0, t + 5.0)
            .await
            .unwrap(),
        Claim::Won
    );
    assert!(matches!(
        claims
            .claim_slot(&claim("c", t + 5.1), 1.0, t + 5.1)
            .await
            .unwrap(),
        Claim::Held(_)
    ));
    stack.stop().await;
}

/// A gateway died after claiming a slot and creating its run, before publishing the job: the
/// claim goes stale, another gateway takes it over, publishes the job under the same run id,
/// and the slot still gets exactly its one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_whose_gateway_died_between_claim_and_publish_is_finished_by_another() {
    use pyoco::RunSnapshot;
    use pyoco::store::SlotClaim;
    let stack = Stack::start_with(fast_schedules).await;
    let store = store_of(&stack).await;
    let mut record = original_record("orphaned-1", 1.0, None);
    record["interval_seconds"] = json!(3600.0);
    let slot = record["next_run_at"].as_f64().unwrap();
    let run_id = slot_run_id("orphaned-1", slot);
    let dead = SlotClaim {
        schedule_id: "orphaned-1".into(),
        slot,
        run_id: run_id.clone(),
        holder: "gateway-dead".into(),
        claimed_at: now() - 30.0,
    };
    store
        .schedules()
        .claim_slot(&dead, 1.0, dead.claimed_at)
        .await
        .unwrap();
    let mut snapshot = RunSnapshot::pending(
        &run_id,
        "legacy",
        "default",
        vec!["default".into()],
        serde_json::from_value(json!({"value": 7})).unwrap(),
    );
    snapshot.schedule_id = Some("orphaned-1".into());
    store.runs().create(&mut snapshot).await.unwrap();
    put_record(&store, &record).await;

    let advanced = record_after_dispatch(&store, "orphaned-1").await;
    assert_eq!(advanced.dispatch_count, 1);
    assert_eq!(advanced.last_run_id.as_deref(), Some(run_id.as_str()));
    let run = stack.wait_terminal(&run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["task_records"]["a"]["output"], 7);
    let runs = stack
        .client
        .list_schedule_runs("orphaned-1", false, None)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    stack.stop().await;
}
