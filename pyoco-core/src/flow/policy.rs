//! Per-task resilience options, our additions to the original's task keys: `retries` with
//! exponential backoff and jitter, `timeout_sec`, `fail_policy` (and its alias
//! `continue_on_error`), `on_error`, `cache_ttl_sec` and `circuit_breaker`. Parsing and the
//! backoff schedule are pure.

use std::time::Duration;

use serde_yaml::{Mapping, Value as Yaml};

use super::yaml::YamlError;
use crate::backoff::Backoff;

/// What a task failure does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailPolicy {
    /// The run fails; running siblings are cancelled (the original's default).
    #[default]
    Stop,
    /// The task fails, tasks that need it do not run, the rest of the flow goes on; the run
    /// ends COMPLETED with the error recorded.
    Isolate,
    /// The task fails but counts as done: tasks after it still run (its output is null).
    Continue,
}

/// A circuit breaker per callable, shared by all workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker fails fast before letting one trial call through.
    pub reset_after: Duration,
}

/// Every option of one task, with the defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPolicy {
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_multiplier: f64,
    pub backoff_max: Duration,
    pub timeout: Option<Duration>,
    pub fail_policy: FailPolicy,
    pub cache_ttl: Option<Duration>,
    pub breaker: Option<BreakerPolicy>,
    /// Address-space limit of a `module:function` task's Python process, in MiB.
    pub memory_mb: Option<u64>,
    /// The task to run when this one fails for good (`on_error`; checked against the flow's
    /// tasks by [`super::yaml`]).
    pub on_error: Option<String>,
}

impl Default for TaskPolicy {
    fn default() -> Self {
        TaskPolicy {
            retries: 0,
            backoff_base: Duration::from_millis(100),
            backoff_multiplier: 2.0,
            backoff_max: Duration::from_secs(30),
            timeout: None,
            fail_policy: FailPolicy::Stop,
            cache_ttl: None,
            breaker: None,
            memory_mb: None,
            on_error: None,
        }
    }
}

/// The policy keys a task may have (besides the original's `callable`, `inputs`, `outputs`).
pub const POLICY_KEYS: &[&str] = &[
    "retries",
    "retry_backoff_ms",
    "retry_backoff_multiplier",
    "retry_backoff_max_ms",
    "timeout_sec",
    "fail_policy",
    "continue_on_error",
    "on_error",
    "cache_ttl_sec",
    "circuit_breaker",
    "memory_mb",
];

/// Reason codes of this module (part of flow.yaml validation).
pub const REASON_CODES: &[&str] = &[
    "invalid_task_retries",
    "invalid_task_timeout",
    "invalid_task_fail_policy",
    "invalid_task_cache_ttl",
    "invalid_task_circuit_breaker",
    "invalid_task_memory",
    "invalid_on_error",
];

/// The range of `memory_mb` (the same as `pyoco:python`'s).
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 32..=1_048_576;

const MAX_RETRIES: u64 = 100;
const MAX_TIMEOUT_SEC: f64 = 7.0 * 86_400.0;

fn number(v: &Yaml) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_i64().map(|i| i as f64))
        .filter(|f| f.is_finite())
}

fn secs(v: Option<&Yaml>, min_exclusive: f64, max: f64) -> Result<Option<Duration>, ()> {
    match v {
        None | Some(Yaml::Null) => Ok(None),
        Some(v) => match number(v) {
            Some(f) if f > min_exclusive && f <= max => Ok(Some(Duration::from_secs_f64(f))),
            _ => Err(()),
        },
    }
}

