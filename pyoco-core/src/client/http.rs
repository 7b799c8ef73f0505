//! `HttpClient`: the gateway's HTTP API from Rust, with typed errors that carry the status
//! code and the server's `detail`.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{Map, Value, json};

/// An HTTP API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The gateway answered with an error status.
    #[error(transparent)]
    Status(Box<StatusError>),
    /// The gateway could not be reached (connection refused, timeout, …).
    #[error("connection error: {0}")]
    Transport(String),
    /// The answer was not the JSON expected.
    #[error("invalid response: {0}")]
    Decode(String),
    /// A client-side wait (e.g. until a run is terminal) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// An error status from the gateway, with its `detail` and stable `code`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("HTTP {status} {method} {path}: {body}")]
pub struct StatusError {
    pub status: u16,
    pub method: String,
    pub path: String,
    /// The raw response body.
    pub body: String,
    /// The body's `detail` (a string, or FastAPI's list of problems).
    pub detail: Value,
    /// The body's `code` (see spec/http-api.md), when the gateway is pyoco's.
    pub code: Option<String>,
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status(e) => Some(e.status),
            _ => None,
        }
    }

    /// The stable error `code` of a pyoco gateway answer.
    pub fn code(&self) -> Option<&str> {
        match self {
            HttpError::Status(e) => e.code.as_deref(),
            _ => None,
        }
    }
}

/// Options of `GET /runs`.
#[derive(Debug, Clone, Default)]
pub struct ListRuns {
    pub status: Option<String>,
    pub flow: Option<String>,
    pub tag: Option<String>,
    pub full: bool,
    pub limit: Option<u32>,
}

/// A client of the pyoco gateway.
#[derive(Debug, Clone)]
pub struct HttpClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<(String, String)>,
}

impl HttpClient {
    /// `base_url` like `http://127.0.0.1:8000` (a trailing `/` is ignored).
    pub fn new(base_url: &str) -> Result<HttpClient, HttpError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        Ok(HttpClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            api_key: None,
        })
    }

    /// Sends `key` in `header` (default header name of the gateway: `X-API-Key`).
    pub fn with_api_key(mut self, header: &str, key: &str) -> HttpClient {
        self.api_key = Some((header.to_string(), key.to_string()));
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HttpError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some((h, k)) = &self.api_key {
            req = req.header(h.as_str(), k.as_str());
        }
        let resp = build(req)
            .send()
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        Err(HttpError::Status(Box::new(StatusError {
            status,
            method: method.to_string(),
            path: path.to_string(),
            detail: parsed
                .get("detail")
                .cloned()
                .unwrap_or(Value::String(body.clone())),
            code: parsed
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_string),
            body,
        })))
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Value, HttpError> {
        let resp = self.send(method, path, build).await?;
        resp.json()
            .await
            .map_err(|e| HttpError::Decode(e.to_string()))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Value, HttpError> {
        self.json(reqwest::Method::GET, "/health", |r| r).await
    }

    /// `POST /runs`: returns `{"run_id", "status", "bundle_hash"}`.
    pub async fn submit_run(
        &self,
        flow_name: &str,
        params: Map<String, Value>,
        tag: Option<&str>,
        tags: Option<Vec<String>>,
    ) -> Result<Value, HttpError> {
        let mut body = json!({"flow_name": flow_name, "params": params});
        if let Some(tag) = tag {
            body["tag"] = json!(tag);
        }
        if let Some(tags) = tags {
            body["tags"] = json!(tags);
        }
        self.json(reqwest::Method::POST, "/runs", |r| r.json(&body))
            .await
    }

    /// `POST /runs/yaml` (multipart).
    pub async fn submit_yaml(
        &self,
        workflow_yaml: &[u8],
        flow_name: &str,
        tag: Option<&str>,
    ) -> Result<Value, HttpError> {
        let part = Part::bytes(workflow_yaml.to_vec())
            .file_name("flow.yaml")
            .mime_str("application/x-yaml")
            .map_err(|e| HttpError::Decode(e.to_string()))?;
        let mut form = Form::new()
            .part("workflow", part)
            .text("flow_name", flow_name.to_string());
        if let Some(tag) = tag {
            form = form.text("tag", tag.to_string());
        }
        self.json(reqwest::Method::POST, "/runs/yaml", |r| r.multipart(form))
            .await
    }

    /// `GET /runs/{run_id}` (with `include=records` when `records`).
    pub async fn get_run(&self, run_id: &str, records: bool) -> Result<Value, HttpError> {
        let path = format!("/runs/{run_id}");
        self.json(reqwest::Method::GET, &path, |r| {
            if records {
                r.query(&[("include", "records")])
            } else {
                r
            }
        })
        .await
    }

    /// `GET /runs/{run_id}/tasks`.
    pub async fn get_tasks(&self, run_id: &str) -> Result<Value, HttpError> {
        self.json(
            reqwest::Method::GET,
            &format!("/runs/{run_id}/tasks"),
            |r| r,
        )
        .await
    }

    /// `GET /runs` (compat mode: a list).
    pub async fn list_runs(&self, opts: &ListRuns) -> Result<Vec<Value>, HttpError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("status", &opts.status),
            ("flow", &opts.flow),
            ("tag", &opts.tag),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                q.push((k, v.clone()));
            }
        }
        if opts.full {
            q.push(("include", "full".into()));
        }
        if let Some(limit) = opts.limit {
            q.push(("limit", limit.to_string()));
        }
        match self
            .json(reqwest::Method::GET, "/runs", |r| r.query(&q))
            .await?
        {
            Value::Array(items) => Ok(items),
            Value::Object(mut m) => match m.remove("items") {
                Some(Value::Array(items)) => Ok(items),
                _ => Ok(Vec::new()),
            },
            other => Err(HttpError::Decode(format!("expected a list, got {other}"))),
        }
    }

    /// Polls `GET /runs/{run_id}` every `interval` until the status is terminal (or `timeout`
    /// passes), calling `on_change` whenever the snapshot's `updated_at` or status changes.
    pub async fn wait_until_terminal(
        &self,
        run_id: &str,
        interval: Duration,
        timeout: Option<Duration>,
        mut on_change: impl FnMut(&Value),
    ) -> Result<Value, HttpError> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last: Option<(Value, Value)> = None;
        loop {
            let run = self.get_run(run_id, true).await?;
            let key = (
                run.get("status").cloned().unwrap_or(Value::Null),
                run.get("updated_at").cloned().unwrap_or(Value::Null),
            );
            if last.as_ref() != Some(&key) {
                on_change(&run);
                last = Some(key);
            }
            let status = run
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if matches!(status, "COMPLETED" | "FAILED" | "CANCELLED") {
                return Ok(run);
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Err(HttpError::Timeout(format!(
                    "run {run_id} is still {status}"
                )));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
