// TEMPORARY PROBE (will be replaced)
use pyoco::Registry;
use pyoco::testkit::{GatewayHandle, NatsServer, WorkerHandle};
use std::time::Duration;

async fn show(c: &reqwest::Client, label: &str, rb: reqwest::RequestBuilder) {
    let r = rb.send().await.unwrap();
    let s = r.status();
    let t = r.text().await.unwrap();
    println!("=== {label}: {s}\n{t}\n");
    let _ = c;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let server = NatsServer::start();
    let mut config = server.config();
    config.run_heartbeat_interval = Duration::from_millis(100);
    let gw = GatewayHandle::start(config.clone()).await;
    let base = gw.url();
    let c = reqwest::Client::new();
    show(&c, "health", c.get(format!("{base}/health"))).await;
    show(
        &c,
        "big json",
        c.post(format!("{base}/runs")).body(vec![b' '; 3_000_000]),
    )
    .await;
    show(&c, "array", c.post(format!("{base}/runs")).body("[1]")).await;
    show(
        &c,
        "limit abc",
        c.get(format!("{base}/runs?limit=abc&limit=500")),
    )
    .await;
    show(&c, "post bundle", c.post(format!("{base}/runs/bundle"))).await;
    show(&c, "cancel", c.post(format!("{base}/runs/x/cancel"))).await;
    show(&c, "bad key", c.get(format!("{base}/runs/a%20b"))).await;
    return;
    show(&c, "list empty", c.get(format!("{base}/runs"))).await;
    show(
        &c,
        "list empty vnext",
        c.get(format!("{base}/runs?updated_after=0")),
    )
    .await;
    show(&c, "submit {}", c.post(format!("{base}/runs")).body("{}")).await;
    show(
        &c,
        "submit bad json",
        c.post(format!("{base}/runs")).body("{x"),
    )
    .await;
    show(
        &c,
        "submit bad tag",
        c.post(format!("{base}/runs"))
            .body(r#"{"flow_name":"","tag":"a.b","params":[],"tags":[1]}"#),
    )
    .await;
    show(
        &c,
        "submit blank",
        c.post(format!("{base}/runs")).body(r#"{"flow_name":"  "}"#),
    )
    .await;
    show(
        &c,
        "submit ok",
        c.post(format!("{base}/runs"))
            .body(r#"{"flow_name":"nope","params":{"x":1}}"#),
    )
    .await;
    show(
        &c,
        "limit",
        c.get(format!("{base}/runs?limit=0&updated_after=x")),
    )
    .await;
    show(&c, "cursor", c.get(format!("{base}/runs?cursor=abc"))).await;
    show(&c, "404 run", c.get(format!("{base}/runs/nope"))).await;
    show(&c, "404 route", c.get(format!("{base}/nope"))).await;
    show(&c, "405", c.delete(format!("{base}/runs"))).await;
    let yaml = "flow:\n  graph: a >> b\n  defaults: {x: 1}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: {value: $ctx.params.x}}\n  b: {callable: 'pyoco:echo'}\n";
    let form = reqwest::multipart::Form::new()
        .part(
            "workflow",
            reqwest::multipart::Part::bytes(yaml.as_bytes().to_vec()).file_name("flow.yaml"),
        )
        .text("flow_name", "demo");
    show(
        &c,
        "yaml ok",
        c.post(format!("{base}/runs/yaml")).multipart(form),
    )
    .await;
    let form = reqwest::multipart::Form::new()
        .part(
            "workflow",
            reqwest::multipart::Part::bytes(b"pipes: 1\nflow: {graph: a}".to_vec())
                .file_name("flow.yaml"),
        )
        .text("flow_name", "demo");
    show(
        &c,
        "yaml bad",
        c.post(format!("{base}/runs/yaml")).multipart(form),
    )
    .await;
    let form = reqwest::multipart::Form::new()
        .text("workflow", "x")
        .text("tag", "a.b");
    show(
        &c,
        "yaml missing",
        c.post(format!("{base}/runs/yaml")).multipart(form),
    )
    .await;
    show(
        &c,
        "yaml json",
        c.post(format!("{base}/runs/yaml")).body("{}"),
    )
    .await;
    let form = reqwest::multipart::Form::new()
        .part(
            "workflow",
            reqwest::multipart::Part::bytes(yaml.as_bytes().to_vec()).file_name("flow.yaml"),
        )
        .text("flow_name", "demo")
        .text("tag", "a.b");
    show(
        &c,
        "yaml bad tag",
        c.post(format!("{base}/runs/yaml")).multipart(form),
    )
    .await;
    let big = vec![b'#'; 300_000];
    let form = reqwest::multipart::Form::new()
        .part(
            "workflow",
            reqwest::multipart::Part::bytes(big).file_name("flow.yaml"),
        )
        .text("flow_name", "demo");
    show(
        &c,
        "yaml big",
        c.post(format!("{base}/runs/yaml")).multipart(form),
    )
    .await;
    let worker = WorkerHandle::start(
        config.clone(),
        Registry::with_builtins(),
        "w1",
        &["default"],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    show(&c, "list", c.get(format!("{base}/runs"))).await;
    show(
        &c,
        "list vnext",
        c.get(format!("{base}/runs?limit=1&cursor=")),
    )
    .await;
    let r: serde_json::Value = c
        .get(format!("{base}/runs?flow=demo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r[0]["run_id"].as_str().unwrap().to_string();
    show(&c, "get", c.get(format!("{base}/runs/{id}"))).await;
    show(
        &c,
        "get records",
        c.get(format!("{base}/runs/{id}?include=records")),
    )
    .await;
    show(&c, "tasks", c.get(format!("{base}/runs/{id}/tasks"))).await;
    let r: serde_json::Value = c
        .get(format!("{base}/runs?flow=nope"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r[0]["run_id"].as_str().unwrap().to_string();
    show(&c, "get nope", c.get(format!("{base}/runs/{id}"))).await;
    worker.stop().await;
    // DLQ contents
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut st = js.get_stream("PYOCO_DLQ").await.unwrap();
    let info = st.info().await.unwrap();
    for seq in 1..=info.state.last_sequence {
        if let Ok(m) = st.get_raw_message(seq).await {
            println!("DLQ {}: {}", m.subject, String::from_utf8_lossy(&m.payload));
        }
    }
    let w = js.get_key_value("pyoco_workers").await.unwrap();
    println!(
        "WORKER {:?}",
        w.get("w1")
            .await
            .unwrap()
            .map(|b| String::from_utf8_lossy(&b).to_string())
    );
    let _ = &mut st;
    gw.stop().await;
}
