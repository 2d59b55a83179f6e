//! `sluice plugin check FILE.wasm`: tells a plugin author, before they run the proxy,
//! whether sluice will load their file and why not.
//!
//! [`check`] does the analysis and returns a typed [`Report`] (what tests assert on);
//! its `Display` is the human report the subcommand prints. The steps are those of
//! [`Plugin::load`], one at a time so that each can be reported:
//!
//! 1. the bytes are WebAssembly, and a component rather than a core module
//!    ([`CheckError`] otherwise: there is nothing more to report);
//! 2. it compiles, through the compile cache the proxy uses ([`Options::cache_dir`]:
//!    the same directory by default, so a checked plugin starts the proxy from the
//!    cache and a second check is a hit; `--no-cache` times a cold start);
//! 3. its imports are ones the host provides, its exports make up the `filter` or the
//!    `interceptor` world, and whatever names `sluice:plugin` has the version this host
//!    implements ([`Problem`]s are collected, not the first one only);
//! 4. if nothing is wrong so far, a trial instance is created and `init` run, exactly as
//!    the proxy does at start-up.
//!
//! `init` and the configuration: without `--config`, `init` gets the empty string, which
//! a plugin that needs a configuration may refuse. That is reported as a note
//! ([`Trial::NeedsConfig`]) and the check still passes, since the plugin itself is
//! loadable and the check cannot guess its configuration. With `--config`, the author
//! asked whether *that* configuration works, so a refusal is a problem. A failure to
//! instantiate a filter (which has no `init`) is always a problem.
//!
//! WASI: like the proxy, the check grants nothing by default, so a `wasi:*` import is
//! refused and named. `--stdio` / `--read-dir DIR` / `--wasi` (an empty WASI context)
//! ([`Options::capabilities`]) check the plugin as a configuration with those grants
//! would load it: WASI imports are then linked with WASI preview 2, and the trial
//! instance confirms they resolve.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;

use crate::error_chain::ErrorChain;
use crate::plugin::{
    CacheStatus, Capabilities, CompileCache, Plugin, PluginError, PluginLimits, PluginSource,
    PluginSpec, Runtime, World,
};

/// The package this host implements.
pub const HOST_PACKAGE: &str = "sluice:plugin";
/// The versions of [`HOST_PACKAGE`] this host implements (the current one last).
pub const HOST_VERSION: &str = "0.1.0 and 0.2.0";
/// The interfaces of [`HOST_PACKAGE`] the host provides, by version.
const HOST_INTERFACES: &[(&str, &[&str])] = &[
    ("0.1", &["host", "types"]),
    (
        "0.2",
        &["types", "log", "context", "state", "metrics", "interest"],
    ),
];
/// The export holding a 0.2 plugin's functions.
const HANDLER: &str = "handler";

/// Exports of the `interceptor` world besides `on-event`.
const LIFECYCLE: [&str; 3] = ["init", "on-stream-start", "on-stream-end"];

/// What `sluice plugin check` found out about a component. The check passed when
/// [`Report::problems`] is empty.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file, as given.
    pub file: PathBuf,
    /// Its size in bytes.
    pub size: usize,
    /// The world its exports implement; `None` when they implement neither.
    pub world: Option<World>,
    /// The contract version it was built against (`None` with the world).
    pub contract: Option<crate::plugin::Contract>,
    /// Each import, in the component's order.
    pub imports: Vec<Import>,
    /// Each export, in the component's order.
    pub exports: Vec<Export>,
    /// How long compiling took (reading the compiled form, on a cache hit).
    pub compile_time: Duration,
    /// Whether the compiled form came from the compile cache.
    pub cache: CacheStatus,
    /// The compile cache directory, when one was used.
    pub cache_dir: Option<PathBuf>,
    /// The trial instantiation and `init`.
    pub trial: Trial,
    /// Why sluice would refuse the plugin. Empty: it would load it.
    pub problems: Vec<Problem>,
}

/// One import of the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The import name, e.g. `sluice:plugin/host@0.1.0`.
    pub name: String,
    /// What kind of item is imported (`instance`, `func`, ...).
    pub kind: &'static str,
    /// For an instance: the names it must contain (functions, types).
    pub items: Vec<String>,
    /// Whether the host provides it.
    pub status: ImportStatus,
}

