//! The HTTP gateway: the original's routes, paths, payloads and status codes.
//!
//! [`router`] builds the axum app from a [`GatewayState`]; [`serve`] runs it on a listener until
//! the shutdown future resolves. The gateway starts even when NATS is down: it answers 503
//! with a clear detail and connects in the background; once connected, the NATS client
//! reconnects by itself after outages. Background tasks belong to the [`GatewayState`] and
//! [`serve`] returns only after they have stopped.
//!
//! Where things are: every route once in [`routes`] (the router, the OpenAPI paths and the
//! spec test read it); request reading with FastAPI's 422s in `extract`; one error type,
//! [`ApiError`], whose `code` is an [`crate::ErrorCode`]; response types in
//! [`openapi`]; one file per group of handlers (`runs`, `cancel`, `watch`, `workers`,
//! `wheels`, `schedules`, `bulk`, `health`, `metrics`); the schedule dispatcher in `scheduler`;
//! the dashboard page with its embedded assets (`dashboard`); [`stats`] for the operations
//! routes. One KV watch of the runs bucket feeds the run list [`index`], the [`stats`]
//! counters and the SSE [`fanout`], each write parsed once ([`observed`]); API keys and
//! registered flow names are cached while a watch invalidates them ([`watched`]).

pub mod auth;
mod bulk;
mod bundles;
mod cancel;
mod dashboard;
mod error;
mod extract;
pub mod fanout;
mod flows;
mod health;
pub mod index;
pub mod limits;
pub mod listener;
mod metrics;
pub mod observed;
pub mod openapi;
pub mod orphans;
pub mod request_id;
pub mod retention;
pub mod routes;
mod runs;
mod scheduler;
mod schedules;
mod shutdown;
mod signing;
pub mod stats;
mod sync_wait;
mod watch;
pub mod watched;
mod wheels;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router, middleware};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::ApiError;
// The query reader under its old path, for the handlers.
use extract::query;
pub use routes::{Access, ROUTES, Route};

use crate::config::Config;
use crate::error_code::ErrorCode;
use crate::store::Store;

/// Registered flows' active versions, parsed (`None`: the name is not registered), by
/// [`crate::store::flows::FlowStore::scope_of`].
pub(crate) type FlowCache = watched::WatchedCache<Option<Arc<flows::ActiveFlow>>>;

/// Names remembered by [`FlowCache`] (registered or not) before it stops adding: ~100 bytes
/// each, so a client inventing names costs at most a few MiB.
const FLOW_CACHE_ENTRIES: usize = 65_536;

/// Shared state of all handlers.
#[derive(Debug, Clone)]
pub struct GatewayState {
    pub config: Arc<Config>,
    store: Arc<OnceCell<Store>>,
    /// Run list index, fed by a KV watch once connected.
    index: Arc<index::RunIndex>,
    /// SSE watchers, fed by the index's KV watch (one consumer for all of them).
    hub: Arc<fanout::Hub>,
    /// Counters of the operations routes, fed through the hub by the same KV watch.
    stats: Arc<stats::Stats>,
    /// Request rate limits (`PYOCO_HTTP_*_RPM`).
    limits: Arc<limits::RateLimits>,
    /// Which flow names are registered, and their active versions (see
    /// [`flows::resolve_registered`]).
    flow_cache: Arc<FlowCache>,
    /// API key checks (`PYOCO_HTTP_AUTH_MODE=api_key` only), bound once connected.
    auth: Arc<OnceCell<Arc<auth::Authenticator>>>,
    /// Every background task (connect loop, index follower, SSE pumps), so
    /// [`GatewayState::shutdown`] can wait for them instead of leaving them running.
    tasks: TaskTracker,
    /// Cancelled by [`GatewayState::shutdown`]; every background task stops at it.
    stop: CancellationToken,
    /// Cancelled by `POST /shutdown`: [`serve_state`] then shuts down as on its own signal.
    shutdown_requested: CancellationToken,
    /// The dashboard's language (`en` or `ja`), resolved once at start-up like the original.
    dashboard_lang: &'static str,
}

