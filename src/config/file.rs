//! The `--config` TOML file: the chain (each plugin's path, configuration, failure
//! policy, deadline, memory cap, fuel and capabilities) and the proxy settings.
//!
//! The format is documented in `docs/configuration.md`; `examples/sluice.toml` is a
//! complete example. Every error names the file, the line and column, and the field
//! (`sluice.toml:12:11: plugin[1].failure: unknown variant ...`), for syntax and type
//! errors (from `toml`'s spans and `serde_path_to_error`'s paths) as well as for the
//! checks made after deserialisation (from `toml::Spanned` fields). A file is read in
//! full and checked in full before anything is used, so a reload never half-applies.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_path_to_error::Segment;
use toml::Spanned;

use super::{LimitOverrides, unique_name};
use crate::plugin::{
    Capabilities, FailurePolicy, PluginLimits, PluginSource, PluginSpec, PowerGrants,
};

/// Largest `memory_mib`: a 32-bit linear memory cannot grow past 4 GiB.
pub const MAX_MEMORY_MIB: usize = 4096;

/// Smallest `max_event_bytes` (the floor `--max-event-bytes` has too): below it, an
/// ordinary MCP response would not fit.
pub const MIN_EVENT_BYTES: usize = 1024;

/// Smallest `tape_max_bytes` other than 0 (the floor `--tape-max-bytes` has too): room
/// for the header and the first chunks.
pub const MIN_TAPE_BYTES: u64 = 1 << 20;

/// A config file, checked: every plugin file exists, every limit is usable, names are
/// unique, and relative paths are resolved against the file's directory. Settings the
/// file leaves out are `None` so that flags and built-in defaults can fill them.
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// The file, as it was given (messages name it this way).
    pub file: PathBuf,
    /// `listen`.
    pub listen: Option<SocketAddr>,
    /// `upstream`.
    pub upstream: Option<String>,
    /// `max_event_bytes`.
    pub max_event_bytes: Option<usize>,
    /// `allow_origins`.
    pub allow_origins: Option<Vec<String>>,
    /// `allow_hosts`.
    pub allow_hosts: Option<Vec<String>>,
    /// `max_batch`.
    pub max_batch: Option<usize>,
    /// `request_plugin_budget_ms`.
    pub request_plugin_budget: Option<Duration>,
    /// `plugin_workers`.
    pub plugin_workers: Option<usize>,
    /// `[defaults]`, already applied to [`FileConfig::plugins`]; kept for plugins that
    /// come from `--plugin` flags instead.
    pub defaults: LimitOverrides,
    /// The `[[plugin]]` entries in file order: limits are built-in defaults, then
    /// `[defaults]`, then the entry's own values.
    pub plugins: Vec<PluginSpec>,
    /// `header_read_timeout`, in seconds.
    pub header_read_timeout: Option<u64>,
    /// `max_connections`.
    pub max_connections: Option<usize>,
    /// `client_write_timeout`, in seconds.
    pub client_write_timeout: Option<u64>,
    /// `h2_max_concurrent_streams`.
    pub h2_max_concurrent_streams: Option<u32>,
    /// `h2_max_header_list_bytes`.
    pub h2_max_header_list_bytes: Option<u32>,
    /// `trusted_proxies`.
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    /// `tape_max_bytes`.
    pub tape_max_bytes: Option<u64>,
    /// `tape_redact_query`.
    pub tape_redact_query: Option<Vec<String>>,
    /// `upstream_ca`, resolved against the file's directory.
    pub upstream_ca: Option<PathBuf>,
    /// `upstream_client_cert`, resolved against the file's directory.
    pub upstream_client_cert: Option<PathBuf>,
    /// `upstream_client_key`, resolved against the file's directory.
    pub upstream_client_key: Option<PathBuf>,
    /// `tls_cert`, resolved against the file's directory.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`, resolved against the file's directory.
    pub tls_key: Option<PathBuf>,
    /// `[stdio]`: a stdio server as the upstream.
    pub stdio: Option<FileStdio>,
    /// `[[route]]`s, in file order.
    pub routes: Vec<FileRoute>,
    /// `[auth]`, `[upstream_auth]`, `[[rate_limit]]`.
    pub access: FileAccess,
}

/// The access tables of the file or of a route, as written (paths resolved): what a
/// route leaves out it takes from the top level ([`FileAccess::over`]).
#[derive(Debug, Clone, Default)]
pub struct FileAccess {
    /// `[auth]`: resource-server mode.
    pub auth: Option<crate::auth::ResourceSettings>,
    /// `[upstream_auth]`: what the upstream gets.
    pub upstream_auth: Option<crate::auth::CredentialSettings>,
    /// `[[rate_limit]]`s.
    pub rate_limits: Option<Vec<crate::auth::RateLimitSettings>>,
}

impl FileAccess {
    /// These tables over `base`: each one set here replaces base's.
    pub fn over(&self, base: &crate::auth::AccessSettings) -> crate::auth::AccessSettings {
        crate::auth::AccessSettings {
            resource: self.auth.clone().or_else(|| base.resource.clone()),
            upstream: self
                .upstream_auth
                .clone()
                .unwrap_or_else(|| base.upstream.clone()),
            rate_limits: self
                .rate_limits
                .clone()
                .unwrap_or_else(|| base.rate_limits.clone()),
        }
    }

    /// Relative paths in the tables, resolved against `dir` (the file's directory).
    fn resolve(mut self, dir: &Path) -> Self {
        if let Some(auth) = &mut self.auth {
            auth.resolve_paths(dir);
        }
        if let Some(upstream) = &mut self.upstream_auth {
            upstream.resolve_paths(dir);
        }
        self
    }
}

