//! The documents in `spec/` are the wire contract: these tests keep them and the code in step.
//! Routes, error codes, variables (with their defaults), run statuses and DLQ reasons must be
//! documented exactly once each, and nothing may be documented that the code does not have.
//! No NATS server is needed.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::{BTreeSet, HashMap};

use pyoco::model::{DlqReason, RunStatus};
use pyoco::{Config, ErrorCode};

const HTTP_API: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/http-api.md"));
const CONFIG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/config.md"));
const DOCUMENTS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/documents.md"));
const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/README.md"));

/// The body rows of the first Markdown table under the heading `heading` (exact text, e.g.
/// `## Routes`), up to the next heading, each split into trimmed cells. The header row and
/// the `|---|` separator are skipped.
fn table(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| l.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "heading {heading:?} not found in the spec"
    );
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| !l.trim_start().starts_with('#'))
        .map(str::trim)
        .filter(|l| l.starts_with('|'))
        .map(split_row)
        .collect();
    assert!(rows.len() > 2, "no table under {heading:?}");
    // rows[0] is the header, rows[1] the separator.
    assert!(
        rows[1]
            .iter()
            .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' '))),
        "second row under {heading:?} is not a table separator: {:?}",
        rows[1]
    );
    rows.into_iter().skip(2).collect()
}

/// Splits `| a | b \| c |` into `["a", "b | c"]`.
fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
            other => cell.push(other),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

/// The text of a cell that is one code span, `` `x` `` → `x`; `None` otherwise.
fn code(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

fn code_cell<'a>(row: &'a [String], i: usize, what: &str) -> &'a str {
    let cell = row
        .get(i)
        .unwrap_or_else(|| panic!("{what}: row {row:?} has no column {}", i + 1));
    code(cell).unwrap_or_else(|| panic!("{what}: column {} of {row:?} is not a `code` cell", i + 1))
}

/// Asserts that `documented` and `actual` hold the same names, each documented once.
fn assert_same(what: &str, documented: Vec<String>, actual: &[String]) {
    let mut seen = BTreeSet::new();
    for d in &documented {
        assert!(seen.insert(d.clone()), "{what}: {d:?} is documented twice");
    }
    let actual: BTreeSet<String> = actual.iter().cloned().collect();
    let missing: Vec<_> = actual.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(&actual).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: in the code but not in the spec: {missing:?}; in the spec but not in the code: {extra:?}"
    );
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let documented: Vec<String> = table(HTTP_API, "## Routes")
        .iter()
        .map(|row| {
            format!(
                "{} {}",
                code_cell(row, 0, "## Routes"),
                code_cell(row, 1, "## Routes")
            )
        })
        .collect();
    let actual: Vec<String> = pyoco::gateway::ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method.as_str(), r.path))
        .collect();
    assert_same("routes (spec/http-api.md ## Routes)", documented, &actual);
}

#[test]
fn every_error_code_is_documented_with_a_status() {
    let rows = table(HTTP_API, "## Error codes");
    let mut documented = Vec::new();
    for row in &rows {
        let code = code_cell(row, 0, "## Error codes");
        let status = row.get(1).map(String::as_str).unwrap_or_default();
        let status: u16 = status
            .parse()
            .unwrap_or_else(|_| panic!("error code {code}: status {status:?} is not a number"));
        assert!(
            (400..600).contains(&status),
            "error code {code}: {status} is not an error status"
        );
        assert!(
            row.get(2).is_some_and(|m| !m.is_empty()),
            "error code {code} has no meaning"
        );
        // The code must exist and answer with the documented status.
        if let Ok(known) = code.parse::<ErrorCode>() {
            assert_eq!(
                known.status(),
                status,
                "error code {code}: documented status differs from ErrorCode::status"
            );
        }
        documented.push(code.to_string());
    }
    let actual: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_same(
        "error codes (spec/http-api.md ## Error codes)",
        documented,
        &actual,
    );
}

#[test]
fn every_variable_is_documented_and_every_documented_variable_exists() {
    let documented: Vec<String> = table(CONFIG, "## Variables")
        .iter()
        .map(|row| code_cell(row, 0, "## Variables").to_string())
        .collect();
    let actual: Vec<String> = pyoco::config::VARIABLES
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_same(
        "variables (spec/config.md ## Variables)",
        documented,
        &actual,
    );
}

/// Variable families (`PYOCO_SQL_<NAME>_URL`) are documented in their own table, once each.
#[test]
fn every_variable_family_is_documented() {
    let documented: Vec<String> = table(CONFIG, "## Variable families")
        .iter()
        .map(|row| code_cell(row, 0, "## Variable families").to_string())
        .collect();
    let actual: Vec<String> = pyoco::config::VARIABLE_FAMILIES
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_same(
        "variable families (spec/config.md ## Variable families)",
        documented,
        &actual,
    );
}

