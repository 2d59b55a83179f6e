//! Connections served start to end on one thread: N workers, each a tokio runtime of
//! its own with one worker thread, as nginx's worker processes and Envoy's worker
//! threads do.
//!
//! Why: an SSE stream moves through two connections, the upstream's (read by hyper's
//! client connection task) and the client's (whose task polls the intercepted body),
//! which hand each read to each other. On one work-stealing runtime an idle worker
//! steals one of the two tasks, so reads cross threads (a wake-up of the other worker,
//! the event's data in another core's cache). Measured on one fast stream
//! (BENCHMARKS.md, "A single fast reader"), one shared runtime cost about a fifth more
//! of sluice's CPU per event, and a runtime with one worker thread did not pay it. Several runtimes of one thread each
//! keep that, and still use every core once there are several connections.
//!
//! The listener stays on the main runtime: each accepted connection goes to the worker
//! with the fewest open connections and is registered with that worker's I/O driver;
//! everything it spawns (hyper's h2 streams, the upstream connection it opens) runs
//! there too. The upstream's connection pool is one per worker
//! ([`current`] picks it), so a pooled connection is reused by the worker that drives it.
//!
//! Each worker runtime is a multi-thread runtime with one worker thread, not a
//! current-thread one: `block_in_place` (a WASI plugin's call, `plugin::wasi`) then
//! works as on the main runtime. Without [`install`] (tests, embedders) connections
//! are spawned on the current runtime, as before.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::{Handle, Runtime};

/// The workers of this process, once installed.
static INSTALLED: OnceLock<Workers> = OnceLock::new();

thread_local! {
    /// 1 + the index of the worker this thread belongs to; 0 elsewhere.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    /// The OS refused a thread or the runtime's I/O driver.
    #[error("cannot start worker {index}")]
    Start {
        /// Which worker.
        index: usize,
        /// What the runtime builder said.
        #[source]
        source: std::io::Error,
    },
    /// `install` was called twice.
    #[error("the workers are already installed")]
    AlreadyInstalled,
}

/// N single-thread runtimes and how many connections each serves now.
pub struct Workers {
    runtimes: Vec<Runtime>,
    open: Vec<Arc<AtomicUsize>>,
}

impl Workers {
    /// Starts `count` workers (threads `sluice-worker-<i>`).
    pub fn start(count: usize) -> Result<Self, WorkersError> {
        let runtimes = (0..count)
            .map(|index| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("sluice-worker-{index}"))
                    .on_thread_start(move || SLOT.set(index + 1))
                    .enable_all()
                    .build()
                    .map_err(|source| WorkersError::Start { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let open = (0..count).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        Ok(Self { runtimes, open })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.runtimes.len()
    }

    /// True for no workers (then nothing is spawned on them).
    pub fn is_empty(&self) -> bool {
        self.runtimes.is_empty()
    }

    /// Runs `serve` (one connection) on the worker with the fewest open connections.
    fn spawn<F>(&self, serve: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (index, open) = self
            .open
            .iter()
            .enumerate()
            .min_by_key(|(_, open)| open.load(Ordering::Relaxed))
            .expect("workers are installed only when there are some");
        open.fetch_add(1, Ordering::Relaxed);
        let open = Open(open.clone());
        let handle: &Handle = self.runtimes[index].handle();
        handle.spawn(async move {
            let _open = open;
            serve.await;
        });
    }
}

/// Counts a connection as open on its worker until it is dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Makes `workers` the ones connections are served on, for the life of the process
/// (they are never stopped: a runtime cannot be dropped from async code, and the
/// process ends with them). Zero workers installs nothing.
pub fn install(workers: Workers) -> Result<(), WorkersError> {
    if workers.is_empty() {
        return Ok(());
    }
    INSTALLED
        .set(workers)
        .map_err(|_| WorkersError::AlreadyInstalled)
}

/// How many workers are installed (0: none).
pub fn installed() -> usize {
    INSTALLED.get().map_or(0, Workers::len)
}

/// The worker the calling thread belongs to: 1 + its index, 0 for any other thread.
/// Indexes per-worker state (the upstream's connection pools) of `installed() + 1`
/// entries.
pub fn current() -> usize {
    SLOT.get()
}

/// Serves one connection: on an installed worker, or on the current runtime.
/// `connection` makes the future from the accepted stream once it is on its thread
/// (the stream must be registered with the I/O driver of the runtime that polls it).
pub(crate) fn serve_connection<F, Fut>(stream: tokio::net::TcpStream, connection: F)
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(workers) = INSTALLED.get() else {
        tokio::spawn(connection(stream));
        return;
    };
    // Off this runtime's driver, onto the worker's (in the worker's own context).
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "cannot hand an accepted connection to a worker; closed");
            return;
        }
    };
    workers.spawn(async move {
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => connection(stream).await,
            Err(error) => {
                tracing::warn!(%error, "a worker cannot take an accepted connection; closed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_is_one_thread_that_knows_its_slot() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let slots: Vec<(usize, String)> = workers
            .runtimes
            .iter()
            .map(|runtime| {
                runtime.block_on(async {
                    tokio::spawn(async {
                        (
                            current(),
                            std::thread::current().name().unwrap_or("").to_string(),
                        )
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        assert_eq!(
            slots,
            vec![
                (1, "sluice-worker-0".to_string()),
                (2, "sluice-worker-1".to_string())
            ]
        );
        // Not a worker's thread.
        assert_eq!(current(), 0);
    }

    #[test]
    fn a_connection_goes_to_the_least_busy_worker() {
        let workers = Workers::start(3).unwrap();
        workers.open[0].store(2, Ordering::Relaxed);
        workers.open[1].store(1, Ordering::Relaxed);
        workers.open[2].store(1, Ordering::Relaxed);
        let (sent, ran_on) = std::sync::mpsc::channel();
        workers.spawn(async move {
            sent.send(current()).unwrap();
        });
        assert_eq!(ran_on.recv().unwrap(), 2, "the first of the least busy");
        // Counted while it runs, and no longer once it ended.
        for _ in 0..100 {
            if workers.open[1].load(Ordering::Relaxed) == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(workers.open[1].load(Ordering::Relaxed), 1);
        // Dropping workers' runtimes outside async code is allowed.
        drop(workers);
    }
}
