//! The wheel registry (`/wheels*`) against a real nats-server: upload rules, listing,
//! download, delete, history, metadata written the original's way and read in both forms.
//! The worker-side sync (real pip, real virtualenvs) is in `wheel_sync.rs`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

#[path = "wheels/support.rs"]
mod support;

use pyoco::HttpClient;
use pyoco::client::http::HttpError;
use pyoco::client::http::{WheelHistoryQuery, WheelUpload};
use pyoco::testkit::Stack;
use serde_json::Value;
use support::{mypkg_wheel, put_like_python, raw_meta, stored_messages, wheel_with_metadata};

const BUCKET: &str = "pyoco_wheels";

struct Env {
    stack: Stack,
    client: HttpClient,
    js: async_nats::jetstream::Context,
}

async fn env_with(tweak: impl FnOnce(&mut pyoco::Config) + Send + 'static) -> Env {
    let stack = Stack::builder().config(tweak).no_worker().start().await;
    let nc = async_nats::connect(stack.server.url()).await.unwrap();
    Env {
        client: stack.client.clone(),
        stack,
        js: async_nats::jetstream::new(nc),
    }
}

fn tags(list: &[&str]) -> WheelUpload {
    WheelUpload {
        tags: list.iter().map(|t| t.to_string()).collect(),
        replace: true,
    }
}

/// The status, code and detail of a failed call.
fn failure(result: Result<Value, HttpError>) -> (u16, String, String) {
    let err = result.expect_err("the call should fail");
    (
        err.status().unwrap_or(0),
        err.code().unwrap_or("").to_string(),
        err.detail()
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    )
}

/// Uploads mypkg 1.0 with tags " gpu, cpu, gpu" (normalized to gpu, cpu); returns its file
/// name, bytes and the upload's answer.
async fn upload_v1(c: &HttpClient) -> (String, Vec<u8>, Value) {
    let (v1_name, v1) = mypkg_wheel("1.0", "v1");
    let up = c
        .upload_wheel(&v1_name, v1.clone(), &tags(&["gpu", " cpu", "gpu"]))
        .await
        .unwrap();
    (v1_name, v1, up)
}

/// Refused uploads of an equal and an older version (which must leave no trace), mypkg 2.0,
/// then mypkg 1.0 deleted: the history the tests below read.
async fn upload_refuse_upload_delete(c: &HttpClient) -> (String, Vec<u8>, Value) {
    let (v1_name, v1, up) = upload_v1(c).await;
    c.upload_wheel(&v1_name, v1.clone(), &tags(&[]))
        .await
        .unwrap_err();
    let (v2_name, v2) = mypkg_wheel("2.0", "v2");
    c.upload_wheel(&v2_name, v2, &tags(&[])).await.unwrap();
    let (old_name, old) = mypkg_wheel("1.5", "old");
    c.upload_wheel(&old_name, old, &tags(&[]))
        .await
        .unwrap_err();
    c.delete_wheel(&v1_name).await.unwrap();
    (v1_name, v1, up)
}

#[tokio::test]
async fn a_fresh_registry_lists_no_wheels_and_no_history() {
    let env = env_with(|_| {}).await;
    let c = &env.client;
    assert_eq!(c.list_wheels().await.unwrap(), Vec::<Value>::new());
    assert_eq!(
        c.list_wheel_history(&WheelHistoryQuery::default())
            .await
            .unwrap(),
        Vec::<Value>::new()
    );
}

