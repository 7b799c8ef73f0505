//! Wheel sync (opt-in: `PYOCO_WHEEL_SYNC_ENABLED`, `pyoco-worker --wheel-sync`): the worker
//! installs the registry's wheels into the interpreter its Python runner uses, at start-up
//! and before a poll once `PYOCO_WHEEL_SYNC_INTERVAL_SEC` has passed — never during a run.
//!
//! A round: list the registry; keep wheels whose tags meet the worker's (no tags: every
//! worker) and whose compatibility tags the interpreter supports (asked of the interpreter);
//! per canonical project the highest PEP 440 version (equal versions: the greater file
//! name); download what is new or changed (object `nuid`) and `pip install --no-deps
//! --force-reinstall` it; delete local files no longer selected and `pip uninstall` projects
//! that left the registry; restart the Python runners when anything changed (a running
//! interpreter keeps stale modules). The outcome is the registry record's `wheel_sync`
//! object, shaped like the original's. A failed round is logged and shown there, retried
//! next time, and never stops the worker.

mod install;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::flow::python::PythonPool;
use crate::model::now;
use crate::store::Store;
use crate::store::wheels::{WheelObject, WheelStore};
use crate::wheel::{WheelName, interpreter, is_valid_wheel_name, parse_wheel_filename};
use install::Manifest;

/// Lists in the `wheel_sync` object are cut to this many items, as in the original.
const MAX_ITEMS: usize = 50;

/// The wheels a worker should have, and the ones it cannot use.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    /// By file name: the object and its parsed name.
    pub desired: BTreeMap<String, (WheelObject, WheelName)>,
    pub skipped_incompatible: Vec<Value>,
}

/// Picks, from `objects`, the latest compatible wheel per project meant for `worker_tags`.
pub(crate) fn select(
    objects: &[WheelObject],
    worker_tags: &[String],
    supported: &HashSet<String>,
) -> Selection {
    let mut latest: BTreeMap<String, (WheelObject, WheelName)> = BTreeMap::new();
    let mut selection = Selection::default();
    for object in objects.iter().filter(|o| is_valid_wheel_name(&o.name)) {
        let tags = object.valid_tags();
        if !tags.is_empty() && !tags.iter().any(|t| worker_tags.contains(t)) {
            continue;
        }
        let Ok(name) = parse_wheel_filename(&object.name) else {
            continue;
        };
        if !name.tags.iter().any(|t| supported.contains(t)) {
            selection.skipped_incompatible.push(json!({
                "wheel_name": object.name,
                "package_name": name.canonical,
                "package_version": name.version.to_string(),
                "reason": "unsupported_wheel_tags",
            }));
            continue;
        }
        let better = latest.get(&name.canonical).is_none_or(|(_, best)| {
            name.version > best.version || (name.version == best.version && name.file > best.file)
        });
        if better {
            latest.insert(name.canonical.clone(), (object.clone(), name));
        }
    }
    for (object, name) in latest.into_values() {
        selection.desired.insert(name.file.clone(), (object, name));
    }
    selection
}

/// The `wheel_sync` object before the first attempt (`disabled` when sync is off).
pub(crate) fn initial_state(enabled: bool) -> Value {
    let mut state = crate::model::worker::disabled_wheel_sync();
    state["enabled"] = json!(enabled);
    state["last_result"] = json!(if enabled { "idle" } else { "disabled" });
    state
}

/// The worker's sync state.
#[derive(Debug)]
pub(crate) struct WheelSync {
    wheels: WheelStore,
    dir: PathBuf,
    interval: Duration,
    install_timeout: Duration,
    /// The interpreter the Python runner uses: wheels are installed into it.
    interpreter: String,
    /// Restarted after a change, so the next task imports the new code.
    pool: Option<Arc<PythonPool>>,
    worker_tags: Vec<String>,
    next_at: Option<tokio::time::Instant>,
    /// Asked once per worker: an interpreter's supported tags do not change.
    supported: Option<HashSet<String>>,
    /// The last `wheel_sync` object written.
    state: Value,
}

impl WheelSync {
    pub(crate) fn new(
        store: &Store,
        config: &Config,
        worker_tags: &[String],
        pool: Option<Arc<PythonPool>>,
    ) -> WheelSync {
        let interpreter = pool
            .as_ref()
            .map(|p| p.interpreter().to_string())
            .unwrap_or_else(|| config.python.clone());
        WheelSync {
            wheels: WheelStore::new(store),
            dir: config.wheel_sync_dir.clone(),
            interval: config.wheel_sync_interval.max(Duration::from_millis(100)),
            install_timeout: config.wheel_install_timeout,
            interpreter,
            pool,
            worker_tags: worker_tags.to_vec(),
            next_at: None,
            supported: None,
            state: initial_state(true),
        }
    }

