//! `HttpClient`: every route of the gateway's HTTP API from Rust (the counterpart of the
//! original's `PyocoHttpClient`), with typed errors that carry the status code, the server's
//! `detail` and its stable `code`.
//!
//! Plain requests share one `reqwest` client with a 30 s total timeout. The SSE watch
//! ([`HttpClient::watch_run`], in `http/sse.rs`) uses a second client without a total timeout,
//! since a watch legitimately stays open for minutes.

mod sse;
mod wheels;

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error_code::ErrorCode;

pub use sse::{WatchEvent, WatchOptions, WatchStream};
pub use wheels::{WheelHistoryQuery, WheelUpload};

/// Statuses after which a run never changes again.
const TERMINAL: [&str; 3] = ["COMPLETED", "FAILED", "CANCELLED"];

/// `true` for COMPLETED, FAILED and CANCELLED.
pub fn is_terminal_status(status: &str) -> bool {
    TERMINAL.contains(&status)
}

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
    /// The HTTP status code, e.g. 404.
    pub status: u16,
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request path without the query, e.g. `/runs/abc`.
    pub path: String,
    /// The raw response body.
    pub body: String,
    /// The body's `detail` (a string, or FastAPI's list of problems); the raw body when it
    /// is not JSON.
    pub detail: Value,
    /// The body's `code` as sent (see spec/http-api.md), when the gateway is pyoco's; kept
    /// as text so a code newer than this client is not lost.
    pub code: Option<String>,
    /// [`code`](Self::code) parsed; `None` when absent or unknown to this version.
    pub error_code: Option<ErrorCode>,
}

impl StatusError {
    /// Builds the error from a response body, picking `detail` and `code` out of it when it is
    /// a JSON object.
    pub fn from_body(status: u16, method: &str, path: &str, body: String) -> StatusError {
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let code = parsed
            .get("code")
            .and_then(Value::as_str)
            .map(str::to_string);
        StatusError {
            status,
            method: method.to_string(),
            path: path.to_string(),
            detail: parsed
                .get("detail")
                .cloned()
                .unwrap_or(Value::String(body.clone())),
            error_code: code.as_deref().and_then(|c| c.parse().ok()),
            code,
            body,
        }
    }
}

impl HttpError {
    /// The HTTP status of an error answer; `None` for transport, decode and timeout errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status(e) => Some(e.status),
            _ => None,
        }
    }

    /// The stable error `code` of a pyoco gateway answer (`run_not_found`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            HttpError::Status(e) => e.code.as_deref(),
            _ => None,
        }
    }

    /// The parsed error `code`; `None` for other errors and for codes this version does not
    /// know (see [`code`](Self::code) for the text).
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            HttpError::Status(e) => e.error_code,
            _ => None,
        }
    }

    /// The `detail` of an error answer.
    pub fn detail(&self) -> Option<&Value> {
        match self {
            HttpError::Status(e) => Some(&e.detail),
            _ => None,
        }
    }
}

/// Options of `GET /runs` in compat mode ([`HttpClient::list_runs`]). Empty strings count as
/// absent, as on the server.
#[derive(Debug, Clone, Default)]
pub struct ListRuns {
    /// Only runs with this exact `status`.
    pub status: Option<String>,
    /// Only runs with this `flow_name`.
    pub flow: Option<String>,
    /// Only runs with this routing `tag`.
    pub tag: Option<String>,
    /// Whole snapshots (`include=full`) rather than summaries.
    pub full: bool,
    /// Page size, 1..=200 (server default 50).
    pub limit: Option<u32>,
}

/// Options of `GET /runs` in diff mode ([`HttpClient::list_runs_vnext`]).
#[derive(Debug, Clone, Default)]
pub struct ListRunsVnext {
    /// Only runs with this exact `status`.
    pub status: Option<String>,
    /// Only runs with this `flow_name`.
    pub flow: Option<String>,
    /// Only runs with this routing `tag`.
    pub tag: Option<String>,
    /// Only runs submitted from a `flow.yaml` with this hex SHA-256.
    pub workflow_yaml_sha256: Option<String>,
    /// Only runs with `updated_at` strictly greater than this.
    pub updated_after: Option<f64>,
    /// Continue after a previous page (its `next_cursor`).
    pub cursor: Option<String>,
    /// Whole snapshots (`include=full`) rather than summaries.
    pub full: bool,
    /// Page size, 1..=200 (server default 50).
    pub limit: Option<u32>,
}

