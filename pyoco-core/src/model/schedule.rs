//! YAML schedules (`pyoco_yaml_schedules`, key = schedule_id): the record the original 0.7
//! writes, plus pyoco's additions (`cron`, `timezone`, `misfire`, `missed_slots`), and the pure
//! rules on it — when a schedule fires next ([`slot_after`]), what the dispatcher does with a
//! due schedule ([`plan`]), and the run id of a slot ([`slot_run_id`]), derived from
//! (schedule, slot time) so every gateway that fires the same slot names the same run.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// `status` of an active schedule (the only one the dispatcher fires).
pub const ACTIVE: &str = "ACTIVE";
/// `status` of a schedule stopped by `PATCH /schedules/{id}` (pyoco only).
pub const PAUSED: &str = "PAUSED";
/// `status` of a once-schedule that has fired (or whose slot was skipped).
pub const COMPLETED: &str = "COMPLETED";

/// The `lease_until` of every cron record: 2100-01-01. The original's dispatcher knows only
/// once and interval schedules (it would fire a cron record as a once-schedule); a lease it
/// believes held keeps it off. pyoco ignores this lease on cron records.
pub const PYOCO_ONLY_LEASE: f64 = 4_102_444_800.0;

/// A schedule record, as the original writes it (field order kept) plus pyoco's fields at the
/// end. Unknown fields of another writer survive in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub schedule_id: String,
    #[serde(default)]
    pub flow_name: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub status: String,
    /// `once`, `interval` or (pyoco) `cron`.
    #[serde(default)]
    pub schedule_type: String,
    #[serde(default)]
    pub workflow_yaml: String,
    #[serde(default)]
    pub workflow_yaml_sha256: Option<String>,
    #[serde(default)]
    pub workflow_yaml_bytes: Option<u64>,
    /// `flow.defaults` captured at creation: every run gets these params.
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub api_key_id: Option<String>,
    #[serde(default)]
    pub created_at: f64,
    #[serde(default)]
    pub updated_at: f64,
    #[serde(default)]
    pub last_submitted_at: Option<f64>,
    #[serde(default)]
    pub last_run_id: Option<String>,
    #[serde(default)]
    pub dispatch_count: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The original's dispatch lease. pyoco never takes one (its claims are per slot, in their
    /// own bucket) but honours one a Python gateway holds.
    #[serde(default)]
    pub lease_until: Option<f64>,
    #[serde(default)]
    pub run_at: Option<f64>,
    #[serde(default)]
    pub next_run_at: Option<f64>,
    #[serde(default)]
    pub interval_seconds: Option<f64>,
    /// Anchor of an interval schedule: slots are `start_at + k * interval_seconds`.
    #[serde(default)]
    pub start_at: Option<f64>,
    /// pyoco: a 5- or 6-field cron expression (`schedule_type: cron`).
    #[serde(default)]
    pub cron: Option<String>,
    /// pyoco: the IANA timezone the cron expression is read in (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// pyoco: `skip` or `run_once` (default) for slots missed while no gateway was up.
    #[serde(default)]
    pub misfire: Option<String>,
    /// pyoco: slots skipped by the `skip` policy.
    #[serde(default)]
    pub missed_slots: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What happens to slots missed by more than the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// Fire none of them; continue with the next slot.
    Skip,
    /// Fire one run for all of them (what the original does), then continue.
    RunOnce,
}

impl Misfire {
    pub fn parse(s: &str) -> Option<Misfire> {
        match s {
            "skip" => Some(Misfire::Skip),
            "run_once" => Some(Misfire::RunOnce),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run_once",
        }
    }
}

/// The keys of the original's `YamlScheduleResponse`, in its order.
const RESPONSE_KEYS: [&str; 19] = [
    "schedule_id",
    "flow_name",
    "tag",
    "status",
    "schedule_type",
    "workflow_yaml_sha256",
    "workflow_yaml_bytes",
    "tenant_id",
    "api_key_id",
    "created_at",
    "updated_at",
    "run_at",
    "next_run_at",
    "interval_seconds",
    "start_at",
    "last_submitted_at",
    "last_run_id",
    "dispatch_count",
    "last_error",
];

