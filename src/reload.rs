//! Hot swap: build a whole new chain, and only if every plugin loads, make it current.
//!
//! Three triggers share this one mechanism: a debounced file watcher on the plugin
//! files (and the config file), `SIGHUP`, and `POST /admin/reload`. Streams already
//! open keep the chain they started with (a `Session` holds its own `Arc<Chain>`); new
//! streams get the new one. A failed reload is logged, counted and reported, and the
//! current chain keeps serving.
//!
//! The admin API can also re-point named plugins at other files ([`Reloader::swap`]):
//! the same reload, with those plugins' files replaced. A swap holds across later
//! reloads until the chain's source itself changes that plugin's file (the config file
//! names another one, or drops the plugin); the watcher watches the new file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::error_chain::ErrorChain;
use crate::metrics::{Metrics, StatsSnapshot};
use crate::plugin::{
    Chain, CompileCache, Plugin, PluginError, PluginSource, PluginSpec, Runtime, StateStores,
};
use crate::watch::Watched;

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
    /// A swap names a plugin the chain does not have.
    #[error("no plugin named {name:?} in the chain; its plugins: {}", .known.join(", "))]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The chain's plugins, in order.
        known: Vec<String>,
    },
    /// A swap's file is a relative path: the proxy's working directory is not the
    /// caller's, so it would name another file than the caller meant.
    #[error("plugin {name}: {} is a relative path; give an absolute one", .file.display())]
    RelativeFile {
        /// The plugin.
        name: String,
        /// The path given.
        file: PathBuf,
    },
    /// One reload names the same plugin twice.
    #[error("plugin {name} is swapped twice in one reload")]
    SwappedTwice {
        /// The plugin.
        name: String,
    },
    /// A swap's file is not a regular file (missing, a directory, a FIFO, a device):
    /// reading a FIFO would block this reload and every one behind it, a device would
    /// never end.
    #[error("plugin {name}: {} is not a regular file that sluice can read", .file.display())]
    NotAFile {
        /// The plugin.
        name: String,
        /// The path given.
        file: PathBuf,
    },
}

impl LoadError {
    /// True when the request was at fault (a name, a path), not a plugin or the file.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            LoadError::UnknownPlugin { .. }
                | LoadError::RelativeFile { .. }
                | LoadError::SwappedTwice { .. }
        )
    }
}

/// A plugin to re-point at another file (`POST /admin/reload` with a body). It keeps
/// its name, its configuration and limits, and its state store by the usual rules
/// (`keep_on_reload`): only the component changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swap {
    /// The plugin's name in the chain.
    pub name: String,
    /// The new component: an absolute path, read by the proxy.
    pub file: PathBuf,
}

/// A swap in force.
#[derive(Debug, Clone)]
struct Held {
    name: String,
    file: PathBuf,
    /// The plugin's file as the chain's source gave it when the swap was made: while
    /// the source still says so, the swap holds.
    baseline: Option<PathBuf>,
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
    /// Hex SHA-256 of its component as loaded.
    pub sha256: Option<String>,
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

/// A plugin of a chain and the component it runs, as a reload answers.
#[derive(Debug, Clone, Serialize)]
pub struct PluginFile {
    /// Its name.
    pub name: String,
    /// The file it was loaded from (none for a built-in).
    pub file: Option<PathBuf>,
    /// Hex SHA-256 of its component as loaded.
    pub sha256: Option<String>,
}

/// A chain made current: its generation and what each plugin runs.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    /// The new generation.
    pub generation: u64,
    /// Its plugins, in order.
    pub plugins: Vec<PluginFile>,
}