#[tokio::test]
async fn an_upload_is_described_stored_the_originals_way_listed_and_downloadable() {
    let env = env_with(|_| {}).await;
    let c = &env.client;
    let (v1_name, v1, up) = upload_v1(c).await;
    assert_eq!(up["name"], v1_name.as_str());
    assert_eq!(up["tags"], serde_json::json!(["gpu", "cpu"]));
    assert_eq!(up["size_bytes"], v1.len());
    assert_eq!(
        up["sha256_hex"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v1))
    );
    assert!(up["digest"].as_str().unwrap().starts_with("SHA-256="));
    assert_eq!(up["package_name"], "mypkg");
    assert_eq!(
        up["compatibility_tags"],
        serde_json::json!(["py3-none-any"])
    );

    // Stored the original's way: flat string headers, which nats-py readers understand.
    let meta = raw_meta(&env.js, BUCKET, &v1_name).await;
    assert_eq!(meta["headers"]["x-pyoco-wheel-tags"], "gpu,cpu");
    assert_eq!(meta["headers"]["sha256"], up["sha256_hex"]);
    assert_eq!(meta["headers"]["content-type"], "application/octet-stream");
    assert!(meta["mtime"].as_str().unwrap().ends_with("+00:00"));

    let listed = c.list_wheels().await.unwrap();
    assert_eq!(listed.len(), 1);
    for key in [
        "name",
        "size_bytes",
        "digest",
        "sha256_b64",
        "mtime",
        "nuid",
        "tags",
    ] {
        assert_eq!(listed[0][key], up[key], "{key}");
    }
    assert_eq!(c.download_wheel(&v1_name).await.unwrap(), v1);
}

#[tokio::test]
async fn an_equal_or_older_version_of_a_project_is_refused_with_409() {
    let env = env_with(|_| {}).await;
    let c = &env.client;
    let (v1_name, v1, _) = upload_v1(c).await;
    // Version rules per canonical project: equal (also spelled differently) or older → 409.
    let (status, code, detail) = failure(c.upload_wheel(&v1_name, v1.clone(), &tags(&[])).await);
    assert_eq!(
        (status, code.as_str(), detail.as_str()),
        (
            409,
            "wheel_version_exists",
            "wheel version already exists; bump version"
        )
    );
    let (_, same) = wheel_with_metadata(
        "MyPkg",
        "1.0.0",
        "MyPkg",
        "1.0.0",
        &[("mypkg/__init__.py", "")],
    );
    let (status, code, _) = failure(
        c.upload_wheel("MyPkg-1.0.0-py3-none-any.whl", same, &tags(&[]))
            .await,
    );
    assert_eq!((status, code.as_str()), (409, "wheel_version_exists"));
    let (v2_name, v2) = mypkg_wheel("2.0", "v2");
    c.upload_wheel(&v2_name, v2, &tags(&[])).await.unwrap();
    let (old_name, old) = mypkg_wheel("1.5", "old");
    let (status, code, detail) = failure(c.upload_wheel(&old_name, old, &tags(&[])).await);
    assert_eq!(
        (status, code.as_str(), detail.as_str()),
        (
            409,
            "wheel_version_not_newer",
            "wheel version must be greater than existing latest version"
        )
    );

    let names: Vec<String> = c
        .list_wheels()
        .await
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [v1_name.clone(), v2_name.clone()]);
}

#[tokio::test]
async fn a_deleted_wheel_is_gone_everywhere() {
    let env = env_with(|_| {}).await;
    let c = &env.client;
    let (v1_name, _, _) = upload_v1(c).await;
    let (v2_name, v2) = mypkg_wheel("2.0", "v2");
    c.upload_wheel(&v2_name, v2, &tags(&[])).await.unwrap();
    // Delete, then the wheel is gone everywhere.
    let deleted = c.delete_wheel(&v1_name).await.unwrap();
    assert_eq!(
        deleted,
        serde_json::json!({"name": v1_name, "deleted": true})
    );
    assert_eq!(failure(c.delete_wheel(&v1_name).await).1, "wheel_not_found");
    let err = c.download_wheel(&v1_name).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("wheel_not_found"))
    );
    assert_eq!(failure(c.delete_wheel("not-a-wheel").await).0, 404);
    assert_eq!(c.list_wheels().await.unwrap().len(), 1);
}

