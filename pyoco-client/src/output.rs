//! Output formatting of `pyoco-client`: JSON in the Python original's style, run and worker
//! tables, watch status lines and the terminal progress line. Pure functions; the caller
//! writes.

use std::io::IsTerminal;

use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table, presets};
use serde_json::Value;

/// One JSON document on one line, without the trailing newline.
pub fn json_line(value: &Value) -> String {
    // Python's `json.dumps` form, so scripts written against the original keep matching.
    pyoco::model::json::dumps(value)
}

/// The text of a table cell: strings raw, numbers as sent (`updated_at` stays a raw float),
/// `-` for missing or null so columns never collapse.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => json_line(other),
    }
}

/// How a view is shown: to a terminal (bordered tables fitted to its width, colour unless
/// `NO_COLOR`) or to a pipe (plain aligned columns, no colour, nothing wrapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub terminal: bool,
    pub colour: bool,
}

impl Style {
    /// Plain columns for pipes and files.
    pub const PLAIN: Style = Style {
        terminal: false,
        colour: false,
    };

    /// The style of stdout.
    pub fn of_stdout() -> Style {
        if !std::io::stdout().is_terminal() {
            return Style::PLAIN;
        }
        Style {
            terminal: true,
            colour: crate::live::colour_allowed(true),
        }
    }
}

/// The colour of a run, task or worker state.
fn state_colour(text: &str) -> Option<Color> {
    match text {
        "COMPLETED" | "SUCCEEDED" | "IDLE" => Some(Color::Green),
        "FAILED" | "DISCONNECTED" => Some(Color::Red),
        "CANCELLED" | "CANCELLING" | "STOPPED_GRACEFUL" => Some(Color::Yellow),
        "RUNNING" => Some(Color::Cyan),
        _ => None,
    }
}

/// A header row then the rows (comfy-table): plain, the columns are left-justified and two
/// spaces apart; on a terminal they are bordered, wrapped to fit its width and states are
/// coloured. `(no items)` when empty.
pub fn table(headers: &[&str], rows: &[Vec<String>], style: Style) -> String {
    if rows.is_empty() {
        return "(no items)\n".into();
    }
    let mut t = Table::new();
    if style.terminal {
        t.load_preset(presets::UTF8_FULL_CONDENSED);
        // Wrapped to the terminal's width, unless it reports none that makes sense (a bare
        // pseudo-terminal says 0 columns).
        let fits = t.width().is_some_and(|w| w >= 40);
        t.set_content_arrangement(if fits {
            ContentArrangement::Dynamic
        } else {
            ContentArrangement::Disabled
        });
        if style.colour {
            // Style::of_stdout already checked the terminal and NO_COLOR.
            t.enforce_styling();
        }
    } else {
        // No borders or separators; two spaces of padding on the right of every column.
        t.force_no_tty()
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
    }
    let header = headers.iter().map(|h| {
        let cell = Cell::new(h);
        if style.colour {
            cell.add_attribute(Attribute::Bold)
        } else {
            cell
        }
    });
    t.set_header(header);
    for row in rows {
        t.add_row(row.iter().map(|text| {
            let cell = Cell::new(text);
            match state_colour(text).filter(|_| style.colour) {
                Some(colour) => cell.fg(colour),
                None => cell,
            }
        }));
    }
    if !style.terminal {
        for column in t.column_iter_mut() {
            column.set_padding((0, 2));
        }
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Columns of `list --output table` and `list-vnext --output table`.
pub const RUN_COLUMNS: [&str; 5] = ["run_id", "status", "flow_name", "tag", "updated_at"];

/// A Unix time field as a wall-clock time (`12:03:04`), `-` when missing.
fn time_cell(value: Option<&Value>) -> String {
    match value.and_then(Value::as_f64) {
        Some(ts) => crate::live::clock(ts),
        None => cell(value),
    }
}

/// The runs table of `list --output table`, `updated_at` as a wall-clock time.
pub fn runs_table(runs: &[Value], style: Style) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            RUN_COLUMNS
                .iter()
                .map(|c| match *c {
                    "updated_at" => time_cell(run.get(*c)),
                    _ => cell(run.get(*c)),
                })
                .collect()
        })
        .collect();
    table(&RUN_COLUMNS, &rows, style)
}

