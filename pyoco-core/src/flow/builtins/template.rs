//! `{{...}}` templates in the strings of built-in task inputs: `{{params.<key>[.<path>]}}`,
//! `{{steps.<task>.output[.<path>]}}` (an upstream task's output) and
//! `{{context.run_id|flow_name|task}}`.
//!
//! A string that is exactly one reference becomes the referenced value with its JSON type
//! (so `json: {items: "{{steps.a.output.rows}}"}` sends a list); references embedded in
//! longer text are written in (strings as they are, anything else as JSON text). A missing
//! reference is an error that names it: silently sending an empty string to an API would
//! hide the mistake.

use serde_json::{Map, Value};

use crate::flow::tasks::TaskCall;

/// What references can see.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub params: &'a Map<String, Value>,
    pub upstream: &'a Map<String, Value>,
    pub run_id: &'a str,
    pub flow_name: &'a str,
    pub task: &'a str,
}

impl<'a> Scope<'a> {
    pub fn of(call: &'a TaskCall) -> Scope<'a> {
        Scope {
            params: &call.params,
            upstream: &call.upstream,
            run_id: &call.run_id,
            flow_name: &call.flow_name,
            task: &call.task,
        }
    }
}

/// Renders every string inside `value`; `field` names the input in error messages.
pub fn render_value(value: &Value, scope: &Scope<'_>, field: &str) -> Result<Value, String> {
    match value {
        Value::String(s) => render_typed(s, scope, field),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| render_value(v, scope, &format!("{field}.{i}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_value(v, scope, &format!("{field}.{k}"))?)))
            .collect::<Result<Map<_, _>, String>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// A string that is exactly one reference keeps the referenced value's type.
fn render_typed(s: &str, scope: &Scope<'_>, field: &str) -> Result<Value, String> {
    let trimmed = s.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
        .filter(|inner| !inner.contains("{{") && !inner.contains("}}"))
    {
        return lookup(inner.trim(), scope).map_err(|e| describe(inner, field, &e));
    }
    render_text(s, scope, field).map(Value::String)
}

/// Renders `s` as text: every reference is replaced by its value.
pub fn render_text(s: &str, scope: &Scope<'_>, field: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' in {field}"))?;
        let expr = &after[..end];
        match lookup(expr.trim(), scope).map_err(|e| describe(expr, field, &e))? {
            Value::String(v) => out.push_str(&v),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn describe(expr: &str, field: &str, reason: &str) -> String {
    format!("template {{{{{}}}}} in {field}: {reason}", expr.trim())
}

/// Resolves one reference (without the braces).
fn lookup(expr: &str, scope: &Scope<'_>) -> Result<Value, String> {
    let mut parts = expr.split('.').map(str::trim);
    match parts.next().unwrap_or_default() {
        "params" => {
            let Some(key) = parts.next() else {
                return Ok(Value::Object(scope.params.clone()));
            };
            let value = scope
                .params
                .get(key)
                .ok_or_else(|| format!("'{key}' is not a run param"))?;
            walk(value, parts, &format!("params.{key}"))
        }
        "steps" => {
            let task = parts.next().filter(|t| !t.is_empty()).ok_or_else(|| {
                "expected steps.<task>.output[.<key>...]".to_string()
            })?;
            if parts.next() != Some("output") {
                return Err("expected steps.<task>.output[.<key>...]".to_string());
            }
            let value = scope.upstream.get(task).ok_or_else(|| {
                format!("task '{task}' has no output here (it must finish before this task starts)")
            })?;
            walk(value, parts, &format!("the output of task '{task}'"))
        }
        "context" => {
            let field = parts.next().unwrap_or_default();
            let value = match field {
                "run_id" => scope.run_id,
                "flow_name" => scope.flow_name,
                "task" => scope.task,
                _ => return Err("use context.run_id, context.flow_name or context.task".into()),
            };
            match parts.next() {
                None => Ok(Value::String(value.to_string())),
                Some(_) => Err(format!("context.{field} has no fields")),
            }
        }
        _ => Err(
            "unknown reference (use params.<key>, steps.<task>.output[.<key>...] or context.<run_id|flow_name|task>)"
                .into(),
        ),
    }
}

/// Follows `path` (object keys, array indexes) inside `value`.
fn walk<'p>(
    mut value: &Value,
    path: impl Iterator<Item = &'p str>,
    what: &str,
) -> Result<Value, String> {
    for key in path {
        let next = match value {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = next.ok_or_else(|| format!("'{key}' not found in {what}"))?;
    }
    Ok(value.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with_scope<T>(f: impl FnOnce(&Scope<'_>) -> T) -> T {
        let params = json!({"x": 3, "name": "ada", "nested": {"list": [10, 20]}});
        let upstream = json!({"fetch": {"rows": [{"id": 1}, {"id": 2}], "total": 2}});
        let scope = Scope {
            params: params.as_object().unwrap(),
            upstream: upstream.as_object().unwrap(),
            run_id: "r-1",
            flow_name: "demo",
            task: "call",
        };
        f(&scope)
    }

    #[test]
    fn embedded_references_are_written_in_as_text() {
        with_scope(|s| {
            let out = render_text(
                "/u/{{params.name}}/{{ params.x }}?n={{steps.fetch.output.total}}&r={{context.run_id}}",
                s,
                "url",
            );
            assert_eq!(out.unwrap(), "/u/ada/3?n=2&r=r-1");
            let out = render_text("rows={{steps.fetch.output.rows}}", s, "body").unwrap();
            assert_eq!(out, r#"rows=[{"id":1},{"id":2}]"#);
            assert_eq!(render_text("no refs", s, "body").unwrap(), "no refs");
        });
    }

    #[test]
    fn a_whole_string_reference_keeps_its_type() {
        with_scope(|s| {
            let out = render_value(
                &json!({"n": "{{params.x}}", "rows": " {{steps.fetch.output.rows}} ", "second": "{{params.nested.list.1}}", "t": "{{context.task}}/{{context.flow_name}}", "keep": [true, null, 1.5]}),
                s,
                "json",
            );
            assert_eq!(
                out.unwrap(),
                json!({"n": 3, "rows": [{"id": 1}, {"id": 2}], "second": 20, "t": "call/demo", "keep": [true, null, 1.5]})
            );
        });
    }

    #[test]
    fn missing_references_are_named() {
        with_scope(|s| {
            let err = |t: &str| render_value(&json!(t), s, "json.a").unwrap_err();
            assert_eq!(
                err("{{params.missing}}"),
                "template {{params.missing}} in json.a: 'missing' is not a run param"
            );
            assert_eq!(
                err("id={{steps.fetch.output.rows.5.id}}"),
                "template {{steps.fetch.output.rows.5.id}} in json.a: '5' not found in the output of task 'fetch'"
            );
            assert!(err("{{steps.later.output}}").contains("task 'later' has no output here"));
            assert!(err("{{steps.fetch.rows}}").contains("expected steps.<task>.output"));
            assert!(err("{{context.tenant}}").contains("use context.run_id"));
            assert!(err("{{input.x}}").contains("unknown reference"));
            assert_eq!(err("a {{params.x"), "unclosed '{{' in json.a");
        });
    }
}
