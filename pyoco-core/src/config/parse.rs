//! Value parsers of the variable table (one per kind of value in `spec/config.md`) and the
//! `.env` reader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{AuthMode, ConfigError, LogFormat};

pub(super) fn invalid(name: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// A value that is unset, empty or only whitespace counts as unset.
pub(super) fn nonempty(v: Option<&String>) -> Option<&str> {
    v.map(String::as_str).filter(|s| !s.trim().is_empty())
}

pub(super) fn string(_: &str, v: &str) -> Result<String, ConfigError> {
    Ok(v.trim().to_string())
}

pub(super) fn optional_string(_: &str, v: &str) -> Result<Option<String>, ConfigError> {
    Ok(Some(v.trim().to_string()))
}

pub(super) fn path(_: &str, v: &str) -> Result<PathBuf, ConfigError> {
    Ok(PathBuf::from(v.trim()))
}

pub(super) fn secs(name: &str, v: &str) -> Result<Duration, ConfigError> {
    let f: f64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(name, v, "expected a number of seconds"))?;
    if !f.is_finite() || f < 0.0 {
        return Err(invalid(
            name,
            v,
            "expected a non-negative number of seconds",
        ));
    }
    Ok(Duration::from_secs_f64(f))
}

/// Seconds, raised to 0.1 s: a heartbeat of zero would spin.
pub(super) fn secs_at_least_100ms(name: &str, v: &str) -> Result<Duration, ConfigError> {
    Ok(secs(name, v)?.max(Duration::from_millis(100)))
}

/// Seconds, raised to 0.2 s (the original's floor of the schedule poll).
pub(super) fn secs_at_least_200ms(name: &str, v: &str) -> Result<Duration, ConfigError> {
    Ok(secs(name, v)?.max(Duration::from_millis(200)))
}

pub(super) fn int(name: &str, v: &str) -> Result<i64, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(name, v, "expected a whole number"))
}

/// Sizes: 0 keeps its documented meaning (e.g. no compaction), negatives are errors.
pub(super) fn size(name: &str, v: &str) -> Result<usize, ConfigError> {
    let n = int(name, v)?;
    usize::try_from(n).map_err(|_| {
        invalid(
            name,
            &n.to_string(),
            "expected zero or a positive number of bytes",
        )
    })
}

/// JetStream replicas: 1 to 5 (the server's limit).
pub(super) fn replicas(name: &str, v: &str) -> Result<usize, ConfigError> {
    let n = int(name, v)?;
    if (1..=5).contains(&n) {
        Ok(n as usize)
    } else {
        Err(invalid(name, v, "expected 1 to 5 replicas"))
    }
}

/// One NATS URL or a comma-separated list of them (a cluster), none empty.
pub(super) fn nats_urls(name: &str, v: &str) -> Result<String, ConfigError> {
    if v.split(',').any(|u| u.trim().is_empty()) {
        return Err(invalid(
            name,
            v,
            "expected a URL or a comma-separated list of URLs",
        ));
    }
    Ok(v.trim().to_string())
}

pub(super) fn size_u64(name: &str, v: &str) -> Result<u64, ConfigError> {
    Ok(size(name, v)? as u64)
}

pub(super) fn boolean(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(
            name,
            v,
            "expected true/false, yes/no, on/off or 1/0",
        )),
    }
}

pub(super) fn tag(name: &str, v: &str) -> Result<String, ConfigError> {
    let tag = v.trim();
    if !crate::model::is_valid_tag(tag) {
        return Err(invalid(
            name,
            tag,
            "a tag may only contain letters, digits, '_' and '-'",
        ));
    }
    Ok(tag.to_string())
}

pub(super) fn auth_mode(name: &str, v: &str) -> Result<AuthMode, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "api_key" => Ok(AuthMode::ApiKey),
        "none" => Ok(AuthMode::None),
        other => Err(invalid(name, other, "expected none or api_key")),
    }
}

/// The original accepts anything: `ja…` and `en…` pick a language, every other value
/// (`auto`, `system`, empty, …) means "follow the locale", so no value is an error.
pub(super) fn dashboard_lang(_name: &str, v: &str) -> Result<String, ConfigError> {
    Ok(v.trim().to_string())
}

pub(super) fn log_level(name: &str, v: &str) -> Result<String, ConfigError> {
    let level = v.trim();
    let known = [
        "TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL",
    ];
    if !known.contains(&level.to_ascii_uppercase().as_str()) {
        return Err(invalid(
            name,
            level,
            "expected DEBUG, INFO, WARNING or ERROR",
        ));
    }
    Ok(level.to_string())
}

pub(super) fn log_format(name: &str, v: &str) -> Result<LogFormat, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        other => Err(invalid(name, other, "expected json or text")),
    }
}

pub(super) fn expand_home(path: &str, home: Option<&String>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => Path::new(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Reads a `.env` file with the original's rules; a missing or unreadable file is empty.
pub(super) fn read_dotenv(path: &Path) -> HashMap<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_dotenv(&text),
        Err(_) => HashMap::new(),
    }
}

/// `KEY=VALUE` lines; `export ` prefix, `#` comments, quotes, ` #` trailing comments.
///
/// Not `dotenvy`: it differs from the original's rules where users would notice — it expands
/// `$VAR`/`${VAR}` in unquoted and double-quoted values (a password with `$` would change),
/// it rejects the whole file on a line it cannot parse (the original skips such lines), and
/// it reads multi-line quoted values (the original is line by line).
pub fn parse_dotenv(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let mut chars = key.chars();
        let valid_key = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            continue;
        }
        let value = value.trim();
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            unescape(&value[1..value.len() - 1])
        } else if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
            value[1..value.len() - 1].to_string()
        } else {
            match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        out.insert(key.to_string(), value);
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
