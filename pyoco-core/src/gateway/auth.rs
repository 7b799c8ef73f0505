//! API key checks for `PYOCO_HTTP_AUTH_MODE=api_key`, without 200k PBKDF2 rounds per request.
//!
//! A key that verified once is remembered by id with a digest of its secret; a later request
//! with the same key costs a hash and a constant-time compare. Every gateway watches the key
//! bucket: any change to a key's record (revoke, delete, replace) forgets it at once, so a
//! revocation takes effect everywhere as fast as NATS delivers the change. While that watch is
//! down nothing is remembered, and a check that raced a change is not remembered either (an
//! epoch counter), so the cache can only be behind a revocation by the watch's delivery time.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::watched::WatchedCache;
use crate::auth::ApiKey;
use crate::store::StoreError;
use crate::store::keys::{ApiKeys, KeyLookup};

/// Who a request is, once its key checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant_id: String,
    pub key_id: String,
    /// May call admin routes (pyoco's `admin` flag on the record).
    pub admin: bool,
}

/// Why a request has no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No key sent: 401 `api key required`.
    #[error("api key required")]
    Missing,
    /// Malformed, unknown, corrupt, wrong, wrongly peppered or revoked: 403 `invalid api key`.
    #[error("invalid api key")]
    Invalid,
    /// The key bucket could not be read: 503.
    #[error("nats unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
struct Remembered {
    digest: [u8; 32],
    identity: Identity,
}

/// Verifies presented keys against the key bucket and remembers the ones that verified.
pub struct Authenticator {
    keys: ApiKeys,
    pepper: String,
    /// Random per process, so the remembered digests are useless outside it.
    salt: [u8; 16],
    /// Verified keys by id, forgotten when their record changes.
    verified: WatchedCache<Remembered>,
    /// PBKDF2 at 200k rounds is ~0.1 s of a core: at most this many at once, so a flood of
    /// wrong keys cannot take every core from the requests that carry good ones.
    kdf_slots: Semaphore,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("watching", &self.verified.is_watching())
            .finish_non_exhaustive()
    }
}

/// Remembered keys beyond this are not added (a bound on memory, never on correctness).
const MAX_REMEMBERED: usize = 100_000;

impl Authenticator {
    pub fn new(keys: ApiKeys, pepper: Option<&str>) -> Arc<Authenticator> {
        let mut salt = [0u8; 16];
        if getrandom::fill(&mut salt).is_err() {
            // Without OS randomness the digests are still keyed by the pepper and this
            // process's address space; the cache stays correct, only less opaque.
            tracing::warn!("no OS randomness for the api key cache salt");
        }
        let slots = std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2));
        Arc::new(Authenticator {
            keys,
            pepper: pepper.unwrap_or_default().to_owned(),
            salt,
            verified: WatchedCache::new(MAX_REMEMBERED),
            kdf_slots: Semaphore::new(slots.max(1)),
        })
    }

    fn digest(&self, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(secret.as_bytes());
        h.update(self.pepper.as_bytes());
        h.finalize().into()
    }

    fn remembered(&self, key: &ApiKey, digest: &[u8; 32]) -> Option<Identity> {
        let r = self.verified.get(&key.key_id)?;
        bool::from(r.digest.ct_eq(digest)).then_some(r.identity)
    }

    /// Checks the value of the key header (or of `Authorization: Bearer`).
    pub async fn check(&self, presented: Option<&str>) -> Result<Identity, AuthFailure> {
        let presented = presented.map(str::trim).unwrap_or_default();
        if presented.is_empty() {
            return Err(AuthFailure::Missing);
        }
        let key = ApiKey::parse(presented).map_err(|_| AuthFailure::Invalid)?;
        let digest = self.digest(&key.secret);
        if let Some(identity) = self.remembered(&key, &digest) {
            return Ok(identity);
        }
        let epoch = self.verified.epoch();
        let record = match self.keys.get(&key.key_id).await {
            Ok(KeyLookup::Found(rec)) => *rec,
            Ok(_) => return Err(AuthFailure::Invalid),
            Err(e) => return Err(unavailable(e)),
        };
        if record.revoked_at.is_some() {
            return Err(AuthFailure::Invalid);
        }
        let permit = self
            .kdf_slots
            .acquire()
            .await
            .map_err(|_| AuthFailure::Unavailable("shutting down".into()))?;
        let secret = key.secret.clone();
        let pepper = self.pepper.clone();
        let rec = record.clone();
        let ok = tokio::task::spawn_blocking(move || rec.verifies(&secret, &pepper))
            .await
            .unwrap_or(false);
        drop(permit);
        if !ok {
            return Err(AuthFailure::Invalid);
        }
        let identity = Identity {
            tenant_id: record.tenant_id,
            key_id: record.key_id,
            admin: record.admin,
        };
        self.verified.remember(
            &key.key_id,
            Remembered {
                digest,
                identity: identity.clone(),
            },
            epoch,
        );
        Ok(identity)
    }

    /// Follows the key bucket until `stop`, forgetting a key whenever its record changes;
    /// re-watches after a break (forgetting everything first).
    pub async fn follow(self: Arc<Self>, stop: CancellationToken) {
        self.verified
            .follow("api keys", stop, || self.keys.changes())
            .await;
    }
}

