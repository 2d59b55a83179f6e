//! Command-line flags, turned into a [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::{self, ChainFile, Config, ConfigError, LimitOverrides, unique_name};
use crate::mcp::messages;
use crate::plugin::{
    Capabilities, CompileCache, FailurePolicy, PluginLimits, PluginSource, PluginSpec,
};
use crate::proxy::{ConnectionLimits, ProxySettings, default_plugin_workers};

/// sluice: a reverse proxy for MCP servers that runs every Server-Sent Event through a
/// chain of sandboxed WebAssembly plugins (pass, drop or modify).
///
/// Example: sluice --upstream http://127.0.0.1:8000 --plugin redact.wasm --plugin-config '{"patterns":["sk-[A-Za-z0-9]+"]}'
///
/// Try it with no other software: sluice demo
#[derive(Debug, Parser)]
#[command(name = "sluice", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A subcommand; none runs the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The proxy's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-11-25T17:00:00Z  INFO stream{id=3}: message key=value`
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an embedded MCP-shaped upstream, the proxy with the built-in demo plugin in
    /// front of it, and a client that prints every event it receives.
    Demo(DemoArgs),
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Work with tapes (traffic recorded with --record).
    #[command(subcommand)]
    Tape(TapeCommand),
    /// Serve one MCP client on stdin and stdout, for a desktop client to launch in
    /// place of the server: each line it writes (newline-delimited JSON-RPC) passes
    /// the plugin chain to the server at --upstream (its endpoint URL, e.g.
    /// http://127.0.0.1:8000/mcp), and each message back passes the chain to stdout.
    /// Logs go to stderr (or --log-file), never stdout. Hot swap, --record,
    /// --config and --admin-listen work as for the proxy; --listen is not used.
    Stdio(Box<StdioArgs>),
    /// Print the plugin contract (WIT) this sluice implements, to build a plugin
    /// against outside a checkout: `sluice wit > wit/plugin.wit`.
    Wit(WitArgs),
    /// Ask a running proxy (its admin API, --admin-listen) to reload its chain,
    /// re-pointing plugins at other files: `sluice reload guard=./target/new.wasm`.
    /// All or nothing; exit 1 when the proxy refuses, with its reason.
    Reload(crate::admin_client::ReloadArgs),
}

/// Flags of `sluice wit`.
#[derive(Debug, clap::Args)]
pub struct WitArgs {
    /// Which version: `0.2.0` (the current contract), `0.1.0` (as first published) or
    /// `0.1.0-revised` (0.1.0 as sluice later changed it in place).
    #[arg(long = "version", value_name = "VERSION", default_value = "0.2.0")]
    pub contract: String,
}

/// Flags of `sluice stdio`: the proxy's.
#[derive(Debug, clap::Args)]
pub struct StdioArgs {
    /// The proxy's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `sluice tape ...`.
#[derive(Debug, Subcommand)]
pub enum TapeCommand {
    /// Play a tape back as an upstream server: each recorded exchange answers one
    /// request with the same method, path and JSON-RPC method, in recorded order, with
    /// the recorded status, headers and upstream events.
    Serve(TapeServeArgs),
}

/// Flags of `sluice tape serve`.
#[derive(Debug, clap::Args)]
pub struct TapeServeArgs {
    /// The tape (a .jsonl file written by --record, its .data file beside it).
    #[arg(value_name = "TAPE")]
    pub tape: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Replay events with their recorded pacing instead of at once.
    #[arg(long)]
    pub timing: bool,
}

/// `sluice plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Tell whether sluice can load a plugin, before running the proxy: component or
    /// core module, world, imports (and which the host refuses), exports, compile time,
    /// and a trial instance with `init`. Exits non-zero when sluice would refuse it.
    Check(CheckArgs),
    /// Run a plugin (several: a chain, in order) offline, as the proxy would, over a
    /// recorded tape (--tape) or hand-written JSON-RPC messages (--message, --input):
    /// each message's verdicts, time, fuel and changes, and what the server or client
    /// would receive. `--save` writes a golden file; `--expect` compares with one (exit
    /// 1 when it differs). Exit 2 on bad input.
    Test(Box<TestArgs>),
    /// Write a new plugin project into DIR, to build outside a checkout of sluice: the
    /// contract (wit/plugin.wit), a starting plugin (refuses the tools named in
    /// `{"deny": [..]}`), build.sh (checks its toolchain), README.md and test.sh.
    New(NewArgs),
}

/// Flags of `sluice plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The language.
    #[arg(long, value_enum)]
    pub lang: crate::scaffold::Lang,
    /// The project directory: created if missing; refused unless empty.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The plugin's name (`[a-z][a-z0-9-]*`; the component is NAME.wasm). Default:
    /// DIR's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Rust: depend on the sluice-plugin SDK crate at PATH. Default: the SDK in the
    /// sluice source tree this binary was built from, when there; else the published
    /// crate.
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

/// Flags of `sluice plugin check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The plugin to check.
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// Configuration string handed to the trial `init` (`@path` reads it from a file).
    /// Without it `init` gets "", and a refusal is reported as a note, not a failure.
    #[arg(long, value_name = "CONFIG", visible_alias = "plugin-config")]
    pub config: Option<String>,
    /// Check as if the plugin's configuration granted `stdio` (links WASI).
    #[arg(long)]
    pub stdio: bool,
    /// Check as if the plugin's configuration granted `read_dir = DIR` (links WASI).
    #[arg(long, value_name = "DIR")]
    pub read_dir: Option<PathBuf>,
    /// Check as if the plugin's configuration granted `wasi = true` (an empty WASI
    /// context).
    #[arg(long)]
    pub wasi: bool,
    /// The compile cache, as the proxy's.
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// The compile cache flags of `plugin check` and `plugin test`: the proxy's flags, with
/// its default directory, so that a plugin checked or tested once loads from the cache
/// (the proxy's included) and a Python plugin is not compiled again at every run.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Directory of the compile cache (as the proxy's --cache-dir). Default:
    /// $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice, else ~/.cache/sluice.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compile without the compile cache (the time is then a cold start's).
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache directory to use, `None` for no cache (the proxy's rule).
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(CompileCache::default_dir)
        }
    }
}

impl CheckArgs {
    /// What to check the plugin with: the `--config` string (read from its file for
    /// `@path`) and the capability flags.
    pub fn options(&self) -> Result<crate::check::Options, CliError> {
        Ok(crate::check::Options {
            config: self
                .config
                .clone()
                .map(|c| read_config(Some(c)))
                .transpose()?,
            capabilities: Capabilities {
                stdio: self.stdio,
                read_dir: self.read_dir.clone(),
                wasi: self.wasi,
            },
            cache_dir: self.cache.dir(),
        })
    }
}

