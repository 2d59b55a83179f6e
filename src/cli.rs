//! Command-line flags, turned into a [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::plugin::{FailurePolicy, PluginLimits, PluginSource, PluginSpec};
use crate::proxy::ProxySettings;

/// sluice: a reverse proxy for MCP servers that runs every Server-Sent Event through a
/// chain of sandboxed WebAssembly plugins (pass, drop or modify).
///
/// Example: sluice --upstream http://127.0.0.1:8000 --plugin redact.wasm --plugin-config '{"patterns":["sk-[A-Za-z0-9]+"]}'
///
/// Try it with no other software: sluice demo
#[derive(Debug, Parser)]
#[command(name = "sluice", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an embedded MCP-shaped upstream, the proxy with the built-in demo plugin in
    /// front of it, and a client that prints every event it receives.
    Demo(DemoArgs),
}

/// Flags of `sluice demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address the demo proxy listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Exit after the demo client has run, instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

/// Flags of the proxy itself.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address to listen on. Loopback by default; listening elsewhere exposes the
    /// upstream to the network.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SLUICE_LISTEN")]
    pub listen: SocketAddr,

    /// Base URL of the upstream MCP server (http://host:port[/prefix]). A client's
    /// request path and query are appended to it: a client of http://127.0.0.1:8080/mcp
    /// reaches <upstream>/mcp.
    #[arg(long, env = "SLUICE_UPSTREAM")]
    pub upstream: Option<String>,

    /// A plugin (a WebAssembly component of world sluice:plugin/filter or
    /// interceptor). Repeat for a chain; plugins run in the order given.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    pub plugins: Vec<PathBuf>,

    /// Configuration string for the --plugin just before it, handed to the plugin's
    /// `init` (often JSON). `@path` reads it from a file.
    #[arg(long = "plugin-config", value_name = "CONFIG")]
    pub plugin_configs: Vec<String>,

    /// What happens to an event a plugin fails on (trap, deadline, memory cap):
    /// `open` passes it unchanged, `closed` drops it. The failing plugin gets a fresh
    /// instance either way.
    #[arg(long, value_enum, default_value_t = FailureArg::Open)]
    pub plugin_failure: FailureArg,

    /// Deadline of one plugin call, in milliseconds.
    #[arg(long, default_value_t = 10, value_name = "MS")]
    pub plugin_deadline_ms: u64,

    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub plugin_memory_mib: usize,

    /// Largest SSE event, request body or JSON response, in bytes. A larger SSE event
    /// ends its stream with an error; a larger body is refused.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_event_bytes: usize,

    /// A browser Origin allowed besides loopback ones (repeatable; `*` allows any).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
}

/// `--plugin-failure` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailureArg {
    /// Pass the event unchanged.
    Open,
    /// Drop the event.
    Closed,
}

/// A command line that cannot be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Flags clap rejected (also `--help` and `--version`).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// `--upstream` is required to run the proxy.
    #[error("--upstream is required (or run `sluice demo` to try sluice without an upstream)")]
    NoUpstream,
    /// A `--plugin-config` with no `--plugin` before it, or two for one plugin.
    #[error("--plugin-config {0:?} must follow the --plugin it configures (one per plugin)")]
    OrphanConfig(String),
    /// `--plugin-config @file` could not be read.
    #[error("--plugin-config {path}: {source}")]
    ConfigFile {
        path: String,
        source: std::io::Error,
    },
    /// A numeric flag out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Parses a command line (including the program name).
pub fn parse<I, T>(args: I) -> Result<(Cli, ArgMatches), CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok((cli, matches))
}

impl RunArgs {
    /// The proxy configuration; `matches` gives the flag order that pairs each
    /// `--plugin-config` with its `--plugin`.
    pub fn into_config(self, matches: &ArgMatches) -> Result<Config, CliError> {
        let upstream = self.upstream.clone().ok_or(CliError::NoUpstream)?;
        if self.plugin_deadline_ms == 0 {
            return Err(CliError::Invalid(
                "--plugin-deadline-ms must be at least 1".into(),
            ));
        }
        if self.plugin_memory_mib == 0 {
            return Err(CliError::Invalid(
                "--plugin-memory-mib must be at least 1".into(),
            ));
        }
        if self.max_event_bytes < 1024 {
            return Err(CliError::Invalid(
                "--max-event-bytes must be at least 1024".into(),
            ));
        }
        let limits = PluginLimits {
            deadline: Duration::from_millis(self.plugin_deadline_ms),
            memory_bytes: self.plugin_memory_mib << 20,
            failure: match self.plugin_failure {
                FailureArg::Open => FailurePolicy::Open,
                FailureArg::Closed => FailurePolicy::Closed,
            },
        };
        let configs = pair_configs(matches, &self.plugin_configs, self.plugins.len())?;
        let mut names: Vec<String> = Vec::new();
        let mut plugins = Vec::new();
        for (path, config) in self.plugins.into_iter().zip(configs) {
            let name = unique_name(&path, &names);
            names.push(name.clone());
            plugins.push(PluginSpec {
                name,
                source: PluginSource::File(path),
                config: read_config(config)?,
                limits,
            });
        }
        Ok(Config {
            listen: self.listen,
            upstream,
            plugins,
            proxy: ProxySettings {
                max_event_bytes: self.max_event_bytes,
                allowed_origins: self.allowed_origins,
            },
        })
    }
}

