//! `sluice plugin new`: a standalone plugin project in a directory of the author's.
//!
//! A plugin lives in its author's repository, not in a checkout of sluice, so the
//! project needs nothing from one: the contract (`wit/plugin.wit`, the text this sluice
//! was built with), a starting plugin, a `build.sh` that finds its toolchain on PATH
//! (or through an environment variable) and says what to install when it is missing, a
//! README and a first `test.sh`. The templates live in `plugins/templates/` and are
//! compiled into the binary, so a released sluice scaffolds without its sources.
//!
//! Every language's starting plugin does the same thing (refuse the `tools/call` of the
//! tools named in `{"deny": [..]}` with a JSON-RPC error, pass the rest), so the tests
//! can hold them all to one behaviour.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::plugin::WIT;

/// A language `sluice plugin new` writes a project in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, on the `sluice-plugin` SDK crate.
    Rust,
    /// C, on `wit-bindgen c` bindings written into the project (no wit-bindgen needed).
    C,
    /// Zig, on the same C bindings.
    Zig,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
}

impl Lang {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Zig => "zig",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// Every language, in the order the docs list them.
    pub const ALL: [Lang; 5] = [Lang::Rust, Lang::C, Lang::Zig, Lang::Python, Lang::Js];
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct Options {
    /// The language.
    pub lang: Lang,
    /// The project directory: created if missing, refused unless empty.
    pub dir: PathBuf,
    /// The plugin's name (the component is `<name>.wasm`, which is the name sluice
    /// gives it by default); the directory's name when none.
    pub name: Option<String>,
    /// Rust: the `sluice-plugin` crate to depend on by path; by default the one in
    /// the sluice source tree this binary was built from, when it is still there.
    pub sdk: Option<PathBuf>,
}

/// Why no project was written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The directory has files in it: nothing is overwritten.
    #[error("{0} is not empty: sluice plugin new writes only into a new or empty directory")]
    NotEmpty(PathBuf),
    /// The path exists and is not a directory.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The plugin name does not fit the rules.
    #[error(
        "{0:?} cannot name a plugin: use lowercase letters, digits and '-', starting with a letter, at most 64 bytes (pass --name NAME)"
    )]
    BadName(String),
    /// `--sdk` does not point at the SDK crate.
    #[error("--sdk {0}: no Cargo.toml of the sluice-plugin crate there")]
    NoSdk(PathBuf),
    /// `--sdk` given for a language that has no SDK crate.
    #[error("--sdk is for --lang rust only")]
    SdkNotRust,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A project written: where, and which files (relative to `dir`).
#[derive(Debug)]
pub struct Created {
    /// The plugin's name.
    pub name: String,
    /// The language.
    pub lang: Lang,
    /// The project directory.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
    /// Rust: how the SDK is depended on (a path, or the published version only).
    pub sdk: Option<String>,
}

impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "created plugin {} ({}) in {}:",
            self.name,
            self.lang,
            self.dir.display()
        )?;
        for file in &self.files {
            writeln!(f, "  {file}")?;
        }
        if let Some(sdk) = &self.sdk {
            writeln!(f, "sdk: {sdk}")?;
        }
        writeln!(f, "next (README.md says more):")?;
        writeln!(f, "  cd {}", self.dir.display())?;
        writeln!(
            f,
            "  ./build.sh    # -> {}.wasm; says what to install if a tool is missing",
            self.name
        )?;
        writeln!(
            f,
            "  ./test.sh     # sluice plugin check, and two tools/call through it"
        )
    }
}

