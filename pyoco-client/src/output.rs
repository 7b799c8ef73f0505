//! Output formatting of `pyoco-client`: JSON in the Python original's style, tables, watch
//! status lines and the terminal progress line. Pure functions; the caller writes.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Value, json};

/// Formats like Python's `json.dumps(obj, ensure_ascii=True)` (`", "` and `": "` separators,
/// non-ASCII escaped), so scripts written against the original keep matching.
#[derive(Debug, Default)]
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json already escaped quotes, backslashes and control characters; what is left
        // outside printable ASCII is escaped as UTF-16 units, as `ensure_ascii` does.
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// One JSON document on one line, without the trailing newline.
pub fn json_line(value: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PythonFormatter);
    match value.serialize(&mut ser) {
        // The formatter only writes ASCII, so the buffer is valid UTF-8.
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        // Serializing a `Value` into memory cannot fail; fall back to serde_json's own form.
        Err(_) => value.to_string(),
    }
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

/// A header row then the rows, each column left-justified to its widest cell and separated by
/// two spaces (the last column padded too, like the original); `(no items)` when empty.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(no items)\n".into();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ") + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Columns of `list --output table`.
pub const RUN_COLUMNS: [&str; 5] = ["run_id", "status", "flow_name", "tag", "updated_at"];

/// The runs table of `list --output table`.
pub fn runs_table(runs: &[Value]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| RUN_COLUMNS.iter().map(|c| cell(run.get(*c))).collect())
        .collect();
    table(&RUN_COLUMNS, &rows)
}

/// A watch status line `<ts>\t<event>\t<status>\t<run_id>` (no newline); `ts` is the snapshot's
/// `updated_at`.
pub fn status_line(event: &str, run: &Value, run_id: &str) -> String {
    let field = |k: &str| match run.get(k) {
        None | Some(Value::Null) => "-".to_string(),
        Some(v) => cell(Some(v)),
    };
    format!(
        "{}\t{event}\t{}\t{run_id}",
        field("updated_at"),
        field("status")
    )
}

/// The `--output json` watch event, shaped like the gateway's SSE `snapshot` event. Task
/// records are dropped unless asked for, as the server does without `include=records`.
pub fn snapshot_event(run: &Value, run_id: &str, ts: f64, records: bool) -> Value {
    let mut snapshot = run.clone();
    if !records && let Some(map) = snapshot.as_object_mut() {
        map.remove("task_records");
        map.remove("task_records_truncated");
    }
    json!({"event": "snapshot", "data": {"run_id": run_id, "snapshot": snapshot, "ts": ts}})
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
    fn table_pads_every_column_and_separates_with_two_spaces() {
        let out = table(
            &["id", "status"],
            &[
                vec!["abc".into(), "OK".into()],
                vec!["x".into(), "COMPLETED".into()],
            ],
        );
        assert_eq!(out, "id   status   \nabc  OK       \nx    COMPLETED\n");
    }

    #[test]
    fn empty_table_says_no_items() {
        assert_eq!(table(&["a"], &[]), "(no items)\n");
        assert_eq!(runs_table(&[]), "(no items)\n");
    }

    #[test]
    fn runs_table_shows_raw_floats_and_dashes_for_missing() {
        let runs = [
            json!({"run_id": "r1", "status": "PENDING", "flow_name": "main",
                           "tag": "default", "updated_at": 1795313186.0284507}),
        ];
        let out = runs_table(&runs);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "run_id  status   flow_name  tag      updated_at        "
        );
        assert_eq!(
            lines[1],
            "r1      PENDING  main       default  1795313186.0284507"
        );
        let missing = runs_table(&[json!({"run_id": "r2", "tag": null})]);
        assert!(
            missing
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("r2      -       "))
        );
    }

    #[test]
    fn status_line_has_four_tab_separated_fields() {
        let run = json!({"status": "COMPLETED", "updated_at": 1795313186.0284507});
        assert_eq!(
            status_line("snapshot", &run, "id1"),
            "1795313186.0284507\tsnapshot\tCOMPLETED\tid1"
        );
        assert_eq!(
            status_line("snapshot", &json!({}), "id1"),
            "-\tsnapshot\t-\tid1"
        );
    }

    #[test]
    fn snapshot_event_drops_records_unless_asked() {
        let run = json!({"status": "RUNNING", "task_records": {}, "task_records_truncated": false});
        let ev = snapshot_event(&run, "r", 1.5, false);
        assert_eq!(
            ev,
            json!({"event": "snapshot", "data": {"run_id": "r", "snapshot": {"status": "RUNNING"}, "ts": 1.5}})
        );
        let ev = snapshot_event(&run, "r", 1.5, true);
        assert_eq!(ev["data"]["snapshot"], run);
    }

    #[test]
    fn progress_line_marks_each_task() {
        let run =
            json!({"tasks": {"a": "SUCCEEDED", "b": "RUNNING", "c": "PENDING", "d": "FAILED"}});
        assert_eq!(progress_line(&run), "a ✓  b …  c ·  d ✗");
        assert_eq!(progress_line(&json!({})), "");
    }
}
