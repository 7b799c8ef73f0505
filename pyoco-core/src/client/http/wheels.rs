//! The wheel registry routes of [`HttpClient`]: list, history, upload, download, delete (the
//! original's `list_wheels`, `list_wheel_history`, `upload_wheel`, `delete_wheel`, plus a
//! download it lacks).

use std::time::Duration;

use super::multipart::Multipart;
use serde_json::Value;

use super::{HttpClient, HttpError, error_chain, segment};

/// Uploads and downloads may be hundreds of MiB: they get this instead of the 30 s limit.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

/// Filters of `GET /wheels/history` ([`HttpClient::list_wheel_history`]).
#[derive(Debug, Clone, Default)]
pub struct WheelHistoryQuery {
    /// At most this many events (server default 100, 1..500).
    pub limit: Option<u32>,
    /// Only events of this wheel file.
    pub wheel_name: Option<String>,
    /// Only `upload` or `delete` events.
    pub action: Option<String>,
}

/// Options of [`HttpClient::upload_wheel`].
#[derive(Debug, Clone)]
pub struct WheelUpload {
    /// Routing tags: only workers serving one of them install the wheel (none: every worker).
    pub tags: Vec<String>,
    /// Recorded in the history (default true).
    pub replace: bool,
}

impl Default for WheelUpload {
    fn default() -> WheelUpload {
        WheelUpload {
            tags: Vec::new(),
            replace: true,
        }
    }
}

impl HttpClient {
    /// `GET /wheels`: the registry's wheels by name (`name`, `size_bytes`, `digest`,
    /// `sha256_b64`, `mtime`, `nuid`, `tags`, …).
    pub async fn list_wheels(&self) -> Result<Vec<Value>, HttpError> {
        self.json_list("/wheels", &[], "wheels").await
    }

    /// `GET /wheels/history`: upload and delete events, newest first.
    pub async fn list_wheel_history(
        &self,
        query: &WheelHistoryQuery,
    ) -> Result<Vec<Value>, HttpError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = query.limit {
            q.push(("limit", limit.to_string()));
        }
        if let Some(name) = query.wheel_name.as_ref().filter(|n| !n.is_empty()) {
            q.push(("wheel_name", name.clone()));
        }
        if let Some(action) = query.action.as_ref().filter(|a| !a.is_empty()) {
            q.push(("action", action.clone()));
        }
        self.json_list("/wheels/history", &q, "events").await
    }

    /// `POST /wheels`: uploads `data` as `filename` (a wheel file name such as
    /// `mypkg-1.0.0-py3-none-any.whl`). 409 when the version is not higher than the stored
    /// ones, 413 when too large, 422 for a bad name, tag or file.
    pub async fn upload_wheel(
        &self,
        filename: &str,
        data: Vec<u8>,
        options: &WheelUpload,
    ) -> Result<Value, HttpError> {
        let mut form = Multipart::new()
            .file("wheel", filename, "application/octet-stream", &data)
            .text("replace", if options.replace { "true" } else { "false" });
        let tags: Vec<&str> = options
            .tags
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .collect();
        if !tags.is_empty() {
            form = form.text("tags", &tags.join(","));
        }
        let (content_type, body) = form.finish();
        self.json(reqwest::Method::POST, "/wheels", |r| {
            r.header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
                .timeout(TRANSFER_TIMEOUT)
        })
        .await
    }

    /// `GET /wheels/{wheel_name}`: the file's bytes; 404 for an unknown wheel.
    pub async fn download_wheel(&self, wheel_name: &str) -> Result<Vec<u8>, HttpError> {
        let path = format!("/wheels/{}", segment(wheel_name));
        let resp = self
            .send(reqwest::Method::GET, &path, |r| r.timeout(TRANSFER_TIMEOUT))
            .await?;
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| HttpError::Transport(error_chain(&e)))
    }

    /// `DELETE /wheels/{wheel_name}`: `{"name", "deleted": true}`; 404 for an unknown wheel.
    pub async fn delete_wheel(&self, wheel_name: &str) -> Result<Value, HttpError> {
        let path = format!("/wheels/{}", segment(wheel_name));
        self.json(reqwest::Method::DELETE, &path, |r| r).await
    }
}
