//! HMAC request signing (`PYOCO_HTTP_HMAC_SECRET`, scheme and vectors in spec/auth.md): the
//! outermost check of every non-public route, so a forged or replayed request is refused
//! before it costs a key verification or touches a handler. The body is read whole (within the
//! route's body limit) to hash it, then handed on unchanged.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, GatewayState, Route};
use crate::auth::sign::{self, NONCE_HEADER, SIGNATURE_HEADER, Signed, TS_HEADER};
use crate::error_code::ErrorCode;

fn refused(why: impl std::fmt::Display) -> Response {
    ApiError::new(
        ErrorCode::InvalidSignature,
        format!("invalid signature: {why}"),
    )
    .into_response()
}

pub(crate) async fn verify(
    State((state, route)): State<(GatewayState, &'static Route)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(secret) = state.config.http_hmac_secret.as_deref() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(nonce), Some(signature)) = (
        header(TS_HEADER),
        header(NONCE_HEADER),
        header(SIGNATURE_HEADER),
    ) else {
        return refused(sign::SignatureError::Missing);
    };
    let limit = route.body_limit_bytes(&state.config);
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError::request_too_large(limit).into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let signed = Signed {
        ts,
        nonce,
        signature,
    };
    let ttl = state.config.http_hmac_ttl.as_secs_f64();
    if let Err(e) = sign::verify(
        secret.as_bytes(),
        signed,
        parts.method.as_str(),
        path,
        &bytes,
        crate::model::now(),
        ttl,
    ) {
        return refused(e);
    }
    // Only signatures that check out reach the shared nonce store, so forgeries cannot fill it.
    let store = match state.store() {
        Ok(store) => store,
        Err(e) => return e.into_response(),
    };
    match store.nonces().first_use(nonce).await {
        Ok(true) => {}
        Ok(false) => return refused(sign::SignatureError::Replayed),
        Err(e) => return ApiError::from(e).into_response(),
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
