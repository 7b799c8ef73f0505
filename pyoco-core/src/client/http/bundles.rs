//! Bundle routes: submit a bundle (`POST /runs/bundle`) and decide on a run that waits for
//! approval (`POST /runs/{run_id}/approve` and `/reject`).

use serde_json::{Map, Value};

use super::multipart::Multipart;
use super::{HttpClient, HttpError, segment};

impl HttpClient {
    /// `POST /runs/bundle`: submits a multi-workflow bundle; its entry workflow runs as the
    /// root run. Returns `{"run_id", "status", "bundle_hash"}` (`status` is
    /// `PENDING_APPROVAL` when the root waits for approval).
    pub async fn submit_bundle_yaml(
        &self,
        bundle_yaml: &[u8],
        tag: Option<&str>,
    ) -> Result<Value, HttpError> {
        let mut form =
            Multipart::new().file("bundle", "bundle.yaml", "application/x-yaml", bundle_yaml);
        if let Some(tag) = tag {
            form = form.text("tag", tag);
        }
        let (content_type, body) = form.finish();
        self.json(reqwest::Method::POST, "/runs/bundle", |r| {
            r.header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
        })
        .await
    }

    /// `POST /runs/{run_id}/approve` (sends `{}` or `{"comment"}`, as the original client):
    /// the run is queued; returns its snapshot.
    pub async fn approve_run(
        &self,
        run_id: &str,
        comment: Option<&str>,
    ) -> Result<Value, HttpError> {
        self.decide(run_id, "approve", "comment", comment).await
    }

    /// `POST /runs/{run_id}/reject` (sends `{}` or `{"reason"}`): the run is CANCELLED;
    /// returns its snapshot.
    pub async fn reject_run(&self, run_id: &str, reason: Option<&str>) -> Result<Value, HttpError> {
        self.decide(run_id, "reject", "reason", reason).await
    }

    async fn decide(
        &self,
        run_id: &str,
        action: &str,
        field: &str,
        value: Option<&str>,
    ) -> Result<Value, HttpError> {
        let mut body = Map::new();
        if let Some(value) = value {
            body.insert(field.into(), Value::String(value.into()));
        }
        let path = format!("/runs/{}/{action}", segment(run_id));
        self.json(reqwest::Method::POST, &path, |r| r.json(&body))
            .await
    }
}
