//! YAML values as the original sees them: merge keys applied, what JSON cannot hold
//! rejected, conversion to JSON, and Python's `int()` and `repr` where reason messages quote
//! them.

use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

use super::YamlError;

/// What Python's `int()` accepts for ASCII strings: surrounding whitespace,
/// an optional sign, digits with single underscores between them.
pub(super) fn parse_python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c == '_' || c.is_ascii_digit());
    if !valid {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Applies merge keys and rejects what JSON or Python's safe_load could not hold:
/// custom tags, non-finite floats and non-scalar mapping keys.
pub(super) fn normalize(value: Yaml) -> Option<Yaml> {
    match value {
        Yaml::Tagged(_) => None,
        Yaml::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => None,
        Yaml::Sequence(items) => Some(Yaml::Sequence(
            items.into_iter().map(normalize).collect::<Option<_>>()?,
        )),
        Yaml::Mapping(map) => {
            // PyYAML puts merged entries first (later merge sources before earlier
            // ones) and lets later entries win while keeping first positions.
            let mut merged = Vec::new();
            let mut explicit = Vec::new();
            for (k, v) in map {
                let k = normalize(k)?;
                if matches!(k, Yaml::Sequence(_) | Yaml::Mapping(_)) {
                    return None;
                }
                let v = normalize(v)?;
                if k.as_str() == Some("<<") {
                    match v {
                        Yaml::Mapping(m) => merged.extend(m),
                        Yaml::Sequence(sources) => {
                            let mut maps = Vec::with_capacity(sources.len());
                            for source in sources {
                                let Yaml::Mapping(m) = source else {
                                    return None;
                                };
                                maps.push(m);
                            }
                            for m in maps.into_iter().rev() {
                                merged.extend(m);
                            }
                        }
                        _ => return None,
                    }
                } else {
                    explicit.push((k, v));
                }
            }
            let mut out = Mapping::new();
            for (k, v) in merged.into_iter().chain(explicit) {
                out.insert(k, v);
            }
            Some(Yaml::Mapping(out))
        }
        other => Some(other),
    }
}

/// Converts a normalized YAML value; mapping keys become strings as `json.dumps` does.
pub(super) fn to_json(value: &Yaml) -> Json {
    match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(m) => {
            Json::Object(m.iter().map(|(k, v)| (key_string(k), to_json(v))).collect())
        }
        Yaml::Tagged(t) => to_json(&t.value),
    }
}

pub(super) fn key_string(key: &Yaml) -> String {
    match key {
        Yaml::String(s) => s.clone(),
        Yaml::Null => "null".into(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        other => serde_json::to_string(&to_json(other)).unwrap_or_default(),
    }
}

/// Python's `repr` of a scalar key.
pub(super) fn py_repr(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => py_repr_str(s),
        Yaml::Null => "None".into(),
        Yaml::Bool(true) => "True".into(),
        Yaml::Bool(false) => "False".into(),
        Yaml::Number(n) => n.to_string(),
        other => key_string(other),
    }
}

pub(super) use crate::flow::expr::py_repr_str;

/// A document's `version` (1 when absent): an integer, or a string Python's `int()` reads;
/// anything else is `invalid_version`.
pub(super) fn document_version(value: Option<&Yaml>) -> Result<i64, YamlError> {
    let invalid = || YamlError::code("invalid_version");
    match value {
        None => Ok(1),
        Some(Yaml::Number(n)) => n.as_i64().ok_or_else(invalid),
        Some(Yaml::String(s)) => parse_python_int(s).ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}