/// Reads the policy keys of task `name` (unknown keys were rejected before).
pub fn parse(name: &str, config: &Mapping) -> Result<TaskPolicy, YamlError> {
    let mut p = TaskPolicy::default();
    let bad = |code: &'static str| YamlError::detail(code, name);
    if let Some(v) = config.get("retries").filter(|v| !v.is_null()) {
        p.retries = v
            .as_u64()
            .filter(|r| *r <= MAX_RETRIES)
            .ok_or_else(|| bad("invalid_task_retries"))? as u32;
    }
    let ms = |key: &str, min: f64| -> Result<Option<f64>, YamlError> {
        match config.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => number(v)
                .filter(|f| *f >= min && *f <= 86_400_000.0)
                .map(Some)
                .ok_or_else(|| bad("invalid_task_retries")),
        }
    };
    if let Some(base) = ms("retry_backoff_ms", 0.0)? {
        p.backoff_base = Duration::from_secs_f64(base / 1000.0);
    }
    if let Some(mult) = ms("retry_backoff_multiplier", 1.0)? {
        p.backoff_multiplier = mult;
    }
    if let Some(max) = ms("retry_backoff_max_ms", 0.0)? {
        p.backoff_max = Duration::from_secs_f64(max / 1000.0);
    }
    p.timeout = secs(config.get("timeout_sec"), 0.0, MAX_TIMEOUT_SEC)
        .map_err(|_| bad("invalid_task_timeout"))?;
    p.cache_ttl = secs(config.get("cache_ttl_sec"), 0.0, 365.0 * 86_400.0)
        .map_err(|_| bad("invalid_task_cache_ttl"))?;
    p.fail_policy = match config.get("fail_policy") {
        None | Some(Yaml::Null) => FailPolicy::Stop,
        Some(Yaml::String(s)) => match s.as_str() {
            "stop" => FailPolicy::Stop,
            "isolate" => FailPolicy::Isolate,
            "continue" => FailPolicy::Continue,
            _ => return Err(bad("invalid_task_fail_policy")),
        },
        Some(_) => return Err(bad("invalid_task_fail_policy")),
    };
    // `continue_on_error: true` is `fail_policy: continue`; with another fail policy it is a
    // contradiction, not a precedence question.
    match config.get("continue_on_error") {
        None | Some(Yaml::Null) | Some(Yaml::Bool(false)) => {}
        Some(Yaml::Bool(true)) => match config.get("fail_policy") {
            None | Some(Yaml::Null) => p.fail_policy = FailPolicy::Continue,
            Some(_) if p.fail_policy == FailPolicy::Continue => {}
            Some(_) => return Err(bad("invalid_task_fail_policy")),
        },
        Some(_) => return Err(bad("invalid_task_fail_policy")),
    }
    p.on_error = match config.get("on_error") {
        None | Some(Yaml::Null) => None,
        Some(Yaml::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(bad("invalid_on_error")),
    };
    p.breaker = match config.get("circuit_breaker") {
        None | Some(Yaml::Null) | Some(Yaml::Bool(false)) => None,
        Some(Yaml::Bool(true)) => Some(BreakerPolicy {
            failure_threshold: 5,
            reset_after: Duration::from_secs(30),
        }),
        Some(Yaml::Mapping(m)) => {
            let allowed = ["failure_threshold", "reset_after_sec"];
            if m.keys()
                .any(|k| !matches!(k, Yaml::String(s) if allowed.contains(&s.as_str())))
            {
                return Err(bad("invalid_task_circuit_breaker"));
            }
            let failure_threshold = match m.get("failure_threshold") {
                None => 5,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| bad("invalid_task_circuit_breaker"))?
                    as u32,
            };
            let reset_after = secs(m.get("reset_after_sec"), 0.0, MAX_TIMEOUT_SEC)
                .map_err(|_| bad("invalid_task_circuit_breaker"))?
                .unwrap_or(Duration::from_secs(30));
            Some(BreakerPolicy {
                failure_threshold,
                reset_after,
            })
        }
        Some(_) => return Err(bad("invalid_task_circuit_breaker")),
    };
    p.memory_mb = match config.get("memory_mb") {
        None | Some(Yaml::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|mb| MEMORY_MB_RANGE.contains(mb))
                .ok_or_else(|| bad("invalid_task_memory"))?,
        ),
    };
    Ok(p)
}

impl TaskPolicy {
    /// The task's retry schedule: exponential from `backoff_base`, capped at `backoff_max`,
    /// with equal jitter (see [`crate::backoff`]).
    pub fn schedule(&self) -> Backoff {
        Backoff::new(self.backoff_base, self.backoff_multiplier, self.backoff_max)
    }