impl GatewayState {
    fn new(config: Arc<Config>, store: OnceCell<Store>) -> GatewayState {
        let rpm = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let dashboard_lang =
            dashboard::resolve_lang(&config.dashboard_lang, |name| std::env::var(name).ok());
        let stats = Arc::new(stats::Stats::default());
        GatewayState {
            dashboard_lang,
            limits: Arc::new(limits::RateLimits::new(limits::LimitConfig {
                global_rpm: rpm(config.http_rate_limit_rpm),
                submit_rpm: rpm(config.http_submit_rpm),
                tenant_rpm: rpm(config.http_tenant_rpm),
            })),
            hub: Arc::new(fanout::Hub::new(config.sse_max_watchers).with_stats(stats.clone())),
            stats,
            config,
            store: Arc::new(store),
            index: Arc::default(),
            flow_cache: Arc::new(watched::WatchedCache::new(FLOW_CACHE_ENTRIES)),
            auth: Arc::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            shutdown_requested: CancellationToken::new(),
        }
    }

    /// Creates the state and starts connecting to NATS in the background (retrying until it
    /// succeeds or the state is shut down).
    pub fn connect(config: Config) -> GatewayState {
        let state = GatewayState::new(Arc::new(config), OnceCell::new());
        let bg = state.clone();
        state.spawn(async move {
            let backoff = crate::backoff::Backoff::new(
                Duration::from_millis(100),
                2.0,
                Duration::from_secs(2),
            );
            let mut attempt = 0;
            loop {
                match Store::connect(bg.config.clone(), "pyoco-http-api").await {
                    Ok(store) => {
                        tracing::info!(nats_url = %bg.config.nats_url, "gateway connected to NATS");
                        bg.attach(&store);
                        bg.store.set(store).ok();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway cannot reach NATS yet; retrying");
                        attempt += 1;
                        tokio::time::sleep(backoff.jittered(attempt)).await;
                    }
                }
            }
        });
        state
    }

    /// Uses an existing connected store (tests, embedding).
    pub fn with_store(store: Store) -> GatewayState {
        let config = store.config().clone();
        let state = GatewayState::new(config, OnceCell::new());
        state.attach(&store);
        state.store.set(store).ok();
        state
    }

    /// Starts what follows the buckets once connected: the run index, the schedule dispatcher
    /// and, with API keys on, the key checker that forgets a key when its record changes.
    fn attach(&self, store: &Store) {
        self.spawn(self.index.clone().follow(
            store.clone(),
            self.hub.clone(),
            index::CheckpointPolicy::of(&self.config),
        ));
        let flows = store.flows();
        let cache = self.flow_cache.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            cache
                .follow("flow registry", stop, || flows.record_changes())
                .await
        });
        self.spawn(orphans::run(self.clone()));
        self.spawn(retention::run(self.clone()));
        // Every gateway dispatches schedules; slot claims keep each slot to one run.
        self.spawn(scheduler::run(self.clone(), store.clone()));
        if self.config.http_auth_mode == crate::config::AuthMode::ApiKey {
            let checker =
                auth::Authenticator::new(store.api_keys(), self.config.auth_pepper.as_deref());
            let stop = self.stop.clone();
            let follower = checker.clone();
            self.tasks.spawn(async move { follower.follow(stop).await });
            self.auth.set(checker).ok();
        }
    }

    /// Asks [`serve_state`] to shut down gracefully (`POST /shutdown`).
    pub(crate) fn request_shutdown(&self) {
        self.shutdown_requested.cancel();
    }

    /// The SSE watchers' hub.
    pub(crate) fn hub(&self) -> &Arc<fanout::Hub> {
        &self.hub
    }

    /// The operations counters.
    /// The run list index this gateway keeps, loaded or not (see [`GatewayState::run_index`]).
    pub fn index_as_is(&self) -> &index::RunIndex {
        &self.index
    }

    pub(crate) fn stats(&self) -> &stats::Stats {
        &self.stats
    }

    /// The flow registry's cache of active versions by name.
    pub(crate) fn flow_cache(&self) -> &FlowCache {
        &self.flow_cache
    }

    /// The request rate limits.
    pub(crate) fn limits(&self) -> &limits::RateLimits {
        &self.limits
    }

    /// The key checker, once connected (API key mode only).
    pub(crate) fn authenticator(&self) -> Option<&Arc<auth::Authenticator>> {
        self.auth.get()
    }

    /// Runs `task` in the background until it ends or the state is shut down.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            stop.run_until_cancelled(task).await;
        });
    }

    /// Cancelled when the gateway starts shutting down (SSE pumps say goodbye on it).
    pub(crate) fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `work` to its end whatever happens to the request that asked for it: a client
    /// that disconnects drops the handler's future, and a submit cut between its snapshot
    /// write and its job publish would leave a run PENDING forever. Not stopped by shutdown
    /// (which waits for it instead). It stays in the caller's span (the request's), so its log
    /// lines name the request and a submit's trace span is the request's child.
    pub(crate) fn spawn_to_end<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(tracing::Instrument::in_current_span(work))
    }

    /// Stops every background task and waits until they have ended. Open SSE watches end too,
    /// so a graceful HTTP shutdown does not wait for their timeouts.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The run list index once it has caught up with the bucket (waits up to 5 s at start-up),
    /// else 503.
    pub async fn run_index(&self) -> Result<&index::RunIndex, ApiError> {
        self.store()?;
        if self.index.wait_ready(Duration::from_secs(5)).await {
            Ok(&self.index)
        } else {
            Err(ApiError::unavailable("run index still loading"))
        }
    }

    /// True once the gateway has connected to NATS and ensured every resource (it may have
    /// lost the connection since).
    pub fn has_connected(&self) -> bool {
        self.store.get().is_some()
    }

    /// The store, or 503 when NATS is not connected right now.
    pub fn store(&self) -> Result<&Store, ApiError> {
        let store = self
            .store
            .get()
            .ok_or_else(|| ApiError::unavailable("not connected yet"))?;
        if !store.is_connected() {
            return Err(ApiError::unavailable("connection lost; reconnecting"));
        }
        Ok(store)
    }

    /// Waits until the background connect has finished (for tests and start-up logs).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.store.get().is_some_and(Store::is_connected) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// The axum app: every route of [`routes::ROUTES`], then the fallbacks and metrics.
