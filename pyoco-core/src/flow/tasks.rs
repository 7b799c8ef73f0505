//! Task callables: a registry of native (Rust) task functions under `namespace:name`, the
//! built-in `pyoco:*` tasks, and named flows a worker can resolve for `POST /runs`.
//!
//! A task declares its parameter names, like a Python signature: the engine fills them from
//! explicit `inputs`, then run params by name, then upstream outputs by task name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::python::PythonPool;
use super::yaml::{FlowSpec, YamlError, parse_flow_yaml};

/// The callable a bundle's `spawn` task runs: the worker registers it for bundle runs only
/// (it starts the child run and waits for it); anywhere else it does not resolve.
pub const SPAWN_CALLABLE: &str = "pyoco-bundle:spawn";

/// What a task function receives.
#[derive(Debug, Clone)]
pub struct TaskCall {
    /// The wired arguments (explicit inputs, then params, then upstream outputs).
    pub args: Map<String, Value>,
    pub run_id: String,
    pub flow_name: String,
    pub task: String,
    /// All run params.
    pub params: Arc<Map<String, Value>>,
    /// Cancelled when the run is cancelled or fails; long tasks should watch it.
    pub cancel: CancellationToken,
    /// Outputs of the tasks that finished before this one started, by task name.
    pub upstream: Arc<Map<String, Value>>,
    /// Extra fields for this task's record (e.g. captured output); `inputs` replaces the
    /// recorded inputs.
    pub record: Arc<std::sync::Mutex<Map<String, Value>>>,
    /// Inside repeat, foreach or until (control-flow mode): the innermost loop frame
    /// `{type, index, iteration, count, item, alias}` plus `loops`, every frame outermost
    /// first. `None` outside loops.
    pub loop_ctx: Option<Value>,
    /// The task's `memory_mb` option: a `module:function` task runs in a Python process of
    /// its own with that address-space limit.
    pub memory_mb: Option<u64>,
    /// The task's `timeout_sec` option: a task that can stop on its own before it is
    /// dropped (`pyoco:sql`'s statement timeout) uses it as its default.
    pub timeout: Option<Duration>,
    /// The run's tenant (API key mode), for `{{context.tenant_id}}`.
    pub tenant_id: Option<String>,
    /// The run's routing tag, for `{{context.tag}}`.
    pub tag: String,
    /// This attempt's number (1 for the first; retries count up), for `{{context.attempt}}`.
    pub attempt: u32,
}

impl TaskCall {
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args.get(name)
    }
}

/// A task failure: its message becomes the task's and the run's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub message: String,
    /// Extra detail for the task record (the original stores a Python traceback here).
    pub traceback: Option<String>,
}

impl TaskError {
    pub fn new(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            traceback: None,
        }
    }
}

type TaskFuture = BoxFuture<'static, Result<Value, TaskError>>;
type TaskFn = Arc<dyn Fn(TaskCall) -> TaskFuture + Send + Sync>;

/// A registered task function with its parameter names.
#[derive(Clone)]
pub struct TaskDef {
    pub params: Vec<String>,
    func: TaskFn,
}

impl std::fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskDef")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl TaskDef {
    pub fn call(&self, call: TaskCall) -> TaskFuture {
        (self.func)(call)
    }
}

/// Where the worker finds a flow by name (`POST /runs` jobs carry only the name).
#[derive(Debug, Clone, Default)]
enum FlowSource {
    #[default]
    None,
    Dir(PathBuf),
    Resolver(FlowResolver),
}

/// The function behind a [`FlowResolver`].
pub(crate) type ResolveFlow = Arc<dyn Fn(&str) -> Option<FlowSpec> + Send + Sync>;

/// A function from flow name to flow (the original's `flow_resolver`).
#[derive(Clone)]
pub(crate) struct FlowResolver(pub(crate) ResolveFlow);

impl std::fmt::Debug for FlowResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowResolver")
    }
}

/// Whether callables outside the native namespaces run in Python.
#[derive(Debug, Clone, Default)]
enum PythonSetting {
    /// Decided by the worker: a pool of `PYOCO_PYTHON`.
    #[default]
    Default,
    Pool(Arc<PythonPool>),
    Disabled,
}

/// Parsed flow files with the modification time they were parsed at.
type FlowFileCache =
    Arc<std::sync::Mutex<HashMap<PathBuf, (std::time::SystemTime, Arc<FlowSpec>)>>>;

