//! `{{...}}` templates in every task's inputs, end to end through a worker: rendered by the
//! engine once per attempt, typed when a template is the whole value, with the run's tenant,
//! tag and attempt in `context`; malformed templates and unknown steps refused at submit.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::Arc;

use pyoco::auth::{ApiKey, ApiKeyRecord};
use pyoco::client::http::HttpError;
use pyoco::config::AuthMode;
use pyoco::testkit::{Stack, run_to_end};
use pyoco::{HttpClient, Registry, Store, TaskError};
use serde_json::{Value, json};

/// `t:probe` fails its first attempt and then returns the arguments it got.
fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register("t:probe", &[], |call| async move {
        if call.attempt == 1 {
            return Err(TaskError::new("first attempt fails"));
        }
        Ok(Value::Object(call.args))
    });
    r
}

const FLOW: &str = r#"
flow:
  graph: a >> b >> c
  defaults: {n: 3, who: ada}
tasks:
  a:
    callable: pyoco:echo
    inputs: {value: {rows: [1, 2], name: "{{params.who}}"}}
  b:
    callable: t:probe
    retries: 1
    retry_backoff_ms: 1
    inputs:
      count: "{{params.n}}"
      rows: "{{ steps.a.output.rows }}"
      label: "{{context.flow_name}}/{{context.task}} tag={{context.tag}} try={{context.attempt}}"
      attempt: "{{context.attempt}}"
      tenant: "{{context.tenant_id}}"
      deep: [{first: "{{steps.a.output.rows.0}}"}]
  c:
    callable: pyoco:echo
    inputs: {value: "b ran {{steps.b.output.attempt}} times for {{steps.b.output.rows}}"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_rendered_in_every_tasks_inputs_once_per_attempt_and_typed() {
    let stack = Stack::builder().registry(registry()).start().await;
    let run = stack.run_to_end(FLOW, "tpl").await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    let records = &run["task_records"];
    // A native built-in's nested input.
    assert_eq!(
        records["a"]["output"],
        json!({"rows": [1, 2], "name": "ada"})
    );
    // A registered Rust task: whole-value templates keep their JSON type.
    assert_eq!(
        records["b"]["output"],
        json!({
            "count": 3,
            "rows": [1, 2],
            "label": "tpl/b tag=default try=2",
            "attempt": 2,
            "tenant": null,
            "deep": [{"first": 1}],
        })
    );
    assert_eq!(records["b"]["attempts"], 2);
    assert_eq!(records["c"]["output"], "b ran 2 times for [1,2]");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_without_a_value_fails_the_task_without_retries() {
    let stack = Stack::start().await;
    let run = stack
        .run_to_end(
            "flow: {graph: a}\ntasks:\n  a: {callable: 'pyoco:echo', retries: 3, inputs: {value: 'x={{params.nope}}'}}\n",
            "missing",
        )
        .await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(
        run["error"],
        "pyoco:echo: template {{params.nope}} in value: 'nope' is not a run param"
    );
    assert_eq!(run["task_records"]["a"]["attempts"], 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_templates_and_unknown_steps_are_refused_at_submit() {
    let stack = Stack::builder().no_worker().start().await;
    for (input, reason) in [
        (
            "'{{steps.ghost.output}}'",
            "invalid_template: a: template {{steps.ghost.output}} in value: unknown step 'ghost' (no such task)",
        ),
        (
            "'x {{params.y'",
            "invalid_template: a: unclosed '{{' in value",
        ),
        (
            "{deep: ['{{context.user}}']}",
            "invalid_template: a: template {{context.user}} in value.deep.0: use context.run_id, context.flow_name, context.task, context.tenant_id, context.tag or context.attempt",
        ),
    ] {
        let yaml = format!(
            "flow: {{graph: a}}\ntasks:\n  a: {{callable: 'pyoco:echo', inputs: {{value: {input}}}}}\n"
        );
        let err = stack
            .client
            .submit_yaml(yaml.as_bytes(), "bad", None)
            .await
            .unwrap_err();
        let HttpError::Status(status) = &err else {
            panic!("{err}")
        };
        let body: Value = serde_json::from_str(&status.body).unwrap();
        assert_eq!(status.status, 422, "{input}");
        assert_eq!(body["reason"], reason, "{input}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_tenant_id_is_the_tenant_of_the_key_that_submitted() {
    let stack = Stack::start_with(|c| c.http_auth_mode = AuthMode::ApiKey).await;
    let store = Store::connect(Arc::new(stack.config.clone()), "keys")
        .await
        .unwrap();
    let key = ApiKey::generate().unwrap();
    let record = ApiKeyRecord::new(&key, "acme", "", false, 1.0).unwrap();
    store.api_keys().create(&record).await.unwrap();
    let client = HttpClient::new(&stack.gateway.url())
        .unwrap()
        .with_api_key("X-API-Key", &key.to_header_value());
    let run = run_to_end(
        &client,
        "flow: {graph: a}\ntasks:\n  a: {callable: 'pyoco:echo', inputs: {value: '{{context.tenant_id}}@{{context.tag}}'}}\n",
        "tenant",
    )
    .await;
    assert_eq!(run["task_records"]["a"]["output"], "acme@default", "{run}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_python_scripts_and_python_callables_get_rendered_inputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tpl_tasks.py"),
        "def greet(who, times):\n    return {'text': who * times, 'type': type(times).__name__}\n",
    )
    .unwrap();
    let mut registry = Registry::with_builtins();
    registry.use_python(pyoco::flow::python::PythonPool::with_path(
        "python3",
        std::time::Duration::from_millis(500),
        vec![dir.path().to_path_buf()],
    ));
    let stack = Stack::builder().registry(registry).start().await;
    let flow = json!({
        "flow": {"graph": "sh >> py >> script", "defaults": {"who": "ab", "times": 2}},
        "tasks": {
            "sh": {"callable": "pyoco:shell", "inputs": {"argv": ["echo", "{{params.who}}-{{context.run_id}}"]}},
            "py": {"callable": "tpl_tasks:greet", "inputs": {"who": "{{params.who}}", "times": "{{params.times}}"}},
            "script": {"callable": "pyoco:python", "inputs": {
                "script": "def main(params, input_payload):\n    return input_payload\n",
                "input": {"greeting": "{{steps.py.output.text}}", "attempt": "{{context.attempt}}"}}},
        },
    });
    let run = stack.run_to_end(&flow.to_string(), "tools").await;
    assert_eq!(run["status"], "COMPLETED", "{run}");
    let records = &run["task_records"];
    assert_eq!(
        records["sh"]["output"]["stdout"],
        format!("ab-{}\n", run["run_id"].as_str().unwrap())
    );
    assert_eq!(
        records["py"]["output"],
        json!({"text": "abab", "type": "int"})
    );
    assert_eq!(
        records["script"]["output"],
        json!({"greeting": "abab", "attempt": 1})
    );
    stack.stop().await;
}
