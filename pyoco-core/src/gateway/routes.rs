//! The route table: every route of the gateway, once. It builds the axum router
//! ([`super::router`]), the `paths` of the OpenAPI document ([`super::openapi::document`]) and the
//! list the spec test compares with spec/http-api.md, so the three cannot disagree.
//!
//! Each entry also says who may call it ([`Access`]): with `PYOCO_HTTP_AUTH_MODE=api_key` the
//! router puts the key check on every non-public route, so no route can be added unguarded.

use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, patch, post};
use utoipa::openapi::path::{HttpMethod, Operation, Paths, PathsBuilder};

use super::{
    GatewayState, bulk, bundles, cancel, dashboard, flows, health, metrics, openapi, runs,
    schedules, shutdown, stats, watch, wheels, workers,
};
use crate::config::Config;

/// An HTTP method the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    /// The upper-case name, e.g. `GET`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn openapi(self) -> HttpMethod {
        match self {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Patch => HttpMethod::Patch,
            Method::Delete => HttpMethod::Delete,
        }
    }
}

/// Who may call a route when `PYOCO_HTTP_AUTH_MODE=api_key` (every route is open otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Always open (`GET /health`, the readiness probe, and the dashboard page and assets,
    /// which hold no data: the page asks for a key before it reads anything).
    Public,
    /// Needs a valid API key: every other route, including `/workers`, `PATCH /workers`,
    /// `/metrics` (unless `PYOCO_METRICS_PUBLIC`) and `/openapi.json`, which the original
    /// leaves open (see DESIGN.md §9).
    Protected,
    /// Needs a key created with `admin api-key create --admin`.
    Admin,
    /// Like `Protected`, but open when `PYOCO_METRICS_PUBLIC=true` (for scrapers).
    Scrape,
}

/// The request body limit of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyLimit {
    /// axum's default (2 MiB).
    Default,
    /// `PYOCO_WORKFLOW_YAML_MAX_BYTES` plus 1 MiB for the rest of the form.
    WorkflowYaml,
    /// `PYOCO_WHEEL_MAX_BYTES` plus 1 MiB for the rest of the form.
    Wheel,
    /// `PYOCO_WORKFLOW_BUNDLE_MAX_BYTES` plus 1 MiB for the rest of the form.
    WorkflowBundle,
}

/// The body limit of routes without one of their own (axum's default, set explicitly so the
/// signature check reads bodies within the same limit the handlers do).
pub(crate) const DEFAULT_BODY_LIMIT: usize = 2 << 20;

impl BodyLimit {
    /// The limit in bytes.
    fn bytes(self, config: &Config) -> usize {
        match self {
            BodyLimit::Default => DEFAULT_BODY_LIMIT,
            BodyLimit::WorkflowYaml => config.workflow_yaml_max_bytes.saturating_add(1 << 20),
            BodyLimit::WorkflowBundle => config.workflow_bundle_max_bytes.saturating_add(1 << 20),
            BodyLimit::Wheel => usize::try_from(config.wheel_max_bytes)
                .unwrap_or(usize::MAX)
                .saturating_add(1 << 20),
        }
    }
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// axum path syntax, which is also OpenAPI's (`/runs/{run_id}`).
    pub path: &'static str,
    pub access: Access,
    pub body_limit: BodyLimit,
    /// The OpenAPI tag grouping the operation.
    pub tag: &'static str,
    /// The handler, as a method router for `method`.
    handler: fn() -> MethodRouter<GatewayState>,
    /// The handler's `#[utoipa::path]` operation and the path and methods it declares.
    operation: fn() -> (String, Vec<HttpMethod>, Operation),
}

/// The `#[utoipa::path]` description of handler `P`.
impl Route {
    /// The largest request body this route reads.
    pub fn body_limit_bytes(&self, config: &Config) -> usize {
        self.body_limit.bytes(config)
    }

