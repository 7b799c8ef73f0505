//! The HTTP gateway: the original's routes, paths, payloads and status codes.
//!
//! [`router`] builds the axum app from a [`GatewayState`]; [`serve`] runs it on a listener until
//! the shutdown future resolves. The gateway starts even when NATS is down: it answers 503
//! with a clear detail and connects in the background; once connected, the NATS client
//! reconnects by itself after outages.

mod cancel;
mod error;
mod health;
pub mod index;
mod metrics;
pub mod openapi;
mod query;
pub mod routes;
mod runs;
mod watch;
mod wheels;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router, middleware};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

pub use error::ApiError;
pub use routes::{Access, ROUTES, Route};

use crate::config::Config;
use crate::error_code::ErrorCode;
use crate::store::Store;

/// Shared state of all handlers.
#[derive(Debug, Clone)]
pub struct GatewayState {
    pub config: Arc<Config>,
    store: Arc<OnceCell<Store>>,
    /// Run list index, fed by a KV watch once connected.
    index: Arc<index::RunIndex>,
}

impl GatewayState {
    /// Creates the state and starts connecting to NATS in the background (retrying until it
    /// succeeds).
    pub fn connect(config: Config) -> GatewayState {
        let state = GatewayState {
            config: Arc::new(config),
            store: Arc::new(OnceCell::new()),
            index: Arc::default(),
        };
        let bg = state.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match Store::connect(bg.config.clone(), "pyoco-http-api").await {
                    Ok(store) => {
                        tracing::info!(nats_url = %bg.config.nats_url, "gateway connected to NATS");
                        tokio::spawn(bg.index.clone().follow(store.runs.bucket().clone()));
                        bg.store.set(store).ok();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway cannot reach NATS yet; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
        state
    }

    /// Uses an existing connected store (tests, embedding).
    pub fn with_store(store: Store) -> GatewayState {
        let index: Arc<index::RunIndex> = Arc::default();
        tokio::spawn(index.clone().follow(store.runs.bucket().clone()));
        let cell = OnceCell::new();
        let config = store.config.clone();
        cell.set(store).ok();
        GatewayState {
            config,
            store: Arc::new(cell),
            index,
        }
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
            app.route(route.path, routes::method_router(route, &state.config))
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
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let state = GatewayState::connect(config);
    tracing::info!(addr = ?listener.local_addr().ok(), "gateway listening");
    // With the peer address: the wheel history records where an upload came from.
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // No Nagle delay: a small SSE event written while the previous one is unacknowledged
    // would otherwise wait ~40 ms for the client's delayed ACK (see BENCHMARKS.md).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
