//! Start-up: load the chain, bind the listener, serve; and a handle to stop it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::plugin::{Chain, Plugin, PluginError, Runtime};
use crate::proxy::{self, Proxy};
use crate::upstream::{self, UpstreamError};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A plugin failed to load.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The upstream URL is unusable.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running proxy. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
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

    /// Stops accepting, drains open connections (bounded), and waits for the server.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }

    /// Waits until the server stops (it stops only through [`Running::stop`] or a
    /// panic, so this is for binaries that run until killed).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Loads every plugin (compiling and initialising each, so a bad one stops start-up),
/// binds the listener and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let upstream = upstream::Http::new(&config.upstream)?;
    let chain = load_chain(&config)?;
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
    let proxy = Arc::new(Proxy::new(upstream, Arc::new(chain), config.proxy.clone()));
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy::serve(listener, proxy.clone(), async {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, upstream = %config.upstream, plugins = config.plugins.len(), "sluice listening");
    Ok(Running {
        addr,
        proxy,
        shutdown,
        task,
    })
}

fn load_chain(config: &Config) -> Result<Chain, PluginError> {
    if config.plugins.is_empty() {
        return Ok(Chain::empty());
    }
    let runtime = Runtime::new()?;
    let plugins = config
        .plugins
        .iter()
        .map(|spec| Plugin::load(&runtime, spec.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Chain::new(plugins))
}