pub fn router(state: GatewayState) -> Router {
    let http_metrics = metrics::HttpMetrics::default();
    // A path served with several methods gets one `route` call per method; axum merges them.
    routes::ROUTES
        .iter()
        .fold(Router::new(), |app, route| {
            app.route(route.path, routes::method_router(route, &state))
        })
        .fallback(|| async { ApiError::new(ErrorCode::RouteNotFound, "Not Found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "Method Not Allowed")
        })
        // After every route and fallback, so each request is counted once, under its route.
        .layer(middleware::from_fn_with_state(
            http_metrics.clone(),
            metrics::track,
        ))
        .layer(Extension(http_metrics))
        // Outermost: every answer (a 404, a metrics error, a panic) carries X-Request-Id.
        .layer(middleware::from_fn(request_id::layer))
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    serve_state(listener, GatewayState::connect(config), shutdown).await
}

/// [`serve`] with a state the caller made (and may keep a clone of, e.g. to wait until it is
/// connected): serves until `shutdown` resolves, then stops the state's background tasks and
/// returns once they have ended.
pub async fn serve_state<F>(
    listener: TcpListener,
    state: GatewayState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tracing::info!(addr = ?listener.local_addr().ok(), "gateway listening");
    let limits = listener::ConnectionLimits {
        header_timeout: state.config.http_header_timeout,
        max_connections: match state.config.http_max_connections {
            0 => listener::default_max_connections(),
            n => n,
        },
    };
    // On shutdown, stop the background tasks first: the SSE pumps end their streams, so the
    // graceful shutdown does not wait for open watches to time out.
    let stopping = state.clone();
    let requested = state.shutdown_requested.clone();
    let served = listener::serve_with_limits(listener, router(state.clone()), limits, async move {
        tokio::select! {
            _ = shutdown => {}
            _ = requested.cancelled() => tracing::info!("shutdown requested over HTTP"),
        }
        stopping.stop.cancel();
    })
    .await;
    state.shutdown().await;
    tracing::info!("gateway stopped");
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The background connect loop (NATS unreachable here) stops at shutdown, and shutdown
    /// waits for it.
    #[tokio::test]
    async fn shutdown_stops_the_connect_loop_and_waits_for_it() {
        let config = Config {
            nats_url: "nats://127.0.0.1:1".into(),
            ..Config::default()
        };
        let state = GatewayState::connect(config);
        assert!(!state.wait_connected(Duration::from_millis(200)).await);
        assert_eq!(state.tasks.len(), 1);
        tokio::time::timeout(Duration::from_secs(5), state.shutdown())
            .await
            .expect("shutdown waits for the background tasks, which stop");
        assert!(state.tasks.is_empty());
    }
}
