//! A real PostgreSQL per test: a throw-away data directory (`initdb`), a free port, TCP on
//! 127.0.0.1 only, stopped (fast shutdown) on drop — the `pyoco:sql` tests' database.
//!
//! The binaries come from `PYOCO_PG_BIN` (set by `scripts/test.sh` from
//! `scripts/install-postgres.sh`), else the newest `/usr/lib/postgresql/<version>/bin`.
//! PostgreSQL refuses to run as root, so as root `initdb` and `postgres` run as the
//! `postgres` user (`setpriv`, which execs: the child is the postmaster itself) in a
//! directory owned by it. Without binaries a test skips with a message, except under
//! `CI=true`, where it fails: CI must not go green without running anything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The database superuser `initdb` creates; tests connect as it.
pub const PG_USER: &str = "pyoco";

/// A running PostgreSQL owned by one test.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    /// Holds `data/` and the server logs; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    /// `Some(user)` when running as root: the unprivileged user that owns the cluster.
    run_as: Option<String>,
    /// Counts starts, so every start logs to a new file (readiness is read from it).
    starts: u32,
}

/// The directory holding `initdb`, `postgres` and `pg_ctl`, if any.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("PYOCO_PG_BIN").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir)).filter(|d| has_server(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl Postgres {
    /// Starts a fresh cluster, or `None` (after saying why on stderr) when PostgreSQL is not
    /// installed and `CI` is not `true`. Panics on any other failure.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = postgres_bin_dir() else {
            let message = "PostgreSQL not found: run scripts/install-postgres.sh and set PYOCO_PG_BIN to the directory it prints";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message} (CI=true: required)");
            }
            eprintln!("SKIPPED: {message}");
            return None;
        };
        let run_as = rustix::process::geteuid()
            .is_root()
            .then(|| "postgres".to_string());
        let dir = tempfile::Builder::new()
            .prefix("pyoco-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut pg = Postgres {
            child: None,
            bin,
            dir,
            port: free_port(),
            run_as,
            starts: 0,
        };
        if let Some(user) = &pg.run_as {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", pg.dir.path().display()));
        }
        let out = pg
            .command("initdb")
            .args(["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"])
            .arg(format!("--username={PG_USER}"))
            .arg("-D")
            .arg(pg.data_dir())
            .output()
            .unwrap_or_else(|e| panic!("could not run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.spawn();
        Some(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` from the bin directory, as the unprivileged user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            None => Command::new(path),
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(path);
                c
            }
        }
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        if let Some(user) = &self.run_as {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).ok();
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "timezone=UTC",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start postgres: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready to accept connections") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("postgres exited with {status}: {text}");
            }
            assert!(
                Instant::now() < deadline,
                "postgres was not ready in 30 s: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://pyoco@127.0.0.1:<port>/postgres` (trust authentication, superuser).
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server with a fast shutdown (SIGINT: open sessions are ended), keeping
    /// the data directory.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            rustix::process::kill_process(pid, rustix::process::Signal::INT).ok();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().ok();
        child.wait().ok();
    }

    /// Starts the stopped server again on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "postgres is still running");
        self.spawn();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The uid and gid of `user` (`id`, to stay away from libc).
fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "no user '{user}' to run PostgreSQL as (scripts/install-postgres.sh creates it)"
                )
            })
    };
    (id("-u"), id("-g"))
}
