//! The validated configuration the proxy runs with, whatever it was read from: flags
//! alone (`cli`), or a TOML file ([`file`]) that flags override.

pub mod file;

#[cfg(test)]
mod access_tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plugin::{FailurePolicy, PluginLimits, PluginSpec};
use crate::proxy::ProxySettings;

pub use file::{ConfigError, FileConfig, FileStdio, load};

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
    /// Where compiled plugins are cached between starts and reloads; `None` disables
    /// the cache (every load compiles).
    pub cache_dir: Option<PathBuf>,
    /// Where to write a tape of the traffic (`--record`); `None`: no recording.
    pub record_dir: Option<PathBuf>,
    /// A tape's size cap and redacted query parameters (`--tape-max-bytes`,
    /// `--tape-redact-query`).
    pub tape: crate::tape::TapeSettings,
    /// The upstream's TLS trust and client certificate, and the listener's certificate
    /// (`--upstream-ca`, `--upstream-client-cert/-key`, `--tls-cert/-key`).
    pub tls: crate::tls::TlsSettings,
    /// A stdio server to start instead of `upstream` (`sluice [flags] -- <cmd…>`, or
    /// the file's `[stdio]`): sluice runs it, one process per session.
    pub stdio: Option<StdioTarget>,
    /// Further upstreams behind the same listener, by path prefix or host (the file's
    /// `[[route]]`s); a request no route takes goes to `upstream`/`stdio`, if any.
    pub routes: Vec<Route>,
    /// Who may call the default upstream, per-caller limits, and what the upstream is
    /// told (`[auth]`, `[upstream_auth]`, `[[rate_limit]]`, `--upstream-auth`).
    pub access: crate::auth::AccessSettings,
}

/// One `[[route]]`: which requests, where they go, through which chain.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's label in logs, metrics (`route`) and tapes.
    pub name: String,
    /// A path prefix (`/github`): `/github/mcp` reaches the upstream's `/mcp`.
    pub prefix: Option<String>,
    /// A host name, matched against the request's `Host` without its port.
    pub host: Option<String>,
    /// The upstream base URL (empty when `stdio` is given).
    pub upstream: String,
    /// A stdio server instead of `upstream`.
    pub stdio: Option<StdioTarget>,
    /// The route's chain.
    pub plugins: Vec<PluginSpec>,
    /// Where a reload re-reads the route's chain (the config file).
    pub reload: Option<ChainFile>,
    /// The route's access rules (its own tables, else the top level's).
    pub access: crate::auth::AccessSettings,
}

/// A stdio upstream: what to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioTarget {
    /// The command.
    pub command: crate::upstream::StdioCommand,
    /// Its limits.
    pub settings: crate::upstream::StdioSettings,
}

impl Config {
    /// The upstream as logs and tapes name it: the URL, or `stdio:<command>`.
    pub fn upstream_label(&self) -> String {
        match &self.stdio {
            Some(stdio) => format!("stdio:{}", stdio.command),
            None => self.upstream.clone(),
        }
    }
}

/// A partial [`PluginLimits`]: only the settings that were actually given. The file's
/// `[defaults]` and the command line's `--plugin-*` flags are both layers of this kind,
/// applied over the built-in limits in order, so "not given" never overwrites a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Failure policy.
    pub failure: Option<FailurePolicy>,
    /// Call deadline.
    pub deadline: Option<Duration>,
    /// Memory cap of one instance, in bytes.
    pub memory_bytes: Option<usize>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Largest event handed to the plugin.
    pub max_message_bytes: Option<usize>,
}

impl LimitOverrides {
    /// `limits` with every setting given here replacing its value.
    pub fn apply(&self, limits: PluginLimits) -> PluginLimits {
        PluginLimits {
            deadline: self.deadline.unwrap_or(limits.deadline),
            memory_bytes: self.memory_bytes.unwrap_or(limits.memory_bytes),
            failure: self.failure.unwrap_or(limits.failure),
            fuel: self.fuel.or(limits.fuel),
            max_message_bytes: self.max_message_bytes.or(limits.max_message_bytes),
        }
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Where a reload re-reads the chain from: the config file, with the limit flags of the
/// command line that started sluice applied again, so that a reload does not silently
/// drop `--plugin-failure closed`.
#[derive(Debug, Clone)]
pub struct ChainFile {
    /// The TOML file (as given on the command line); the one file to watch.
    pub path: PathBuf,
    /// The command line's `--plugin-*` flags, applied over every plugin of the file.
    pub overrides: LimitOverrides,
}

impl ChainFile {
    /// Re-reads and re-validates the whole file and returns the chain of the route
    /// `name` (the top-level chain when the route has no `[[route.plugin]]`).
    pub fn load_route(&self, name: &str) -> Result<Vec<PluginSpec>, ConfigError> {
        let file = load(&self.path)?;
        let route = file.routes.into_iter().find(|r| r.name == name);
        let Some(route) = route else {
            return Err(ConfigError::Invalid {
                file: self.path.clone(),
                line: 1,
                column: 1,
                field: "route".into(),
                message: format!(
                    "the route {name:?} is gone; routes are read at start (restart sluice to change them)"
                ),
            });
        };
        let mut plugins = route.plugins.unwrap_or(file.plugins);
        for spec in &mut plugins {
            spec.limits = self.overrides.apply(spec.limits);
        }
        Ok(plugins)
    }

    /// Re-reads and re-validates the whole file and returns its chain.
    pub fn load(&self) -> Result<Vec<PluginSpec>, ConfigError> {
        let mut plugins = chain_from_file(&self.path)?;
        for spec in &mut plugins {
            spec.limits = self.overrides.apply(spec.limits);
        }
        Ok(plugins)
    }
}

/// The chain of a config file, `[defaults]` applied, for a reload: the whole file is
/// validated again (a broken file must not half-apply), but only the chain is returned,
/// since the listener and upstream of a running proxy do not change.
pub fn chain_from_file(path: &Path) -> Result<Vec<PluginSpec>, ConfigError> {
    Ok(load(path)?.plugins)
}

/// A `--trusted-proxy` (or `trusted_proxies` entry): an address, or a range in CIDR
/// notation. The range's host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_trusted_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor an address range (10.0.0.0/8)"))
}

/// The file stem, made unique in the chain ("redact", "redact-2"): the default name of
/// a plugin, the same whether it came from a flag or from the file.
pub(crate) fn unique_name(path: &Path, taken: &[String]) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    let mut name = stem.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{stem}-{n}");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_give() {
        let base = PluginLimits::default();
        assert_eq!(LimitOverrides::default().apply(base), base);
        let over = LimitOverrides {
            failure: Some(FailurePolicy::Closed),
            fuel: Some(7),
            ..Default::default()
        };
        let got = over.apply(base);
        assert_eq!(got.failure, FailurePolicy::Closed);
        assert_eq!(got.fuel, Some(7));
        assert_eq!(got.deadline, base.deadline);
        assert_eq!(got.memory_bytes, base.memory_bytes);
    }

    #[test]
    fn default_names_are_the_stem_made_unique() {
        let taken = vec!["redact".to_string(), "redact-2".to_string()];
        assert_eq!(unique_name(Path::new("a/redact.wasm"), &taken), "redact-3");
        assert_eq!(unique_name(Path::new("dropper.wasm"), &taken), "dropper");
    }
}
