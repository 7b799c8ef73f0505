//! The dashboard: `GET /` (the page, with the language resolved at start-up) and
//! `GET /static/{path}` (its script and styles), embedded in the binary at build time, so the
//! gateway serves it offline with nothing to install. The page only calls the public HTTP API
//! (with the key the operator types in), so it can do nothing a client could not.

#[allow(unused_imports)]
use super::openapi::*;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::GatewayState;
use super::error::ApiError;
use crate::error_code::ErrorCode;

/// The page; `__PYOCO_DASHBOARD_LANG_VALUE__` becomes `en` or `ja` (the original's token).
const INDEX_HTML: &str = include_str!("dashboard/index.html");
const LANG_TOKEN: &str = "__PYOCO_DASHBOARD_LANG_VALUE__";

const JS: &str = "text/javascript; charset=utf-8";

/// The files under `/static/`: name, content type, bytes. The script is plain ES modules
/// (`app.js` imports the others), so the browser needs no bundler and pyoco no build step.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("dashboard/app.js")),
    ("graph.js", JS, include_str!("dashboard/graph.js")),
    ("ops.js", JS, include_str!("dashboard/ops.js")),
    ("util.js", JS, include_str!("dashboard/util.js")),
    ("i18n.js", JS, include_str!("dashboard/i18n.js")),
    (
        "styles.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/styles.css"),
    ),
];

/// The dashboard language as the original resolves it: `PYOCO_DASHBOARD_LANG` (or
/// `--dashboard-lang`) when it starts with `ja` or `en`; otherwise the first of `LC_ALL`,
/// `LANGUAGE`, `LC_MESSAGES`, `LANG` that starts with `ja` or `en`; otherwise `en`.
pub fn resolve_lang(configured: &str, env: impl Fn(&str) -> Option<String>) -> &'static str {
    fn known(v: &str) -> Option<&'static str> {
        let v = v.trim().to_ascii_lowercase();
        if v.starts_with("ja") {
            Some("ja")
        } else if v.starts_with("en") {
            Some("en")
        } else {
            None
        }
    }
    known(configured)
        .or_else(|| {
            ["LC_ALL", "LANGUAGE", "LC_MESSAGES", "LANG"]
                .iter()
                .find_map(|name| env(name).as_deref().and_then(known))
        })
        .unwrap_or("en")
}

/// `GET /`: the dashboard page.
#[utoipa::path(get, path = "/",
    responses((status = 200, description = "the dashboard page", content_type = "text/html", body = String)))]
pub async fn index(State(state): State<GatewayState>) -> Response {
    let html = INDEX_HTML.replace(LANG_TOKEN, state.dashboard_lang);
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// `GET /static/{path}`: a file of the dashboard (`app.js` and its modules, `styles.css`).
#[utoipa::path(get, path = "/static/{path}", params(("path" = String, Path, description = "app.js, its modules or styles.css")),
    responses((status = 200, description = "the file", content_type = "text/plain", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == path)
        .ok_or_else(|| ApiError::new(ErrorCode::RouteNotFound, "Not Found"))?;
    Ok((
        [(CONTENT_TYPE, *content_type), (CACHE_CONTROL, "no-cache")],
        *body,
    )
        .into_response())
}

/// The size of everything the dashboard ships, in bytes (kept small: see the test).
#[cfg(test)]
fn shipped_bytes() -> usize {
    INDEX_HTML.len() + ASSETS.iter().map(|(_, _, body)| body.len()).sum::<usize>()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn language_resolution_follows_the_original() {
        assert_eq!(resolve_lang("ja", env(&[("LANG", "en_US.UTF-8")])), "ja");
        assert_eq!(resolve_lang("ja_JP.UTF-8", env(&[])), "ja");
        assert_eq!(resolve_lang("en", env(&[("LC_ALL", "ja_JP")])), "en");
        assert_eq!(resolve_lang("auto", env(&[("LANG", "ja_JP.UTF-8")])), "ja");
        // The first variable that names a known language wins, in the original's order.
        assert_eq!(
            resolve_lang(
                "",
                env(&[("LC_ALL", "C"), ("LANGUAGE", "ja"), ("LANG", "en")])
            ),
            "ja"
        );
        assert_eq!(resolve_lang("system", env(&[("LANG", "de_DE")])), "en");
        assert_eq!(resolve_lang("auto", env(&[])), "en");
    }

    #[test]
    fn the_page_keeps_the_original_markers_and_stays_small() {
        assert!(INDEX_HTML.contains("Pyoco Control Deck"));
        assert!(INDEX_HTML.contains("/static/app.js"));
        assert!(INDEX_HTML.contains("name=\"viewport\""));
        assert!(INDEX_HTML.contains(LANG_TOKEN));
        let file = |name: &str| ASSETS.iter().find(|(n, _, _)| *n == name).unwrap().2;
        assert!(file("app.js").contains("refreshRunsDelta"));
        // Every module app.js imports is served.
        for module in ["graph.js", "ops.js", "util.js", "i18n.js"] {
            assert!(
                file("app.js").contains(&format!("\"./{module}\"")),
                "{module}"
            );
        }
        let css = file("styles.css");
        assert!(css.contains("--accent") && css.contains("@media (max-width: 1100px)"));
        assert!(shipped_bytes() < 300 * 1024, "{} bytes", shipped_bytes());
    }
}
