//! Embedding pyoco in a Rust program: typed task functions, a flow built in Rust and
//! registered by name, a worker, and a client submitting it and waiting for the result.
//!
//! Run it with a nats-server on `PYOCO_NATS_URL` (default `nats://127.0.0.1:4222`), or pass
//! `--with-nats` to start a throw-away local one:
//!
//! ```sh
//! cargo run -p pyoco-example-embedded -- --with-nats
//! ```

use std::time::Duration;

use pyoco::flow::embed::FlowBuilder;
use pyoco::{Config, NatsClient, Registry, Worker};
use serde::{Deserialize, Serialize};
use serde_json::Map;

/// Inputs are wired by field name: explicit inputs, then run params, then upstream outputs.
#[derive(Deserialize)]
struct TaxIn {
    /// The output of the upstream task `price`.
    price: f64,
    /// A run param (with a default).
    #[serde(default = "default_rate")]
    rate: f64,
}

fn default_rate() -> f64 {
    0.2
}

#[derive(Deserialize)]
struct TotalIn {
    price: f64,
    tax: f64,
    shipping: f64,
}

#[derive(Serialize)]
struct Total {
    total: f64,
}

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

    let mut registry = Registry::with_builtins();
    registry.register_fn(
        "shop:price",
        |p: Map<String, serde_json::Value>| async move {
            Ok::<_, String>(p.get("net").cloned().unwrap_or(100.0.into()))
        },
    );
    registry.register_fn("shop:tax", |t: TaxIn| async move {
        Ok::<_, String>(t.price * t.rate)
    });
    registry.register_fn("shop:total", |t: TotalIn| async move {
        Ok::<_, String>(Total {
            total: t.price + t.tax + t.shipping,
        })
    });
    // A whole flow built in Rust, resolved by name for `submit_run("checkout", ...)`.
    let checkout = FlowBuilder::new("price >> (tax & shipping) >> total")
        .task("price", "shop:price", |t| t.input("net", "$ctx.params.net"))
        .task("tax", "shop:tax", |t| t.retries(2))
        .task("shipping", "pyoco:echo", |t| t.input("value", 4.5))
        .task("total", "shop:total", |t| {
            t.input("shipping", "$node.shipping.output")
        })
        .default_param("net", 100.0)
        .build()?;
    registry.register_flow("checkout", checkout);

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
    let mut params = Map::new();
    params.insert("net".into(), 250.0.into());
    let run_id = client
        .submit_run("checkout", params, None, Vec::new())
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
