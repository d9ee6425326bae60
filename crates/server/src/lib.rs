//! The Tether gateway: handshake, sessions, heartbeat, hub, history, limits,
//! transports, HTTP API, metrics and the graceful drain.
//!
//! Start one with [`listener::Server::bind`] and [`listener::Server::run`];
//! the `tether` binary does exactly that.

pub mod auth;
pub mod body;
pub mod broker;
pub mod channel_log;
pub mod channel_rules;
pub mod client_addr;
pub mod config;
pub mod doorbell;
pub(crate) mod duration;
pub mod events;
pub mod fdlimit;
pub mod gate;
pub mod handshake;
pub mod heartbeat;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod idle_pattern;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod proxy_protocol;
pub mod refused_origins;
pub mod session;
pub mod tls;
pub mod token_bucket;
pub mod transport;

pub use config::Config;
pub use listener::{Server, StartError};
