//! Hot swap: build a whole new chain, and only if every plugin loads, make it current.
//!
//! Three triggers share this one mechanism: a debounced file watcher on the plugin
//! files (and the config file), `SIGHUP`, and `POST /admin/reload`. Streams already
//! open keep the chain they started with (a `Session` holds its own `Arc<Chain>`); new
//! streams get the new one. A failed reload is logged, counted and reported, and the
//! current chain keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::ConfigError;
use crate::error_chain::ErrorChain;
use crate::metrics::{Metrics, StatsSnapshot};
use crate::plugin::{Chain, CompileCache, Plugin, PluginError, PluginSpec, Runtime, StateStores};

/// Produces the chain's plugin list afresh on every reload (re-reading the config
/// file, if there is one).
pub type ChainSource = Box<dyn Fn() -> Result<Vec<PluginSpec>, ConfigError> + Send + Sync>;

/// What stopped a chain from loading.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin cannot be loaded, or the engine created.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// What started a reload, for logs and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A watched file changed.
    FileChange,
    /// `SIGHUP`.
    Signal,
    /// `POST /admin/reload`.
    Admin,
    /// A direct call (tests, embedding).
    Api,
}

/// Why a reload was refused. The current chain is untouched.
#[derive(Debug, Clone, thiserror::Error)]
#[error("reload refused, generation {generation} keeps serving: {source}")]
pub struct ReloadError {
    /// The generation still serving.
    pub generation: u64,
    /// What failed (the config file, or which plugin and why); shared by every caller
    /// the reload answers.
    pub source: Arc<LoadError>,
}

impl ReloadError {
    /// What failed, with all its causes: what the log, the admin API and the reload
    /// history say.
    pub fn reason(&self) -> String {
        ErrorChain(&*self.source).to_string()
    }
}

/// Counters and the last failure, for `GET /admin/plugins`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadHistory {
    /// Reloads that made a new generation current.
    pub succeeded: u64,
    /// Reloads refused.
    pub failed: u64,
    /// The reason of the most recent refusal, if the latest attempt failed.
    pub last_error: Option<String>,
    /// When the latest attempt finished (seconds since the Unix epoch).
    pub last_attempt_unix: Option<u64>,
    /// Reload requests being served now: the one running and those waiting for it.
    pub in_progress: u64,
}

/// One plugin of the current chain, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Name in logs and errors.
    pub name: String,
    /// `filter` or `interceptor`.
    pub world: &'static str,
    /// The file it was loaded from, if any.
    pub path: Option<PathBuf>,
    /// Its counters in this generation.
    pub stats: StatsSnapshot,
}

/// The whole reload state, as `GET /admin/plugins` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Generation of the current chain.
    pub generation: u64,
    /// The current chain, in order.
    pub plugins: Vec<PluginStatus>,
    /// Reload counters and the last failure.
    pub reloads: ReloadHistory,
}

/// Owns the current chain and replaces it.
pub struct Reloader {
    runtime: Option<Arc<Runtime>>,
    /// The compile cache of every runtime this reloader creates.
    cache: Option<CompileCache>,
    source: ChainSource,
    /// Files whose change triggers a reload besides the plugins (the config file).
    extra_watch: Vec<PathBuf>,
    current: Arc<ArcSwap<Chain>>,
    history: Mutex<ReloadHistory>,
    /// Serialises reloads so two triggers never race to publish.
    busy: Mutex<()>,
    /// Where every chain counts, and where reloads are counted.
    metrics: Arc<Metrics>,
    /// The plugins' state stores, by name, kept from one chain to the next.
    stores: StateStores,
    /// Reload requests made so far: each caller of [`Reloader::reload`] takes the next
    /// number.
    requested: AtomicU64,
    /// Callers inside [`Reloader::reload`] now (running or waiting).
    in_progress: AtomicU64,
    /// The latest reload's result, and the highest request number it answers: every
    /// request made before it started.
    last: Mutex<Option<(u64, Result<u64, ReloadError>)>>,
}

impl Reloader {
    /// Loads the first chain (generation 0) from `source`, compiling every plugin.
    pub fn new(source: ChainSource, extra_watch: Vec<PathBuf>) -> Result<Self, ReloadError> {
        Self::with_cache(source, extra_watch, None)
    }

    /// Like [`Reloader::new`], compiling through `cache` (at start and on every
    /// reload), so that unchanged plugins are not compiled again.
    pub fn with_cache(
        source: ChainSource,
        extra_watch: Vec<PathBuf>,
        cache: Option<CompileCache>,
    ) -> Result<Self, ReloadError> {
        Self::with_metrics(source, extra_watch, cache, Arc::new(Metrics::new()))
    }

