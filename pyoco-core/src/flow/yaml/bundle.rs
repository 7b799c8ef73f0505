//! Workflow bundles (`POST /runs/bundle`): several named workflows in one YAML document, an
//! entry workflow and its inputs. A task is either a `callable` or a `spawn` of another
//! workflow of the bundle, which the worker starts as a child run.
//!
//! The checks, their order and their reason codes follow the original's
//! `parse_workflow_bundle_bytes` (spec/flow-yaml.md, "Bundles"); like a `flow.yaml`, a bundle
//! task may also carry our policy keys, and one check of our own runs last
//! (`unknown_graph_task`). Values Python treats as false (`null`, `false`, `0`, `""`, `[]`,
//! `{}`) count as absent wherever the original writes `x or {}`.

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use serde_yaml::{Mapping, Value as Yaml};

use super::values::{document_version, key_string, normalize, to_json};
use super::{
    FlowSpec, RUNTIME_KEYS, TaskSpec, YamlError, YamlLimits, check_error_handlers, check_keys,
    check_templates, string_list,
};
use crate::flow::graph;

/// Allowed top-level keys of a bundle.
pub const BUNDLE_KEYS: &[&str] = &["version", "workflows", "submit"];
/// Allowed keys of one workflow.
pub const WORKFLOW_KEYS: &[&str] = &["tasks", "flow", "runtime"];
/// A bundle workflow's `flow` keys: the original's (no flow-level `on_error`, which a
/// flow.yaml has).
const BUNDLE_FLOW_KEYS: &[&str] = &["graph", "defaults"];
/// The original's keys of a bundle task (our policy keys are allowed too).
pub const BUNDLE_TASK_KEYS: &[&str] = &["callable", "inputs", "outputs", "spawn"];
/// Allowed keys of `submit`.
pub const SUBMIT_KEYS: &[&str] = &["entry_workflow", "inputs"];

/// Every reason code a bundle can be rejected with, for the spec-vs-code test.
/// `duplicate_workflow_name` is the original's, but a YAML mapping cannot hold a key twice
/// (the loader answers `invalid_yaml`), so neither implementation can reach it.
pub const BUNDLE_REASON_CODES: &[&str] = &[
    "invalid_utf8",
    "invalid_yaml",
    "yaml_too_large",
    "yaml_too_deep",
    "invalid_yaml_tag",
    "invalid_yaml_root",
    "unknown_bundle_top_level_keys",
    "invalid_bundle_workflows",
    "invalid_workflow_name",
    "duplicate_workflow_name",
    "invalid_bundle_workflow",
    "unknown_bundle_workflow_keys",
    "invalid_bundle_flow",
    "unknown_flow_keys",
    "missing_flow_graph",
    "invalid_flow_defaults",
    "invalid_tasks",
    "invalid_task_name",
    "invalid_task_config",
    "unknown_task_keys",
    "invalid_task_kind",
    "invalid_task_callable",
    "invalid_task_spawn",
    "invalid_task_inputs",
    "invalid_task_outputs",
    "invalid_task_retries",
    "invalid_task_timeout",
    "invalid_task_fail_policy",
    "invalid_task_cache_ttl",
    "invalid_task_circuit_breaker",
    "invalid_task_memory",
    "invalid_runtime",
    "unknown_runtime_keys",
    "invalid_runtime_expose_env",
    "invalid_flow_graph_syntax",
    "invalid_bundle_submit",
    "unknown_bundle_submit_keys",
    "invalid_entry_workflow",
    "missing_entry_workflow",
    "invalid_bundle_submit_inputs",
    "unknown_spawn_target",
    "invalid_version",
    "unknown_graph_task",
];

/// A validated bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub version: i64,
    /// The workflows in the order written.
    pub workflows: IndexMap<String, FlowSpec>,
    /// `submit.entry_workflow`: the workflow the root run runs.
    pub entry_workflow: String,
    /// `submit.inputs`: the root run's params (`flow.defaults` are ignored in bundles).
    pub inputs: Map<String, Json>,
}

