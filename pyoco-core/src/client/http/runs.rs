//! The run routes: submit (by name or flow.yaml), read, list (both modes), watch, cancel
//! and waiting for a terminal state.

use std::time::Duration;

use super::multipart::Multipart;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::sse::{self, WatchEvent, WatchOptions, WatchStream};
use super::{HttpClient, HttpError, segment};
use crate::model::RunStatus;

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

impl HttpClient {
    /// `POST /runs`: submits a run of the named flow (resolved by the worker). `tag` and
    /// `tags` are sent only when given. Returns `{"run_id", "status": "PENDING",
    /// "bundle_hash"}` (see [`with_sync_wait`](Self::with_sync_wait) for synchronous runs).
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
        self.json(reqwest::Method::POST, "/runs", |r| {
            self.submit_options(r).json(&body)
        })
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
        let mut form = Multipart::new()
            .file("workflow", "flow.yaml", "application/x-yaml", workflow_yaml)
            .text("flow_name", flow_name);
        if let Some(tag) = tag {
            form = form.text("tag", tag);
        }
        let (content_type, body) = form.finish();
        self.json(reqwest::Method::POST, "/runs/yaml", |r| {
            self.submit_options(r)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
        })
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
        if status_of(&snapshot).is_some_and(RunStatus::is_terminal_str) {
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
                if status_of(&snapshot).is_some_and(RunStatus::is_terminal_str) {
                    return Ok(Some(snapshot));
                }
            }
        }
        Ok(None)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;

    #[test]
    fn runs_page_decodes_null_cursor() {
        let page: RunsPage =
            serde_json::from_value(json!({"items": [{"run_id": "a"}], "next_cursor": null}))
                .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next_cursor, None);
    }
}
