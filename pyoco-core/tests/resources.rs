//! `ensure_resources` against a real server: the original's names and settings, idempotent,
//! and existing resources are respected.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use pyoco::testkit::NatsServer;
use pyoco::{Config, ensure_resources};

#[tokio::test]
async fn creates_the_originals_resources_once_and_respects_existing_ones() {
    let server = NatsServer::start();
    let config = Config {
        nats_url: server.url(),
        ..Config::default()
    };
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    // An operator created the DLQ with their own limits first.
    js.create_stream(stream::Config {
        name: "PYOCO_DLQ".into(),
        subjects: vec!["pyoco.dlq.>".into()],
        max_messages: 7,
        ..Default::default()
    })
    .await
    .unwrap();

    ensure_resources(&js, &config).await.unwrap();
    ensure_resources(&js, &config).await.unwrap();

    let work = js
        .get_stream("PYOCO_WORK")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .config;
    assert_eq!(work.subjects, vec!["pyoco.work.>".to_string()]);
    assert_eq!(work.retention, stream::RetentionPolicy::WorkQueue);
    assert_eq!(work.duplicate_window, Duration::from_secs(120));
    let dlq = js
        .get_stream("PYOCO_DLQ")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .config;
    assert_eq!(dlq.max_messages, 7, "an existing stream is never modified");

    for (bucket, history, ttl) in [
        ("pyoco_runs", 1, 0),
        ("pyoco_workers", 1, 86_400),
        ("pyoco_auth", 1, 0),
        ("pyoco_yaml_schedules", 5, 0),
        ("pyoco_workflow_bundles", 1, 0),
        ("pyoco_run_relations", 1, 0),
        ("pyoco_wheel_history", 1, 7_776_000),
    ] {
        let info = js
            .get_stream(format!("KV_{bucket}"))
            .await
            .unwrap()
            .get_info()
            .await
            .unwrap()
            .config;
        assert_eq!(info.max_messages_per_subject, history, "{bucket} history");
        assert_eq!(info.max_age, Duration::from_secs(ttl), "{bucket} ttl");
    }
    js.get_object_store("pyoco_wheels").await.unwrap();
}
