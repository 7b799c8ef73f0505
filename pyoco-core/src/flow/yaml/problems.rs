//! Every problem of a `flow.yaml` at once, each with the line and column of the YAML it is
//! about (`POST /flows/validate`).
//!
//! The validator proper stops at the first failure (its order is the original's contract).
//! This runs it again and again: after each problem it takes the offending part out of the
//! document (a key, a task's option, a whole task config) — or, for a graph naming an
//! undefined task, puts an empty one in — and validates what is left, until the document
//! passes or a problem leaves nothing sensible to check (an unparsable document, no `flow`, no
//! graph, a graph with a syntax error). So each problem is reported once, in the validator's
//! order, with the validator's reason.

use std::collections::HashMap;

use serde::Serialize;
use serde_yaml::{Mapping, Value as Yaml};
use yaml_rust2::parser::{Event, Parser};

use super::{FLOW_KEYS, RUNTIME_KEYS, TASK_KEYS, TOP_LEVEL_KEYS, YamlError, YamlLimits};
use crate::flow::policy::POLICY_KEYS;

/// Problems reported at most (a pathological document cannot make the loop long).
const MAX_PROBLEMS: usize = 100;

/// One problem of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The reason code (spec/flow-yaml.md), e.g. `invalid_task_retries`.
    pub code: &'static str,
    /// The full reason, as `POST /runs/yaml` would give it.
    pub reason: String,
    /// Where: keys from the root, e.g. `["tasks", "b", "retries"]`.
    pub path: Vec<String>,
    /// 1-based line and column of that key (or of the nearest enclosing one); `None` when the
    /// problem is about the whole document.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Every problem of `bytes`; empty when the document is a valid flow.
pub fn validate_all(bytes: &[u8], limits: YamlLimits) -> Vec<Problem> {
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    let mut root = match super::load_root(bytes, limits) {
        Ok(root) => root,
        Err(e) => {
            let (line, column) = match e.code {
                "invalid_yaml" => syntax_error_position(text),
                _ => (None, None),
            };
            return vec![Problem {
                code: e.code,
                reason: e.reason,
                path: Vec::new(),
                line,
                column,
            }];
        }
    };
    let positions = key_positions(text);
    let mut problems = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let Err(e) = super::validate_root(&root) else {
            break;
        };
        let (path, next) = locate_and_remove(&mut root, &e);
        let (line, column) = position_of(&positions, &path);
        problems.push(Problem {
            code: e.code,
            reason: e.reason,
            path,
            line,
            column,
        });
        if next == Next::Stop {
            break;
        }
    }
    problems
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// The document was changed so the validator can go past this problem.
    Continue,
    /// Nothing useful is left to check.
    Stop,
}

fn key(s: &str) -> Yaml {
    Yaml::String(s.to_string())
}

fn map_at<'a>(root: &'a mut Mapping, name: &str) -> Option<&'a mut Mapping> {
    match root.get_mut(name) {
        Some(Yaml::Mapping(m)) => Some(m),
        _ => None,
    }
}

/// Removes the keys of `map` not in `allowed`; the first of them, for the position.
fn remove_unknown(map: &mut Mapping, allowed: &[&[&str]]) -> Option<String> {
    let unknown: Vec<Yaml> = map
        .keys()
        .filter(|k| !matches!(k, Yaml::String(s) if allowed.iter().any(|set| set.contains(&s.as_str()))))
        .cloned()
        .collect();
    for k in &unknown {
        map.remove(k);
    }
    unknown.first().map(|k| match k {
        Yaml::String(s) => s.clone(),
        other => super::py_repr(other),
    })
}

/// The task option(s) a task-level reason code is about.
fn task_keys_of(code: &str) -> &'static [&'static str] {
    match code {
        "invalid_task_callable" => &["callable"],
        "invalid_task_inputs" => &["inputs"],
        "invalid_task_outputs" => &["outputs"],
        "invalid_task_retries" => &[
            "retries",
            "retry_backoff_ms",
            "retry_backoff_multiplier",
            "retry_backoff_max_ms",
        ],
        "invalid_task_timeout" => &["timeout_sec"],
        "invalid_task_fail_policy" => &["fail_policy", "continue_on_error"],
        "invalid_task_cache_ttl" => &["cache_ttl_sec"],
        "invalid_task_circuit_breaker" => &["circuit_breaker"],
        "invalid_task_memory" => &["memory_mb"],
        "invalid_on_error" | "unknown_on_error_task" => &["on_error"],
        "invalid_template" => &["inputs"],
        _ => &[],
    }
}