impl Schedule {
    /// What the routes answer: the original's 19 keys (no YAML text, no lease), then pyoco's
    /// `cron`, `timezone`, `misfire` and `missed_slots`.
    pub fn view(&self) -> Value {
        let full = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut out = Map::new();
        for key in RESPONSE_KEYS
            .iter()
            .chain(&["cron", "timezone", "misfire", "missed_slots"])
        {
            out.insert(
                (*key).to_string(),
                full.get(*key).cloned().unwrap_or(Value::Null),
            );
        }
        out.insert("misfire".into(), json!(self.misfire_policy().as_str()));
        Value::Object(out)
    }

    /// True while a Python gateway holds the original's dispatch lease (pyoco never takes
    /// one; the lease of a cron record is [`PYOCO_ONLY_LEASE`], there only to keep the
    /// original's dispatcher away).
    pub fn leased_by_original(&self, now: f64) -> bool {
        self.schedule_type != "cron" && self.lease_until.is_some_and(|l| l > now)
    }

    /// `lease_until` after pyoco writes the record: none, except on cron records.
    pub fn own_lease(&self) -> Option<f64> {
        (self.schedule_type == "cron").then_some(PYOCO_ONLY_LEASE)
    }

    /// The misfire policy; records without one (the original's) behave as `run_once`.
    pub fn misfire_policy(&self) -> Misfire {
        self.misfire
            .as_deref()
            .and_then(Misfire::parse)
            .unwrap_or(Misfire::RunOnce)
    }

    /// The original's list order: ACTIVE first, then `next_run_at` (else `created_at`), then id.
    pub fn sort_key(&self) -> (bool, f64, &str) {
        (
            self.status != ACTIVE,
            self.next_run_at.unwrap_or(self.created_at),
            self.schedule_id.as_str(),
        )
    }
}

/// Sorts schedules in the order `GET /schedules` lists them.
pub fn sort_schedules(list: &mut [Schedule]) {
    list.sort_by(|a, b| {
        let (a, b) = (a.sort_key(), b.sort_key());
        a.0.cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then_with(|| a.2.cmp(b.2))
    });
}

/// A timing rule that cannot produce slots (a record another writer made, or a bad form).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimingError(pub String);

fn err<T>(msg: &str) -> Result<T, TimingError> {
    Err(TimingError(msg.to_string()))
}

/// Parses an ISO 8601 datetime that must carry an offset (a trailing `Z` is UTC), into Unix
/// seconds. The messages are the original's, with `field` in them.
pub fn parse_datetime(field: &str, text: &str) -> Result<f64, TimingError> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_nanosecond() as f64 / 1e9);
    }
    let naive =
        text.parse::<jiff::civil::DateTime>().is_ok() || text.parse::<jiff::civil::Date>().is_ok();
    if naive {
        err(&format!("{field} must include timezone offset"))
    } else {
        err(&format!("{field} must be ISO 8601 datetime"))
    }
}

/// A parsed cron rule: the expression read in a timezone.
#[derive(Debug, Clone)]
pub struct CronRule {
    cron: croner::Cron,
    tz: jiff::tz::TimeZone,
}

impl CronRule {
    /// A 5-field (minute) or 6-field (second first) expression, or a nickname like `@hourly`,
    /// read in the IANA `timezone` (`None`: UTC).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<CronRule, TimingError> {
        let fields = expr.split_whitespace().count();
        let nickname = expr.trim_start().starts_with('@');
        if expr.len() > 256 || !(nickname || fields == 5 || fields == 6) {
            return err("invalid cron expression");
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .or_else(|_| err("invalid cron expression"))?;
        let tz = match timezone.map(str::trim).filter(|t| !t.is_empty()) {
            None | Some("UTC") => jiff::tz::TimeZone::UTC,
            Some(name) => jiff::tz::TimeZone::get(name).or_else(|_| err("unknown timezone"))?,
        };
        Ok(CronRule { cron, tz })
    }

