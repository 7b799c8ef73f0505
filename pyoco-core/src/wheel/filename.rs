//! Wheel file names (PEP 427), parsed by the rules of `packaging.utils.parse_wheel_filename`
//! so that the gateway accepts and refuses exactly the names the original does, and the
//! worker selects the same wheels.

use std::fmt;
use std::str::FromStr;

use pep440_rs::Version;

/// A parsed wheel file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    /// The whole file name, e.g. `demo_pkg-0.1.0-py3-none-any.whl`.
    pub file: String,
    /// The PEP 503 canonical project name (`Demo.Pkg` and `demo_pkg` are both `demo-pkg`):
    /// the version rules compare wheels of one project under this name.
    pub canonical: String,
    /// The PEP 440 version; `Ord` is pip's ordering.
    pub version: Version,
    /// The optional build tag (`-1-` → `(1, "")`).
    pub build: Option<(u64, String)>,
    /// Every `python-abi-platform` tag the name declares, lower-cased, compressed sets
    /// (`py2.py3`) expanded, in file order.
    pub tags: Vec<String>,
}

/// Why a name is not a wheel file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WheelNameError {
    #[error("{0:?} does not end in .whl")]
    NotAWheel(String),
    #[error("{0:?} must have 4 or 5 '-'-separated parts after the name")]
    Parts(String),
    #[error("invalid project name in {0:?}")]
    Project(String),
    #[error("invalid version in {file:?}: {message}")]
    Version { file: String, message: String },
    #[error("invalid build tag in {0:?}: it must start with a digit")]
    Build(String),
    #[error("invalid compatibility tags in {0:?}")]
    Tags(String),
}

/// The longest wheel file name accepted.
pub const MAX_WHEEL_NAME_LEN: usize = 255;

/// The registry's name rule (`^[A-Za-z0-9._+-]+\.whl$`, at most 255 characters), checked
/// before parsing: it keeps path separators and odd characters out of object names and URLs.
pub fn is_valid_wheel_name(name: &str) -> bool {
    // 255: a file name on every common file system; the name also becomes (base64) part of an
    // object-store subject, which must stay far below the server's control-line limit.
    name.len() <= MAX_WHEEL_NAME_LEN
        && name.strip_suffix(".whl").is_some_and(|stem| {
            !stem.is_empty()
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
        })
}

/// PEP 503: lower case, every run of `-`, `_` and `.` becomes one `-`.
pub fn canonicalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// Parses `file` like `packaging.utils.parse_wheel_filename`.
pub fn parse_wheel_filename(file: &str) -> Result<WheelName, WheelNameError> {
    let stem = file
        .strip_suffix(".whl")
        .ok_or_else(|| WheelNameError::NotAWheel(file.to_string()))?;
    let dashes = stem.matches('-').count();
    if dashes != 4 && dashes != 5 {
        return Err(WheelNameError::Parts(file.to_string()));
    }
    // name, version, [build,] and the tag triple (which keeps its two dashes).
    let parts: Vec<&str> = stem.splitn(dashes - 1, '-').collect();
    let project = parts[0];
    if project.is_empty()
        || project.contains("__")
        || !project
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
    {
        return Err(WheelNameError::Project(file.to_string()));
    }
    let version = Version::from_str(parts[1]).map_err(|e| WheelNameError::Version {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let build = if dashes == 5 {
        let raw = parts[2];
        let digits: String = raw.chars().take_while(char::is_ascii_digit).collect();
        let number = digits
            .parse::<u64>()
            .map_err(|_| WheelNameError::Build(file.to_string()))?;
        Some((number, raw[digits.len()..].to_string()))
    } else {
        None
    };
    let tags = expand_tags(parts[parts.len() - 1])
        .ok_or_else(|| WheelNameError::Tags(file.to_string()))?;
    Ok(WheelName {
        file: file.to_string(),
        canonical: canonicalize_name(project),
        version,
        build,
        tags,
    })
}

/// `py2.py3-none-any` → `["py2-none-any", "py3-none-any"]`.
pub fn expand_tags(triple: &str) -> Option<Vec<String>> {
    let mut pieces = triple.split('-');
    let (Some(py), Some(abi), Some(platform), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return None;
    };
    let mut tags = Vec::new();
    for p in py.split('.') {
        for a in abi.split('.') {
            for pl in platform.split('.') {
                if p.is_empty() || a.is_empty() || pl.is_empty() {
                    return None;
                }
                let tag = format!("{p}-{a}-{pl}").to_ascii_lowercase();
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
    }
    Some(tags)
}

impl fmt::Display for WheelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::from_str(s).unwrap()
    }

    #[test]
    fn parses_names_like_packaging() {
        let w = parse_wheel_filename("Demo.Pkg-0.1.0-py2.py3-none-any.whl").unwrap();
        assert_eq!(w.canonical, "demo-pkg");
        assert_eq!(w.version, v("0.1.0"));
        assert_eq!(w.build, None);
        assert_eq!(w.tags, ["py2-none-any", "py3-none-any"]);
        let w = parse_wheel_filename("demo_pkg-1.0-2b-cp312-cp312-win_amd64.whl").unwrap();
        assert_eq!(w.canonical, "demo-pkg");
        assert_eq!(w.build, Some((2, "b".into())));
        assert_eq!(w.tags, ["cp312-cp312-win_amd64"]);
        let w = parse_wheel_filename("x-1.0+local.7-cp311-abi3-manylinux_2_17_X86_64.whl").unwrap();
        assert_eq!(w.tags, ["cp311-abi3-manylinux_2_17_x86_64"]);
    }

    #[test]
    fn refuses_what_packaging_refuses() {
        for bad in [
            "demo.zip",
            "demo-1.0-py3-none.whl",
            "demo-1.0-1-2-py3-none-any.whl",
            "de__mo-1.0-py3-none-any.whl",
            "demo-one-py3-none-any.whl",
            "demo-1.0-b1-py3-none-any.whl",
            "-1.0-py3-none-any.whl",
        ] {
            assert!(parse_wheel_filename(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_registry_name_rule() {
        assert!(is_valid_wheel_name("demo_pkg-0.1.0+x-py3-none-any.whl"));
        for bad in [
            ".whl",
            "a/b.whl",
            "a b.whl",
            "demo.WHL",
            "démo.whl",
            "x.whl.zip",
        ] {
            assert!(!is_valid_wheel_name(bad), "{bad} accepted");
        }
    }

    #[test]
    fn canonical_names_follow_pep_503() {
        assert_eq!(canonicalize_name("Demo.Pkg"), "demo-pkg");
        assert_eq!(canonicalize_name("demo__-.pkg"), "demo-pkg");
        assert_eq!(canonicalize_name("Django"), "django");
    }

    #[test]
    fn versions_order_like_pip() {
        assert_eq!(v("1.0"), v("1.0.0"));
        assert!(v("1.0.dev1") < v("1.0a1"));
        assert!(v("1.0a1") < v("1.0rc1"));
        assert!(v("1.0rc1") < v("1.0"));
        assert!(v("1.0") < v("1.0.post1"));
        assert!(v("1.9") < v("1.10"));
        assert!(v("2.0") < v("1!0.1"));
    }
}