/// Whether the host can satisfy an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportStatus {
    /// The host provides it (the trial instantiation confirms the types).
    Provided,
    /// A WASI interface, linked because [`Options::capabilities`] grants something
    /// (the trial instantiation confirms WASI preview 2 has it).
    Granted,
    /// The host will refuse to instantiate a component that needs it.
    Refused(Refusal),
}

/// Why the host refuses an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A WASI interface, and no capability granted: plugins get no ambient authority.
    Wasi,
    /// A `sluice:plugin` interface of another version.
    WrongVersion {
        /// The version the component was built against (`none` if unversioned).
        found: String,
    },
    /// A `sluice:plugin@0.1.x` name that is not one of its interfaces.
    UnknownInterface,
    /// Anything else.
    Foreign,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Wasi => f.write_str(
                "the host grants no WASI unless the plugin's configuration grants a \
                 capability: stdio or read_dir; check with --stdio or --read-dir DIR",
            ),
            Refusal::WrongVersion { found } => write!(
                f,
                "built against {HOST_PACKAGE}@{found}, this host implements {HOST_VERSION}"
            ),
            Refusal::UnknownInterface => write!(
                f,
                "no version of {HOST_PACKAGE} this host implements ({HOST_VERSION}) has \
                 such an interface (the host provides {})",
                provided_list()
            ),
            Refusal::Foreign => write!(
                f,
                "not part of {HOST_PACKAGE}@{HOST_VERSION}; the host provides only {}",
                provided_list()
            ),
        }
    }
}

/// One export of the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The export name, e.g. `on-event`.
    pub name: String,
    /// What kind of item is exported (`func`, `instance`, ...).
    pub kind: &'static str,
    /// Whether the host calls it.
    pub role: ExportRole,
}

/// What the host does with an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportRole {
    /// `on-event`: called for every event (both worlds).
    OnEvent,
    /// `init`, `on-stream-start` or `on-stream-end` (interceptor world).
    Lifecycle,
    /// Not part of the contract: never called.
    Ignored,
}

/// The trial instantiation, as the proxy does it when it loads the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trial {
    /// Instantiated, and (interceptor) `init` accepted the configuration.
    Passed,
    /// Not attempted: the component has problems already.
    Skipped,
    /// `init("")` failed and no `--config` was given: probably a plugin that needs a
    /// configuration. A note, not a problem.
    NeedsConfig(String),
    /// Instantiation or `init` with the given configuration failed (also a problem).
    Failed(String),
}

/// A reason sluice would refuse the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// It names `sluice:plugin` at a version this host does not implement.
    WrongVersion {
        /// That version (`none` if unversioned).
        found: String,
    },
    /// It imports something else the host does not provide.
    RefusedImport {
        /// The import name.
        name: String,
        /// Why it is refused.
        refusal: Refusal,
    },
    /// No `on-event` export: neither world.
    MissingOnEvent,
    /// Some but not all of `init`, `on-stream-start`, `on-stream-end`.
    PartialInterceptor {
        /// The missing ones.
        missing: Vec<&'static str>,
    },
    /// The host's own checks refused it for another reason (e.g. an export or host
    /// function with the wrong type); the message is wasmtime's.
    Contract(String),
    /// The trial instantiation or `init` failed.
    Trial(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::WrongVersion { found } => write!(
                f,
                "built against {HOST_PACKAGE}@{found}, this host implements {HOST_VERSION}: \
                 rebuild against wit/plugin.wit of this sluice"
            ),
            Problem::RefusedImport { name, refusal } => {
                write!(f, "imports `{name}`, which the host refuses: {refusal}")
            }
            Problem::MissingOnEvent => write!(
                f,
                "exports neither `{HOST_PACKAGE}/{HANDLER}@0.2.0` nor `on-event`: not a \
                 0.2 plugin nor a 0.1 filter or interceptor (build it against \
                 wit/plugin.wit, world `plugin`)"
            ),
            Problem::PartialInterceptor { missing } => write!(
                f,
                "exports part of the interceptor world but not {}: export all of init, \
                 on-stream-start and on-stream-end, or none (filter world)",
                missing.join(", ")
            ),
            Problem::Contract(reason) => write!(f, "the host refuses it: {reason}"),
            Problem::Trial(reason) => write!(f, "trial instance failed: {reason}"),
        }
    }
}

