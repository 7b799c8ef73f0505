//! Test support, shared by the integration tests of every crate: a real nats-server per test
//! ([`NatsServer`]) or a cluster of them ([`NatsCluster`]), the gateway and a worker in-process ([`GatewayHandle`], [`WorkerHandle`],
//! or all three at once as a [`Stack`]), waiting on conditions instead of sleeping
//! ([`wait_for`], [`wait_terminal`], [`run_to_end`]), child processes that cannot outlive
//! their test ([`Spawned`]), a real PostgreSQL ([`Postgres`]), and hand-built request bodies ([`multipart`]).

mod cluster;
mod form;
mod handles;
mod nats;
mod notify;
mod postgres;
mod process;
mod proxy;
#[cfg(all(feature = "gateway", feature = "client"))]
mod stack;
mod wait;

pub use cluster::NatsCluster;
pub use form::multipart;
#[cfg(feature = "gateway")]
pub use handles::GatewayHandle;
pub use handles::WorkerHandle;
pub use nats::{NatsServer, nats_server_binary};
pub use notify::NotifySocket;
pub use postgres::{PG_USER, Postgres, postgres_bin_dir};
pub use process::{Spawned, free_port, python_tool};
pub use proxy::TcpProxy;
#[cfg(all(feature = "gateway", feature = "client"))]
pub use stack::{Stack, StackBuilder, fast_config};
pub use wait::wait_for;
#[cfg(feature = "client")]
pub use wait::{RUN_TIMEOUT, is_terminal, run_to_end, submit_yaml, wait_terminal};
