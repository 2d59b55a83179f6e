//! sluice: a reverse proxy for MCP (Streamable HTTP) and any Server-Sent Events
//! upstream, which hands every event that crosses it to a chain of sandboxed
//! WebAssembly plugins that pass, drop or modify it.
//!
//! The life of a request, module by module:
//!
//! ```text
//! MCP client ──HTTP──▶ proxy (ingress: origin, bounded body)
//!                        │ POST body = one event, direction to-server
//!                        ▼
//!                      plugin::Session::on_event   (init / on-stream-start / on-event …)
//!                        ▼
//!                      upstream::Http  (pooled, streaming)
//!                        │ response
//!         text/event-stream │ application/json
//!     upstream::SseEvents   │ one event
//!     (sse::Decoder, bounded buffer)
//!                        ▼
//!                      plugin::Session::on_event   (direction to-client)
//!                        ▼
//!                      sse::encode_event ──▶ client (streamed, back-pressured)
//! ```

#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error_chain;
pub mod failure;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod observe;
pub mod plugin;
pub mod proxy;
pub mod reload;
pub mod shape;
pub mod sse;
pub mod tape;
pub mod upstream;