/// Why a file could not be analysed at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No `\0asm` magic number.
    #[error("{} is not WebAssembly (it does not start with the \\0asm magic number)", path.display())]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// A core module, not a component.
    #[error(
        "{} is a core WebAssembly module, not a component: wrap it with \
         `wasm-tools component new` or build it for wasm32-wasip2 (see plugins/README.md)",
        path.display()
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// wasmtime could not compile it.
    #[error("{} is not a valid component: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: wasmtime::Error,
    },
    /// The engine could not be created.
    #[error(transparent)]
    Engine(PluginError),
}

impl Report {
    /// True when sluice would load the plugin.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the plugin would be loaded with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Handed to `init`. `None`: the empty string, and a refusal is only a note.
    pub config: Option<String>,
    /// The grants of the plugin's configuration (none by default, as in the proxy).
    /// With any, WASI imports are linked instead of refused.
    pub capabilities: Capabilities,
    /// The compile cache directory (`None`: compile without one). The CLI gives the
    /// proxy's default.
    pub cache_dir: Option<PathBuf>,
}

/// Reads and checks `path`.
pub fn check(path: &Path, options: &Options) -> Result<Report, CheckError> {
    let bytes = std::fs::read(path).map_err(|source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_bytes(path, &bytes, options)
}

/// Checks `bytes`, reported as coming from `path` (which is not read).
pub fn check_bytes(path: &Path, bytes: &[u8], options: &Options) -> Result<Report, CheckError> {
    let file = path.to_path_buf();
    if bytes.len() < 8 || bytes[..4] != *b"\0asm" {
        return Err(CheckError::NotWasm { path: file });
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(CheckError::CoreModule { path: file });
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    let cache = options.cache_dir.as_deref().and_then(CompileCache::open);
    let cache_dir = cache.as_ref().map(|c| c.dir().to_path_buf());
    let runtime = Runtime::with_cache(cache).map_err(CheckError::Engine)?;
    let compiled = crate::plugin::compile(runtime.engine(), runtime.cache(), &name, bytes)
        .map_err(|e| match e {
            PluginError::Compile { source, .. } => CheckError::Invalid {
                path: file.clone(),
                source,
            },
            // A cache that fails is compiled around (logged), so this is the engine.
            other => CheckError::Engine(other),
        })?;
    let compile_time = compiled.elapsed;
    let cache_status = compiled.cache;
    let ty = compiled.component.component_type();
    let engine = runtime.engine();

    let mut problems = Vec::new();
    let mut wrong_versions: Vec<String> = Vec::new();
    let mut wrong_version = |found: &str, problems: &mut Vec<Problem>| {
        if !wrong_versions.iter().any(|v| v == found) {
            wrong_versions.push(found.to_string());
            problems.push(Problem::WrongVersion {
                found: found.to_string(),
            });
        }
    };

    let imports: Vec<Import> = ty
        .imports(engine)
        .map(|(import, item)| {
            let status = classify_import(import, !options.capabilities.is_empty());
            match &status {
                ImportStatus::Refused(Refusal::WrongVersion { found }) => {
                    wrong_version(found, &mut problems)
                }
                ImportStatus::Refused(refusal) => problems.push(Problem::RefusedImport {
                    name: import.to_string(),
                    refusal: refusal.clone(),
                }),
                ImportStatus::Provided | ImportStatus::Granted => {}
            }
            Import {
                name: import.to_string(),
                kind: kind(&item.ty),
                items: items(engine, &item.ty),
                status,
            }
        })
        .collect();

    let exports: Vec<Export> = ty
        .exports(engine)
        .map(|(export, item)| {
            if let Some(Interface {
                package: HOST_PACKAGE,
                version,
                ..
            }) = Interface::parse(export)
                && !compatible(version)
            {
                wrong_version(version.unwrap_or("none"), &mut problems);
            }
            let handler = Interface::parse(export)
                .is_some_and(|i| i.package == HOST_PACKAGE && i.interface == HANDLER);
            let role = match export {
                "on-event" | "on-events" => ExportRole::OnEvent,
                _ if handler => ExportRole::OnEvent,
                e if LIFECYCLE.contains(&e) => ExportRole::Lifecycle,
                _ => ExportRole::Ignored,
            };
            Export {
                name: export.to_string(),
                kind: kind(&item.ty),
                role,
            }
        })
        .collect();

    let has = |name: &str| exports.iter().any(|e| e.name == name);
    let missing: Vec<&'static str> = LIFECYCLE.into_iter().filter(|n| !has(n)).collect();
    let v2 = exports.iter().any(|e| {
        Interface::parse(&e.name).is_some_and(|i| {
            i.package == HOST_PACKAGE
                && i.interface == HANDLER
                && minor_of(i.version) == Some("0.2")
        })
    });
    let world = if v2 {
        Some(World::Plugin)
    } else if !has("on-event") {
        problems.push(Problem::MissingOnEvent);
        None
    } else if missing.is_empty() {
        Some(World::Interceptor)
    } else if missing.len() == LIFECYCLE.len() {
        Some(World::Filter)
    } else {
        problems.push(Problem::PartialInterceptor { missing });
        None
    };

    let contract = world.map(|_| crate::plugin::detect_contract(&compiled.component, engine));
    let trial = if problems.is_empty() {
        trial(&runtime, path, name, options, compiled, &mut problems)
    } else {
        Trial::Skipped
    };
    Ok(Report {
        file,
        size: bytes.len(),
        world,
        contract,
        imports,
        exports,
        compile_time,
        cache: cache_status,
        cache_dir,
        trial,
        problems,
    })
}

/// Loads the compiled component as the proxy would (export lookup, import linking,
/// one instance, `init`).
fn trial(
    runtime: &Arc<Runtime>,
    path: &Path,
    name: String,
    options: &Options,
    compiled: crate::plugin::Compiled,
    problems: &mut Vec<Problem>,
) -> Trial {
    let spec = PluginSpec {
        powers: Default::default(),
        name,
        source: PluginSource::File(path.to_path_buf()),
        config: options.config.clone().unwrap_or_default(),
        limits: PluginLimits::default(),
        capabilities: options.capabilities.clone(),
    };
    match Plugin::from_compiled(runtime, spec, compiled) {
        Ok(_) => Trial::Passed,
        Err(PluginError::Init { source, .. }) => {
            let reason = ErrorChain(&source).to_string();
            // `Plugin::instantiate` words an `init` failure "init refused ..." or
            // "init failed (...)"; anything else (instantiation, an export of the
            // wrong type) fails whatever the configuration. The BADINIT and wrong-type
            // tests in tests/cases/plugin_check.rs pin this down.
            let init_failed = reason.starts_with("init ");
            if options.config.is_none() && init_failed {
                Trial::NeedsConfig(reason)
            } else {
                problems.push(Problem::Trial(reason.clone()));
                Trial::Failed(reason)
            }
        }
        Err(PluginError::Contract { problem, .. }) => {
            let reason = problem.to_string();
            problems.push(Problem::Contract(reason.clone()));
            Trial::Failed(reason)
        }
        Err(PluginError::Imports { source, .. } | PluginError::Compile { source, .. }) => {
            let source: &(dyn std::error::Error + 'static) = &*source;
            let reason = ErrorChain(source).to_string();
            problems.push(Problem::Contract(reason.clone()));
            Trial::Failed(reason)
        }
        Err(PluginError::Capability { source, .. }) => {
            let reason = ErrorChain(&source).to_string();
            problems.push(Problem::Trial(reason.clone()));
            Trial::Failed(reason)
        }
        Err(other) => {
            let reason = ErrorChain(&other).to_string();
            problems.push(Problem::Contract(reason.clone()));
            Trial::Failed(reason)
        }
    }
}

/// `namespace:package/interface@version`, split.
struct Interface<'a> {
    package: &'a str,
    interface: &'a str,
    version: Option<&'a str>,
}

impl<'a> Interface<'a> {
    fn parse(name: &'a str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(version)),
            None => (name, None),
        };
        let (package, interface) = path.split_once('/')?;
        package.contains(':').then_some(Self {
            package,
            interface,
            version,
        })
    }
}

/// Whether wasmtime's linker would resolve an import of `sluice:plugin@version` to the
/// host's 0.1.0 definitions: semver-compatible versions share `0.1.x` (no
/// pre-release); an unversioned name matches nothing.
fn compatible(version: Option<&str>) -> bool {
    interfaces_of(version).is_some()
}

/// The interfaces the host provides at `version` (any patch of a minor it implements).
fn interfaces_of(version: Option<&str>) -> Option<&'static [&'static str]> {
    let minor = minor_of(version)?;
    HOST_INTERFACES
        .iter()
        .find_map(|(m, interfaces)| (*m == minor).then_some(*interfaces))
}

