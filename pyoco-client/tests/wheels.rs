//! `pyoco-client` wheel commands end to end (the built binary against a real nats-server and
//! an in-process gateway): the local preflight, upload, list, history, delete, and the
//! messages for refused uploads.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::io::{Cursor, Write};

use common::{Output, run_cli_at};
use pyoco::testkit::Stack;
use serde_json::Value;

/// A wheel of `mypkg` at `version`; `complete` adds entry points and a documentation URL.
fn wheel(dir: &std::path::Path, version: &str, complete: bool) -> String {
    let dist = format!("mypkg-{version}.dist-info");
    let mut meta =
        format!("Metadata-Version: 2.1\nName: mypkg\nVersion: {version}\nSummary: demo tasks\n");
    let mut files = vec![
        ("mypkg/__init__.py".to_string(), String::new()),
        (
            format!("{dist}/WHEEL"),
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_string(),
        ),
        (format!("{dist}/RECORD"), String::new()),
    ];
    if complete {
        meta.push_str("Project-URL: Documentation, https://docs.example/mypkg\n");
        files.push((
            format!("{dist}/entry_points.txt"),
            "[pyoco.tasks]\nhello = mypkg:hello\n".into(),
        ));
    }
    files.push((format!("{dist}/METADATA"), meta));
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (path, text) in &files {
        w.start_file(path.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    let path = dir.join(format!("mypkg-{version}-py3-none-any.whl"));
    std::fs::write(&path, w.finish().unwrap().into_inner()).unwrap();
    path.to_string_lossy().into_owned()
}

fn json(out: &Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// A gateway (no worker) and a scratch directory for wheels.
struct Env {
    stack: Stack,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        Env {
            stack: Stack::builder().no_worker().start().await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        self.stack.gateway.url()
    }

    async fn stop(self) {
        self.stack.stop().await;
    }
}

/// Uploads the incomplete mypkg 1.0 with `--preflight warn --tags "gpu, cpu" --no-replace`
/// and returns the command's output.
async fn upload_bare_with_warnings(url: &str, bare: &str) -> Output {
    run_cli_at(
        url,
        &[
            "wheel-upload",
            "--wheel-file",
            bare,
            "--preflight",
            "warn",
            "--tags",
            "gpu, cpu",
            "--no-replace",
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_preflight_refuses_an_incomplete_wheel_locally_and_sends_nothing() {
    let env = Env::start().await;
    let (url, dir) = (env.url(), env.dir.path());
    let bare = wheel(dir, "1.0", false);
    // strict (the default): the incomplete wheel is refused locally, nothing is sent.
    let out = run_cli_at(&url, &["wheel-upload", "--wheel-file", &bare]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("- reason: wheel preflight failed: usage documentation is missing"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("entry_points are missing (dist-info/entry_points.txt)"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("- hint: fix wheel metadata/entry_points or use --preflight warn/off"),
        "{out:?}"
    );
    assert_eq!(
        json(&run_cli_at(&url, &["wheels"]).await),
        serde_json::json!([])
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_preflight_prints_the_problems_and_uploads() {
    let env = Env::start().await;
    let (url, dir) = (env.url(), env.dir.path());
    let bare = wheel(dir, "1.0", false);
    // warn: the problems are printed and the wheel is uploaded.
    let out = upload_bare_with_warnings(&url, &bare).await;
    let up = json(&out);
    assert_eq!(up["name"], "mypkg-1.0-py3-none-any.whl");
    assert_eq!(up["tags"], serde_json::json!(["gpu", "cpu"]));
    assert!(
        out.stderr
            .contains("[pyoco-client][preflight][warn] usage documentation is missing"),
        "{out:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_a_stored_version_again_exits_1_with_the_409_and_a_hint() {
    let env = Env::start().await;
    let (url, dir) = (env.url(), env.dir.path());
    let bare = wheel(dir, "1.0", false);
    json(&upload_bare_with_warnings(&url, &bare).await);
    // The same version again: a clear 409.
    let out = run_cli_at(
        &url,
        &["wheel-upload", "--wheel-file", &bare, "--preflight", "off"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("HTTP 409 POST /wheels"), "{out:?}");
    assert!(
        out.stderr
            .contains("wheel version already exists; bump version"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("- hint: this version of the project is already in the registry"),
        "{out:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_wheel_passes_strict_preflight_and_a_non_wheel_is_a_422() {
    let env = Env::start().await;
    let (url, dir) = (env.url(), env.dir.path());
    // A complete wheel passes the strict preflight.
    let complete = wheel(dir, "1.1", true);
    json(&run_cli_at(&url, &["wheel-upload", "--wheel-file", &complete]).await);
    // A file that is not a wheel: 422 with the reason.
    let junk = dir.join("mypkg-2.0-py3-none-any.whl");
    std::fs::write(&junk, b"junk").unwrap();
    let out = run_cli_at(
        &url,
        &[
            "wheel-upload",
            "--wheel-file",
            junk.to_str().unwrap(),
            "--preflight",
            "off",
        ],
    )
    .await;
    assert!(
        out.stderr.contains("HTTP 422 POST /wheels") && out.stderr.contains("invalid_wheel_file"),
        "{out:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wheels_history_and_delete_print_json_and_a_second_delete_exits_1() {
    let env = Env::start().await;
    let (url, dir) = (env.url(), env.dir.path());
    let bare = wheel(dir, "1.0", false);
    json(&upload_bare_with_warnings(&url, &bare).await);
    let complete = wheel(dir, "1.1", true);
    json(&run_cli_at(&url, &["wheel-upload", "--wheel-file", &complete]).await);
    let listed = json(&run_cli_at(&url, &["wheels"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    // The table for people: a header, one row per wheel, sizes in B/KiB, no colour piped.
    let table = run_cli_at(&url, &["wheels", "--output", "table"]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["name", "version", "size", "tags", "modified"]);
    assert_eq!(rows.len(), 3, "{table:?}");
    assert_eq!(rows[1][..2], ["mypkg-1.0-py3-none-any.whl", "1.0"]);
    assert!(matches!(rows[1][3], "B" | "KiB"), "{table:?}");
    assert!(!table.stdout.contains('\x1b'), "{table:?}");
    let history = json(
        &run_cli_at(
            &url,
            &[
                "wheel-history",
                "--action",
                "upload",
                "--wheel-name",
                "mypkg-1.0-py3-none-any.whl",
            ],
        )
        .await,
    );
    assert_eq!(history[0]["replace"], false, "{history}");
    let deleted = json(
        &run_cli_at(
            &url,
            &["wheel-delete", "--name", "mypkg-1.0-py3-none-any.whl"],
        )
        .await,
    );
    assert_eq!(
        deleted,
        serde_json::json!({"name": "mypkg-1.0-py3-none-any.whl", "deleted": true})
    );
    let out = run_cli_at(
        &url,
        &["wheel-delete", "--name", "mypkg-1.0-py3-none-any.whl"],
    )
    .await;
    assert!(
        out.code == Some(1)
            && out.stderr.contains("HTTP 404")
            && out.stderr.contains("pyoco-client wheels"),
        "{out:?}"
    );
    env.stop().await;
}
