//! Helpers of the wheel tests: real wheels written with the `zip` crate, throw-away
//! virtualenvs (the machine's Python is never modified), and objects written the way the
//! original gateway (nats-py) writes them.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use pyoco::HttpClient;
use pyoco::client::http::{ListWorkers, WorkerScope};
use pyoco::testkit::wait_for;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A wheel of project `mypkg` (file name `mypkg-<version>-py3-none-any.whl`) whose
/// `mypkg.tasks:hello(name)` returns `"<greeting> <name>"`.
pub fn mypkg_wheel(version: &str, greeting: &str) -> (String, Vec<u8>) {
    let tasks = format!("def hello(name=\"world\"):\n    return \"{greeting} \" + str(name)\n");
    wheel(
        "mypkg",
        version,
        &[("mypkg/__init__.py", ""), ("mypkg/tasks.py", &tasks)],
    )
}

/// A pure-Python wheel of `project` with `files`, a correct RECORD and the given METADATA
/// name/version.
pub fn wheel(project: &str, version: &str, files: &[(&str, &str)]) -> (String, Vec<u8>) {
    wheel_with_metadata(project, version, project, version, files)
}

pub fn wheel_with_metadata(
    project: &str,
    version: &str,
    meta_name: &str,
    meta_version: &str,
    files: &[(&str, &str)],
) -> (String, Vec<u8>) {
    let dist = format!("{project}-{version}.dist-info");
    let metadata = format!(
        "Metadata-Version: 2.1\nName: {meta_name}\nVersion: {meta_version}\nSummary: test tasks\n"
    );
    let wheel_file =
        "Wheel-Version: 1.0\nGenerator: pyoco-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let mut all: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    all.push((format!("{dist}/METADATA"), metadata));
    all.push((format!("{dist}/WHEEL"), wheel_file.to_string()));
    let mut record = String::new();
    for (path, text) in &all {
        let hash = URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()));
        record.push_str(&format!("{path},sha256={hash},{}\n", text.len()));
    }
    record.push_str(&format!("{dist}/RECORD,,\n"));
    all.push((format!("{dist}/RECORD"), record));
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, text) in &all {
        w.start_file(path.as_str(), options).unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    let bytes = w.finish().unwrap().into_inner();
    (format!("{project}-{version}-py3-none-any.whl"), bytes)
}

/// A fresh virtualenv (with pip) in `dir`; returns its interpreter.
pub fn venv(dir: &Path) -> PathBuf {
    let status = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .expect("python3 -m venv");
    assert!(status.success(), "python3 -m venv failed");
    dir.join("bin").join("python")
}

/// Whether `python` can import `module`.
pub fn can_import(python: &Path, module: &str) -> bool {
    std::process::Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Stores `data` as `name` the way nats-py (the original gateway) does: chunks, then a meta
/// whose `headers` are flat strings and whose `mtime` has a `+00:00` offset.
pub async fn put_like_python(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    name: &str,
    data: &[u8],
    tags: &str,
) -> String {
    let nuid = "PyN8dLmRr3kqGDqTB7ZzXa".to_string();
    for chunk in data.chunks(128 * 1024) {
        js.publish(format!("$O.{bucket}.C.{nuid}"), chunk.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut headers = json!({
        "content-type": "application/octet-stream",
        "sha256": hex::encode(Sha256::digest(data)),
    });
    if !tags.is_empty() {
        headers["x-pyoco-wheel-tags"] = json!(tags);
    }
    let meta = json!({
        "name": name, "description": null, "headers": headers,
        "options": {"link": null, "max_chunk_size": 131072},
        "bucket": bucket, "nuid": nuid, "size": data.len(),
        "mtime": "2026-11-22T02:05:17.039151+00:00",
        "chunks": data.chunks(128 * 1024).count(),
        "digest": format!("SHA-256={}", URL_SAFE.encode(Sha256::digest(data))),
        "deleted": false,
    });
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Rollup", "sub");
    js.publish_with_headers(
        format!("$O.{bucket}.M.{}", URL_SAFE.encode(name)),
        h,
        serde_json::to_vec(&meta).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    nuid
}

/// The raw meta document of `name` as stored.
pub async fn raw_meta(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    name: &str,
) -> serde_json::Value {
    let stream = js.get_stream(format!("OBJ_{bucket}")).await.unwrap();
    let msg = stream
        .get_last_raw_message_by_subject(&format!("$O.{bucket}.M.{}", URL_SAFE.encode(name)))
        .await
        .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

/// Messages in the object store's stream (chunks and metas).
pub async fn stored_messages(js: &async_nats::jetstream::Context, bucket: &str) -> u64 {
    let mut stream = js.get_stream(format!("OBJ_{bucket}")).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// The `wheel_sync` object of worker `id` once `ready` accepts it.
pub async fn wheel_sync_of(
    client: &HttpClient,
    id: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let opts = ListWorkers {
        scope: Some(WorkerScope::All),
        ..Default::default()
    };
    wait_for(what, Duration::from_secs(90), || async {
        let workers = client.get_workers(&opts).await.ok()?;
        let sync = workers.iter().find(|w| w["worker_id"] == id)?["wheel_sync"].clone();
        ready(&sync).then_some(sync)
    })
    .await
}
