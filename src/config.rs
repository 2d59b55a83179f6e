//! The validated configuration the proxy runs with, whatever it was read from.

use std::net::SocketAddr;

use crate::plugin::PluginSpec;
use crate::proxy::ProxySettings;

/// Everything `app::start` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect. Loopback by default: exposing a proxy in front of a local
    /// MCP server is a decision, not an accident.
    pub listen: SocketAddr,
    /// Base URL of the upstream MCP server; request paths are appended to its path.
    pub upstream: String,
    /// The chain, in order.
    pub plugins: Vec<PluginSpec>,
    /// Client-facing rules.
    pub proxy: ProxySettings,
}
