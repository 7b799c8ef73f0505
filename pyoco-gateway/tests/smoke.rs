//! The `pyoco-gateway` binary: the one-command dev setup and its usage errors.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::{Command, Stdio};
use std::time::Duration;

use pyoco::HttpClient;
use pyoco::testkit::{Spawned, free_port, nats_server_binary, wait_for, wait_terminal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_nats_and_worker_runs_a_named_flow_and_stops_on_sigterm() {
    let (http, nats) = (free_port(), free_port());
    let store = tempfile::tempdir().unwrap();
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flows");
    let mut child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
            .args([
                "up",
                "--port",
                &http.to_string(),
                "--with-nats",
                "--nats-listen",
                &format!("127.0.0.1:{nats}"),
            ])
            .arg("--nats-store-dir")
            .arg(store.path())
            .args(["--with-worker", "--flows-dir", flows])
            .env("PYOCO_NATS_SERVER", nats_server_binary().unwrap())
            .env("PYOCO_LOAD_DOTENV", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = HttpClient::new(&format!("http://127.0.0.1:{http}")).unwrap();
    wait_for(
        "the gateway to serve with NATS",
        Duration::from_secs(20),
        || async { client.list_runs(&Default::default()).await.ok().map(|_| ()) },
    )
    .await;
    let resp = client
        .submit_run("hello", Default::default(), None, None)
        .await
        .unwrap();
    let run_id = resp["run_id"].as_str().unwrap().to_string();
    let run = wait_terminal(&client, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    assert_eq!(run["task_records"]["done"]["output"], "world");

    child.terminate();
    let status = child
        .wait_exit("the gateway", Duration::from_secs(20))
        .await;
    assert!(status.success(), "{status:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", nats)).is_err(),
        "the managed nats-server is stopped too"
    );
}

#[test]
fn usage_errors_exit_1_with_a_hint() {
    let out = Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
        .args(["up", "--port", "notaport"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--port") && stderr.contains("hint"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_bad_config_value_is_an_error_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
        .args(["up", "--port", &free_port().to_string()])
        .env("PYOCO_LOAD_DOTENV", "0")
        .env("PYOCO_CONSUMER_MAX_DELIVER", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PYOCO_CONSUMER_MAX_DELIVER"));
}

/// Runs `pyoco-gateway admin <args>` against `url`; returns (exit code, stdout, stderr).
fn admin(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
        .arg("admin")
        .args(args)
        .args(["--nats-url", url])
        .env("PYOCO_LOAD_DOTENV", "0")
        .env("PYOCO_AUTH_PEPPER", "pep")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn admin_api_key_create_list_revoke_like_the_original() {
    let server = pyoco::testkit::NatsServer::start();
    let url = server.url();
    // An empty bucket lists [] (the original crashes with a traceback).
    assert_eq!(
        admin(&url, &["api-key", "list"]),
        (Some(0), "[]".into(), String::new())
    );
    let (code, created, _) = admin(&url, &["api-key", "create", "--tenant", "acme"]);
    assert_eq!(code, Some(0));
    assert!(created.starts_with(r#"{"key_id": ""#), "{created}");
    assert!(created.contains(r#""tenant_id": "acme""#), "{created}");
    let key_id = created.split('"').nth(3).unwrap().to_string();
    let (code, listed, _) = admin(&url, &["api-key", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        listed.contains(&key_id) && !listed.contains("api_key\""),
        "{listed}"
    );
    let (code, revoked, _) = admin(&url, &["api-key", "revoke", "--key-id", &key_id]);
    assert_eq!(code, Some(0));
    assert!(revoked.contains("revoked_at"), "{revoked}");
    let (code, unknown, _) = admin(&url, &["api-key", "revoke", "--key-id", "nosuchkey1"]);
    assert_eq!(
        (code, unknown.as_str()),
        (Some(2), r#"{"error": "not_found", "key_id": "nosuchkey1"}"#)
    );
    let (code, _, stderr) = admin(&url, &["api-key", "create", "--tenant", "no spaces"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("invalid tenant"), "{stderr}");
    // Argument errors exit 2, like argparse.
    let (code, _, stderr) = admin(&url, &["api-key", "create"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--tenant"), "{stderr}");
}

/// The status code of a bare `POST /shutdown` (no client library in this crate's tests).
fn post_shutdown(port: u16) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"POST /shutdown HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).ok();
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_is_refused_by_default_and_stops_the_process_when_allowed() {
    let server = pyoco::testkit::NatsServer::start();
    for allowed in [false, true] {
        let http = free_port();
        let mut child = Spawned(
            Command::new(env!("CARGO_BIN_EXE_pyoco-gateway"))
                .args([
                    "up",
                    "--port",
                    &http.to_string(),
                    "--nats-url",
                    &server.url(),
                ])
                .env("PYOCO_LOAD_DOTENV", "0")
                .env("PYOCO_HTTP_ALLOW_SHUTDOWN", allowed.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let client = HttpClient::new(&format!("http://127.0.0.1:{http}")).unwrap();
        wait_for("the gateway to serve", Duration::from_secs(20), || async {
            client.list_runs(&Default::default()).await.ok().map(|_| ())
        })
        .await;
        let status = tokio::task::spawn_blocking(move || post_shutdown(http))
            .await
            .unwrap();
        if allowed {
            assert_eq!(status, 202);
            let exit = child
                .wait_exit("the gateway", Duration::from_secs(20))
                .await;
            assert!(exit.success(), "{exit:?}");
        } else {
            assert_eq!(status, 403);
            child.terminate();
            child
                .wait_exit("the gateway", Duration::from_secs(20))
                .await;
        }
    }
}
