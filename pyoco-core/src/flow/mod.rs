//! Flow definitions and execution: the graph language ([`graph`]) and its expressions
//! ([`expr`]), flow.yaml validation ([`yaml`]), task callables ([`tasks`]), the DAG executor
//! ([`engine`]) and the control-flow executor (`control`, for graphs with switch, repeat,
//! foreach or until).
pub mod builtins;
mod control;
pub mod embed;
pub mod engine;
pub mod expr;
pub mod graph;
pub mod plan;
pub mod policy;
pub mod python;
pub mod services;
pub mod tasks;
pub mod yaml;
pub mod yaml_guard;
