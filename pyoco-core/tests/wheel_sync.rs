//! Worker wheel sync end to end: a real nats-server, gateway and workers, real wheels, real
//! pip installing into throw-away virtualenvs (never the machine's Python), and flows that
//! call the installed code.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

#[path = "wheels/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pyoco::client::http::WheelUpload;
use pyoco::testkit::{Stack, WorkerHandle, submit_yaml, wait_for, wait_terminal};
use pyoco::{Config, HttpClient, Registry};
use serde_json::{Value, json};
use support::{can_import, mypkg_wheel, put_like_python, venv, wheel_sync_of};

const FLOW: &str = "flow:\n  graph: hi\ntasks:\n  hi:\n    callable: \"mypkg.tasks:hello\"\n    inputs: {name: pyoco}\n";

/// Runs the flow on `tag` and returns the finished run.
async fn run_flow(client: &HttpClient, tag: &str) -> Value {
    let run_id = submit_yaml(client, FLOW, "wheel-flow", Some(tag)).await;
    wait_terminal(client, &run_id).await
}

fn worker_config(base: &Config, python: &Path, dir: PathBuf) -> Config {
    let mut c = base.clone();
    c.wheel_sync_enabled = true;
    c.wheel_sync_dir = dir;
    c.wheel_sync_interval = Duration::from_millis(200);
    c.wheel_install_timeout = Duration::from_secs(120);
    c.python = python.to_string_lossy().into_owned();
    c
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    v.as_str()
                        .or(v["wheel_name"].as_str())
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn tagged_workers_sync_run_upgrade_and_uninstall_wheels() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("venv-a"), tmp.path().join("venv-b"));
    let (make_a, make_b) = (dir_a.clone(), dir_b.clone());
    let a = std::thread::spawn(move || venv(&make_a));
    let b = std::thread::spawn(move || venv(&make_b));
    let (python_a, python_b) = (a.join().unwrap(), b.join().unwrap());

    let stack = Stack::builder().no_worker().start().await;
    let (base, client) = (stack.config.clone(), stack.client.clone());
    let js = async_nats::jetstream::new(async_nats::connect(stack.server.url()).await.unwrap());

    // v1 as the original gateway writes it (flat string headers), tagged for "wheelz".
    let (v1_name, v1) = mypkg_wheel("1.0", "v1");
    put_like_python(&js, "pyoco_wheels", &v1_name, &v1, "wheelz,gpu").await;

    let worker_a = WorkerHandle::start(
        worker_config(&base, &python_a, tmp.path().join("sync-a")),
        Registry::with_builtins(),
        "wa",
        &["wheelz"],
    )
    .await;
    let worker_b = WorkerHandle::start(
        worker_config(&base, &python_b, tmp.path().join("sync-b")),
        Registry::with_builtins(),
        "wb",
        &["other"],
    )
    .await;

    // The first sync happens at start-up, before the first poll.
    let a_sync = wheel_sync_of(&client, "wa", "wa synced v1", |s| s["last_result"] == "ok").await;
    assert_eq!(a_sync["enabled"], true);
    assert_eq!(names(&a_sync["selected_wheels"]), [v1_name.as_str()]);
    assert_eq!(names(&a_sync["installed_wheels"]), [v1_name.as_str()]);
    assert_eq!(a_sync["installed_wheels"][0]["package_version"], "1.0");
    assert!(can_import(&python_a, "mypkg.tasks"));
    let b_sync = wheel_sync_of(&client, "wb", "wb synced", |s| s["last_result"] == "ok").await;
    assert_eq!(
        (
            b_sync["selected_count"].as_u64(),
            b_sync["installed_wheels"].clone()
        ),
        (Some(0), json!([]))
    );
    assert!(
        !can_import(&python_b, "mypkg"),
        "a worker with other tags installed the wheel"
    );

    let run = run_flow(&client, "wheelz").await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["task_records"]["hi"]["output"], "v1 pyoco");

    // v2 through our gateway: the next run uses the new code (the runner was restarted).
    let (v2_name, v2) = mypkg_wheel("2.0", "v2");
    let up = WheelUpload {
        tags: vec!["wheelz".into()],
        replace: true,
    };
    client.upload_wheel(&v2_name, v2, &up).await.unwrap();
    let a_sync = wheel_sync_of(&client, "wa", "wa synced v2", |s| {
        names(&s["installed_wheels"]) == [v2_name.as_str()]
    })
    .await;
    assert_eq!(names(&a_sync["updated_wheels"]), [v2_name.as_str()]);
    assert_eq!(names(&a_sync["removed_wheels"]), [v1_name.as_str()]);
    assert!(!tmp.path().join("sync-a").join(&v1_name).exists());
    let run = run_flow(&client, "wheelz").await;
    assert_eq!(run["task_records"]["hi"]["output"], "v2 pyoco", "{run}");

    // Deleting every version uninstalls the package; the flow then fails to import it.
    client.delete_wheel(&v1_name).await.unwrap();
    client.delete_wheel(&v2_name).await.unwrap();
    let a_sync = wheel_sync_of(&client, "wa", "wa removed mypkg", |s| {
        s["installed_wheels"] == json!([]) && s["last_result"] == "ok"
    })
    .await;
    assert_eq!(names(&a_sync["removed_wheels"]), [v2_name.as_str()]);
    assert!(
        !can_import(&python_a, "mypkg"),
        "the deleted wheel is still installed"
    );
    let run = run_flow(&client, "wheelz").await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert!(
        run["error"].as_str().unwrap_or("").contains("mypkg")
            || run.to_string().contains("No module named"),
        "{run}"
    );

    worker_a.stop().await;
    worker_b.stop().await;
}

#[tokio::test]
async fn a_failed_sync_is_shown_and_retried_without_stopping_the_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = Stack::builder().no_worker().start().await;
    let (base, client) = (stack.config.clone(), stack.client.clone());
    // An interpreter that does not exist: the tag query fails every round.
    let config = worker_config(
        &base,
        Path::new("/nonexistent/python"),
        tmp.path().join("sync"),
    );
    let worker = WorkerHandle::start(config, Registry::with_builtins(), "wx", &["default"]).await;
    let first = wheel_sync_of(&client, "wx", "an error state", |s| {
        s["last_result"] == "error"
    })
    .await;
    assert!(
        first["last_error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/python"),
        "{first}"
    );
    let later = wheel_sync_of(&client, "wx", "a retry", |s| {
        s["last_attempt_at"].as_f64() > first["last_attempt_at"].as_f64()
    })
    .await;
    assert_eq!(later["last_result"], "error");
    // The worker still runs jobs.
    let flow = "flow:\n  graph: a\ntasks:\n  a: {callable: \"pyoco:echo\", inputs: {value: 1}}\n";
    let run_id = submit_yaml(&client, flow, "echo", Some("default")).await;
    let run = wait_for("echo run", Duration::from_secs(20), || async {
        let run = client.get_run(&run_id, false).await.ok()?;
        (run["status"] == "COMPLETED").then_some(run)
    })
    .await;
    assert_eq!(run["status"], "COMPLETED");
    worker.stop().await;
}
