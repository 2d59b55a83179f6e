//! An on-disk cache of compiled components, so that a restart or the reload of an
//! unchanged plugin does not run cranelift again.
//!
//! One file per compiled component, `<dir>/<key>.cwasm`. The key is the hex SHA-256 of
//! the component bytes and of the engine's compatibility hash
//! ([`wasmtime::Engine::precompile_compatibility_hash`]: target, cranelift flags,
//! tunables, wasm features, and wasmtime's own exact version through the default
//! `ModuleVersionStrategy::WasmtimeVersion`), so a changed plugin, a changed engine
//! configuration (fuel, say) or another wasmtime gets another file instead of a wrong
//! one.
//!
//! The file is wasmtime's precompiled form (`Component::serialize`, the same bytes as
//! `Engine::precompile_component`) followed by a trailer: the SHA-256 of those bytes and
//! a magic tag. A hit is only deserialised when the trailer matches, because wasmtime
//! checks the header of a precompiled artifact but not its code: a flipped bit in the
//! code section would otherwise run. A truncated, corrupt or incompatible file is never
//! an error: it is logged, compiled again and overwritten.
//!
//! There is no eviction: a file per plugin version and engine configuration, a few
//! hundred KiB to a few MiB each; delete the directory to reclaim it.

use std::fs;
use std::hash::Hasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::PluginError;

/// Ends every cache file, after the SHA-256 of the precompiled bytes. Bumped when the
/// file layout changes (the key's domain tag changes with it).
const MAGIC: &[u8; 8] = b"SLUICE01";
const DIGEST_LEN: usize = 32;
const TRAILER_LEN: usize = DIGEST_LEN + MAGIC.len();

/// A directory of precompiled components, owned by the current user (mode 0700).
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// Whether a component came from the compile cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache configured: compiled.
    Off,
    /// Deserialised from the cache: not compiled.
    Hit,
    /// Not in the cache (or the cached file was unusable): compiled, then stored.
    Miss,
}