/// The implemented minor version (`0.1`, `0.2`) that `version` is a patch of.
fn minor_of(version: Option<&str>) -> Option<&'static str> {
    let version = version?;
    HOST_INTERFACES.iter().find_map(|(minor, _)| {
        let patch = version.strip_prefix(minor)?.strip_prefix('.')?;
        (!patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit())).then_some(*minor)
    })
}

/// `granted`: the plugin has a capability, so it is linked with WASI preview 2.
fn classify_import(name: &str, granted: bool) -> ImportStatus {
    let Some(interface) = Interface::parse(name) else {
        return ImportStatus::Refused(Refusal::Foreign);
    };
    if interface.package.starts_with("wasi:") {
        return if granted {
            ImportStatus::Granted
        } else {
            ImportStatus::Refused(Refusal::Wasi)
        };
    }
    if interface.package != HOST_PACKAGE {
        return ImportStatus::Refused(Refusal::Foreign);
    }
    let Some(provided) = interfaces_of(interface.version) else {
        return ImportStatus::Refused(Refusal::WrongVersion {
            found: interface.version.unwrap_or("none").to_string(),
        });
    };
    if provided.contains(&interface.interface) {
        ImportStatus::Provided
    } else {
        ImportStatus::Refused(Refusal::UnknownInterface)
    }
}