    /// The first matching instant strictly after `t` (Unix seconds).
    pub fn next_after(&self, t: f64) -> Result<f64, TimingError> {
        let secs = t.floor();
        if !secs.is_finite() || secs.abs() > 1e11 {
            return err("cron expression never fires");
        }
        let ts = jiff::Timestamp::from_second(secs as i64)
            .or_else(|_| err("cron expression never fires"))?;
        let zoned = ts.to_zoned(self.tz.clone());
        let next = self
            .cron
            .find_next_occurrence(&zoned, false)
            .or_else(|_| err("cron expression never fires"))?;
        Ok(next.timestamp().as_second() as f64)
    }
}

/// The first `anchor + k * interval` strictly after `t` (the anchor itself when it is later).
pub fn interval_slot_after(anchor: f64, interval: f64, t: f64) -> f64 {
    if anchor > t {
        return anchor;
    }
    let k = ((t - anchor) / interval).floor() + 1.0;
    let mut slot = anchor + k * interval;
    // Float rounding can land on (or just before) `t`.
    while slot <= t {
        slot += interval;
    }
    slot
}

/// The schedule's first slot strictly after `t`; `None` for a once-schedule (one slot only).
pub fn slot_after(s: &Schedule, t: f64) -> Result<Option<f64>, TimingError> {
    match s.schedule_type.as_str() {
        "once" => Ok(None),
        "interval" => {
            let interval = s
                .interval_seconds
                .filter(|i| i.is_finite() && *i > 0.0)
                .ok_or_else(|| TimingError("interval_seconds must be positive".into()))?;
            let anchor = s.start_at.unwrap_or(s.created_at + interval);
            Ok(Some(interval_slot_after(anchor, interval, t)))
        }
        "cron" => {
            let expr = s.cron.as_deref().unwrap_or_default();
            CronRule::parse(expr, s.timezone.as_deref())?
                .next_after(t)
                .map(Some)
        }
        other => Err(TimingError(format!("unknown schedule_type {other:?}"))),
    }
}

/// What the dispatcher does with the schedule's due slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The slot being handled: the record's `next_run_at`.
    pub slot: f64,
    /// Fire a run for it (else it is skipped by the `skip` policy).
    pub fire: bool,
    /// `next_run_at` afterwards; `None` completes the schedule.
    pub next: Option<f64>,
    /// Slots skipped by this step.
    pub missed: u64,
}

/// The dispatcher's rule for an ACTIVE schedule at `now`: `None` when nothing is due. A slot
/// at most `grace` seconds late fires on its own (a short stall catches up slot by slot); a
/// later one was missed while no gateway was up, and the misfire policy decides: `run_once`
/// fires one run for all missed slots, `skip` fires none and continues with the first slot
/// that is not missed.
pub fn plan(s: &Schedule, now: f64, grace: f64) -> Result<Option<Due>, TimingError> {
    let Some(slot) = s.next_run_at else {
        return Ok(None);
    };
    if s.status != ACTIVE || slot > now {
        return Ok(None);
    }
    if now - slot <= grace {
        return Ok(Some(Due {
            slot,
            fire: true,
            next: slot_after(s, slot)?,
            missed: 0,
        }));
    }
    match s.misfire_policy() {
        Misfire::RunOnce => Ok(Some(Due {
            slot,
            fire: true,
            next: slot_after(s, now)?,
            missed: 0,
        })),
        Misfire::Skip => {
            let cutoff = now - grace;
            let next = slot_after(s, cutoff)?;
            Ok(Some(Due {
                slot,
                fire: false,
                next,
                missed: count_slots(s, slot, cutoff)?,
            }))
        }
    }
}

/// The number of slots in `[from, to]` (at least `from` itself), capped for cron rules.
fn count_slots(s: &Schedule, from: f64, to: f64) -> Result<u64, TimingError> {
    if s.schedule_type == "interval"
        && let Some(i) = s.interval_seconds.filter(|i| *i > 0.0)
    {
        return Ok(((to - from) / i).floor().max(0.0) as u64 + 1);
    }
    let mut n = 1;
    let mut t = from;
    while n < 10_000 {
        match slot_after(s, t)? {
            Some(next) if next <= to => {
                n += 1;
                t = next;
            }
            _ => break,
        }
    }
    Ok(n)
}

/// A slot's time in whole milliseconds: the slot part of its claim key and run id.
pub fn slot_millis(slot: f64) -> i64 {
    (slot * 1000.0).round() as i64
}

