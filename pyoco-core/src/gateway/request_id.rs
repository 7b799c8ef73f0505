//! Every response carries `X-Request-Id` (the client's, when it sent a sane one, else a new
//! uuid), every log line of the request carries it (a tracing span), and a panic in a handler
//! becomes a JSON 500 naming that id — never a dropped connection, never internals.

use std::panic::AssertUnwindSafe;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::json;
use tracing::Instrument;

/// The header, in both directions.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served (in request extensions, for handlers that log it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A client id is kept when it is 1 to 128 visible ASCII characters; anything else is
/// replaced, so logs and headers never carry what a client made up to break them.
fn sane(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    ((1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The middleware (`axum::middleware::from_fn(request_id::layer)`), outermost but for metrics.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let outcome = AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .instrument(span)
        .await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(payload) => {
            tracing::error!(
                request_id = %id,
                %method,
                %path,
                panic = %panic_message(payload.as_ref()),
                "handler panicked"
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({
                    "detail": "internal error",
                    "code": "internal_error",
                    "request_id": id,
                })),
            )
                .into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/boom",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("secret internals");
                    }
                    "unreachable"
                }),
            )
            .layer(axum::middleware::from_fn(layer))
    }

    async fn send(path: &str, id: Option<&str>) -> Response {
        let mut req = Request::builder().uri(path);
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_response_carries_an_id_and_echoes_a_sane_one() {
        let r = send("/ok", None).await;
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 32);
        let r = send("/ok", Some("client-id-1")).await;
        assert_eq!(r.headers()["x-request-id"], "client-id-1");
        let long = "x".repeat(200);
        let r = send("/ok", Some(&long)).await;
        assert_ne!(r.headers()["x-request-id"], long.as_str());
    }

    #[tokio::test]
    async fn a_panic_is_a_json_500_with_the_request_id_and_no_internals() {
        let r = send("/boom", Some("trace-me")).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()["x-request-id"], "trace-me");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"detail": "internal error", "code": "internal_error", "request_id": "trace-me"})
        );
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
}
