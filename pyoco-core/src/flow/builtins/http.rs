//! `pyoco:http`: one HTTP request with `{{...}}` templates (see [`super::template`]) in the
//! url, headers, query, and body.
//!
//! Output: `{"status", "headers": {lowercase name: value}, "body"}` (`body` parsed when the
//! response is JSON, else text). A status outside `expect_status` (default: any 2xx) fails the
//! task with `HTTP <status> <method> <url>`, so the task's `retries` cover a flaky 5xx; the
//! response then goes into the task record as `response`.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};
use serde_json::{Map, Value, json};

use super::{Args, chain, scalar_text};
use crate::flow::tasks::{TaskCall, TaskError};

pub(super) const PARAMS: &[&str] = &[
    "method",
    "url",
    "headers",
    "query",
    "json",
    "form",
    "body",
    "timeout_sec",
    "expect_status",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// A larger response fails the task rather than filling the worker's memory and the run
/// snapshot.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// One client per process: it pools connections across tasks and runs.
fn client() -> Result<&'static Client, TaskError> {
    static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| Client::builder().build().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| TaskError::new(format!("pyoco:http: no HTTP client: {e}")))
}

pub(super) async fn run(call: TaskCall) -> Result<Value, TaskError> {
    let args = Args::new(&call, "pyoco:http");
    // Templates were rendered by the engine, once per attempt, like every task's inputs.
    let text = |value: &str, _field: &str| Ok::<_, TaskError>(value.to_string());

    let method_name = args.str("method")?.unwrap_or("GET").to_ascii_uppercase();
    if !METHODS.contains(&method_name.as_str()) {
        return Err(args.error(format!(
            "method must be one of {}, got '{method_name}'",
            METHODS.join(", ")
        )));
    }
    let method = Method::from_bytes(method_name.as_bytes()).map_err(|e| args.error(e))?;
    let raw_url = args
        .str("url")?
        .ok_or_else(|| args.error("url is required"))?;
    let mut url =
        Url::parse(&text(raw_url, "url")?).map_err(|e| args.error(format!("invalid url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(args.error(format!("url must be http or https, got '{}'", url.scheme())));
    }
    // For messages: without credentials and query, which may carry secrets.
    let shown = {
        let mut u = url.clone();
        u.set_query(None);
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    };
    for (key, value) in args.map("query")?.into_iter().flatten() {
        // A list repeats the key (`?tag=a&tag=b`).
        let values = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            let field = format!("query.{key}");
            let t = scalar_text(v)
                .ok_or_else(|| args.error(format!("{field} must be a scalar, got {v}")))?;
            url.query_pairs_mut().append_pair(key, &text(&t, &field)?);
        }
    }
    let mut headers = HeaderMap::new();
    for (key, value) in args.map("headers")?.into_iter().flatten() {
        let field = format!("headers.{key}");
        let t = scalar_text(value)
            .ok_or_else(|| args.error(format!("{field} must be a string, got {value}")))?;
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|e| args.error(format!("{field}: {e}")))?;
        let value = HeaderValue::from_str(&text(&t, &field)?)
            .map_err(|e| args.error(format!("{field}: {e}")))?;
        headers.append(name, value);
    }
    let (body, content_type) = match (args.get("json"), args.map("form")?, args.str("body")?) {
        (None, None, None) => (None, None),
        (Some(json), None, None) => (
            Some(json.to_string().into_bytes()),
            Some("application/json"),
        ),
        (None, Some(form), None) => {
            let mut encoder = form_urlencoded::Serializer::new(String::new());
            for (key, value) in form {
                let field = format!("form.{key}");
                let t = scalar_text(value)
                    .ok_or_else(|| args.error(format!("{field} must be a scalar, got {value}")))?;
                encoder.append_pair(key, &text(&t, &field)?);
            }
            (
                Some(encoder.finish().into_bytes()),
                Some("application/x-www-form-urlencoded"),
            )
        }
        (None, None, Some(body)) => (Some(text(body, "body")?.into_bytes()), None),
        _ => return Err(args.error("give at most one of json, form and body")),
    };
    if let Some(ct) = content_type
        && !headers.contains_key(CONTENT_TYPE)
    {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    let timeout = args
        .seconds("timeout_sec", Some(5.0), 30.0)?
        .unwrap_or(Duration::from_secs(5));
    let expect = args.int_list("expect_status", 100..=599)?;

    let mut request = client()?
        .request(method, url)
        .headers(headers)
        .timeout(timeout);
    if let Some(body) = body {
        request = request.body(body);
    }
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            args.error(format!(
                "HTTP request timed out after {}s: {method_name} {shown}",
                timeout.as_secs_f64()
            ))
        } else {
            args.error(format!(
                "HTTP request failed: {method_name} {shown}: {}",
                chain(&e)
            ))
        }
    };
    let exchange = async {
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let mut headers = Map::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.get_mut(name.as_str()) {
                // Repeated headers are joined as HTTP allows (`a, b`).
                Some(Value::String(prev)) => *prev = format!("{prev}, {value}"),
                _ => {
                    headers.insert(name.as_str().to_string(), Value::String(value));
                }
            }
        }
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(args.error(format!(
                    "response body of {method_name} {shown} is larger than {} MiB",
                    MAX_BODY >> 20
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = match is_json
            .then(|| serde_json::from_slice::<Value>(&bytes).ok())
            .flatten()
        {
            Some(v) => v,
            None => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        Ok::<_, TaskError>(json!({"status": status, "headers": headers, "body": body}))
    };
    let output = tokio::select! {
        r = exchange => r?,
        _ = call.cancel.cancelled() => return Err(TaskError::new("cancelled")),
    };
    let status = output["status"].as_i64().unwrap_or_default();
    let ok = match &expect {
        Some(list) => list.contains(&status),
        None => (200..300).contains(&status),
    };
    let Ok(mut record) = call.record.lock() else {
        return Err(TaskError::new("pyoco:http: task record lock poisoned"));
    };
    if ok {
        // A retried task must not keep the response of an earlier failed attempt.
        record.remove("response");
        return Ok(output);
    }
    record.insert("response".into(), output);
    Err(TaskError::new(format!(
        "HTTP {status} {method_name} {shown}"
    )))
}
