//! Flow definitions and execution: the graph language ([`graph`]), flow.yaml validation
//! ([`yaml`]), task callables ([`tasks`]) and the DAG executor ([`engine`]).
pub mod builtins;
pub mod embed;
pub mod engine;
pub mod graph;
pub mod policy;
pub mod python;
pub mod services;
pub mod tasks;
pub mod yaml;