/// The path of problem `e` in `root`, and `root` changed so the validator gets past it.
fn locate_and_remove(root: &mut Mapping, e: &YamlError) -> (Vec<String>, Next) {
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match e.code {
        "unsupported_key_flows" | "unsupported_key_discovery" => {
            let k = e.code.trim_start_matches("unsupported_key_");
            root.remove(k);
            (path(&[k]), Next::Continue)
        }
        "unknown_top_level_keys" => {
            let first = remove_unknown(root, &[TOP_LEVEL_KEYS]).unwrap_or_default();
            (vec![first], Next::Continue)
        }
        "missing_flow" | "invalid_flow" => (path(&["flow"]), Next::Stop),
        "unknown_flow_keys" => {
            let first = map_at(root, "flow")
                .and_then(|f| remove_unknown(f, &[FLOW_KEYS]))
                .unwrap_or_default();
            (vec!["flow".into(), first], Next::Continue)
        }
        "missing_flow_graph" | "invalid_flow_graph" => (path(&["flow", "graph"]), Next::Stop),
        "invalid_flow_defaults" => {
            map_at(root, "flow").map(|f| f.remove("defaults"));
            (path(&["flow", "defaults"]), Next::Continue)
        }
        "invalid_tasks" => (path(&["tasks"]), Next::Stop),
        "invalid_runtime" => {
            root.remove("runtime");
            (path(&["runtime"]), Next::Continue)
        }
        "unknown_runtime_keys" => {
            let first = map_at(root, "runtime")
                .and_then(|r| remove_unknown(r, &[RUNTIME_KEYS]))
                .unwrap_or_default();
            (vec!["runtime".into(), first], Next::Continue)
        }
        "invalid_runtime_expose_env" => {
            map_at(root, "runtime").map(|r| r.remove("expose_env"));
            (path(&["runtime", "expose_env"]), Next::Continue)
        }
        "invalid_version" => {
            root.remove("version");
            (path(&["version"]), Next::Continue)
        }
        "unknown_graph_task" => {
            // Define it, so the next undefined one is found.
            let name = e
                .reason
                .trim_start_matches("unknown_graph_task: ")
                .to_string();
            match map_at(root, "tasks") {
                Some(tasks) => {
                    tasks.insert(key(&name), Yaml::Mapping(Mapping::new()));
                }
                None => {
                    let mut tasks = Mapping::new();
                    tasks.insert(key(&name), Yaml::Mapping(Mapping::new()));
                    root.insert(key("tasks"), Yaml::Mapping(tasks));
                }
            }
            (path(&["flow", "graph"]), Next::Continue)
        }
        "invalid_on_error" | "unknown_on_error_task"
            if e.reason.starts_with(&format!("{}: flow", e.code)) =>
        {
            map_at(root, "flow").map(|f| f.remove("on_error"));
            (path(&["flow", "on_error"]), Next::Continue)
        }
        _ => task_problem(root, e),
    }
}

/// A problem of one task: the first task the validator refuses (tasks are validated in
/// order), or for `on_error` problems found after the graph, the task the reason names.
fn task_problem(root: &mut Mapping, e: &YamlError) -> (Vec<String>, Next) {
    let Some(tasks) = map_at(root, "tasks") else {
        return (Vec::new(), Next::Stop);
    };
    let late = matches!(
        e.code,
        "invalid_on_error" | "unknown_on_error_task" | "invalid_template"
    );
    let found = tasks.iter().find_map(|(k, v)| {
        if late {
            let Yaml::String(name) = k else { return None };
            e.reason
                .starts_with(&format!("{}: {name}: ", e.code))
                .then(|| k.clone())
        } else {
            super::parse_task(k, v).is_err().then(|| k.clone())
        }
    });
    let Some(task) = found else {
        return (Vec::new(), Next::Stop);
    };
    let name = match &task {
        Yaml::String(s) => s.clone(),
        other => super::py_repr(other),
    };
    let mut path = vec!["tasks".to_string(), name];
    match (e.code, tasks.get_mut(&task)) {
        ("invalid_task_name", _) => {
            tasks.remove(&task);
        }
        ("unknown_task_keys", Some(Yaml::Mapping(config))) => {
            if let Some(first) = remove_unknown(config, &[TASK_KEYS, POLICY_KEYS]) {
                path.push(first);
            }
        }
        (code, Some(Yaml::Mapping(config))) if !task_keys_of(code).is_empty() => {
            let keys = task_keys_of(code);
            if let Some(first) = keys.iter().find(|k| config.contains_key(**k)) {
                path.push((*first).to_string());
            }
            for k in keys {
                config.remove(*k);
            }
        }
        (_, Some(value)) => *value = Yaml::Mapping(Mapping::new()),
        (_, None) => return (path, Next::Stop),
    }
    (path, Next::Continue)
}

