//! The Rust embedding API: typed task functions and flows built in Rust.
//!
//! ```no_run
//! use pyoco::flow::embed::FlowBuilder;
//! use pyoco::{Registry, TaskError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Tax { price: f64 }
//! #[derive(Serialize)]
//! struct Taxed { tax: f64 }
//!
//! let mut registry = Registry::with_builtins();
//! // Parameter names come from the struct: `price` is wired from an input, a run param or
//! // the output of an upstream task called `price`.
//! registry.register_fn("shop:tax", |t: Tax| async move { Ok::<_, TaskError>(Taxed { tax: t.price * 0.2 }) });
//! let flow = FlowBuilder::new("price >> tax")
//!     .task("price", "pyoco:echo", |t| t.input("value", 100.0))
//!     .task("tax", "shop:tax", |t| t.retries(2))
//!     .build()
//!     .expect("valid flow");
//! registry.register_flow("checkout", flow);
//! ```

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value, json};

use super::tasks::{Registry, TaskCall, TaskError};
use super::yaml::{FlowSpec, YamlError, parse_flow_yaml};

impl Registry {
    /// Registers a typed task: its input is deserialised from the wired arguments, its output
    /// serialised into the task's output. The parameter names used for wiring are the input
    /// struct's field names.
    pub fn register_fn<I, O, E, F, Fut>(&mut self, callable: &str, f: F) -> &mut Registry
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
    {
        self.register_fn_with_call(callable, move |input: I, _call: TaskCall| f(input))
    }

    /// Like [`Registry::register_fn`], also giving the task its [`TaskCall`] (run id, params,
    /// cancel token).
    pub fn register_fn_with_call<I, O, E, F, Fut>(&mut self, callable: &str, f: F) -> &mut Registry
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(I, TaskCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
    {
        let params: Vec<&'static str> = struct_fields::<I>().to_vec();
        let f = Arc::new(f);
        let name = callable.to_string();
        self.register(callable, &params, move |call: TaskCall| {
            let f = f.clone();
            let name = name.clone();
            async move {
                let input: I = serde_json::from_value(Value::Object(call.args.clone()))
                    .map_err(|e| TaskError::new(format!("invalid inputs for {name}: {e}")))?;
                let output = f(input, call)
                    .await
                    .map_err(|e| TaskError::new(e.to_string()))?;
                serde_json::to_value(output).map_err(|e| {
                    TaskError::new(format!("{name} returned a value that is not JSON: {e}"))
                })
            }
        })
    }

    /// Resolves flow names not registered with [`Registry::register_flow`] by calling `f` (the
    /// original's `flow_resolver`); `None` means not found.
    pub fn flow_resolver(
        &mut self,
        f: impl Fn(&str) -> Option<FlowSpec> + Send + Sync + 'static,
    ) -> &mut Registry {
        self.set_flow_resolver(Arc::new(f));
        self
    }
}

/// The field names of a struct `T` deserialises from (empty for maps and non-structs).
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// Builds a validated [`FlowSpec`] in Rust (the same rules as a flow.yaml).
#[derive(Debug, Clone)]
pub struct FlowBuilder {
    graph: String,
    defaults: Map<String, Value>,
    tasks: Map<String, Value>,
}

/// Options of one task in a [`FlowBuilder`].
#[derive(Debug, Clone, Default)]
pub struct TaskOptions(Map<String, Value>);

impl TaskOptions {
    /// An explicit input (a literal, or a selector string like `$node.a.output`).
    pub fn input(mut self, name: &str, value: impl Into<Value>) -> Self {
        let inputs = self.0.entry("inputs").or_insert_with(|| json!({}));
        if let Value::Object(m) = inputs {
            m.insert(name.to_string(), value.into());
        }
        self
    }
    pub fn retries(self, n: u32) -> Self {
        self.set("retries", n)
    }
    pub fn timeout_sec(self, secs: f64) -> Self {
        self.set("timeout_sec", secs)
    }
    /// `stop`, `isolate` or `continue`.
    pub fn fail_policy(self, policy: &str) -> Self {
        self.set("fail_policy", policy)
    }
    pub fn cache_ttl_sec(self, secs: f64) -> Self {
        self.set("cache_ttl_sec", secs)
    }
    pub fn circuit_breaker(self, failure_threshold: u32, reset_after_sec: f64) -> Self {
        self.set(
            "circuit_breaker",
            json!({"failure_threshold": failure_threshold, "reset_after_sec": reset_after_sec}),
        )
    }
    /// Any other task key of flow.yaml.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }
}

impl FlowBuilder {
    /// A flow with this graph (the graph language of flow.yaml).
    pub fn new(graph: &str) -> FlowBuilder {
        FlowBuilder {
            graph: graph.to_string(),
            defaults: Map::new(),
            tasks: Map::new(),
        }
    }

    /// A default param.
    pub fn default_param(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.defaults.insert(name.to_string(), value.into());
        self
    }

    /// A task named `name` calling `callable`, configured by `options`.
    pub fn task(
        mut self,
        name: &str,
        callable: &str,
        options: impl FnOnce(TaskOptions) -> TaskOptions,
    ) -> Self {
        let mut o = options(TaskOptions::default()).0;
        o.insert("callable".into(), callable.into());
        self.tasks.insert(name.to_string(), Value::Object(o));
        self
    }

    /// Validates like a flow.yaml upload (same reason codes).
    pub fn build(self) -> Result<FlowSpec, YamlError> {
        let doc = json!({"version": 1, "flow": {"graph": self.graph, "defaults": self.defaults}, "tasks": self.tasks});
        let yaml = serde_yaml::to_string(&doc).map_err(|e| YamlError::detail("invalid_yaml", e))?;
        parse_flow_yaml(yaml.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct In {
        price: f64,
        #[serde(default)]
        rate: Option<f64>,
    }

    #[test]
    fn struct_fields_are_the_parameter_names() {
        assert_eq!(struct_fields::<In>(), &["price", "rate"]);
        assert!(struct_fields::<serde_json::Value>().is_empty());
    }

    #[test]
    fn built_flows_are_validated_like_yaml() {
        let flow = FlowBuilder::new("a >> b")
            .task("a", "pyoco:echo", |t| t.input("value", 1))
            .task("b", "m:f", |t| t.retries(2).timeout_sec(1.5))
            .default_param("x", 3)
            .build()
            .unwrap();
        assert_eq!(flow.task("b").unwrap().policy.retries, 2);
        assert_eq!(flow.defaults["x"], json!(3));
        let err = FlowBuilder::new("a >> missing")
            .task("a", "pyoco:echo", |t| t)
            .build()
            .unwrap_err();
        assert_eq!(err.code, "unknown_graph_task");
        let err = FlowBuilder::new("a")
            .task("a", "pyoco:echo", |t| t.fail_policy("maybe"))
            .build()
            .unwrap_err();
        assert_eq!(err.code, "invalid_task_fail_policy");
    }
}