/// One page of `GET /runs` in diff mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunsPage {
    /// The runs, newest `(updated_at, run_id)` first.
    pub items: Vec<Value>,
    /// Set when more runs follow: pass it as [`ListRunsVnext::cursor`].
    pub next_cursor: Option<String>,
}

/// Which workers `GET /workers` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerScope {
    /// Workers whose effective state is RUNNING or IDLE (the server's default).
    Active,
    /// Every worker in the registry.
    All,
}

impl WorkerScope {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerScope::Active => "active",
            WorkerScope::All => "all",
        }
    }
}

/// Options of `GET /workers` ([`HttpClient::get_workers`]).
#[derive(Debug, Clone, Default)]
pub struct ListWorkers {
    /// `active` (server default) or `all`.
    pub scope: Option<WorkerScope>,
    /// Only workers in this effective state: `RUNNING`, `IDLE`, `STOPPED_GRACEFUL` or
    /// `DISCONNECTED`.
    pub state: Option<String>,
    /// Also show hidden workers (sent only when `true`, like the original).
    pub include_hidden: bool,
    /// At most this many workers, 1..=500 (server default 100).
    pub limit: Option<u32>,
}

/// A client of the pyoco gateway. Cheap to clone (the connection pools are shared).
#[derive(Debug, Clone)]
pub struct HttpClient {
    base: String,
    /// Plain requests: 30 s total timeout.
    http: reqwest::Client,
    /// The SSE watch: no total timeout (a watch stays open up to 600 s), only connect and
    /// per-read timeouts, so a dead connection is noticed and re-established.
    sse_http: reqwest::Client,
    api_key: Option<(String, String)>,
}