/// Position of `path`'s key, or of its nearest ancestor that has one.
fn position_of(
    positions: &HashMap<Vec<String>, (usize, usize)>,
    path: &[String],
) -> (Option<usize>, Option<usize>) {
    (0..=path.len())
        .rev()
        .find_map(|n| positions.get(&path[..n]))
        .map_or((None, None), |&(l, c)| (Some(l), Some(c)))
}

/// 1-based line and column of every mapping key, by its path from the root (scalar keys of
/// nested mappings; sequences and aliases are not followed).
fn key_positions(text: &str) -> HashMap<Vec<String>, (usize, usize)> {
    enum Frame {
        /// In a mapping: the key whose value comes next, if a key was just read.
        Map(Option<String>),
        Other,
    }
    let mut out = HashMap::new();
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    // A value ended: the enclosing mapping expects a key again.
    let value_done = |stack: &mut Vec<Frame>, path: &mut Vec<String>| {
        if let Some(Frame::Map(pending)) = stack.last_mut()
            && pending.take().is_some()
        {
            path.pop();
        }
    };
    while let Ok((event, mark)) = parser.next_token() {
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, ..) => match stack.last_mut() {
                Some(Frame::Map(pending @ None)) => {
                    path.push(value.clone());
                    out.entry(path.clone())
                        .or_insert((mark.line(), mark.col() + 1));
                    *pending = Some(value);
                }
                _ => value_done(&mut stack, &mut path),
            },
            Event::Alias(_) => value_done(&mut stack, &mut path),
            Event::MappingStart(..) => stack.push(Frame::Map(None)),
            Event::SequenceStart(..) => stack.push(Frame::Other),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack, &mut path);
            }
            _ => {}
        }
    }
    out
}

/// Where the YAML parser gave up.
fn syntax_error_position(text: &str) -> (Option<usize>, Option<usize>) {
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return (None, None),
            Ok(_) => {}
            Err(e) => return (Some(e.marker().line()), Some(e.marker().col() + 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reason, path, line, column.
    type Found = (String, Vec<String>, Option<usize>, Option<usize>);

    fn problems(src: &str) -> Vec<Found> {
        validate_all(src.as_bytes(), YamlLimits::default())
            .into_iter()
            .map(|p| (p.reason, p.path, p.line, p.column))
            .collect()
    }

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_valid_flow_has_no_problems() {
        assert!(problems("flow: {graph: a}\ntasks: {a: {callable: 'x:y'}}\n").is_empty());
    }

    #[test]
    fn every_problem_is_reported_once_with_its_position() {
        let src = "\
version: x
pipes: 1
flow:
  graph: a >> b >> c
  colour: red
tasks:
  a:
    callable: pyoco:echo
    retries: -1
    timeout_sec: 0
  b:
    use: this
  d: 3
";
        assert_eq!(
            problems(src),
            vec![
                (
                    "unknown_top_level_keys: ['pipes']".into(),
                    p(&["pipes"]),
                    Some(2),
                    Some(1)
                ),
                (
                    "unknown_flow_keys: ['colour']".into(),
                    p(&["flow", "colour"]),
                    Some(5),
                    Some(3)
                ),
                (
                    "invalid_task_retries: a".into(),
                    p(&["tasks", "a", "retries"]),
                    Some(9),
                    Some(5)
                ),
                (
                    "invalid_task_timeout: a".into(),
                    p(&["tasks", "a", "timeout_sec"]),
                    Some(10),
                    Some(5)
                ),
                (
                    "unknown_task_keys: b: ['use']".into(),
                    p(&["tasks", "b", "use"]),
                    Some(12),
                    Some(5)
                ),
                (
                    "invalid_task_config: d".into(),
                    p(&["tasks", "d"]),
                    Some(13),
                    Some(3)
                ),
                ("invalid_version".into(), p(&["version"]), Some(1), Some(1)),
                (
                    "unknown_graph_task: c".into(),
                    p(&["flow", "graph"]),
                    Some(4),
                    Some(3)
                ),
            ]
        );
    }

    #[test]
    fn an_unparsable_document_is_one_problem_at_the_parser_position() {
        let found = problems("flow:\n  graph: a\n  x: [1, 2\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "invalid_yaml");
        assert!(found[0].2.is_some());
    }
}
