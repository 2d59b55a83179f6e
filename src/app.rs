//! Start-up: load the chain, bind the listener, serve; and a handle to stop it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::config::Config;
use crate::error_chain::ErrorChain;
use crate::http::{self, ConnectionLimits};
use crate::metrics::Metrics;
use crate::plugin::CompileCache;
use crate::proxy::Proxy;
use crate::reload::{ChainSource, LoadError, ReloadError, Reloader, Trigger};
use crate::tape::{RecordError, Recorder, Recording};
use crate::upstream::{self, UpstreamError};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The chain could not be loaded (a plugin or the config file).
    #[error("cannot load the plugin chain: {source}")]
    Chain {
        /// The cause.
        source: Arc<LoadError>,
    },
    /// The upstream URL is unusable.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// `--record` could not create its tape.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A listener beyond loopback with no `--allow-host`: the Host check would have
    /// nothing to accept but loopback names, and turning it off must be said.
    #[error(
        "--listen {listen} is not a loopback address: give the host names clients use with --allow-host (--allow-host '*' accepts any Host, without DNS-rebinding protection)"
    )]
    NoAllowedHosts {
        /// The listen address.
        listen: SocketAddr,
    },
    /// The admin API beyond loopback without a token: anyone who can reach the port
    /// could reload the chain.
    #[error(
        "--admin-listen {addr} is not a loopback address: set a token (SLUICE_ADMIN_TOKEN or --admin-token-file) or listen on loopback"
    )]
    AdminWithoutToken {
        /// The address.
        addr: SocketAddr,
    },
    /// Loading the chain stopped before it finished (it panicked).
    #[error("loading the plugin chain did not finish: {0}")]
    ChainTask(#[source] tokio::task::JoinError),
}

impl From<ReloadError> for StartError {
    /// At start there is no generation that keeps serving: only what failed counts.
    fn from(error: ReloadError) -> Self {
        StartError::Chain {
            source: error.source,
        }
    }
}

/// Connections the admin API serves at once.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// A running proxy. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    /// The tape recorder, when recording (`--record`).
    recorder: Option<Arc<Recorder>>,
    /// The watcher, the signal listener and the admin server, stopped with the proxy.
    background: Vec<JoinHandle<()>>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// The tape recorder, when recording.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`, to which a client appends its path.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy (its chain and plugin counters).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// What swaps the chain; `reload()` on it is a reload trigger.
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Reloads when a plugin file (or the config file) changes, after a quiet period.
    pub fn watch_files(&mut self) -> Result<(), notify::Error> {
        let task = self.reloader.watch()?;
        self.background.push(task);
        Ok(())
    }

    /// Reloads on `SIGHUP`.
    #[cfg(unix)]
    pub fn reload_on_sighup(&mut self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let reloader = self.reloader.clone();
        self.background.push(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let reloader = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload(Trigger::Signal)).await;
            }
        }));
        Ok(())
    }

    /// Serves the admin API on its own listener; returns the bound address.
    pub async fn serve_admin(
        &mut self,
        listen: SocketAddr,
        token: Option<String>,
    ) -> Result<SocketAddr, StartError> {
        // An empty token would let every request through: it is no token.
        let token = token.filter(|t| !t.is_empty());
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(StartError::AdminWithoutToken { addr: listen });
        }
        let bind = |source| StartError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let admin =
            Arc::new(Admin::new(self.reloader.clone(), token).with_recorder(self.recorder.clone()));
        // The proxy's timeouts, and a cap of its own: a scraper and an operator need a
        // few connections, and a flood of them must not hold descriptors the proxy needs.
        let limits = ConnectionLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            ..self.proxy.settings().connections
        };
        self.background.push(tokio::spawn(http::serve_limited(
            listener,
            admin,
            std::future::pending(),
            std::time::Duration::from_secs(5),
            limits,
            None,
        )));
        tracing::info!(%addr, "admin API listening");
        Ok(addr)
    }

    /// Stops accepting; lets open streams go on for the shutdown grace period, then
    /// ends them cleanly (`Proxy::close_streams`); waits for the server.
    pub async fn stop(self) {
        for task in &self.background {
            task.abort();
        }
        let _ = self.shutdown.send(());
        let mut task = self.task;
        let grace = self.proxy.settings().shutdown_grace;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::info!(
                open = self.proxy.metrics().streams_open(),
                "streams still open after the shutdown grace period; ending them"
            );
            self.proxy.close_streams();
            let _ = task.await;
        }
        if let Some(recorder) = self.recorder {
            // Streams have drained: everything they recorded is queued; write it out.
            let _ = tokio::task::spawn_blocking(move || recorder.sync()).await;
        }
    }

    /// Waits until the server stops (it stops only through [`Running::stop`] or a
    /// panic, so this is for binaries that run until killed).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Loads every plugin (compiling and initialising each, so a bad one stops start-up),