impl CacheStatus {
    /// The word used in logs (`off`, `hit`, `miss`).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Off => "off",
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// A component ready for `instantiate_pre`, and what it cost to get it.
pub(crate) struct Compiled {
    pub(crate) component: Component,
    pub(crate) cache: CacheStatus,
    /// Wall-clock time to obtain the component: compiling (and storing, on a miss), or
    /// reading, verifying and deserialising (on a hit).
    pub(crate) elapsed: Duration,
}

/// Compiles `bytes` with `engine`, through `cache` when there is one.
pub(crate) fn compile(
    engine: &Engine,
    cache: Option<&CompileCache>,
    name: &str,
    bytes: &[u8],
) -> Result<Compiled, PluginError> {
    match cache {
        Some(cache) => cache.load(engine, name, bytes),
        None => {
            let started = Instant::now();
            let component = compile_now(engine, name, bytes)?;
            Ok(Compiled {
                component,
                cache: CacheStatus::Off,
                elapsed: started.elapsed(),
            })
        }
    }
}

fn compile_now(engine: &Engine, name: &str, bytes: &[u8]) -> Result<Component, PluginError> {
    Component::new(engine, bytes).map_err(|e| PluginError::Compile {
        name: name.to_string(),
        reason: format!("{e:#}"),
    })
}

impl CompileCache {
    /// Uses `dir` as the cache, creating it (and its parents) with mode 0700, and
    /// setting 0700 on it if it already exists. Setting the mode fails unless the
    /// directory is ours, which is what makes deserialising its files sound (see
    /// [`CompileCache`]'s module docs and the SAFETY comment in `load`). If the
    /// directory was open to others, the compiled files already in it may not be ours:
    /// they are deleted.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, PluginError> {
        let dir = dir.into();
        let fail = |source: io::Error| PluginError::Cache {
            dir: dir.clone(),
            source,
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            builder.mode(0o700);
            builder.create(&dir).map_err(fail)?;
            let was = fs::metadata(&dir).map_err(fail)?.permissions().mode();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
            if was & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    "compile cache directory was mode {:o}: now 0700, and its compiled \
                     files are discarded",
                    was & 0o777
                );
                for entry in fs::read_dir(&dir).map_err(fail)? {
                    let path = entry.map_err(fail)?.path();
                    if path.extension().is_some_and(|e| e == "cwasm") {
                        fs::remove_file(&path).map_err(fail)?;
                    }
                }
            }
        }
        #[cfg(not(unix))]
        builder.create(&dir).map_err(fail)?;
        if !fs::metadata(&dir).map_err(fail)?.is_dir() {
            return Err(fail(io::Error::other("not a directory")));
        }
        Ok(Self { dir })
    }

    /// Where the cache lives unless `--cache-dir` says otherwise: `$SLUICE_CACHE_DIR`,
    /// else `$XDG_CACHE_HOME/sluice`, else `$HOME/.cache/sluice` (the XDG convention,
    /// so that cache cleaners find it). `None` when none of them is set.
    pub fn default_dir() -> Option<PathBuf> {
        default_dir_from(|name| std::env::var_os(name))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache key of `bytes` compiled by `engine`: hex SHA-256 over a domain tag,
    /// the engine's compatibility hash and the bytes.
    pub(crate) fn key(engine: &Engine, bytes: &[u8]) -> String {
        let mut digest = Sha256::new();
        digest.update(b"sluice compile cache v1\0");
        std::hash::Hash::hash(
            &engine.precompile_compatibility_hash(),
            &mut DigestHasher(&mut digest),
        );
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
        hex(&digest.finalize())
    }

    /// The file a key is stored in.
    pub(crate) fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The component for `bytes`: deserialised from the cache on a hit, otherwise
    /// compiled and stored. Only a compile error is an error; any cache trouble is
    /// logged and costs a compilation.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        name: &str,
        bytes: &[u8],
    ) -> Result<Compiled, PluginError> {
        let started = Instant::now();
        let path = self.entry(&Self::key(engine, bytes));
        match fs::read(&path) {
            Ok(file) => match verified(&file) {
                Some(image) => {
                    // SAFETY: `Component::deserialize` runs the machine code it is
                    // given, so it must be code wasmtime produced for this engine.
                    // It is: the file is in a directory we created (or re-moded) 0700,
                    // and emptied of compiled files if it had been open to others, so
                    // only this user can have written it; we write files under a
                    // temporary name and rename them, so a reader never sees a partial
                    // one; the trailer's SHA-256 matched, so these are exactly the
                    // bytes `Component::serialize` gave us; and the key includes the
                    // engine's compatibility hash, so they were compiled by a
                    // compatible engine (wasmtime also re-checks the engine settings
                    // and version recorded in the artifact, and refuses a mismatch,
                    // which lands in the fallback below).
                    match unsafe { Component::deserialize(engine, image) } {
                        Ok(component) => {
                            return Ok(Compiled {
                                component,
                                cache: CacheStatus::Hit,
                                elapsed: started.elapsed(),
                            });
                        }
                        Err(e) => tracing::warn!(
                            plugin = name,
                            path = %path.display(),
                            "cached compiled plugin is unusable ({e:#}); compiling it again"
                        ),
                    }
                }
                None => tracing::warn!(
                    plugin = name,
                    path = %path.display(),
                    "cached compiled plugin is truncated or corrupt; compiling it again"
                ),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                plugin = name,
                path = %path.display(),
                "cannot read the compile cache ({e}); compiling"
            ),
        }
        let component = compile_now(engine, name, bytes)?;
        match component.serialize() {
            Ok(image) => {
                if let Err(e) = self.store(&path, &image) {
                    tracing::warn!(
                        plugin = name,
                        path = %path.display(),
                        "cannot write the compile cache ({e}); the next start compiles again"
                    );
                }
            }
            Err(e) => tracing::warn!(
                plugin = name,
                "cannot serialise the compiled plugin for the cache: {e:#}"
            ),
        }
        Ok(Compiled {
            component,
            cache: CacheStatus::Miss,
            elapsed: started.elapsed(),
        })
    }

    /// Writes `image` and its trailer to a fresh temporary file in the cache directory
    /// and renames it over `path`, so a concurrent reader (another sluice starting)
    /// sees the old file, the new one, or none, never half of one. Two writers of the
    /// same key write the same bytes, so whichever rename lands last is fine. No fsync:
    /// a file torn by a crash fails its checksum and is rebuilt.
    fn store(&self, path: &Path, image: &[u8]) -> io::Result<()> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.dir.join(format!(
            ".{file_name}.{}.{}.tmp",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let digest = Sha256::digest(image);
        let written = (|| {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(image)?;
            file.write_all(&digest)?;
            file.write_all(MAGIC)?;
            drop(file);
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// [`CompileCache::default_dir`] over any environment (tests must not mutate the
/// process environment).
fn default_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("SLUICE_CACHE_DIR") {
        return Some(dir.into());
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("sluice"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache").join("sluice"))
}

/// The precompiled image inside a cache file, if its trailer is present and its
/// checksum matches.
fn verified(file: &[u8]) -> Option<&[u8]> {
    let image_len = file.len().checked_sub(TRAILER_LEN)?;
    let (image, trailer) = file.split_at(image_len);
    let (digest, magic) = trailer.split_at(DIGEST_LEN);
    (magic == MAGIC && Sha256::digest(image).as_slice() == digest).then_some(image)
}

/// Feeds a [`std::hash::Hash`] value into a SHA-256, so that wasmtime's compatibility
/// hash (only offered as `impl Hash`) becomes part of a stable, collision-resistant key
/// instead of a 64-bit `DefaultHasher` value.
struct DigestHasher<'a>(&'a mut Sha256);

impl Hasher for DigestHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Never used: the digest is the result.
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plugin::builtin;
    use crate::plugin::runtime::Runtime;

    /// A fresh, empty cache directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sluice-cache-{label}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn runtime() -> Arc<Runtime> {
        Runtime::new().unwrap()
    }

    /// The component instantiates with the host's linker: the cached code is usable.
    fn assert_works(runtime: &Runtime, compiled: &Compiled) {
        runtime
            .linker()
            .instantiate_pre(&compiled.component)
            .expect("the component links against the host");
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn a_miss_stores_and_the_next_load_is_a_hit() {
        let tmp = TempDir::new("hit");
        let cache = CompileCache::new(tmp.0.join("nested")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(cache.dir()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let rt = runtime();
        let first = cache.load(rt.engine(), "demo", builtin::DEMO).unwrap();
        assert_eq!(first.cache, CacheStatus::Miss);
        assert_works(&rt, &first);
        let key = CompileCache::key(rt.engine(), builtin::DEMO);
        assert_eq!(files_in(cache.dir()), vec![cache.entry(&key)]);

        let second = cache.load(rt.engine(), "demo", builtin::DEMO).unwrap();
        assert_eq!(second.cache, CacheStatus::Hit);
        assert_works(&rt, &second);

        // Another engine with the same configuration (a restart) hits as well.
        let rt2 = runtime();
        let third = cache.load(rt2.engine(), "demo", builtin::DEMO).unwrap();
        assert_eq!(third.cache, CacheStatus::Hit);
        assert_works(&rt2, &third);
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_compiled_again_and_rewritten() {
        let tmp = TempDir::new("corrupt");
        let cache = CompileCache::new(&tmp.0).unwrap();
        let rt = runtime();
        cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        let path = cache.entry(&CompileCache::key(rt.engine(), builtin::PASS));
        let good = fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        let truncated = good[..good.len() / 3].to_vec();
        // A well-formed trailer over bytes that are not a precompiled component:
        // wasmtime itself must refuse them.
        let mut not_elf = b"certainly not an ELF image".to_vec();
        not_elf.extend_from_slice(&Sha256::digest(&not_elf));
        not_elf.extend_from_slice(MAGIC);

        for (what, bad) in [
            ("flipped", flipped),
            ("truncated", truncated),
            ("empty", Vec::new()),
            ("not-elf", not_elf),
        ] {
            fs::write(&path, &bad).unwrap();
            let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
            assert_eq!(loaded.cache, CacheStatus::Miss, "{what}");
            assert_works(&rt, &loaded);
            assert_eq!(fs::read(&path).unwrap(), good, "{what}: rewritten");
            let again = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
            assert_eq!(again.cache, CacheStatus::Hit, "{what}");
        }
        assert_eq!(files_in(cache.dir()).len(), 1, "no temporary file left");
    }

    #[test]
    fn different_bytes_get_different_keys() {
        let rt = runtime();
        let pass = CompileCache::key(rt.engine(), builtin::PASS);
        let demo = CompileCache::key(rt.engine(), builtin::DEMO);
        assert_ne!(pass, demo);
        assert_eq!(pass.len(), 64);
        assert!(pass.bytes().all(|b| b.is_ascii_hexdigit()));
        // Stable for the same engine configuration, across engines.
        assert_eq!(pass, CompileCache::key(runtime().engine(), builtin::PASS));
        let mut one_more = builtin::PASS.to_vec();
        one_more.push(0);
        assert_ne!(pass, CompileCache::key(rt.engine(), &one_more));
    }

    #[test]
    fn another_engine_configuration_gets_another_key() {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        // No epoch interruption: different generated code, must not share a file.
        let other = Engine::new(&config).unwrap();
        assert_ne!(
            CompileCache::key(runtime().engine(), builtin::PASS),
            CompileCache::key(&other, builtin::PASS)
        );
    }

    #[test]
    fn the_default_directory_follows_sluice_then_xdg_then_home() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all: &'static [(&str, &str)] = &[
            ("SLUICE_CACHE_DIR", "/s"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(default_dir_from(env(all)), Some("/s".into()));
        assert_eq!(default_dir_from(env(&all[1..])), Some("/x/sluice".into()));
        assert_eq!(
            default_dir_from(env(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")])),
            Some("/h/.cache/sluice".into())
        );
        assert_eq!(default_dir_from(env(&[])), None);
    }

    #[test]
    fn a_compile_error_is_still_an_error() {
        let tmp = TempDir::new("error");
        let cache = CompileCache::new(&tmp.0).unwrap();
        let rt = runtime();
        let err = cache.load(rt.engine(), "junk", b"junk").err().unwrap();
        assert!(matches!(err, PluginError::Compile { .. }), "{err}");
        assert!(files_in(cache.dir()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_open_to_others_is_closed_and_emptied() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("open");
        let cache = CompileCache::new(&tmp.0).unwrap();
        let rt = runtime();
        cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        fs::write(tmp.0.join("notes.txt"), b"kept").unwrap();
        fs::set_permissions(&tmp.0, fs::Permissions::from_mode(0o777)).unwrap();
        let cache = CompileCache::new(&tmp.0).unwrap();
        let mode = fs::metadata(&tmp.0).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(files_in(&tmp.0), vec![tmp.0.join("notes.txt")]);
        let again = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(again.cache, CacheStatus::Miss);
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_refused() {
        let tmp = TempDir::new("file");
        fs::create_dir_all(&tmp.0).unwrap();
        let file = tmp.0.join("cache");
        fs::write(&file, b"").unwrap();
        let err = CompileCache::new(&file).unwrap_err();
        assert!(matches!(err, PluginError::Cache { .. }), "{err}");
    }
}
