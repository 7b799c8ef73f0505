//! JSON bodies validated like a pydantic model behind FastAPI: a body that is not JSON is a
//! `json_invalid` problem, one that is not an object a `model_attributes_type` problem, and
//! field problems are collected (all of them, in field order) into one 422 list.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde_json::{Map, Value, json};

use super::query::body_bytes;
use crate::gateway::error::{ApiError, problem};

/// The body as JSON; 413 over the route's limit, 422 `json_invalid` when it does not parse.
pub(in crate::gateway) fn json_body(
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    decode_json(&body_bytes(body)?)
}

/// `bytes` as JSON, or FastAPI's `json_invalid` 422 (its `loc` carries the 0-based column).
pub(in crate::gateway) fn decode_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::validation(vec![problem(
            "json_invalid",
            &[json!("body"), json!(e.column().saturating_sub(1))],
            "JSON decode error",
            json!({}),
            Some(json!({"error": e.to_string()})),
        )])
    })
}

/// The fields of a JSON object body, read one by one; each reader records its problem and
/// returns a placeholder, and [`Fields::finish`] answers the 422 of all of them.
pub(in crate::gateway) struct Fields<'a> {
    body: &'a Value,
    obj: &'a Map<String, Value>,
    problems: Vec<Value>,
}

impl<'a> Fields<'a> {
    /// The body's fields, or the 422 of a body that is not an object.
    pub(in crate::gateway) fn of(body: &'a Value) -> Result<Fields<'a>, ApiError> {
        let Value::Object(obj) = body else {
            return Err(ApiError::validation(vec![problem(
                "model_attributes_type",
                &[json!("body")],
                "Input should be a valid dictionary or object to extract fields from",
                body.clone(),
                None,
            )]));
        };
        Ok(Fields {
            body,
            obj,
            problems: Vec::new(),
        })
    }

    fn push(&mut self, kind: &str, field: &str, msg: &str, input: Value, ctx: Option<Value>) {
        self.problems.push(problem(
            kind,
            &[json!("body"), json!(field)],
            msg,
            input,
            ctx,
        ));
    }

    /// The raw value of `field`.
    pub(in crate::gateway) fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field)
    }

    fn string_type(&mut self, field: &str, input: &Value) {
        let input = input.clone();
        self.push(
            "string_type",
            field,
            "Input should be a valid string",
            input,
            None,
        );
    }

    /// A required string of at least one character.
    pub(in crate::gateway) fn required_string(&mut self, field: &str) -> String {
        match self.obj.get(field) {
            None => {
                let body = self.body.clone();
                self.push("missing", field, "Field required", body, None);
                String::new()
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.push(
                    "string_too_short",
                    field,
                    "String should have at least 1 character",
                    json!(s),
                    Some(json!({"min_length": 1})),
                );
                String::new()
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                self.string_type(field, other);
                String::new()
            }
        }
    }

    /// An optional object, `{}` when absent.
    pub(in crate::gateway) fn object_or_empty(&mut self, field: &str) -> Map<String, Value> {
        match self.obj.get(field) {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                let other = other.clone();
                self.push(
                    "dict_type",
                    field,
                    "Input should be a valid dictionary",
                    other,
                    None,
                );
                Map::new()
            }
        }
    }

    /// An optional (or null) string that must satisfy `valid`, described to the client as
    /// the regular expression `pattern`.
    pub(in crate::gateway) fn optional_pattern(
        &mut self,
        field: &str,
        pattern: &str,
        valid: fn(&str) -> bool,
    ) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if valid(s) => Some(s.clone()),
            Some(Value::String(s)) => {
                self.push(
                    "string_pattern_mismatch",
                    field,
                    &format!("String should match pattern '{pattern}'"),
                    json!(s),
                    Some(json!({ "pattern": pattern })),
                );
                None
            }
            Some(other) => {
                self.string_type(field, other);
                None
            }
        }
    }

    /// An optional (or null) string.
    pub(in crate::gateway) fn optional_string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.string_type(field, other);
                None
            }
        }
    }

    /// An optional (or null) finite number; pydantic's lax float also takes numeric strings.
    pub(in crate::gateway) fn optional_float(&mut self, field: &str) -> Option<f64> {
        let parsed = match self.obj.get(field) {
            None | Some(Value::Null) => return None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(other) => {
                let other = other.clone();
                self.push(
                    "float_type",
                    field,
                    "Input should be a valid number",
                    other,
                    None,
                );
                return None;
            }
        };
        match parsed.filter(|f| f.is_finite()) {
            Some(f) => Some(f),
            None => {
                let input = self.obj.get(field).cloned().unwrap_or(Value::Null);
                self.push(
                    "float_parsing",
                    field,
                    "Input should be a valid number, unable to parse string as a number",
                    input,
                    None,
                );
                None
            }
        }
    }

    /// A required whole number ≥ `min` (pydantic's strict-ish int: no floats with a fraction,
    /// no booleans).
    pub(in crate::gateway) fn required_int_at_least(&mut self, field: &str, min: i64) -> i64 {
        let Some(value) = self.obj.get(field) else {
            let body = self.body.clone();
            self.push("missing", field, "Field required", body, None);
            return min;
        };
        let value = value.clone();
        let int = match &value {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            _ => None,
        };
        match int {
            Some(n) if n >= min => n,
            Some(_) => {
                self.push(
                    "greater_than_equal",
                    field,
                    &format!("Input should be greater than or equal to {min}"),
                    value,
                    Some(json!({"ge": min})),
                );
                min
            }
            None => {
                self.push(
                    "int_type",
                    field,
                    "Input should be a valid integer",
                    value,
                    None,
                );
                min
            }
        }
    }

    /// An optional list of strings, empty when absent.
    pub(in crate::gateway) fn string_list(&mut self, field: &str) -> Vec<String> {
        match self.obj.get(field) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.problems.push(problem(
                            "string_type",
                            &[json!("body"), json!(field), json!(i)],
                            "Input should be a valid string",
                            other.clone(),
                            None,
                        )),
                    }
                }
                out
            }
            Some(other) => {
                let other = other.clone();
                self.push(
                    "list_type",
                    field,
                    "Input should be a valid list",
                    other,
                    None,
                );
                Vec::new()
            }
        }
    }

    /// The 422 of every problem found, if any.
    pub(in crate::gateway) fn finish(self) -> Result<(), ApiError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.problems))
        }
    }
}
