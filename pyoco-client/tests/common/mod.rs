//! What both test files of the `pyoco-client` binary need: the test stack with a scratch
//! directory, and running the built binary as a subprocess.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use pyoco::testkit::Stack;

/// The testkit's stack (nats-server, gateway, worker `w1` on `default`) plus a scratch
/// directory for files the CLI reads.
#[derive(Debug)]
pub struct CliStack {
    pub stack: Stack,
    pub dir: tempfile::TempDir,
}

impl CliStack {
    pub async fn start() -> CliStack {
        CliStack {
            stack: Stack::start().await,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Runs the CLI with `--server` pointing at this stack's gateway.
    pub async fn cli(&self, args: &[&str]) -> Output {
        run_cli_at(&self.stack.gateway.url(), args).await
    }

    /// Writes a scratch file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write temp file");
        path.to_string_lossy().into_owned()
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }
}

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the built binary with `args`, without the `PYOCO_*` variables of the environment;
/// fails the test if it takes over 60 s.
pub async fn run_cli(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pyoco-client"))
        .args(args)
        .env_remove("PYOCO_SERVER")
        .env_remove("PYOCO_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("pyoco-client {args:?} did not finish in 60 s"))
        .expect("run pyoco-client");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run_cli`] with `--server <url>` first.
pub async fn run_cli_at(url: &str, args: &[&str]) -> Output {
    let mut full = vec!["--server", url];
    full.extend_from_slice(args);
    run_cli(&full).await
}