/// Flags of `sluice plugin test`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("run_over").required(true).args(["tape", "message", "input"])))]
pub struct TestArgs {
    /// The plugins, in chain order.
    #[arg(value_name = "FILE.wasm", required = true)]
    pub files: Vec<PathBuf>,
    /// The tape to replay (written by `--record DIR`).
    #[arg(long, value_name = "TAPE")]
    pub tape: Option<PathBuf>,
    /// One JSON-RPC message to run through the chain (repeat for several, in order).
    /// A request or notification goes to the server, a response to the client, unless
    /// --direction says otherwise.
    #[arg(long, value_name = "JSON")]
    pub message: Vec<String>,
    /// A file of JSON-RPC messages to run through the chain: one per line, or one JSON
    /// document (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The direction of every --message/--input message (default: from each message).
    #[arg(long, value_enum, value_name = "DIRECTION")]
    pub direction: Option<crate::tape::harness::Leg>,
    /// The method a response answers, for a response whose request is not earlier in
    /// the input (a plugin's interest and context see it).
    #[arg(long, value_name = "NAME")]
    pub method: Option<String>,
    /// The plugin name of the nth file (default: the file stem, as the proxy names a
    /// --plugin file): a tape's steps are matched to the chain by name.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Configuration string for `init`: the nth `--config` goes to the nth file (a
    /// file without one gets ""). `@path` reads it from a file.
    #[arg(
        long = "config",
        value_name = "CONFIG",
        visible_alias = "plugin-config"
    )]
    pub configs: Vec<String>,
    /// Compare this run with a golden file written by `--save`; exit 1 if it differs.
    #[arg(long, value_name = "GOLDEN")]
    pub expect: Option<PathBuf>,
    /// Write this run's verdicts and outputs to a golden file.
    #[arg(long, value_name = "GOLDEN")]
    pub save: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Fuel limit of one plugin call (none by default, as in the proxy).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Deadline of one plugin call, in milliseconds. Generous by default (the proxy's
    /// is 10): an offline test on a busy machine must give the same verdicts every
    /// run; the time each call took is reported, and --fuel is the deterministic
    /// budget. Pass 10 to judge a plugin by the proxy's own deadline.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub deadline_ms: u64,
    /// Memory cap of one plugin instance, in MiB (as --plugin-memory-mib).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub memory_mib: usize,
    /// What a plugin failure does to the event (as --plugin-failure).
    #[arg(long, value_enum, default_value_t = FailureArg::Closed)]
    pub failure: FailureArg,
    /// Largest event a `modify` may return (as --max-event-bytes).
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_event_bytes: usize,
    /// The compile cache, as the proxy's.
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl TestArgs {
    /// What to run: the chain (named as the proxy names `--plugin` files, each with
    /// its `--config`) and the options.
    pub fn invocation(&self) -> Result<crate::tape::harness::Invocation, CliError> {
        for (flag, given) in [
            ("--config", self.configs.len()),
            ("--name", self.names.len()),
        ] {
            if given > self.files.len() {
                return Err(CliError::Invalid(format!(
                    "{given} {flag} for {} plugin file(s): the nth {flag} goes to the nth file",
                    self.files.len()
                )));
            }
        }
        if self.deadline_ms == 0 || self.memory_mib == 0 {
            return Err(CliError::Invalid(
                "--deadline-ms and --memory-mib must be at least 1".into(),
            ));
        }
        let limits = PluginLimits {
            deadline: Duration::from_millis(self.deadline_ms),
            memory_bytes: self.memory_mib << 20,
            failure: self.failure.into(),
            fuel: self.fuel,
            max_message_bytes: None,
        };
        let mut names: Vec<String> = Vec::new();
        let mut plugins = Vec::new();
        for (i, path) in self.files.iter().enumerate() {
            let name = match self.names.get(i) {
                Some(name) if names.contains(name) || name.is_empty() => {
                    return Err(CliError::Invalid(format!(
                        "--name {name:?}: each plugin needs a name of its own"
                    )));
                }
                Some(name) => name.clone(),
                None => unique_name(path, &names),
            };
            names.push(name.clone());
            plugins.push(PluginSpec {
                powers: Default::default(),
                name,
                source: PluginSource::File(path.clone()),
                config: read_config(self.configs.get(i).cloned())?,
                limits,
                capabilities: Capabilities::default(),
            });
        }
        if self.tape.is_some() && (self.direction.is_some() || self.method.is_some()) {
            return Err(CliError::Invalid(
                "--direction and --method are for --message and --input: a tape says \
                 which way each message went and what it answered"
                    .into(),
            ));
        }
        let input = match (&self.tape, &self.input) {
            (Some(tape), _) => crate::tape::harness::Input::Tape(tape.clone()),
            (None, Some(file)) => crate::tape::harness::Input::File(file.clone()),
            (None, None) => crate::tape::harness::Input::Messages(self.message.clone()),
        };
        Ok(crate::tape::harness::Invocation {
            input,
            direction: self.direction,
            method: self.method.clone(),
            cache_dir: self.cache.dir(),
            plugins,
            options: crate::tape::harness::Options {
                max_event_bytes: self.max_event_bytes,
            },
            json: self.json,
            save: self.save.clone(),
            expect: self.expect.clone(),
        })
    }
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
    /// A TOML file giving the chain (per-plugin config, failure policy, deadline,
    /// memory, fuel, capabilities) and the settings below; see docs/configuration.md.
    /// Flags given on the command line override it, and `--plugin` flags replace its
    /// chain. A reload re-reads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

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

    /// What happens to a message a plugin fails on (trap, deadline, memory cap, fuel,
    /// an oversized or malformed result): `closed` (the default) drops it, and a
    /// dropped client request gets a JSON-RPC error naming the plugin and the failure;
    /// `open` passes it unchanged, for plugins that only observe. A plugin is a guard:
    /// under `open`, whoever can make it fail (a padded message) can get past it.
    #[arg(long, value_enum, default_value_t = FailureArg::Closed)]
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

    /// The most messages in one JSON-RPC batch. A longer batch from a client is
    /// refused whole (HTTP 400 with a JSON-RPC error) before any plugin runs; from the
    /// server, its messages are not handed to plugins and its responses become errors.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_batch: usize,

    /// The most time, in milliseconds, the plugins may spend on one client request (all
    /// its messages). When it runs out, the rest of a batch is not forwarded: each
    /// request in it gets a JSON-RPC error.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub request_plugin_budget_ms: u64,

    /// How many client requests may run their plugins at once; more wait their turn.
    /// Plugin work on requests runs on a blocking pool, never on the threads that serve
    /// connections and streams. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    pub plugin_workers: Option<usize>,

    /// A browser Origin allowed besides loopback ones (repeatable; `*` allows any).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// A host name accepted in the `Host` header besides loopback names (repeatable;
    /// `*` turns the DNS-rebinding check off). Required when --listen is not a
    /// loopback address: sluice refuses to start without it.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,

    /// End an SSE stream whose upstream sends nothing, not even a keep-alive comment,
    /// for this many seconds (waiting requests get JSON-RPC errors). 0: never.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub upstream_idle_timeout: u64,

    /// On SIGTERM or Ctrl-C: stop accepting, let open streams go on for up to this
    /// many seconds, then end them cleanly (waiting requests get JSON-RPC errors).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub shutdown_grace: u64,

    /// Log lines as human-readable text or as JSON objects (one per line, with the
    /// stream's span fields), for log pipelines. Level: RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Serve the admin API (GET /admin/plugins, POST /admin/reload, GET /metrics) on
    /// this address. Off unless given; use a loopback address (any other needs a
    /// token). Requests from web pages (an Origin header, or a Host that is neither a
    /// loopback name nor an IP address) are refused.
    #[arg(long, value_name = "ADDR", env = "SLUICE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Require `Authorization: Bearer <TOKEN>` on the admin API. Required when
    /// --admin-listen is not a loopback address. Prefer SLUICE_ADMIN_TOKEN or
    /// --admin-token-file: a token on the command line is in the process list.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Do not reload when a plugin file (or the config file) changes. SIGHUP and the
    /// admin API still reload.
    #[arg(long)]
    pub no_watch: bool,

    /// Directory of the compile cache: compiled plugins are kept there so that a
    /// restart or a reload of an unchanged plugin does not compile it again. Default:
    /// $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice, else ~/.cache/sluice.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,

    /// Record the traffic to a tape in DIR (one tape per run: a JSON-lines file and the
    /// data file beside it; format in docs/tapes.md): requests, upstream events, each
    /// plugin's verdict, what the client got. Authorization and cookies are never
    /// recorded. At most 256 MiB of records wait for the disk: when the disk falls
    /// behind further, records are dropped and counted (sluice_tape_records_dropped).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Compile every plugin at every start and reload; use no compile cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Read the admin API's bearer token from this file (its first line), so that it
    /// appears neither in the process list nor in the environment.
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,

    /// Close a client connection that has not sent a complete request head this many
    /// seconds after it opened or after its previous exchange ended (slow or idle
    /// clients, kept-alive connections left idle).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub header_read_timeout: u64,

    /// Client connections served at once. Further ones are answered 503 and closed
    /// until some end (sluice_connections_refused_total counts them).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,

    /// Threads that serve the proxy's client connections, each connection start to
    /// end on one (with the upstream connections it uses; the admin API stays off
    /// them). 0: one shared work-stealing pool instead. Default: one per core. Not
    /// used by `sluice stdio`, which has no listener. At most 1024.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub workers: Option<u16>,

    /// Close a client connection when a write to it makes no progress for this many
    /// seconds: a client that stops reading its SSE stream (nginx's send_timeout).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub client_write_timeout: u64,

    /// Streams one h2 client connection may have open at once.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub h2_max_concurrent_streams: u32,

    /// Largest header list an h2 client may send, in bytes (decoded).
    #[arg(long, default_value_t = 16 << 10, value_name = "BYTES")]
    pub h2_max_header_list_bytes: u32,

    /// A front proxy (an address or a range, e.g. 10.0.0.0/8; repeatable) whose
    /// X-Forwarded-For, Forwarded and X-Real-IP headers are passed upstream. From any
    /// other client they are removed. Either way sluice appends the client's address to
    /// X-Forwarded-For and Forwarded.
    #[arg(long = "trusted-proxy", value_name = "ADDR[/LEN]", value_parser = config::parse_trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Largest tape (--record), in bytes of records and data together: at the cap,
    /// recording stops (one warning; what is not recorded is counted in
    /// sluice_tape_records_over_cap) and proxying goes on. 0: no cap. At least 1 MiB.
    #[arg(long, default_value_t = crate::tape::MAX_BYTES, value_name = "BYTES")]
    pub tape_max_bytes: u64,

    /// Query parameters whose values are written to a tape as REDACTED (names in any
    /// case, comma-separated). Giving it replaces the whole list: keep the defaults you
    /// want; an empty value redacts nothing.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_values_t = crate::tape::REDACT_QUERY.iter().map(|n| n.to_string())
    )]
    pub tape_redact_query: Vec<String>,

    /// PEM file of the CA certificates to trust for an https:// upstream, instead of
    /// the system's trust store (as curl's --cacert: only these are trusted).
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// PEM certificate chain sluice presents to an https:// upstream that asks for a
    /// client certificate (mutual TLS). Needs --upstream-client-key.
    #[arg(long, value_name = "FILE")]
    pub upstream_client_cert: Option<PathBuf>,

    /// PEM private key of --upstream-client-cert.
    #[arg(long, value_name = "FILE")]
    pub upstream_client_key: Option<PathBuf>,

    /// PEM certificate chain (the server's own certificate first): the listener speaks
    /// TLS (HTTP/1.1 and HTTP/2 by ALPN) instead of plain HTTP. Needs --tls-key. Both
    /// files are reloaded when they change (and on SIGHUP); new connections get the new
    /// certificate, and a pair that cannot be used leaves the old one serving.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A variable for the stdio server (`-- <cmd…>`), on top of sluice's own
    /// environment (repeatable).
    #[arg(long = "upstream-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub upstream_env: Vec<(String, String)>,

    /// The stdio server's working directory (sluice's own by default).
    #[arg(long, value_name = "DIR")]
    pub upstream_cwd: Option<PathBuf>,

    /// stdio server processes alive at once (one per MCP session); a new session past
    /// it is answered 503.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub upstream_max_processes: usize,

    /// End a stdio session (and its process) after this many seconds with no request
    /// waiting and no GET stream open. 0: never.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub session_idle_timeout: u64,

    /// What a line on the stdio server's stdout that is not a JSON-RPC message does:
    /// `end` the session (waiting requests get errors) or `skip` it (logged, counted).
    #[arg(long, default_value = "end", value_name = "end|skip")]
    pub upstream_garbage: crate::upstream::stdio::Garbage,

    /// A stdio MCP server to run as the upstream instead of --upstream, after `--`:
    /// `sluice --plugin p.wasm -- npx -y @modelcontextprotocol/server-everything`.
    /// sluice starts one process per MCP session and serves it as Streamable HTTP.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,

    /// Append log lines to this file instead of writing them to stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Run one stdio server process for every session instead of one per session (for
    /// a stateless server): request ids and progress tokens are remapped so clients
    /// cannot get each other's answers, a later session's initialize is answered from
    /// the first one's result, and --upstream-max-processes does not apply.
    #[arg(long)]
    pub upstream_shared: bool,

    /// What the default upstream is told about the caller, over the config file's
    /// top-level [upstream_auth]: `none` (the default: the client's Authorization is
    /// removed) or `passthrough` (the client's Authorization forwarded as is; MCP
    /// forbids it, and sluice warns). A [[route]] keeps its own table, or the file's.
    /// Token exchange is set in the file (docs/configuration.md).
    #[arg(
        long,
        value_enum,
        value_name = "none|passthrough",
        conflicts_with = "upstream_token_file"
    )]
    pub upstream_auth: Option<UpstreamAuthArg>,

    /// A file holding a token the default upstream gets as `Authorization: Bearer
    /// <token>` instead of the client's (read at start; a trailing newline is dropped).
    /// Overrides the file's top-level [upstream_auth]; a [[route]] keeps its own.
    #[arg(long, value_name = "FILE")]
    pub upstream_token_file: Option<PathBuf>,
}

