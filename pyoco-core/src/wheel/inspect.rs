//! Looking inside an uploaded wheel (a zip archive): the registry refuses a file that is not
//! a wheel of the project and version its name claims, so a corrupt or mislabelled upload
//! never reaches a worker's `pip install`.

use std::io::{Cursor, Read, Seek};

use super::filename::{WheelName, canonicalize_name};
use super::metadata::Metadata;

/// Text files of the archive larger than this are refused (a zip bomb cannot exhaust memory).
const MAX_TEXT_BYTES: u64 = 16 << 20;

/// What the archive says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelContents {
    /// `METADATA` `Name`, as written.
    pub name: String,
    /// `METADATA` `Version`, as written.
    pub version: String,
    /// `METADATA` `Summary`, when present.
    pub summary: Option<String>,
    /// The `Tag` lines of `WHEEL` (the tags the build tool declared), lower-cased.
    pub wheel_tags: Vec<String>,
}

/// Why an upload is not the wheel its name claims; the message is the `reason` of the 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    #[error("not a zip archive: {0}")]
    NotAZip(String),
    #[error("{0}")]
    DistInfo(String),
    #[error("{0}")]
    Metadata(String),
    #[error("{0}")]
    Mismatch(String),
}

/// The `.dist-info` files a wheel must or may have.
#[derive(Debug, Clone)]
pub(crate) struct DistInfo {
    pub metadata: Option<String>,
    pub wheel: Option<String>,
    pub entry_points: Option<String>,
}

/// Opens the archive and reads the `.dist-info` directory at its top level (there must be
/// exactly one, as pip requires).
pub(crate) fn read_dist_info<R: Read + Seek>(archive: R) -> Result<DistInfo, InspectError> {
    let mut archive =
        zip::ZipArchive::new(archive).map_err(|e| InspectError::NotAZip(e.to_string()))?;
    let mut dirs: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter_map(|n| n.split_once('/').map(|(dir, _)| dir.to_string()))
        .filter(|dir| dir.ends_with(".dist-info"))
        .collect();
    dirs.sort();
    dirs.dedup();
    let dir = match dirs.as_slice() {
        [one] => one.clone(),
        [] => {
            return Ok(DistInfo {
                metadata: None,
                wheel: None,
                entry_points: None,
            });
        }
        many => {
            return Err(InspectError::DistInfo(format!(
                "more than one .dist-info directory: {}",
                many.join(", ")
            )));
        }
    };
    let mut text = |file: &str| -> Result<Option<String>, InspectError> {
        let path = format!("{dir}/{file}");
        let entry = match archive.by_name(&path) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(InspectError::NotAZip(format!("{path}: {e}"))),
        };
        if entry.size() > MAX_TEXT_BYTES {
            return Err(InspectError::DistInfo(format!("{path} is too large")));
        }
        let mut data = Vec::new();
        entry
            .take(MAX_TEXT_BYTES)
            .read_to_end(&mut data)
            .map_err(|e| InspectError::NotAZip(format!("cannot read {path}: {e}")))?;
        String::from_utf8(data)
            .map(Some)
            .map_err(|_| InspectError::DistInfo(format!("{path} is not UTF-8 text")))
    };
    Ok(DistInfo {
        metadata: text("METADATA")?,
        wheel: text("WHEEL")?,
        entry_points: text("entry_points.txt")?,
    })
}

/// Checks that `bytes` is a wheel of `name`'s project and version: a zip archive with one
/// `.dist-info` holding `METADATA` (whose `Name` and `Version` match the file name) and
/// `WHEEL`. Returns what it read.
pub fn inspect_wheel(bytes: &[u8], name: &WheelName) -> Result<WheelContents, InspectError> {
    inspect_wheel_from(Cursor::new(bytes), name)
}

/// [`inspect_wheel`] of an archive read from `archive` (an upload spooled to a file).
pub fn inspect_wheel_from<R: Read + Seek>(
    archive: R,
    name: &WheelName,
) -> Result<WheelContents, InspectError> {
    let dist = read_dist_info(archive)?;
    let metadata = dist.metadata.ok_or_else(|| {
        InspectError::DistInfo("no <name>-<version>.dist-info/METADATA in the archive".into())
    })?;
    let meta = Metadata::parse(&metadata);
    let meta_name = meta
        .get("Name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| InspectError::Metadata("METADATA has no Name".into()))?;
    let meta_version = meta
        .get("Version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| InspectError::Metadata("METADATA has no Version".into()))?;
    if canonicalize_name(meta_name) != name.canonical {
        return Err(InspectError::Mismatch(format!(
            "METADATA Name {meta_name:?} does not match the file name's project {:?}",
            name.canonical
        )));
    }
    let same_version = meta_version
        .parse::<pep440_rs::Version>()
        .is_ok_and(|v| v == name.version);
    if !same_version {
        return Err(InspectError::Mismatch(format!(
            "METADATA Version {meta_version:?} does not match the file name's version \"{}\"",
            name.version
        )));
    }
    let wheel = dist.wheel.ok_or_else(|| {
        InspectError::DistInfo("no <name>-<version>.dist-info/WHEEL in the archive".into())
    })?;
    let wheel_tags = Metadata::parse(&wheel)
        .get_all("Tag")
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(WheelContents {
        name: meta_name.to_string(),
        version: meta_version.to_string(),
        summary: meta.get("Summary").map(str::to_string),
        wheel_tags,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;
    use crate::wheel::parse_wheel_filename;

    /// A zip holding `files` (path, text): the wheels of this module's and preflight's tests.
    pub(crate) fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (path, text) in files {
            w.start_file(*path, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(text.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn wheel(meta_name: &str, meta_version: &str) -> Vec<u8> {
        zip_of(&[
            ("demo/__init__.py", ""),
            (
                "demo-1.0.dist-info/METADATA",
                &format!("Metadata-Version: 2.1\nName: {meta_name}\nVersion: {meta_version}\n"),
            ),
            (
                "demo-1.0.dist-info/WHEEL",
                "Wheel-Version: 1.0\nTag: py3-none-any\n",
            ),
            ("demo-1.0.dist-info/RECORD", ""),
        ])
    }

    #[test]
    fn accepts_a_matching_wheel() {
        let name = parse_wheel_filename("demo-1.0-py3-none-any.whl").unwrap();
        let c = inspect_wheel(&wheel("Demo", "1.0.0"), &name).unwrap();
        assert_eq!((c.name.as_str(), c.version.as_str()), ("Demo", "1.0.0"));
        assert_eq!(c.wheel_tags, ["py3-none-any"]);
    }

    #[test]
    fn refuses_garbage_and_mismatches() {
        let name = parse_wheel_filename("demo-1.0-py3-none-any.whl").unwrap();
        assert!(matches!(
            inspect_wheel(b"not a zip", &name),
            Err(InspectError::NotAZip(_))
        ));
        let mut truncated = wheel("demo", "1.0");
        truncated.truncate(truncated.len() / 2);
        assert!(inspect_wheel(&truncated, &name).is_err());
        assert!(matches!(
            inspect_wheel(&wheel("other", "1.0"), &name),
            Err(InspectError::Mismatch(_))
        ));
        assert!(matches!(
            inspect_wheel(&wheel("demo", "1.1"), &name),
            Err(InspectError::Mismatch(_))
        ));
        let no_meta = zip_of(&[("demo/__init__.py", "")]);
        assert!(matches!(
            inspect_wheel(&no_meta, &name),
            Err(InspectError::DistInfo(_))
        ));
    }
}