/// One file of a template.
#[derive(Clone, Copy)]
enum Content {
    /// Text with `{{placeholders}}`.
    Text(&'static str),
    /// Bytes written as they are.
    Bytes(&'static [u8]),
}

/// `(path in the project, content)` of each language's own files.
fn files(lang: Lang) -> &'static [(&'static str, Content)] {
    use Content::{Bytes, Text};
    macro_rules! template {
        ($path:literal) => {
            include_str!(concat!("../plugins/templates/", $path))
        };
    }
    // The C bindings of world `plugin` that `wit-bindgen c` 0.63 generated: committed
    // in plugins/c/gen, copied, because setup.sh does not install wit-bindgen-cli.
    const GEN: [(&str, Content); 3] = [
        (
            "gen/plugin.c",
            Text(include_str!("../plugins/c/gen/plugin.c")),
        ),
        (
            "gen/plugin.h",
            Text(include_str!("../plugins/c/gen/plugin.h")),
        ),
        (
            "gen/plugin_component_type.o",
            Bytes(include_bytes!("../plugins/c/gen/plugin_component_type.o")),
        ),
    ];
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", Text(template!("rust/Cargo.toml.in"))),
            ("src/lib.rs", Text(template!("rust/src/lib.rs"))),
            ("build.sh", Text(template!("rust/build.sh"))),
            (".gitignore", Text(template!("rust/gitignore"))),
        ],
        Lang::C => {
            const C: [(&str, Content); 6] = [
                ("src/main.c", Text(template!("c/src/main.c"))),
                ("build.sh", Text(template!("c/build.sh"))),
                (".gitignore", Text(template!("c/gitignore"))),
                GEN[0],
                GEN[1],
                GEN[2],
            ];
            &C
        }
        Lang::Zig => {
            const ZIG: [(&str, Content); 6] = [
                ("main.zig", Text(template!("zig/main.zig"))),
                ("build.sh", Text(template!("zig/build.sh"))),
                (".gitignore", Text(template!("zig/gitignore"))),
                GEN[0],
                GEN[1],
                GEN[2],
            ];
            &ZIG
        }
        Lang::Python => &[
            ("app.py", Text(template!("python/app.py"))),
            ("build.sh", Text(template!("python/build.sh"))),
            (".gitignore", Text(template!("python/gitignore"))),
        ],
        Lang::Js => &[
            ("plugin.js", Text(template!("js/plugin.js"))),
            ("package.json", Text(template!("js/package.json"))),
            ("build.sh", Text(template!("js/build.sh"))),
            (".gitignore", Text(template!("js/gitignore"))),
        ],
    }
}

/// The README's part about a language's toolchain and source file.
fn toolchain(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => include_str!("../plugins/templates/rust/toolchain.md"),
        Lang::C => include_str!("../plugins/templates/c/toolchain.md"),
        Lang::Zig => include_str!("../plugins/templates/zig/toolchain.md"),
        Lang::Python => include_str!("../plugins/templates/python/toolchain.md"),
        Lang::Js => include_str!("../plugins/templates/js/toolchain.md"),
    }
}

/// What `build.sh` says when the component imports WASI.
fn wasi_hint(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "build for wasm32-unknown-unknown, not wasm32-wasip1",
        Lang::C => "no printf-family calls: stdio pulls in WASI",
        Lang::Zig => "build as a reactor, no std.debug.print",
        Lang::Python => "keep --stub-wasi",
        Lang::Js => "keep the --disable list",
    }
}

/// The SDK crate in the source tree this binary was built from.
fn built_in_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/rust/sluice-plugin")
}