    /// The wait before retry number `retry` (1 = the first retry), given `random` in [0, 1).
    pub fn backoff(&self, retry: u32, random: f64) -> Duration {
        self.schedule().delay(retry, random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_yaml(src: &str) -> Result<TaskPolicy, YamlError> {
        let v: Yaml = serde_yaml::from_str(src).unwrap();
        parse("t", v.as_mapping().unwrap())
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse_yaml("{}").unwrap(), TaskPolicy::default());
        let p = parse_yaml("{retries: 3, retry_backoff_ms: 50, retry_backoff_multiplier: 3, retry_backoff_max_ms: 1000, timeout_sec: 1.5, fail_policy: isolate, cache_ttl_sec: 60, circuit_breaker: {failure_threshold: 2, reset_after_sec: 0.5}, memory_mb: 256}").unwrap();
        assert_eq!(p.memory_mb, Some(256));
        assert_eq!(p.retries, 3);
        assert_eq!(p.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(p.fail_policy, FailPolicy::Isolate);
        assert_eq!(p.cache_ttl, Some(Duration::from_secs(60)));
        assert_eq!(
            p.breaker,
            Some(BreakerPolicy {
                failure_threshold: 2,
                reset_after: Duration::from_millis(500)
            })
        );
        assert_eq!(
            parse_yaml("{circuit_breaker: true}")
                .unwrap()
                .breaker
                .unwrap()
                .failure_threshold,
            5
        );
    }

    #[test]
    fn continue_on_error_is_an_alias_of_fail_policy_continue() {
        for src in [
            "{continue_on_error: true}",
            "{continue_on_error: true, fail_policy: continue}",
        ] {
            assert_eq!(parse_yaml(src).unwrap().fail_policy, FailPolicy::Continue);
        }
        for src in ["{continue_on_error: false}", "{continue_on_error: null}"] {
            assert_eq!(parse_yaml(src).unwrap().fail_policy, FailPolicy::Stop);
        }
        assert_eq!(
            parse_yaml("{continue_on_error: false, fail_policy: isolate}")
                .unwrap()
                .fail_policy,
            FailPolicy::Isolate
        );
        assert_eq!(
            parse_yaml("{on_error: alert}").unwrap().on_error.as_deref(),
            Some("alert")
        );
    }

    #[test]
    fn bad_values_have_reason_codes() {
        for (src, code) in [
            ("{retries: -1}", "invalid_task_retries"),
            ("{retries: 1000}", "invalid_task_retries"),
            ("{retries: two}", "invalid_task_retries"),
            ("{retry_backoff_multiplier: 0.5}", "invalid_task_retries"),
            ("{timeout_sec: 0}", "invalid_task_timeout"),
            ("{memory_mb: 8}", "invalid_task_memory"),
            ("{memory_mb: 2.5}", "invalid_task_memory"),
            ("{memory_mb: lots}", "invalid_task_memory"),
            ("{timeout_sec: soon}", "invalid_task_timeout"),
            ("{fail_policy: ignore}", "invalid_task_fail_policy"),
            ("{continue_on_error: yes}", "invalid_task_fail_policy"),
            (
                "{continue_on_error: true, fail_policy: isolate}",
                "invalid_task_fail_policy",
            ),
            ("{on_error: 3}", "invalid_on_error"),
            ("{on_error: ' '}", "invalid_on_error"),
            ("{cache_ttl_sec: -5}", "invalid_task_cache_ttl"),
            (
                "{circuit_breaker: {failure_threshold: 0}}",
                "invalid_task_circuit_breaker",
            ),
            (
                "{circuit_breaker: {colour: red}}",
                "invalid_task_circuit_breaker",
            ),
            ("{circuit_breaker: 3}", "invalid_task_circuit_breaker"),
        ] {
            let err = parse_yaml(src).unwrap_err();
            assert_eq!(err.code, code, "{src}");
            assert_eq!(err.reason, format!("{code}: t"));
        }
    }

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter_and_a_cap() {
        let p = TaskPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_multiplier: 2.0,
            backoff_max: Duration::from_millis(500),
            ..Default::default()
        };
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(300));
        assert_eq!(p.backoff(10, 1.0), Duration::from_millis(500), "capped");
        assert!(
            p.backoff(2, 0.3) >= Duration::from_millis(100)
                && p.backoff(2, 0.3) <= Duration::from_millis(200)
        );
    }
}