    /// `POST /runs`, `POST /runs/yaml`, `POST /runs/bundle` and `POST /runs/{run_id}/replay`
    /// (each creates a run), which `PYOCO_HTTP_SUBMIT_RPM` limits.
    pub fn is_submit(&self) -> bool {
        self.method == Method::Post
            && matches!(
                self.path,
                "/runs" | "/runs/yaml" | "/runs/bundle" | "/runs/{run_id}/replay"
            )
    }
}

fn op<P: utoipa::Path>() -> (String, Vec<HttpMethod>, Operation) {
    (P::path(), P::methods(), P::operation())
}

macro_rules! route {
    ($method:ident $make:ident $path:literal, $access:ident, $limit:ident, $tag:literal, $($handler:ident)::+ , $($doc:ident)::+) => {
        Route {
            method: Method::$method,
            path: $path,
            access: Access::$access,
            body_limit: BodyLimit::$limit,
            tag: $tag,
            handler: || $make($($handler)::+),
            operation: op::<$($doc)::+>,
        }
    };
}

/// Every route, in the order of spec/http-api.md.
pub const ROUTES: &[Route] = &[
    route!(Get get "/health", Public, Default, "meta", health::health, health::__path_health),
    route!(Post post "/runs", Protected, Default, "runs", runs::submit, runs::__path_submit),
    route!(Get get "/runs", Protected, Default, "runs", runs::list, runs::__path_list),
    route!(Post post "/runs/yaml", Protected, WorkflowYaml, "runs", runs::submit_yaml, runs::__path_submit_yaml),
    route!(Post post "/runs/bundle", Protected, WorkflowBundle, "runs", bundles::submit_bundle, bundles::__path_submit_bundle),
    route!(Post post "/runs/{run_id}/approve", Protected, Default, "runs", bundles::approve, bundles::__path_approve),
    route!(Post post "/runs/{run_id}/reject", Protected, Default, "runs", bundles::reject, bundles::__path_reject),
    route!(Get get "/runs/{run_id}", Protected, Default, "runs", runs::get_run, runs::__path_get_run),
    route!(Get get "/runs/{run_id}/tasks", Protected, Default, "runs", runs::get_tasks, runs::__path_get_tasks),
    route!(Get get "/runs/{run_id}/watch", Protected, Default, "runs", watch::watch, watch::__path_watch),
    route!(Post post "/runs/{run_id}/cancel", Protected, Default, "runs", cancel::cancel, cancel::__path_cancel),
    route!(Post post "/runs/cancel", Protected, Default, "runs", bulk::cancel_matching, bulk::__path_cancel_matching),
    route!(Post post "/runs/{run_id}/replay", Protected, Default, "runs", bulk::replay, bulk::__path_replay),
    route!(Post post "/flows", Protected, WorkflowYaml, "flows", flows::register, flows::__path_register),
    route!(Post post "/flows/validate", Protected, WorkflowYaml, "flows", flows::validate, flows::__path_validate),
    route!(Get get "/flows", Protected, Default, "flows", flows::list, flows::__path_list),
    route!(Get get "/flows/{name}", Protected, Default, "flows", flows::show, flows::__path_show),
    route!(Delete delete "/flows/{name}", Protected, Default, "flows", flows::delete, flows::__path_delete),
    route!(Get get "/flows/{name}/versions/{version}", Protected, Default, "flows", flows::version, flows::__path_version),
    route!(Post post "/flows/{name}/rollback", Protected, Default, "flows", flows::rollback, flows::__path_rollback),
    route!(Post post "/flows/{name}/dry-run", Protected, Default, "flows", flows::dry_run, flows::__path_dry_run),
    route!(Post post "/schedules/yaml", Protected, WorkflowYaml, "schedules", schedules::create, schedules::__path_create),
    route!(Get get "/schedules", Protected, Default, "schedules", schedules::list, schedules::__path_list),
    route!(Get get "/schedules/{schedule_id}/runs", Protected, Default, "schedules", schedules::runs, schedules::__path_runs),
    route!(Delete delete "/schedules/{schedule_id}", Protected, Default, "schedules", schedules::delete, schedules::__path_delete),
    route!(Patch patch "/schedules/{schedule_id}", Protected, Default, "schedules", schedules::patch, schedules::__path_patch),
    route!(Get get "/metrics", Scrape, Default, "meta", metrics::metrics, metrics::__path_metrics),
    route!(Get get "/workers", Protected, Default, "workers", workers::list, workers::__path_list),
    route!(Patch patch "/workers/{worker_id}", Protected, Default, "workers", workers::patch, workers::__path_patch),
    route!(Get get "/wheels", Protected, Default, "wheels", wheels::list, wheels::__path_list),
    route!(Post post "/wheels", Protected, Wheel, "wheels", wheels::upload, wheels::__path_upload),
    route!(Get get "/wheels/history", Protected, Default, "wheels", wheels::history, wheels::__path_history),
    route!(Get get "/wheels/{wheel_name}", Protected, Default, "wheels", wheels::download, wheels::__path_download),
    route!(Delete delete "/wheels/{wheel_name}", Protected, Default, "wheels", wheels::delete, wheels::__path_delete),
    route!(Get get "/stats", Protected, Default, "operations", stats::stats, stats::__path_stats),
    route!(Get get "/progress", Protected, Default, "operations", stats::progress, stats::__path_progress),
    route!(Get get "/throughput", Protected, Default, "operations", stats::throughput, stats::__path_throughput),
    route!(Get get "/logs", Protected, Default, "operations", stats::logs, stats::__path_logs),
    route!(Get get "/results", Protected, Default, "operations", stats::results, stats::__path_results),
    route!(Post post "/shutdown", Admin, Default, "meta", shutdown::shutdown, shutdown::__path_shutdown),
    route!(Get get "/", Public, Default, "dashboard", dashboard::index, dashboard::__path_index),
    route!(Get get "/static/{path}", Public, Default, "dashboard", dashboard::asset, dashboard::__path_asset),
    route!(Get get "/openapi.json", Protected, Default, "meta", openapi::openapi_json, openapi::__path_openapi_json),
];

