//! Request parsing of the wheel routes: the `POST /wheels` multipart form and the
//! `GET /wheels/history` query, with FastAPI-shaped 422 problems like the original's.

use axum::extract::Multipart;
use serde_json::{Value, json};

use crate::error_code::ErrorCode;
use crate::gateway::error::{ApiError, problem};
use crate::gateway::extract::multipart::{Form, Spooled, part_problem};
use crate::gateway::extract::query::QueryParams;
use crate::gateway::workers::lax_bool;
use crate::wheel::PreflightMode;

/// The upload form.
#[derive(Debug)]
pub(super) struct UploadForm {
    pub file_name: String,
    pub content_type: String,
    /// The wheel in a temporary file (`None` when it was over the limit).
    pub spooled: Option<Spooled>,
    pub size: usize,
    pub tags: Option<String>,
    pub replace: bool,
    pub preflight: PreflightMode,
    pub allow_no_entry_points: bool,
    pub allow_missing_usage_doc: bool,
}

/// The original's 413; the limit is in `reason` (the `detail` stays the original's string).
pub(super) fn too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorCode::WheelTooLarge, "wheel too large").with_reason(format!(
        "the wheel is over PYOCO_WHEEL_MAX_BYTES ({limit} bytes)"
    ))
}

/// Reads every part: `wheel` (a file), `tags`, `replace` (lax bool, default true) and our
/// optional `preflight` (`strict|warn|off`, default off) with its two `allow_*` flags. Empty
/// text parts count as absent. Form problems are one 422 list, like FastAPI's.
pub(super) async fn read_upload_form(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    limit: usize,
) -> Result<UploadForm, ApiError> {
    let mut form = Form::read_spooled(multipart, "wheel", limit, too_large(limit)).await?;
    let mut problems: Vec<Value> = form.file_problem().into_iter().collect();
    let mut flag = |part: &str, default: bool| match form.text(part) {
        None => default,
        Some(raw) => lax_bool(&raw).unwrap_or_else(|| {
            problems.push(part_problem(
                "bool_parsing",
                part,
                "Input should be a valid boolean, unable to interpret input",
                json!(raw),
            ));
            default
        }),
    };
    let replace = flag("replace", true);
    let allow_no_entry_points = flag("allow_no_entry_points", false);
    let allow_missing_usage_doc = flag("allow_missing_usage_doc", false);
    let preflight = match form.text("preflight") {
        None => PreflightMode::Off,
        Some(raw) => raw.parse().unwrap_or_else(|_| {
            problems.push(problem(
                "enum",
                &[json!("body"), json!("preflight")],
                "Input should be 'strict', 'warn' or 'off'",
                json!(raw),
                Some(json!({"expected": "'strict', 'warn' or 'off'"})),
            ));
            PreflightMode::Off
        }),
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let wheel = form.take_file();
    Ok(UploadForm {
        file_name: wheel.file_name,
        content_type: wheel.content_type,
        spooled: wheel.spooled,
        size: wheel.size,
        tags: form.text("tags"),
        replace,
        preflight,
        allow_no_entry_points,
        allow_missing_usage_doc,
    })
}

/// `GET /wheels/history` parameters.
#[derive(Debug, PartialEq)]
pub(super) struct HistoryQuery {
    pub limit: usize,
    pub wheel_name: Option<String>,
    pub action: Option<String>,
}

/// `limit` is validated like FastAPI (1..500, default 100); then the handler checks
/// `wheel_name` (the registry's name rule) and `action` (`upload`/`delete`, any case). When
/// a parameter is repeated the last wins; an empty filter counts as absent.
pub(super) fn parse_history_query(pairs: &[(String, String)]) -> Result<HistoryQuery, ApiError> {
    let mut q = QueryParams::from_pairs(pairs.to_vec());
    let limit = q.int_in("limit", 1, 500, 100) as usize;
    q.check()?;
    let last = |k: &str| q.last(k);
    let wheel_name = last("wheel_name").filter(|n| !n.is_empty());
    if let Some(name) = wheel_name
        && !crate::wheel::is_valid_wheel_name(name)
    {
        return Err(super::invalid_wheel_name());
    }
    let action = match last("action").map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match a.to_ascii_lowercase().as_str() {
            v @ ("upload" | "delete") => Some(v.to_string()),
            _ => {
                return Err(ApiError::new(ErrorCode::InvalidAction, "invalid action"));
            }
        },
    };
    Ok(HistoryQuery {
        limit,
        wheel_name: wheel_name.map(str::to_string),
        action,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn history_query_rules() {
        assert_eq!(
            parse_history_query(&pairs("")).unwrap(),
            HistoryQuery {
                limit: 100,
                wheel_name: None,
                action: None
            }
        );
        let q = parse_history_query(&pairs(
            "limit=5&wheel_name=a-1.0-py3-none-any.whl&action=DELETE",
        ))
        .unwrap();
        assert_eq!((q.limit, q.action.as_deref()), (5, Some("delete")));
        assert_eq!(
            parse_history_query(&pairs("limit=0"))
                .unwrap_err()
                .code
                .as_str(),
            "validation_error"
        );
        assert_eq!(
            parse_history_query(&pairs("limit=x"))
                .unwrap_err()
                .code
                .as_str(),
            "validation_error"
        );
        assert_eq!(
            parse_history_query(&pairs("wheel_name=a/b.whl"))
                .unwrap_err()
                .code
                .as_str(),
            "invalid_wheel_name"
        );
        assert_eq!(
            parse_history_query(&pairs("action=put"))
                .unwrap_err()
                .code
                .as_str(),
            "invalid_action"
        );
    }
}