/// Columns of `schedules --output table`.
pub const SCHEDULE_COLUMNS: [&str; 8] = [
    "schedule_id",
    "status",
    "flow_name",
    "tag",
    "when",
    "next_run",
    "runs",
    "last_error",
];

/// The table of `schedules --output table`: `when` says the rule in words (`every 60 s`,
/// `cron 0 9 * * 1-5 Asia/Tokyo`, `once`), `next_run` is a wall-clock time.
pub fn schedules_table(schedules: &[Value], style: Style) -> String {
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            let when = if let Some(cron) = s.get("cron").and_then(Value::as_str) {
                let zone = s.get("timezone").and_then(Value::as_str).unwrap_or("UTC");
                format!("cron {cron} {zone}")
            } else if let Some(every) = s.get("interval_seconds").and_then(Value::as_f64) {
                format!("every {every} s")
            } else {
                "once".to_string()
            };
            vec![
                text_or_dash(s, "schedule_id"),
                text_or_dash(s, "status"),
                text_or_dash(s, "flow_name"),
                text_or_dash(s, "tag"),
                when,
                time_cell(s.get("next_run_at")),
                cell(s.get("dispatch_count")),
                text_or_dash(s, "last_error"),
            ]
        })
        .collect();
    table(&SCHEDULE_COLUMNS, &rows, style)
}

/// Columns of `wheels --output table`.
pub const WHEEL_COLUMNS: [&str; 5] = ["name", "version", "size", "tags", "modified"];

