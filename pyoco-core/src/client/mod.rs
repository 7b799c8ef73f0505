//! Clients: [`NatsClient`] talks to NATS directly (like the original's `PyocoNatsClient`);
//! [`http::HttpClient`] (feature `client`) talks to the gateway.

#[cfg(feature = "client")]
pub mod http;
mod nats;

pub use nats::NatsClient;
