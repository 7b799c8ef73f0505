//! `flow.yaml` parsing and strict validation.
//!
//! The checks, their order and their reason codes follow the original's
//! `parse_workflow_yaml_bytes`; two checks of our own run last
//! (`invalid_flow_graph`, `unknown_graph_task`). `spec/flow-yaml.md` is the
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

use serde_json::{Map, Value as Json};
use serde_yaml::{Mapping, Value as Yaml};
use sha2::{Digest, Sha256};

use crate::flow::graph::{self, Graph};

/// Allowed top-level keys.
pub const TOP_LEVEL_KEYS: &[&str] = &["version", "flow", "tasks", "runtime"];
/// Allowed keys of `flow`.
pub const FLOW_KEYS: &[&str] = &["graph", "defaults"];
/// Allowed keys of a task: the original's three, then our policy keys
/// ([`super::policy::POLICY_KEYS`]).
pub const TASK_KEYS: &[&str] = &[
    "callable",
    "inputs",
    "outputs",
    "retries",
    "retry_backoff_ms",
    "retry_backoff_multiplier",
    "retry_backoff_max_ms",
    "timeout_sec",
    "fail_policy",
    "cache_ttl_sec",
    "circuit_breaker",
];
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
    "invalid_runtime",
    "unknown_runtime_keys",
    "invalid_runtime_expose_env",
    "invalid_version",
    "invalid_flow_graph",
    "unknown_graph_task",
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
}

/// One entry of `tasks`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    /// `module:attribute`, if given.
    pub callable: Option<String>,
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

/// Parses and validates a single-flow `flow.yaml`.
pub fn parse_flow_yaml(bytes: &[u8]) -> Result<FlowSpec, YamlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| YamlError::code("invalid_utf8"))?;
    // Bounded: an alias bomb or a `!!python/...` tag is refused before anything is built.
    let raw: Yaml = super::yaml_guard::load(text, super::yaml_guard::YamlLimits::default())
        .map_err(|e| YamlError::code(e.reason()))?;
    let doc = normalize(raw).ok_or_else(|| YamlError::code("invalid_yaml"))?;
    let Yaml::Mapping(root) = doc else {
        return Err(YamlError::code("invalid_yaml_root"));
    };

    if root.contains_key("flows") {
        return Err(YamlError::code("unsupported_key_flows"));
    }
    if root.contains_key("discovery") {
        return Err(YamlError::code("unsupported_key_discovery"));
    }
    check_keys(&root, TOP_LEVEL_KEYS, |keys| {
        YamlError::detail("unknown_top_level_keys", keys)
    })?;

    let flow = match root.get("flow") {
        None | Some(Yaml::Null) => return Err(YamlError::code("missing_flow")),
        Some(Yaml::Mapping(flow)) => flow,
        Some(_) => return Err(YamlError::code("invalid_flow")),
    };
    check_keys(flow, FLOW_KEYS, |keys| {
        YamlError::detail("unknown_flow_keys", keys)
    })?;
    let graph_source = match flow.get("graph") {
        Some(Yaml::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(YamlError::code("missing_flow_graph")),
    };
    let defaults = optional_map(flow.get("defaults"))
        .ok_or_else(|| YamlError::code("invalid_flow_defaults"))?;

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
    check_keys(runtime, RUNTIME_KEYS, |keys| {
        YamlError::detail("unknown_runtime_keys", keys)
    })?;
    let expose_env = string_list(runtime.get("expose_env"))
        .ok_or_else(|| YamlError::code("invalid_runtime_expose_env"))?;

    let version = match root.get("version") {
        None => 1,
        Some(Yaml::Number(n)) => n
            .as_i64()
            .ok_or_else(|| YamlError::code("invalid_version"))?,
        Some(Yaml::String(s)) => {
            parse_python_int(s).ok_or_else(|| YamlError::code("invalid_version"))?
        }
        Some(_) => return Err(YamlError::code("invalid_version")),
    };

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

    Ok(FlowSpec {
        version,
        graph_source,
        graph,
        defaults,
        tasks,
        expose_env,
    })
}

