//! The flow registry routes (pyoco only): register, list, show, versions, rollback, delete.

use serde_json::{Value, json};

use super::multipart::Multipart;
use super::{HttpClient, HttpError, segment};

impl HttpClient {
    /// `POST /flows`: registers `workflow_yaml` as the next version of `name` (validated by
    /// the gateway; 422 `invalid_workflow_yaml` otherwise). Returns `{"name", "version",
    /// "sha256", "created", "active_version"}`; `created` is false when the YAML was identical
    /// to the latest version.
    pub async fn register_flow(
        &self,
        name: &str,
        workflow_yaml: &[u8],
    ) -> Result<Value, HttpError> {
        let (content_type, body) = Multipart::new()
            .file("workflow", "flow.yaml", "application/x-yaml", workflow_yaml)
            .text("flow_name", name)
            .finish();
        self.json(reqwest::Method::POST, "/flows", |r| {
            r.header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
        })
        .await
    }

    /// `GET /flows`: `[{"name", "active_version", "latest_version", "updated_at"}]`.
    pub async fn list_flows(&self) -> Result<Vec<Value>, HttpError> {
        self.json_list("/flows", &[], "flows").await
    }

    /// `GET /flows/{name}`: the flow record with every version. 404 `flow_not_found`.
    pub async fn get_flow(&self, name: &str) -> Result<Value, HttpError> {
        let path = format!("/flows/{}", segment(name));
        self.json(reqwest::Method::GET, &path, |r| r).await
    }

    /// `GET /flows/{name}/versions/{version}`: one version, YAML included.
    pub async fn get_flow_version(&self, name: &str, version: u64) -> Result<Value, HttpError> {
        let path = format!("/flows/{}/versions/{version}", segment(name));
        self.json(reqwest::Method::GET, &path, |r| r).await
    }

    /// `POST /flows/{name}/rollback`: makes `version` the active one; returns the record.
    pub async fn rollback_flow(&self, name: &str, version: u64) -> Result<Value, HttpError> {
        let path = format!("/flows/{}/rollback", segment(name));
        let body = json!({ "version": version });
        self.json(reqwest::Method::POST, &path, |r| r.json(&body))
            .await
    }

    /// `DELETE /flows/{name}`: removes the flow and its versions.
    pub async fn delete_flow(&self, name: &str) -> Result<Value, HttpError> {
        let path = format!("/flows/{}", segment(name));
        self.json(reqwest::Method::DELETE, &path, |r| r).await
    }

    /// `POST /flows/validate`: every problem of `workflow_yaml` at once (`{"valid", "sha256",
    /// "problems": [{"code", "reason", "path", "line", "column"}], "plan"}`); stores nothing.
    pub async fn validate_flow(&self, workflow_yaml: &[u8]) -> Result<Value, HttpError> {
        let (content_type, body) = Multipart::new()
            .file("workflow", "flow.yaml", "application/x-yaml", workflow_yaml)
            .finish();
        self.json(reqwest::Method::POST, "/flows/validate", |r| {
            r.header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
        })
        .await
    }

    /// `POST /flows/{name}/dry-run`: the execution plan of `version` (default the active
    /// one), without running anything.
    pub async fn dry_run_flow(&self, name: &str, version: Option<u64>) -> Result<Value, HttpError> {
        let path = format!("/flows/{}/dry-run", segment(name));
        self.json(reqwest::Method::POST, &path, |r| match version {
            Some(v) => r.query(&[("version", v)]),
            None => r,
        })
        .await
    }
}
