//! Which wheels an interpreter can install: its supported tags, asked of the interpreter itself
//! (`packaging.tags.sys_tags()`, or pip's vendored copy), the list pip uses to accept a wheel.

use std::time::Duration;

/// Prints the tags as a JSON list. `packaging` is not always installed, but pip (needed for the
/// install anyway) vendors it; without either, a pure-Python-only fallback.
const QUERY: &str = r#"
import json, sys
try:
    from packaging.tags import sys_tags
except Exception:
    try:
        from pip._vendor.packaging.tags import sys_tags
    except Exception:
        sys_tags = None
if sys_tags is not None:
    tags = [str(t) for t in sys_tags()]
else:
    major, minor = sys.version_info[:2]
    tags = ["py%d%d-none-any" % (major, m) for m in range(minor, -1, -1)]
    tags += ["py%d-none-any" % major]
print(json.dumps(tags))
"#;

/// The interpreter must answer within this time.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `python-abi-platform` tags `interpreter` installs, most preferred first, lower-cased.
pub async fn supported_tags(interpreter: &str) -> Result<Vec<String>, String> {
    let run = tokio::process::Command::new(interpreter)
        .args(["-I", "-c", QUERY])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(QUERY_TIMEOUT, run)
        .await
        .map_err(|_| format!("{interpreter} did not list its wheel tags in time"))?
        .map_err(|e| format!("cannot run {interpreter} to list its wheel tags: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{interpreter} could not list its wheel tags ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let tags: Vec<String> = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("unexpected wheel tag list from {interpreter}: {e}"))?;
    Ok(tags.into_iter().map(|t| t.to_ascii_lowercase()).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_machine_python_supports_pure_python_wheels() {
        let tags = supported_tags("python3").await.unwrap();
        assert!(tags.iter().any(|t| t == "py3-none-any"), "{tags:?}");
        assert!(supported_tags("/nonexistent/python").await.is_err());
    }
}
