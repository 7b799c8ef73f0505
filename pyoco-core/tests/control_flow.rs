//! Control flow (switch, repeat, foreach, until) end to end: submitted over HTTP, run by a
//! worker against a real nats-server, with native Rust and Python tasks.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyoco::Registry;
use pyoco::flow::python::PythonPool;
use pyoco::testkit::{Stack, submit_yaml, wait_for};
use serde_json::{Value, json};

const TASKS: &str = r#"
def show(ctx):
    return {
        "item": ctx.loop["item"],
        "index": ctx.loop["index"],
        "count": ctx.loop["count"],
        "row": ctx.get_var("row"),
        "depth": len(ctx.loops),
    }

def bump(bump=0):
    # Wired like the original: the parameter gets the previous output of the task `bump`.
    return bump + 1
"#;

struct Env {
    stack: Stack,
    /// Loop contexts the native task `t:collect` received, in call order.
    seen: Arc<Mutex<Vec<Value>>>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("loop_tasks.py"), TASKS).unwrap();
    let mut registry = Registry::with_builtins();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    registry.register("t:collect", &[], move |call| {
        let s = s.clone();
        async move {
            let ctx = call.loop_ctx.clone().unwrap_or(Value::Null);
            s.lock().unwrap().push(ctx.clone());
            Ok(ctx["item"].clone())
        }
    });
    registry.use_python(PythonPool::with_path(
        "python3",
        Duration::from_millis(500),
        vec![dir.path().to_path_buf()],
    ));
    let stack = Stack::builder()
        .config(|c| c.cancel_grace_period = Duration::from_secs(2))
        .registry(registry)
        .worker_id("cf")
        .start()
        .await;
    Env {
        stack,
        seen,
        _dir: dir,
    }
}

impl Env {
    async fn submit(&self, yaml: &str) -> String {
        submit_yaml(&self.stack.client, yaml, "cf", None).await
    }

    async fn terminal(&self, run_id: &str) -> Value {
        self.stack.wait_terminal(run_id).await
    }

    async fn run(&self, yaml: &str) -> Value {
        self.stack.run_to_end(yaml, "cf").await
    }

    async fn stop(self) {
        self.stack.stop().await;
    }
}

const SWITCH: &str = r#"
flow:
  graph: |
    flow >> start
    flow >> switch("$ctx.params.mode")[
        "fast" >> quick,
        "slow" >> (prepare >> careful),
    ]
    flow >> finish
  defaults: {mode: MODE}
