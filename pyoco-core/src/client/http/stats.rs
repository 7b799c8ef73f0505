//! The operations routes: `/stats`, `/progress`, `/throughput`, `/logs`, `/results`.

use serde_json::Value;

use super::{HttpClient, HttpError};

/// Which runs an operations route counts: every field set must match (the gateway adds the
/// caller's tenant when API keys are on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsFilter {
    pub flow: Option<String>,
    pub tag: Option<String>,
    pub schedule_id: Option<String>,
}

impl StatsFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("flow", &self.flow),
            ("tag", &self.tag),
            ("schedule_id", &self.schedule_id),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().filter(|v| !v.is_empty()).map(|v| (k, v.clone())))
        .collect()
    }
}

/// Options of `GET /results` ([`HttpClient::results`]).
#[derive(Debug, Clone, Default)]
pub struct ResultsQuery {
    pub filter: StatsFilter,
    /// `COMPLETED`, `FAILED` or `CANCELLED` (default: all three).
    pub status: Option<String>,
    /// 1..=200 (server default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl HttpClient {
    async fn get_query(
        &self,
        path: &str,
        q: Vec<(&'static str, String)>,
    ) -> Result<Value, HttpError> {
        self.json(reqwest::Method::GET, path, |r| r.query(&q)).await
    }

    /// `GET /stats`: runs by status, totals, queue per tag, DLQ size, workers by state.
    pub async fn stats(&self, filter: &StatsFilter) -> Result<Value, HttpError> {
        self.get_query("/stats", filter.query()).await
    }

    /// `GET /progress`: `{total, completed, failed, cancelled, running, pending, percent_done}`.
    pub async fn progress(&self, filter: &StatsFilter) -> Result<Value, HttpError> {
        self.get_query("/progress", filter.query()).await
    }

    /// `GET /throughput`: rates over 1, 5 and 15 minutes and since the gateway started.
    pub async fn throughput(&self, filter: &StatsFilter) -> Result<Value, HttpError> {
        self.get_query("/throughput", filter.query()).await
    }

    /// `GET /logs`: recent failures grouped by error class and task, and warnings.
    pub async fn logs(&self, filter: &StatsFilter, limit: Option<u32>) -> Result<Value, HttpError> {
        let mut q = filter.query();
        if let Some(limit) = limit {
            q.push(("limit", limit.to_string()));
        }
        self.get_query("/logs", q).await
    }

    /// `GET /results`: the newest terminal runs, `{items, next_cursor}`.
    pub async fn results(&self, opts: &ResultsQuery) -> Result<Value, HttpError> {
        let mut q = opts.filter.query();
        if let Some(s) = opts.status.as_ref().filter(|s| !s.is_empty()) {
            q.push(("status", s.clone()));
        }
        if let Some(limit) = opts.limit {
            q.push(("limit", limit.to_string()));
        }
        if let Some(c) = opts.cursor.as_ref().filter(|c| !c.is_empty()) {
            q.push(("cursor", c.clone()));
        }
        self.get_query("/results", q).await
    }
}
