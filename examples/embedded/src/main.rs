//! Embedding pyoco in a Rust program: register a native task, run a worker, submit a YAML
//! flow that calls it, and wait for the result.
//!
//! Run it with a nats-server on `PYOCO_NATS_URL` (default `nats://127.0.0.1:4222`), or pass
//! `--with-nats` to start a throw-away local one:
//!
//! ```sh
//! cargo run -p pyoco-example-embedded -- --with-nats
//! ```

use std::time::Duration;

use pyoco::{Config, NatsClient, Registry, TaskError, Worker};
use serde_json::json;

const FLOW: &str = r#"
flow:
  graph: price >> (tax & shipping) >> total
  defaults: {net: 100.0}
tasks:
  price:    {callable: "shop:price"}
  tax:      {callable: "shop:tax"}
  shipping: {callable: "pyoco:echo", inputs: {value: 4.5}}
  total:    {callable: "shop:total", inputs: {shipping: "$node.shipping.output"}}
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    let store_dir = std::env::temp_dir().join(format!("pyoco-embedded-{}", std::process::id()));
    let _nats = if std::env::args().any(|a| a == "--with-nats") {
        let nats = pyoco::devnats::LocalNats::start("127.0.0.1:14222".parse()?, &store_dir)?;
        config.nats_url = nats.url();
        Some(nats)
    } else {
        None
    };

    // Task parameters are wired by name: explicit inputs, then run params, then the output
    // of the upstream task with that name.
    let mut registry = Registry::with_builtins();
    registry.register("shop:price", &["net"], |call| async move {
        Ok(call.args["net"].clone())
    });
    registry.register("shop:tax", &["price"], |call| async move {
        let price = call.args["price"]
            .as_f64()
            .ok_or_else(|| TaskError::new("price must be a number"))?;
        Ok(json!(price * 0.2))
    });
    registry.register(
        "shop:total",
        &["price", "tax", "shipping"],
        |call| async move {
            let sum: f64 = ["price", "tax", "shipping"]
                .iter()
                .filter_map(|k| call.args[*k].as_f64())
                .sum();
            Ok(json!({"total": sum}))
        },
    );

    let worker = Worker::connect(
        config.clone(),
        registry,
        "embedded-worker",
        &["default".to_string()],
    )
    .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run(async move {
        stopped.await.ok();
    }));

    let client = NatsClient::connect(config).await?;
    let run_id = client
        .submit_yaml(FLOW.as_bytes(), "checkout", None)
        .await?;
    println!("submitted run {run_id}");
    let run = client
        .wait_for_terminal(&run_id, Duration::from_secs(30))
        .await?;
    println!("status: {}", run.status);
    for (task, record) in &run.task_records {
        println!("  {task:<9} {:?} -> {}", record.state, record.output);
    }

    stop.send(()).ok();
    worker.await??;
    std::fs::remove_dir_all(&store_dir).ok();
    Ok(())
}