fn parse_task(key: &Yaml, value: &Yaml) -> Result<TaskSpec, YamlError> {
    let name = match key {
        Yaml::String(s) if !s.trim().is_empty() => s.clone(),
        _ => return Err(YamlError::code("invalid_task_name")),
    };
    let Yaml::Mapping(config) = value else {
        return Err(YamlError::detail("invalid_task_config", &name));
    };
    check_keys(config, TASK_KEYS, |keys| {
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
        inputs,
        outputs,
        policy,
    })
}

/// Rejects keys outside `allowed`, listing them like Python's `repr(sorted(...))`.
fn check_keys(
    map: &Mapping,
    allowed: &[&str],
    error: impl FnOnce(String) -> YamlError,
) -> Result<(), YamlError> {
    let mut unknown: Vec<&Yaml> = map
        .keys()
        .filter(|k| !matches!(k, Yaml::String(s) if allowed.contains(&s.as_str())))
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

/// What Python's `int()` accepts for ASCII strings: surrounding whitespace,
/// an optional sign, digits with single underscores between them.
fn parse_python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c == '_' || c.is_ascii_digit());
    if !valid {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Applies merge keys and rejects what JSON or Python's safe_load could not hold:
/// custom tags, non-finite floats and non-scalar mapping keys.
fn normalize(value: Yaml) -> Option<Yaml> {
    match value {
        Yaml::Tagged(_) => None,
        Yaml::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => None,
        Yaml::Sequence(items) => Some(Yaml::Sequence(
            items.into_iter().map(normalize).collect::<Option<_>>()?,
        )),
        Yaml::Mapping(map) => {
            // PyYAML puts merged entries first (later merge sources before earlier
            // ones) and lets later entries win while keeping first positions.
            let mut merged = Vec::new();
            let mut explicit = Vec::new();
            for (k, v) in map {
                let k = normalize(k)?;
                if matches!(k, Yaml::Sequence(_) | Yaml::Mapping(_)) {
                    return None;
                }
                let v = normalize(v)?;
                if k.as_str() == Some("<<") {
                    match v {
                        Yaml::Mapping(m) => merged.extend(m),
                        Yaml::Sequence(sources) => {
                            let mut maps = Vec::with_capacity(sources.len());
                            for source in sources {
                                let Yaml::Mapping(m) = source else {
                                    return None;
                                };
                                maps.push(m);
                            }
                            for m in maps.into_iter().rev() {
                                merged.extend(m);
                            }
                        }
                        _ => return None,
                    }
                } else {
                    explicit.push((k, v));
                }
            }
            let mut out = Mapping::new();
            for (k, v) in merged.into_iter().chain(explicit) {
                out.insert(k, v);
            }
            Some(Yaml::Mapping(out))
        }
        other => Some(other),
    }
}

/// Converts a normalized YAML value; mapping keys become strings as `json.dumps` does.
fn to_json(value: &Yaml) -> Json {
    match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(m) => {
            Json::Object(m.iter().map(|(k, v)| (key_string(k), to_json(v))).collect())
        }
        Yaml::Tagged(t) => to_json(&t.value),
    }
}

fn key_string(key: &Yaml) -> String {
    match key {
        Yaml::String(s) => s.clone(),
        Yaml::Null => "null".into(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        other => serde_json::to_string(&to_json(other)).unwrap_or_default(),
    }
}

/// Python's `repr` of a scalar key.
fn py_repr(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => py_repr_str(s),
        Yaml::Null => "None".into(),
        Yaml::Bool(true) => "True".into(),
        Yaml::Bool(false) => "False".into(),
        Yaml::Number(n) => n.to_string(),
        other => key_string(other),
    }
}

fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn ok(src: &str) -> FlowSpec {
        match parse_flow_yaml(src.as_bytes()) {
            Ok(spec) => spec,
            Err(e) => panic!("{src:?} failed: {e}"),
        }
    }

    fn fail(src: &[u8]) -> YamlError {
        match parse_flow_yaml(src) {
            Err(e) => e,
            Ok(spec) => panic!("{:?} parsed: {spec:?}", String::from_utf8_lossy(src)),
        }
    }

    fn reason(src: &str) -> String {
        fail(src.as_bytes()).reason
    }

    const BASE: &str = "flow:\n  graph: a\ntasks:\n  a:\n    callable: m:f\n";

    #[test]
    fn full_document() {
        let src = "\
version: 2
flow:
  graph: |
    a >> (b & c) >> d
  defaults:
    x: 1
    name: demo
tasks:
  d: {callable: 'pyoco:echo', inputs: {x: $node.b.output}}
  a:
    callable: pyoco:echo
    inputs:
      x: [1, 2.5, true, null]
      1: one
    outputs: [scratch.a]
  b: {}
  c: {inputs: null}
  unused: {callable: pyoco:sleep}
runtime:
  expose_env: [HOME]
";
        let spec = ok(src);
        assert_eq!(spec.version, 2);
        assert_eq!(spec.graph_source, "a >> (b & c) >> d\n");
        assert_eq!(spec.graph.nodes, vec!["a", "b", "c", "d"]);
        assert_eq!(
            Json::Object(spec.defaults.clone()),
            serde_json::json!({"x": 1, "name": "demo"})
        );
        let names: Vec<&str> = spec.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["d", "a", "b", "c", "unused"]);
        let a = spec.task("a").unwrap_or_else(|| panic!("no task a"));
        assert_eq!(a.callable.as_deref(), Some("pyoco:echo"));
        assert_eq!(
            Json::Object(a.inputs.clone()),
            serde_json::json!({"x": [1, 2.5, true, null], "1": "one"})
        );
        assert_eq!(a.outputs, vec!["scratch.a"]);
        let b = spec.task("b").unwrap_or_else(|| panic!("no task b"));
        assert_eq!(b.callable, None);
        assert!(b.inputs.is_empty() && b.outputs.is_empty());
        assert!(spec.task("nope").is_none());
        assert_eq!(spec.expose_env, vec!["HOME"]);
    }

    #[test]
    fn null_and_absent_sections() {
        let spec = ok(
            "flow:\n  graph: a\n  defaults:\ntasks:\n  a: {callable: null, inputs: ~}\nruntime:\n",
        );
        assert_eq!(spec.version, 1);
        assert!(spec.defaults.is_empty());
        assert!(spec.expose_env.is_empty());
        assert_eq!(spec.tasks[0].callable, None);
        // `tasks: null` is an empty mapping, so the graph names an unknown task.
        assert_eq!(
            reason("flow:\n  graph: a\ntasks: null\n"),
            "unknown_graph_task: a"
        );
        assert_eq!(reason("flow:\n  graph: a\n"), "unknown_graph_task: a");
    }

    #[test]
    fn version() {
        assert_eq!(ok(&format!("version: '2'\n{BASE}")).version, 2);
        assert_eq!(ok(&format!("version: \" -3 \"\n{BASE}")).version, -3);
        assert_eq!(ok(&format!("version: '1_000'\n{BASE}")).version, 1000);
        assert_eq!(ok(&format!("version: 7\n{BASE}")).version, 7);
        for bad in [
            "'x'",
            "'2.0'",
            "2.5",
            "true",
            "null",
            "[1]",
            "'1__0'",
            "'_1'",
            "''",
            "9999999999999999999",
            "'99999999999999999999'",
            "'+'",
        ] {
            assert_eq!(
                fail(format!("version: {bad}\n{BASE}").as_bytes()).code,
                "invalid_version",
                "version {bad}"
            );
        }
    }

    #[test]
    fn reason_codes_and_messages() {
        let cases: &[(&[u8], &str)] = &[
            (b"flow: {graph: a}\n\xff\n", "invalid_utf8"),
            (b"flow: [\n", "invalid_yaml"),
            (b"a: 1\na: 2\n", "invalid_yaml"),
            (b"a: !custom 1\n", "invalid_yaml_tag"),
            (b"a: !!python/object:os.system [ls]\n", "invalid_yaml_tag"),
            (b"a: .inf\n", "invalid_yaml"),
            (b"? [a]\n: 1\n", "invalid_yaml"),
            (b"a:\n  <<: 1\n", "invalid_yaml"),
            (b"- just: list\n", "invalid_yaml_root"),
            (b"null\n", "invalid_yaml_root"),
            (b"", "invalid_yaml_root"),
            (b"just a string\n", "invalid_yaml_root"),
            (b"flows: {}\n", "unsupported_key_flows"),
            (b"discovery: {}\n", "unsupported_key_discovery"),
            (
                b"pipes: {}\nzeta: 1\n",
                "unknown_top_level_keys: ['pipes', 'zeta']",
            ),
            (b"version: 1\n", "missing_flow"),
            (b"flow: null\n", "missing_flow"),
            (b"flow: a >> b\n", "invalid_flow"),
            (
                b"flow: {graph: a, name: x, extra: 1}\n",
                "unknown_flow_keys: ['extra', 'name']",
            ),
            (b"flow: {}\n", "missing_flow_graph"),
            (b"flow: {graph: '  '}\n", "missing_flow_graph"),
            (b"flow: {graph: 1}\n", "missing_flow_graph"),
            (
                b"flow: {graph: a, defaults: [1]}\n",
                "invalid_flow_defaults",
            ),
            (b"flow: {graph: a}\ntasks: [a]\n", "invalid_tasks"),
            (b"flow: {graph: a}\ntasks: {' ': {}}\n", "invalid_task_name"),
            (b"flow: {graph: a}\ntasks: {1: {}}\n", "invalid_task_name"),
            (
                b"flow: {graph: a}\ntasks: {a: pyoco:echo}\n",
                "invalid_task_config: a",
            ),
            (
                b"flow: {graph: a}\ntasks: {a: }\n",
                "invalid_task_config: a",
            ),
            (
                b"flow: {graph: a}\ntasks: {train: {retry: 2, use: x, callable: 'm:f'}}\n",
                "unknown_task_keys: train: ['retry', 'use']",
            ),
            (
                b"flow: {graph: a}\ntasks: {a: {callable: echo}}\n",
                "invalid_task_callable: a",
            ),
            (
                b"flow: {graph: a}\ntasks: {a: {callable: 1}}\n",
                "invalid_task_callable: a",
            ),
            (
                b"flow: {graph: a}\ntasks: {a: {inputs: [1]}}\n",
                "invalid_task_inputs: a",
            ),
            (
                b"flow: {graph: a}\ntasks: {a: {outputs: x}}\n",
                "invalid_task_outputs: a",
            ),
            (
                b"flow: {graph: a}\ntasks: {a: {outputs: [1]}}\n",
                "invalid_task_outputs: a",
            ),
            (
                b"flow: {graph: a}\ntasks: {a: {outputs: null}}\n",
                "invalid_task_outputs: a",
            ),
            (b"flow: {graph: a}\nruntime: [x]\n", "invalid_runtime"),
            (
                b"flow: {graph: a}\nruntime: {env: 1}\n",
                "unknown_runtime_keys: ['env']",
            ),
            (
                b"flow: {graph: a}\nruntime: {expose_env: HOME}\n",
                "invalid_runtime_expose_env",
            ),
            (
                b"flow: {graph: a}\nruntime: {expose_env: [1]}\n",
                "invalid_runtime_expose_env",
            ),
            (b"flow: {graph: a}\nversion: x\n", "invalid_version"),
            (
                b"flow: {graph: 'a >>'}\ntasks: {a: {}}\n",
                "invalid_flow_graph: line 1, column 3: expected a task name or '(' after '>>' but reached the end of the input",
            ),
            (
                b"flow: {graph: '# none'}\n",
                "invalid_flow_graph: empty graph",
            ),
            (
                b"flow: {graph: 'a >> b >> a'}\ntasks: {a: {}, b: {}}\n",
                "invalid_flow_graph: cycle detected: a -> b -> a",
            ),
            (
                b"flow: {graph: 'a >> b >> c'}\ntasks: {a: {}, c: {}}\n",
                "unknown_graph_task: b",
            ),
        ];
        for (src, want) in cases {
            let e = fail(src);
            assert_eq!(&e.reason, want, "{:?}", String::from_utf8_lossy(src));
            assert_eq!(&e.to_string(), want);
            assert!(want.starts_with(e.code), "{want} vs {}", e.code);
            assert!(REASON_CODES.contains(&e.code), "{}", e.code);
        }
    }

    #[test]
    fn check_order() {
        // Forbidden keys come before the unknown-key test, flows before discovery.
        assert_eq!(
            reason("pipes: 1\ndiscovery: 1\nflows: 1\n"),
            "unsupported_key_flows"
        );
        assert_eq!(
            reason("pipes: 1\ndiscovery: 1\n"),
            "unsupported_key_discovery"
        );
        // Unknown top-level keys before a missing flow.
        assert_eq!(reason("pipes: 1\n"), "unknown_top_level_keys: ['pipes']");
        // Flow keys before the graph, graph before defaults.
        assert_eq!(
            reason("flow: {x: 1, defaults: 1}\n"),
            "unknown_flow_keys: ['x']"
        );
        assert_eq!(reason("flow: {defaults: 1}\n"), "missing_flow_graph");
        // Defaults before tasks, tasks before runtime, runtime before version.
        assert_eq!(
            reason("version: x\nruntime: 1\ntasks: 1\nflow: {graph: a, defaults: 1}\n"),
            "invalid_flow_defaults"
        );
        assert_eq!(
            reason("version: x\nruntime: 1\ntasks: 1\nflow: {graph: a}\n"),
            "invalid_tasks"
        );
        assert_eq!(
            reason("version: x\nruntime: 1\nflow: {graph: a}\n"),
            "invalid_runtime"
        );
        assert_eq!(
            reason("version: x\nruntime: {expose_env: 1}\nflow: {graph: a}\n"),
            "invalid_runtime_expose_env"
        );
        // The original's checks all come before the graph checks.
        assert_eq!(
            reason("version: x\nflow: {graph: 'a b'}\n"),
            "invalid_version"
        );
        assert_eq!(
            reason("flow: {graph: 'zz >> a b'}\ntasks: {a: {}}\n"),
            "invalid_flow_graph: line 1, column 9: missing operator between 'a' and 'b' (expected '>>', '&' or '|')"
        );
        // Tasks are checked one by one, in order, each completely.
        assert_eq!(
            reason("flow: {graph: a}\ntasks:\n  a: {callable: x, zz: 1}\n  b: 1\n"),
            "unknown_task_keys: a: ['zz']"
        );
        assert_eq!(
            reason("flow: {graph: a}\ntasks:\n  a: {callable: x, inputs: 1}\n  b: 1\n"),
            "invalid_task_callable: a"
        );
        assert_eq!(
            reason("flow: {graph: a}\ntasks:\n  a: {inputs: 1, outputs: 1}\n  b: 1\n"),
            "invalid_task_inputs: a"
        );
        assert_eq!(
            reason("flow: {graph: a}\ntasks:\n  a: {}\n  b: 1\n  '': {}\n"),
            "invalid_task_config: b"
        );
        // The first unknown graph task in graph order.
        assert_eq!(
            reason("flow: {graph: 'a >> (y & x)'}\ntasks: {a: {}}\n"),
            "unknown_graph_task: y"
        );
    }

    #[test]
    fn python_reprs() {
        assert_eq!(py_repr_str("pipes"), "'pipes'");
        assert_eq!(py_repr_str("it's"), "\"it's\"");
        assert_eq!(py_repr_str("a'\"b"), "'a\\'\"b'");
        assert_eq!(py_repr_str("a\\b\n\u{1}é"), "'a\\\\b\\n\\x01é'");
        assert_eq!(
            reason("flow: {graph: a}\n1: x\ntrue: y\n~: z\nb: 1\n"),
            "unknown_top_level_keys: ['b', 1, None, True]"
        );
    }

    #[test]
    fn yaml_details() {
        // YAML 1.2: `yes` and `017` are strings; PyYAML would differ.
        let spec = ok(
            "flow:\n  graph: a\n  defaults: {flag: yes, oct: 017, 2: two, true: t, 1.5: f}\ntasks: {a: {}}\n",
        );
        assert_eq!(
            Json::Object(spec.defaults),
            serde_json::json!({"flag": "yes", "oct": "017", "2": "two", "true": "t", "1.5": "f"})
        );
        // Merge keys: explicit entries win; earlier merge sources win over later ones.
        let spec = ok("\
flow: {graph: 'a >> b'}
tasks:
  a: &base
    callable: 'm:f'
    inputs: {x: 1, y: 2}
  b:
    outputs: [p]
    <<: [{callable: 'm:g'}, *base]
  c:
    <<: *base
    callable: 'm:h'
");
        let c = spec.task("c").unwrap_or_else(|| panic!("no c"));
        assert_eq!(c.callable.as_deref(), Some("m:h"));
        let b = spec.task("b").unwrap_or_else(|| panic!("no b"));
        assert_eq!(b.callable.as_deref(), Some("m:g"));
        assert_eq!(
            Json::Object(b.inputs.clone()),
            serde_json::json!({"x": 1, "y": 2})
        );
        assert_eq!(b.outputs, vec!["p"]);
        // Merging into `tasks` keeps PyYAML's key order: merged entries first.
        let spec = ok("\
flow:
  graph: s1
  defaults: &shared {s1: {}, s2: {}}
tasks:
  own: {}
  <<: *shared
");
        let names: Vec<&str> = spec.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["s1", "s2", "own"]);
    }

    #[test]
    fn sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn repo_path(rel: &str) -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
        if path.exists() {
            path
        } else {
            Path::new("/work/main").join(rel)
        }
    }

    fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }

    #[test]
    fn golden_examples() {
        let dir = repo_path("spec/examples");
        let mut files = Vec::new();
        yaml_files(&dir, &mut files);
        files.sort();
        let (mut valid, mut invalid) = (0, 0);
        for path in &files {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let result = parse_flow_yaml(&bytes);
            let is_invalid = path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "invalid");
            if is_invalid {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                match result {
                    Err(e) => assert_eq!(e.code, stem, "{}: {e}", path.display()),
                    Ok(_) => panic!("{} should fail with {stem}", path.display()),
                }
                invalid += 1;
            } else {
                if let Err(e) = result {
                    panic!("{} should parse: {e}", path.display());
                }
                valid += 1;
            }
        }
        assert!(
            valid >= 1 && invalid >= 10,
            "valid {valid}, invalid {invalid}"
        );
    }

    #[test]
    fn spec_lists_every_reason_code() {
        let path = repo_path("spec/flow-yaml.md");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // First-column codes of the table under the "## Reason codes" heading.
        let mut in_section = false;
        let mut table: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("## ") {
                in_section = line.trim() == "## Reason codes";
                continue;
            }
            if !in_section {
                continue;
            }
            if let Some(rest) = line.trim().strip_prefix("| `")
                && let Some(end) = rest.find('`')
            {
                table.push(rest[..end].to_string());
            }
        }
        for code in REASON_CODES {
            assert!(text.contains(&format!("`{code}`")), "spec misses `{code}`");
            assert!(
                table.iter().any(|c| c == code),
                "reason table misses {code}"
            );
        }
        for code in &table {
            assert!(
                REASON_CODES.contains(&code.as_str()),
                "spec lists unknown code {code}"
            );
        }
        assert_eq!(
            table.len(),
            REASON_CODES.len(),
            "duplicate rows in {table:?}"
        );
    }
}
