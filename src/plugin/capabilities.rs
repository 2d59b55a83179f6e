//! What a plugin may reach outside the sluice contract. Nothing by default: every grant
//! is opt-in, named in the configuration for one plugin, and logged when it is loaded.

use std::fmt;
use std::path::PathBuf;

/// The capabilities granted to one plugin. The default grants nothing, which is the
/// sandbox sluice promises: a plugin sees the events it is handed and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The plugin's stdout and stderr go to sluice's (for debugging a plugin with
    /// `println!`); without it they are discarded.
    pub stdio: bool,
    /// A host directory the plugin may read (never write), for data such as word lists
    /// too large for its configuration string.
    pub read_dir: Option<PathBuf>,
    /// Link WASI with an empty context (only the clocks and random numbers WASI p2
    /// always provides; no files, environment, network or output), for toolchains whose
    /// output always imports WASI: Python without `--stub-wasi`, C using stdio, Go.
    pub wasi: bool,
}

impl Capabilities {
    /// True when nothing is granted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The grants as a log line wants them: `stdio, read-only dir /srv/data`, or `none`.
impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.stdio {
            parts.push("stdio".to_string());
        }
        if let Some(dir) = &self.read_dir {
            parts.push(format!("read-only dir {}", dir.display()));
        }
        if self.wasi && parts.is_empty() {
            parts.push("empty WASI context".to_string());
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_listed_for_the_log() {
        assert_eq!(Capabilities::default().to_string(), "none");
        assert!(Capabilities::default().is_empty());
        let both = Capabilities {
            stdio: true,
            read_dir: Some("/srv/data".into()),
            wasi: false,
        };
        assert!(!both.is_empty());
        assert_eq!(both.to_string(), "stdio, read-only dir /srv/data");
        let empty_wasi = Capabilities {
            wasi: true,
            ..Capabilities::default()
        };
        assert!(
            !empty_wasi.is_empty(),
            "an empty WASI context is still a grant"
        );
        assert_eq!(empty_wasi.to_string(), "empty WASI context");
    }
}
