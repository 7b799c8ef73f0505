//! The local side of the wheel sync: the manifest of what is installed
//! (`<PYOCO_WHEEL_SYNC_DIR>/.installed.json`, the original's format) and `pip`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// `{<wheel file>: {nuid, package_name, package_version, size_bytes, sha256_hex, tags,
/// installed_at}}`; a missing or corrupt file is an empty manifest.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Manifest {
    pub entries: BTreeMap<String, Map<String, Value>>,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(".installed.json")
    }

    pub fn load(dir: &Path) -> Manifest {
        let entries = std::fs::read(Manifest::path(dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
            .map(|map| {
                map.into_iter()
                    .filter_map(|(k, v)| match v {
                        Value::Object(entry) => Some((k, entry)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Manifest { entries }
    }

    /// Writes the manifest atomically (a temp file renamed over the old one).
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let path = Manifest::path(dir);
        let tmp = dir.join(".installed.json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.entries).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn text(&self, wheel: &str, key: &str) -> Option<&str> {
        self.entries.get(wheel)?.get(key)?.as_str()
    }

    /// `installed_wheels` of the `wheel_sync` object: by file name, at most `max`.
    pub fn installed_wheels(&self, max: usize) -> Vec<Value> {
        self.entries
            .iter()
            .take(max)
            .map(|(wheel, e)| {
                serde_json::json!({
                    "wheel_name": wheel,
                    "package_name": e.get("package_name").cloned().unwrap_or(Value::Null),
                    "package_version": e.get("package_version").cloned().unwrap_or(Value::Null),
                    "installed_at": e.get("installed_at").cloned().unwrap_or(Value::Null),
                    "nuid": e.get("nuid").cloned().unwrap_or(Value::Null),
                })
            })
            .collect()
    }
}

/// Why pip did not succeed.
#[derive(Debug)]
pub(super) enum PipError {
    TimedOut,
    Failed { code: i32, detail: String },
    Spawn(String),
}

/// Runs `<interpreter> -m pip <args>` with a time limit (the process is killed when it runs
/// over). Output is captured: the tail of stderr (else stdout) explains a failure.
pub(super) async fn pip(
    interpreter: &str,
    args: Vec<OsString>,
    timeout: Duration,
) -> Result<(), PipError> {
    let run = tokio::process::Command::new(interpreter)
        .args(["-m", "pip"])
        .args(args)
        .env("PIP_NO_INPUT", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout.max(Duration::from_secs(1)), run).await {
        Err(_) => return Err(PipError::TimedOut),
        Ok(Err(e)) => {
            return Err(PipError::Spawn(format!(
                "cannot run {interpreter} -m pip: {e}"
            )));
        }
        Ok(Ok(o)) => o,
    };
    if output.status.success() {
        return Ok(());
    }
    let text = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        output.stderr
    } else {
        output.stdout
    };
    let text = String::from_utf8_lossy(&text);
    let tail: String = {
        let chars: Vec<char> = text.chars().collect();
        chars[chars.len().saturating_sub(2000)..].iter().collect()
    };
    Err(PipError::Failed {
        code: output.status.code().unwrap_or(-1),
        detail: tail,
    })
}

/// `pip install --no-deps --force-reinstall <file>`; the error reads like the original's.
pub(super) async fn install(
    interpreter: &str,
    file: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<OsString> = vec![
        "install".into(),
        "--disable-pip-version-check".into(),
        "--no-deps".into(),
        "--force-reinstall".into(),
        // A local file and no dependencies: never reach for an index.
        "--no-index".into(),
        file.as_os_str().to_owned(),
    ];
    pip(interpreter, args, timeout).await.map_err(|e| match e {
        PipError::TimedOut => format!("wheel install timed out: {name}"),
        PipError::Failed { code, detail } => {
            format!("wheel install failed (code={code}): {name}: {detail}")
        }
        PipError::Spawn(msg) => format!("wheel install failed: {name}: {msg}"),
    })
}

/// `pip uninstall -y <package>` (a package that is not installed is not an error).
pub(super) async fn uninstall(
    interpreter: &str,
    package: &str,
    timeout: Duration,
) -> Result<(), String> {
    let args: Vec<OsString> = vec![
        "uninstall".into(),
        "-y".into(),
        "--disable-pip-version-check".into(),
        package.into(),
    ];
    pip(interpreter, args, timeout).await.map_err(|e| match e {
        PipError::TimedOut => format!("wheel uninstall timed out: {package}"),
        PipError::Failed { code, detail } => {
            format!("wheel uninstall failed (code={code}): {package}: {detail}")
        }
        PipError::Spawn(msg) => format!("wheel uninstall failed: {package}: {msg}"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()), Manifest::default());
        std::fs::write(Manifest::path(dir.path()), "not json").unwrap();
        assert_eq!(Manifest::load(dir.path()), Manifest::default());
        let mut m = Manifest::default();
        let entry = serde_json::json!({"nuid": "N", "package_name": "demo", "package_version": "1.0", "installed_at": 1.5});
        m.entries.insert(
            "demo-1.0-py3-none-any.whl".into(),
            entry.as_object().unwrap().clone(),
        );
        m.save(dir.path()).unwrap();
        let back = Manifest::load(dir.path());
        assert_eq!(back, m);
        assert_eq!(back.text("demo-1.0-py3-none-any.whl", "nuid"), Some("N"));
        assert_eq!(back.installed_wheels(50)[0]["package_version"], "1.0");
    }

    #[tokio::test]
    async fn pip_errors_read_like_the_original() {
        let err = install(
            "/nonexistent/python",
            Path::new("/tmp/x-1.0-py3-none-any.whl"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            err.starts_with("wheel install failed: x-1.0-py3-none-any.whl: cannot run"),
            "{err}"
        );
        let err = install(
            "python3",
            Path::new("/nonexistent/x-1.0-py3-none-any.whl"),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
        assert!(
            err.starts_with("wheel install failed (code=1): x-1.0-py3-none-any.whl: "),
            "{err}"
        );
    }
}
