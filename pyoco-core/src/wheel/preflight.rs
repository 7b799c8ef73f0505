//! The original client's optional checks before an upload (`pyoco-client wheel-upload
//! --preflight strict|warn|off`): a wheel meant for pyoco workers should declare entry points
//! and carry a usage doc. The messages are the original's, so scripts that look for them keep
//! working.

use std::str::FromStr;

use super::inspect::read_dist_info;
use super::metadata::Metadata;

/// How preflight problems are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreflightMode {
    /// Problems are errors: the upload is refused.
    #[default]
    Strict,
    /// Problems are printed as warnings and the upload goes ahead.
    Warn,
    /// No checks.
    Off,
}

impl FromStr for PreflightMode {
    type Err = String;

    fn from_str(s: &str) -> Result<PreflightMode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" => Ok(PreflightMode::Strict),
            "warn" => Ok(PreflightMode::Warn),
            "off" => Ok(PreflightMode::Off),
            other => Err(format!(
                "invalid preflight mode {other:?}: use strict, warn or off"
            )),
        }
    }
}

impl PreflightMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PreflightMode::Strict => "strict",
            PreflightMode::Warn => "warn",
            PreflightMode::Off => "off",
        }
    }
}

/// The findings of [`preflight`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreflightReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl PreflightReport {
    /// The report as `mode` treats it: `warn` turns errors into warnings, `off` drops all.
    pub fn under(mut self, mode: PreflightMode) -> PreflightReport {
        match mode {
            PreflightMode::Strict => self,
            PreflightMode::Warn => {
                self.warnings.append(&mut self.errors);
                self
            }
            PreflightMode::Off => PreflightReport::default(),
        }
    }

    /// `wheel preflight failed: <errors joined by '; '>`, the original's wording.
    pub fn failure(&self) -> Option<String> {
        (!self.errors.is_empty())
            .then(|| format!("wheel preflight failed: {}", self.errors.join("; ")))
    }
}

/// A description at least this long counts as a usage doc.
const MIN_DESCRIPTION_CHARS: usize = 80;

/// Checks the wheel in `bytes`. `allow_no_entry_points` / `allow_missing_usage_doc` turn those
/// two errors into warnings (`--allow-no-entry-points`, `--allow-missing-usage-doc`).
pub fn preflight(
    bytes: &[u8],
    allow_no_entry_points: bool,
    allow_missing_usage_doc: bool,
) -> PreflightReport {
    preflight_from(
        std::io::Cursor::new(bytes),
        allow_no_entry_points,
        allow_missing_usage_doc,
    )
}

/// [`preflight`] of an archive read from `archive` (an upload spooled to a file).
pub fn preflight_from<R: std::io::Read + std::io::Seek>(
    archive: R,
    allow_no_entry_points: bool,
    allow_missing_usage_doc: bool,
) -> PreflightReport {
    let mut report = PreflightReport::default();
    let dist = match read_dist_info(archive) {
        Ok(d) => d,
        Err(super::InspectError::NotAZip(_)) => {
            report
                .errors
                .push("wheel file is not a valid zip archive".into());
            return report;
        }
        Err(_) => {
            report.errors.push("missing dist-info/METADATA".into());
            return report;
        }
    };
    let Some(text) = dist.metadata else {
        report.errors.push("missing dist-info/METADATA".into());
        return report;
    };
    let meta = Metadata::parse(&text);
    let present = |k: &str| meta.get(k).is_some_and(|v| !v.trim().is_empty());
    if !present("Name") {
        report.errors.push("METADATA Name is missing".into());
    }
    if !present("Version") {
        report.errors.push("METADATA Version is missing".into());
    }
    if !present("Summary") {
        report.warnings.push("METADATA Summary is empty".into());
    }
    if !has_usage_doc(&meta) {
        if allow_missing_usage_doc {
            report
                .warnings
                .push("usage documentation seems missing".into());
        } else {
            report.errors.push(
                "usage documentation is missing (need METADATA description>=80 chars or Project-URL: Documentation,...)"
                    .into(),
            );
        }
    }
    let entries = match dist.entry_points.as_deref().map(count_entry_points) {
        Some(Err(())) => {
            report
                .errors
                .push("dist-info/entry_points.txt format is invalid".into());
            return report;
        }
        Some(Ok(n)) => n,
        None => 0,
    };
    if entries == 0 {
        if allow_no_entry_points {
            report.warnings.push("entry_points are missing".into());
        } else {
            report
                .errors
                .push("entry_points are missing (dist-info/entry_points.txt)".into());
        }
    }
    report
}