/// The handler of `route`, with its body limit from `config`.
pub(super) fn method_router(
    route: &'static Route,
    state: &GatewayState,
) -> MethodRouter<GatewayState> {
    let handler = (route.handler)();
    let handler = handler.layer(DefaultBodyLimit::max(route.body_limit.bytes(&state.config)));
    match route.access {
        Access::Public => handler,
        // The key check runs before the handler reads the body (the original validates
        // first and answers 422 to callers without a key; we tell them nothing).
        // Signature, then key, then limits (inside the key check, so the per-key limit knows
        // the key).
        Access::Protected | Access::Admin | Access::Scrape => handler
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), route),
                super::limits::enforce,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), route),
                super::auth::require,
            ))
            // Outermost: a forged or replayed request costs no key verification.
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), route),
                super::signing::verify,
            )),
    }
}

/// The OpenAPI `paths` of every route, tagged from the table.
pub(super) fn openapi_paths() -> Paths {
    ROUTES
        .iter()
        .fold(PathsBuilder::new(), |paths, route| {
            let (_, _, mut operation) = (route.operation)();
            operation.tags = Some(vec![route.tag.to_string()]);
            paths.path(
                route.path,
                utoipa::openapi::PathItem::new(route.method.openapi(), operation),
            )
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's method and path are the ones the handler's `#[utoipa::path]` documents.
    #[test]
    fn every_route_matches_its_openapi_annotation() {
        for route in ROUTES {
            let (path, methods, _) = (route.operation)();
            assert_eq!(path, route.path, "{} {}", route.method.as_str(), route.path);
            assert!(
                methods == [route.method.openapi()],
                "{} {}: the annotation declares other methods",
                route.method.as_str(),
                route.path
            );
        }
    }

    #[test]
    fn each_method_and_path_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for route in ROUTES {
            assert!(
                seen.insert((route.method.as_str(), route.path)),
                "{} {} twice",
                route.method.as_str(),
                route.path
            );
        }
    }
}
