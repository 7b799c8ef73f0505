//! OpenTelemetry traces of one run, received by a real OTLP/HTTP receiver started here: the
//! gateway (in-process, its trace export installed as the binary installs it) exports the
//! `submit` span, a `pyoco-worker` process started with `OTEL_EXPORTER_OTLP_ENDPOINT` exports
//! the `run` span and one `task` span per task; the job's `traceparent` header joins them
//! into one trace. The worker batches for a minute, so its spans arrive only because a
//! graceful stop flushes them.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use pyoco::logging::otlp::{Export, Protocol};
use pyoco::testkit::{Spawned, Stack, submit_yaml, wait_for, wait_terminal};

/// One received span: the fields the test looks at.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Got>>>;

fn strings(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

/// `POST /v1/traces` as a collector answers it: decodes the protobuf request, keeps its
/// spans, answers an empty `ExportTraceServiceResponse`.
async fn receive(
    State(received): State<Received>,
    body: bytes::Bytes,
) -> impl axum::response::IntoResponse {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                e.to_string().into_bytes(),
            );
        }
    };
    let mut got = received.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| strings(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                got.push(Got {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent: span.parent_span_id,
                    attributes: strings(&span.attributes),
                });
            }
        }
    }
    (
        axum::http::StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

const TWO_TASKS: &str = "flow: {graph: 'first >> second'}\ntasks:\n  first: {callable: 'pyoco:echo', inputs: {value: 1}}\n  second: {callable: 'pyoco:echo', inputs: {value: 2}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_its_run_and_its_tasks_form_one_trace() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = Stack::builder().no_worker().start().await;
    // The gateway's side: this process's subscriber, exporting as the binary would.
    let logging = pyoco::logging::init_with_traces(
        &stack.config,
        "pyoco-server:http",
        Some(Export {
            endpoint: Some(format!("http://127.0.0.1:{port}/v1/traces")),
            service_name: "pyoco-gateway".into(),
            protocol: Protocol::HttpBinary,
        }),
    );
    assert!(logging.traces_on());
    let mut worker = Spawned(
        Command::new(env!("CARGO_BIN_EXE_pyoco-worker"))
            .args(["--worker-id", "tracew", "--tags", "default"])
            .env("PYOCO_LOAD_DOTENV", "0")
            .env("PYOCO_NATS_URL", stack.server.url())
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_SDK_DISABLED")
            // Nothing is sent before the stop: the stop's flush is what delivers.
            .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let run_id = submit_yaml(&stack.client, TWO_TASKS, "traced", None).await;
    let run = wait_terminal(&stack.client, &run_id).await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    worker.terminate();
    let status = worker
        .wait_exit("pyoco-worker", Duration::from_secs(30))
        .await;
    assert!(status.success(), "{status:?}");
    // The gateway's spans: exported now (the flush blocks on the receiver, served meanwhile).
    let logging = tokio::task::spawn_blocking(move || {
        logging.flush();
        logging
    })
    .await
    .unwrap();

    let spans = wait_for("the run's spans", Duration::from_secs(20), || {
        let received = received.clone();
        let run_id = run_id.clone();
        async move {
            let spans = received.lock().unwrap().clone();
            let of_run = |name: &str| {
                spans
                    .iter()
                    .filter(|s| s.name == name && s.attributes.get("run_id") == Some(&run_id))
                    .count()
            };
            let tasks = spans.iter().filter(|s| s.name == "task").count();
            (of_run("submit") == 1 && of_run("run") == 1 && tasks >= 2).then_some(spans)
        }
    })
    .await;

    let submit = spans
        .iter()
        .find(|s| s.name == "submit" && s.attributes.get("run_id") == Some(&run_id))
        .unwrap();
    assert_eq!(submit.service, "pyoco-gateway");
    assert_eq!(submit.attributes["flow_name"], "traced");
    assert_eq!(submit.trace_id.len(), 16);
    // The submit's own parent is the gateway's request span, in the same trace.
    let request = spans
        .iter()
        .find(|s| s.span_id == submit.parent)
        .unwrap_or_else(|| panic!("no parent of {submit:?} in {spans:#?}"));
    assert_eq!(request.name, "request");
    assert_eq!(request.trace_id, submit.trace_id);

    let run = spans
        .iter()
        .find(|s| s.name == "run" && s.attributes.get("run_id") == Some(&run_id))
        .unwrap();
    assert_eq!(
        run.service, "pyoco-worker",
        "the worker's default service name"
    );
    assert_eq!(run.trace_id, submit.trace_id, "one trace across the queue");
    assert_eq!(run.parent, submit.span_id, "the run is the submit's child");
    assert_eq!(run.attributes["flow_name"], "traced");
    assert_eq!(run.attributes["worker_id"], "tracew");

    let mut tasks: Vec<&Got> = spans.iter().filter(|s| s.name == "task").collect();
    tasks.sort_by_key(|s| s.attributes.get("task").cloned());
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for (task, name) in tasks.iter().zip(["first", "second"]) {
        assert_eq!(task.attributes["task"], name);
        assert_eq!(task.attributes["callable"], "pyoco:echo");
        assert_eq!(task.service, "pyoco-worker");
        assert_eq!(task.trace_id, submit.trace_id);
        assert_eq!(task.parent, run.span_id, "a task is the run's child");
    }

    drop(logging);
    stack.stop().await;
    receiver.abort();
}
