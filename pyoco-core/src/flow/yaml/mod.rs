//! `flow.yaml` parsing and strict validation.
//!
//! The checks, their order and their reason codes follow the original's
//! `parse_workflow_yaml_bytes`; checks of our own run last
//! (`invalid_flow_graph`, `unknown_graph_task`, `invalid_builtin_inputs`). `spec/flow-yaml.md` is the
//! user-facing contract.
//!
//! YAML is parsed with serde_yaml, i.e. YAML 1.2, while the original uses
//! PyYAML's YAML 1.1. Known differences: `yes`/`no`/`on`/`off` stay strings
//! (PyYAML makes them booleans), dates stay strings, `017` is a string rather
//! than an octal number, and duplicate mapping keys are rejected
//! (`invalid_yaml`) where PyYAML keeps the last one. Merge keys (`<<`) are
//! applied with PyYAML's precedence and key order. Tags other than the core
//! ones and non-finite floats (`.inf`, `.nan`) give `invalid_yaml` because the
//! values must be representable as JSON.

pub use super::yaml_guard::YamlLimits;
use serde_json::{Map, Value as Json};
use serde_yaml::{Mapping, Value as Yaml};
use sha2::{Digest, Sha256};

use crate::flow::graph::{self, Graph};
use values::{document_version, key_string, normalize, py_repr, to_json};

pub mod bundle;
mod problems;
#[cfg(test)]
mod tests;
mod values;

pub use problems::{Problem, validate_all};

/// Allowed top-level keys.
pub const TOP_LEVEL_KEYS: &[&str] = &["version", "flow", "tasks", "runtime"];
/// Allowed keys of `flow`.
pub const FLOW_KEYS: &[&str] = &["graph", "defaults", "on_error"];
/// The original's keys of a task; a task may also have our policy keys
/// ([`super::policy::POLICY_KEYS`]).
pub const TASK_KEYS: &[&str] = &["callable", "inputs", "outputs"];
/// Allowed keys of `runtime`.
pub const RUNTIME_KEYS: &[&str] = &["expose_env"];

/// Every reason code this module can return, for the spec-vs-code test.
pub const REASON_CODES: &[&str] = &[
    "invalid_utf8",
    "invalid_yaml",
    "yaml_too_large",
    "yaml_too_deep",
    "invalid_yaml_tag",
    "invalid_yaml_root",
    "unsupported_key_flows",
    "unsupported_key_discovery",
    "unknown_top_level_keys",
    "missing_flow",
    "invalid_flow",
    "unknown_flow_keys",
    "missing_flow_graph",
    "invalid_flow_defaults",
    "invalid_tasks",
    "invalid_task_name",
    "invalid_task_config",
    "unknown_task_keys",
    "invalid_task_callable",
    "invalid_task_inputs",
    "invalid_task_outputs",
    "invalid_task_retries",
    "invalid_task_timeout",
    "invalid_task_fail_policy",
    "invalid_task_cache_ttl",
    "invalid_task_circuit_breaker",
    "invalid_task_memory",
    "invalid_on_error",
    "invalid_runtime",
    "unknown_runtime_keys",
    "invalid_runtime_expose_env",
    "invalid_version",
    "invalid_flow_graph",
    "unknown_graph_task",
    "invalid_builtin_inputs",
    "unknown_on_error_task",
    "invalid_template",
];

/// A validated single-flow `flow.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpec {
    pub version: i64,
    /// `flow.graph` exactly as written.
    pub graph_source: String,
    pub graph: Graph,
    /// `flow.defaults`: the run's params.
    pub defaults: Map<String, Json>,
    /// Every task defined under `tasks`, in the order written.
    pub tasks: Vec<TaskSpec>,
    /// `runtime.expose_env` (parsed; the original ignores it too).
    pub expose_env: Vec<String>,
    /// `flow.on_error`: the task to run when a task without its own `on_error` fails for good.
    pub on_error: Option<String>,
}

/// One entry of `tasks`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    /// `module:attribute`, if given.
    pub callable: Option<String>,
    /// The bundle workflow this task starts as a child run (`spawn:` in a bundle; always
    /// `None` in a single-flow `flow.yaml`).
    pub spawn: Option<String>,
    pub inputs: Map<String, Json>,
    pub outputs: Vec<String>,
    /// Retries, timeout, fail policy, cache and circuit breaker (our additions).
    pub policy: super::policy::TaskPolicy,
}

impl FlowSpec {
    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The task that handles a failure of task `name`: its own `on_error`, else the flow's.
    pub fn error_handler(&self, name: &str) -> Option<&TaskSpec> {
        let handler = self
            .task(name)
            .and_then(|t| t.policy.on_error.as_deref())
            .or(self.on_error.as_deref())?;
        // A handler's own failure is not handled again (validation forbids the chain).
        (handler != name).then(|| self.task(handler))?
    }

    /// What a failure of task `name` does to the run (the default for a task not declared).
    pub fn fail_policy(&self, name: &str) -> super::policy::FailPolicy {
        self.task(name)
            .map(|t| t.policy.fail_policy)
            .unwrap_or_default()
    }
}

