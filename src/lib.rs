//! sluice: a reverse proxy for MCP (Streamable HTTP) and any Server-Sent Events
//! upstream, which hands every event that crosses it to a chain of sandboxed
//! WebAssembly plugins that pass, drop or modify it.
//!
//! The life of a request, module by module (docs/architecture.md has the map):
//!
//! ```text
//! MCP client ──HTTP──▶ http (accept loop, limits) ─▶ proxy (Origin/Host, bounded body)
//!                        │ mcp::client::ClientBody: the body read once
//!                        ▼
//!                      mcp::messages::to_server → plugin::Session (to-server)
//!                        ▼
//!                      upstream::Http  (pooled, streaming)
//!                        │ response
//!         text/event-stream │ application/json
//!     upstream::SseEvents   │ one event
//!     (sse::Decoder, bounded buffer)
//!                        ▼
//!                      mcp::messages::to_client → plugin::Session (to-client)
//!                        ▼
//!                      sse::encode_event ──▶ client (streamed, back-pressured)
//! ```
//!
//! Tapes and metrics watch each exchange through `observe` (request, events, end);
//! the proxy does not know them.

#![deny(missing_docs)]

pub mod admin;
pub mod admin_client;
pub mod app;
pub mod auth;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error_chain;
pub mod failure;
pub mod holds;
pub mod http;
pub mod identity;
pub mod ingress;
pub mod lines;
pub mod mcp;
pub mod metrics;
pub mod observe;
pub mod plugin;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod shape;
pub mod sse;
pub mod tape;
pub mod tls;
pub mod upstream;
pub mod watch;
