//! The request surface fuzzed by schemathesis (PyPI) from the gateway's own OpenAPI document,
//! with API keys on: a bounded number of generated requests per route, and none may get a 5xx
//! or an answer that breaks the documented schema. (It found three schema errors the first
//! time: `detail` typed as an object, the run list as an object, SSE events as strings.)
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::process::{Command, Stdio};
use std::sync::Arc;

use pyoco::Store;
use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::config::AuthMode;
use pyoco::testkit::Stack;

fn schemathesis() -> std::path::PathBuf {
    pyoco::testkit::python_tool("install-schemathesis.sh").join("bin/schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_no_5xx_and_answers_that_match_the_schema() {
    let bin = schemathesis();
    // Generated `wait_sec` values would hold submits open up to a minute each: a short cap.
    let stack = Stack::start_with(|c| {
        c.http_auth_mode = AuthMode::ApiKey;
        c.sync_wait_max = std::time::Duration::from_millis(200);
    })
    .await;
    let store = Store::connect(Arc::new(stack.config.clone()), "fuzz")
        .await
        .unwrap();
    // A tenant key, not an admin one: POST /shutdown is then a 403, never a stop.
    let key = ApiKey::generate().unwrap();
    let record = ApiKeyRecord::new(&key, "fuzz", "", false, 1.0).unwrap();
    store.api_keys().create(&record).await.unwrap();
    let header = format!("X-API-Key: {}", key.to_header_value());

    // The document the gateway serves (with the key), not the file in spec/.
    let doc = reqwest::Client::new()
        .get(format!("{}/openapi.json", stack.gateway.url()))
        .header("X-API-Key", key.to_header_value())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, doc).unwrap();

    let base = stack.gateway.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .arg("run")
            .arg(&schema)
            .args(["--url", &base, "-H", &header])
            .args(["--max-examples", "25", "--seed", "1"])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--phases", "examples,fuzzing"])
            .env("SCHEMATHESIS_HOOKS", "")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
