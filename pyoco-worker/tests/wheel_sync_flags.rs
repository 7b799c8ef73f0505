//! The `pyoco-worker` wheel sync flags: `--wheel-sync` (with its directory and interval)
//! turns the sync on over `PYOCO_WHEEL_SYNC_ENABLED=false`, and the worker record shows it.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::{Command, Stdio};

use pyoco::store::async_nats;
use pyoco::testkit::NatsServer;
use serde_json::Value;

fn worker(server: &NatsServer, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pyoco-worker"))
        .args(args)
        .env("PYOCO_LOAD_DOTENV", "0")
        .env("PYOCO_NATS_URL", server.url())
        .env("PYOCO_WHEEL_SYNC_ENABLED", "false")
        .stdin(Stdio::null())
        .output()
        .expect("run pyoco-worker")
}

#[tokio::test]
async fn wheel_sync_flag_turns_the_sync_on_and_bad_values_are_refused() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let sync_dir = dir.path().join("wheels");
    let out = worker(
        &server,
        &[
            "--worker-id",
            "flags",
            "--run-once",
            "--poll-timeout",
            "0.2",
            "--wheel-sync",
            "--wheel-sync-dir",
            sync_dir.to_str().unwrap(),
            "--wheel-sync-interval-sec",
            "0.5",
            "--wheel-install-timeout-sec",
            "30",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sync_dir.is_dir(), "the sync dir was not created");
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let kv = js.get_key_value("pyoco_workers").await.unwrap();
    let record: Value = serde_json::from_slice(&kv.get("flags").await.unwrap().unwrap()).unwrap();
    assert_eq!(record["wheel_sync"]["enabled"], true, "{record}");
    // An empty registry is a successful sync (the original reported an error).
    assert_eq!(record["wheel_sync"]["last_result"], "ok", "{record}");
    assert_eq!(record["wheel_sync"]["selected_count"], 0);

    // Started again without the flag: the record no longer claims a sync.
    let out = worker(
        &server,
        &[
            "--worker-id",
            "flags",
            "--run-once",
            "--poll-timeout",
            "0.2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&kv.get("flags").await.unwrap().unwrap()).unwrap();
    assert_eq!(record["wheel_sync"]["enabled"], false, "{record}");
    assert_eq!(record["wheel_sync"]["last_result"], "disabled", "{record}");

    let out = worker(&server, &["--wheel-sync", "--wheel-sync-interval-sec", "0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--wheel-sync-interval-sec must be a positive number")
    );
}

#[test]
fn start_up_and_argument_errors_use_the_original_err_pyoco_0018_block() {
    let server = NatsServer::start();
    // A flag that does not parse: a usage error.
    let out = worker(&server, &["--poll-timeout", "soon"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "ERR-PYOCO-0018: invalid CLI arguments (check the input format)\n- reason: "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("--poll-timeout") && stderr.ends_with("- hint: pyoco-worker --help\n"),
        "{stderr}"
    );
    // A value the worker refuses at start-up.
    let out = worker(&server, &["--concurrency", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "ERR-PYOCO-0018: worker start-up failed\n- reason: --concurrency must be at least 1\n- hint: pyoco-worker --help\n"
    );
}
