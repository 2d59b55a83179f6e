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
//! Deserialising a file runs its machine code, so a file is only used when this user
//! wrote it: the directory must be owned by the current user (root included: root
//! trusts nobody else's cache either) and writable by nobody else, and each file is
//! opened relative to the directory as it was checked at start (a descriptor, so a
//! directory renamed or replaced on the path afterwards changes nothing), without
//! following a symlink, and checked after opening: a regular file, owned by the
//! current user, writable by nobody else, with no other hard link. Both are checked
//! again at every load (every reload). A file that fails is not deserialised: it is
//! compiled again and replaced, with a warning naming it and the reason. A directory
//! that fails is not used (a warning; plugins are compiled without the cache), or,
//! when it is ours and only its mode is open, closed (0700) and emptied of compiled
//! files.
//!
//! There is no eviction: a file per plugin version and engine configuration, a few
//! hundred KiB to a few MiB each; delete the directory to reclaim it.

use std::fs;
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::PluginError;
use crate::error_chain::ErrorChain;

/// Ends every cache file, after the SHA-256 of the precompiled bytes. Bumped when the
/// file layout changes (the key's domain tag changes with it).
const MAGIC: &[u8; 8] = b"SLUICE01";
const DIGEST_LEN: usize = 32;
const TRAILER_LEN: usize = DIGEST_LEN + MAGIC.len();

/// A directory of precompiled components, owned by the current user (mode 0700).
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    /// The directory as opened and checked by [`CompileCache::new`]: every file is
    /// opened, written and renamed relative to it.
    fd: Arc<OwnedFd>,
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
    Component::new(engine, bytes).map_err(|source| PluginError::Compile {
        name: name.to_string(),
        source,
    })
}