fn unavailable(e: StoreError) -> AuthFailure {
    tracing::warn!(error = %e, "api key lookup failed");
    AuthFailure::Unavailable("api key lookup failed".into())
}

/// Who sent a request: `Caller(None)` when API keys are off. Handlers stamp and filter by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller(pub Option<Identity>);

impl Caller {
    /// The tenant a run must belong to for this caller to see it (`None`: no restriction).
    pub fn tenant(&self) -> Option<&str> {
        self.0.as_ref().map(|id| id.tenant_id.as_str())
    }

    /// True when this caller may see a run stamped with `tenant_id`. With keys on, runs of
    /// another tenant — and runs made while keys were off (no tenant) — do not exist for it.
    pub fn may_see(&self, tenant_id: Option<&str>) -> bool {
        match self.tenant() {
            None => true,
            Some(mine) => tenant_id == Some(mine),
        }
    }

    /// `api_key:<key_id>`, the original's actor format for cancels and wheel history.
    pub fn actor(&self) -> Option<String> {
        self.0.as_ref().map(|id| format!("api_key:{}", id.key_id))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Caller, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The presented key: the configured header, else `Authorization: Bearer <key>`.
fn presented_key<'a>(headers: &'a axum::http::HeaderMap, header: &str) -> Option<&'a str> {
    let direct = headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    direct.or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
    })
}

/// The API key check of every non-public route (a `route_layer` of the route table), so a
/// route added later without a guard is impossible: its table entry says who may call it.
pub(crate) async fn require(
    axum::extract::State((state, route)): axum::extract::State<(
        super::GatewayState,
        &'static super::Route,
    )>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use super::ApiError;
    use crate::error_code::ErrorCode;
    use axum::response::IntoResponse;

    let config = &state.config;
    let open = config.http_auth_mode != crate::config::AuthMode::ApiKey
        || (route.access == super::Access::Scrape && config.metrics_public);
    if open {
        return next.run(req).await;
    }
    let Some(checker) = state.authenticator() else {
        return ApiError::unavailable("not connected yet").into_response();
    };
    let presented = presented_key(req.headers(), &config.http_api_key_header);
    match checker.check(presented).await {
        Ok(identity) => {
            if route.access == super::Access::Admin && !identity.admin {
                return ApiError::new(
                    ErrorCode::ShutdownNotAllowed,
                    "shutdown needs an admin api key",
                )
                .into_response();
            }
            req.extensions_mut().insert(Caller(Some(identity)));
            next.run(req).await
        }
        Err(AuthFailure::Missing) => {
            ApiError::new(ErrorCode::ApiKeyRequired, "api key required").into_response()
        }
        Err(AuthFailure::Invalid) => {
            ApiError::new(ErrorCode::InvalidApiKey, "invalid api key").into_response()
        }
        Err(AuthFailure::Unavailable(what)) => ApiError::unavailable(&what).into_response(),
    }
}
