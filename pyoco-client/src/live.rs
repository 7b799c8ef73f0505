//! `watch --output live`: the run's tasks as they change. On a terminal, one spinner line
//! per task (state and duration, redrawn in place by indicatif); piped, one plain line per
//! task change. Both end with a one-line summary. Colour only on a terminal without
//! `NO_COLOR`.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// Whether output may be coloured: a terminal, and no `NO_COLOR` (any non-empty value).
pub fn colour_allowed(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A Unix time as a local wall-clock time, `12:03:04` (with the date when not today).
pub fn clock(ts: f64) -> String {
    let Ok(at) = jiff::Timestamp::from_millisecond((ts * 1000.0) as i64) else {
        return "-".into();
    };
    let zone = jiff::tz::TimeZone::system();
    let at = at.to_zoned(zone.clone());
    let today = jiff::Timestamp::now().to_zoned(zone).date();
    if at.date() == today {
        at.strftime("%H:%M:%S").to_string()
    } else {
        at.strftime("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// A duration in milliseconds for people: `850 ms`, `1.2 s`, `3 min 04 s`.
pub fn duration(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        "-".into()
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let secs = (ms / 1000.0).round() as u64;
        format!("{} min {:02} s", secs / 60, secs % 60)
    }
}

fn tasks(snapshot: &Value) -> Vec<(String, String)> {
    snapshot
        .get("tasks")
        .and_then(Value::as_object)
        .map(|tasks| {
            tasks
                .iter()
                .map(|(name, state)| (name.clone(), state.as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn record_ms(snapshot: &Value, task: &str) -> Option<f64> {
    snapshot
        .get("task_records")?
        .get(task)?
        .get("duration_ms")?
        .as_f64()
}

/// One task's line: `fetch  SUCCEEDED  12 ms`.
pub fn task_line(snapshot: &Value, task: &str, state: &str) -> String {
    match record_ms(snapshot, task) {
        Some(ms) if state != "RUNNING" && state != "PENDING" => {
            format!("{task}  {state}  {}", duration(ms))
        }
        _ => format!("{task}  {state}"),
    }
}

/// The closing line: `COMPLETED <run_id> in 1.2 s · 4 tasks: 4 succeeded`.
pub fn summary_line(snapshot: &Value) -> String {
    let text = |k: &str| snapshot.get(k).and_then(Value::as_str).unwrap_or("-");
    let tasks = tasks(snapshot);
    let count = |s: &str| tasks.iter().filter(|(_, st)| st == s).count();
    let mut parts = Vec::new();
    for (state, word) in [
        ("SUCCEEDED", "succeeded"),
        ("FAILED", "failed"),
        ("CANCELLED", "cancelled"),
        ("SKIPPED", "skipped"),
        ("RUNNING", "running"),
        ("PENDING", "pending"),
    ] {
        let n = count(state);
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let took = match (
        snapshot.get("start_time").and_then(Value::as_f64),
        snapshot.get("end_time").and_then(Value::as_f64),
    ) {
        (Some(start), Some(end)) => format!(" in {}", duration((end - start) * 1000.0)),
        _ => String::new(),
    };
    let mut line = format!(
        "{} {}{took} · {} task{}",
        text("status"),
        text("run_id"),
        tasks.len(),
        if tasks.len() == 1 { "" } else { "s" }
    );
    if !parts.is_empty() {
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    if let Some(error) = snapshot.get("error").and_then(Value::as_str) {
        line.push_str(&format!(" · error: {error}"));
    }
    line
}

/// The live view of one watch.
pub struct LiveView {
    terminal: bool,
    colour: bool,
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    /// The last state printed per task (plain lines print changes only).
    seen: HashMap<String, String>,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView")
            .field("terminal", &self.terminal)
            .field("tasks", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl LiveView {
    /// Draws on stdout when `terminal`, else returns plain lines from [`LiveView::update`].
    pub fn new(terminal: bool) -> LiveView {
        let target = if terminal {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        LiveView {
            terminal,
            colour: colour_allowed(terminal),
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    fn style(&self, state: &str) -> ProgressStyle {
        let colour = match state {
            "SUCCEEDED" => "green",
            "FAILED" => "red",
            "CANCELLED" => "yellow",
            "RUNNING" => "cyan",
            _ => "dim",
        };
        // A running task shows how long it has run; a finished one its recorded duration.
        let elapsed = match (state, self.colour) {
            ("RUNNING", true) => " {elapsed:.dim}",
            ("RUNNING", false) => " {elapsed}",
            _ => "",
        };
        let template = if self.colour {
            format!("{{spinner:.{colour}}} {{msg:.{colour}}}{elapsed}")
        } else {
            format!("{{spinner}} {{msg}}{elapsed}")
        };
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓")
    }

    /// Shows `snapshot`; returns the plain lines to print (empty on a terminal).
    pub fn update(&mut self, snapshot: &Value) -> String {
        let mut out = String::new();
        let stamp = snapshot
            .get("updated_at")
            .and_then(Value::as_f64)
            .map(clock)
            .unwrap_or_else(|| "-".into());
        for (task, state) in tasks(snapshot) {
            if self.seen.get(&task) == Some(&state) {
                continue;
            }
            self.seen.insert(task.clone(), state.clone());
            let line = task_line(snapshot, &task, &state);
            if !self.terminal {
                out.push_str(&format!("{stamp}  {line}\n"));
                continue;
            }
            let style = self.style(&state);
            let bar = self
                .bars
                .entry(task.clone())
                .or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                })
                .clone();
            bar.set_style(style);
            bar.set_message(line);
            if matches!(
                state.as_str(),
                "SUCCEEDED" | "FAILED" | "CANCELLED" | "SKIPPED"
            ) {
                bar.finish();
            }
        }
        out
    }

    /// Stops the spinners and returns the summary line of the last snapshot.
    pub fn finish(&mut self, last: Option<&Value>) -> String {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
        self.multi.clear().ok();
        // On a terminal the spinners are cleared: leave the final task lines behind.
        let mut out = String::new();
        if self.terminal
            && let Some(last) = last
        {
            for (task, state) in tasks(last) {
                out.push_str(&format!("  {}\n", task_line(last, &task, &state)));
            }
        }
        match last {
            Some(last) => out.push_str(&format!("{}\n", summary_line(last))),
            None => out.push_str("no snapshot received\n"),
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(0.4), "0 ms");
        assert_eq!(duration(850.0), "850 ms");
        assert_eq!(duration(1234.0), "1.2 s");
        assert_eq!(duration(184_000.0), "3 min 04 s");
        assert_eq!(duration(f64::NAN), "-");
    }

    #[test]
    fn clock_shows_a_time_of_day() {
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        let text = clock(now);
        assert_eq!(text.len(), 8, "{text}");
        assert_eq!(text.matches(':').count(), 2, "{text}");
        assert!(clock(0.0).starts_with("1970-01-0") || clock(0.0).starts_with("1969-12-31"));
    }

    #[test]
    fn plain_lines_print_each_change_once_and_the_summary_counts_states() {
        let mut view = LiveView::new(false);
        let running = json!({"run_id": "r1", "status": "RUNNING", "updated_at": 1.0,
            "tasks": {"a": "SUCCEEDED", "b": "RUNNING"},
            "task_records": {"a": {"duration_ms": 12.0}}});
        let out = view.update(&running);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].ends_with("a  SUCCEEDED  12 ms"), "{out}");
        assert!(lines[1].ends_with("b  RUNNING"), "{out}");
        assert_eq!(view.update(&running), "");
        let done = json!({"run_id": "r1", "status": "FAILED", "start_time": 10.0, "end_time": 11.5,
            "tasks": {"a": "SUCCEEDED", "b": "FAILED"}, "error": "boom",
            "task_records": {"a": {"duration_ms": 12.0}, "b": {"duration_ms": 1400.0}}});
        assert!(view.update(&done).ends_with("b  FAILED  1.4 s\n"));
        assert_eq!(
            view.finish(Some(&done)),
            "FAILED r1 in 1.5 s · 2 tasks: 1 succeeded, 1 failed · error: boom\n"
        );
    }

    #[test]
    fn no_colour_off_a_terminal() {
        assert!(!colour_allowed(false));
    }
}