/// Task functions and named flows of one worker.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tasks: HashMap<String, TaskDef>,
    flows: HashMap<String, Arc<FlowSpec>>,
    flow_source: FlowSource,
    python: PythonSetting,
    /// Flows parsed from `flows_dir`, by path, with the file's modification time: a run
    /// re-reads only the file's metadata (parsing on every run was 13.6 % of a worker's CPU).
    file_cache: FlowFileCache,
}

/// Looking up a named flow failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowLookupError {
    #[error("flow_not_found: '{0}'")]
    NotFound(String),
    #[error("invalid flow file {path}: {error}")]
    Invalid { path: String, error: YamlError },
    #[error("could not read flow file {path}: {message}")]
    Io { path: String, message: String },
}

impl Registry {
    /// An empty registry without built-ins.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// A registry with the built-in `pyoco:echo`, `pyoco:sleep`, `pyoco:fail`, `pyoco:shell`,
    /// `pyoco:python` and (feature `worker`) `pyoco:http` and `pyoco:sql` (see
    /// [`super::builtins`]).
    pub fn with_builtins() -> Registry {
        let mut r = Registry::empty();
        r.register("pyoco:echo", &["value"], |call| async move {
            Ok(match call.args.get("value") {
                Some(v) => v.clone(),
                None => Value::Object(call.args),
            })
        });
        r.register("pyoco:sleep", &["seconds"], |call| async move {
            let seconds = match call.args.get("seconds") {
                None | Some(Value::Null) => 0.0,
                Some(v) => v
                    .as_f64()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        TaskError::new(format!(
                            "pyoco:sleep: seconds must be a non-negative number, got {v}"
                        ))
                    })?,
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(seconds.min(86_400.0))) => {}
                _ = call.cancel.cancelled() => return Err(TaskError::new("cancelled")),
            }
            Ok(Value::from(seconds))
        });
        r.register("pyoco:fail", &["message"], |call| async move {
            let message = match call.args.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "task failed".to_string(),
            };
            Err(TaskError::new(message))
        });
        super::builtins::register(&mut r);
        r
    }

    /// Registers `callable` (`namespace:name`) as a native task taking `params`.
    pub fn register<F, Fut>(&mut self, callable: &str, params: &[&str], f: F) -> &mut Registry
    where
        F: Fn(TaskCall) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value, TaskError>> + Send + 'static,
    {
        let func: TaskFn = Arc::new(move |call| Box::pin(f(call)));
        self.tasks.insert(
            callable.to_string(),
            TaskDef {
                params: params.iter().map(|p| p.to_string()).collect(),
                func,
            },
        );
        self
    }

    /// Registers a flow under `name` for `POST /runs` jobs.
    pub fn register_flow(&mut self, name: &str, flow: FlowSpec) -> &mut Registry {
        self.flows.insert(name.to_string(), Arc::new(flow));
        self
    }

    /// Resolves unknown flow names from `<dir>/<flow_name>.yaml` (read on every lookup, so
    /// edited files take effect without a restart).
    pub fn flows_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Registry {
        self.flow_source = FlowSource::Dir(dir.into());
        self
    }

    pub fn task(&self, callable: &str) -> Option<&TaskDef> {
        self.tasks.get(callable)
    }

    /// Points the built-in `pyoco:sql` at `urls` (a worker passes its config's
    /// `PYOCO_SQL_<NAME>_URL` connections); nothing when the registry has no `pyoco:sql`.
    #[cfg(feature = "worker")]
    pub fn use_sql(&mut self, urls: crate::config::SqlUrls) -> &mut Registry {
        if self.tasks.contains_key("pyoco:sql") {
            super::builtins::use_sql(self, urls);
        }
        self
    }

    /// Runs the built-in `pyoco:python` scripts in `sandbox` (a worker passes one it probed at
    /// start-up with `PYOCO_SCRIPT_SANDBOX`); nothing when the registry has no
    /// `pyoco:python`.
    pub fn use_script_sandbox(
        &mut self,
        sandbox: Arc<super::builtins::sandbox::ScriptSandbox>,
    ) -> &mut Registry {
        if self.tasks.contains_key("pyoco:python") {
            super::builtins::use_script_sandbox(self, sandbox);
        }
        self
    }

    /// Runs callables of non-native namespaces as Python `module:function` in `pool`.
    pub fn use_python(&mut self, pool: Arc<PythonPool>) -> &mut Registry {
        self.python = PythonSetting::Pool(pool);
        self
    }

    /// Never runs Python: unknown callables fail the task.
    pub fn disable_python(&mut self) -> &mut Registry {
        self.python = PythonSetting::Disabled;
        self
    }

    /// True unless Python was set or disabled explicitly (the worker then sets its own).
    pub fn python_is_default(&self) -> bool {
        matches!(self.python, PythonSetting::Default)
    }

    /// The task for `callable`: native if registered, else Python when enabled. `Err` says why
    /// there is none.
    pub fn resolve(&self, callable: &str) -> Result<TaskDef, TaskError> {
        if let Some(def) = self.tasks.get(callable) {
            return Ok(def.clone());
        }
        let ns = callable
            .rsplit_once(':')
            .map(|(ns, _)| ns)
            .unwrap_or(callable);
        if self.has_namespace(ns) {
            return Err(TaskError::new(format!(
                "unknown task callable '{callable}': namespace '{ns}' has no such task"
            )));
        }
        match &self.python {
            PythonSetting::Pool(pool) => {
                let pool = pool.clone();
                let callable = callable.to_string();
                let func: TaskFn = Arc::new(move |call: TaskCall| {
                    let pool = pool.clone();
                    let callable = callable.clone();
                    Box::pin(async move { pool.call(&callable, &call, &call.upstream).await })
                });
                // The runner wires arguments by the function's own signature.
                Ok(TaskDef {
                    params: Vec::new(),
                    func,
                })
            }
            _ => Err(TaskError::new(format!(
                "callable '{callable}' could not be resolved: '{ns}' is not a native task namespace on this worker and Python is disabled"
            ))),
        }
    }

    /// True when `namespace` has at least one native task.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.tasks
            .keys()
            .any(|k| k.split_once(':').is_some_and(|(ns, _)| ns == namespace))
    }

    /// Finds the flow for a `POST /runs` job.
    pub fn flow(&self, name: &str) -> Result<Arc<FlowSpec>, FlowLookupError> {
        if let Some(flow) = self.flows.get(name) {
            return Ok(flow.clone());
        }
        match &self.flow_source {
            FlowSource::None => Err(FlowLookupError::NotFound(name.to_string())),
            FlowSource::Dir(dir) => self.load_flow_file(dir, name),
            FlowSource::Resolver(resolve) => (resolve.0)(name)
                .map(Arc::new)
                .ok_or_else(|| FlowLookupError::NotFound(name.to_string())),
        }
    }

    pub(crate) fn set_flow_resolver(&mut self, f: ResolveFlow) {
        self.flow_source = FlowSource::Resolver(FlowResolver(f));
    }
}

