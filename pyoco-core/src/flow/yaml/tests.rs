//! flow.yaml validation: accepted documents and every reason code.

use super::values::py_repr_str;
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
    let spec =
        ok("flow:\n  graph: a\n  defaults:\ntasks:\n  a: {callable: null, inputs: ~}\nruntime:\n");
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
        (
            b"flow: {graph: q}\ntasks: {q: {callable: 'pyoco:sql', inputs: {connection: main, sql: 'DELETE FROM t'}}}\n",
            "invalid_builtin_inputs: q: pyoco:sql: only SELECT or WITH ... SELECT queries are allowed, got DELETE",
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
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