/// Longest silence on a watch connection before it counts as dead; well above the heartbeat
/// interval of both servers (2 s here, 5 s in the original).
const SSE_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpClient {
    /// `base_url` like `http://127.0.0.1:8000` (a trailing `/` is ignored). Nothing is sent
    /// until the first call.
    pub fn new(base_url: &str) -> Result<HttpClient, HttpError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        let sse_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(SSE_READ_TIMEOUT)
            .build()
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        Ok(HttpClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            sse_http,
            api_key: None,
        })
    }

    /// Sends `key` in `header` with every request, the watch included (the gateway's default
    /// header name is `X-API-Key`).
    pub fn with_api_key(mut self, header: &str, key: &str) -> HttpClient {
        self.api_key = Some((header.to_string(), key.to_string()));
        self
    }

    /// The base URL, without a trailing `/`.
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
        Err(HttpError::Status(Box::new(StatusError::from_body(
            status,
            method.as_str(),
            path,
            body,
        ))))
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Value, HttpError> {
        let resp = self.send(method, path, build).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            HttpError::Decode(format!(
                "{e} in {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })
    }

    /// `GET /health`: the gateway's liveness answer, e.g. `{"status": "ok"}`. Never touches
    /// NATS on the server side.
    pub async fn health(&self) -> Result<Value, HttpError> {
        self.json(reqwest::Method::GET, "/health", |r| r).await
    }

    /// `POST /runs`: submits a run of the named flow (resolved by the worker). `tag` and
    /// `tags` are sent only when given. Returns `{"run_id", "status": "PENDING",
    /// "bundle_hash"}`.
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

    /// `POST /runs/yaml` (multipart): submits a run of an uploaded single-flow `flow.yaml`
    /// under `flow_name`; `tag` defaults to the server's `PYOCO_DEFAULT_TAG`. Returns the same
    /// shape as [`submit_run`](Self::submit_run).
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

    /// `GET /runs/{run_id}`: the run snapshot plus worker information; with `records` also
    /// `task_records` (`include=records`). 404 `run_not_found` for an unknown id.
    pub async fn get_run(&self, run_id: &str, records: bool) -> Result<Value, HttpError> {
        let path = format!("/runs/{}", segment(run_id));
        self.json(reqwest::Method::GET, &path, |r| {
            if records {
                r.query(&[("include", "records")])
            } else {
                r
            }
        })
        .await
    }

    /// `GET /runs/{run_id}/tasks`: `{run_id, flow_name, status, tasks, task_records,
    /// task_records_truncated}`.
    pub async fn get_tasks(&self, run_id: &str) -> Result<Value, HttpError> {
        let path = format!("/runs/{}/tasks", segment(run_id));
        self.json(reqwest::Method::GET, &path, |r| r).await
    }

    /// `GET /runs` in compat mode: a list of run summaries (whole snapshots with
    /// [`ListRuns::full`]), newest first. A diff-mode answer is unwrapped to its `items`.
    pub async fn list_runs(&self, opts: &ListRuns) -> Result<Vec<Value>, HttpError> {
        let mut q = filters(&opts.status, &opts.flow, &opts.tag);
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

    /// `GET /runs` in diff mode: one page `{items, next_cursor}`. Diff mode is always asked
    /// for (an empty `cursor` is sent when none is given), so `next_cursor` is there to page
    /// on even without other diff-mode options. 422 `invalid_list_query` for a bad cursor.
    pub async fn list_runs_vnext(&self, opts: &ListRunsVnext) -> Result<RunsPage, HttpError> {
        let mut q = filters(&opts.status, &opts.flow, &opts.tag);
        if let Some(sha) = opts.workflow_yaml_sha256.as_ref().filter(|s| !s.is_empty()) {
            q.push(("workflow_yaml_sha256", sha.clone()));
        }
        if let Some(after) = opts.updated_after {
            q.push(("updated_after", after.to_string()));
        }
        // The server switches to diff mode on the mere presence of `cursor`, even empty.
        q.push(("cursor", opts.cursor.clone().unwrap_or_default()));
        if opts.full {
            q.push(("include", "full".into()));
        }
        if let Some(limit) = opts.limit {
            q.push(("limit", limit.to_string()));
        }
        let value = self
            .json(reqwest::Method::GET, "/runs", |r| r.query(&q))
            .await?;
        match value {
            // A server that ignored the diff-mode switch answers a plain list.
            Value::Array(items) => Ok(RunsPage {
                items,
                next_cursor: None,
            }),
            other => serde_json::from_value(other)
                .map_err(|e| HttpError::Decode(format!("expected {{items, next_cursor}}: {e}"))),
        }
    }

    /// Every run matching `opts`, following `next_cursor` from `opts.cursor` (or the start)
    /// until the last page; `opts.limit` is the page size.
    pub async fn list_all_runs(&self, opts: &ListRunsVnext) -> Result<Vec<Value>, HttpError> {
        let mut query = opts.clone();
        let mut all = Vec::new();
        loop {
            let page = self.list_runs_vnext(&query).await?;
            all.extend(page.items);
            match page.next_cursor {
                // A cursor that does not move would loop forever.
                Some(next) if !next.is_empty() && query.cursor.as_deref() != Some(&next) => {
                    query.cursor = Some(next);
                }
                _ => return Ok(all),
            }
        }
    }

    /// `GET /runs/{run_id}/watch`: follows a run as a stream of [`WatchEvent`]s (snapshots
    /// and heartbeats) over Server-Sent Events.
    ///
    /// The stream ends after the terminal snapshot (COMPLETED, FAILED, CANCELLED), or without
    /// one when [`WatchOptions::deadline`] passes. Whenever the server closes the connection
    /// before that (after its `timeout_sec`, a restart, a proxy cut), the stream reconnects
    /// with `Last-Event-ID` set to the last revision seen, so no snapshot is repeated or
    /// skipped. Errors end the stream: an error status before the first connection (404
    /// `run_not_found`, 422 for a bad query), a gateway that stays unreachable across
    /// reconnects, or an event that is not valid JSON.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// use pyoco::client::http::{HttpClient, WatchEvent, WatchOptions};
    /// # async fn demo(client: HttpClient) -> Result<(), pyoco::client::http::HttpError> {
    /// let mut events = client.watch_run("run-id", WatchOptions::default());
    /// while let Some(event) = events.next().await {
    ///     if let WatchEvent::Snapshot { snapshot, .. } = event? {
    ///         println!("{}", snapshot["status"]);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn watch_run(&self, run_id: &str, opts: WatchOptions) -> WatchStream {
        sse::watch(self.clone(), run_id.to_string(), opts)
    }

    /// `POST /runs/{run_id}/cancel`: asks the run to stop (idempotent; a terminal run is
    /// returned unchanged). Without `wait`, returns the snapshot after the change (usually
    /// CANCELLING, or CANCELLED for a run no worker had claimed). With `wait`, then follows
    /// the run with [`watch_run`](Self::watch_run) until it is terminal and returns it as
    /// [`get_run`](Self::get_run) shows it; [`HttpError::Timeout`] (`cancel wait timeout for
    /// run_id=<id>`) when it is not terminal within `wait` (at least 1 s, like the original).
    pub async fn cancel_run(
        &self,
        run_id: &str,
        wait: Option<Duration>,
    ) -> Result<Value, HttpError> {
        let path = format!("/runs/{}/cancel", segment(run_id));
        let snapshot = self.json(reqwest::Method::POST, &path, |r| r).await?;
        let Some(wait) = wait else {
            return Ok(snapshot);
        };
        if status_of(&snapshot).is_some_and(is_terminal_status) {
            return Ok(snapshot);
        }
        let opts = WatchOptions {
            deadline: Some(wait.max(Duration::from_secs(1))),
            ..WatchOptions::default()
        };
        match self.follow_to_terminal(run_id, opts, |_| {}).await? {
            Some(_) => self.get_run(run_id, false).await,
            None => Err(HttpError::Timeout(format!(
                "cancel wait timeout for run_id={run_id}"
            ))),
        }
    }

    /// Follows the run with [`watch_run`](Self::watch_run) (records included) until it is
    /// terminal, calling `on_change` with each new snapshot, and returns it as
    /// [`get_run`](Self::get_run)`(run_id, true)` shows it then. [`HttpError::Timeout`] when
    /// `timeout` passes first. The watch is pushed, not polled: `interval` is only the pause
    /// before retrying a failed watch connection ([`WatchOptions::reconnect_delay`]).
    pub async fn wait_until_terminal(
        &self,
        run_id: &str,
        interval: Duration,
        timeout: Option<Duration>,
        on_change: impl FnMut(&Value),
    ) -> Result<Value, HttpError> {
        let opts = WatchOptions {
            include_records: true,
            deadline: timeout,
            reconnect_delay: interval,
            ..WatchOptions::default()
        };
        match self.follow_to_terminal(run_id, opts, on_change).await? {
            Some(_) => self.get_run(run_id, true).await,
            None => {
                let status = self
                    .get_run(run_id, false)
                    .await
                    .ok()
                    .and_then(|r| status_of(&r).map(str::to_string))
                    .unwrap_or_else(|| "not terminal".into());
                Err(HttpError::Timeout(format!(
                    "run {run_id} is still {status}"
                )))
            }
        }
    }

    /// Watches until the terminal snapshot (returned) or the end of the stream (`None`).
    async fn follow_to_terminal(
        &self,
        run_id: &str,
        opts: WatchOptions,
        mut on_change: impl FnMut(&Value),
    ) -> Result<Option<Value>, HttpError> {
        use futures::StreamExt;
        let mut events = self.watch_run(run_id, opts);
        while let Some(event) = events.next().await {
            if let WatchEvent::Snapshot { snapshot, .. } = event? {
                on_change(&snapshot);
                if status_of(&snapshot).is_some_and(is_terminal_status) {
                    return Ok(Some(snapshot));
                }
            }
        }
        Ok(None)
    }

    /// `GET /workers`: the worker registry (records with their effective `state`), most
    /// recently seen first. 422 for an unknown `state`.
    pub async fn get_workers(&self, opts: &ListWorkers) -> Result<Vec<Value>, HttpError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(scope) = opts.scope {
            q.push(("scope", scope.as_str().into()));
        }
        if let Some(state) = opts.state.as_ref().filter(|s| !s.is_empty()) {
            q.push(("state", state.clone()));
        }
        if opts.include_hidden {
            q.push(("include_hidden", "true".into()));
        }
        if let Some(limit) = opts.limit {
            q.push(("limit", limit.to_string()));
        }
        match self
            .json(reqwest::Method::GET, "/workers", |r| r.query(&q))
            .await?
        {
            Value::Array(items) => Ok(items),
            other => Err(HttpError::Decode(format!(
                "expected a list of workers, got {other}"
            ))),
        }
    }

    /// `PATCH /workers/{worker_id}` with `{"hidden": hidden}`: hides a worker from
    /// `GET /workers` (unless `include_hidden`) or shows it again. Returns `{"worker_id",
    /// "hidden", "updated_at"}`; 404 for an unknown worker.
    pub async fn patch_worker_hidden(
        &self,
        worker_id: &str,
        hidden: bool,
    ) -> Result<Value, HttpError> {
        let path = format!("/workers/{}", segment(worker_id));
        let body = json!({"hidden": hidden});
        self.json(reqwest::Method::PATCH, &path, |r| r.json(&body))
            .await
    }

    /// `GET /metrics`: the Prometheus text exposition, unchanged.
    pub async fn metrics(&self) -> Result<String, HttpError> {
        self.send(reqwest::Method::GET, "/metrics", |r| r)
            .await?
            .text()
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))
    }
}