/// A rejected `flow.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct YamlError {
    /// Just the code, e.g. `unknown_task_keys`.
    pub code: &'static str,
    /// The full reason, e.g. `unknown_task_keys: train: ['use']`.
    pub reason: String,
}

impl YamlError {
    fn code(code: &'static str) -> Self {
        YamlError {
            code,
            reason: code.to_string(),
        }
    }

    pub(crate) fn detail(code: &'static str, detail: impl std::fmt::Display) -> Self {
        YamlError {
            code,
            reason: format!("{code}: {detail}"),
        }
    }
}

/// Hex SHA-256 of the raw upload.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parses and validates a single-flow `flow.yaml` within the default YAML budget.
pub fn parse_flow_yaml(bytes: &[u8]) -> Result<FlowSpec, YamlError> {
    parse_flow_yaml_within(bytes, YamlLimits::default())
}

/// [`parse_flow_yaml`] with an explicit budget (`PYOCO_YAML_MAX_NODES`).
pub fn parse_flow_yaml_within(bytes: &[u8], limits: YamlLimits) -> Result<FlowSpec, YamlError> {
    validate_root(&load_root(bytes, limits)?)
}

/// The document's root mapping, loaded within `limits` (the checks before the first key).
fn load_root(bytes: &[u8], limits: YamlLimits) -> Result<Mapping, YamlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| YamlError::code("invalid_utf8"))?;
    // Bounded: an alias bomb or a `!!python/...` tag is refused before anything is built.
    let raw: Yaml =
        super::yaml_guard::load(text, limits).map_err(|e| YamlError::code(e.reason()))?;
    let doc = normalize(raw).ok_or_else(|| YamlError::code("invalid_yaml"))?;
    let Yaml::Mapping(root) = doc else {
        return Err(YamlError::code("invalid_yaml_root"));
    };
    Ok(root)
}