/// A long enough description, or a `Project-URL` labelled as documentation.
fn has_usage_doc(meta: &Metadata) -> bool {
    if meta.description().chars().count() >= MIN_DESCRIPTION_CHARS {
        return true;
    }
    meta.get_all("Project-URL").any(|v| {
        let label = v
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(label.as_str(), "documentation" | "docs" | "doc" | "usage")
    })
}

/// Entries in an INI-style `entry_points.txt`; `Err` when it is not valid INI (a key outside
/// a section, a line that is neither a section, an entry nor a continuation, a duplicate).
fn count_entry_points(text: &str) -> Result<usize, ()> {
    let mut sections: Vec<String> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = name.trim().to_string();
            if sections.contains(&name) {
                return Err(());
            }
            sections.push(name);
            keys.clear();
            continue;
        }
        if line.starts_with([' ', '\t']) && !keys.is_empty() {
            continue; // a continuation of the previous value
        }
        if sections.is_empty() {
            return Err(());
        }
        let Some((key, _)) = trimmed.split_once(['=', ':']) else {
            return Err(());
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || keys.contains(&key) {
            return Err(());
        }
        keys.push(key);
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wheel::inspect::tests::zip_of;

    const META: &str = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nSummary: Demo tasks\n";

    #[test]
    fn a_complete_wheel_passes() {
        let meta = format!("{META}Project-URL: Documentation, https://docs.example\n");
        let w = zip_of(&[
            ("demo-1.0.dist-info/METADATA", &meta),
            (
                "demo-1.0.dist-info/entry_points.txt",
                "[pyoco.tasks]\nhello = demo.tasks:hello\n",
            ),
        ]);
        assert_eq!(preflight(&w, false, false), PreflightReport::default());
    }

    #[test]
    fn missing_docs_and_entry_points_are_errors_unless_allowed() {
        let w = zip_of(&[("demo-1.0.dist-info/METADATA", META)]);
        let r = preflight(&w, false, false);
        assert_eq!(r.errors.len(), 2, "{r:?}");
        assert!(
            r.failure()
                .unwrap()
                .starts_with("wheel preflight failed: usage")
        );
        let r = preflight(&w, true, true);
        assert!(r.errors.is_empty());
        assert_eq!(
            r.warnings,
            [
                "usage documentation seems missing",
                "entry_points are missing"
            ]
        );
        let warned = preflight(&w, false, false).under(PreflightMode::Warn);
        assert!(warned.errors.is_empty() && warned.warnings.len() == 2);
    }

    #[test]
    fn broken_archives_and_entry_points() {
        assert_eq!(
            preflight(b"nope", false, false).errors,
            ["wheel file is not a valid zip archive"]
        );
        let w = zip_of(&[("demo/__init__.py", "")]);
        assert_eq!(
            preflight(&w, false, false).errors,
            ["missing dist-info/METADATA"]
        );
        let long = format!("{META}\n{}\n", "x".repeat(80));
        let w = zip_of(&[
            ("demo-1.0.dist-info/METADATA", &long),
            ("demo-1.0.dist-info/entry_points.txt", "hello = x:y\n"),
        ]);
        assert_eq!(
            preflight(&w, false, false).errors,
            ["dist-info/entry_points.txt format is invalid"]
        );
    }
}