/// `--upstream-auth` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpstreamAuthArg {
    /// The upstream gets no Authorization.
    None,
    /// The client's Authorization goes upstream as is.
    Passthrough,
}

impl RunArgs {
    /// `--upstream-auth` / `--upstream-token-file`, when one was given.
    fn upstream_auth(&self) -> Option<crate::auth::CredentialSettings> {
        use crate::auth::CredentialSettings;
        match (self.upstream_auth, &self.upstream_token_file) {
            (_, Some(file)) => Some(CredentialSettings::bearer_from_file(file.clone())),
            (Some(UpstreamAuthArg::Passthrough), None) => Some(CredentialSettings::passthrough()),
            (Some(UpstreamAuthArg::None), None) => Some(CredentialSettings::default()),
            (None, None) => None,
        }
    }
}

/// `KEY=VALUE`.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
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
    #[error(
        "--upstream URL or a stdio server after `--` is required (or run `sluice demo` to try sluice without an upstream)"
    )]
    NoUpstream,
    /// A `--plugin-config` with no `--plugin` before it, or two for one plugin.
    #[error("--plugin-config {0:?} must follow the --plugin it configures (one per plugin)")]
    OrphanConfig(String),
    /// `--plugin-config @file` could not be read.
    #[error("--plugin-config {path}: {source}")]
    ConfigFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A numeric flag out of range.
    #[error("{0}")]
    Invalid(String),
    /// The `--config` file cannot be used (the error names file, line and field).
    #[error(transparent)]
    File(#[from] ConfigError),
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
    /// The proxy configuration; see [`resolve`].
    pub fn into_config(self, matches: &ArgMatches) -> Result<Config, CliError> {
        resolve(&self, matches)
    }

    /// Where a reload re-reads the chain from: the `--config` file, with this command
    /// line's `--plugin-*` limit flags applied again. `None` without `--config`, or when
    /// `--plugin` flags replaced the file's chain (there is no chain to re-read then).
    pub fn chain_file(&self, matches: &ArgMatches) -> Option<ChainFile> {
        let path = self.config.clone()?;
        self.plugins.is_empty().then(|| ChainFile {
            path,
            overrides: self.limit_flags(matches),
        })
    }

    /// The `--plugin-*` limit flags set explicitly (not left at their defaults).
    fn limit_flags(&self, matches: &ArgMatches) -> LimitOverrides {
        LimitOverrides {
            failure: given(matches, "plugin_failure").then(|| self.plugin_failure.into()),
            deadline: given(matches, "plugin_deadline_ms")
                .then(|| Duration::from_millis(self.plugin_deadline_ms)),
            memory_bytes: given(matches, "plugin_memory_mib")
                .then_some(self.plugin_memory_mib << 20),
            fuel: None,
            max_message_bytes: None,
        }
    }
}