    /// Like [`Reloader::with_cache`], with every chain counting into `metrics`.
    pub fn with_metrics(
        source: ChainSource,
        extra_watch: Vec<PathBuf>,
        cache: Option<CompileCache>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ReloadError> {
        let fail = |e: LoadError| ReloadError {
            generation: 0,
            source: Arc::new(e),
        };
        let specs = source().map_err(|e| fail(e.into()))?;
        let runtime = if specs.is_empty() {
            None
        } else {
            Some(Runtime::with_cache(cache.clone()).map_err(|e| fail(e.into()))?)
        };
        let stores = StateStores::default();
        let chain = build(runtime.as_ref(), &specs)
            .map_err(|e| fail(e.into()))?
            .with_metrics(&metrics)
            .with_state(&stores);
        log_chain(&chain, "chain loaded");
        Ok(Self {
            runtime,
            cache,
            source,
            extra_watch,
            current: Arc::new(ArcSwap::from_pointee(chain)),
            history: Mutex::new(ReloadHistory::default()),
            busy: Mutex::new(()),
            metrics,
            stores,
            requested: AtomicU64::new(0),
            in_progress: AtomicU64::new(0),
            last: Mutex::new(None),
        })
    }

    /// The metrics every chain of this reloader counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The swappable chain the proxy reads at the start of every exchange.
    pub fn current(&self) -> &Arc<ArcSwap<Chain>> {
        &self.current
    }

    /// Builds the next generation and makes it current, or leaves everything as it
    /// is and says why. Compiles plugins: call it off the async workers
    /// (`spawn_blocking`).
    ///
    /// Concurrent calls share reloads instead of queueing one each: a caller gets the
    /// result of the first reload that started after it called. While one reload runs,
    /// every caller that arrives waits for the next, and that one reload answers them
    /// all, so N callers at once cost at most two reloads, and none is answered with a
    /// reload that read the files before it asked.
    pub fn reload(&self, trigger: Trigger) -> Result<u64, ReloadError> {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        let _leaving = Leaving(&self.in_progress);
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((answers, result)) = &*self.last.lock().unwrap_or_else(|e| e.into_inner())
            && *answers >= ticket
        {
            return result.clone();
        }
        let answers = self.requested.load(Ordering::SeqCst);
        let result = self.reload_now(trigger);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((answers, result.clone()));
        result
    }

    /// One reload, with `busy` held.
    fn reload_now(&self, trigger: Trigger) -> Result<u64, ReloadError> {
        let serving = self.current.load().generation();
        let result = (self.source)().map_err(LoadError::from).and_then(|specs| {
            let runtime = match &self.runtime {
                Some(runtime) => Some(runtime.clone()),
                None if specs.is_empty() => None,
                None => Some(Runtime::with_cache(self.cache.clone())?),
            };
            Ok(build(runtime.as_ref(), &specs)?)
        });
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.last_attempt_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        match result {
            Ok(chain) => {
                let generation = serving + 1;
                let chain = chain
                    .with_generation(generation)
                    .with_metrics(&self.metrics)
                    .with_state(&self.stores);
                self.metrics.reload(true);
                // Swapped first: whoever reads the log line gets the new chain.
                let chain = Arc::new(chain);
                self.current.store(chain.clone());
                log_chain(&chain, &format!("chain reloaded ({trigger:?})"));
                history.succeeded += 1;
                history.last_error = None;
                Ok(generation)
            }
            Err(error) => {
                let error = ReloadError {
                    generation: serving,
                    source: Arc::new(error),
                };
                let reason = error.reason();
                tracing::error!(
                    generation = serving,
                    ?trigger,
                    "reload refused, the current chain keeps serving: {reason}"
                );
                history.failed += 1;
                self.metrics.reload(false);
                history.last_error = Some(reason);
                Err(error)
            }
        }
    }

    /// The current generation, its plugins and the reload history.
    pub fn status(&self) -> Status {
        let chain = self.current.load_full();
        Status {
            generation: chain.generation(),
            plugins: chain
                .plugins()
                .iter()
                .enumerate()
                .map(|(i, p)| PluginStatus {
                    name: p.name().to_string(),
                    world: p.world().as_str(),
                    path: p.path().map(Path::to_path_buf),
                    stats: chain.stats(i),
                })
                .collect(),
            reloads: ReloadHistory {
                in_progress: self.in_progress.load(Ordering::SeqCst),
                ..self
                    .history
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            },
        }
    }

    /// The files whose change should trigger a reload: the current chain's plugin
    /// files and the config file.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let chain = self.current.load_full();
        chain
            .plugins()
            .iter()
            .filter_map(|p| p.path().map(Path::to_path_buf))
            .chain(self.extra_watch.iter().cloned())
            .collect()
    }

    /// Watches the plugin and config files and reloads after each burst of changes.
    /// The watcher lives as long as the returned task.
    pub fn watch(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let (seen, reloader) = (self.clone(), self.clone());
        crate::watch::watch_files(
            &self.watched_files(),
            move |path| seen.is_watched(path),
            move || {
                let _ = reloader.reload(Trigger::FileChange);
            },
        )
    }

    fn is_watched(&self, path: &Path) -> bool {
        let same = |a: &Path, b: &Path| {
            a == b || (a.file_name() == b.file_name() && canonical_parent(a) == canonical_parent(b))
        };
        self.watched_files().iter().any(|f| same(f, path))
    }
}

/// Counts a caller out of [`Reloader::reload`] however it leaves.
struct Leaving<'a>(&'a AtomicU64);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn canonical_parent(path: &Path) -> Option<PathBuf> {
    path.parent().and_then(|p| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        p.canonicalize().ok()
    })
}

/// Loads every plugin; the first failure refuses the whole chain.
fn build(runtime: Option<&Arc<Runtime>>, specs: &[PluginSpec]) -> Result<Chain, PluginError> {
    let Some(runtime) = runtime else {
        return Ok(Chain::empty());
    };
    let plugins = specs
        .iter()
        .map(|spec| Plugin::load(runtime, spec.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Chain::new(plugins))
}

fn log_chain(chain: &Chain, what: &str) {
    let names: Vec<&str> = chain.plugins().iter().map(|p| p.name()).collect();
    tracing::info!(generation = chain.generation(), plugins = ?names, "{what}");
}