/// For each plugin (by position), the `--plugin-config` that follows it, if any.
fn pair_configs(
    matches: &ArgMatches,
    configs: &[String],
    plugins: usize,
) -> Result<Vec<Option<String>>, CliError> {
    let mut paired = vec![None; plugins];
    let plugin_at: Vec<usize> = matches
        .indices_of("plugins")
        .map(Iterator::collect)
        .unwrap_or_default();
    let config_at: Vec<usize> = matches
        .indices_of("plugin_configs")
        .map(Iterator::collect)
        .unwrap_or_default();
    for (config, at) in configs.iter().zip(config_at) {
        let owner = plugin_at.iter().rposition(|&p| p < at);
        match owner {
            Some(i) if paired[i].is_none() => paired[i] = Some(config.clone()),
            _ => return Err(CliError::OrphanConfig(config.clone())),
        }
    }
    Ok(paired)
}

fn read_config(config: Option<String>) -> Result<String, CliError> {
    match config {
        None => Ok(String::new()),
        Some(c) => match c.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|source| CliError::ConfigFile {
                path: path.to_string(),
                source,
            }),
            None => Ok(c),
        },
    }
}

/// The file stem, made unique in the chain ("redact", "redact-2").
fn unique_name(path: &std::path::Path, taken: &[String]) -> String {
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

    fn config(args: &[&str]) -> Result<Config, CliError> {
        let (cli, matches) = parse(std::iter::once("sluice").chain(args.iter().copied()))?;
        cli.run.into_config(&matches)
    }

    #[test]
    fn each_plugin_config_goes_to_the_plugin_before_it() {
        let c = config(&[
            "--upstream",
            "http://127.0.0.1:9",
            "--plugin",
            "a.wasm",
            "--plugin-config",
            "A",
            "--plugin",
            "b.wasm",
            "--plugin",
            "a.wasm",
            "--plugin-config",
            "C",
        ])
        .unwrap();
        let got: Vec<(&str, &str)> = c
            .plugins
            .iter()
            .map(|p| (p.name.as_str(), p.config.as_str()))
            .collect();
        assert_eq!(got, vec![("a", "A"), ("b", ""), ("a-2", "C")]);
    }

    #[test]
    fn a_config_without_its_plugin_is_refused() {
        let err = config(&[
            "--upstream",
            "http://x",
            "--plugin-config",
            "A",
            "--plugin",
            "a.wasm",
        ])
        .unwrap_err();
        assert!(matches!(err, CliError::OrphanConfig(c) if c == "A"));
        let err = config(&[
            "--upstream",
            "http://x",
            "--plugin",
            "a.wasm",
            "--plugin-config",
            "A",
            "--plugin-config",
            "B",
        ])
        .unwrap_err();
        assert!(matches!(err, CliError::OrphanConfig(c) if c == "B"));
    }

    #[test]
    fn defaults_are_loopback_fail_open_and_ten_milliseconds() {
        let c = config(&["--upstream", "http://127.0.0.1:9", "--plugin", "p.wasm"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        let limits = c.plugins[0].limits;
        assert_eq!(limits.deadline, Duration::from_millis(10));
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.failure, FailurePolicy::Open);
        assert_eq!(c.proxy.max_event_bytes, 4 << 20);
    }

    #[test]
    fn flags_override_the_defaults() {
        let c = config(&[
            "--upstream",
            "http://127.0.0.1:9",
            "--plugin",
            "p.wasm",
            "--plugin-failure",
            "closed",
            "--plugin-deadline-ms",
            "50",
            "--plugin-memory-mib",
            "4",
            "--max-event-bytes",
            "2048",
            "--allow-origin",
            "https://app.example",
        ])
        .unwrap();
        let limits = c.plugins[0].limits;
        assert_eq!(limits.failure, FailurePolicy::Closed);
        assert_eq!(limits.deadline, Duration::from_millis(50));
        assert_eq!(limits.memory_bytes, 4 << 20);
        assert_eq!(c.proxy.max_event_bytes, 2048);
        assert_eq!(
            c.proxy.allowed_origins,
            vec!["https://app.example".to_string()]
        );
    }

    #[test]
    fn running_without_an_upstream_says_how_to_try_the_demo() {
        let err = config(&[]).unwrap_err();
        assert!(err.to_string().contains("sluice demo"));
    }

    #[test]
    fn a_config_file_is_read_with_at() {
        let path = std::env::temp_dir().join(format!("sluice-cli-{}.json", std::process::id()));
        std::fs::write(&path, "{\"x\":1}").unwrap();
        let arg = format!("@{}", path.display());
        let c = config(&[
            "--upstream",
            "http://x",
            "--plugin",
            "p.wasm",
            "--plugin-config",
            &arg,
        ])
        .unwrap();
        assert_eq!(c.plugins[0].config, "{\"x\":1}");
        std::fs::remove_file(path).unwrap();
        assert!(matches!(
            config(&[
                "--upstream",
                "http://x",
                "--plugin",
                "p.wasm",
                "--plugin-config",
                "@/nonexistent/x"
            ]),
            Err(CliError::ConfigFile { .. })
        ));
    }
}
