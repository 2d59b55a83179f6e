//! Start-up: load the chain, bind the listener, serve; and a handle to stop it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::auth::{Access, AccessError, AccessSettings};
use crate::config::Config;
use crate::error_chain::ErrorChain;
use crate::holds::Holds;
use crate::http::{self, ConnectionLimits};
use crate::metrics::Metrics;
use crate::plugin::CompileCache;
use crate::proxy::Proxy;
use crate::reload::{ChainSource, LoadError, ReloadError, Reloader, Trigger};
use crate::router::{Route, Router};
use crate::tape::{RecordError, Recorder, Recording};
use crate::tls::{ServerCert, TlsError};
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
    /// The listener's certificate or key cannot be used (`--tls-cert`, `--tls-key`).
    #[error("TLS listener: {0}")]
    ListenerTls(#[source] TlsError),
    /// A route's access settings cannot be used (`[auth]`, `[upstream_auth]`,
    /// `[[rate_limit]]`).
    #[error("{}{source}", route.as_deref().map(|r| format!("route {r}: ")).unwrap_or_default())]
    Access {
        /// The route (`None`: the default upstream).
        route: Option<String>,
        /// The cause (boxed: it can hold an HTTP client's error, and a start error
        /// should stay small).
        source: Box<AccessError>,
    },
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

/// What every front end shares: the proxy over the upstream, the reloader that swaps
/// its chain, the tape recorder, and the background tasks around them (file watcher,
/// SIGHUP, admin API). The HTTP listener ([`Running`]) and `sluice stdio`
/// (`ingress::stdio`) each feed requests to its proxy.
pub struct Core {
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    /// The tape recorder, when recording (`--record`).
    recorder: Option<Arc<Recorder>>,
    /// The watcher, the signal listener and the admin server, stopped with the proxy.
    background: Vec<JoinHandle<()>>,
    /// The HTTP listener's certificate, when it speaks TLS: reloaded with the chain
    /// (file watch, SIGHUP).
    tls: Option<Arc<ServerCert>>,
    /// The proxy of the default upstream (`proxy` is it when there is one; with routes
    /// alone, `proxy` is the first route's and this is `None`).
    default: Option<Arc<Proxy>>,
    /// The `[[route]]`s, each with its own chain and proxy.
    routes: Vec<RunningRoute>,
    /// Messages plugins hold, on every route; the admin API lists and decides them.
    holds: Arc<Holds>,
}

/// A route of a running proxy.
pub struct RunningRoute {
    /// Its name.
    pub name: String,
    /// The path prefix it takes, if any.
    pub prefix: Option<String>,
    /// The host it takes, if any.
    pub host: Option<String>,
    /// Its proxy (upstream, chain, counters).
    pub proxy: Arc<Proxy>,
    /// What swaps its chain.
    pub reloader: Arc<Reloader>,
    /// Its tape recorder, when recording.
    pub recorder: Option<Arc<Recorder>>,
}

impl Core {
    /// Loads every plugin (compiling and initialising each, so a bad one stops
    /// start-up), opens the tape, and makes the proxy; the chain is read from `source`
    /// at start and on every reload (`extra_watch`: files a reload also watches, e.g.
    /// the config file). `config.plugins` and `config.listen` are not used.
    pub async fn start(
        config: &Config,
        source: ChainSource,
        extra_watch: Vec<PathBuf>,
    ) -> Result<Core, StartError> {
        let cache = config.cache_dir.as_deref().and_then(open_cache);
        let default_cache = cache.clone();
        let reloader = tokio::task::spawn_blocking(move || {
            Reloader::with_metrics(source, extra_watch, default_cache, Arc::new(Metrics::new()))
        })
        .await
        .map_err(StartError::ChainTask)??;
        let reloader = Arc::new(reloader);
        // Before the front end: a proxy that takes requests is a proxy that records
        // them (creating the tape touches the disk, so off the runtime's threads).
        let recorder = match config.record_dir.clone() {
            Some(dir) => Some(recorder(dir, config.upstream_label(), config, &reloader).await?),
            None => None,
        };
        let holds = Arc::new(Holds::default());
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let shared = (reloader.metrics(), &holds);
            routes.push(start_route(route, config, cache.clone(), shared).await?);
        }
        // Routes alone (no default upstream): what no route takes is answered 404.
        let has_default = config.stdio.is_some() || !config.upstream.is_empty();
        let default = if has_default {
            let upstream = upstream_for(
                &config.upstream,
                config.stdio.as_ref(),
                config,
                reloader.metrics(),
            )?;
            Some(Arc::new(
                proxy_for(
                    upstream,
                    &reloader,
                    config,
                    recorder.as_ref(),
                    (None, &config.access),
                )?
                .with_holds(holds.clone()),
            ))
        } else {
            None
        };
        let proxy = match (&default, routes.first()) {
            (Some(proxy), _) => proxy.clone(),
            (None, Some(route)) => route.proxy.clone(),
            (None, None) => {
                return Err(StartError::Upstream(UpstreamError::InvalidUrl {
                    url: String::new(),
                    reason: "no upstream and no route",
                }));
            }
        };
        Ok(Core {
            proxy,
            reloader,
            recorder,
            background: Vec::new(),
            tls: None,
            default,
            routes,
            holds,
        })
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<&RunningRoute> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// What answers requests: the proxy, or a router over the routes (and the default
    /// upstream's proxy, if any).
    fn router(&self) -> Option<Router> {
        (!self.routes.is_empty()).then(|| {
            Router::new(
                self.routes
                    .iter()
                    .map(|r| Route {
                        name: r.name.clone(),
                        prefix: r.prefix.clone(),
                        host: r.host.clone(),
                        proxy: r.proxy.clone(),
                    })
                    .collect(),
                self.default.clone(),
                self.reloader.metrics().clone(),
            )
        })
    }

    /// Every chain's reloader: the default one, then each route's.
    fn reloaders(&self) -> Vec<Arc<Reloader>> {
        std::iter::once(self.reloader.clone())
            .chain(self.routes.iter().map(|r| r.reloader.clone()))
            .collect()
    }

    /// Every proxy: the default upstream's, then each route's.
    fn proxies(&self) -> Vec<Arc<Proxy>> {
        self.default
            .iter()
            .cloned()
            .chain(self.routes.iter().map(|r| r.proxy.clone()))
            .collect()
    }

    /// The tape recorder, when recording.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }

    /// The proxy (its chain and plugin counters).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// What swaps the chain; `reload()` on it is a reload trigger.
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Reloads when a plugin file (or the config file) changes, after a quiet period;
    /// and the TLS listener's certificate when its files change.
    pub fn watch_files(&mut self) -> Result<(), notify::Error> {
        // Each chain watches its own files: a route's plugin changes only that route.
        for reloader in self.reloaders() {
            let task = reloader.watch()?;
            self.background.push(task);
        }
        if let Some(cert) = &self.tls {
            let task = cert.watch(Some(self.proxy.metrics().clone()))?;
            self.background.push(task);
        }
        Ok(())
    }

    /// Reloads on `SIGHUP`.
    #[cfg(unix)]
    pub fn reload_on_sighup(&mut self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let reloaders = self.reloaders();
        let cert = self.tls.clone();
        let metrics = self.proxy.metrics().clone();
        self.background.push(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                for reloader in reloaders.clone() {
                    let _ =
                        tokio::task::spawn_blocking(move || reloader.reload(Trigger::Signal)).await;
                }
                if let Some(cert) = cert.clone() {
                    let metrics = metrics.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || cert.reload_reported(Some(&metrics)))
                            .await;
                }
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
        let routes = self
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.reloader.clone()))
            .collect();
        let admin = Arc::new(
            Admin::new(self.reloader.clone(), token)
                .with_recorder(self.recorder.clone())
                .with_routes(routes)
                .with_holds(self.holds.clone()),
        );
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

    /// Stops the watcher, the signal listener and the admin server.
    fn stop_background(&self) {
        for task in &self.background {
            task.abort();
        }
    }

    /// Stops the background tasks and writes out what the recorder holds. For after
    /// the front end has stopped sending requests.
    pub async fn stop(self) {
        self.stop_background();
        // A stdio upstream's processes end with the proxy.
        for proxy in self.proxies() {
            proxy.upstream().shutdown().await;
        }
        let recorders = self
            .recorder
            .into_iter()
            .chain(self.routes.into_iter().filter_map(|r| r.recorder));
        for recorder in recorders {
            // Streams have drained: everything they recorded is queued; write it out.
            let _ = tokio::task::spawn_blocking(move || recorder.sync()).await;
        }
    }

    /// Ends every open SSE stream of every proxy now (shutdown after the grace period).
    fn close_streams(&self) {
        for proxy in self.proxies() {
            proxy.close_streams();
        }
    }
}

