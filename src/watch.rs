//! Watching files for changes: the plugin chain (`reload`) and the TLS listener's
//! certificate (`tls`) both reload through this.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// How long the watched files must be quiet before a reload starts: editors and
/// compilers write a file in several steps, and a half-written plugin must not be
/// loaded (if one is, the reload fails and the next write triggers another).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The watcher of [`watch_growing`] and the directories it watches, so that a file
/// that joins the watched set later (a plugin swapped to a file in another directory
/// through the admin API) is watched too. The watching task owns it: it goes when the
/// task ends.
pub struct Watched {
    inner: Mutex<(notify::RecommendedWatcher, HashSet<PathBuf>)>,
}

impl Watched {
    /// Watches the directories of `files` that are not watched yet.
    pub fn add(&self, files: &[PathBuf]) -> Result<(), notify::Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (watcher, dirs) = &mut *inner;
        for file in files {
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dirs.contains(dir) {
                watcher.watch(dir, RecursiveMode::NonRecursive)?;
                dirs.insert(dir.to_path_buf());
            }
        }
        Ok(())
    }
}

/// Watches the directories of `files` and, after each burst of changes to a path that
/// `relevant` accepts has been quiet for [`DEBOUNCE`], runs `on_change` off the async
/// workers. Directories, not files: editors and build tools replace files by renaming,
/// and a watch on the old inode would go silent. The plugin chain and the TLS listener's
/// certificate both reload through this. The watcher lives as long as the returned task.
pub fn watch_files(
    files: &[PathBuf],
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
    watch_growing(files, relevant, on_change).map(|(task, _)| task)
}

/// [`watch_files`], with a handle to watch more files later; the handle is weak, as
/// the task owns the watcher.
pub fn watch_growing(
    files: &[PathBuf],
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<(tokio::task::JoinHandle<()>, Weak<Watched>), notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    let watched = Arc::new(Watched {
        inner: Mutex::new((watcher, HashSet::new())),
    });
    watched.add(files)?;
    let handle = Arc::downgrade(&watched);
    let on_change = Arc::new(on_change);
    let task = tokio::spawn(async move {
        let _watched = watched;
        while let Some(path) = rx.recv().await {
            if !relevant(&path) {
                continue;
            }
            // Debounce: wait until the files have been quiet for a while.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let on_change = on_change.clone();
            let _ = tokio::task::spawn_blocking(move || on_change()).await;
        }
    });
    Ok((task, handle))
}
