//! The dashboard in a real browser: Debian's Chromium driven by Playwright for Python
//! (`tests/dashboard/browser.py`, installed by `scripts/install-browser-test.sh`) against a
//! gateway and worker started here. Playwright rather than a WebDriver crate: its `expect`
//! waits for every condition itself (no sleeps, no hand-written polling), and it is the tool
//! the original's own dashboard tests use. Screenshots land in `target/dashboard-screenshots/`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

#[path = "wheels/support.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use pyoco::Store;
use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::config::AuthMode;
use pyoco::testkit::Stack;

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("dashboard-screenshots")
}

/// Runs browser.py with `args` and fails the test with its output when it fails.
async fn browse(args: Vec<String>) {
    let python = pyoco::testkit::python_tool("install-browser-test.sh").join("bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/browser.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(&args)
            .args(["--shots".to_string(), screenshots().display().to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn english_desktop_shows_runs_live_draws_the_graph_cancels_and_hides_a_worker() {
    let stack = Stack::start_with(|c| c.dashboard_lang = "en".into()).await;
    let dir = tempfile::tempdir().unwrap();
    let (name, bytes) = support::wheel("dashdemo", "1.0.0", &[("dashdemo/__init__.py", "")]);
    let wheel = dir.path().join(name);
    std::fs::write(&wheel, bytes).unwrap();
    browse(vec![
        "--url".into(),
        stack.gateway.url(),
        "--mode".into(),
        "en".into(),
        "--wheel".into(),
        wheel.display().to_string(),
    ])
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn japanese_phone_with_api_keys_shows_401_then_the_runs_after_the_key() {
    let stack = Stack::start_with(|c| {
        c.http_auth_mode = AuthMode::ApiKey;
        c.dashboard_lang = "ja".into();
    })
    .await;
    let store = Store::connect(Arc::new(stack.config.clone()), "dashboard-test")
        .await
        .unwrap();
    let key = ApiKey::generate().unwrap();
    let record = ApiKeyRecord::new(&key, "dash", "", false, 1.0).unwrap();
    store.api_keys().create(&record).await.unwrap();
    browse(vec![
        "--url".into(),
        stack.gateway.url(),
        "--mode".into(),
        "ja".into(),
        "--key".into(),
        key.to_header_value(),
    ])
    .await;
    stack.stop().await;
}