/// The Rust template's dependency line: by path when an SDK crate is at hand (with the
/// version, so the project can be published against crates.io unchanged).
fn sdk_dependency(sdk: Option<&Path>) -> Result<(String, String), ScaffoldError> {
    let path = match sdk {
        Some(path) => {
            if !path.join("Cargo.toml").is_file() {
                return Err(ScaffoldError::NoSdk(path.to_path_buf()));
            }
            Some(path.to_path_buf())
        }
        None => Some(built_in_sdk()).filter(|p| p.join("Cargo.toml").is_file()),
    };
    Ok(match path {
        Some(path) => {
            let path = std::fs::canonicalize(&path).map_err(|source| ScaffoldError::Io {
                path: path.clone(),
                source,
            })?;
            // A TOML basic string: escape what would end or break it.
            let quoted = path
                .display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            (
                format!(r#"sluice-plugin = {{ version = "0.2", path = "{quoted}" }}"#),
                format!("sluice-plugin 0.2 at {}", path.display()),
            )
        }
        None => (
            r#"sluice-plugin = "0.2""#.to_string(),
            "sluice-plugin 0.2 from crates.io (no SDK source here; --sdk PATH to use one)"
                .to_string(),
        ),
    })
}

/// Whether `name` may name a plugin: it becomes a file name, a crate name, a C string
/// and part of shell scripts, so only `[a-z][a-z0-9-]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// Writes the project; nothing is written when the directory is not empty or the name
/// is bad.
pub fn new(options: &Options) -> Result<Created, ScaffoldError> {
    let dir = &options.dir;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    let name = match &options.name {
        Some(name) => name.clone(),
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if !valid_name(&name) {
        return Err(ScaffoldError::BadName(name));
    }
    let (dependency, sdk) = match options.lang {
        Lang::Rust => {
            let (line, said) = sdk_dependency(options.sdk.as_deref())?;
            (line, Some(said))
        }
        _ if options.sdk.is_some() => return Err(ScaffoldError::SdkNotRust),
        _ => (String::new(), None),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(ScaffoldError::NotADirectory(dir.clone())),
        Ok(_) => {
            if std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
                return Err(ScaffoldError::NotEmpty(dir.clone()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Err(e) => return Err(io(dir)(e)),
    }

    let lang = options.lang;
    let check =
        include_str!("../plugins/templates/check.sh.in").replace("{{wasi_hint}}", wasi_hint(lang));
    let fill = |text: &str| {
        text.replace("{{check}}", check.trim_end())
            .replace("{{toolchain}}", toolchain(lang).trim_end())
            .replace("{{sdk_dependency}}", &dependency)
            .replace("{{lang}}", lang.as_str())
            .replace("{{name_snake}}", &name.replace('-', "_"))
            .replace("{{name}}", &name)
    };
    let wit = WIT
        .iter()
        .find(|(version, _)| *version == "0.2.0")
        .map(|(_, text)| *text)
        .unwrap_or_default();
    let common: [(&str, Content); 3] = [
        ("wit/plugin.wit", Content::Bytes(wit.as_bytes())),
        (
            "README.md",
            Content::Text(include_str!("../plugins/templates/README.md.in")),
        ),
        (
            "test.sh",
            Content::Text(include_str!("../plugins/templates/test.sh")),
        ),
    ];
    let mut written = Vec::new();
    for (path, content) in files(lang).iter().chain(common.iter()) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let bytes = match content {
            Content::Text(text) => fill(text).into_bytes(),
            Content::Bytes(bytes) => bytes.to_vec(),
        };
        write_new(&target, &bytes, path.ends_with(".sh")).map_err(io(&target))?;
        written.push(path.to_string());
    }
    written.sort();
    Ok(Created {
        name,
        lang,
        dir: dir.clone(),
        files: written,
        sdk,
    })
}

/// Writes a file that must not exist yet (`create_new`: a name planted in the
/// directory after it was found empty, a symlink above all, is an error, never followed
/// to overwrite or chmod another file), executable for scripts (run as `./build.sh`).
fn write_new(path: &Path, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sluice-scaffold-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names() {
        for good in ["deny", "deny-tools", "a1", "x"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Deny",
            "1deny",
            "deny_tools",
            "deny-",
            "a b",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_language_is_filled_in() {
        for lang in Lang::ALL {
            let dir = scratch(lang.as_str()).join("my-guard");
            let created = new(&Options {
                lang,
                dir: dir.clone(),
                name: None,
                sdk: None,
            })
            .unwrap();
            assert_eq!(created.name, "my-guard");
            for file in &created.files {
                let bytes = std::fs::read(dir.join(file)).unwrap();
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    // `{{word}}`; a Rust format string's `{{"` is not one.
                    let left = text.split("{{").skip(1).find(|rest| {
                        rest.split_once("}}").is_some_and(|(word, _)| {
                            !word.is_empty()
                                && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        })
                    });
                    assert!(left.is_none(), "{lang}: {file} has a placeholder left");
                }
            }
            let wit = std::fs::read_to_string(dir.join("wit/plugin.wit")).unwrap();
            assert!(wit.contains("package sluice:plugin@0.2.0;"));
            let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
            assert!(build.contains("my-guard.wasm"), "{lang}");
            assert!(
                !build.contains("lib.sh"),
                "{lang}: build.sh needs nothing from a checkout"
            );
            std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        }
    }

    #[test]
    fn refuses_a_non_empty_directory_and_writes_nothing() {
        let dir = scratch("busy");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let refused = new(&Options {
            lang: Lang::C,
            dir: dir.clone(),
            name: Some("guard".into()),
            sdk: None,
        });
        assert!(
            matches!(refused, Err(ScaffoldError::NotEmpty(_))),
            "{refused:?}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_name_or_a_missing_sdk_is_refused() {
        let dir = scratch("bad").join("My Plugin");
        let refused = new(&Options {
            lang: Lang::Python,
            dir: dir.clone(),
            name: None,
            sdk: None,
        });
        assert!(
            matches!(refused, Err(ScaffoldError::BadName(_))),
            "{refused:?}"
        );
        assert!(!dir.exists());
        let refused = new(&Options {
            lang: Lang::Rust,
            dir: dir.clone(),
            name: Some("guard".into()),
            sdk: Some(dir.join("nowhere")),
        });
        assert!(
            matches!(refused, Err(ScaffoldError::NoSdk(_))),
            "{refused:?}"
        );
        let refused = new(&Options {
            lang: Lang::C,
            dir: dir.clone(),
            name: Some("guard".into()),
            sdk: Some(dir.clone()),
        });
        assert!(
            matches!(refused, Err(ScaffoldError::SdkNotRust)),
            "{refused:?}"
        );
    }
}
