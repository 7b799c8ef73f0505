//! `HttpClient`: every route of the gateway's HTTP API from Rust (the counterpart of the
//! original's `PyocoHttpClient`), with typed errors that carry the status code, the server's
//! `detail` and its stable `code`. One file per job: `runs`, `schedules`, `workers`, `wheels`, the SSE
//! watch (`sse`) and the errors (`error`); this one holds the connection and request plumbing.
//!
//! Plain requests share one `reqwest` client with a 30 s total timeout. The SSE watch
//! ([`HttpClient::watch_run`], in `http/sse.rs`) uses a second client without a total timeout,
//! since a watch legitimately stays open for minutes.

mod bulk;
mod bundles;
mod error;
mod flows;
mod multipart;
mod runs;
mod schedules;
mod sse;
mod stats;
mod wheels;
mod workers;

use std::time::Duration;

use serde_json::Value;

pub use bulk::CancelFilter;
pub(crate) use error::error_chain;
pub use error::{HttpError, StatusError};
pub use runs::{ListRuns, ListRunsVnext, RunsPage};
pub use schedules::NewSchedule;
pub use sse::{WatchEvent, WatchOptions, WatchStream};
pub use stats::{ResultsQuery, StatsFilter};
pub use wheels::{WheelHistoryQuery, WheelUpload};
pub use workers::{ListWorkers, WorkerScope};

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
    /// `PYOCO_HTTP_HMAC_SECRET` of the gateway: every request is signed (spec/auth.md).
    hmac_secret: Option<std::sync::Arc<str>>,
    /// Sent as `Idempotency-Key` with the submits (`POST /runs`, `POST /runs/yaml`).
    idempotency_key: Option<String>,
    /// Sent as `wait_sec` with the submits: the gateway answers once the run has ended.
    sync_wait: Option<Duration>,
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
            hmac_secret: None,
            idempotency_key: None,
            sync_wait: None,
        })
    }

    /// Sends `key` in `header` with every request, the watch included (the gateway's default
    /// header name is `X-API-Key`).
    pub fn with_api_key(mut self, header: &str, key: &str) -> HttpClient {
        self.api_key = Some((header.to_string(), key.to_string()));
        self
    }

    /// Signs every request with `secret` (the gateway's `PYOCO_HTTP_HMAC_SECRET`): a fresh
    /// timestamp and nonce each time, the watch's reconnects included.
    pub fn with_hmac_secret(mut self, secret: &str) -> HttpClient {
        self.hmac_secret = Some(std::sync::Arc::from(secret));
        self
    }

    /// Sends `key` as `Idempotency-Key` with submits: resubmitting the same request with the
    /// same key (after a timeout, from another process) returns the first run instead of
    /// creating a second. Use a fresh clone of the client per logical request.
    pub fn with_idempotency_key(mut self, key: &str) -> HttpClient {
        self.idempotency_key = Some(key.to_string());
        self
    }

    /// Makes submits synchronous: they send `wait_sec` and the gateway answers once the run
    /// has ended (200, the terminal snapshot, `task_records` included) or once `wait` (capped
    /// by the server's `PYOCO_SYNC_WAIT_MAX_SEC`) has passed (202, `{"run_id", "status",
    /// "watch_url"}`). Tell them apart with [`RunStatus::is_terminal_str`] on `status`.
    ///
    /// [`RunStatus::is_terminal_str`]: crate::model::RunStatus::is_terminal_str
    pub fn with_sync_wait(mut self, wait: Duration) -> HttpClient {
        self.sync_wait = Some(wait);
        self
    }

    /// `Idempotency-Key` and `wait_sec` on a submit request, when set.
    fn submit_options(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(key) = &self.idempotency_key {
            req = req.header("Idempotency-Key", key.as_str());
        }
        if let Some(wait) = self.sync_wait {
            // The plain 30 s timeout would cut a longer wait short.
            req = req
                .query(&[
                    ("wait_sec", wait.as_secs_f64().to_string()),
                    ("include", "records".to_string()),
                ])
                .timeout(wait.saturating_add(Duration::from_secs(30)));
        }
        req
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
        let mut request = build(req)
            .build()
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        if let Some(secret) = &self.hmac_secret {
            let body = match request.body() {
                None => &[][..],
                Some(b) => b.as_bytes().ok_or_else(|| {
                    HttpError::Transport("a signed request needs a body in memory".into())
                })?,
            };
            for (name, value) in signature_headers(secret, &method, request.url(), body) {
                request.headers_mut().insert(name, value);
            }
        }
        let resp = self
            .http
            .execute(request)
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

    /// `GET path` with `query`, whose answer must be a JSON list (of `what`, for the error).
    async fn json_list(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Vec<Value>, HttpError> {
        match self
            .json(reqwest::Method::GET, path, |r| r.query(query))
            .await?
        {
            Value::Array(items) => Ok(items),
            other => Err(HttpError::Decode(format!(
                "expected a list of {what}, got {other}"
            ))),
        }
    }

    /// `GET /health`: the gateway's liveness answer, e.g. `{"status": "ok"}`. Never touches
    /// NATS on the server side.
    pub async fn health(&self) -> Result<Value, HttpError> {
        self.json(reqwest::Method::GET, "/health", |r| r).await
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

/// The three signature headers of one request (spec/auth.md): unix seconds, a fresh random
/// nonce, and `v1=<hex>` over method, path with query, and body.
pub(crate) fn signature_headers(
    secret: &str,
    method: &reqwest::Method,
    url: &reqwest::Url,
    body: &[u8],
) -> Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
    use crate::auth::sign;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let nonce = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let signature = sign::sign(secret.as_bytes(), &ts, &nonce, method.as_str(), &path, body);
    [
        (sign::TS_HEADER, ts),
        (sign::NONCE_HEADER, nonce),
        (sign::SIGNATURE_HEADER, signature),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        Some((
            reqwest::header::HeaderName::from_static(name),
            reqwest::header::HeaderValue::from_str(&value).ok()?,
        ))
    })
    .collect()
}

/// Percent-encodes one path segment, so an id with `/`, `?` or spaces cannot change the
/// route (run ids are uuids, but worker ids are chosen by operators).
pub(crate) fn segment(raw: &str) -> String {
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
}
