//! The wheel registry shared with the original Python pyoco-server (0.5.1, the virtualenv of
//! `scripts/install-interop.sh`) on one nats-server: a wheel uploaded through our gateway is
//! listed with its tags by theirs and synced only by their workers whose tags match; a wheel
//! uploaded through theirs is listed, version-checked and synced by ours; both gateways read
//! each other's history events.
//!
//! The Python worker runs from a throw-away virtualenv (pyoco-server importable through
//! `PYTHONPATH`), so its `pip install` never touches the shared interop virtualenv.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

#[path = "wheels/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pyoco::client::http::{WheelHistoryQuery, WheelUpload};
use pyoco::testkit::{Stack, WorkerHandle, free_port, wait_for};
use pyoco::{HttpClient, Registry};
use serde_json::Value;
use support::{can_import, mypkg_wheel, venv, wheel_sync_of};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The pyoco-server virtualenv (installed by the script when missing).
fn interop_venv() -> PathBuf {
    pyoco::testkit::python_tool("install-interop.sh")
}

fn site_packages(venv: &Path) -> PathBuf {
    std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .unwrap()
}

/// A Python process under `interop/supervise.py` (stopped when this guard drops, or when the
/// test process dies); its output is printed if the test fails.
struct Py {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Py {
    fn spawn(interop: &Path, program: &Path, args: &[&str], envs: &[(&str, String)]) -> Py {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(interop.join("bin/python"));
        cmd.arg(repo_root().join("interop/supervise.py"))
            .arg(program)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stderr(out.try_clone().unwrap())
            .stdout(out);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PYOCO_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PYOCO_LOAD_DOTENV", "0")
            .env("PYTHONUNBUFFERED", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Py {
            child: cmd.spawn().unwrap(),
            log,
            _dir: dir,
        }
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
        if std::thread::panicking() {
            eprintln!(
                "----- {} -----\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn installed(sync: &Value) -> Vec<String> {
    sync["installed_wheels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w["wheel_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wheels_cross_between_our_gateway_and_workers_and_the_originals() {
    let interop = interop_venv();
    let tmp = tempfile::tempdir().unwrap();
    let (py_env, our_env) = (tmp.path().join("py-venv"), tmp.path().join("our-venv"));
    let (a, b) = (py_env.clone(), our_env.clone());
    let (py_python, our_python) = {
        let a = std::thread::spawn(move || venv(&a));
        let b = std::thread::spawn(move || venv(&b));
        (a.join().unwrap(), b.join().unwrap())
    };

    let stack = Stack::builder().no_worker().start().await;
    let (base, client) = (stack.config.clone(), stack.client.clone());

    // 1. Ours uploads v1 for tag "wheelz".
    let (v1_name, v1) = mypkg_wheel("1.0", "v1");
    let up = WheelUpload {
        tags: vec!["wheelz".into()],
        replace: true,
    };
    client.upload_wheel(&v1_name, v1, &up).await.unwrap();

    // 2. Their gateway lists it with its tags.
    let port = free_port().to_string();
    let _py_gateway = Py::spawn(
        &interop,
        &interop.join("bin/pyoco-server"),
        &[
            "up",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--nats-url",
            &stack.server.url(),
        ],
        &[("PYOCO_NATS_URL", stack.server.url())],
    );
    let py_url = format!("http://127.0.0.1:{port}");
    let py_client = HttpClient::new(&py_url).unwrap();
    let listed = wait_for("their gateway", Duration::from_secs(30), || async {
        py_client.list_wheels().await.ok()
    })
    .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["name"].as_str(), listed[0]["tags"].clone()),
        (Some(v1_name.as_str()), serde_json::json!(["wheelz"]))
    );

    // 3. Their workers: the "wheelz" one installs it, the "other" one does not select it.
    let python_path = site_packages(&interop).display().to_string();
    let py_worker = |id: &str, tags: &str, dir: &str| {
        Py::spawn(
            &interop,
            &py_python,
            &[
                "-m",
                "pyoco_server.worker_cli",
                "--nats-url",
                &stack.server.url(),
                "--tags",
                tags,
                "--worker-id",
                id,
                "--wheel-sync",
                "--wheel-sync-dir",
                &tmp.path().join(dir).display().to_string(),
                "--wheel-sync-interval-sec",
                "0.2",
                "--poll-timeout",
                "0.2",
            ],
            &[
                ("PYOCO_NATS_URL", stack.server.url()),
                ("PYTHONPATH", python_path.clone()),
            ],
        )
    };
    let _py_wheelz = py_worker("py-wheelz", "wheelz", "py-sync-a");
    let _py_other = py_worker("py-other", "other", "py-sync-b");
    let sync = wheel_sync_of(&client, "py-wheelz", "their worker installed v1", |s| {
        installed(s) == [v1_name.as_str()]
    })
    .await;
    assert_eq!(sync["last_result"], "ok", "{sync}");
    assert!(can_import(&py_python, "mypkg.tasks"));
    let other = wheel_sync_of(&client, "py-other", "their other worker synced", |s| {
        s["last_result"] == "ok"
    })
    .await;
    assert_eq!(
        other["selected_count"], 0,
        "their worker misread our tags: {other}"
    );

    // 4. Their gateway uploads v2; ours lists it, applies the version rules, and our worker
    //    (and theirs) install it.
    let form = reqwest::multipart::Form::new()
        .part(
            "wheel",
            reqwest::multipart::Part::bytes(mypkg_wheel("2.0", "v2").1)
                .file_name("mypkg-2.0-py3-none-any.whl"),
        )
        .text("tags", "wheelz,gpu");
    let resp = reqwest::Client::new()
        .post(format!("{py_url}/wheels"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let ours = client.list_wheels().await.unwrap();
    let v2 = ours
        .iter()
        .find(|w| w["name"] == "mypkg-2.0-py3-none-any.whl")
        .unwrap();
    assert_eq!(v2["tags"], serde_json::json!(["wheelz", "gpu"]));
    let (old_name, old) = mypkg_wheel("1.5", "old");
    let err = client.upload_wheel(&old_name, old, &up).await.unwrap_err();
    assert_eq!(err.code(), Some("wheel_version_not_newer"));
    let mut config = base.clone();
    config.wheel_sync_enabled = true;
    config.wheel_sync_dir = tmp.path().join("our-sync");
    config.wheel_sync_interval = Duration::from_millis(200);
    config.python = our_python.display().to_string();
    let worker =
        WorkerHandle::start(config, Registry::with_builtins(), "our-wheelz", &["wheelz"]).await;
    let ours = wheel_sync_of(&client, "our-wheelz", "our worker installed v2", |s| {
        s["last_result"] == "ok"
    })
    .await;
    assert_eq!(installed(&ours), ["mypkg-2.0-py3-none-any.whl"]);
    assert!(can_import(&our_python, "mypkg.tasks"));
    wheel_sync_of(&client, "py-wheelz", "their worker installed v2", |s| {
        installed(s) == ["mypkg-2.0-py3-none-any.whl"]
    })
    .await;

    // 5. Each gateway reads the other's history events.
    let theirs = py_client
        .list_wheel_history(&WheelHistoryQuery::default())
        .await
        .unwrap();
    let ours = client
        .list_wheel_history(&WheelHistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert_eq!(ours, theirs);
    assert_eq!(ours[1]["wheel_name"], v1_name.as_str());
    assert_eq!(ours[0]["tags"], serde_json::json!(["wheelz", "gpu"]));

    // 6. Their client, unchanged, against our gateway.
    let (v3_name, v3) = mypkg_wheel("3.0", "v3");
    let v3_path = tmp.path().join(&v3_name);
    std::fs::write(&v3_path, v3).unwrap();
    let script = format!(
        "import json, sys\nfrom pyoco_server import PyocoHttpClient\nc = PyocoHttpClient(sys.argv[1])\n\
         data = open(sys.argv[2], 'rb').read()\n\
         up = c.upload_wheel(filename='{v3_name}', data=data, replace=False, tags=['wheelz'])\n\
         listed = c.list_wheels()\nhist = c.list_wheel_history(limit=1, action='upload')\n\
         gone = c.delete_wheel('{v3_name}')\n\
         print(json.dumps({{'up': up, 'listed': listed, 'hist': hist, 'gone': gone}}))\n"
    );
    let out = Command::new(interop.join("bin/python"))
        .args([
            "-c",
            &script,
            &stack.gateway.url(),
            v3_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "their client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["up"]["name"], v3_name.as_str());
    assert_eq!(result["up"]["tags"], serde_json::json!(["wheelz"]));
    assert!(
        result["listed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == v3_name.as_str())
    );
    assert_eq!(result["hist"][0]["wheel_name"], v3_name.as_str());
    assert_eq!(result["hist"][0]["replace"], false);
    assert_eq!(
        result["gone"],
        serde_json::json!({"name": v3_name, "deleted": true})
    );

    worker.stop().await;
    stack.gateway.stop().await;
}
