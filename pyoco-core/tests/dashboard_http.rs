//! The dashboard over HTTP (the browser test drives it in Chromium): the page and its files
//! are served by the gateway itself, open even with API keys on, in the configured language;
//! and a YAML run's snapshot carries the graph the page draws.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use pyoco::config::AuthMode;
use pyoco::testkit::Stack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_assets_are_public_typed_and_in_the_configured_language() {
    let stack = Stack::builder()
        .no_worker()
        .config(|c| {
            c.http_auth_mode = AuthMode::ApiKey;
            c.dashboard_lang = "ja_JP.UTF-8".into();
        })
        .start()
        .await;
    let http = reqwest::Client::new();
    let url = stack.gateway.url();
    let page = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"content="ja""#), "{html}");
    assert!(!html.contains("__PYOCO_DASHBOARD_LANG_VALUE__"));
    for (path, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("graph.js", "text/javascript; charset=utf-8"),
        ("ops.js", "text/javascript; charset=utf-8"),
        ("util.js", "text/javascript; charset=utf-8"),
        ("i18n.js", "text/javascript; charset=utf-8"),
        ("styles.css", "text/css; charset=utf-8"),
    ] {
        let asset = http
            .get(format!("{url}/static/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(asset.headers()["content-type"], kind);
    }
    let missing = http
        .get(format!("{url}/static/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing = http
        .get(format!("{url}/static/secret.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The data behind the page still needs a key.
    let runs = http.get(format!("{url}/runs")).send().await.unwrap();
    assert_eq!(runs.status(), 401);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_run_keeps_its_flow_graph_for_the_dashboard_to_its_end() {
    let stack = Stack::start().await;
    let run = stack
        .run_to_end(
            "flow: {graph: 'a >> (b & c)'}\ntasks: {a: {callable: 'pyoco:echo'}, b: {callable: 'pyoco:echo'}, c: {callable: 'pyoco:echo'}}\n",
            "drawn",
        )
        .await;
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(
        run["flow_graph"],
        json!({"nodes": ["a", "b", "c"], "edges": [["a", "b"], ["a", "c"]]})
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_flow_run_gets_its_graph_from_the_worker_that_resolves_it() {
    let mut registry = pyoco::Registry::with_builtins();
    registry.flows_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flows"));
    let stack = Stack::builder().registry(registry).start().await;
    let submitted = stack
        .client
        .submit_run("hello", serde_json::Map::new(), None, None)
        .await
        .unwrap();
    let run = stack
        .wait_terminal(submitted["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(
        run["flow_graph"],
        json!({"nodes": ["greet", "left", "right", "done"],
            "edges": [["greet", "left"], ["greet", "right"], ["left", "done"], ["right", "done"]]})
    );
    stack.stop().await;
}
