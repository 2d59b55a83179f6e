//! MCP and JSON-RPC rules that do not depend on the transport: what a message must look
//! like before a plugin sees it, and after a plugin changed it.

pub mod jsonrpc;
pub mod legacy;
pub mod messages;
pub mod shape;