impl CompileCache {
    /// Uses `dir` as the cache, creating it (and its parents) with mode 0700. The
    /// directory must be owned by the current user: another user's directory (even
    /// when running as root) is an error, which `app` turns into a warning and no
    /// cache. If it is ours but open to others, it is set to 0700 and the compiled
    /// files already in it, which may not be ours, are deleted.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, PluginError> {
        let dir = dir.into();
        let fail = |source: io::Error| PluginError::Cache {
            dir: dir.clone(),
            source,
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(fail)?;
        trust_path(&dir).map_err(fail)?;
        let fd = rustix::fs::open(
            dir.as_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        let cache = Self {
            dir: dir.clone(),
            fd: Arc::new(fd),
        };
        cache.trust_dir().map_err(fail)?;
        Ok(cache)
    }

    /// Checks the directory (through its descriptor): owned by the current user, else
    /// an error (`PermissionDenied`); open to others, then closed (0700) and emptied of
    /// compiled files, with a warning.
    fn trust_dir(&self) -> io::Result<()> {
        let stat = rustix::fs::fstat(&*self.fd)?;
        let me = rustix::process::geteuid().as_raw();
        if stat.st_uid != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "owned by uid {}, not by this user (uid {me}): not trusted with \
                     code to run",
                    stat.st_uid
                ),
            ));
        }
        let mode = stat.st_mode & 0o7777;
        if mode & 0o077 != 0 {
            rustix::fs::fchmod(&*self.fd, Mode::from_raw_mode(0o700))?;
            tracing::warn!(
                dir = %self.dir.display(),
                "compile cache directory was mode {mode:o}: now 0700, and its compiled \
                 files are discarded"
            );
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&*self.fd)? {
                let name = entry?.file_name().to_owned();
                if name.to_bytes().ends_with(b".cwasm") {
                    names.push(name);
                }
            }
            for name in names {
                match rustix::fs::unlinkat(&*self.fd, name.as_c_str(), AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
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
        let key = Self::key(engine, bytes);
        let path = self.entry(&key);
        // Again at every load: the directory may have been opened or given away since.
        if let Err(e) = self.trust_dir() {
            tracing::warn!(
                plugin = name,
                dir = %self.dir.display(),
                "compile cache directory not used ({}); compiling without it",
                ErrorChain(&e)
            );
            let component = compile_now(engine, name, bytes)?;
            return Ok(Compiled {
                component,
                cache: CacheStatus::Miss,
                elapsed: started.elapsed(),
            });
        }
        match self.read_trusted(&format!("{key}.cwasm")) {
            Ok(file) => match verified(&file) {
                Some(image) => {
                    // SAFETY: `Component::deserialize` runs the machine code it is
                    // given, so it must be code wasmtime produced for this engine.
                    // It is: `read_trusted` opened the file relative to the directory
                    // `trust_dir` has just checked (ours, writable by nobody else),
                    // without following a symlink, and checked the open file itself
                    // (a regular file, ours, writable by nobody else, one link), so
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
                            "cached compiled plugin is unusable ({}); compiling it again",
                            ErrorChain(&*e)
                        ),
                    }
                }
                None => tracing::warn!(
                    plugin = name,
                    path = %path.display(),
                    "cached compiled plugin is truncated or corrupt; compiling it again"
                ),
            },
            Err(Untrusted::Missing) => {}
            Err(Untrusted::Unsafe(reason)) => tracing::warn!(
                plugin = name,
                path = %path.display(),
                "cached compiled plugin not trusted ({reason}): not loaded; compiling it \
                 again and replacing it"
            ),
            Err(Untrusted::Io(e)) => tracing::warn!(
                plugin = name,
                path = %path.display(),
                "cannot read the compile cache ({}); compiling",
                ErrorChain(&e)
            ),
        }
        let component = compile_now(engine, name, bytes)?;
        match component.serialize() {
            Ok(image) => {
                if let Err(e) = self.store(&path, &image) {
                    tracing::warn!(
                        plugin = name,
                        path = %path.display(),
                        "cannot write the compile cache ({}); the next start compiles again",
                        ErrorChain(&e)
                    );
                }
            }
            Err(e) => tracing::warn!(
                plugin = name,
                "cannot serialise the compiled plugin for the cache: {}",
                ErrorChain(&*e)
            ),
        }
        Ok(Compiled {
            component,
            cache: CacheStatus::Miss,
            elapsed: started.elapsed(),
        })
    }

    /// The bytes of the file `name` in the cache directory, if it is one we can trust:
    /// opened without following a symlink (nor blocking on a FIFO), then checked on
    /// the open file (so it cannot be swapped between the check and the read).
    fn read_trusted(&self, name: &str) -> Result<Vec<u8>, Untrusted> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&*self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Err(Untrusted::Missing),
            Err(rustix::io::Errno::LOOP) => {
                return Err(Untrusted::Unsafe("a symbolic link".into()));
            }
            Err(e) => return Err(Untrusted::Io(e.into())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| Untrusted::Io(e.into()))?;
        let me = rustix::process::geteuid().as_raw();
        let mode = stat.st_mode & 0o7777;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(Untrusted::Unsafe("not a regular file".into()));
        }
        if stat.st_uid != me {
            return Err(Untrusted::Unsafe(format!(
                "owned by uid {}, not by this user (uid {me})",
                stat.st_uid
            )));
        }
        if mode & 0o022 != 0 {
            return Err(Untrusted::Unsafe(format!(
                "mode {mode:o}: writable by group or others"
            )));
        }
        if stat.st_nlink != 1 {
            return Err(Untrusted::Unsafe(format!(
                "{} hard links: also writable elsewhere",
                stat.st_nlink
            )));
        }
        let mut bytes = Vec::new();
        fs::File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(Untrusted::Io)?;
        Ok(bytes)
    }

    /// Writes `image` and its trailer to a fresh temporary file in the cache directory
    /// (created exclusively, mode 0600, never through a symlink) and renames it over
    /// `path`, so a concurrent reader (another sluice starting) sees the old file, the
    /// new one, or none, never half of one; a planted file or symlink at `path` is
    /// replaced, not written through. Two writers of the same key write the same bytes,
    /// so whichever rename lands last is fine. No fsync: a file torn by a crash fails
    /// its checksum and is rebuilt.
    fn store(&self, path: &Path, image: &[u8]) -> io::Result<()> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = format!(
            ".{file_name}.{}.{}.tmp",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let digest = Sha256::digest(image);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*self.fd, tmp.as_str(), flags, Mode::from_raw_mode(0o600))?;
        let written = (|| -> io::Result<()> {
            let mut file = fs::File::from(fd);
            file.write_all(image)?;
            file.write_all(&digest)?;
            file.write_all(MAGIC)?;
            drop(file);
            rustix::fs::renameat(&*self.fd, tmp.as_str(), &*self.fd, file_name.as_str())?;
            Ok(())
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&*self.fd, tmp.as_str(), AtFlags::empty());
        }
        written
    }
}

