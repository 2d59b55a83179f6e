//! MCP and JSON-RPC rules that do not depend on the transport: a client body read once
//! into its messages (`client`), the proxy's JSON-RPC answers (`jsonrpc`), messages
//! through the plugin chain with every drop answered for (`messages`), and the legacy
//! transport's `endpoint` rewrite (`legacy`). HTTP is the proxy's business; a stdio
//! transport uses the same rules.

pub mod client;
pub mod jsonrpc;
pub mod legacy;
pub mod messages;