impl From<FailureArg> for FailurePolicy {
    fn from(arg: FailureArg) -> Self {
        match arg {
            FailureArg::Open => FailurePolicy::Open,
            FailureArg::Closed => FailurePolicy::Closed,
        }
    }
}

/// True when flag `id` was set on the command line or through its environment variable
/// rather than left at its default: only such a flag overrides the config file.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The file's value of a setting, unless flag `id` was given (or the file has none).
fn pick<T>(matches: &ArgMatches, id: &str, from_file: Option<T>, flag: T) -> T {
    match from_file {
        Some(value) if !given(matches, id) => value,
        _ => flag,
    }
}

/// The proxy configuration from the flags and, with `--config`, the file.
///
/// The file is the base and every flag that was given (on the command line or through
/// its environment variable) overrides it. `--plugin` flags replace the file's whole
/// chain; their limits still start from the file's `[defaults]`. `--plugin-failure`,
/// `--plugin-deadline-ms` and `--plugin-memory-mib` apply to every plugin, over the
/// file's per-plugin values: a flag is the operator's last word. `matches` tells which
/// flags were given and pairs each `--plugin-config` with its `--plugin`.
pub fn resolve(run: &RunArgs, matches: &ArgMatches) -> Result<Config, CliError> {
    let file = run.config.as_deref().map(config::load).transpose()?;
    let file = file.as_ref();
    let stdio = stdio_target(run, matches, file)?;
    if stdio.is_some() && run.upstream.is_some() {
        return Err(CliError::Invalid(
            "give either --upstream URL or a stdio server after `--`, not both".into(),
        ));
    }
    let has_routes = file.is_some_and(|f| !f.routes.is_empty());
    let upstream = match &stdio {
        Some(_) => String::new(),
        None => match run
            .upstream
            .clone()
            .or_else(|| file.and_then(|f| f.upstream.clone()))
        {
            Some(url) => url,
            // Routes alone: a request no route takes is answered 404.
            None if has_routes => String::new(),
            None => return Err(CliError::NoUpstream),
        },
    };
    if run.plugin_deadline_ms == 0 {
        return Err(CliError::Invalid(
            "--plugin-deadline-ms must be at least 1".into(),
        ));
    }
    if run.plugin_memory_mib == 0 {
        return Err(CliError::Invalid(
            "--plugin-memory-mib must be at least 1".into(),
        ));
    }
    if run.max_event_bytes < 1024 {
        return Err(CliError::Invalid(
            "--max-event-bytes must be at least 1024".into(),
        ));
    }
    if run.max_batch == 0 || run.request_plugin_budget_ms == 0 || run.plugin_workers == Some(0) {
        return Err(CliError::Invalid(
            "--max-batch, --request-plugin-budget-ms and --plugin-workers must be at least 1"
                .into(),
        ));
    }
    let listen = pick(matches, "listen", file.and_then(|f| f.listen), run.listen);
    let max_event_bytes = pick(
        matches,
        "max_event_bytes",
        file.and_then(|f| f.max_event_bytes),
        run.max_event_bytes,
    );
    let allowed_origins = pick(
        matches,
        "allowed_origins",
        file.and_then(|f| f.allow_origins.clone()),
        run.allowed_origins.clone(),
    );
    let allowed_hosts = pick(
        matches,
        "allowed_hosts",
        file.and_then(|f| f.allow_hosts.clone()),
        run.allowed_hosts.clone(),
    );

    let connections = connection_limits(run, matches, file)?;
    let trusted_proxies = pick(
        matches,
        "trusted_proxies",
        file.and_then(|f| f.trusted_proxies.clone()),
        run.trusted_proxies.clone(),
    );

    let message_limits = messages::Limits {
        max_batch: pick(
            matches,
            "max_batch",
            file.and_then(|f| f.max_batch),
            run.max_batch,
        ),
        plugin_budget: pick(
            matches,
            "request_plugin_budget_ms",
            file.and_then(|f| f.request_plugin_budget),
            Duration::from_millis(run.request_plugin_budget_ms),
        ),
    };
    let plugin_workers = run
        .plugin_workers
        .or_else(|| file.and_then(|f| f.plugin_workers))
        .unwrap_or_else(default_plugin_workers);

    let flags = run.limit_flags(matches);
    let mut limits = PluginLimits {
        deadline: Duration::from_millis(run.plugin_deadline_ms),
        memory_bytes: run.plugin_memory_mib << 20,
        failure: run.plugin_failure.into(),
        fuel: None,
        max_message_bytes: None,
    };
    if let Some(file) = file {
        limits = flags.apply(file.defaults.apply(limits));
    }
    let configs = pair_configs(matches, &run.plugin_configs, run.plugins.len())?;
    let mut names: Vec<String> = Vec::new();
    let mut plugins = Vec::new();
    for (path, config) in run.plugins.iter().zip(configs) {
        let name = unique_name(path, &names);
        names.push(name.clone());
        plugins.push(PluginSpec {
            powers: Default::default(),
            name,
            source: PluginSource::File(path.clone()),
            config: read_config(config)?,
            limits,
            capabilities: Capabilities::default(),
        });
    }
    if let Some(file) = file
        && run.plugins.is_empty()
    {
        plugins = file.plugins.clone();
        for spec in &mut plugins {
            spec.limits = flags.apply(spec.limits);
        }
    }
    let file_access = file.map_or_else(Default::default, |file| {
        file.access.over(&crate::auth::AccessSettings::default())
    });
    let routes = routes(
        run,
        matches,
        file,
        &flags,
        &plugins,
        max_event_bytes,
        &file_access,
    );
    // The flags are about the default upstream: a route's upstream is another server,
    // which a token given for this one must not reach.
    let mut access = file_access;
    if let Some(upstream) = run.upstream_auth() {
        access.upstream = upstream;
    }
    Ok(Config {
        listen,
        upstream,
        plugins,
        proxy: ProxySettings {
            max_event_bytes,
            allowed_origins,
            allowed_hosts,
            upstream_idle_timeout: (run.upstream_idle_timeout > 0)
                .then(|| Duration::from_secs(run.upstream_idle_timeout)),
            shutdown_grace: Duration::from_secs(run.shutdown_grace),
            message_limits,
            plugin_workers,
            connections,
            trusted_proxies,
        },
        cache_dir: if run.no_cache {
            None
        } else {
            run.cache_dir.clone().or_else(CompileCache::default_dir)
        },
        record_dir: run.record.clone(),
        tape: tape_settings(run, matches, file)?,
        tls: tls_settings(run, file)?,
        stdio: stdio.map(|mut stdio| {
            // The process writes one message per line; the proxy's limit applies.
            stdio.settings.max_line_bytes = max_event_bytes;
            stdio
        }),
        routes,
        access,
    })
}

