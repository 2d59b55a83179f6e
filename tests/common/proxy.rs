//! Starting sluice in-process on 127.0.0.1:0, and finding the plugins it runs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sluice::app::{self, Running};
use sluice::config::{Config, StdioTarget};
use sluice::metrics::StatsSnapshot;
use sluice::plugin::{PluginLimits, PluginSource, PluginSpec};
use sluice::proxy::ProxySettings;

/// An example plugin built from Rust source by `plugins/build.sh` (run here once if the
/// components are missing; `.ci/run` installs the toolchain it needs).
pub fn rust_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("plugins/dist").join(format!("{name}.wasm"));
    if !path.exists() {
        let built =
            BUILT.get_or_init(|| super::run_bash(&root.join("plugins/build.sh"), &[], false));
        if let Err(e) = built {
            panic!(
                "{} is missing and plugins/build.sh failed ({e}); run `bash plugins/setup.sh && bash plugins/build.sh` (or `bash .ci/run`)",
                path.display()
            );
        }
    }
    path
}

/// A Rust example plugin with a config.
pub fn rust(name: &str, config: &str) -> PluginSpec {
    PluginSpec {
        powers: Default::default(),
        name: name.to_string(),
        source: PluginSource::File(rust_plugin(name)),
        config: config.to_string(),
        limits: PluginLimits::default(),
        capabilities: Default::default(),
    }
}

/// A WAT fixture built into the crate by build.rs.
pub fn wat(name: &str, bytes: &'static [u8]) -> PluginSpec {
    PluginSpec {
        powers: Default::default(),
        name: name.to_string(),
        source: PluginSource::Bytes(bytes),
        config: String::new(),
        limits: PluginLimits::default(),
        capabilities: Default::default(),
    }
}

/// `spec` with the fail-open policy: a failure passes the message unchanged. Not the
/// default (a plugin is a guard); for the tests about containing a failing plugin
/// while its streams go on.
pub fn fail_open(spec: PluginSpec) -> PluginSpec {
    PluginSpec {
        powers: Default::default(),
        limits: PluginLimits {
            failure: sluice::plugin::FailurePolicy::Open,
            ..spec.limits
        },
        ..spec
    }
}

/// The admin API of `sluice` on a free loopback port, without a token: the address.
pub async fn serve_admin(sluice: &mut Running) -> std::net::SocketAddr {
    sluice
        .serve_admin("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap()
}

/// sluice in front of `upstream` (a base URL) with `plugins`, on 127.0.0.1:0.
pub async fn start(upstream: &str, plugins: Vec<PluginSpec>) -> Running {
    app::start(config(upstream, plugins))
        .await
        .expect("sluice starts")
}

/// The configuration the tests start sluice with: `upstream` and `plugins` on
/// 127.0.0.1:0, open streams ended a second into shutdown, no cache, no tape, and
/// everything else at its default; a test changes what it is about.
pub fn config(upstream: &str, plugins: Vec<PluginSpec>) -> Config {
    Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string(),
        plugins,
        proxy: ProxySettings {
            // Tests stop proxies with clients' GET streams still open; no need to wait.
            shutdown_grace: std::time::Duration::from_secs(1),
            ..ProxySettings::default()
        },
        cache_dir: None,
        record_dir: None,
        tape: Default::default(),
        stdio: None,
        routes: Vec::new(),
        tls: Default::default(),
    }
}

/// Like [`start`], with client-side settings.
pub async fn start_with(upstream: &str, plugins: Vec<PluginSpec>, proxy: ProxySettings) -> Running {
    app::start(Config {
        proxy,
        ..config(upstream, plugins)
    })
    .await
    .expect("sluice starts")
}

/// sluice in front of `upstream` with access rules that name its own URL (`access`
/// gets `http://127.0.0.1:<port>`): the port is chosen first, then sluice listens on it.
pub async fn start_with_access(
    upstream: &str,
    plugins: Vec<PluginSpec>,
    access: impl FnOnce(&str) -> sluice::auth::AccessSettings,
) -> Running {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    app::start(Config {
        access: access(&format!("http://{listen}")),
        listen,
        ..config(upstream, plugins)
    })
    .await
    .expect("sluice starts")
}

/// sluice in front of a stdio server (one process per session) with `plugins`, on
/// 127.0.0.1:0.
pub async fn start_stdio(stdio: StdioTarget, plugins: Vec<PluginSpec>) -> Running {
    app::start(Config {
        stdio: Some(stdio),
        ..config("", plugins)
    })
    .await
    .expect("sluice starts")
}

/// Like [`start`], with TLS settings (an `https://` upstream's trust, a TLS listener).
pub async fn start_tls(
    upstream: &str,
    plugins: Vec<PluginSpec>,
    tls: sluice::tls::TlsSettings,
) -> Running {
    app::start(Config {
        tls,
        ..config(upstream, plugins)
    })
    .await
    .expect("sluice starts")
}

/// The counters of the plugin at `index` in the current chain.
pub fn stats(running: &Running, index: usize) -> StatsSnapshot {
    running.proxy().chain().stats(index)
}

/// The base URL (scheme and authority) of an `http://host:port/path` URL.
pub fn base_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    format!("http://{}", rest.split('/').next().unwrap())
}

/// sluice started from a config `file` the way the binary does it (flags, then the
/// file, whose chain is re-read on a reload), listening on `listen`, recording into
/// `record` when given.
pub async fn start_from_file(file: &Path, listen: &str, record: Option<&Path>) -> Running {
    let mut args = vec![
        "sluice".to_string(),
        "--config".into(),
        file.display().to_string(),
        "--listen".into(),
        listen.to_string(),
        "--no-cache".into(),
        "--shutdown-grace".into(),
        "1".into(),
    ];
    if let Some(dir) = record {
        args.extend(["--record".into(), dir.display().to_string()]);
    }
    let (cli, matches) = sluice::cli::parse(args).unwrap();
    let chain_file = cli
        .run
        .chain_file(&matches)
        .expect("the chain is in the file");
    let config = sluice::cli::resolve(&cli.run, &matches).unwrap();
    let path = chain_file.path.clone();
    app::start_with_source(config, Box::new(move || chain_file.load()), vec![path])
        .await
        .expect("sluice starts")
}
