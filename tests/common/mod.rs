//! Shared helpers for the integration tests. Not every case uses every helper.
#![allow(dead_code)]

pub mod authz;
pub mod client;
pub mod mcp;
pub mod peers;
pub mod plugin_log;
pub mod proxy;
pub mod raw;
pub mod stdio;
pub mod tls;
