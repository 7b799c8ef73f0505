//! `pyoco-gateway admin api-key …` against a real nats-server, and key interop both ways
//! with the original pyoco-server 0.5.1 (its `pyoco-server-admin` and its verifier).
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use pyoco::admin::{self, AdminCommand};
use pyoco::gateway::auth::Authenticator;
use pyoco::testkit::NatsServer;
use pyoco::{Config, Store};
use serde_json::Value;

async fn store(server: &NatsServer) -> Store {
    let config = Config {
        auth_pepper: Some("pep".into()),
        ..server.config()
    };
    Store::connect(Arc::new(config), "admin-test")
        .await
        .unwrap()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The original's virtualenv (installed by scripts/install-interop.sh when missing).
fn venv() -> PathBuf {
    pyoco::testkit::python_tool("install-interop.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_revoke_print_the_original_json_lines_and_exit_codes() {
    let server = NatsServer::start();
    let store = store(&server).await;
    let empty = admin::run(&store, Some("pep"), AdminCommand::ListKeys).await;
    assert_eq!((empty.stdout.as_str(), empty.exit_code), ("[]", 0));

    let created = admin::run(
        &store,
        Some("pep"),
        AdminCommand::CreateKey {
            tenant: "acme".into(),
            admin: false,
        },
    )
    .await;
    assert_eq!(created.exit_code, 0, "{created:?}");
    // Python's json.dumps separators.
    assert!(
        created.stdout.starts_with(r#"{"key_id": ""#),
        "{}",
        created.stdout
    );
    let v: Value = serde_json::from_str(&created.stdout).unwrap();
    let key_id = v["key_id"].as_str().unwrap().to_string();
    assert_eq!(v["tenant_id"], "acme");
    assert!(
        v["api_key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("pyoco_{key_id}."))
    );
    assert!(v.get("admin").is_none());

    let listed = admin::run(&store, Some("pep"), AdminCommand::ListKeys).await;
    let list: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(list[0]["key_id"], key_id.as_str());
    assert_eq!(list[0]["revoked_at"], Value::Null);
    assert!(
        list[0].get("api_key").is_none(),
        "list never shows a secret"
    );

    let revoked = admin::run(
        &store,
        Some("pep"),
        AdminCommand::RevokeKey {
            key_id: key_id.clone(),
        },
    )
    .await;
    assert_eq!(revoked.exit_code, 0);
    let v: Value = serde_json::from_str(&revoked.stdout).unwrap();
    assert_eq!(v["key_id"], key_id.as_str());
    assert!(v["revoked_at"].is_f64());

    let unknown = admin::run(
        &store,
        Some("pep"),
        AdminCommand::RevokeKey {
            key_id: "nosuchkey1".into(),
        },
    )
    .await;
    assert_eq!(unknown.exit_code, 2);
    assert_eq!(
        unknown.stdout,
        r#"{"error": "not_found", "key_id": "nosuchkey1"}"#
    );

    let bad = admin::run(
        &store,
        Some("pep"),
        AdminCommand::CreateKey {
            tenant: "no spaces".into(),
            admin: false,
        },
    )
    .await;
    assert_eq!(bad.exit_code, 1);
    assert!(bad.stderr.contains("invalid tenant"), "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keys_are_marked_and_listed_as_such() {
    let server = NatsServer::start();
    let store = store(&server).await;
    let created = admin::run(
        &store,
        Some("pep"),
        AdminCommand::CreateKey {
            tenant: "ops".into(),
            admin: true,
        },
    )
    .await;
    let v: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(v["admin"], true);
    let auth = Authenticator::new(store.api_keys(), Some("pep"));
    let id = auth.check(v["api_key"].as_str()).await.unwrap();
    assert!(id.admin);
    assert_eq!(id.tenant_id, "ops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_across_the_original_and_pyoco_both_ways() {
    let venv = venv();
    let server = NatsServer::start();
    let store = store(&server).await;

    // A key made by the original's admin CLI verifies here.
    let out = Command::new(venv.join("bin/pyoco-server-admin"))
        .args([
            "--nats-url",
            &server.url(),
            "api-key",
            "create",
            "--tenant",
            "acme",
        ])
        .env("PYOCO_AUTH_PEPPER", "pep")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let auth = Authenticator::new(store.api_keys(), Some("pep"));
    let id = auth.check(theirs["api_key"].as_str()).await.unwrap();
    assert_eq!(id.tenant_id, "acme");
    assert_eq!(id.key_id, theirs["key_id"].as_str().unwrap());

    // A key made by ours verifies with the original's own code, and its list shows ours.
    let ours = admin::run(
        &store,
        Some("pep"),
        AdminCommand::CreateKey {
            tenant: "beta".into(),
            admin: false,
        },
    )
    .await;
    let ours: Value = serde_json::from_str(&ours.stdout).unwrap();
    let verdict = |pepper: &str| {
        let out = Command::new(venv.join("bin/python"))
            .arg(repo_root().join("interop/verify_key.py"))
            .args([&server.url(), ours["api_key"].as_str().unwrap(), pepper])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(verdict("pep"), "ok");
    assert_eq!(verdict("wrong"), "invalid");
    let out = Command::new(venv.join("bin/pyoco-server-admin"))
        .args(["--nats-url", &server.url(), "api-key", "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["key_id"].as_str())
        .collect();
    assert!(ids.contains(&ours["key_id"].as_str().unwrap()), "{listed}");
}