/// Checks the way to `dir`: every directory above it must be owned by root or the
/// current user and writable by nobody else (or sticky, as `/tmp`), and every symlink
/// on the way owned by one of them. Otherwise someone else could swap a directory on
/// the path for a symlink to a directory of their choosing, and sluice, as root, would
/// close it to 0700 and empty it of `.cwasm` files (see [`CompileCache::trust_dir`]),
/// or a directory of theirs holding files they planted under our uid's name.
fn trust_path(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::absolute(dir)?;
    let me = rustix::process::geteuid().as_raw();
    let mut prefix = PathBuf::new();
    let mut components = dir.components().peekable();
    while let Some(component) = components.next() {
        prefix.push(component);
        let last = components.peek().is_none();
        let meta = fs::symlink_metadata(&prefix)?;
        let trusted_owner = meta.uid() == 0 || meta.uid() == me;
        let unsafe_reason = if !trusted_owner {
            Some(format!("owned by uid {}", meta.uid()))
        } else if meta.file_type().is_symlink() || last {
            // A symlink's own mode means nothing; the cache directory itself is
            // checked (and fixed if need be) by `trust_dir`.
            None
        } else if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            Some(format!(
                "mode {:o}: writable by others",
                meta.mode() & 0o7777
            ))
        } else {
            None
        };
        if let Some(reason) = unsafe_reason {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} on the way to it is {reason}: not trusted with code to run",
                    prefix.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Why a cached file was not read.
enum Untrusted {
    /// Not there: an ordinary miss.
    Missing,
    /// There, but possibly not written by us (the reason, for the warning).
    Unsafe(String),
    /// Could not be read.
    Io(io::Error),
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

/// The hex SHA-256 of `bytes`: a component's identity on tapes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
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
        // wasmtime's error is kept, not flattened into text.
        assert!(std::error::Error::source(&err).is_some(), "{err}");
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

    /// A uid that is not this process's (tests run as root here, and may `chown`).
    #[cfg(unix)]
    const STRANGER: u32 = 4242;

    /// Fills the cache with `pass`'s compiled file and returns its path and bytes.
    fn primed(cache: &CompileCache, rt: &Runtime) -> (PathBuf, Vec<u8>) {
        let first = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(first.cache, CacheStatus::Miss);
        let path = cache.entry(&CompileCache::key(rt.engine(), builtin::PASS));
        let good = fs::read(&path).unwrap();
        (path, good)
    }

    /// Whether this process may give files away (root, or CAP_CHOWN): the ownership
    /// attacks need it.
    #[cfg(unix)]
    fn can_chown(dir: &Path) -> bool {
        let probe = dir.join(".probe");
        fs::write(&probe, b"").unwrap();
        let ok = std::os::unix::fs::chown(&probe, Some(STRANGER), None).is_ok();
        fs::remove_file(&probe).unwrap();
        if !ok {
            eprintln!("skipped: cannot chown to another uid here (needs root)");
        }
        ok
    }

    /// The file is then ours again, private, a regular file with one link: rewritten.
    #[cfg(unix)]
    fn assert_rewritten(path: &Path, good: &[u8]) {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::symlink_metadata(path).unwrap();
        assert!(meta.file_type().is_file(), "{}", path.display());
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
        assert_eq!(meta.mode() & 0o077, 0, "mode {:o}", meta.mode());
        assert_eq!(meta.nlink(), 1);
        assert_eq!(fs::read(path).unwrap(), good);
    }

    #[cfg(unix)]
    #[test]
    fn a_cached_file_owned_by_another_user_is_compiled_again_not_deserialised() {
        let tmp = TempDir::new("foreign-file");
        let cache = CompileCache::new(&tmp.0).unwrap();
        if !can_chown(&tmp.0) {
            return;
        }
        let rt = runtime();
        let (path, good) = primed(&cache, &rt);
        // The bytes are valid (checksum and all): only the owner is wrong.
        std::os::unix::fs::chown(&path, Some(STRANGER), Some(STRANGER)).unwrap();
        let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(
            loaded.cache,
            CacheStatus::Miss,
            "a foreign file was deserialised"
        );
        assert_works(&rt, &loaded);
        assert_rewritten(&path, &good);
        let again = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(again.cache, CacheStatus::Hit);
    }

    #[cfg(unix)]
    #[test]
    fn a_cached_file_writable_by_group_or_others_is_compiled_again_not_deserialised() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("open-file");
        let cache = CompileCache::new(&tmp.0).unwrap();
        let rt = runtime();
        let (path, good) = primed(&cache, &rt);
        for mode in [0o620, 0o602, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
            assert_eq!(
                loaded.cache,
                CacheStatus::Miss,
                "mode {mode:o} deserialised"
            );
            assert_works(&rt, &loaded);
            assert_rewritten(&path, &good);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_or_hard_link_is_not_followed() {
        let tmp = TempDir::new("symlink");
        let cache = CompileCache::new(tmp.0.join("cache")).unwrap();
        let rt = runtime();
        let (path, good) = primed(&cache, &rt);
        // A valid compiled file of ours elsewhere (where others may have written it).
        let elsewhere = tmp.0.join("elsewhere.cwasm");
        fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(loaded.cache, CacheStatus::Miss, "a symlink was followed");
        assert_works(&rt, &loaded);
        assert_rewritten(&path, &good);
        assert_eq!(
            fs::read(&elsewhere).unwrap(),
            good,
            "the target is untouched"
        );

        // A hard link: the same file is also reachable (and writable) elsewhere.
        fs::remove_file(&path).unwrap();
        fs::hard_link(&elsewhere, &path).unwrap();
        let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(loaded.cache, CacheStatus::Miss, "a hard link was trusted");
        assert_rewritten(&path, &good);
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_directory_owned_by_another_user_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("foreign-dir");
        fs::create_dir_all(&tmp.0).unwrap();
        if !can_chown(&tmp.0) {
            return;
        }
        let rt = runtime();
        let dir = tmp.0.join("cache");
        let (path, _) = primed(&CompileCache::new(&dir).unwrap(), &rt);
        // Someone else's directory, private to them, holding a valid file they made.
        std::os::unix::fs::chown(&path, Some(STRANGER), Some(STRANGER)).unwrap();
        std::os::unix::fs::chown(&dir, Some(STRANGER), Some(STRANGER)).unwrap();
        match CompileCache::new(&dir) {
            Err(PluginError::Cache { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::PermissionDenied, "{source}");
            }
            Err(other) => panic!("{other}"),
            Ok(cache) => {
                let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
                panic!("another user's directory was used ({:?})", loaded.cache);
            }
        }
        // Not "fixed" either: it is not ours to change.
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_that_becomes_unsafe_is_noticed_at_the_next_load() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("later");
        let cache = CompileCache::new(&tmp.0).unwrap();
        let rt = runtime();
        let (path, _) = primed(&cache, &rt);
        // After start (a reload later): the directory is opened to everyone, and a file
        // is planted in it (here: the valid one, owned by us, as a stand-in for any).
        fs::set_permissions(&tmp.0, fs::Permissions::from_mode(0o777)).unwrap();
        let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(
            loaded.cache,
            CacheStatus::Miss,
            "an open directory was trusted"
        );
        assert_works(&rt, &loaded);
        let mode = fs::metadata(&tmp.0).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "ours: closed again");
        assert!(path.exists(), "stored again once the directory was closed");
        let again = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(again.cache, CacheStatus::Hit);

        // Given away: not used at all (nothing read, nothing written).
        if !can_chown(&tmp.0) {
            return;
        }
        std::os::unix::fs::chown(&tmp.0, Some(STRANGER), None).unwrap();
        fs::remove_file(&path).unwrap();
        let loaded = cache.load(rt.engine(), "pass", builtin::PASS).unwrap();
        assert_eq!(loaded.cache, CacheStatus::Miss);
        assert!(!path.exists(), "written into another user's directory");
        std::os::unix::fs::chown(&tmp.0, Some(rustix::process::geteuid().as_raw()), None).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_directory_reached_through_another_users_directory_or_symlink_is_not_used() {
        let tmp = TempDir::new("path");
        fs::create_dir_all(&tmp.0).unwrap();
        if !can_chown(&tmp.0) {
            return;
        }
        // Under a directory someone else owns: they could swap `cache` for anything.
        let theirs = tmp.0.join("theirs");
        fs::create_dir_all(theirs.join("cache")).unwrap();
        std::os::unix::fs::chown(&theirs, Some(STRANGER), None).unwrap();
        let err = CompileCache::new(theirs.join("cache")).unwrap_err();
        assert!(err.to_string().contains("owned by uid 4242"), "{err}");

        // Through their symlink to a directory of ours that is open to others: sluice
        // must not close and empty a directory someone else pointed it at.
        use std::os::unix::fs::PermissionsExt;
        let ours = tmp.0.join("ours");
        fs::create_dir_all(&ours).unwrap();
        fs::write(ours.join("keep.cwasm"), b"not ours to delete").unwrap();
        fs::set_permissions(&ours, fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.0.join("link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(STRANGER), None).unwrap();
        let err = CompileCache::new(&link).unwrap_err();
        assert!(err.to_string().contains("owned by uid 4242"), "{err}");
        assert_eq!(
            fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(ours.join("keep.cwasm").exists());

        // A group-writable directory on the way (not sticky): refused too.
        let open = tmp.0.join("open");
        fs::create_dir_all(open.join("cache")).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o775)).unwrap();
        let err = CompileCache::new(open.join("cache")).unwrap_err();
        assert!(err.to_string().contains("writable by others"), "{err}");
        // Sticky, as /tmp: fine.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        CompileCache::new(open.join("cache")).unwrap();
    }
}