/// A running proxy. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    addr: SocketAddr,
    core: Core,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// The tape recorder, when recording.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.core.recorder()
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` (`https://addr` with a TLS listener), to which a client appends
    /// its path.
    pub fn url(&self) -> String {
        let scheme = if self.core.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The TLS listener's certificate (to reload it, or see which is served).
    pub fn server_cert(&self) -> Option<&Arc<ServerCert>> {
        self.core.tls.as_ref()
    }

    /// The proxy (its chain and plugin counters).
    pub fn proxy(&self) -> &Arc<Proxy> {
        self.core.proxy()
    }

    /// What swaps the chain; `reload()` on it is a reload trigger.
    pub fn reloader(&self) -> &Arc<Reloader> {
        self.core.reloader()
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<&RunningRoute> {
        self.core.route(name)
    }

    /// Reloads when a plugin file (or the config file) changes, after a quiet period;
    /// and the TLS listener's certificate when its files change.
    pub fn watch_files(&mut self) -> Result<(), notify::Error> {
        self.core.watch_files()
    }

    /// Reloads on `SIGHUP`.
    #[cfg(unix)]
    pub fn reload_on_sighup(&mut self) -> std::io::Result<()> {
        self.core.reload_on_sighup()
    }

    /// Serves the admin API on its own listener; returns the bound address.
    pub async fn serve_admin(
        &mut self,
        listen: SocketAddr,
        token: Option<String>,
    ) -> Result<SocketAddr, StartError> {
        self.core.serve_admin(listen, token).await
    }

    /// Stops accepting; lets open streams go on for the shutdown grace period, then
    /// ends them cleanly (`Proxy::close_streams`); waits for the server.
    pub async fn stop(self) {
        self.core.stop_background();
        let _ = self.shutdown.send(());
        let mut task = self.task;
        let proxy = self.core.proxy().clone();
        let grace = proxy.settings().shutdown_grace;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::info!(
                open = proxy.metrics().streams_open(),
                "streams still open after the shutdown grace period; ending them"
            );
            self.core.close_streams();
            let _ = task.await;
        }
        self.core.stop().await;
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
    let upstream_label = config.upstream_label();
    let server_cert = match config.tls.listener.clone() {
        Some(files) => Some(Arc::new(
            ServerCert::load(files).map_err(StartError::ListenerTls)?,
        )),
        None => None,
    };
    let acceptor = server_cert
        .as_ref()
        .map(ServerCert::acceptor)
        .transpose()
        .map_err(StartError::ListenerTls)?;
    if !config.listen.ip().is_loopback() && config.proxy.allowed_hosts.iter().any(|h| h == "*") {
        tracing::warn!(listen = %config.listen, "listening beyond loopback with any Host accepted (--allow-host '*'): no DNS-rebinding protection");
    }
    let mut core = Core::start(&config, source, extra_watch).await?;
    core.tls = server_cert.clone();
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
    let proxy = core.proxy().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    // Connections get the grace period and a little more: streams are ended cleanly
    // at the grace period, and only a connection that ignores that is dropped.
    let drain = config.proxy.shutdown_grace + std::time::Duration::from_secs(5);
    let stopped = async {
        let _ = stopped.await;
    };
    let (limits, metrics) = (config.proxy.connections, Some(proxy.metrics().clone()));
    let task = match core.router() {
        None => tokio::spawn(http::serve_tls(
            listener,
            proxy.clone(),
            stopped,
            drain,
            limits,
            metrics,
            acceptor,
        )),
        Some(router) => {
            for route in &core.routes {
                tracing::info!(route = %route.name, plugins = route.proxy.chain().plugins().len(), "route");
            }
            tokio::spawn(http::serve_tls(
                listener,
                Arc::new(router),
                stopped,
                drain,
                limits,
                metrics,
                acceptor,
            ))
        }
    };
    let plugins = proxy.chain().plugins().len();
    let tls = server_cert.is_some();
    tracing::info!(%addr, upstream = %upstream_label, plugins, tls, "sluice listening");
    Ok(Running {
        addr,
        core,
        shutdown,
        task,
    })
}

/// The upstream for a URL or a stdio command.
fn upstream_for(
    url: &str,
    stdio: Option<&crate::config::StdioTarget>,
    config: &Config,
    metrics: &Metrics,
) -> Result<upstream::Upstream, StartError> {
    Ok(match stdio {
        Some(stdio) => upstream::StdioUpstream::new(
            stdio.command.clone(),
            stdio.settings.clone(),
            metrics.stdio(),
        )
        .into(),
        None => upstream::Http::with_tls(url, &config.tls.upstream)?.into(),
    })
}

/// A proxy in front of `upstream` running `reloader`'s chain, recording to `recorder`.
fn proxy_for(
    upstream: upstream::Upstream,
    reloader: &Arc<Reloader>,
    config: &Config,
    recorder: Option<&Arc<Recorder>>,
    (route, access): (Option<&String>, &AccessSettings),
) -> Result<Proxy, StartError> {
    access.upstream.announce(route.map(String::as_str));
    let access =
        Access::new(access, &config.tls.upstream, reloader.metrics()).map_err(|source| {
            StartError::Access {
                route: route.cloned(),
                source: Box::new(source),
            }
        })?;
    let mut proxy = Proxy::new(upstream, reloader.current().clone(), config.proxy.clone())
        .with_metrics(reloader.metrics().clone())
        .with_access(Arc::new(access))
        .with_route(route.map(String::as_str));
    if let Some(recorder) = recorder {
        proxy = proxy.with_observer(Arc::new(Recording(recorder.clone())));
    }
    Ok(proxy)
}

/// A tape recorder writing into `dir` (made off the runtime's threads: it touches the
/// disk).
async fn recorder(
    dir: PathBuf,
    upstream_label: String,
    config: &Config,
    reloader: &Reloader,
) -> Result<Arc<Recorder>, StartError> {
    let path = dir.display().to_string();
    let (settings, over_cap) = (config.tape.clone(), reloader.metrics().tape_over_cap());
    let made = tokio::task::spawn_blocking(move || {
        Recorder::with_settings(&dir, &upstream_label, &settings, over_cap)
    })
    .await
    .map_err(|e| RecordError::Create {
        path,
        source: std::io::Error::other(e),
    })??;
    Ok(Arc::new(made))
}

/// A `[[route]]`: its chain (loaded now, reloaded from the config file), its upstream,
/// its proxy, and its tape (in `<--record>/<name>`).
async fn start_route(
    route: &crate::config::Route,
    config: &Config,
    cache: Option<CompileCache>,
    (metrics, holds): (&Arc<Metrics>, &Arc<Holds>),
) -> Result<RunningRoute, StartError> {
    let source: ChainSource = match route.reload.clone() {
        Some(file) => {
            let name = route.name.clone();
            Box::new(move || file.load_route(&name))
        }
        None => {
            let plugins = route.plugins.clone();
            Box::new(move || Ok(plugins.clone()))
        }
    };
    let watch: Vec<PathBuf> = route.reload.iter().map(|f| f.path.clone()).collect();
    let metrics = Arc::new(metrics.for_route(&route.name));
    let reloader =
        tokio::task::spawn_blocking(move || Reloader::with_metrics(source, watch, cache, metrics))
            .await
            .map_err(StartError::ChainTask)??;
    let reloader = Arc::new(reloader);
    let label = match &route.stdio {
        Some(stdio) => format!("stdio:{}", stdio.command),
        None => route.upstream.clone(),
    };
    let recorder = match &config.record_dir {
        Some(dir) => Some(recorder(dir.join(&route.name), label, config, &reloader).await?),
        None => None,
    };
    let upstream = upstream_for(
        &route.upstream,
        route.stdio.as_ref(),
        config,
        reloader.metrics(),
    )?;
    let proxy = Arc::new(
        proxy_for(
            upstream,
            &reloader,
            config,
            recorder.as_ref(),
            (Some(&route.name), &route.access),
        )?
        .with_holds(holds.clone()),
    );
    Ok(RunningRoute {
        name: route.name.clone(),
        prefix: route.prefix.clone(),
        host: route.host.clone(),
        proxy,
        reloader,
        recorder,
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
