//! `{{...}}` templates in the strings of task inputs (every task's: the engine renders them
//! once per attempt): `{{params.<key>[.<path>]}}`, `{{steps.<task>.output[.<path>]}}` (an
//! upstream task's output) and `{{context.run_id|flow_name|task|tenant_id|tag|attempt}}`.
//! [`check_value`] is the submit-time check of a template's form.
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
    pub tenant_id: Option<&'a str>,
    pub tag: &'a str,
    pub attempt: u32,
}

impl<'a> Scope<'a> {
    pub fn of(call: &'a TaskCall) -> Scope<'a> {
        Scope {
            params: &call.params,
            upstream: &call.upstream,
            run_id: &call.run_id,
            flow_name: &call.flow_name,
            task: &call.task,
            tenant_id: call.tenant_id.as_deref(),
            tag: &call.tag,
            attempt: call.attempt,
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
            let task = parts
                .next()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| "expected steps.<task>.output[.<key>...]".to_string())?;
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
                "run_id" => Value::from(scope.run_id),
                "flow_name" => Value::from(scope.flow_name),
                "task" => Value::from(scope.task),
                "tenant_id" => scope.tenant_id.map_or(Value::Null, Value::from),
                "tag" => Value::from(scope.tag),
                "attempt" => Value::from(scope.attempt),
                _ => return Err(CONTEXT_FIELDS.into()),
            };
            match parts.next() {
                None => Ok(value),
                Some(_) => Err(format!("context.{field} has no fields")),
            }
        }
        _ => Err(UNKNOWN_REFERENCE.into()),
    }
}

const UNKNOWN_REFERENCE: &str = "unknown reference (use params.<key>, steps.<task>.output[.<key>...] or context.<run_id|flow_name|task|tenant_id|tag|attempt>)";

const CONTEXT_FIELDS: &str = "use context.run_id, context.flow_name, context.task, context.tenant_id, context.tag or context.attempt";

/// Checks the form of every template in `value`'s strings before anything runs: closed
/// braces, a known root, `steps.<task>.output` naming a task for which `is_task` holds, a
/// known `context` field. Values are not looked up (params and outputs exist only at run
/// time). `field` names the input in the message.
pub fn check_value(
    value: &Value,
    is_task: &dyn Fn(&str) -> bool,
    field: &str,
) -> Result<(), String> {
    match value {
        Value::String(s) => check_text(s, is_task, field),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_value(v, is_task, &format!("{field}.{i}"))),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_value(v, is_task, &format!("{field}.{k}"))),
        _ => Ok(()),
    }
}

fn check_text(s: &str, is_task: &dyn Fn(&str) -> bool, field: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' in {field}"))?;
        let expr = after[..end].trim();
        check_reference(expr, is_task).map_err(|e| describe(expr, field, &e))?;
        rest = &after[end + 2..];
    }
    Ok(())
}

fn check_reference(expr: &str, is_task: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let mut parts = expr.split('.').map(str::trim);
    match parts.next().unwrap_or_default() {
        "params" => Ok(()),
        "steps" => {
            let task = parts
                .next()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| "expected steps.<task>.output[.<key>...]".to_string())?;
            if parts.next() != Some("output") {
                return Err("expected steps.<task>.output[.<key>...]".to_string());
            }
            if !is_task(task) {
                return Err(format!("unknown step '{task}' (no such task)"));
            }
            Ok(())
        }
        "context" => match (parts.next(), parts.next()) {
            (Some("run_id" | "flow_name" | "task" | "tenant_id" | "tag" | "attempt"), None) => {
                Ok(())
            }
            (Some(f @ ("run_id" | "flow_name" | "task" | "tenant_id" | "tag" | "attempt")), _) => {
                Err(format!("context.{f} has no fields"))
            }
            _ => Err(CONTEXT_FIELDS.into()),
        },
        _ => Err(UNKNOWN_REFERENCE.into()),
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
            tenant_id: Some("acme"),
            tag: "gpu",
            attempt: 2,
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
    fn context_knows_the_tenant_tag_and_attempt() {
        with_scope(|s| {
            let out = render_value(
                &json!({"t": "{{context.tenant_id}}", "a": "{{context.attempt}}", "s": "{{context.tag}}#{{context.attempt}}"}),
                s,
                "x",
            );
            assert_eq!(out.unwrap(), json!({"t": "acme", "a": 2, "s": "gpu#2"}));
        });
    }

    #[test]
    fn the_form_of_templates_is_checked_before_running() {
        let is_task = |t: &str| t == "fetch";
        let check = |v: Value| check_value(&v, &is_task, "in");
        assert!(check(json!({"a": ["{{params.x}}", "{{steps.fetch.output.rows}}", "id {{context.attempt}}"]})).is_ok());
        assert_eq!(
            check(json!({"a": "{{steps.ghost.output}}"})).unwrap_err(),
            "template {{steps.ghost.output}} in in.a: unknown step 'ghost' (no such task)"
        );
        assert!(
            check(json!("x {{params.y"))
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            check(json!("{{context.user}}"))
                .unwrap_err()
                .contains("use context.run_id")
        );
        assert!(
            check(json!("{{input.x}}"))
                .unwrap_err()
                .contains("unknown reference")
        );
        assert!(
            check(json!("{{steps.fetch.rows}}"))
                .unwrap_err()
                .contains("expected steps")
        );
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
