//! Shared helpers for the integration tests. Not every case uses every helper.
#![allow(dead_code)]

pub mod client;
pub mod mcp;
pub mod proxy;
pub mod raw;