/// A route name: letters, digits, `.`, `_`, `-`, not starting with `.` (it names a
/// directory under `--record`).
fn is_route_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A `[[route]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    stdio: Option<FileStdio>,
    #[serde(default, rename = "plugin")]
    plugins: Option<Vec<RawPlugin>>,
    auth: Option<crate::auth::ResourceSettings>,
    upstream_auth: Option<crate::auth::CredentialSettings>,
    rate_limit: Option<Vec<crate::auth::RateLimitSettings>>,
}

/// A `[[route]]`, checked: requests whose path starts with `prefix` (or whose `Host`
/// is `host`) go to this upstream through this chain.
#[derive(Debug, Clone)]
pub struct FileRoute {
    /// `name` (default: the prefix without its slashes, or the host): the route's label
    /// in logs, metrics and tapes.
    pub name: String,
    /// `prefix`: a path prefix, `/` then segments, no trailing slash.
    pub prefix: Option<String>,
    /// `host`: a host name, matched against `Host` without its port.
    pub host: Option<String>,
    /// `upstream`.
    pub upstream: Option<String>,
    /// `[route.stdio]`.
    pub stdio: Option<FileStdio>,
    /// `[[route.plugin]]`; `None`: the route runs the file's top-level chain.
    pub plugins: Option<Vec<PluginSpec>>,
    /// `[route.auth]`, `[route.upstream_auth]`, `[[route.rate_limit]]`.
    pub access: FileAccess,
}

/// The file's `[stdio]` table: a command sluice starts, one process per session.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileStdio {
    /// `command`: the program and its arguments.
    pub command: Vec<String>,
    /// `env`: variables set on top of sluice's environment.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// `cwd`: the working directory (relative to the file's directory).
    pub cwd: Option<PathBuf>,
    /// `max_processes`.
    pub max_processes: Option<usize>,
    /// `session_idle_timeout_secs` (0: none).
    pub session_idle_timeout_secs: Option<u64>,
    /// `garbage`: `end` or `skip`.
    pub garbage: Option<crate::upstream::stdio::Garbage>,
    /// `shared`: one process for every session (ids remapped).
    pub shared: Option<bool>,
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the config file: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, does not have the expected shape, or a value is
    /// unusable. `field` is empty for a syntax error.
    #[error("{}:{line}:{column}: {}{message}", .file.display(), field_prefix(.field))]
    Invalid {
        /// The file, as given.
        file: PathBuf,
        /// 1-based line of the offending value (or key).
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Where in the document: `plugin[1].failure` (`plugin[0]` is the first
        /// `[[plugin]]`), `defaults.deadline_ms`, `listen`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Reads, parses and checks the config file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and checks `text` as the content of the file `path`: relative paths in it
/// resolve against `path`'s directory, and the files they name must exist.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let src = Source { file: path, text };
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| src.toml_error(&e, ""))?;
    let raw: RawFile = serde_path_to_error::deserialize(deserializer)
        .map_err(|e| src.toml_error(e.inner(), &field_path(e.path())))?;
    src.build(raw)
}

/// The file as written. `Spanned` fields are the ones a later check may point at.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    listen: Option<SocketAddr>,
    upstream: Option<Spanned<String>>,
    max_event_bytes: Option<Spanned<usize>>,
    allow_origins: Option<Vec<String>>,
    allow_hosts: Option<Vec<String>>,
    max_batch: Option<Spanned<usize>>,
    request_plugin_budget_ms: Option<Spanned<u64>>,
    plugin_workers: Option<Spanned<usize>>,
    #[serde(default)]
    defaults: RawLimits,
    #[serde(default, rename = "plugin")]
    plugins: Vec<RawPlugin>,
    header_read_timeout: Option<Spanned<u64>>,
    max_connections: Option<Spanned<usize>>,
    client_write_timeout: Option<Spanned<u64>>,
    h2_max_concurrent_streams: Option<Spanned<u32>>,
    h2_max_header_list_bytes: Option<Spanned<u32>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
    tape_max_bytes: Option<Spanned<u64>>,
    stdio: Option<Spanned<FileStdio>>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    auth: Option<crate::auth::ResourceSettings>,
    upstream_auth: Option<crate::auth::CredentialSettings>,
    rate_limit: Option<Vec<crate::auth::RateLimitSettings>>,
    tape_redact_query: Option<Vec<String>>,
    upstream_ca: Option<PathBuf>,
    upstream_client_cert: Option<PathBuf>,
    upstream_client_key: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    failure: Option<RawFailure>,
    deadline_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<usize>>,
    fuel: Option<Spanned<u64>>,
    max_message_bytes: Option<Spanned<usize>>,
}

/// One `[[plugin]]`. The limit fields repeat [`RawLimits`]: `serde(flatten)` would
/// lose both `deny_unknown_fields` and the spans.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    path: Spanned<PathBuf>,
    name: Option<Spanned<String>>,
    config: Option<Spanned<toml::Value>>,
    failure: Option<RawFailure>,
    deadline_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<usize>>,
    fuel: Option<Spanned<u64>>,
    max_message_bytes: Option<Spanned<usize>>,
    capabilities: Option<RawCapabilities>,
    /// Request headers a 0.2 plugin may read (`context.header`).
    headers: Option<Vec<Spanned<String>>>,
    /// The bounds of a 0.2 plugin's state store.
    state: Option<RawState>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    max_entries: Option<Spanned<usize>>,
    max_bytes: Option<Spanned<usize>>,
    max_entry_bytes: Option<Spanned<usize>>,
    max_ttl_secs: Option<Spanned<u64>>,
    keep_on_reload: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawFailure {
    Open,
    Closed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default)]
    stdio: bool,
    read_dir: Option<Spanned<PathBuf>>,
    #[serde(default)]
    wasi: bool,
}

/// A plugin entry checked, before default names are given out.
struct Checked {
    name: Option<String>,
    path: PathBuf,
    config: String,
    limits: PluginLimits,
    capabilities: Capabilities,
    powers: PowerGrants,
}

/// The text being parsed, to turn byte spans into `file:line:column` errors.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error, field: &str) -> ConfigError {
        self.error(e.span().unwrap_or(0..0), field, e.message().trim_end())
    }

    fn build(&self, raw: RawFile) -> Result<FileConfig, ConfigError> {
        let stdio = match raw.stdio {
            Some(stdio) => {
                let span = stdio.span();
                let mut stdio = stdio.into_inner();
                if stdio.command.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(self.error(span, "stdio.command", "must name a program"));
                }
                if raw.upstream.is_some() {
                    return Err(self.error(
                        span,
                        "stdio",
                        "give either upstream or [stdio], not both",
                    ));
                }
                if stdio.max_processes == Some(0) {
                    return Err(self.error(span, "stdio.max_processes", "must be at least 1"));
                }
                let dir = self.file.parent().unwrap_or(Path::new("."));
                stdio.cwd = stdio.cwd.map(|cwd| dir.join(cwd));
                Some(stdio)
            }
            None => None,
        };
        if let Some(upstream) = &raw.upstream
            && upstream.get_ref().trim().is_empty()
        {
            return Err(self.error(upstream.span(), "upstream", "must not be empty"));
        }
        if let Some(max) = &raw.max_event_bytes
            && *max.get_ref() < MIN_EVENT_BYTES
        {
            return Err(self.error(
                max.span(),
                "max_event_bytes",
                format!("must be at least {MIN_EVENT_BYTES}"),
            ));
        }
        for (value, field) in [
            (&raw.max_batch, "max_batch"),
            (&raw.plugin_workers, "plugin_workers"),
        ] {
            if let Some(value) = value
                && *value.get_ref() == 0
            {
                return Err(self.error(value.span(), field, "must be at least 1"));
            }
        }
        if let Some(ms) = &raw.request_plugin_budget_ms
            && *ms.get_ref() == 0
        {
            return Err(self.error(ms.span(), "request_plugin_budget_ms", "must be at least 1"));
        }
        let positive = |value: &Option<Spanned<u64>>, field: &str| match value {
            Some(v) if *v.get_ref() == 0 => Err(self.error(v.span(), field, "must be at least 1")),
            _ => Ok(value.as_ref().map(|v| *v.get_ref())),
        };
        let header_read_timeout = positive(&raw.header_read_timeout, "header_read_timeout")?;
        let client_write_timeout = positive(&raw.client_write_timeout, "client_write_timeout")?;
        let widen = |v: &Option<Spanned<usize>>| {
            v.as_ref()
                .map(|v| Spanned::new(v.span(), *v.get_ref() as u64))
        };
        let max_connections =
            positive(&widen(&raw.max_connections), "max_connections")?.map(|n| n as usize);
        let narrow = |v: &Option<Spanned<u32>>| {
            v.as_ref()
                .map(|v| Spanned::new(v.span(), u64::from(*v.get_ref())))
        };
        let h2_max_concurrent_streams = positive(
            &narrow(&raw.h2_max_concurrent_streams),
            "h2_max_concurrent_streams",
        )?
        .map(|n| n as u32);
        let h2_max_header_list_bytes = positive(
            &narrow(&raw.h2_max_header_list_bytes),
            "h2_max_header_list_bytes",
        )?
        .map(|n| n as u32);
        let trusted_proxies = match &raw.trusted_proxies {
            None => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, entry)| {
                        super::parse_trusted_proxy(entry.get_ref()).map_err(|message| {
                            self.error(entry.span(), &format!("trusted_proxies[{i}]"), message)
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let tape_max_bytes = match &raw.tape_max_bytes {
            Some(max) if *max.get_ref() != 0 && *max.get_ref() < MIN_TAPE_BYTES => {
                return Err(self.error(
                    max.span(),
                    "tape_max_bytes",
                    format!("must be 0 (no cap) or at least {MIN_TAPE_BYTES}"),
                ));
            }
            max => max.as_ref().map(|m| *m.get_ref()),
        };
        let defaults = self.limits("defaults", &raw.defaults)?;
        let base = defaults.apply(PluginLimits::default());
        let dir = base_dir(self.file);

        let plugins = self.chain(raw.plugins, &dir, base)?;
        let routes = self.routes(raw.routes, &dir, base)?;
        Ok(FileConfig {
            file: self.file.to_path_buf(),
            listen: raw.listen,
            upstream: raw.upstream.map(Spanned::into_inner),
            max_event_bytes: raw.max_event_bytes.map(Spanned::into_inner),
            allow_origins: raw.allow_origins,
            allow_hosts: raw.allow_hosts,
            max_batch: raw.max_batch.map(Spanned::into_inner),
            request_plugin_budget: raw
                .request_plugin_budget_ms
                .map(|ms| Duration::from_millis(ms.into_inner())),
            plugin_workers: raw.plugin_workers.map(Spanned::into_inner),
            defaults,
            plugins,
            header_read_timeout,
            max_connections,
            client_write_timeout,
            h2_max_concurrent_streams,
            h2_max_header_list_bytes,
            trusted_proxies,
            tape_max_bytes,
            tape_redact_query: raw.tape_redact_query,
            stdio,
            routes,
            // PEM files are read (and each failure named) when sluice starts.
            upstream_ca: raw.upstream_ca.map(|p| dir.join(p)),
            upstream_client_cert: raw.upstream_client_cert.map(|p| dir.join(p)),
            upstream_client_key: raw.upstream_client_key.map(|p| dir.join(p)),
            tls_cert: raw.tls_cert.map(|p| dir.join(p)),
            tls_key: raw.tls_key.map(|p| dir.join(p)),
            access: FileAccess {
                auth: raw.auth,
                upstream_auth: raw.upstream_auth,
                rate_limits: raw.rate_limit,
            }
            .resolve(&dir),
        })
    }

    /// A list of `[[plugin]]` entries checked and named (default names step aside for
    /// explicit ones).
    fn chain(
        &self,
        raws: Vec<RawPlugin>,
        dir: &Path,
        base: PluginLimits,
    ) -> Result<Vec<PluginSpec>, ConfigError> {
        let mut checked = Vec::with_capacity(raws.len());
        // Explicit names so far, with the index of the plugin that has each.
        let mut named: Vec<(usize, String)> = Vec::new();
        for (i, plugin) in raws.into_iter().enumerate() {
            checked.push(self.plugin(i, plugin, dir, base, &mut named)?);
        }
        // Default names step aside for explicit ones, whatever their order.
        let mut taken: Vec<String> = named.into_iter().map(|(_, name)| name).collect();
        Ok(checked
            .into_iter()
            .map(|c| {
                let name = c.name.unwrap_or_else(|| {
                    let name = unique_name(&c.path, &taken);
                    taken.push(name.clone());
                    name
                });
                PluginSpec {
                    name,
                    source: PluginSource::File(c.path),
                    config: c.config,
                    limits: c.limits,
                    capabilities: c.capabilities,
                    powers: c.powers,
                }
            })
            .collect())
    }

    /// The `[[route]]`s, checked: each has a prefix or a host, one upstream, a unique
    /// name; prefixes are unique.
    fn routes(
        &self,
        raws: Vec<RawRoute>,
        dir: &Path,
        base: PluginLimits,
    ) -> Result<Vec<FileRoute>, ConfigError> {
        let mut routes: Vec<FileRoute> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let at = |field: &str| format!("route[{i}].{field}");
            let prefix = match raw.prefix {
                Some(prefix) => {
                    let value = prefix.get_ref().trim_end_matches('/').to_string();
                    if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
                        return Err(self.error(
                            prefix.span(),
                            &at("prefix"),
                            "must be a path: / then segments (e.g. /github)",
                        ));
                    }
                    Some(value)
                }
                None => None,
            };
            let host = raw.host.map(|h| h.into_inner().to_ascii_lowercase());
            let name = match (&raw.name, &prefix, &host) {
                // A tape directory under --record and a metrics label: a plain name.
                (Some(name), _, _) if is_route_name(name.get_ref()) => name.get_ref().clone(),
                (Some(name), _, _) => {
                    return Err(self.error(
                        name.span(),
                        &at("name"),
                        "must be letters, digits, '.', '_' or '-', not starting with '.'",
                    ));
                }
                (None, Some(prefix), _) if !prefix.is_empty() => {
                    prefix.trim_start_matches('/').replace('/', "-")
                }
                (None, _, Some(host)) => host.replace(
                    |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                    "-",
                ),
                _ => String::new(),
            };
            let whole = 0..0;
            if prefix.as_deref().is_none_or(str::is_empty) && host.is_none() {
                return Err(self.error(
                    raw.name.as_ref().map_or(whole.clone(), Spanned::span),
                    &format!("route[{i}]"),
                    "needs a prefix (other than /) or a host",
                ));
            }
            let upstream = raw.upstream.map(Spanned::into_inner);
            if upstream.is_some() == raw.stdio.is_some() {
                return Err(self.error(
                    whole,
                    &format!("route[{i}]"),
                    "needs exactly one of upstream = \"http(s)://…\" or [route.stdio]",
                ));
            }
            let mut stdio = raw.stdio;
            if let Some(stdio) = &mut stdio {
                if stdio.command.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(self.error(0..0, &at("stdio.command"), "must name a program"));
                }
                if stdio.max_processes == Some(0) {
                    return Err(self.error(0..0, &at("stdio.max_processes"), "must be at least 1"));
                }
                stdio.cwd = stdio.cwd.take().map(|cwd| dir.join(cwd));
            }
            if routes.iter().any(|r| r.name == name) {
                return Err(self.error(
                    0..0,
                    &at("name"),
                    format!("route name {name:?} is used twice"),
                ));
            }
            if prefix.is_some() && routes.iter().any(|r| r.prefix == prefix && r.host == host) {
                return Err(self.error(0..0, &at("prefix"), "another route has this prefix"));
            }
            let plugins = match raw.plugins {
                Some(raws) => Some(self.chain(raws, dir, base)?),
                None => None,
            };
            routes.push(FileRoute {
                name,
                prefix,
                host,
                upstream,
                stdio,
                plugins,
                access: FileAccess {
                    auth: raw.auth,
                    upstream_auth: raw.upstream_auth,
                    rate_limits: raw.rate_limit,
                }
                .resolve(dir),
            });
        }
        Ok(routes)
    }

    fn plugin(
        &self,
        i: usize,
        raw: RawPlugin,
        dir: &Path,
        base: PluginLimits,
        named: &mut Vec<(usize, String)>,
    ) -> Result<Checked, ConfigError> {
        let at = |field: &str| format!("plugin[{i}].{field}");

        let path = dir.join(raw.path.get_ref());
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(self.error(
                    raw.path.span(),
                    &at("path"),
                    format!("{} is not a file", path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.error(
                    raw.path.span(),
                    &at("path"),
                    format!("no plugin file at {}", path.display()),
                ));
            }
            Err(e) => {
                return Err(self.error(
                    raw.path.span(),
                    &at("path"),
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }

        let name = match &raw.name {
            None => None,
            Some(name) => {
                let value = name.get_ref();
                if value.trim().is_empty() {
                    return Err(self.error(name.span(), &at("name"), "must not be empty"));
                }
                if value.chars().any(char::is_control) {
                    return Err(self.error(
                        name.span(),
                        &at("name"),
                        "must not contain control characters (it is written to logs and to clients)",
                    ));
                }
                if let Some((first, _)) = named.iter().find(|(_, n)| n == value) {
                    return Err(self.error(
                        name.span(),
                        &at("name"),
                        format!("{value:?} is already the name of plugin[{first}]"),
                    ));
                }
                named.push((i, value.clone()));
                Some(value.clone())
            }
        };

        let config = match &raw.config {
            None => String::new(),
            Some(config) => config_text(config.get_ref())
                .map_err(|message| self.error(config.span(), &at("config"), message))?,
        };

        let own = RawLimits {
            failure: raw.failure,
            deadline_ms: raw.deadline_ms,
            memory_mib: raw.memory_mib,
            fuel: raw.fuel,
            max_message_bytes: raw.max_message_bytes,
        };
        let limits = self.limits(&format!("plugin[{i}]"), &own)?.apply(base);

        let mut capabilities = Capabilities::default();
        if let Some(caps) = raw.capabilities {
            capabilities.stdio = caps.stdio;
            capabilities.wasi = caps.wasi;
            if let Some(read_dir) = caps.read_dir {
                let resolved = dir.join(read_dir.get_ref());
                if !resolved.is_dir() {
                    return Err(self.error(
                        read_dir.span(),
                        &at("capabilities.read_dir"),
                        format!("{} is not a directory", resolved.display()),
                    ));
                }
                capabilities.read_dir = Some(resolved);
            }
        }

        let mut powers = PowerGrants::default();
        for header in raw.headers.iter().flatten() {
            let name = header.get_ref().to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.error(
                    header.span(),
                    &at("headers"),
                    format!("{name:?} is not a header name"),
                ));
            }
            powers.headers.push(name);
        }
        if let Some(state) = &raw.state {
            let at_least_one = |value: &Option<Spanned<usize>>, field: &str| match value {
                Some(v) if *v.get_ref() == 0 => {
                    Err(self.error(v.span(), &at(field), "must be at least 1"))
                }
                Some(v) => Ok(Some(*v.get_ref())),
                None => Ok(None),
            };
            let limits = &mut powers.state;
            if let Some(v) = at_least_one(&state.max_entries, "state.max_entries")? {
                limits.max_entries = v;
            }
            if let Some(v) = at_least_one(&state.max_bytes, "state.max_bytes")? {
                limits.max_bytes = v;
            }
            if let Some(v) = at_least_one(&state.max_entry_bytes, "state.max_entry_bytes")? {
                limits.max_entry_bytes = v;
            }
            if let Some(ttl) = &state.max_ttl_secs {
                if *ttl.get_ref() == 0 || *ttl.get_ref() > 30 * 86_400 {
                    return Err(self.error(
                        ttl.span(),
                        &at("state.max_ttl_secs"),
                        "must be from 1 to 2592000 (30 days)",
                    ));
                }
                limits.max_ttl = Duration::from_secs(*ttl.get_ref());
            }
            if let Some(keep) = state.keep_on_reload {
                limits.keep_on_reload = keep;
            }
        }

        Ok(Checked {
            name,
            path,
            config,
            limits,
            capabilities,
            powers,
        })
    }

    /// Checks one set of limits (`[defaults]` or a plugin's own); `owner` prefixes the
    /// field names in errors.
    fn limits(&self, owner: &str, raw: &RawLimits) -> Result<LimitOverrides, ConfigError> {
        let field = |name: &str| format!("{owner}.{name}");
        let deadline = match &raw.deadline_ms {
            Some(ms) if *ms.get_ref() == 0 => {
                return Err(self.error(ms.span(), &field("deadline_ms"), "must be at least 1"));
            }
            Some(ms) => Some(Duration::from_millis(*ms.get_ref())),
            None => None,
        };
        let memory_bytes = match &raw.memory_mib {
            Some(mib) if !(1..=MAX_MEMORY_MIB).contains(mib.get_ref()) => {
                return Err(self.error(
                    mib.span(),
                    &field("memory_mib"),
                    format!(
                        "must be between 1 and {MAX_MEMORY_MIB} (a 32-bit memory cannot grow past 4 GiB)"
                    ),
                ));
            }
            Some(mib) => Some(*mib.get_ref() << 20),
            None => None,
        };
        let fuel = match &raw.fuel {
            Some(fuel) if *fuel.get_ref() == 0 => {
                return Err(self.error(
                    fuel.span(),
                    &field("fuel"),
                    "must be at least 1 (leave it out for no fuel limit)",
                ));
            }
            Some(fuel) => Some(*fuel.get_ref()),
            None => None,
        };
        let max_message_bytes = match &raw.max_message_bytes {
            Some(max) if *max.get_ref() == 0 => {
                return Err(self.error(
                    max.span(),
                    &field("max_message_bytes"),
                    "must be at least 1 (leave it out for the proxy's max_event_bytes)",
                ));
            }
            Some(max) => Some(*max.get_ref()),
            None => None,
        };
        Ok(LimitOverrides {
            max_message_bytes,
            failure: raw.failure.map(|f| match f {
                RawFailure::Open => FailurePolicy::Open,
                RawFailure::Closed => FailurePolicy::Closed,
            }),
            deadline,
            memory_bytes,
            fuel,
        })
    }
}

/// The directory relative paths in `file` resolve against, made absolute so that the
/// chain means the same files whatever the working directory is at reload time.
fn base_dir(file: &Path) -> PathBuf {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    absolute.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `plugin[1].failure` from serde's path, without the private keys `toml::Spanned`
/// deserialises through.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        let key = match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
                continue;
            }
            Segment::Map { key } if key.starts_with("$__") => continue,
            Segment::Map { key } => key.as_str(),
            Segment::Enum { variant } => variant.as_str(),
            _ => "?",
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    }
    out
}

/// A plugin's configuration string: a TOML string as it is, a table or an array as
/// JSON text (keys in file order).
fn config_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Table(_) | toml::Value::Array(_) => {
            let mut out = String::new();
            write_json(value, &mut out)?;
            Ok(out)
        }
        other => Err(format!(
            "expected a string or a table, found {} (quote it to pass it as text)",
            other.type_str()
        )),
    }
}

fn write_json(value: &toml::Value, out: &mut String) -> Result<(), String> {
    match value {
        toml::Value::String(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        toml::Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => out.push_str(&n.to_string()),
            None => return Err(format!("{f} has no JSON form")),
        },
        toml::Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        // JSON has no date type: RFC 3339 text is what a plugin would parse anyway.
        toml::Value::Datetime(d) => {
            out.push_str(&serde_json::Value::from(d.to_string()).to_string())
        }
        toml::Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_json(item, out)?;
            }
            out.push(']');
        }
        toml::Value::Table(table) => {
            out.push('{');
            for (n, (key, item)) in table.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::from(key.as_str()).to_string());
                out.push(':');
                write_json(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory with a `sluice.toml` and any plugin files a test needs.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("sluice-config-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// Creates an (empty) file: path checks only need it to exist.
        fn touch(&self, relative: &str) -> PathBuf {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").unwrap();
            path
        }

        fn load(&self, text: &str) -> Result<FileConfig, ConfigError> {
            let file = self.0.join("sluice.toml");
            std::fs::write(&file, text).unwrap();
            load(&file)
        }

        /// The error's text, checked to point at `line:column` and `field`.
        fn refused(&self, text: &str, line_column: &str, field: &str) -> String {
            let err = self.load(text).unwrap_err().to_string();
            let want = format!("sluice.toml:{line_column}: {field}: ");
            assert!(err.contains(&want), "{err:?} does not contain {want:?}");
            err
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let s = Scratch::new("unknown");
        s.touch("p.wasm");
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\ncolour = 1\n",
            "3:1",
            "plugin[0].colour",
        );
        assert!(err.contains("unknown field `colour`"), "{err}");
        let err = s.refused("[[plugins]]\npath = 'p.wasm'\n", "1:3", "plugins");
        assert!(err.contains("expected one of"), "{err}");
        s.refused(
            "[defaults]\ncapabilities = {}\n",
            "2:1",
            "defaults.capabilities",
        );
        s.refused(
            "[[plugin]]\npath = 'p.wasm'\ncapabilities = { network = true }\n",
            "3:18",
            "plugin[0].capabilities.network",
        );
    }

    #[test]
    fn a_bad_failure_value_is_named_with_its_line() {
        let s = Scratch::new("failure");
        s.touch("p.wasm");
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\n\n[[plugin]]\npath = 'p.wasm'\nfailure = \"maybe\"\n",
            "6:11",
            "plugin[1].failure",
        );
        assert!(
            err.contains("unknown variant `maybe`, expected `open` or `closed`"),
            "{err}"
        );
        s.refused("[defaults]\nfailure = 1\n", "2:11", "defaults.failure");
    }

    #[test]
    fn a_zero_deadline_is_refused() {
        let s = Scratch::new("deadline");
        s.touch("p.wasm");
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\ndeadline_ms = 0\n",
            "3:15",
            "plugin[0].deadline_ms",
        );
        assert!(err.contains("at least 1"), "{err}");
        s.refused(
            "[defaults]\ndeadline_ms = 0\n",
            "2:15",
            "defaults.deadline_ms",
        );
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\ndeadline_ms = -5\n",
            "3:15",
            "plugin[0].deadline_ms",
        );
        assert!(err.contains("-5"), "{err}");
    }

    #[test]
    fn a_zero_or_huge_memory_cap_is_refused() {
        let s = Scratch::new("memory");
        s.touch("p.wasm");
        s.refused(
            "[[plugin]]\npath = 'p.wasm'\nmemory_mib = 0\n",
            "3:14",
            "plugin[0].memory_mib",
        );
        let err = s.refused(
            "[defaults]\nmemory_mib = 5000\n",
            "2:14",
            "defaults.memory_mib",
        );
        assert!(err.contains("4096"), "{err}");
    }

    #[test]
    fn a_zero_fuel_is_refused() {
        let s = Scratch::new("fuel");
        s.touch("p.wasm");
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\nfuel = 0\n",
            "3:8",
            "plugin[0].fuel",
        );
        assert!(err.contains("leave it out"), "{err}");
    }

    #[test]
    fn a_duplicate_name_is_refused() {
        let s = Scratch::new("duplicate");
        s.touch("a.wasm");
        s.touch("b.wasm");
        let err = s.refused(
            "[[plugin]]\npath = 'a.wasm'\nname = 'x'\n\n[[plugin]]\npath = 'b.wasm'\nname = 'x'\n",
            "7:8",
            "plugin[1].name",
        );
        assert!(
            err.contains("\"x\" is already the name of plugin[0]"),
            "{err}"
        );
        s.refused(
            "[[plugin]]\npath = 'a.wasm'\nname = ''\n",
            "3:8",
            "plugin[0].name",
        );
    }

    #[test]
    fn default_names_are_the_stem_made_unique_and_step_aside_for_explicit_ones() {
        let s = Scratch::new("names");
        s.touch("redact.wasm");
        let c = s
            .load(
                "[[plugin]]\npath = 'redact.wasm'\n[[plugin]]\npath = 'redact.wasm'\n\
                 [[plugin]]\npath = 'redact.wasm'\nname = 'redact'\n",
            )
            .unwrap();
        let names: Vec<&str> = c.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["redact-2", "redact-3", "redact"]);
    }

    #[test]
    fn a_missing_plugin_file_is_refused_with_its_line() {
        let s = Scratch::new("missing");
        let err = s.refused(
            "# chain\n[[plugin]]\npath = 'nope.wasm'\n",
            "3:8",
            "plugin[0].path",
        );
        assert!(err.contains("no plugin file at"), "{err}");
        assert!(err.contains("nope.wasm"), "{err}");
        std::fs::create_dir(s.0.join("dir.wasm")).unwrap();
        let err = s.refused("[[plugin]]\npath = 'dir.wasm'\n", "2:8", "plugin[0].path");
        assert!(err.contains("is not a file"), "{err}");
        s.refused("[[plugin]]\nname = 'x'\n", "1:1", "plugin[0]");
    }

    #[test]
    fn read_dir_must_be_a_directory_and_resolves_against_the_file() {
        let s = Scratch::new("read-dir");
        s.touch("p.wasm");
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\ncapabilities = { read_dir = 'p.wasm' }\n",
            "3:29",
            "plugin[0].capabilities.read_dir",
        );
        assert!(err.contains("is not a directory"), "{err}");
        std::fs::create_dir(s.0.join("data")).unwrap();
        let c = s
            .load(
                "[[plugin]]\npath = 'p.wasm'\ncapabilities = { stdio = true, read_dir = 'data' }\n\
                 [[plugin]]\npath = 'p.wasm'\n",
            )
            .unwrap();
        assert_eq!(
            c.plugins[0].capabilities,
            Capabilities {
                stdio: true,
                read_dir: Some(s.0.join("data")),
                wasi: false,
            }
        );
        assert!(c.plugins[1].capabilities.is_empty(), "none by default");
    }

    #[test]
    fn an_empty_wasi_context_is_granted_by_name() {
        let s = Scratch::new("wasi");
        s.touch("p.wasm");
        let c = s
            .load("[[plugin]]\npath = 'p.wasm'\ncapabilities = { wasi = true }\n")
            .unwrap();
        assert!(c.plugins[0].capabilities.wasi);
        assert!(!c.plugins[0].capabilities.stdio);
        assert_eq!(c.plugins[0].capabilities.read_dir, None);
    }

    #[test]
    fn an_inline_table_config_becomes_json_text_in_file_order() {
        let s = Scratch::new("inline");
        s.touch("p.wasm");
        let c = s
            .load(
                "[[plugin]]\npath = 'p.wasm'\n\
                 config = { patterns = ['sk-[a-z0-9]+', 'say \"hi\"'], marker = '*', n = 2, f = 1.5, on = true, at = 1979-05-27T07:32:00Z, nested = { b = 1, a = [] } }\n\
                 [[plugin]]\npath = 'p.wasm'\nconfig = '{\"patterns\":[]}'\n\
                 [[plugin]]\npath = 'p.wasm'\n\
                 [[plugin]]\npath = 'p.wasm'\n[plugin.config]\nmethods = ['notifications/progress']\n",
            )
            .unwrap();
        let json = &c.plugins[0].config;
        assert_eq!(
            json,
            r#"{"patterns":["sk-[a-z0-9]+","say \"hi\""],"marker":"*","n":2,"f":1.5,"on":true,"at":"1979-05-27T07:32:00Z","nested":{"b":1,"a":[]}}"#
        );
        serde_json::from_str::<serde_json::Value>(json).expect("valid JSON");
        assert_eq!(c.plugins[1].config, r#"{"patterns":[]}"#, "a string as is");
        assert_eq!(c.plugins[2].config, "", "no config: empty string");
        assert_eq!(
            c.plugins[3].config,
            r#"{"methods":["notifications/progress"]}"#
        );
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\nconfig = 5\n",
            "3:10",
            "plugin[0].config",
        );
        assert!(err.contains("expected a string or a table"), "{err}");
        let err = s.refused(
            "[[plugin]]\npath = 'p.wasm'\nconfig = { x = nan }\n",
            "3:10",
            "plugin[0].config",
        );
        assert!(err.contains("no JSON form"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_files_directory() {
        let s = Scratch::new("relative");
        let plugin = s.touch("plugins/dist/a.wasm");
        let absolute = s.touch("elsewhere/b.wasm");
        let sub = s.0.join("conf");
        std::fs::create_dir_all(&sub).unwrap();
        let file = sub.join("sluice.toml");
        std::fs::write(
            &file,
            format!(
                "[[plugin]]\npath = '../plugins/dist/a.wasm'\n[[plugin]]\npath = '{}'\n",
                absolute.display()
            ),
        )
        .unwrap();
        let c = load(&file).unwrap();
        let paths: Vec<PathBuf> = c
            .plugins
            .iter()
            .map(|p| match &p.source {
                PluginSource::File(path) => path.clone(),
                PluginSource::Bytes(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            paths[0].canonicalize().unwrap(),
            plugin.canonicalize().unwrap()
        );
        assert!(paths[0].is_absolute(), "{paths:?}");
        assert_eq!(paths[1], absolute);
        assert_eq!(c.plugins[0].name, "a");
    }

    #[test]
    fn defaults_apply_and_plugin_values_override() {
        let s = Scratch::new("defaults");
        s.touch("a.wasm");
        s.touch("b.wasm");
        let c = s
            .load(
                "[defaults]\nfailure = 'closed'\ndeadline_ms = 25\nmemory_mib = 8\nfuel = 1000\n\
                 [[plugin]]\npath = 'a.wasm'\n\
                 [[plugin]]\npath = 'b.wasm'\nfailure = 'open'\ndeadline_ms = 5\nmemory_mib = 64\nfuel = 2000\n",
            )
            .unwrap();
        let a = c.plugins[0].limits;
        assert_eq!(a.failure, FailurePolicy::Closed);
        assert_eq!(a.deadline, Duration::from_millis(25));
        assert_eq!(a.memory_bytes, 8 << 20);
        assert_eq!(a.fuel, Some(1000));
        let b = c.plugins[1].limits;
        assert_eq!(b.failure, FailurePolicy::Open);
        assert_eq!(b.deadline, Duration::from_millis(5));
        assert_eq!(b.memory_bytes, 64 << 20);
        assert_eq!(b.fuel, Some(2000));
        assert_eq!(c.defaults.deadline, Some(Duration::from_millis(25)));

        // Without [defaults], the built-in limits: no fuel limit.
        let c = s.load("[[plugin]]\npath = 'a.wasm'\n").unwrap();
        assert_eq!(c.plugins[0].limits, PluginLimits::default());
        assert!(c.defaults.is_empty());
    }

    #[test]
    fn proxy_settings_are_read_and_checked() {
        let s = Scratch::new("settings");
        let c = s
            .load(
                "listen = '127.0.0.1:9090'\nupstream = 'http://127.0.0.1:8000/mcp'\n\
                 max_event_bytes = 65536\nallow_origins = ['https://app.example']\n",
            )
            .unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.upstream.as_deref(), Some("http://127.0.0.1:8000/mcp"));
        assert_eq!(c.max_event_bytes, Some(65536));
        assert_eq!(
            c.allow_origins,
            Some(vec!["https://app.example".to_string()])
        );
        assert!(c.plugins.is_empty());

        let empty = s.load("").unwrap();
        assert_eq!(empty.listen, None);
        assert_eq!(empty.upstream, None);

        s.refused("listen = 'localhost'\n", "1:10", "listen");
        s.refused("\nmax_event_bytes = 10\n", "2:19", "max_event_bytes");
        s.refused("upstream = ''\n", "1:12", "upstream");
        s.refused("allow_origins = 'x'\n", "1:17", "allow_origins");
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let s = Scratch::new("syntax");
        let err = s.load("listen = '127.0.0.1:1'\nx = = 1\n").unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("sluice.toml:2:"), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_a_read_error() {
        let err = load(Path::new("/nonexistent/sluice.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(
            err.to_string().starts_with("/nonexistent/sluice.toml: "),
            "{err}"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_column("a\nbé=x", 5), (2, 3));
        assert_eq!(line_column("a\nbé=x", 4), (2, 2), "inside é: floored");
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc", 99), (1, 4));
    }

    /// `examples/sluice.toml`, parsed where it is shipped. Its plugins are the example
    /// plugins in `plugins/dist/`, which exist only after `plugins/build.sh`: the copy
    /// is parsed in a scratch tree with the same layout so that this test does not
    /// depend on a guest toolchain (tests/cases/config_file.rs runs the real ones).
    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../examples/sluice.toml");
        let s = Scratch::new("example");
        for name in ["dropper", "redact", "passthrough"] {
            s.touch(&format!("plugins/dist/{name}.wasm"));
        }
        let file = s.0.join("examples/sluice.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        let c = load(&file).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.upstream.as_deref(), Some("http://127.0.0.1:8000"));
        let names: Vec<&str> = c.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["dropper", "redact-secrets", "passthrough"]);
        assert_eq!(
            c.plugins[0].config,
            r#"{"methods":["notifications/progress"]}"#
        );
        let redact = &c.plugins[1];
        assert_eq!(redact.limits.failure, FailurePolicy::Closed);
        assert!(redact.limits.fuel.is_some());
        assert!(redact.capabilities.stdio);
        assert!(c.plugins[2].capabilities.is_empty());

        // In place, the only acceptable failure is plugins that were not built yet.
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sluice.toml");
        if let Err(err) = load(&shipped) {
            let text = err.to_string();
            assert!(
                text.contains("plugins/dist/") && text.contains("no plugin file"),
                "{text}"
            );
        }
    }

    #[test]
    fn connection_limits_and_trusted_proxies_are_read_and_checked() {
        let dir = Scratch::new("connections");
        let c = dir
            .load(
                "max_connections = 8\nheader_read_timeout = 5\nclient_write_timeout = 7\n\
                 h2_max_concurrent_streams = 10\nh2_max_header_list_bytes = 4096\n\
                 trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
            )
            .unwrap();
        assert_eq!(c.max_connections, Some(8));
        assert_eq!(c.header_read_timeout, Some(5));
        assert_eq!(c.client_write_timeout, Some(7));
        assert_eq!(c.h2_max_concurrent_streams, Some(10));
        assert_eq!(c.h2_max_header_list_bytes, Some(4096));
        let nets: Vec<String> = c
            .trusted_proxies
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "::1/128"]);
        dir.refused("max_connections = 0\n", "1:19", "max_connections");
        dir.refused(
            "trusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n",
            "1:34",
            "trusted_proxies[1]",
        );
    }

    #[test]
    fn tls_files_resolve_against_the_files_directory() {
        let dir = Scratch::new("tls");
        let c = dir
            .load(
                "upstream_ca = 'pki/ca.pem'\nupstream_client_cert = 'pki/me.pem'\n\
                 upstream_client_key = '/etc/sluice/me.key'\ntls_cert = 'cert.pem'\n\
                 tls_key = 'key.pem'\n",
            )
            .unwrap();
        let base = std::path::absolute(&dir.0).unwrap();
        assert_eq!(c.upstream_ca, Some(base.join("pki/ca.pem")));
        assert_eq!(c.upstream_client_cert, Some(base.join("pki/me.pem")));
        assert_eq!(
            c.upstream_client_key,
            Some(PathBuf::from("/etc/sluice/me.key"))
        );
        assert_eq!(c.tls_cert, Some(base.join("cert.pem")));
        assert_eq!(c.tls_key, Some(base.join("key.pem")));
    }

    #[test]
    fn routes_are_checked_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        let parsed = |text: &str| parse(&file, text);
        let ok = parsed(
            "[[route]]\nprefix = \"/a/b/\"\nupstream = \"http://x\"\n\n[[route]]\nhost = \"Mcp.Example\"\n[route.stdio]\ncommand = [\"srv\"]\n",
        )
        .unwrap();
        let names: Vec<_> = ok.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a-b", "mcp.example"]);
        assert_eq!(ok.routes[0].prefix.as_deref(), Some("/a/b"));
        assert!(ok.routes[0].plugins.is_none(), "no chain of its own");
        for (text, field) in [
            ("[[route]]\nupstream = \"http://x\"\n", "route[0]"),
            ("[[route]]\nprefix = \"/a\"\n", "route[0]"),
            (
                "[[route]]\nprefix = \"/a\"\nupstream = \"http://x\"\n[route.stdio]\ncommand = [\"s\"]\n",
                "route[0]",
            ),
            (
                "[[route]]\nname = \"../up\"\nprefix = \"/a\"\nupstream = \"http://x\"\n",
                "route[0].name",
            ),
            (
                "[[route]]\nprefix = \"a\"\nupstream = \"http://x\"\n",
                "route[0].prefix",
            ),
            (
                "[[route]]\nprefix = \"/a\"\n[route.stdio]\ncommand = [\"s\"]\nmax_processes = 0\n",
                "route[0].stdio.max_processes",
            ),
            (
                "[[route]]\nprefix = \"/a\"\nupstream = \"http://x\"\n[[route]]\nprefix = \"/a\"\nname = \"b\"\nupstream = \"http://y\"\n",
                "route[1].prefix",
            ),
        ] {
            match parsed(text) {
                Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
