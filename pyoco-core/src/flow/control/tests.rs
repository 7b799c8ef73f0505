#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::flow::engine::{EngineState, Outcome, RunInfo, run_flow};
use crate::flow::tasks::{Registry, TaskError};
use crate::flow::yaml::parse_flow_yaml;
use crate::model::TaskState;

fn run_info(params: &serde_json::Map<String, Value>) -> RunInfo {
    RunInfo {
        run_id: "r".into(),
        flow_name: "f".into(),
        params: Arc::new(params.clone()),
        services: Arc::new(crate::flow::services::NoServices),
        tenant_id: None,
        tag: "default".into(),
    }
}

use serde_json::Value;

async fn run(yaml: &str, registry: &Registry) -> (Outcome, EngineState) {
    let spec = parse_flow_yaml(yaml.as_bytes()).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    let (tx, _rx) = tokio::sync::watch::channel(EngineState::default());
    let outcome = run_flow(
        &spec,
        registry,
        &run_info(&spec.defaults),
        &tx,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let state = tx.borrow().clone();
    (outcome, state)
}

/// `t:count` returns how often it was called; `t:loop` returns its loop context.
fn registry() -> (Registry, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut reg = Registry::with_builtins();
    let c = calls.clone();
    reg.register("t:count", &[], move |_| {
        let c = c.clone();
        async move { Ok(json!(c.fetch_add(1, Ordering::SeqCst) + 1)) }
    });
    reg.register("t:loop", &[], |call| async move {
        Ok(call.loop_ctx.unwrap_or(Value::Null))
    });
    (reg, calls)
}

#[tokio::test]
async fn switch_runs_the_matching_case_and_leaves_the_others_pending() {
    let (reg, _) = registry();
    let yaml = |mode: &str| {
        format!(
            "flow:\n  graph: |\n    flow >> start >> switch(\"$ctx.params.mode\")[\"fast\" >> f, 2 >> two, \"*\" >> other] >> end\n  defaults: {{mode: {mode}}}\ntasks:\n  start: {{callable: 'pyoco:echo', inputs: {{value: 1}}}}\n  f: {{callable: 'pyoco:echo', inputs: {{value: fast}}}}\n  two: {{callable: 'pyoco:echo', inputs: {{value: 2}}}}\n  other: {{callable: 'pyoco:echo', inputs: {{value: other}}}}\n  end: {{callable: 'pyoco:echo', inputs: {{value: '$node.start.output'}}}}\n"
        )
    };
    let (outcome, state) = run(&yaml("fast"), &reg).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(state.tasks["f"], TaskState::Succeeded);
    assert_eq!(state.tasks["two"], TaskState::Pending);
    assert_eq!(state.tasks["other"], TaskState::Pending);
    assert_eq!(state.tasks["end"], TaskState::Succeeded);
    assert!(
        state.task_records["end"].started_at >= state.task_records["f"].ended_at,
        "steps run in order"
    );
    assert_eq!(state.task_records["f"].extra["iterations"], json!(1));
    // Python equality: 2.0 == 2; anything else takes the default.
    let (_, state) = run(&yaml("2.0"), &reg).await;
    assert_eq!(state.tasks["two"], TaskState::Succeeded);
    let (_, state) = run(&yaml("slow"), &reg).await;
    assert_eq!(state.tasks["other"], TaskState::Succeeded);
    assert_eq!(state.tasks["f"], TaskState::Pending);

    let no_default = "flow: {graph: 'a >> switch(\"mode\")[\"x\" >> b] >> c', defaults: {mode: 'y'}}\ntasks: {a: {callable: 'pyoco:echo'}, b: {callable: 'pyoco:echo'}, c: {callable: 'pyoco:echo'}}\n";
    let (outcome, state) = run(no_default, &reg).await;
    assert_eq!(
        outcome,
        Outcome::Failed("SwitchNoMatch: no case matches 'y'".into())
    );
    assert_eq!(state.tasks["a"], TaskState::Succeeded);
    assert_eq!(state.tasks["b"], TaskState::Pending);
    assert_eq!(state.tasks["c"], TaskState::Pending);
}

#[tokio::test]
async fn repeat_overwrites_the_record_and_counts_iterations() {
    let (reg, calls) = registry();
    let yaml = "flow: {graph: 'flow >> (tick >> where)[3] >> done'}\ntasks: {tick: {callable: 't:count'}, where: {callable: 't:loop'}, done: {callable: 'pyoco:echo', inputs: {value: '$node.tick.output'}}}\n";
    let (outcome, state) = run(yaml, &reg).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let tick = &state.task_records["tick"];
    assert_eq!(tick.output, json!(3), "the last iteration's output");
    assert_eq!(tick.extra["iterations"], json!(3));
    assert_eq!(state.task_records["done"].output, json!(3));
    let ctx = &state.task_records["where"].output;
    assert_eq!(ctx["type"], "repeat");
    assert_eq!(
        (
            ctx["index"].clone(),
            ctx["iteration"].clone(),
            ctx["count"].clone()
        ),
        (json!(2), json!(3), json!(3))
    );
    assert_eq!(ctx["loops"].as_array().map(Vec::len), Some(1));
    // Zero times: the body never runs and stays PENDING.
    let (outcome, state) = run(&yaml.replace("[3]", "[0]"), &reg).await;
    assert_eq!(
        outcome,
        Outcome::Failed("Node 'tick' result not found in context.".into()),
        "its input refers to a task that never ran"
    );
    assert_eq!(state.tasks["tick"], TaskState::Pending);
}

#[tokio::test]
async fn foreach_passes_items_and_nested_frames() {
    let (reg, _) = registry();
    let yaml = "flow:\n  graph: \"(show['$ctx.params.rows as row'] >> (seen % 'g >= 0'))['params.groups as g']\"\n  defaults: {groups: [1, 2], rows: [{n: 1}, {n: 2}, {n: 3}]}\ntasks: {show: {callable: 't:loop'}, seen: {callable: 't:loop'}}\n";
    let (outcome, state) = run(yaml, &reg).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(state.task_records["show"].extra["iterations"], json!(6));
    let show = &state.task_records["show"].output;
    assert_eq!(show["item"], json!({"n": 3}));
    assert_eq!(show["alias"], "row");
    assert_eq!(
        (show["index"].clone(), show["count"].clone()),
        (json!(2), json!(3))
    );
    let loops = show["loops"].as_array().unwrap();
    assert_eq!(loops.len(), 2);
    assert_eq!(loops[0]["alias"], "g");
    assert_eq!(loops[0]["item"], 2);
    // The until inside the outer foreach sees its own frame and the group's.
    let seen = &state.task_records["seen"].output;
    assert_eq!(seen["type"], "until");
    assert_eq!(seen["count"], Value::Null);
    assert_eq!(seen["loops"][0]["item"], 2);

    let bad = "flow: {graph: \"a['params.x as i']\", defaults: {x: 5}}\ntasks: {a: {callable: 'pyoco:echo'}}\n";
    let (outcome, _) = run(bad, &reg).await;
    assert_eq!(
        outcome,
        Outcome::Failed("foreach source 'params.x' is not a list: 5".into())
    );
}

#[tokio::test]
async fn foreach_fails_on_unknown_alias_at_validation() {
    let err = parse_flow_yaml(b"flow: {graph: \"a % 'row.n'\"}\ntasks: {a: {}}\n").unwrap_err();
    assert_eq!(
        err.reason,
        "invalid_flow_graph: line 1, column 6: unknown context '$ctx.row' (expected params, results, loop, loops or a foreach alias in scope)"
    );
}

#[tokio::test]
async fn until_checks_after_each_pass_and_gives_up_at_max_iter() {
    let (reg, calls) = registry();
    let yaml = "flow: {graph: \"flow >> c % '$ctx.results.c >= 3' >> after\"}\ntasks: {c: {callable: 't:count'}, after: {callable: 'pyoco:echo', inputs: {value: '$node.c.output'}}}\n";
    let (outcome, state) = run(yaml, &reg).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(state.task_records["c"].extra["iterations"], json!(3));
    assert_eq!(state.task_records["after"].output, json!(3));
    // The body runs at least once even if the condition already holds.
    let (reg, calls) = registry();
    let (_, _) = run(&yaml.replace(">= 3", "> -1"), &reg).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (reg, calls) = registry();
    let (outcome, state) = run(
        &yaml.replace("'$ctx.results.c >= 3'", "('results.c > 100', 4)"),
        &reg,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Failed("UntilMaxIterationsExceeded: 4".into())
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(state.tasks["after"], TaskState::Pending);
    // A condition that cannot be evaluated fails the run.
    let (reg, _) = registry();
    let (outcome, _) = run(
        &yaml.replace("'$ctx.results.c >= 3'", "'results.c > \\\"x\\\"'"),
        &reg,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Failed("until condition 'results.c > \"x\"' failed: '>' not supported between instances of 'int' and 'str'".into())
    );
}

#[tokio::test]
async fn policies_work_inside_loops() {
    let (mut reg, _) = registry();
    let flaky = Arc::new(AtomicUsize::new(0));
    let f = flaky.clone();
    reg.register("t:flaky", &[], move |_| {
        let f = f.clone();
        async move {
            // Every other call fails.
            if f.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                Err(TaskError::new("flake"))
            } else {
                Ok(json!("ok"))
            }
        }
    });
    let yaml = "flow: {graph: 'x[3]'}\ntasks: {x: {callable: 't:flaky', retries: 1, retry_backoff_ms: 1}}\n";
    let (outcome, state) = run(yaml, &reg).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(flaky.load(Ordering::SeqCst), 6);
    assert_eq!(state.task_records["x"].extra["attempts"], json!(2));
    // isolate: the iteration fails, the loop stops, the run completes with the error.
    let yaml = "flow: {graph: '(bad >> never)[3] >> after; other'}\ntasks:\n  bad: {callable: 'pyoco:fail', inputs: {message: nope}, fail_policy: isolate}\n  never: {callable: 'pyoco:echo'}\n  after: {callable: 'pyoco:echo'}\n  other: {callable: 'pyoco:echo'}\n";
    let (outcome, state) = run(yaml, &reg).await;
    assert_eq!(outcome, Outcome::Completed(Some("nope".into())));
    assert_eq!(state.task_records["bad"].extra["iterations"], json!(1));
    assert_eq!(state.tasks["never"], TaskState::Failed);
    assert_eq!(state.tasks["after"], TaskState::Failed);
    assert_eq!(state.tasks["other"], TaskState::Succeeded);
    // timeout inside a loop: the run fails like in DAG mode.
    let yaml = "flow: {graph: 's[2]'}\ntasks: {s: {callable: 'pyoco:sleep', inputs: {seconds: 10}, timeout_sec: 0.1}}\n";
    let (outcome, _) = run(yaml, &reg).await;
    assert_eq!(
        outcome,
        Outcome::Failed("Task 's' exceeded timeout of 0.1s".into())
    );
}

#[tokio::test]
async fn a_failure_cancels_concurrent_steps_and_a_cancel_stops_a_loop() {
    let (reg, _) = registry();
    let yaml = "flow: {graph: 'long & (boom)[2]'}\ntasks: {long: {callable: 'pyoco:sleep', inputs: {seconds: 30}}, boom: {callable: 'pyoco:fail', inputs: {message: boom}}}\n";
    let t0 = std::time::Instant::now();
    let (outcome, state) = run(yaml, &reg).await;
    assert_eq!(outcome, Outcome::Failed("boom".into()));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(state.tasks["long"], TaskState::Cancelled);

    let spec = parse_flow_yaml(b"flow: {graph: '(a >> s)[1000] >> z'}\ntasks: {a: {callable: 'pyoco:echo'}, s: {callable: 'pyoco:sleep', inputs: {seconds: 0.05}}, z: {callable: 'pyoco:echo'}}\n").unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(EngineState::default());
    let cancel = tokio_util::sync::CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let outcome = run_flow(&spec, &reg, &run_info(&spec.defaults), &tx, &cancel).await;
    assert_eq!(outcome, Outcome::Cancelled);
    let state = tx.borrow().clone();
    let runs = state.task_records["a"].extra["iterations"]
        .as_u64()
        .unwrap();
    assert!(
        (2..20).contains(&runs),
        "{runs} iterations before the cancel"
    );
    assert_eq!(state.tasks["z"], TaskState::Cancelled);
    assert!(
        state
            .tasks
            .values()
            .all(|s| *s != TaskState::Running && *s != TaskState::Pending),
        "{:?}",
        state.tasks
    );
}

#[tokio::test]
async fn steps_inside_a_body_keep_their_dag_structure() {
    let (reg, _) = registry();
    let yaml = "flow: {graph: '(p & q >> r)[2]'}\ntasks: {p: {callable: 'pyoco:sleep', inputs: {seconds: 0.2}}, q: {callable: 'pyoco:sleep', inputs: {seconds: 0.2}}, r: {callable: 'pyoco:echo'}}\n";
    let t0 = std::time::Instant::now();
    let (outcome, state) = run(yaml, &reg).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert!(
        t0.elapsed() < Duration::from_millis(750),
        "p and q ran concurrently: {:?}",
        t0.elapsed()
    );
    assert!(state.task_records["r"].started_at >= state.task_records["q"].ended_at);
}

#[tokio::test]
async fn the_spec_example_runs_as_documented() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/examples/control-flow.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    let (reg, _) = registry();
    let (outcome, state) = run(&yaml, &reg).await;
    assert_eq!(outcome, Outcome::Completed(None));
    assert_eq!(state.tasks["skip"], TaskState::Pending);
    assert_eq!(state.tasks["merge"], TaskState::Succeeded);
    let iterations = |t: &str| state.task_records[t].extra["iterations"].clone();
    assert_eq!(iterations("deploy"), json!(2));
    assert_eq!(iterations("warmup"), json!(3));
    assert_eq!(iterations("poll"), json!(1));
    assert_eq!(state.task_records["report"].output, json!({"ready": true}));
}