/// The run id of a slot: a uuid (version 8, RFC 9562's custom layout) made from SHA-256 of
/// the schedule id and the slot time. Every gateway firing the slot derives the same id, so
/// the run's KV create and its `Nats-Msg-Id` deduplicate a second firing.
pub fn slot_run_id(schedule_id: &str, slot: f64) -> String {
    let mut h = Sha256::new();
    h.update(b"pyoco.schedule\0");
    h.update(schedule_id.as_bytes());
    h.update([0]);
    h.update(slot_millis(slot).to_string().as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// The timing fields of a new schedule, from the create form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimingForm {
    pub run_at: Option<String>,
    pub interval_seconds: Option<f64>,
    pub start_at: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub misfire: Option<String>,
}

/// Validates the timing fields in the original's order (with pyoco's `cron` rules after its
/// own) and fills the timing fields of `s`, created at `s.created_at`.
pub fn apply_timing(s: &mut Schedule, form: &TimingForm) -> Result<(), TimingError> {
    let given = [
        form.run_at.is_some(),
        form.interval_seconds.is_some(),
        form.cron.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => return err("specify either run_at or interval_seconds"),
        1 => {}
        _ if form.cron.is_some() => {
            return err("specify only one of run_at, interval_seconds or cron");
        }
        _ => return err("specify either run_at or interval_seconds"),
    }
    if let Some(m) = &form.misfire {
        let policy = Misfire::parse(m.trim())
            .ok_or_else(|| TimingError("misfire must be skip or run_once".into()))?;
        s.misfire = Some(policy.as_str().into());
    } else {
        s.misfire = Some(Misfire::RunOnce.as_str().into());
    }
    if form.timezone.is_some() && form.cron.is_none() {
        return err("timezone is only valid with cron");
    }
    let now = s.created_at;
    if let Some(run_at) = &form.run_at {
        if form.start_at.is_some() {
            return err("start_at is only valid with interval_seconds");
        }
        let at = parse_datetime("run_at", run_at)?;
        if at <= now {
            return err("run_at must be in the future");
        }
        s.schedule_type = "once".into();
        s.run_at = Some(at);
        s.next_run_at = Some(at);
    } else if let Some(interval) = form.interval_seconds {
        // NaN is not positive either (the form reader already refuses it).
        if interval.is_nan() || interval <= 0.0 {
            return err("interval_seconds must be positive");
        }
        let anchor = match &form.start_at {
            Some(start) => parse_datetime("start_at", start)?,
            None => now + interval,
        };
        s.schedule_type = "interval".into();
        s.interval_seconds = Some(interval);
        s.start_at = Some(anchor);
        s.next_run_at = Some(interval_slot_after(anchor, interval, now));
    } else if let Some(expr) = &form.cron {
        if form.start_at.is_some() {
            return err("start_at is only valid with interval_seconds");
        }
        let timezone = form
            .timezone
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("UTC");
        let rule = CronRule::parse(expr.trim(), Some(timezone))?;
        s.schedule_type = "cron".into();
        s.lease_until = s.own_lease();
        s.cron = Some(expr.trim().to_string());
        s.timezone = Some(timezone.to_string());
        s.next_run_at = Some(rule.next_after(now)?);
    }
    Ok(())
}

impl Schedule {
    /// A new ACTIVE record without timing (see [`apply_timing`]).
    pub fn new(schedule_id: String, flow_name: String, created_at: f64) -> Schedule {
        Schedule {
            schedule_id,
            flow_name,
            tag: None,
            status: ACTIVE.into(),
            schedule_type: String::new(),
            workflow_yaml: String::new(),
            workflow_yaml_sha256: None,
            workflow_yaml_bytes: None,
            params: Map::new(),
            tenant_id: None,
            api_key_id: None,
            created_at,
            updated_at: created_at,
            last_submitted_at: None,
            last_run_id: None,
            dispatch_count: 0,
            last_error: None,
            lease_until: None,
            run_at: None,
            next_run_at: None,
            interval_seconds: None,
            start_at: None,
            cron: None,
            timezone: None,
            misfire: None,
            missed_slots: 0,
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