/// binds the listener and starts serving. Reloads re-load the same plugin list.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let specs = config.plugins.clone();
    start_with_source(config, Box::new(move || Ok(specs.clone())), Vec::new()).await
}

/// Like [`start`], with the chain read from `source` at start and on every reload
/// (e.g. re-reading a config file, which then belongs in `extra_watch`).
/// `config.plugins` is not used.
pub async fn start_with_source(
    config: Config,
    source: ChainSource,
    extra_watch: Vec<PathBuf>,
) -> Result<Running, StartError> {
    if !config.listen.ip().is_loopback() && config.proxy.allowed_hosts.is_empty() {
        return Err(StartError::NoAllowedHosts {
            listen: config.listen,
        });
    }
    let upstream = upstream::Http::new(&config.upstream)?;
    if !config.listen.ip().is_loopback() && config.proxy.allowed_hosts.iter().any(|h| h == "*") {
        tracing::warn!(listen = %config.listen, "listening beyond loopback with any Host accepted (--allow-host '*'): no DNS-rebinding protection");
    }
    let cache = config.cache_dir.as_deref().and_then(open_cache);
    let reloader = tokio::task::spawn_blocking(move || {
        Reloader::with_metrics(source, extra_watch, cache, Arc::new(Metrics::new()))
    })
    .await
    .map_err(StartError::ChainTask)??;
    let reloader = Arc::new(reloader);
    // Before the listener: a port that accepts is a proxy that serves (creating the tape
    // touches the disk, so off the runtime's threads).
    let recorder = match config.record_dir.clone() {
        Some(dir) => {
            let (path, upstream_url) = (dir.display().to_string(), config.upstream.clone());
            let (settings, over_cap) = (config.tape.clone(), reloader.metrics().tape_over_cap());
            let made = tokio::task::spawn_blocking(move || {
                Recorder::with_settings(&dir, &upstream_url, &settings, over_cap)
            })
            .await
            .map_err(|e| RecordError::Create {
                path,
                source: std::io::Error::other(e),
            })?;
            Some(Arc::new(made?))
        }
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let mut proxy = Proxy::new(upstream, reloader.current().clone(), config.proxy.clone())
        .with_metrics(reloader.metrics().clone());
    if let Some(recorder) = &recorder {
        proxy = proxy.with_observer(Arc::new(Recording(recorder.clone())));
    }
    let proxy = Arc::new(proxy);
    let (shutdown, stopped) = oneshot::channel::<()>();
    // Connections get the grace period and a little more: streams are ended cleanly
    // at the grace period, and only a connection that ignores that is dropped.
    let drain = config.proxy.shutdown_grace + std::time::Duration::from_secs(5);
    let task = tokio::spawn(http::serve_limited(
        listener,
        proxy.clone(),
        async {
            let _ = stopped.await;
        },
        drain,
        config.proxy.connections,
        Some(proxy.metrics().clone()),
    ));
    let plugins = proxy.chain().plugins().len();
    tracing::info!(%addr, upstream = %config.upstream, plugins, "sluice listening");
    Ok(Running {
        addr,
        proxy,
        reloader,
        recorder,
        background: Vec::new(),
        shutdown,
        task,
    })
}

/// The compile cache in `dir`, or none (with a warning) if the directory cannot be
/// created or made private: the cache saves start-up time, it is never a reason not to
/// start.
fn open_cache(dir: &Path) -> Option<CompileCache> {
    match CompileCache::new(dir) {
        Ok(cache) => {
            tracing::info!(dir = %dir.display(), "compile cache");
            Some(cache)
        }
        Err(e) => {
            tracing::warn!(
                "{}; plugins are compiled at every start and reload",
                ErrorChain(&e)
            );
            None
        }
    }
}
