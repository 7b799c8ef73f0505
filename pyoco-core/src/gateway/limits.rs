//! Request rate limits (GCRA, from the `governor` crate): a global one
//! (`PYOCO_HTTP_RATE_LIMIT_RPM`), one for the submit routes (`PYOCO_HTTP_SUBMIT_RPM`) and one
//! per API key (`PYOCO_HTTP_TENANT_RPM`). Zero turns a limit off. Each limit allows a burst of
//! its per-minute figure and refills evenly; over it the answer is 429 with `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Keyed<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Which limit refused a request (also the `scope` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitScope {
    Global,
    Submit,
    Tenant,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Global => "global",
            LimitScope::Submit => "submit",
            LimitScope::Tenant => "tenant",
        }
    }
}

/// A refused request: which limit, and when a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: LimitScope,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Requests per minute for each limit; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitConfig {
    pub global_rpm: u32,
    pub submit_rpm: u32,
    pub tenant_rpm: u32,
}

/// The gateway's limiters.
pub struct RateLimits<C: Clock = DefaultClock> {
    global: Option<Direct<C>>,
    submit: Option<Direct<C>>,
    tenant: Option<Keyed<C>>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("global", &self.global.is_some())
            .field("submit", &self.submit.is_some())
            .field("tenant", &self.tenant.is_some())
            .finish()
    }
}

fn quota(rpm: u32) -> Option<Quota> {
    NonZeroU32::new(rpm).map(Quota::per_minute)
}

impl RateLimits<DefaultClock> {
    pub fn new(config: LimitConfig) -> RateLimits<DefaultClock> {
        RateLimits::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// With an explicit clock (tests use governor's `FakeRelativeClock`).
    pub fn with_clock(config: LimitConfig, clock: C) -> RateLimits<C> {
        RateLimits {
            global: quota(config.global_rpm)
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
            submit: quota(config.submit_rpm)
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
            tenant: quota(config.tenant_rpm)
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            clock,
        }
    }

    /// True when no limit is configured (the middleware is then skipped).
    pub fn is_off(&self) -> bool {
        self.global.is_none() && self.submit.is_none() && self.tenant.is_none()
    }

    /// Counts one request. The per-key limit is checked first, so one noisy key is refused
    /// before it uses up the global allowance that everyone else shares.
    pub fn check(&self, is_submit: bool, api_key_id: Option<&str>) -> Result<(), Limited> {
        if let (Some(limiter), Some(key)) = (&self.tenant, api_key_id) {
            limiter.check_key(&key.to_owned()).map_err(|n| {
                self.limited(LimitScope::Tenant, n.wait_time_from(self.clock.now()))
            })?;
        }
        if is_submit && let Some(limiter) = &self.submit {
            limiter.check().map_err(|n| {
                self.limited(LimitScope::Submit, n.wait_time_from(self.clock.now()))
            })?;
        }
        if let Some(limiter) = &self.global {
            limiter.check().map_err(|n| {
                self.limited(LimitScope::Global, n.wait_time_from(self.clock.now()))
            })?;
        }
        Ok(())
    }

    fn limited(&self, scope: LimitScope, retry_after: Duration) -> Limited {
        Limited { scope, retry_after }
    }

    /// Drops per-key state that has fully refilled (bounded memory with many keys).
    pub fn forget_idle_keys(&self) {
        if let Some(limiter) = &self.tenant {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The rate-limit middleware of every non-public route (inside the key check, so the per-key
/// limit knows the key).
pub(crate) async fn enforce(
    axum::extract::State((state, route)): axum::extract::State<(
        super::GatewayState,
        &'static super::Route,
    )>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limits = state.limits();
    if limits.is_off() {
        return next.run(req).await;
    }
    let key_id = req
        .extensions()
        .get::<super::auth::Caller>()
        .and_then(|c| c.0.as_ref())
        .map(|id| id.key_id.clone());
    match limits.check(route.is_submit(), key_id.as_deref()) {
        Ok(()) => next.run(req).await,
        Err(limited) => super::ApiError::new(
            crate::error_code::ErrorCode::RateLimited,
            "rate limit exceeded",
        )
        .with_reason(limited.scope.as_str())
        .with_retry_after(Duration::from_secs(limited.retry_after_secs()))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(
        global: u32,
        submit: u32,
        tenant: u32,
    ) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let config = LimitConfig {
            global_rpm: global,
            submit_rpm: submit,
            tenant_rpm: tenant,
        };
        (RateLimits::with_clock(config, clock.clone()), clock)
    }

    #[test]
    fn zero_means_no_limit() {
        let (l, _) = limits(0, 0, 0);
        assert!(l.is_off());
        for _ in 0..10_000 {
            assert!(l.check(true, Some("k")).is_ok());
        }
    }

    #[test]
    fn global_limit_allows_a_burst_then_refills_evenly() {
        let (l, clock) = limits(60, 0, 0);
        for _ in 0..60 {
            l.check(false, None).unwrap();
        }
        let refused = l.check(false, None).unwrap_err();
        assert_eq!(refused.scope, LimitScope::Global);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        clock.advance(Duration::from_secs(1));
        l.check(false, None).unwrap();
        assert!(l.check(false, None).is_err());
    }

    #[test]
    fn submit_limit_counts_only_submits() {
        let (l, _) = limits(0, 2, 0);
        l.check(true, None).unwrap();
        l.check(true, None).unwrap();
        assert_eq!(l.check(true, None).unwrap_err().scope, LimitScope::Submit);
        // Reads are not submits.
        for _ in 0..100 {
            l.check(false, None).unwrap();
        }
    }

    #[test]
    fn one_key_over_its_limit_does_not_block_another() {
        let (l, clock) = limits(0, 0, 3);
        for _ in 0..3 {
            l.check(false, Some("noisy")).unwrap();
        }
        let refused = l.check(false, Some("noisy")).unwrap_err();
        assert_eq!(refused.scope, LimitScope::Tenant);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        l.check(false, Some("quiet")).unwrap();
        // Unauthenticated requests have no key limit.
        l.check(false, None).unwrap();
        clock.advance(Duration::from_secs(20));
        l.check(false, Some("noisy")).unwrap();
        l.forget_idle_keys();
    }

    #[test]
    fn a_refused_key_does_not_use_the_global_allowance() {
        let (l, _) = limits(5, 0, 1);
        l.check(false, Some("noisy")).unwrap();
        for _ in 0..10 {
            assert_eq!(
                l.check(false, Some("noisy")).unwrap_err().scope,
                LimitScope::Tenant
            );
        }
        // The global allowance still has 4 of 5 left for everyone else.
        for _ in 0..4 {
            l.check(false, None).unwrap();
        }
        assert_eq!(l.check(false, None).unwrap_err().scope, LimitScope::Global);
    }
}