impl Bundle {
    /// The workflow called `name`.
    pub fn workflow(&self, name: &str) -> Option<&FlowSpec> {
        self.workflows.get(name)
    }

    /// True when the entry workflow's graph uses a spawn task: such a run waits for approval
    /// when `PYOCO_SPAWN_REQUIRES_APPROVAL` is on.
    pub fn entry_spawns(&self) -> bool {
        self.workflow(&self.entry_workflow)
            .is_some_and(|w| !reachable_spawn_tasks(w).is_empty())
    }
}

/// The spawn tasks `flow`'s graph uses (the original's "reachable" spawn tasks: named in the
/// graph, whether or not a condition lets them run).
pub fn reachable_spawn_tasks(flow: &FlowSpec) -> Vec<&str> {
    flow.graph
        .nodes
        .iter()
        .filter(|n| flow.task(n).is_some_and(|t| t.spawn.is_some()))
        .map(String::as_str)
        .collect()
}

/// Python's truth value of a YAML value: `null`, `false`, `0`, `""`, `[]` and `{}` are false.
fn truthy(v: Option<&Yaml>) -> bool {
    match v {
        None | Some(Yaml::Null) => false,
        Some(Yaml::Bool(b)) => *b,
        Some(Yaml::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Yaml::String(s)) => !s.is_empty(),
        Some(Yaml::Sequence(s)) => !s.is_empty(),
        Some(Yaml::Mapping(m)) => !m.is_empty(),
        Some(Yaml::Tagged(_)) => true,
    }
}

/// `x or {}` then "must be a mapping": the mapping, `Some(empty)` for a false value.
fn mapping_or_empty(v: Option<&Yaml>) -> Option<Mapping> {
    match v {
        Some(Yaml::Mapping(m)) => Some(m.clone()),
        other if !truthy(other) => Some(Mapping::new()),
        _ => None,
    }
}

fn json_map(m: &Mapping) -> Map<String, Json> {
    m.iter().map(|(k, v)| (key_string(k), to_json(v))).collect()
}

/// Parses and validates a bundle within `limits`.
pub fn parse_bundle(bytes: &[u8], limits: YamlLimits) -> Result<Bundle, YamlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| YamlError::code("invalid_utf8"))?;
    let raw: Yaml =
        crate::flow::yaml_guard::load(text, limits).map_err(|e| YamlError::code(e.reason()))?;
    let doc = normalize(raw).ok_or_else(|| YamlError::code("invalid_yaml"))?;
    let Yaml::Mapping(root) = doc else {
        return Err(YamlError::code("invalid_yaml_root"));
    };
    check_keys(&root, &[BUNDLE_KEYS], |keys| {
        YamlError::detail("unknown_bundle_top_level_keys", keys)
    })?;
    let workflows_raw = match root.get("workflows") {
        Some(Yaml::Mapping(m)) if !m.is_empty() => m,
        _ => return Err(YamlError::code("invalid_bundle_workflows")),
    };
    let mut workflows = IndexMap::with_capacity(workflows_raw.len());
    for (key, value) in workflows_raw {
        let name = match key {
            Yaml::String(s) if !s.trim().is_empty() => s.clone(),
            _ => return Err(YamlError::code("invalid_workflow_name")),
        };
        if workflows.contains_key(&name) {
            return Err(YamlError::detail("duplicate_workflow_name", &name));
        }
        let flow = parse_workflow(&name, value)?;
        workflows.insert(name, flow);
    }

    let Some(Yaml::Mapping(submit)) = root.get("submit") else {
        return Err(YamlError::code("invalid_bundle_submit"));
    };
    check_keys(submit, &[SUBMIT_KEYS], |keys| {
        YamlError::detail("unknown_bundle_submit_keys", keys)
    })?;
    let entry_workflow = match submit.get("entry_workflow") {
        Some(Yaml::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(YamlError::code("invalid_entry_workflow")),
    };
    if !workflows.contains_key(&entry_workflow) {
        return Err(YamlError::detail("missing_entry_workflow", &entry_workflow));
    }
    let inputs = mapping_or_empty(submit.get("inputs"))
        .ok_or_else(|| YamlError::code("invalid_bundle_submit_inputs"))?;

    for (wf, flow) in &workflows {
        for task in &flow.tasks {
            if let Some(target) = &task.spawn
                && !workflows.contains_key(target)
            {
                return Err(YamlError::detail(
                    "unknown_spawn_target",
                    format!("{wf}.{}: {target}", task.name),
                ));
            }
        }
    }

    let version = document_version(root.get("version"))?;

    // Ours, after all of the original's: a graph may only name tasks its workflow defines.
    for (wf, flow) in workflows.iter_mut() {
        if let Some(unknown) = flow.graph.nodes.iter().find(|n| flow.task(n).is_none()) {
            return Err(YamlError::detail(
                "unknown_graph_task",
                format!("{wf}: {unknown}"),
            ));
        }
        flow.version = version;
    }

    Ok(Bundle {
        version,
        workflows,
        entry_workflow,
        inputs: json_map(&inputs),
    })
}