tasks:
  start: {callable: "pyoco:echo", inputs: {value: 0}}
  quick: {callable: "pyoco:echo", inputs: {value: quick}}
  prepare: {callable: "pyoco:echo", inputs: {value: prepare}}
  careful: {callable: "pyoco:echo", inputs: {value: careful}}
  finish: {callable: "pyoco:echo", inputs: {value: done}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_on_a_param_runs_one_branch_and_fails_without_a_match() {
    let env = env().await;
    let run = env.run(&SWITCH.replace("MODE", "slow")).await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    assert_eq!(
        run["tasks"],
        json!({"start": "SUCCEEDED", "quick": "PENDING", "prepare": "SUCCEEDED", "careful": "SUCCEEDED", "finish": "SUCCEEDED"})
    );
    assert_eq!(run["error"], Value::Null);
    let rec = &run["task_records"];
    assert!(rec["finish"]["started_at"].as_f64() >= rec["careful"]["ended_at"].as_f64());

    let run = env.run(&SWITCH.replace("MODE", "other")).await;
    assert_eq!(run["status"], "FAILED", "{run:#}");
    assert_eq!(run["error"], "SwitchNoMatch: no case matches 'other'");
    assert_eq!(run["tasks"]["start"], "SUCCEEDED");
    assert_eq!(run["tasks"]["quick"], "PENDING");
    assert_eq!(run["tasks"]["finish"], "PENDING");

    // Bad expressions are rejected at submission with their position.
    let bad = SWITCH.replace("$ctx.params.mode", "len(mode)");
    let err = env
        .stack
        .client
        .submit_yaml(bad.as_bytes(), "cf", None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(
        err.to_string()
            .contains("invalid_flow_graph: line 2, column 20: function calls are not allowed"),
        "{err}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_runs_the_body_n_times_and_counts_iterations() {
    let env = env().await;
    let run = env
        .run("flow: {graph: 'flow >> (tick >> collect)[4] >> after'}\ntasks:\n  tick: {callable: 'pyoco:echo', inputs: {value: 1}}\n  collect: {callable: 't:collect'}\n  after: {callable: 'pyoco:echo', inputs: {value: '$node.tick.output'}}\n")
        .await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    let rec = &run["task_records"];
    assert_eq!(rec["tick"]["iterations"], 4);
    assert_eq!(rec["collect"]["iterations"], 4);
    assert_eq!(rec["after"]["iterations"], 1);
    let seen = env.seen.lock().unwrap().clone();
    let indexes: Vec<&Value> = seen.iter().map(|c| &c["index"]).collect();
    assert_eq!(indexes, vec![&json!(0), &json!(1), &json!(2), &json!(3)]);
    assert_eq!(seen[3]["type"], "repeat");
    assert_eq!(seen[3]["count"], 4);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreach_shows_the_item_to_python_and_native_tasks() {
    let env = env().await;
    let run = env
        .run("flow:\n  graph: \"(collect >> show)['$ctx.params.rows as row']\"\n  defaults: {rows: [{id: a}, {id: b}, {id: c}]}\ntasks:\n  collect: {callable: 't:collect'}\n  show: {callable: 'loop_tasks:show'}\n")
        .await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    let show = &run["task_records"]["show"];
    assert_eq!(show["iterations"], 3);
    assert_eq!(
        show["output"],
        json!({"item": {"id": "c"}, "index": 2, "count": 3, "row": {"id": "c"}, "depth": 1}),
        "the last iteration's record"
    );
    assert_eq!(run["task_records"]["collect"]["output"], json!({"id": "c"}));
    let seen = env.seen.lock().unwrap().clone();
    let items: Vec<&Value> = seen.iter().map(|c| &c["item"]).collect();
    assert_eq!(
        items,
        vec![
            &json!({"id": "a"}),
            &json!({"id": "b"}),
            &json!({"id": "c"})
        ]
    );
    assert_eq!(seen[0]["alias"], "row");
    assert_eq!(seen[0]["loops"].as_array().map(Vec::len), Some(1));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_stops_on_a_task_output_or_fails_after_max_iter() {
    let env = env().await;
    let yaml = "flow: {graph: \"flow >> bump % COND >> after\"}\ntasks:\n  bump: {callable: 'loop_tasks:bump'}\n  after: {callable: 'pyoco:echo', inputs: {value: '$node.bump.output'}}\n";
    let run = env
        .run(&yaml.replace("COND", "'$ctx.results.bump >= 3'"))
        .await;
    assert_eq!(run["status"], "COMPLETED", "{run:#}");
    assert_eq!(run["task_records"]["bump"]["output"], 3);
    assert_eq!(run["task_records"]["bump"]["iterations"], 3);
    assert_eq!(run["task_records"]["after"]["output"], 3);

    let run = env
        .run(&yaml.replace("COND", "('results.bump > 100', 5)"))
        .await;
    assert_eq!(run["status"], "FAILED", "{run:#}");
    assert_eq!(run["error"], "UntilMaxIterationsExceeded: 5");
    assert_eq!(run["task_records"]["bump"]["output"], 5);
    assert_eq!(run["tasks"]["after"], "PENDING");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_long_loop() {
    let env = env().await;
    let run_id = env
        .submit("flow: {graph: 'flow >> (tick >> pause)[100000] >> after'}\ntasks:\n  tick: {callable: 'pyoco:echo', inputs: {value: 1}}\n  pause: {callable: 'pyoco:sleep', inputs: {seconds: 0.05}}\n  after: {callable: 'pyoco:echo'}\n")
        .await;
    wait_for("a few iterations", Duration::from_secs(20), || async {
        let run = env.stack.client.get_run(&run_id, true).await.ok()?;
        (run["task_records"]["tick"]["iterations"].as_u64()? >= 3).then_some(())
    })
    .await;
    reqwest::Client::new()
        .post(format!("{}/runs/{run_id}/cancel", env.stack.gateway.url()))
        .send()
        .await
        .unwrap();
    let run = env.terminal(&run_id).await;
    assert_eq!(run["status"], "CANCELLED", "{run:#}");
    assert_eq!(run["tasks"]["after"], "CANCELLED");
    for (task, state) in run["tasks"].as_object().unwrap() {
        assert!(
            matches!(state.as_str(), Some("SUCCEEDED" | "CANCELLED")),
            "{task}: {state}"
        );
    }
    let iterations = run["task_records"]["tick"]["iterations"].as_u64().unwrap();
    assert!(iterations < 1000, "{iterations} iterations");
    env.stop().await;
}