impl Reloaded {
    fn of(chain: &Chain) -> Self {
        Reloaded {
            generation: chain.generation(),
            plugins: chain
                .plugins()
                .iter()
                .map(|p| PluginFile {
                    name: p.name().to_string(),
                    file: p.path().map(Path::to_path_buf),
                    sha256: p.component_sha256().map(|h| h.to_string()),
                })
                .collect(),
        }
    }
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
    /// The admin API's swaps in force, applied to the source's chain on every reload.
    held: Mutex<Vec<Held>>,
    /// The file watcher, when watching: told of the files a new chain loads from.
    watching: Mutex<Weak<Watched>>,
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
            held: Mutex::new(Vec::new()),
            watching: Mutex::new(Weak::new()),
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
        let result = self
            .reload_now(trigger, &[])
            .map(|chain| chain.generation());
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((answers, result.clone()));
        result
    }

    /// Re-points the named plugins at other files and reloads: all of them or none
    /// (an unknown name, a relative path or a plugin that does not load refuses the
    /// whole reload, and the current chain keeps serving). The swaps hold across
    /// later reloads until the chain's source changes those plugins' files. Compiles
    /// plugins: call it off the async workers.
    pub fn swap(&self, swaps: &[Swap]) -> Result<Reloaded, ReloadError> {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        let _leaving = Leaving(&self.in_progress);
        // Its own reload, never another caller's: no other reload made this swap.
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        self.reload_now(Trigger::Admin, swaps)
            .map(|chain| Reloaded::of(&chain))
    }

    /// What the current chain runs.
    pub fn current_files(&self) -> Reloaded {
        Reloaded::of(&self.current.load())
    }

    /// One reload, with `busy` held, applying the swaps in force and `swaps`.
    fn reload_now(&self, trigger: Trigger, swaps: &[Swap]) -> Result<Arc<Chain>, ReloadError> {
        let before = self.current.load_full();
        let serving = before.generation();
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let result = (self.source)()
            .map_err(LoadError::from)
            .and_then(|mut specs| {
                let held = apply_swaps(&mut specs, held, swaps)?;
                if let Some(swap) = swaps
                    .iter()
                    .find(|s| !std::fs::metadata(&s.file).is_ok_and(|m| m.is_file()))
                {
                    return Err(LoadError::NotAFile {
                        name: swap.name.clone(),
                        file: swap.file.clone(),
                    });
                }
                let runtime = match &self.runtime {
                    Some(runtime) => Some(runtime.clone()),
                    None if specs.is_empty() => None,
                    None => Some(Runtime::with_cache(self.cache.clone())?),
                };
                Ok((build(runtime.as_ref(), &specs)?, held))
            });
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.last_attempt_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        match result {
            Ok((chain, (held, ended))) => {
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
                log_swaps(&before, &chain, swaps, &ended);
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
                history.succeeded += 1;
                history.last_error = None;
                drop(history);
                self.watch_new_files();
                Ok(chain)
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
                    sha256: p.component_sha256().map(|h| h.to_string()),
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
        let (task, watched) = crate::watch::watch_growing(
            &self.watched_files(),
            move |path| seen.is_watched(path),
            move || {
                let _ = reloader.reload(Trigger::FileChange);
            },
        )?;
        *self.watching.lock().unwrap_or_else(|e| e.into_inner()) = watched;
        Ok(task)
    }

    /// Tells the watcher (if any) of files a new chain loads from in directories it
    /// does not watch yet (a swap to a file elsewhere).
    fn watch_new_files(&self) {
        let watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(watched) = watching.upgrade()
            && let Err(e) = watched.add(&self.watched_files())
        {
            tracing::warn!(
                "cannot watch the new plugin files ({e}); SIGHUP and the admin API still reload"
            );
        }
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

/// Swaps whose plugin the source still lists with the same file, then `swaps`, applied
/// to `specs` (each named plugin's file replaced); also says which swaps ended (the
/// source changed or dropped their plugin), to log once the chain is current.
fn apply_swaps(
    specs: &mut [PluginSpec],
    held: Vec<Held>,
    swaps: &[Swap],
) -> Result<(Vec<Held>, Vec<String>), LoadError> {
    let file_of = |spec: &PluginSpec| match &spec.source {
        PluginSource::File(path) => Some(path.clone()),
        PluginSource::Bytes(_) => None,
    };
    for (i, swap) in swaps.iter().enumerate() {
        if !swap.file.is_absolute() {
            return Err(LoadError::RelativeFile {
                name: swap.name.clone(),
                file: swap.file.clone(),
            });
        }
        if swaps[..i].iter().any(|s| s.name == swap.name) {
            return Err(LoadError::SwappedTwice {
                name: swap.name.clone(),
            });
        }
    }
    let mut ended = Vec::new();
    let mut kept: Vec<Held> = held
        .into_iter()
        .filter(|h| match specs.iter().find(|s| s.name == h.name) {
            None => {
                ended.push(format!(
                    "plugin {} left the chain: its swap to {} ends",
                    h.name,
                    h.file.display()
                ));
                false
            }
            Some(spec) if file_of(spec) != h.baseline => {
                ended.push(format!(
                    "the chain's source names another file for plugin {}: its swap to {} ends",
                    h.name,
                    h.file.display()
                ));
                false
            }
            Some(_) => true,
        })
        .collect();
    for swap in swaps {
        let Some(spec) = specs.iter().find(|s| s.name == swap.name) else {
            return Err(LoadError::UnknownPlugin {
                name: swap.name.clone(),
                known: specs.iter().map(|s| s.name.clone()).collect(),
            });
        };
        kept.retain(|h| h.name != swap.name);
        let baseline = file_of(spec);
        // Back to the source's own file: nothing left to hold.
        if baseline.as_ref() != Some(&swap.file) {
            kept.push(Held {
                name: swap.name.clone(),
                file: swap.file.clone(),
                baseline,
            });
        }
    }
    for h in &kept {
        if let Some(spec) = specs.iter_mut().find(|s| s.name == h.name) {
            spec.source = PluginSource::File(h.file.clone());
        }
    }
    Ok((kept, ended))
}

/// One info line per plugin a reload swapped (name, old file, new file, hash) and per
/// swap that ended.
fn log_swaps(before: &Chain, after: &Chain, swaps: &[Swap], ended: &[String]) {
    let file = |chain: &Chain, name: &str| {
        chain.plugins().iter().find(|p| p.name() == name).map(|p| {
            (
                p.path().map(|f| f.display().to_string()),
                p.component_sha256().map(|h| h.to_string()),
            )
        })
    };
    for swap in swaps {
        let (old, _) = file(before, &swap.name).unwrap_or_default();
        let (new, sha256) = file(after, &swap.name).unwrap_or_default();
        tracing::info!(
            plugin = %swap.name,
            from = old.as_deref().unwrap_or("(built in)"),
            to = new.as_deref().unwrap_or("(built in)"),
            sha256 = sha256.as_deref().unwrap_or(""),
            generation = after.generation(),
            "plugin swapped to another file"
        );
    }
    for line in ended {
        tracing::info!(generation = after.generation(), "{line}");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, file: &str) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            source: PluginSource::File(file.into()),
            config: String::new(),
            limits: Default::default(),
            capabilities: Default::default(),
            powers: Default::default(),
        }
    }

    fn file(spec: &PluginSpec) -> &Path {
        match &spec.source {
            PluginSource::File(path) => path,
            PluginSource::Bytes(_) => panic!("a file"),
        }
    }

    fn swap(name: &str, file: &str) -> Swap {
        Swap {
            name: name.into(),
            file: file.into(),
        }
    }

    #[test]
    fn a_swap_holds_until_the_source_names_another_file_for_its_plugin() {
        let source = |guard: &str| vec![spec("guard", guard), spec("audit", "/p/audit.wasm")];
        let mut specs = source("/p/guard.wasm");
        let (held, ended) =
            apply_swaps(&mut specs, Vec::new(), &[swap("guard", "/new/guard.wasm")]).unwrap();
        assert_eq!(file(&specs[0]), Path::new("/new/guard.wasm"));
        assert_eq!(file(&specs[1]), Path::new("/p/audit.wasm"));
        assert!(ended.is_empty());

        // The source unchanged: the swap holds.
        let mut specs = source("/p/guard.wasm");
        let (held, ended) = apply_swaps(&mut specs, held, &[]).unwrap();
        assert_eq!(file(&specs[0]), Path::new("/new/guard.wasm"));
        assert!(ended.is_empty());

        // The source names another file: it wins, and the swap ends.
        let mut specs = source("/p/guard-2.wasm");
        let (held, ended) = apply_swaps(&mut specs, held, &[]).unwrap();
        assert_eq!(file(&specs[0]), Path::new("/p/guard-2.wasm"));
        assert!(held.is_empty());
        assert_eq!(ended.len(), 1, "{ended:?}");
    }

    #[test]
    fn swapping_back_to_the_sources_file_holds_nothing() {
        let mut specs = vec![spec("guard", "/p/guard.wasm")];
        let (held, _) =
            apply_swaps(&mut specs, Vec::new(), &[swap("guard", "/new/guard.wasm")]).unwrap();
        let mut specs = vec![spec("guard", "/p/guard.wasm")];
        let (held, _) = apply_swaps(&mut specs, held, &[swap("guard", "/p/guard.wasm")]).unwrap();
        assert!(held.is_empty());
        assert_eq!(file(&specs[0]), Path::new("/p/guard.wasm"));
    }

    #[test]
    fn unknown_names_relative_files_and_a_name_twice_are_refused() {
        let specs = || vec![spec("guard", "/p/guard.wasm"), spec("audit", "/p/a.wasm")];
        let refused = |swaps: &[Swap]| apply_swaps(&mut specs(), Vec::new(), swaps).unwrap_err();
        let unknown = refused(&[swap("guard", "/n/g.wasm"), swap("gaurd", "/n/g.wasm")]);
        assert!(
            matches!(&unknown, LoadError::UnknownPlugin { name, known } if name == "gaurd" && known == &["guard", "audit"]),
            "{unknown}"
        );
        assert_eq!(
            unknown.to_string(),
            "no plugin named \"gaurd\" in the chain; its plugins: guard, audit"
        );
        assert!(matches!(
            refused(&[swap("guard", "new.wasm")]),
            LoadError::RelativeFile { .. }
        ));
        assert!(matches!(
            refused(&[swap("guard", "/a.wasm"), swap("guard", "/b.wasm")]),
            LoadError::SwappedTwice { .. }
        ));
    }
}