/// Every check after loading, in order; the first failure is the answer.
fn validate_root(root: &Mapping) -> Result<FlowSpec, YamlError> {
    if root.contains_key("flows") {
        return Err(YamlError::code("unsupported_key_flows"));
    }
    if root.contains_key("discovery") {
        return Err(YamlError::code("unsupported_key_discovery"));
    }
    check_keys(root, &[TOP_LEVEL_KEYS], |keys| {
        YamlError::detail("unknown_top_level_keys", keys)
    })?;

    let flow = match root.get("flow") {
        None | Some(Yaml::Null) => return Err(YamlError::code("missing_flow")),
        Some(Yaml::Mapping(flow)) => flow,
        Some(_) => return Err(YamlError::code("invalid_flow")),
    };
    check_keys(flow, &[FLOW_KEYS], |keys| {
        YamlError::detail("unknown_flow_keys", keys)
    })?;
    let graph_source = match flow.get("graph") {
        Some(Yaml::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(YamlError::code("missing_flow_graph")),
    };
    let defaults = optional_map(flow.get("defaults"))
        .ok_or_else(|| YamlError::code("invalid_flow_defaults"))?;
    let on_error = match flow.get("on_error") {
        None | Some(Yaml::Null) => None,
        Some(Yaml::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(YamlError::detail("invalid_on_error", "flow")),
    };

    let empty = Mapping::new();
    let task_map = match root.get("tasks") {
        None | Some(Yaml::Null) => &empty,
        Some(Yaml::Mapping(tasks)) => tasks,
        Some(_) => return Err(YamlError::code("invalid_tasks")),
    };
    let mut tasks = Vec::with_capacity(task_map.len());
    for (key, value) in task_map {
        tasks.push(parse_task(key, value)?);
    }

    let runtime = match root.get("runtime") {
        None | Some(Yaml::Null) => &empty,
        Some(Yaml::Mapping(runtime)) => runtime,
        Some(_) => return Err(YamlError::code("invalid_runtime")),
    };
    check_keys(runtime, &[RUNTIME_KEYS], |keys| {
        YamlError::detail("unknown_runtime_keys", keys)
    })?;
    let expose_env = string_list(runtime.get("expose_env"))
        .ok_or_else(|| YamlError::code("invalid_runtime_expose_env"))?;

    let version = document_version(root.get("version"))?;

    // Our own checks, after all of the original's.
    let graph =
        graph::parse(&graph_source).map_err(|e| YamlError::detail("invalid_flow_graph", e))?;
    let defined: std::collections::HashSet<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    if let Some(unknown) = graph
        .nodes
        .iter()
        .find(|node| !defined.contains(node.as_str()))
    {
        return Err(YamlError::detail("unknown_graph_task", unknown));
    }
    for task in &tasks {
        if task.callable.as_deref() == Some("pyoco:sql") {
            super::builtins::sql_check::check_literal_inputs(&task.inputs).map_err(|e| {
                YamlError::detail(
                    "invalid_builtin_inputs",
                    format!("{}: pyoco:sql: {e}", task.name),
                )
            })?;
        }
    }
    check_error_handlers(&graph, &tasks, on_error.as_deref())?;
    check_templates(&tasks)?;

    Ok(FlowSpec {
        version,
        graph_source,
        graph,
        defaults,
        tasks,
        expose_env,
        on_error,
    })
}

/// The `{{...}}` templates of every task's inputs are well formed and name defined steps
/// (their values are looked up per attempt, when they exist).
pub(super) fn check_templates(tasks: &[TaskSpec]) -> Result<(), YamlError> {
    let is_task = |name: &str| tasks.iter().any(|t| t.name == name);
    for task in tasks {
        for (key, value) in &task.inputs {
            crate::flow::builtins::template::check_value(value, &is_task, key).map_err(|e| {
                YamlError::detail("invalid_template", format!("{}: {e}", task.name))
            })?;
        }
    }
    Ok(())
}

/// `on_error` targets (the flow's and each task's): defined tasks that the graph does not run
/// (a handler runs only on a failure) and that have no `on_error` of their own (no chains).
/// Control-flow graphs do not support them.
pub(super) fn check_error_handlers(
    graph: &Graph,
    tasks: &[TaskSpec],
    flow_on_error: Option<&str>,
) -> Result<(), YamlError> {
    let owners = tasks
        .iter()
        .filter_map(|t| Some((t.name.as_str(), t.policy.on_error.as_deref()?)));
    for (owner, handler) in flow_on_error.map(|h| ("flow", h)).into_iter().chain(owners) {
        let invalid = |why: &str| YamlError::detail("invalid_on_error", format!("{owner}: {why}"));
        if graph.control.is_some() {
            return Err(invalid(
                "not supported with switch/repeat/foreach/until graphs",
            ));
        }
        let Some(task) = tasks.iter().find(|t| t.name == handler) else {
            return Err(YamlError::detail(
                "unknown_on_error_task",
                format!("{owner}: {handler}"),
            ));
        };
        if graph.nodes.iter().any(|n| n == handler) {
            return Err(invalid(&format!("'{handler}' is in the graph")));
        }
        if task.policy.on_error.is_some() {
            return Err(invalid(&format!("'{handler}' has an on_error of its own")));
        }
    }
    Ok(())
}

pub(super) fn parse_task(key: &Yaml, value: &Yaml) -> Result<TaskSpec, YamlError> {
    let name = match key {
        Yaml::String(s) if !s.trim().is_empty() => s.clone(),
        _ => return Err(YamlError::code("invalid_task_name")),
    };
    let Yaml::Mapping(config) = value else {
        return Err(YamlError::detail("invalid_task_config", &name));
    };
    check_keys(config, &[TASK_KEYS, super::policy::POLICY_KEYS], |keys| {
        YamlError::detail("unknown_task_keys", format!("{name}: {keys}"))
    })?;
    let callable = match config.get("callable") {
        None | Some(Yaml::Null) => None,
        Some(Yaml::String(s)) if s.contains(':') => Some(s.clone()),
        Some(_) => return Err(YamlError::detail("invalid_task_callable", &name)),
    };
    let inputs = optional_map(config.get("inputs"))
        .ok_or_else(|| YamlError::detail("invalid_task_inputs", &name))?;
    let outputs = string_list(config.get("outputs"))
        .ok_or_else(|| YamlError::detail("invalid_task_outputs", &name))?;
    let policy = super::policy::parse(&name, config)?;
    Ok(TaskSpec {
        name,
        callable,
        spawn: None,
        inputs,
        outputs,
        policy,
    })
}

/// Rejects keys outside `allowed`, listing them like Python's `repr(sorted(...))`.
fn check_keys(
    map: &Mapping,
    allowed: &[&[&str]],
    error: impl FnOnce(String) -> YamlError,
) -> Result<(), YamlError> {
    let known = |s: &str| allowed.iter().any(|set| set.contains(&s));
    let mut unknown: Vec<&Yaml> = map
        .keys()
        .filter(|k| !matches!(k, Yaml::String(s) if known(s)))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    // Python cannot sort mixed types at all; any stable order will do for those.
    unknown.sort_by(|a, b| match (a, b) {
        (Yaml::String(a), Yaml::String(b)) => a.cmp(b),
        _ => py_repr(a).cmp(&py_repr(b)),
    });
    let items: Vec<String> = unknown.iter().map(|k| py_repr(k)).collect();
    Err(error(format!("[{}]", items.join(", "))))
}

/// A mapping, or null/absent as `{}`; `None` for anything else.
fn optional_map(value: Option<&Yaml>) -> Option<Map<String, Json>> {
    match value {
        None | Some(Yaml::Null) => Some(Map::new()),
        Some(Yaml::Mapping(m)) => {
            Some(m.iter().map(|(k, v)| (key_string(k), to_json(v))).collect())
        }
        Some(_) => None,
    }
}

/// A list of strings, or absent as `[]`; `None` for anything else (null included).
fn string_list(value: Option<&Yaml>) -> Option<Vec<String>> {
    match value {
        None => Some(Vec::new()),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|item| match item {
                Yaml::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        Some(_) => None,
    }
}
