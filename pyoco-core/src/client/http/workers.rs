//! The worker routes: the registry list and hiding a worker.

use serde_json::{Value, json};

use super::{HttpClient, HttpError, segment};

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

impl HttpClient {
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
        self.json_list("/workers", &q, "workers").await
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
}