    pub(crate) fn state(&self) -> Value {
        self.state.clone()
    }

    /// Syncs when the interval has passed since the last round; returns the new state.
    pub(crate) async fn maybe_sync(&mut self) -> Option<Value> {
        if self
            .next_at
            .is_some_and(|at| tokio::time::Instant::now() < at)
        {
            return None;
        }
        Some(self.sync_now().await)
    }

    /// One round, whatever the interval; returns (and keeps) the new `wheel_sync` object.
    pub(crate) async fn sync_now(&mut self) -> Value {
        let attempted_at = now();
        // Boxed: a round's future is large (NATS reads, pip processes) and would otherwise
        // grow every future that polls the worker, `run_once` and `Worker::connect` included.
        let state = match Box::pin(self.round(attempted_at)).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(error = %error, "wheel sync failed; retrying at the next poll");
                let mut state = self.state.clone();
                state["enabled"] = json!(true);
                state["last_result"] = json!("error");
                state["last_attempt_at"] = json!(attempted_at);
                state["last_error"] = json!(cut(&error));
                state
            }
        };
        self.state = state.clone();
        self.next_at = Some(tokio::time::Instant::now() + self.interval);
        state
    }

    async fn supported_tags(&mut self) -> Result<HashSet<String>, String> {
        if let Some(tags) = &self.supported {
            return Ok(tags.clone());
        }
        let tags: HashSet<String> = interpreter::supported_tags(&self.interpreter)
            .await?
            .into_iter()
            .collect();
        self.supported = Some(tags.clone());
        Ok(tags)
    }

    /// A whole round. `Err` when nothing could be decided (the registry or the interpreter
    /// did not answer); failures of single wheels are reported in the state, the others
    /// still synced.
    async fn round(&mut self, attempted_at: f64) -> Result<Value, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            format!(
                "cannot create the wheel sync dir {}: {e}",
                self.dir.display()
            )
        })?;
        let supported = self.supported_tags().await?;
        let objects = self.wheels.list().await.map_err(|e| e.to_string())?;
        let selection = select(&objects, &self.worker_tags, &supported);
        let mut manifest = Manifest::load(&self.dir);
        let mut errors: Vec<String> = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        let mut updated: Vec<String> = Vec::new();
        let mut uninstalled: Vec<String> = Vec::new();
        let desired_projects: BTreeSet<&str> = selection
            .desired
            .values()
            .map(|(_, name)| name.canonical.as_str())
            .collect();

        // Files no longer selected go; projects that left the registry are uninstalled.
        let stale: Vec<String> = manifest
            .entries
            .keys()
            .filter(|file| !selection.desired.contains_key(*file))
            .cloned()
            .collect();
        let mut to_uninstall: BTreeSet<String> = BTreeSet::new();
        for file in stale {
            let project = manifest
                .text(&file, "package_name")
                .map(crate::wheel::canonicalize_name)
                .or_else(|| parse_wheel_filename(&file).ok().map(|w| w.canonical));
            if let Some(project) = project.filter(|p| !desired_projects.contains(p.as_str())) {
                to_uninstall.insert(project);
            }
            std::fs::remove_file(self.dir.join(&file)).ok();
            manifest.entries.remove(&file);
            removed.push(file);
        }
        for project in to_uninstall {
            match install::uninstall(&self.interpreter, &project, self.install_timeout).await {
                Ok(()) => uninstalled.push(project),
                Err(e) => errors.push(e),
            }
        }

        for (file, (object, name)) in &selection.desired {
            let path = self.dir.join(file);
            if manifest.text(file, "nuid") == Some(object.nuid.as_str()) && path.is_file() {
                continue;
            }
            let data = match self.wheels.get(file).await {
                Ok(Some((_, data))) => data,
                Ok(None) => {
                    errors.push(format!("wheel vanished from the registry: {file}"));
                    continue;
                }
                Err(e) => {
                    errors.push(format!("cannot download {file}: {e}"));
                    continue;
                }
            };
            let partial = self.dir.join(format!(".{file}.partial"));
            if let Err(e) =
                std::fs::write(&partial, &data).and_then(|()| std::fs::rename(&partial, &path))
            {
                errors.push(format!("cannot write {}: {e}", path.display()));
                continue;
            }
            if let Err(e) = install::install(&self.interpreter, &path, self.install_timeout).await {
                std::fs::remove_file(&path).ok();
                errors.push(e);
                continue;
            }
            let entry = json!({
                "nuid": object.nuid,
                "package_name": name.canonical,
                "package_version": name.version.to_string(),
                "size_bytes": data.len(),
                "sha256_hex": crate::flow::yaml::sha256_hex(&data),
                "tags": object.valid_tags(),
                "installed_at": now(),
            });
            if let Value::Object(entry) = entry {
                manifest.entries.insert(file.clone(), entry);
            }
            updated.push(file.clone());
        }

        if !removed.is_empty() || !updated.is_empty() {
            manifest.save(&self.dir)?;
        }
        if !updated.is_empty() || !uninstalled.is_empty() {
            if let Some(pool) = &self.pool {
                pool.restart();
            }
            tracing::info!(updated = ?updated, removed = ?removed, uninstalled = ?uninstalled, "wheels synced");
        }
        let finished = now();
        let ok = errors.is_empty();
        let (success_at, synced_at) = if ok {
            (json!(finished), json!(finished))
        } else {
            let error = errors.join("; ");
            tracing::warn!(error = %error, "some wheels did not sync; retrying at the next poll");
            (
                self.state["last_success_at"].clone(),
                self.state["last_synced_at"].clone(),
            )
        };
        let mut selected: Vec<&String> = selection.desired.keys().collect();
        selected.truncate(MAX_ITEMS);
        updated.sort();
        removed.sort();
        Ok(json!({
            "enabled": true,
            "last_result": if ok { "ok" } else { "error" },
            "last_attempt_at": attempted_at,
            "last_success_at": success_at,
            "last_synced_at": synced_at,
            "last_error": if ok { Value::Null } else { json!(cut(&errors.join("; "))) },
            "selected_count": selection.desired.len(),
            "updated_count": updated.len(),
            "removed_count": removed.len(),
            "skipped_incompatible_count": selection.skipped_incompatible.len(),
            "selected_wheels": selected,
            "updated_wheels": updated.iter().take(MAX_ITEMS).collect::<Vec<_>>(),
            "removed_wheels": removed.iter().take(MAX_ITEMS).collect::<Vec<_>>(),
            "skipped_incompatible": selection.skipped_incompatible.iter().take(MAX_ITEMS).collect::<Vec<_>>(),
            "installed_wheels": manifest.installed_wheels(MAX_ITEMS),
        }))
    }
}