#[tokio::test]
async fn history_is_newest_first_with_filters_actor_and_request_source() {
    let env = env_with(|_| {}).await;
    let c = &env.client;
    let (v1_name, v1, up) = upload_refuse_upload_delete(c).await;
    // History: newest first, filters, actor and request source.
    let all = c
        .list_wheel_history(&WheelHistoryQuery::default())
        .await
        .unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["delete", "upload", "upload"]);
    let del = &all[0];
    assert_eq!(del["wheel_name"], v1_name.as_str());
    assert_eq!(del["tags"], serde_json::json!(["gpu", "cpu"]));
    assert_eq!(del["replace"], Value::Null);
    assert_eq!(del["size_bytes"], v1.len());
    assert_eq!(
        del["actor"],
        serde_json::json!({"tenant_id": null, "api_key_id": null})
    );
    assert_eq!(del["source"]["remote_addr"], "127.0.0.1");
    assert_eq!(del["source"]["scheme"], "http");
    assert!(
        del["source"]["host"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(del["event_id"].as_str().unwrap().len(), 32);
    assert_eq!(all[2]["replace"], true);
    let q = WheelHistoryQuery {
        action: Some("UPLOAD".into()),
        wheel_name: Some(v1_name.clone()),
        limit: Some(5),
    };
    let uploads = c.list_wheel_history(&q).await.unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0]["sha256_hex"], up["sha256_hex"]);
    let q = WheelHistoryQuery {
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(c.list_wheel_history(&q).await.unwrap().len(), 1);
    let q = WheelHistoryQuery {
        action: Some("put".into()),
        ..Default::default()
    };
    assert_eq!(
        c.list_wheel_history(&q).await.unwrap_err().code(),
        Some("invalid_action")
    );
    let keys = env.js.get_key_value("pyoco_wheel_history").await.unwrap();
    let key = futures::TryStreamExt::try_collect::<Vec<String>>(keys.keys().await.unwrap())
        .await
        .unwrap();
    assert!(
        key.iter()
            .all(|k| k.len() == 13 + 1 + 32 && k.as_bytes()[13] == b'_'),
        "{key:?}"
    );
}