fn parse_workflow(wf: &str, value: &Yaml) -> Result<FlowSpec, YamlError> {
    let Yaml::Mapping(conf) = value else {
        return Err(YamlError::detail("invalid_bundle_workflow", wf));
    };
    check_keys(conf, &[WORKFLOW_KEYS], |keys| {
        YamlError::detail("unknown_bundle_workflow_keys", format!("{wf}: {keys}"))
    })?;
    let Some(Yaml::Mapping(flow)) = conf.get("flow") else {
        return Err(YamlError::detail("invalid_bundle_flow", wf));
    };
    check_keys(flow, &[BUNDLE_FLOW_KEYS], |keys| {
        YamlError::detail("unknown_flow_keys", format!("{wf}: {keys}"))
    })?;
    let graph_source = match flow.get("graph") {
        Some(Yaml::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(YamlError::detail("missing_flow_graph", wf)),
    };
    // Validated, then ignored: a bundle run's params are `submit.inputs` (or the spawn's).
    mapping_or_empty(flow.get("defaults"))
        .ok_or_else(|| YamlError::detail("invalid_flow_defaults", wf))?;
    let task_map = mapping_or_empty(conf.get("tasks"))
        .ok_or_else(|| YamlError::detail("invalid_tasks", wf))?;
    let mut tasks = Vec::with_capacity(task_map.len());
    for (key, value) in &task_map {
        tasks.push(parse_task(wf, key, value)?);
    }
    let runtime = mapping_or_empty(conf.get("runtime"))
        .ok_or_else(|| YamlError::detail("invalid_runtime", wf))?;
    check_keys(&runtime, &[RUNTIME_KEYS], |keys| {
        YamlError::detail("unknown_runtime_keys", format!("{wf}: {keys}"))
    })?;
    let expose_env = if truthy(runtime.get("expose_env")) {
        string_list(runtime.get("expose_env"))
    } else {
        Some(Vec::new())
    }
    .ok_or_else(|| YamlError::detail("invalid_runtime_expose_env", wf))?;
    let graph = graph::parse(&graph_source)
        .map_err(|e| YamlError::detail("invalid_flow_graph_syntax", format!("{wf}: {e}")))?;
    // Task-level `on_error` and templates follow the flow.yaml rules.
    check_error_handlers(&graph, &tasks, None)?;
    check_templates(&tasks)?;
    Ok(FlowSpec {
        version: 1,
        graph_source,
        graph,
        defaults: Map::new(),
        tasks,
        expose_env,
        on_error: None,
    })
}

fn parse_task(wf: &str, key: &Yaml, value: &Yaml) -> Result<TaskSpec, YamlError> {
    let name = match key {
        Yaml::String(s) if !s.trim().is_empty() => s.clone(),
        _ => return Err(YamlError::detail("invalid_task_name", wf)),
    };
    let at = format!("{wf}.{name}");
    let Yaml::Mapping(config) = value else {
        return Err(YamlError::detail("invalid_task_config", &at));
    };
    check_keys(
        config,
        &[BUNDLE_TASK_KEYS, crate::flow::policy::POLICY_KEYS],
        |keys| YamlError::detail("unknown_task_keys", format!("{at}: {keys}")),
    )?;
    let callable = config.get("callable");
    let spawn = config.get("spawn");
    if truthy(callable) == truthy(spawn) {
        return Err(YamlError::detail("invalid_task_kind", &at));
    }
    let callable = match callable {
        None | Some(Yaml::Null) => None,
        Some(Yaml::String(s)) if s.contains(':') => Some(s.clone()),
        Some(_) => return Err(YamlError::detail("invalid_task_callable", &at)),
    };
    let spawn = match spawn {
        None | Some(Yaml::Null) => None,
        Some(Yaml::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(YamlError::detail("invalid_task_spawn", &at)),
    };
    let inputs = mapping_or_empty(config.get("inputs"))
        .ok_or_else(|| YamlError::detail("invalid_task_inputs", &at))?;
    let outputs = if truthy(config.get("outputs")) {
        string_list(config.get("outputs"))
    } else {
        Some(Vec::new())
    }
    .ok_or_else(|| YamlError::detail("invalid_task_outputs", &at))?;
    let policy = crate::flow::policy::parse(&at, config)?;
    Ok(TaskSpec {
        name,
        callable,
        spawn,
        inputs: json_map(&inputs),
        outputs,
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "version: 1
workflows:
  main:
    flow: {graph: 'prep >> fan', defaults: {ignored: true}}
    tasks:
      prep: {callable: 'pyoco:echo', inputs: {value: 1}}
      fan: {spawn: child, inputs: {v: 3}}
  child:
    flow: {graph: work}
    tasks:
      work: {callable: 'pyoco:echo'}
submit: {entry_workflow: main, inputs: {x: 1}}
";

    fn reason(yaml: &str) -> String {
        parse_bundle(yaml.as_bytes(), YamlLimits::default())
            .unwrap_err()
            .reason
    }

    #[test]
    fn parses_workflows_entry_and_spawn_tasks() {
        let b = parse_bundle(OK.as_bytes(), YamlLimits::default()).unwrap();
        assert_eq!(b.entry_workflow, "main");
        assert_eq!(b.inputs["x"], 1);
        assert!(b.entry_spawns());
        let main = b.workflow("main").unwrap();
        assert!(main.defaults.is_empty(), "defaults are ignored in bundles");
        assert_eq!(main.task("fan").unwrap().spawn.as_deref(), Some("child"));
        assert_eq!(reachable_spawn_tasks(main), vec!["fan"]);
        assert!(reachable_spawn_tasks(b.workflow("child").unwrap()).is_empty());
    }

    #[test]
    fn reasons_follow_the_original() {
        assert_eq!(reason("- a"), "invalid_yaml_root");
        assert_eq!(
            reason("workflows: {}\nextra: 1\nzz: 2"),
            "unknown_bundle_top_level_keys: ['extra', 'zz']"
        );
        assert_eq!(reason("workflows: {}"), "invalid_bundle_workflows");
        assert_eq!(
            reason("workflows: {m: {flow: {graph: a}, tasks: {a: {callable: 'x:y', spawn: m}}}}"),
            "invalid_task_kind: m.a"
        );
        assert_eq!(
            reason("workflows: {m: {flow: {graph: a}, tasks: {a: {spawn: ''}}}}"),
            "invalid_task_kind: m.a"
        );
        assert_eq!(
            reason("workflows: {m: {flow: {graph: a}, tasks: {a: {spawn: 3}}}}"),
            "invalid_task_spawn: m.a"
        );
        assert_eq!(
            reason(
                "workflows: {m: {flow: {graph: a}, tasks: {a: {spawn: n}}}}\nsubmit: {entry_workflow: m}"
            ),
            "unknown_spawn_target: m.a: n"
        );
        assert_eq!(
            reason(
                "workflows: {m: {flow: {graph: b}, tasks: {a: {callable: 'x:y'}}}}\nsubmit: {entry_workflow: m}"
            ),
            "unknown_graph_task: m: b"
        );
    }
}