/// A documented default, set explicitly, must give exactly the default configuration.
#[test]
fn documented_defaults_are_the_real_defaults() {
    // Not `Config` fields: they only decide where values come from.
    const SOURCES: &[&str] = &["PYOCO_LOAD_DOTENV", "PYOCO_ENV_FILE"];
    let mut checked = 0;
    for row in table(CONFIG, "## Variables") {
        let name = code_cell(&row, 0, "## Variables");
        let Some(default) = row.get(1).and_then(|c| code(c)) else {
            // `unset`, `empty …`: nothing to set.
            continue;
        };
        if SOURCES.contains(&name) {
            continue;
        }
        let env: HashMap<String, String> = [
            ("PYOCO_LOAD_DOTENV".to_string(), "0".to_string()),
            (name.to_string(), default.to_string()),
        ]
        .into_iter()
        .collect();
        let config = Config::from_sources(&env)
            .unwrap_or_else(|e| panic!("{name}: documented default {default:?} is rejected: {e}"));
        assert_eq!(
            config,
            Config::default(),
            "{name}: documented default {default:?} is not the real default"
        );
        checked += 1;
    }
    assert!(checked > 40, "only {checked} defaults checked");
}

/// The words of `doc` that are code spans.
fn code_spans(doc: &str) -> BTreeSet<&str> {
    doc.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_run_status_is_documented() {
    let spans = code_spans(DOCUMENTS);
    for status in RunStatus::ALL {
        assert!(
            spans.contains(status.as_str()),
            "status {status} is not documented in spec/documents.md"
        );
    }
    // The transition table has one row per status (terminal ones share a row).
    let rows = table(DOCUMENTS, "### Status transitions");
    for from in RunStatus::ALL {
        let row = rows
            .iter()
            .find(|r| r[0].split(", ").any(|c| code(c) == Some(from.as_str())))
            .unwrap_or_else(|| panic!("no transition row for {from}"));
        let documented: BTreeSet<&str> = row[1].split(", ").filter_map(code).collect();
        let actual: BTreeSet<&str> = RunStatus::ALL
            .into_iter()
            .filter(|to| *to != from && from.can_become(*to))
            .map(RunStatus::as_str)
            .collect();
        assert_eq!(documented, actual, "transitions from {from}");
    }
}

/// Every DLQ reason; the match makes a new variant a compile error here.
fn dlq_reasons() -> Vec<DlqReason> {
    let all = [
        DlqReason::InvalidJob,
        DlqReason::FlowNotFound,
        DlqReason::ExecutionError,
        DlqReason::MaxDeliveries,
    ];
    for r in all {
        match r {
            DlqReason::InvalidJob
            | DlqReason::FlowNotFound
            | DlqReason::ExecutionError
            | DlqReason::MaxDeliveries => {}
        }
    }
    all.to_vec()
}

#[test]
fn every_dlq_reason_is_documented() {
    let documented: Vec<String> = table(DOCUMENTS, "## DLQ message")
        .iter()
        .map(|row| code_cell(row, 0, "## DLQ message").to_string())
        .collect();
    let actual: Vec<String> = dlq_reasons()
        .into_iter()
        .map(|r| r.as_str().to_string())
        .collect();
    assert_same(
        "DLQ reasons (spec/documents.md ## DLQ message)",
        documented,
        &actual,
    );
}

#[test]
fn the_index_links_every_spec_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("read spec/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    files.sort();
    for file in files {
        assert!(
            README.contains(&format!("]({file})")),
            "spec/README.md does not link {file}"
        );
    }
}

/// The OpenAPI document generated from the handlers, as stored in spec/openapi.json.
#[test]
fn openapi_json_in_spec_is_the_generated_document() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/openapi.json");
    let generated =
        serde_json::to_string_pretty(&pyoco::gateway::openapi::document()).unwrap() + "\n";
    if std::env::var("PYOCO_UPDATE_SPEC").is_ok() {
        std::fs::write(path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == generated,
        "spec/openapi.json is out of date: run `PYOCO_UPDATE_SPEC=1 cargo test -p pyoco-core --test spec_contract` and commit it"
    );
}

/// Every served route is in the OpenAPI document and every documented path is served.
#[test]
fn every_route_is_in_the_openapi_document_and_back() {
    let doc = pyoco::gateway::openapi::document();
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let mut served: Vec<String> = pyoco::gateway::ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method.as_str(), r.path))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}

/// Every `ERR-PYOCO-<code>` the client and worker print is in spec/cli.md's table.
#[test]
fn every_cli_error_code_is_in_the_spec() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec = std::fs::read_to_string(root.join("spec/cli.md")).unwrap();
    let mut found = std::collections::BTreeSet::new();
    for file in [
        "pyoco-client/src/error.rs",
        "pyoco-client/src/main.rs",
        "pyoco-worker/src/main.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (i, _) in text.match_indices("ERR-PYOCO-") {
            let code: String = text[i + 10..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if !code.is_empty() {
                found.insert(code);
            }
        }
        for (i, _) in text.match_indices("error_report(\n") {
            let rest = &text[i..];
            if let Some(q) = rest.find('"') {
                let code: String = rest[q + 1..].chars().take_while(|c| *c != '"').collect();
                found.insert(code);
            }
        }
        for (i, _) in text.match_indices("error_report(\"") {
            let code: String = text[i + 14..].chars().take_while(|c| *c != '"').collect();
            found.insert(code);
        }
    }
    assert!(
        found.contains("0018") && found.contains("HTTP"),
        "{found:?}"
    );
    for code in &found {
        assert!(
            spec.contains(&format!("| `{code}` |")),
            "spec/cli.md lacks {code}"
        );
    }
}