/// The file's `[[route]]`s: each route's chain is its own `[[route.plugin]]`s or else
/// the top-level chain (`chain`), with the command line's limit flags applied; a reload
/// re-reads it from the file.
fn routes(
    run: &RunArgs,
    matches: &ArgMatches,
    file: Option<&config::FileConfig>,
    flags: &LimitOverrides,
    chain: &[PluginSpec],
    max_event_bytes: usize,
    access: &crate::auth::AccessSettings,
) -> Vec<config::Route> {
    let Some(file) = file else {
        return Vec::new();
    };
    let reload = run.config.clone().map(|path| ChainFile {
        path,
        overrides: run.limit_flags(matches),
    });
    file.routes
        .iter()
        .map(|route| {
            let mut plugins = route.plugins.clone().unwrap_or_else(|| chain.to_vec());
            if route.plugins.is_some() {
                for spec in &mut plugins {
                    spec.limits = flags.apply(spec.limits);
                }
            }
            config::Route {
                name: route.name.clone(),
                prefix: route.prefix.clone(),
                host: route.host.clone(),
                upstream: route.upstream.clone().unwrap_or_default(),
                stdio: route
                    .stdio
                    .as_ref()
                    .map(|stdio| stdio_from_file(stdio, max_event_bytes)),
                plugins,
                // A route without its own chain follows the top-level one, which
                // `--plugin` flags may have replaced: then there is nothing to re-read.
                reload: reload
                    .clone()
                    .filter(|_| route.plugins.is_some() || run.plugins.is_empty()),
                access: route.access.over(access),
            }
        })
        .collect()
}

