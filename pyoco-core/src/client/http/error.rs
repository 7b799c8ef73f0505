//! The errors of [`HttpClient`](super::HttpClient): an error answer keeps its status, the
//! server's `detail` and its stable `code` (parsed into an [`ErrorCode`] when this version
//! knows it).

use serde_json::Value;

use crate::error_code::ErrorCode;

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

/// An error with its whole `source()` chain, so "connection refused" is not lost behind
/// "error sending request".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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
    use serde_json::json;

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
}