/// A size in bytes for people: `906 B`, `2.0 KiB`, `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// The table of `wheels --output table`: size in KiB/MiB, `modified` as the stored time.
pub fn wheels_table(wheels: &[Value], style: Style) -> String {
    let rows: Vec<Vec<String>> = wheels
        .iter()
        .map(|w| {
            let tags = worker_tags(w);
            vec![
                text_or_dash(w, "name"),
                text_or_dash(w, "package_version"),
                w.get("size_bytes")
                    .and_then(Value::as_u64)
                    .map_or_else(|| "-".into(), size),
                if tags == "-" { "*".into() } else { tags },
                w.get("mtime")
                    .and_then(Value::as_str)
                    .map(|m| m.get(..19).unwrap_or(m).replace('T', " "))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&WHEEL_COLUMNS, &rows, style)
}

/// A watch status line `<time>\t<event>\t<status>\t<run_id>` (no newline) for an event shaped
/// `{"event", "data"}`: `time` is the event's send time, else the snapshot's `updated_at`, as
/// a wall-clock time (`12:03:04`);
/// `status` is `-` for heartbeats.
pub fn status_line(event: &Value) -> String {
    let data = event.get("data");
    let snapshot = data.and_then(|d| d.get("snapshot"));
    let pick = |candidates: [Option<&Value>; 2]| {
        candidates
            .into_iter()
            .flatten()
            .find(|v| !v.is_null())
            .map_or_else(|| "-".to_string(), |v| cell(Some(v)))
    };
    let ts = [
        data.and_then(|d| d.get("ts")),
        snapshot.and_then(|s| s.get("updated_at")),
    ]
    .into_iter()
    .flatten()
    .find_map(Value::as_f64)
    .map_or_else(|| "-".to_string(), crate::live::clock);
    let name = pick([event.get("event"), None]);
    let status = pick([snapshot.and_then(|s| s.get("status")), None]);
    let run_id = pick([
        data.and_then(|d| d.get("run_id")),
        snapshot.and_then(|s| s.get("run_id")),
    ]);
    format!("{ts}\t{name}\t{status}\t{run_id}")
}

/// Columns of `workers --output table`.
pub const WORKER_COLUMNS: [&str; 5] = ["worker_id", "state", "tags", "plugins", "plugin_preview"];

/// Columns of `workers --output plugins`.
pub const PLUGIN_COLUMNS: [&str; 6] = [
    "worker_id",
    "state",
    "tags",
    "package",
    "version",
    "wheel_name",
];

/// A string field, `-` when missing, null or empty.
fn text_or_dash(item: &Value, key: &str) -> String {
    match item.get(key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => "-".into(),
        Some(other) => json_line(other),
    }
}

/// A worker's tags joined by `,`, or `-`.
fn worker_tags(worker: &Value) -> String {
    let tags: Vec<String> = worker
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .map(|t| t.as_str().map_or_else(|| json_line(t), str::to_string))
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if tags.is_empty() {
        "-".into()
    } else {
        tags.join(",")
    }
}

/// The `(package, version, wheel_name)` of each wheel in `wheel_sync.installed_wheels`, empty
/// strings for missing fields.
fn installed_wheels(worker: &Value) -> Vec<[String; 3]> {
    let Some(list) = worker
        .get("wheel_sync")
        .and_then(|w| w.get("installed_wheels"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let field = |w: &Value, k: &str| match w.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => json_line(other),
    };
    list.iter()
        .filter(|w| w.is_object())
        .map(|w| {
            [
                field(w, "package_name"),
                field(w, "package_version"),
                field(w, "wheel_name"),
            ]
        })
        .collect()
}

/// The table of `workers --output table`: the plugin count and a preview of up to three
/// installed wheels (`pkg@version`, or the wheel name) plus `+N` for the rest.
pub fn workers_table(workers: &[Value], style: Style) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let wheels = installed_wheels(w);
            let mut preview: Vec<String> = wheels
                .iter()
                .take(3)
                .map(|[package, version, wheel]| {
                    if !package.is_empty() && !version.is_empty() {
                        format!("{package}@{version}")
                    } else if wheel.is_empty() {
                        "-".into()
                    } else {
                        wheel.clone()
                    }
                })
                .collect();
            if wheels.len() > 3 {
                preview.push(format!("+{}", wheels.len() - 3));
            }
            vec![
                text_or_dash(w, "worker_id"),
                text_or_dash(w, "state"),
                worker_tags(w),
                wheels.len().to_string(),
                if preview.is_empty() {
                    "-".into()
                } else {
                    preview.join(", ")
                },
            ]
        })
        .collect();
    table(&WORKER_COLUMNS, &rows, style)
}

/// The table of `workers --output plugins`: one row per installed wheel, one row of `-` for a
/// worker without any.
pub fn plugins_table(workers: &[Value], style: Style) -> String {
    let dash = |s: &String| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.clone()
        }
    };
    let mut rows = Vec::new();
    for w in workers {
        let head = [
            text_or_dash(w, "worker_id"),
            text_or_dash(w, "state"),
            worker_tags(w),
        ];
        let wheels = installed_wheels(w);
        if wheels.is_empty() {
            rows.push([head.to_vec(), vec!["-".into(); 3]].concat());
        }
        for wheel in &wheels {
            rows.push([head.to_vec(), wheel.iter().map(dash).collect()].concat());
        }
    }
    table(&PLUGIN_COLUMNS, &rows, style)
}

