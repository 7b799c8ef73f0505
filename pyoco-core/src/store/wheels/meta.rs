//! The meta document of a wheel object, read tolerantly: nats-py writes header values as
//! strings, async-nats as lists of strings; both are accepted here.

use serde_json::{Map, Value};

use crate::model::{is_valid_tag, json as lenient_json};

/// The object header carrying the wheel's routing tags as CSV.
pub const TAGS_HEADER: &str = "x-pyoco-wheel-tags";

/// One object's meta, read tolerantly.
#[derive(Debug, Clone, PartialEq)]
pub struct WheelObject {
    pub name: String,
    /// Changes on every put: the worker reinstalls when it changes.
    pub nuid: String,
    pub size: u64,
    pub chunks: u64,
    /// As stored, e.g. `2026-11-22T02:05:17.039151+00:00`.
    pub mtime: Option<String>,
    /// `SHA-256=<base64url with padding>`.
    pub digest: Option<String>,
    pub deleted: bool,
    /// Header values as strings: a list value (async-nats) is joined with `,`.
    pub headers: Vec<(String, String)>,
    /// The whole meta document (kept when the object is deleted).
    pub(super) raw: Map<String, Value>,
}

impl WheelObject {
    /// Parses a meta message; `None` when it has no name.
    pub fn from_meta(payload: &[u8]) -> Option<WheelObject> {
        let raw: Map<String, Value> = lenient_json::from_slice(payload).ok()?;
        let name = raw.get("name")?.as_str()?.to_string();
        let number = |k: &str| raw.get(k).and_then(Value::as_u64).unwrap_or(0);
        let text = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let headers = match raw.get("headers") {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| header_value(v).map(|v| (k.clone(), v)))
                .collect(),
            _ => Vec::new(),
        };
        Some(WheelObject {
            nuid: text("nuid").unwrap_or_default(),
            size: number("size"),
            chunks: number("chunks"),
            mtime: text("mtime"),
            digest: text("digest").filter(|d| !d.is_empty()),
            deleted: raw.get("deleted").and_then(Value::as_bool).unwrap_or(false),
            headers,
            name,
            raw,
        })
    }

    /// A header by exact name, else in any case (`X-Pyoco-Wheel-Tags`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| {
                self.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.as_str())
    }

    /// The routing tags for the listing: `[]` when the header is missing or has an invalid tag.
    pub fn tags(&self) -> Vec<String> {
        self.header(TAGS_HEADER)
            .and_then(|raw| parse_tags_csv(raw).ok())
            .unwrap_or_default()
    }

    /// The routing tags for a worker's selection: the valid ones, invalid ones ignored.
    pub fn valid_tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self
            .header(TAGS_HEADER)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| is_valid_tag(t))
            .map(str::to_string)
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    /// The `sha256` header (hex).
    pub fn sha256_hex(&self) -> Option<String> {
        self.header("sha256").map(str::to_string)
    }
}

/// A header value: the string itself (nats-py), or a list joined with `,` (async-nats).
fn header_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Splits a tags CSV (trimmed, empties dropped, duplicates removed keeping the first); `Err`
/// with the first tag that is not `[A-Za-z0-9_-]+`.
pub fn parse_tags_csv(raw: &str) -> Result<Vec<String>, String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !is_valid_tag(tag) {
            return Err(tag.to_string());
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    Ok(tags)
}

/// Now as the original writes `mtime`: `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
pub fn iso_utc_now() -> String {
    iso_utc(crate::model::now())
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (UTC).
pub fn iso_utc(secs: f64) -> String {
    let micros = (secs.max(0.0) * 1_000_000.0).round() as i64;
    let (days, rem) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs_of_day = rem / 1_000_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        rem % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_written_by_either_client() {
        let python = br#"{"name":"a-1.0-py3-none-any.whl","bucket":"pyoco_wheels","nuid":"N1","size":2,"mtime":"2026-11-22T02:05:17.039151+00:00","chunks":1,"digest":"SHA-256=x","deleted":false,"headers":{"content-type":"application/octet-stream","sha256":"ab","x-pyoco-wheel-tags":"gpu,cpu"},"options":{"max_chunk_size":131072}}"#;
        let o = WheelObject::from_meta(python).expect("meta");
        assert_eq!(o.tags(), ["gpu", "cpu"]);
        assert_eq!(o.sha256_hex().as_deref(), Some("ab"));
        let rust = br#"{"name":"a-1.0-py3-none-any.whl","bucket":"b","nuid":"N2","size":2,"chunks":1,"headers":{"X-Pyoco-Wheel-Tags":["gpu,cpu"]}}"#;
        let o = WheelObject::from_meta(rust).expect("meta");
        assert_eq!(o.tags(), ["gpu", "cpu"]);
        let bad = br#"{"name":"a.whl","headers":{"x-pyoco-wheel-tags":"gpu,no.dots"}}"#;
        let o = WheelObject::from_meta(bad).expect("meta");
        assert!(o.tags().is_empty());
        assert_eq!(o.valid_tags(), ["gpu"]);
        assert!(WheelObject::from_meta(b"{}").is_none());
    }

    #[test]
    fn tags_csv_like_the_original() {
        assert_eq!(
            parse_tags_csv(" gpu, ,cpu,gpu ").ok(),
            Some(vec!["gpu".to_string(), "cpu".to_string()])
        );
        assert_eq!(parse_tags_csv("a.b"), Err("a.b".to_string()));
        assert_eq!(parse_tags_csv("").ok(), Some(vec![]));
    }

    #[test]
    fn mtime_format() {
        assert_eq!(iso_utc(0.0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso_utc(1_795_313_038.652_468),
            "2026-11-22T02:03:58.652468+00:00"
        );
        assert_eq!(iso_utc(951_782_400.5), "2000-02-29T00:00:00.500000+00:00");
    }
}
