//! The execution plan of a flow, without running anything (`POST /flows/{name}/dry-run`): in
//! which order its tasks can start (stages: every task of a stage waits only for tasks of
//! earlier ones), what each waits for and how (AND- or OR-join), what it feeds (fan-out), and
//! its policies. Pure.

use serde_json::{Value, json};

use super::graph::Cond;
use super::policy::FailPolicy;
use super::yaml::FlowSpec;

fn fail_policy(p: FailPolicy) -> &'static str {
    match p {
        FailPolicy::Stop => "stop",
        FailPolicy::Isolate => "isolate",
        FailPolicy::Continue => "continue",
    }
}

fn join(cond: Option<&Cond>) -> Value {
    match cond {
        None => Value::Null,
        Some(Cond::Task(_)) => json!("one"),
        Some(Cond::All(_)) => json!("all"),
        Some(Cond::Any(_)) => json!("any"),
    }
}

/// The plan of `spec` as JSON: `{"mode", "stages", "tasks", "on_error"}` (see
/// spec/http-api.md, "POST /flows/{name}/dry-run").
pub fn plan(spec: &FlowSpec) -> Value {
    let graph = &spec.graph;
    let n = graph.nodes.len();
    let needs: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            graph
                .conditions
                .get(i)
                .and_then(Option::as_ref)
                .map(Cond::tasks)
                .unwrap_or_default()
        })
        .collect();
    // Graphs are acyclic (validated) and a node's needs come before it in `nodes`, but do
    // not rely on the order: relax until nothing changes (at most n rounds).
    let mut stage = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for i in 0..n {
            let s = needs[i].iter().map(|&j| stage[j] + 1).max().unwrap_or(0);
            if s != stage[i] {
                stage[i] = s;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let control = graph.control.is_some();
    let stages: Vec<Vec<&str>> = if control {
        Vec::new()
    } else {
        let depth = stage.iter().max().map_or(0, |m| m + 1);
        (0..depth)
            .map(|s| {
                (0..n)
                    .filter(|&i| stage[i] == s)
                    .map(|i| graph.nodes[i].as_str())
                    .collect()
            })
            .collect()
    };
    let tasks: Vec<Value> = (0..n)
        .map(|i| {
            let name = &graph.nodes[i];
            let task = spec.task(name);
            let policy = task.map(|t| t.policy.clone()).unwrap_or_default();
            let feeds: Vec<&str> = (0..n)
                .filter(|&j| needs[j].contains(&i))
                .map(|j| graph.nodes[j].as_str())
                .collect();
            json!({
                "name": name,
                "callable": task.and_then(|t| t.callable.as_deref()),
                "stage": (!control).then_some(stage[i]),
                "needs": needs[i].iter().map(|&j| graph.nodes[j].as_str()).collect::<Vec<_>>(),
                "join": join(graph.conditions.get(i).and_then(Option::as_ref)),
                "feeds": feeds,
                "inputs": task.map(|t| t.inputs.clone()),
                "retries": policy.retries,
                "timeout_sec": policy.timeout.map(|d| d.as_secs_f64()),
                "fail_policy": fail_policy(policy.fail_policy),
                "cache_ttl_sec": policy.cache_ttl.map(|d| d.as_secs_f64()),
                "circuit_breaker": policy.breaker.is_some(),
                "on_error": spec.error_handler(name).map(|h| h.name.as_str()),
            })
        })
        .collect();
    json!({
        "mode": if control { "control" } else { "dag" },
        "stages": stages,
        "tasks": tasks,
        "on_error": spec.on_error,
        "params": spec.defaults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::yaml::parse_flow_yaml;

    #[test]
    fn stages_joins_and_fan_out_follow_the_graph() {
        let spec = parse_flow_yaml(
            b"flow: {graph: 'a >> (b & c) >> d; (c | b) >> e', on_error: h}\ntasks:\n  a: {callable: 'x:a', retries: 2}\n  b: {callable: 'x:b', continue_on_error: true}\n  c: {callable: 'x:c', timeout_sec: 1.5}\n  d: {callable: 'x:d'}\n  e: {callable: 'x:e'}\n  h: {callable: 'x:h'}\n",
        )
        .unwrap();
        let plan = plan(&spec);
        assert_eq!(plan["mode"], "dag");
        assert_eq!(plan["stages"], json!([["a"], ["b", "c"], ["d", "e"]]));
        let task = |name: &str| {
            plan["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(task("a")["feeds"], json!(["b", "c"]));
        assert_eq!(task("a")["retries"], 2);
        assert_eq!(task("d")["join"], "all");
        assert_eq!(task("d")["needs"], json!(["b", "c"]));
        assert_eq!(task("e")["join"], "any");
        assert_eq!(task("b")["fail_policy"], "continue");
        assert_eq!(task("c")["timeout_sec"], 1.5);
        assert_eq!(task("c")["on_error"], "h");
    }
}
