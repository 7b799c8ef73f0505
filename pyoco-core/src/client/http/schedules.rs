//! Schedule routes: create (`POST /schedules/yaml`), list, runs of one, delete, pause/resume.

use serde_json::{Value, json};

use super::multipart::Multipart;
use super::{HttpClient, HttpError, segment};

/// When a new schedule fires: exactly one of `run_at`, `interval_seconds` or `cron`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewSchedule {
    /// ISO 8601 with an offset, e.g. `2026-12-24T18:00:00+09:00`: fire once.
    pub run_at: Option<String>,
    /// Fire every this many seconds (sent as the original client does, e.g. `3600.0`).
    pub interval_seconds: Option<f64>,
    /// Anchor of an interval schedule (ISO 8601 with an offset).
    pub start_at: Option<String>,
    /// A 5- or 6-field cron expression (pyoco only).
    pub cron: Option<String>,
    /// IANA timezone of `cron` (pyoco only; default `UTC`).
    pub timezone: Option<String>,
    /// `skip` or `run_once` (pyoco only; default `run_once`).
    pub misfire: Option<String>,
}

impl HttpClient {
    /// `POST /schedules/yaml`: schedules runs of `workflow_yaml` as `flow_name` on `tag`.
    /// Returns the schedule (the original's 19 keys plus `cron`, `timezone`, `misfire`,
    /// `missed_slots`).
    pub async fn create_yaml_schedule(
        &self,
        workflow_yaml: &[u8],
        flow_name: &str,
        tag: Option<&str>,
        when: &NewSchedule,
    ) -> Result<Value, HttpError> {
        let mut form = Multipart::new()
            .file("workflow", "flow.yaml", "application/x-yaml", workflow_yaml)
            .text("flow_name", flow_name);
        let interval = when.interval_seconds.map(python_float);
        for (name, value) in [
            ("tag", tag.map(str::to_string)),
            ("run_at", when.run_at.clone()),
            ("interval_seconds", interval),
            ("start_at", when.start_at.clone()),
            ("cron", when.cron.clone()),
            ("timezone", when.timezone.clone()),
            ("misfire", when.misfire.clone()),
        ] {
            if let Some(value) = value {
                form = form.text(name, &value);
            }
        }
        let (content_type, body) = form.finish();
        self.json(reqwest::Method::POST, "/schedules/yaml", |r| {
            r.header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
        })
        .await
    }

    /// `GET /schedules`: every schedule the caller may see, ACTIVE first.
    pub async fn list_schedules(&self) -> Result<Vec<Value>, HttpError> {
        self.json_list("/schedules", &[], "schedules").await
    }

    /// `GET /schedules/{schedule_id}/runs`: its runs, newest first (`limit` 1..200, default
    /// 50 on the server; `records` sends `include=records`).
    pub async fn list_schedule_runs(
        &self,
        schedule_id: &str,
        records: bool,
        limit: Option<u32>,
    ) -> Result<Vec<Value>, HttpError> {
        let mut q = Vec::new();
        if records {
            q.push(("include", "records".to_string()));
        }
        if let Some(limit) = limit {
            q.push(("limit", limit.to_string()));
        }
        let path = format!("/schedules/{}/runs", segment(schedule_id));
        self.json_list(&path, &q, "runs").await
    }

    /// `DELETE /schedules/{schedule_id}`: `{"schedule_id", "deleted": true}`.
    pub async fn delete_schedule(&self, schedule_id: &str) -> Result<Value, HttpError> {
        let path = format!("/schedules/{}", segment(schedule_id));
        self.json(reqwest::Method::DELETE, &path, |r| r).await
    }

    /// `PATCH /schedules/{schedule_id}` with `{"paused": paused}` (pyoco only): pauses or
    /// resumes; returns the schedule.
    pub async fn set_schedule_paused(
        &self,
        schedule_id: &str,
        paused: bool,
    ) -> Result<Value, HttpError> {
        let path = format!("/schedules/{}", segment(schedule_id));
        let body = json!({"paused": paused});
        self.json(reqwest::Method::PATCH, &path, |r| r.json(&body))
            .await
    }
}

/// Python's `str(float)` for the values a schedule interval takes: `3600.0`, `0.5`.
fn python_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn intervals_are_sent_like_python_floats() {
        assert_eq!(super::python_float(3600.0), "3600.0");
        assert_eq!(super::python_float(0.5), "0.5");
    }
}
