//! Reading query strings and bodies the way the original's FastAPI validates them: the last
//! of a repeated parameter wins, `include` is repeatable, and type problems are collected
//! into one 422 list (`int_parsing`, `float_parsing`, `greater_than_equal`, ...).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::gateway::error::{ApiError, problem};

/// A parsed query string plus the problems found while reading it.
#[derive(Debug, Default)]
pub(in crate::gateway) struct QueryParams {
    pairs: Vec<(String, String)>,
    problems: Vec<Value>,
}

impl QueryParams {
    pub(in crate::gateway) fn parse(raw: &Option<String>) -> QueryParams {
        let pairs = raw
            .as_deref()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        QueryParams {
            pairs,
            problems: Vec::new(),
        }
    }

    /// Already split pairs, in order.
    pub(in crate::gateway) fn from_pairs(pairs: Vec<(String, String)>) -> QueryParams {
        QueryParams {
            pairs,
            problems: Vec::new(),
        }
    }

    /// The last value of `key`.
    pub(in crate::gateway) fn last(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable `key`, in order.
    pub(in crate::gateway) fn all<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `include=records|task_records|full|all`: keep `task_records`.
    pub(in crate::gateway) fn wants_records(&self) -> bool {
        self.all("include")
            .any(|v| matches!(v, "records" | "task_records" | "full" | "all"))
    }

    /// An integer in `min..=max`, or `default` when absent; a problem is recorded otherwise.
    pub(in crate::gateway) fn int_in(
        &mut self,
        key: &str,
        min: i64,
        max: i64,
        default: i64,
    ) -> i64 {
        let Some(raw) = self.last(key).map(str::to_string) else {
            return default;
        };
        let loc = [json!("query"), json!(key)];
        let found = match raw.trim().parse::<i64>() {
            Ok(n) if n < min => problem(
                "greater_than_equal",
                &loc,
                &format!("Input should be greater than or equal to {min}"),
                json!(raw),
                Some(json!({"ge": min})),
            ),
            Ok(n) if n > max => problem(
                "less_than_equal",
                &loc,
                &format!("Input should be less than or equal to {max}"),
                json!(raw),
                Some(json!({"le": max})),
            ),
            Ok(n) => return n,
            Err(_) => problem(
                "int_parsing",
                &loc,
                "Input should be a valid integer, unable to parse string as an integer",
                json!(raw),
                None,
            ),
        };
        self.problems.push(found);
        default
    }

    /// A finite number, or `None` when absent; a problem is recorded when it does not parse.
    pub(in crate::gateway) fn float(&mut self, key: &str) -> Option<f64> {
        let raw = self.last(key)?.to_string();
        match raw.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Some(f),
            _ => {
                self.problems.push(problem(
                    "float_parsing",
                    &[json!("query"), json!(key)],
                    "Input should be a valid number, unable to parse string as a number",
                    json!(raw),
                    None,
                ));
                None
            }
        }
    }

    /// Records a problem found by the caller.
    pub(in crate::gateway) fn push_problem(&mut self, p: Value) {
        self.problems.push(p);
    }

    /// The 422 of every problem found so far, if any.
    pub(in crate::gateway) fn check(&mut self) -> Result<(), ApiError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(std::mem::take(&mut self.problems)))
        }
    }
}

/// A request body, with 413 `request_too_large` over the route's limit.
pub(in crate::gateway) fn body_bytes(
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::request_too_large(crate::gateway::routes::DEFAULT_BODY_LIMIT)
        } else {
            ApiError::validation(vec![problem(
                "value_error",
                &[json!("body")],
                &format!("could not read the request body: {e}"),
                Value::Null,
                None,
            )])
        }
    })
}