/// A `[stdio]` table (the file's or a route's) as a stdio target, the built-in
/// defaults under it (the `--upstream-*` flags' defaults too).
fn stdio_from_file(stdio: &config::FileStdio, max_line_bytes: usize) -> config::StdioTarget {
    use crate::upstream::{StdioCommand, StdioSettings};
    let defaults = StdioSettings::default();
    let idle = stdio
        .session_idle_timeout_secs
        .unwrap_or(defaults.idle_timeout.map_or(0, |d| d.as_secs()));
    config::StdioTarget {
        command: StdioCommand {
            program: stdio.command[0].clone(),
            args: stdio.command[1..].to_vec(),
            env: stdio.env.clone().into_iter().collect(),
            cwd: stdio.cwd.clone(),
        },
        settings: StdioSettings {
            max_processes: stdio.max_processes.unwrap_or(defaults.max_processes),
            idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
            garbage: stdio.garbage.unwrap_or_default(),
            max_line_bytes,
            shared: stdio.shared.unwrap_or(false),
            ..defaults
        },
    }
}

/// The stdio upstream: a command after `--` (with the `--upstream-*` flags), or the
/// file's `[stdio]` (flags given override its settings).
fn stdio_target(
    run: &RunArgs,
    matches: &ArgMatches,
    file: Option<&config::FileConfig>,
) -> Result<Option<config::StdioTarget>, CliError> {
    let from_file = file.and_then(|f| f.stdio.as_ref());
    let argv = if !run.command.is_empty() {
        run.command.clone()
    } else if let Some(stdio) = from_file.filter(|_| run.upstream.is_none()) {
        stdio.command.clone()
    } else {
        return Ok(None);
    };
    if run.upstream_max_processes == 0 {
        return Err(CliError::Invalid(
            "--upstream-max-processes must be at least 1".into(),
        ));
    }
    // The file's table (or none) read as a route's is, then each flag given over it.
    let table = config::FileStdio {
        command: argv,
        ..from_file.cloned().unwrap_or_default()
    };
    // Its line limit is the proxy's event limit, which `resolve` sets.
    let mut target = stdio_from_file(
        &table,
        crate::upstream::StdioSettings::default().max_line_bytes,
    );
    target.command.env.extend(run.upstream_env.iter().cloned());
    if let Some(cwd) = &run.upstream_cwd {
        target.command.cwd = Some(cwd.clone());
    }
    let settings = &mut target.settings;
    if given(matches, "upstream_max_processes") {
        settings.max_processes = run.upstream_max_processes;
    }
    if given(matches, "session_idle_timeout") {
        settings.idle_timeout =
            (run.session_idle_timeout > 0).then(|| Duration::from_secs(run.session_idle_timeout));
    }
    if given(matches, "upstream_garbage") {
        settings.garbage = run.upstream_garbage;
    }
    if given(matches, "upstream_shared") {
        settings.shared = run.upstream_shared;
    }
    Ok(Some(target))
}

/// The TLS files from the flags, each over the file's key of the same name; a
/// certificate needs its key (and the reverse).
fn tls_settings(
    run: &RunArgs,
    file: Option<&config::FileConfig>,
) -> Result<crate::tls::TlsSettings, CliError> {
    let either = |flag: &Option<PathBuf>, key: Option<&PathBuf>| flag.clone().or(key.cloned());
    let upstream = crate::tls::UpstreamTls {
        ca: either(&run.upstream_ca, file.and_then(|f| f.upstream_ca.as_ref())),
        client_cert: either(
            &run.upstream_client_cert,
            file.and_then(|f| f.upstream_client_cert.as_ref()),
        ),
        client_key: either(
            &run.upstream_client_key,
            file.and_then(|f| f.upstream_client_key.as_ref()),
        ),
    };
    if upstream.client_cert.is_some() != upstream.client_key.is_some() {
        return Err(CliError::Invalid(
            "--upstream-client-cert and --upstream-client-key go together: give both or neither"
                .into(),
        ));
    }
    let cert = either(&run.tls_cert, file.and_then(|f| f.tls_cert.as_ref()));
    let key = either(&run.tls_key, file.and_then(|f| f.tls_key.as_ref()));
    let listener = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(crate::tls::ListenerTls { cert, key }),
        _ => {
            return Err(CliError::Invalid(
                "--tls-cert and --tls-key go together: give both or neither".into(),
            ));
        }
    };
    Ok(crate::tls::TlsSettings { upstream, listener })
}

/// `--tape-max-bytes` and `--tape-redact-query`, over the file's `tape_max_bytes` and
/// `tape_redact_query`.
fn tape_settings(
    run: &RunArgs,
    matches: &ArgMatches,
    file: Option<&config::FileConfig>,
) -> Result<crate::tape::TapeSettings, CliError> {
    let max_bytes = pick(
        matches,
        "tape_max_bytes",
        file.and_then(|f| f.tape_max_bytes),
        run.tape_max_bytes,
    );
    if max_bytes != 0 && max_bytes < config::file::MIN_TAPE_BYTES {
        return Err(CliError::Invalid(
            "--tape-max-bytes must be 0 (no cap) or at least 1048576 (1 MiB)".into(),
        ));
    }
    let redact_query = pick(
        matches,
        "tape_redact_query",
        file.and_then(|f| f.tape_redact_query.clone()),
        run.tape_redact_query.clone(),
    )
    .into_iter()
    .map(|name| name.trim().to_string())
    .filter(|name| !name.is_empty())
    .collect();
    Ok(crate::tape::TapeSettings {
        max_bytes,
        redact_query,
    })
}