/// `last_error` is at most 2000 characters.
fn cut(error: &str) -> String {
    error.chars().take(2000).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn object(name: &str, tags: &str) -> WheelObject {
        let meta = json!({"name": name, "nuid": format!("N-{name}"), "size": 1, "chunks": 1,
            "headers": {"x-pyoco-wheel-tags": tags}});
        WheelObject::from_meta(&serde_json::to_vec(&meta).unwrap()).unwrap()
    }

    #[test]
    fn selects_latest_compatible_wheel_per_project_for_the_worker_tags() {
        let objects = [
            object("demo-1.0-py3-none-any.whl", "cpu"),
            object("Demo-1.2-py3-none-any.whl", "cpu"),
            object("demo-1.3-py3-none-any.whl", "gpu"),
            object("demo-1.4-cp312-cp312-win_amd64.whl", ""),
            object("common-0.1-py3-none-any.whl", ""),
            object("notawheel.txt", ""),
            object("bad-name.whl", ""),
        ];
        let supported: HashSet<String> = ["py3-none-any".to_string()].into();
        let s = select(&objects, &["cpu".into()], &supported);
        let files: Vec<&str> = s.desired.keys().map(String::as_str).collect();
        assert_eq!(
            files,
            ["Demo-1.2-py3-none-any.whl", "common-0.1-py3-none-any.whl"]
        );
        assert_eq!(s.skipped_incompatible.len(), 1);
        assert_eq!(
            s.skipped_incompatible[0]["reason"],
            "unsupported_wheel_tags"
        );
        assert_eq!(s.skipped_incompatible[0]["package_version"], "1.4");
        let s = select(&objects, &["other".into()], &supported);
        assert_eq!(
            s.desired.keys().collect::<Vec<_>>(),
            ["common-0.1-py3-none-any.whl"]
        );
    }

    #[test]
    fn equal_versions_prefer_the_greater_file_name() {
        let objects = [
            object("demo-1.0-py3-none-any.whl", ""),
            object("demo-1.0-1-py3-none-any.whl", ""),
        ];
        let supported: HashSet<String> = ["py3-none-any".to_string()].into();
        let s = select(&objects, &["x".into()], &supported);
        assert_eq!(
            s.desired.keys().collect::<Vec<_>>(),
            ["demo-1.0-py3-none-any.whl"]
        );
    }

    #[test]
    fn initial_states() {
        assert_eq!(initial_state(true)["last_result"], "idle");
        assert_eq!(initial_state(false)["last_result"], "disabled");
        assert_eq!(initial_state(true)["installed_wheels"], json!([]));
    }
}