fn provided_list() -> String {
    HOST_INTERFACES
        .iter()
        .flat_map(|(minor, interfaces)| {
            interfaces
                .iter()
                .map(move |i| format!("{HOST_PACKAGE}/{i}@{minor}.0"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "core module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

fn items(engine: &Engine, item: &ComponentItem) -> Vec<String> {
    match item {
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// The human report printed by `sluice plugin check`.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "file:      {} ({} bytes)",
            self.file.display(),
            self.size
        )?;
        writeln!(f, "component: yes")?;
        match (self.world, self.contract) {
            (Some(world), Some(contract)) => {
                writeln!(f, "contract:  {}", contract.as_str())?;
                writeln!(f, "world:     {}", world.as_str())?;
            }
            _ => writeln!(
                f,
                "world:     none (neither 0.2's plugin nor 0.1's filter or interceptor)"
            )?,
        }
        let width = self
            .imports
            .iter()
            .map(|i| i.name.len())
            .chain(self.exports.iter().map(|e| e.name.len()))
            .max()
            .unwrap_or(0);
        writeln!(
            f,
            "imports:{}",
            if self.imports.is_empty() {
                "   none"
            } else {
                ""
            }
        )?;
        for import in &self.imports {
            let status = match &import.status {
                ImportStatus::Provided => "provided".to_string(),
                ImportStatus::Granted => "granted (WASI, by the capabilities given)".to_string(),
                ImportStatus::Refused(refusal) => format!("REFUSED ({refusal})"),
            };
            let kind = if import.items.is_empty() {
                import.kind.to_string()
            } else {
                format!("{}: {}", import.kind, import.items.join(", "))
            };
            writeln!(f, "  {:width$}  {status}  [{kind}]", import.name)?;
        }
        writeln!(
            f,
            "exports:{}",
            if self.exports.is_empty() {
                "   none"
            } else {
                ""
            }
        )?;
        for export in &self.exports {
            let role = match export.role {
                ExportRole::OnEvent => "called for the messages it wants",
                ExportRole::Lifecycle => "interceptor lifecycle",
                ExportRole::Ignored => "ignored (not part of the contract)",
            };
            writeln!(f, "  {:width$}  {role}  [{}]", export.name, export.kind)?;
        }
        let ms = self.compile_time.as_secs_f64() * 1e3;
        let dir = |d: &Option<PathBuf>| d.as_ref().map(|d| d.display().to_string());
        match (self.cache, dir(&self.cache_dir)) {
            (CacheStatus::Hit, Some(dir)) => {
                writeln!(f, "compile:   {ms:.1} ms (cache hit: read from {dir})")?
            }
            (CacheStatus::Miss, Some(dir)) => writeln!(
                f,
                "compile:   {ms:.1} ms (cache miss: compiled, stored in {dir})"
            )?,
            _ => writeln!(f, "compile:   {ms:.1} ms (cold, no cache)")?,
        }
        match &self.trial {
            Trial::Passed => match self.world {
                Some(World::Interceptor | World::Plugin) => writeln!(
                    f,
                    "trial:     instantiated, init accepted the configuration"
                )?,
                _ => writeln!(f, "trial:     instantiated")?,
            },
            Trial::Skipped => writeln!(f, "trial:     skipped (fix the problems below first)")?,
            Trial::NeedsConfig(reason) => {
                writeln!(f, "trial:     instantiated; init(\"\") failed: {reason}")?;
                writeln!(
                    f,
                    "note:      the plugin wants a configuration (sluice will not start with \
                     one its init refuses): check the real one with --config '<config>'"
                )?
            }
            Trial::Failed(reason) => writeln!(f, "trial:     FAILED: {reason}")?,
        }
        if self.problems.is_empty() {
            writeln!(f, "result:    OK, sluice can load this plugin")
        } else {
            writeln!(f, "problems:")?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
            writeln!(
                f,
                "result:    REFUSED, sluice would not load this plugin ({} problem{})",
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_classified_by_name() {
        assert_eq!(
            classify_import("sluice:plugin/host@0.1.0", false),
            ImportStatus::Provided
        );
        assert_eq!(
            classify_import("sluice:plugin/types@0.1.3", false),
            ImportStatus::Provided
        );
        assert_eq!(
            classify_import("sluice:plugin/host@0.3.0", false),
            ImportStatus::Refused(Refusal::WrongVersion {
                found: "0.3.0".into()
            })
        );
        assert_eq!(
            classify_import("sluice:plugin/state@0.2.0", false),
            ImportStatus::Provided
        );
        assert_eq!(
            classify_import("sluice:plugin/host@0.2.0", false),
            ImportStatus::Refused(Refusal::UnknownInterface),
            "0.2 has no `host` (its log is `log`)"
        );
        assert_eq!(
            classify_import("sluice:plugin/state@0.1.0", false),
            ImportStatus::Refused(Refusal::UnknownInterface)
        );
        assert_eq!(
            classify_import("sluice:plugin/host@0.1.0-rc1", false),
            ImportStatus::Refused(Refusal::WrongVersion {
                found: "0.1.0-rc1".into()
            })
        );
        assert_eq!(
            classify_import("sluice:plugin/host", false),
            ImportStatus::Refused(Refusal::WrongVersion {
                found: "none".into()
            })
        );
        assert_eq!(
            classify_import("sluice:plugin/files@0.1.0", false),
            ImportStatus::Refused(Refusal::UnknownInterface)
        );
        assert_eq!(
            classify_import("wasi:cli/stdout@0.2.0", false),
            ImportStatus::Refused(Refusal::Wasi)
        );
        assert_eq!(
            classify_import("wasi:cli/stdout@0.2.0", true),
            ImportStatus::Granted
        );
        assert_eq!(
            classify_import("acme:x/y@1.0.0", true),
            ImportStatus::Refused(Refusal::Foreign)
        );
        assert_eq!(
            classify_import("plain-func", false),
            ImportStatus::Refused(Refusal::Foreign)
        );
    }
}
