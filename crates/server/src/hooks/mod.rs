//! Calls to the operator's backend: hooks (connect, subscribe, publish,
//! rpc, refresh) and lifecycle events. Only URLs from the configuration are
//! ever called, never one a client names.
//!
//! This layer knows HTTP, JSON and the signature; it knows nothing of
//! sessions: the engine asks, and decides what an answer means.

mod client;

pub use client::{sign, CallError, HookClient, SIGNATURE_HEADER, TIMESTAMP_HEADER};