/// The connection limits from the flags and the file (the file's values unless a flag
/// was given); every one must be at least 1, since each is a defence that is on.
fn connection_limits(
    run: &RunArgs,
    matches: &ArgMatches,
    file: Option<&config::FileConfig>,
) -> Result<ConnectionLimits, CliError> {
    let limits = ConnectionLimits {
        max_connections: pick(
            matches,
            "max_connections",
            file.and_then(|f| f.max_connections),
            run.max_connections,
        ),
        header_read_timeout: Duration::from_secs(pick(
            matches,
            "header_read_timeout",
            file.and_then(|f| f.header_read_timeout),
            run.header_read_timeout,
        )),
        client_write_timeout: Duration::from_secs(pick(
            matches,
            "client_write_timeout",
            file.and_then(|f| f.client_write_timeout),
            run.client_write_timeout,
        )),
        h2_max_concurrent_streams: pick(
            matches,
            "h2_max_concurrent_streams",
            file.and_then(|f| f.h2_max_concurrent_streams),
            run.h2_max_concurrent_streams,
        ),
        h2_max_header_list_bytes: pick(
            matches,
            "h2_max_header_list_bytes",
            file.and_then(|f| f.h2_max_header_list_bytes),
            run.h2_max_header_list_bytes,
        ),
    };
    let zero = [
        ("--max-connections", limits.max_connections == 0),
        (
            "--header-read-timeout",
            limits.header_read_timeout.is_zero(),
        ),
        (
            "--client-write-timeout",
            limits.client_write_timeout.is_zero(),
        ),
        (
            "--h2-max-concurrent-streams",
            limits.h2_max_concurrent_streams == 0,
        ),
        (
            "--h2-max-header-list-bytes",
            limits.h2_max_header_list_bytes == 0,
        ),
    ];
    match zero.iter().find(|(_, zero)| *zero) {
        Some((flag, _)) => Err(CliError::Invalid(format!("{flag} must be at least 1"))),
        None => Ok(limits),
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
    fn defaults_are_loopback_fail_closed_and_ten_milliseconds() {
        let c = config(&["--upstream", "http://127.0.0.1:9", "--plugin", "p.wasm"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        let limits = c.plugins[0].limits;
        assert_eq!(limits.deadline, Duration::from_millis(10));
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.failure, FailurePolicy::Closed);
        assert_eq!(limits.max_message_bytes, None);
        assert_eq!(c.proxy.max_event_bytes, 4 << 20);
        assert_eq!(c.proxy.message_limits.max_batch, 100);
        assert_eq!(c.proxy.message_limits.plugin_budget, Duration::from_secs(1));
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
    fn the_compile_cache_is_on_by_default_and_can_be_moved_or_turned_off() {
        let up = ["--upstream", "http://x"];
        let c = config(&up).unwrap();
        assert_eq!(c.cache_dir, CompileCache::default_dir());
        let c = config(&[&up[..], &["--cache-dir", "/tmp/c"]].concat()).unwrap();
        assert_eq!(c.cache_dir, Some(PathBuf::from("/tmp/c")));
        let c = config(&[&up[..], &["--no-cache"]].concat()).unwrap();
        assert_eq!(c.cache_dir, None);
        assert!(config(&[&up[..], &["--no-cache", "--cache-dir", "/x"]].concat()).is_err());
    }

    #[test]
    fn plugin_check_takes_a_file_a_config_and_grants() {
        let (cli, _) = parse([
            "sluice", "plugin", "check", "p.wasm", "--config", "{}", "--stdio",
        ])
        .unwrap();
        let Some(Command::Plugin(PluginCommand::Check(args))) = cli.command else {
            panic!("not plugin check: {:?}", cli.command);
        };
        assert_eq!(args.file, PathBuf::from("p.wasm"));
        let options = args.options().unwrap();
        assert_eq!(options.config.as_deref(), Some("{}"));
        assert!(options.capabilities.stdio);
        assert_eq!(options.capabilities.read_dir, None);
    }

    #[test]
    fn plugin_test_pairs_the_nth_config_with_the_nth_file() {
        let (cli, _) = parse([
            "sluice", "plugin", "test", "a.wasm", "b.wasm", "a.wasm", "--tape", "t.jsonl",
            "--config", "A", "--config", "B", "--fuel", "1000",
        ])
        .unwrap();
        let Some(Command::Plugin(PluginCommand::Test(args))) = cli.command else {
            panic!("not plugin test: {:?}", cli.command);
        };
        let run = args.invocation().unwrap();
        let got: Vec<(&str, &str)> = run
            .plugins
            .iter()
            .map(|p| (p.name.as_str(), p.config.as_str()))
            .collect();
        assert_eq!(got, vec![("a", "A"), ("b", "B"), ("a-2", "")]);
        assert_eq!(run.plugins[0].limits.fuel, Some(1000));
        assert!(
            matches!(&run.input, crate::tape::harness::Input::Tape(p) if p == &PathBuf::from("t.jsonl"))
        );
        // Exactly one of --tape, --message, --input.
        for args in [
            &["a.wasm"][..],
            &["a.wasm", "--tape", "t", "--message", "{}"],
            &["a.wasm", "--message", "{}", "--input", "m.jsonl"],
        ] {
            let argv = ["sluice", "plugin", "test"].iter().chain(args).copied();
            assert!(parse(argv).is_err(), "{args:?}");
        }
        // --name names the nth file; two plugins cannot share one.
        let named = |args: &[&str]| {
            let argv = [
                "sluice",
                "plugin",
                "test",
                "a.wasm",
                "b.wasm",
                "--message",
                "{}",
            ];
            let (cli, _) = parse(argv.iter().chain(args).copied()).unwrap();
            let Some(Command::Plugin(PluginCommand::Test(args))) = cli.command else {
                panic!("not plugin test");
            };
            args.invocation().map(|run| {
                run.plugins
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(named(&["--name", "guard"]).unwrap(), vec!["guard", "b"]);
        assert!(named(&["--name", "b", "--name", "b"]).is_err());
        assert!(named(&["--name", "x", "--name", "y", "--name", "z"]).is_err());
        let (cli, _) = parse([
            "sluice", "plugin", "test", "a.wasm", "--tape", "t", "--method", "m",
        ])
        .unwrap();
        let Some(Command::Plugin(PluginCommand::Test(args))) = cli.command else {
            panic!("not plugin test");
        };
        assert!(matches!(args.invocation(), Err(CliError::Invalid(_))));
        let (cli, _) = parse([
            "sluice", "plugin", "test", "a.wasm", "--tape", "t", "--config", "A", "--config", "B",
        ])
        .unwrap();
        let Some(Command::Plugin(PluginCommand::Test(args))) = cli.command else {
            panic!("not plugin test");
        };
        assert!(matches!(args.invocation(), Err(CliError::Invalid(_))));
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

    #[test]
    fn connection_limits_are_on_by_default_and_zero_is_refused() {
        let c = config(&["--upstream", "http://x"]).unwrap();
        assert_eq!(c.proxy.connections, ConnectionLimits::default());
        assert_eq!(c.proxy.connections.max_connections, 1024);
        assert_eq!(
            c.proxy.connections.header_read_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            c.proxy.connections.client_write_timeout,
            Duration::from_secs(60)
        );
        assert!(c.proxy.trusted_proxies.is_empty());
        let c = config(&[
            "--upstream",
            "http://x",
            "--max-connections",
            "8",
            "--trusted-proxy",
            "10.1.2.3",
            "--trusted-proxy",
            "192.168.0.0/16",
        ])
        .unwrap();
        assert_eq!(c.proxy.connections.max_connections, 8);
        let nets: Vec<String> = c
            .proxy
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.1.2.3/32", "192.168.0.0/16"]);
        for flag in [
            "--max-connections",
            "--header-read-timeout",
            "--client-write-timeout",
        ] {
            let err = config(&["--upstream", "http://x", flag, "0"]).unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
        }
        assert!(config(&["--upstream", "http://x", "--trusted-proxy", "nope"]).is_err());
    }

    #[test]
    fn a_listener_beyond_loopback_gets_no_implicit_host_wildcard() {
        let c = config(&["--upstream", "http://x", "--listen", "0.0.0.0:8080"]).unwrap();
        assert!(c.proxy.allowed_hosts.is_empty());
    }

    #[test]
    fn tape_settings_default_safe_and_flags_override_the_file() {
        let c = config(&["--upstream", "http://x"]).unwrap();
        assert_eq!(c.tape, crate::tape::TapeSettings::default());
        assert_eq!(c.tape.max_bytes, 1 << 30);
        assert!(c.tape.redact_query.iter().any(|n| n == "api_key"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            "upstream = \"http://x\"\ntape_max_bytes = 2097152\ntape_redact_query = [\"sid\"]\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let c = config(&["--config", &file]).unwrap();
        assert_eq!(c.tape.max_bytes, 2 << 20);
        assert_eq!(c.tape.redact_query, ["sid"]);
        let c = config(&[
            "--config",
            &file,
            "--tape-max-bytes",
            "0",
            "--tape-redact-query",
            "a, B",
        ])
        .unwrap();
        assert_eq!(c.tape.max_bytes, 0);
        assert_eq!(c.tape.redact_query, ["a", "B"]);
        let c = config(&["--upstream", "http://x", "--tape-redact-query", ""]).unwrap();
        assert!(c.tape.redact_query.is_empty());
        assert!(matches!(
            config(&["--upstream", "http://x", "--tape-max-bytes", "1000"]),
            Err(CliError::Invalid(_))
        ));
        std::fs::write(dir.path().join("small.toml"), "tape_max_bytes = 10\n").unwrap();
        let small = dir.path().join("small.toml").display().to_string();
        let error = config(&["--upstream", "http://x", "--config", &small])
            .unwrap_err()
            .to_string();
        assert!(error.contains("tape_max_bytes"), "{error}");
    }

    #[test]
    fn stdio_takes_the_proxy_flags_read_in_its_own_matches() {
        let (cli, matches) = parse([
            "sluice",
            "stdio",
            "--upstream",
            "http://127.0.0.1:9/mcp",
            "--plugin",
            "a.wasm",
            "--plugin-config",
            "A",
            "--log-file",
            "/tmp/sluice.log",
        ])
        .unwrap();
        let Some(Command::Stdio(args)) = cli.command else {
            panic!("not stdio: {:?}", cli.command);
        };
        assert_eq!(args.run.log_file, Some(PathBuf::from("/tmp/sluice.log")));
        let stdio = matches.subcommand_matches("stdio").unwrap();
        let c = args.run.into_config(stdio).unwrap();
        assert_eq!(c.upstream, "http://127.0.0.1:9/mcp");
        assert_eq!(c.plugins[0].config, "A");
    }

    #[test]
    fn a_stdio_server_is_shared_by_the_flag_or_the_file_key() {
        let shared = |c: Config| c.stdio.expect("a stdio server").settings.shared;
        assert!(!shared(config(&["--", "server"]).unwrap()));
        assert!(shared(
            config(&["--upstream-shared", "--", "server"]).unwrap()
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(&file, "[stdio]\ncommand = [\"server\"]\nshared = true\n").unwrap();
        let file = file.display().to_string();
        assert!(shared(config(&["--config", &file]).unwrap()));
        // The file's settings stand unless a flag is given; flags' env adds to the file's.
        std::fs::write(
            &file,
            "[stdio]\ncommand = [\"server\"]\nmax_processes = 3\nenv = { A = \"1\" }\n",
        )
        .unwrap();
        let stdio = |args: &[&str]| config(args).unwrap().stdio.expect("a stdio server");
        let from_file = stdio(&["--config", &file]);
        assert_eq!(from_file.settings.max_processes, 3);
        assert_eq!(from_file.command.env, [("A".to_string(), "1".to_string())]);
        let flagged = stdio(&[
            "--config",
            &file,
            "--upstream-max-processes",
            "5",
            "--upstream-env",
            "B=2",
            "--",
            "other",
        ]);
        assert_eq!(flagged.settings.max_processes, 5);
        assert_eq!(flagged.command.program, "other");
        assert_eq!(flagged.command.env.len(), 2);
    }

    #[test]
    fn upstream_auth_flags_override_the_files_top_level_table_not_its_routes() {
        use crate::auth::credential::{CredentialMode, SecretSource};
        let c = config(&["--upstream", "http://x"]).unwrap();
        assert_eq!(c.access.upstream.mode, CredentialMode::None);
        let c = config(&["--upstream", "http://x", "--upstream-auth", "passthrough"]).unwrap();
        assert_eq!(c.access.upstream.mode, CredentialMode::Passthrough);
        let c = config(&["--upstream", "http://x", "--upstream-token-file", "t"]).unwrap();
        assert_eq!(c.access.upstream.mode, CredentialMode::Static);
        assert_eq!(
            c.access.upstream.secret,
            Some(SecretSource::File("t".into()))
        );
        assert!(
            parse([
                "sluice",
                "--upstream",
                "http://x",
                "--upstream-auth",
                "none",
                "--upstream-token-file",
                "t"
            ])
            .is_err()
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            "upstream = \"http://x\"\n[upstream_auth]\nmode = \"passthrough\"\n\n[[route]]\nname = \"r\"\nprefix = \"/r\"\nupstream = \"http://y\"\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let c = config(&["--config", &file]).unwrap();
        assert_eq!(c.access.upstream.mode, CredentialMode::Passthrough);
        assert_eq!(
            c.routes[0].access.upstream.mode,
            CredentialMode::Passthrough
        );
        let c = config(&["--config", &file, "--upstream-auth", "none"]).unwrap();
        assert_eq!(c.access.upstream.mode, CredentialMode::None);
        // The route's upstream is another server: the flag is not about it.
        assert_eq!(
            c.routes[0].access.upstream.mode,
            CredentialMode::Passthrough
        );
    }
}