#[tokio::test]
async fn malformed_names_tags_and_files_are_refused_and_nothing_is_stored() {
    let env = env_with(|_| {}).await;
    let c = &env.client;
    let (_, v1) = mypkg_wheel("1.0", "v1");
    let cases = [
        (
            "my pkg.whl",
            &[][..],
            "invalid_wheel_name",
            "invalid wheel name",
        ),
        (
            "mypkg.whl",
            &[][..],
            "invalid_wheel_filename",
            "invalid wheel filename",
        ),
        (
            "mypkg-1.0-py3-none-any.whl",
            &["a.b"][..],
            "invalid_wheel_tags",
            "invalid wheel tags",
        ),
    ];
    for (name, t, code, detail) in cases {
        let (status, got, text) = failure(c.upload_wheel(name, v1.clone(), &tags(t)).await);
        assert_eq!(
            (status, got.as_str(), text.as_str()),
            (422, code, detail),
            "{name}"
        );
    }
    let before = stored_messages(&env.js, BUCKET).await;
    // Not a zip; a zip cut in half; a wheel whose METADATA is another version.
    let mut truncated = v1.clone();
    truncated.truncate(v1.len() / 2);
    let (_, other) =
        wheel_with_metadata("mypkg", "1.0", "mypkg", "1.1", &[("mypkg/__init__.py", "")]);
    for data in [b"garbage".to_vec(), truncated, other] {
        let err = c
            .upload_wheel("mypkg-1.0-py3-none-any.whl", data, &tags(&[]))
            .await
            .unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (Some(422), Some("invalid_wheel_file"))
        );
        let HttpError::Status(s) = &err else {
            panic!("{err}")
        };
        let body: Value = serde_json::from_str(&s.body).unwrap();
        assert!(
            body["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
    }
    assert_eq!(stored_messages(&env.js, BUCKET).await, before);
    assert!(c.list_wheels().await.unwrap().is_empty());
    assert!(
        c.list_wheel_history(&WheelHistoryQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn oversized_upload_is_refused_and_nothing_is_stored() {
    let env = env_with(|c| c.wheel_max_bytes = 64 * 1024).await;
    let c = &env.client;
    // Incompressible text, so the deflated wheel really is larger than the limit.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: String = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    let (name, big) = support::wheel("mypkg", "1.0", &[("mypkg/__init__.py", &noise)]);
    assert!(big.len() > 64 * 1024);
    let before = stored_messages(&env.js, BUCKET).await;
    let (status, code, detail) = failure(c.upload_wheel(&name, big, &tags(&[])).await);
    assert_eq!(
        (status, code.as_str(), detail.as_str()),
        (413, "wheel_too_large", "wheel too large")
    );
    assert_eq!(stored_messages(&env.js, BUCKET).await, before);
    let (name, small) = mypkg_wheel("1.0", "v1");
    c.upload_wheel(&name, small, &tags(&[])).await.unwrap();
}

#[tokio::test]
async fn wheels_written_by_the_original_are_listed_downloaded_and_counted() {
    let env = env_with(|_| {}).await;
    let c = &env.client;
    let (name, data) = mypkg_wheel("1.0", "py");
    let nuid = put_like_python(&env.js, BUCKET, &name, &data, "gpu,cpu").await;
    let listed = c.list_wheels().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["tags"], serde_json::json!(["gpu", "cpu"]));
    assert_eq!(listed[0]["nuid"], nuid.as_str());
    assert_eq!(listed[0]["mtime"], "2026-11-22T02:05:17.039151+00:00");
    assert_eq!(c.download_wheel(&name).await.unwrap(), data);
    // The version rules see it.
    let (_, again) = mypkg_wheel("1.0", "rust");
    assert_eq!(
        failure(c.upload_wheel(&name, again, &tags(&[])).await).1,
        "wheel_version_exists"
    );
    // A name the registry would refuse is not listed.
    put_like_python(&env.js, BUCKET, "odd name.whl", b"x", "").await;
    assert_eq!(c.list_wheels().await.unwrap().len(), 1);
    let deleted = c.delete_wheel(&name).await.unwrap();
    assert_eq!(deleted["deleted"], true);
    let meta = raw_meta(&env.js, BUCKET, &name).await;
    assert_eq!(
        (
            meta["deleted"].as_bool(),
            meta["headers"]["x-pyoco-wheel-tags"].as_str()
        ),
        (Some(true), Some("gpu,cpu"))
    );
    let history = c
        .list_wheel_history(&WheelHistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(history[0]["tags"], serde_json::json!(["gpu", "cpu"]));
}

#[tokio::test]
async fn server_side_preflight_is_optional() {
    let env = env_with(|_| {}).await;
    let (name, data) = mypkg_wheel("1.0", "v1");
    let url = format!("{}/wheels", env.stack.gateway.url());
    let send = |mode: &'static str| {
        let form = reqwest::multipart::Form::new()
            .part(
                "wheel",
                reqwest::multipart::Part::bytes(data.clone()).file_name(name.clone()),
            )
            .text("preflight", mode);
        reqwest::Client::new().post(&url).multipart(form).send()
    };
    let strict = send("strict").await.unwrap();
    assert_eq!(strict.status(), 422);
    let body: Value = strict.json().await.unwrap();
    assert_eq!(body["code"], "wheel_preflight_failed");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("entry_points are missing"),
        "{body}"
    );
    let warn = send("warn").await.unwrap();
    assert_eq!(warn.status(), 200);
    let body: Value = warn.json().await.unwrap();
    assert_eq!(
        body["preflight_warnings"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_keys_the_history_records_the_uploading_key() {
    let env = env_with(|c| c.http_auth_mode = pyoco::config::AuthMode::ApiKey).await;
    let store = pyoco::Store::connect(std::sync::Arc::new(env.stack.config.clone()), "actor")
        .await
        .unwrap();
    let key = pyoco::auth::ApiKey::generate().unwrap();
    let record = pyoco::auth::ApiKeyRecord::new(&key, "acme", "", false, 1.0).unwrap();
    store.api_keys().create(&record).await.unwrap();
    let c = HttpClient::new(&env.stack.gateway.url())
        .unwrap()
        .with_api_key("X-API-Key", &key.to_header_value());
    let (name, _, _) = upload_v1(&c).await;
    c.delete_wheel(&name).await.unwrap();
    let history = c
        .list_wheel_history(&WheelHistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    for event in &history {
        assert_eq!(event["actor"]["tenant_id"], "acme", "{event}");
        assert_eq!(event["actor"]["api_key_id"], key.key_id.as_str(), "{event}");
    }
}