impl Registry {
    /// `<dir>/<name>.yaml`, parsed once per modification of the file.
    fn load_flow_file(&self, dir: &Path, name: &str) -> Result<Arc<FlowSpec>, FlowLookupError> {
        // Names that could escape the directory are simply not found.
        let safe = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !name.starts_with('.');
        if !safe {
            return Err(FlowLookupError::NotFound(name.to_string()));
        }
        let path = dir.join(format!("{name}.yaml"));
        let io_error = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FlowLookupError::NotFound(name.to_string())
            } else {
                FlowLookupError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }
            }
        };
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(io_error)?;
        if let Ok(cache) = self.file_cache.lock()
            && let Some((when, flow)) = cache.get(&path)
            && *when == modified
        {
            return Ok(flow.clone());
        }
        let bytes = std::fs::read(&path).map_err(io_error)?;
        let flow =
            parse_flow_yaml(&bytes)
                .map(Arc::new)
                .map_err(|error| FlowLookupError::Invalid {
                    path: path.display().to_string(),
                    error,
                })?;
        if let Ok(mut cache) = self.file_cache.lock() {
            cache.insert(path.clone(), (modified, flow.clone()));
        }
        Ok(flow)
    }
}

#[cfg(test)]
mod flows_dir_tests {
    use super::*;

    #[test]
    fn flows_from_a_directory_are_parsed_once_per_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.yaml");
        let write = |value: u32, when: std::time::SystemTime| {
            std::fs::write(&path, format!("flow: {{graph: a, defaults: {{v: {value}}}}}\ntasks: {{a: {{callable: 'pyoco:echo'}}}}\n")).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        write(1, t0);
        let mut registry = Registry::with_builtins();
        registry.flows_dir(dir.path());
        let first = registry.flow("f").unwrap();
        assert!(
            Arc::ptr_eq(&first, &registry.flow("f").unwrap()),
            "unchanged file: cached"
        );
        write(2, t0 + std::time::Duration::from_secs(1));
        assert_eq!(
            registry.flow("f").unwrap().defaults["v"],
            2,
            "an edited file is read again"
        );
        assert!(matches!(
            registry.flow("missing"),
            Err(FlowLookupError::NotFound(_))
        ));
        assert!(matches!(
            registry.flow("../etc/passwd"),
            Err(FlowLookupError::NotFound(_))
        ));
    }
}