/// A compact per-task progress line such as `a ✓  b …  c ·` from the run's `tasks` map;
/// empty when the run has no tasks yet.
pub fn progress_line(run: &Value) -> String {
    let Some(tasks) = run.get("tasks").and_then(Value::as_object) else {
        return String::new();
    };
    tasks
        .iter()
        .map(|(name, state)| {
            let mark = match state.as_str() {
                Some("SUCCEEDED") => "✓",
                Some("FAILED") => "✗",
                Some("CANCELLED") => "⊘",
                Some("RUNNING") => "…",
                Some("PENDING") => "·",
                _ => "?",
            };
            format!("{name} {mark}")
        })
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_matches_python_dumps() {
        let v = json!({"run_id": "r1", "n": [1, 2.5, true, null], "s": "é\u{1F600}\n\"", "o": {}});
        assert_eq!(
            json_line(&v),
            r#"{"run_id": "r1", "n": [1, 2.5, true, null], "s": "\u00e9\ud83d\ude00\n\"", "o": {}}"#
        );
        assert_eq!(json_line(&json!(1795313186.0)), "1795313186.0");
    }

    #[test]
    fn plain_tables_align_columns_two_spaces_apart_without_trailing_blanks() {
        let out = table(
            &["id", "status"],
            &[
                vec!["abc".into(), "OK".into()],
                vec!["x".into(), "COMPLETED".into()],
            ],
            Style::PLAIN,
        );
        assert_eq!(out, "id   status\nabc  OK\nx    COMPLETED\n");
    }

    #[test]
    fn terminal_tables_have_borders_and_colour_only_when_allowed() {
        let rows = [vec!["r1".to_string(), "FAILED".to_string()]];
        let grey = table(
            &["id", "status"],
            &rows,
            Style {
                terminal: true,
                colour: false,
            },
        );
        assert!(grey.contains('│') && !grey.contains('\x1b'), "{grey}");
        let coloured = table(
            &["id", "status"],
            &rows,
            Style {
                terminal: true,
                colour: true,
            },
        );
        assert!(coloured.contains("\x1b["), "{coloured:?}");
        assert!(!table(&["id"], &[vec!["FAILED".into()]], Style::PLAIN).contains('\x1b'));
    }

    #[test]
    fn empty_table_says_no_items() {
        assert_eq!(table(&["a"], &[], Style::PLAIN), "(no items)\n");
        assert_eq!(runs_table(&[], Style::PLAIN), "(no items)\n");
    }

    #[test]
    fn runs_table_shows_wall_clock_times_and_dashes_for_missing() {
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        let runs = [
            json!({"run_id": "r1", "status": "PENDING", "flow_name": "main",
                           "tag": "default", "updated_at": now}),
        ];
        let out = runs_table(&runs, Style::PLAIN);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "run_id  status   flow_name  tag      updated_at");
        assert_eq!(
            lines[1],
            format!(
                "r1      PENDING  main       default  {}",
                crate::live::clock(now)
            )
        );
        assert!(!lines[1].contains('.'), "no raw epoch float: {out}");
        let missing = runs_table(&[json!({"run_id": "r2", "tag": null})], Style::PLAIN);
        assert!(
            missing
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("r2      -       ")),
            "{missing}"
        );
    }

    #[test]
    fn schedules_table_says_the_rule_in_words() {
        let rows = vec![
            json!({"schedule_id": "s1", "status": "ACTIVE", "flow_name": "nightly", "tag": "default",
                   "interval_seconds": 60.0, "next_run_at": null, "dispatch_count": 3, "last_error": null}),
            json!({"schedule_id": "s2", "status": "PAUSED", "flow_name": "report", "tag": "gpu",
                   "cron": "0 9 * * 1-5", "timezone": "Asia/Tokyo", "dispatch_count": 0}),
            json!({"schedule_id": "s3", "status": "COMPLETED", "flow_name": "once", "tag": "default",
                   "run_at": 1.0, "dispatch_count": 1, "last_error": "boom"}),
        ];
        let t = schedules_table(&rows, Style::PLAIN);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("schedule_id"), "{t}");
        assert!(
            lines[1].contains("every 60 s") && lines[1].contains("ACTIVE"),
            "{t}"
        );
        assert!(lines[2].contains("cron 0 9 * * 1-5 Asia/Tokyo"), "{t}");
        assert!(
            lines[3].contains("once") && lines[3].contains("boom"),
            "{t}"
        );
    }

    #[test]
    fn wheels_table_shows_sizes_and_times_for_people() {
        let wheels = [
            json!({"name": "mypkg-1.0.0-py3-none-any.whl", "package_version": "1.0.0",
            "size_bytes": 2048, "tags": [], "mtime": "2026-11-22T02:05:17.039151+00:00"}),
        ];
        let out = wheels_table(&wheels, Style::PLAIN);
        let row = out.lines().nth(1).unwrap();
        assert_eq!(
            row,
            "mypkg-1.0.0-py3-none-any.whl  1.0.0    2.0 KiB  *     2026-11-22 02:05:17"
        );
        assert_eq!(size(906), "906 B");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn status_line_follows_the_original_fallbacks_with_wall_clock_times() {
        let ev = json!({"event": "snapshot", "data": {"run_id": "id1", "ts": 1795313186.0284507,
                         "snapshot": {"status": "COMPLETED", "updated_at": 1.5}}});
        assert_eq!(
            status_line(&ev),
            format!(
                "{}\tsnapshot\tCOMPLETED\tid1",
                crate::live::clock(1795313186.0284507)
            )
        );
        let no_ts = json!({"event": "snapshot", "data": {"snapshot": {"run_id": "r", "status": "RUNNING", "updated_at": 1.5}}});
        assert_eq!(
            status_line(&no_ts),
            format!("{}\tsnapshot\tRUNNING\tr", crate::live::clock(1.5))
        );
        let hb = json!({"event": "heartbeat", "data": {"run_id": "id1", "ts": 2.0}});
        assert!(status_line(&hb).ends_with("\theartbeat\t-\tid1"));
        assert_eq!(status_line(&json!({})), "-\t-\t-\t-");
    }

    #[test]
    fn workers_table_counts_and_previews_plugins() {
        let wheel = |p: &str, v: &str, n: &str| json!({"package_name": p, "package_version": v, "wheel_name": n});
        let workers = [
            json!({"worker_id": "w1", "state": "IDLE", "tags": ["a", " ", "b"], "wheel_sync": {"installed_wheels": [
                wheel("p1", "1.0", "p1.whl"), wheel("", "", "bare.whl"), wheel("p3", "3", "x"), wheel("p4", "4", "y")]}}),
            json!({"worker_id": "w2", "state": null, "tags": []}),
        ];
        let out = workers_table(&workers, Style::PLAIN);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            WORKER_COLUMNS
        );
        assert!(
            lines[1].starts_with("w1         IDLE   a,b   4        p1@1.0, bare.whl, p3@3, +1"),
            "{out}"
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["w2", "-", "-", "0", "-"]
        );
        assert_eq!(workers_table(&[], Style::PLAIN), "(no items)\n");
    }

    #[test]
    fn plugins_table_has_a_row_per_wheel_and_a_dash_row_otherwise() {
        let workers = [
            json!({"worker_id": "w1", "state": "RUNNING", "tags": ["gpu"], "wheel_sync": {"installed_wheels": [
                {"package_name": "p1", "package_version": "1.0", "wheel_name": "p1.whl"},
                {"wheel_name": "bare.whl"}]}}),
            json!({"worker_id": "w2", "state": "IDLE"}),
        ];
        let out = plugins_table(&workers, Style::PLAIN);
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], PLUGIN_COLUMNS);
        assert_eq!(rows[1], ["w1", "RUNNING", "gpu", "p1", "1.0", "p1.whl"]);
        assert_eq!(rows[2], ["w1", "RUNNING", "gpu", "-", "-", "bare.whl"]);
        assert_eq!(rows[3], ["w2", "IDLE", "-", "-", "-", "-"]);
    }

    #[test]
    fn progress_line_marks_each_task() {
        let run =
            json!({"tasks": {"a": "SUCCEEDED", "b": "RUNNING", "c": "PENDING", "d": "FAILED"}});
        assert_eq!(progress_line(&run), "a ✓  b …  c ·  d ✗");
        assert_eq!(progress_line(&json!({})), "");
    }
}