/// The run list filters that are set and non-empty, as query pairs.
fn filters(
    status: &Option<String>,
    flow: &Option<String>,
    tag: &Option<String>,
) -> Vec<(&'static str, String)> {
    [("status", status), ("flow", flow), ("tag", tag)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().filter(|v| !v.is_empty()).map(|v| (k, v.clone())))
        .collect()
}

/// The `status` string of a snapshot.
fn status_of(snapshot: &Value) -> Option<&str> {
    snapshot.get("status").and_then(Value::as_str)
}

/// Percent-encodes one path segment, so an id with `/`, `?` or spaces cannot change the
/// route (run ids are uuids, but worker ids are chosen by operators).
fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its whole `source()` chain, so "connection refused" is not lost behind
/// "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        // Some layers repeat their source's text; say it once.
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            segment("79f55d40-9404-45ae-ba9f-56ac4723bc00"),
            "79f55d40-9404-45ae-ba9f-56ac4723bc00"
        );
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn status_error_picks_detail_and_code() {
        let e = StatusError::from_body(
            404,
            "GET",
            "/runs/x",
            r#"{"detail":"run not found","code":"run_not_found"}"#.into(),
        );
        assert_eq!(e.detail, json!("run not found"));
        assert_eq!(e.code.as_deref(), Some("run_not_found"));
        assert_eq!(e.error_code, Some(ErrorCode::RunNotFound));
        let newer = StatusError::from_body(
            400,
            "GET",
            "/",
            r#"{"detail":"x","code":"brand_new"}"#.into(),
        );
        assert_eq!(
            (newer.code.as_deref(), newer.error_code),
            (Some("brand_new"), None)
        );
        let plain = StatusError::from_body(502, "GET", "/", "bad gateway".into());
        assert_eq!(plain.detail, json!("bad gateway"));
        assert_eq!(plain.code, None);
        assert_eq!(plain.to_string(), "HTTP 502 GET /: bad gateway");
    }

    #[test]
    fn runs_page_decodes_null_cursor() {
        let page: RunsPage =
            serde_json::from_value(json!({"items": [{"run_id": "a"}], "next_cursor": null}))
                .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn terminal_statuses() {
        assert!(is_terminal_status("CANCELLED"));
        assert!(!is_terminal_status("CANCELLING"));
    }
}
