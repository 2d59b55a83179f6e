//! Per-language figures for the reference filter (docs/plugins.md):
//!
//! ```sh
//! cargo run --release --example plugin_figures            # every plugins/dist/reference-*.wasm + the WAT one
//! cargo run --release --example plugin_figures -- FILE... # given components
//! cargo run --release --example plugin_figures -- --pooling [FILE...]
//! ```
//!
//! For each component: its size; the cold compile (cranelift, no cache); the cached
//! load (deserialising from a `CompileCache` that already holds it); the time to create
//! a stream's instance (instantiate + `init` + `on-stream-start`, through
//! `Session::begin`); the time of one `on-event` call on a 256-byte event that passes
//! and on one that is redacted (`modify`); and the memory of one instance: the smallest
//! memory cap (in 64 KiB pages) under which it loads and handles that event, i.e. the
//! largest linear memory it needs.
//!
//! With `--pooling`, only the new-instance time, on sluice's default engine (instances
//! mapped on demand) and on one with wasmtime's pooling allocator (copy-on-write memory
//! images), each both with 50 instances alive at once and with each instance dropped
//! before the next (a pooled slot is then reused warm).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::plugin::{
    Chain, CompileCache, Direction, Outcome, Plugin, PluginLimits, PluginSource, PluginSpec,
    Runtime, StreamMeta, builtin,
};
use sluice::sse::Event;

const CONFIG: &str =
    r#"{"redact":["sk-live-"],"drop_methods":["notifications/progress"],"drop_events":["ping"]}"#;
const PAGE: usize = 64 << 10;

fn event_256(secret: bool) -> Event {
    let head = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":""#;
    let tail = r#""}]}}"#;
    let mut text = "lorem ipsum dolor sit amet ".repeat(10);
    if secret {
        text.replace_range(40..48, "sk-live-");
    }
    text.truncate(256 - head.len() - tail.len());
    let data = format!("{head}{text}{tail}");
    assert_eq!(data.len(), 256);
    Event::message(data)
}

fn spec(name: &str, source: PluginSource, config: &str, memory_bytes: usize) -> PluginSpec {
    PluginSpec {
        powers: Default::default(),
        name: name.to_string(),
        source,
        config: config.to_string(),
        limits: PluginLimits {
            deadline: Duration::from_secs(30),
            memory_bytes,
            ..PluginLimits::default()
        },
        capabilities: Default::default(),
    }
}

fn meta() -> StreamMeta {
    StreamMeta {
        stream_id: 1,
        method: "POST".into(),
        path: "/mcp".into(),
        ..StreamMeta::default()
    }
}

/// Whether the plugin loads and handles one event under a memory cap.
fn fits(
    runtime: &Arc<Runtime>,
    name: &str,
    source: &PluginSource,
    config: &str,
    bytes: usize,
) -> bool {
    let Ok(plugin) = Plugin::load(runtime, spec(name, source.clone(), config, bytes)) else {
        return false;
    };
    let chain = Arc::new(Chain::new(vec![plugin]));
    let mut session = chain.session(meta());
    session.begin(Direction::ToClient);
    let _ = session.on_event(event_256(true));
    chain.stats(0).failures() == 0
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The mean time of `Session::begin` (instantiate + `init` + `on-stream-start`): over 50
/// sessions kept alive together, and over 50 begun and dropped one after the other.
fn new_instance(chain: &Arc<Chain>) -> (Duration, Duration) {
    let rounds = 50;
    let begin = || {
        let mut s = chain.session(meta());
        s.begin(Direction::ToClient);
        s
    };
    drop(begin()); // warm-up
    let start = Instant::now();
    let sessions: Vec<_> = (0..rounds).map(|_| begin()).collect();
    let live = start.elapsed() / rounds as u32;
    drop(sessions);
    let start = Instant::now();
    for _ in 0..rounds {
        drop(begin());
    }
    let one_by_one = start.elapsed() / rounds as u32;
    assert_eq!(chain.stats(0).failures(), 0, "instantiation failed");
    (live, one_by_one)
}

/// Pool limits big enough for the reference plugins (Python and JavaScript have several
/// core instances, memories and tables each) with 50 instances alive at once.
fn pooling_config() -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(200)
        .total_core_instances(2000)
        .total_memories(1000)
        .total_tables(1000)
        .total_stacks(200)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        .max_memories_per_module(4)
        .max_tables_per_module(8)
        .table_elements(100_000)
        .max_memory_size(256 << 20);
    pool
}

/// `--pooling`: new-instance time, on-demand allocator versus pooling allocator.
fn compare_allocators(plugins: &[(String, PluginSource, usize, &str)], cache_dir: &PathBuf) {
    let cache = || Some(CompileCache::new(cache_dir).expect("cache"));
    let on_demand = Runtime::with_cache(cache()).expect("runtime");
    let pooling = Runtime::with_pooling_allocator(cache(), pooling_config()).expect("runtime");
    println!(
        "| plugin | on-demand, 50 alive | pooling, 50 alive | on-demand, one at a time | pooling, one at a time |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, source, _, config) in plugins {
        let chain = |runtime: &Arc<Runtime>| {
            let plugin = Plugin::load(runtime, spec(name, source.clone(), config, 256 << 20))
                .expect("loads");
            Arc::new(Chain::new(vec![plugin]))
        };
        let (on_demand, pooling) = (chain(&on_demand), chain(&pooling));
        // Best of 3 runs each, alternating, so that load on the machine hits both.
        let (mut a, mut b) = (
            (Duration::MAX, Duration::MAX),
            (Duration::MAX, Duration::MAX),
        );
        for _ in 0..3 {
            let x = new_instance(&on_demand);
            a = (a.0.min(x.0), a.1.min(x.1));
            let y = new_instance(&pooling);
            b = (b.0.min(y.0), b.1.min(y.1));
        }
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            micros(a.0),
            micros(b.0),
            micros(a.1),
            micros(b.1)
        );
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut plugins: Vec<(String, PluginSource, usize, &str)> = Vec::new();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let pooling = args.first().is_some_and(|a| a == "--pooling");
    if pooling {
        args.remove(0);
    }
    let files: Vec<PathBuf> = if args.is_empty() {
        ["rust", "c", "zig", "python", "js"]
            .iter()
            .map(|l| root.join(format!("plugins/dist/reference-{l}.wasm")))
            .filter(|p| p.exists())
            .collect()
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let size = std::fs::metadata(&file).expect("component").len() as usize;
        plugins.push((name, PluginSource::File(file), size, CONFIG));
    }
    if args.is_empty() {
        plugins.push((
            "reference-wat (subset)".into(),
            PluginSource::Bytes(builtin::REFERENCE),
            builtin::REFERENCE.len(),
            "",
        ));
    }

    let cache_dir = std::env::temp_dir().join(format!("sluice-figures-{}", std::process::id()));
    if pooling {
        compare_allocators(&plugins, &cache_dir);
        let _ = std::fs::remove_dir_all(&cache_dir);
        return;
    }
    let cold = Runtime::new().expect("runtime");
    let cached =
        Runtime::with_cache(Some(CompileCache::new(&cache_dir).expect("cache"))).expect("runtime");

    println!(
        "| plugin | component | cold compile | cached load | new instance | on-event, 256 B pass | on-event, 256 B modify | memory per instance |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, source, size, config) in &plugins {
        let big = 1 << 30;
        // Cold: the best of 2 compiles without a cache.
        let compile = (0..2)
            .map(|_| {
                Plugin::load(&cold, spec(name, source.clone(), config, big))
                    .expect("loads")
                    .compile_time()
            })
            .min()
            .unwrap();
        // Cached: fill the cache, then the best of 5 hits.
        Plugin::load(&cached, spec(name, source.clone(), config, big)).expect("loads");
        let hit = (0..5)
            .map(|_| {
                Plugin::load(&cached, spec(name, source.clone(), config, big))
                    .expect("loads")
                    .compile_time()
            })
            .min()
            .unwrap();

        let plugin = Plugin::load(&cached, spec(name, source.clone(), config, big)).expect("loads");
        let chain = Arc::new(Chain::new(vec![plugin]));
        // New instance: Session::begin creates it and runs init + on-stream-start.
        let rounds = 50;
        let mut sessions = Vec::with_capacity(rounds);
        let start = Instant::now();
        for _ in 0..rounds {
            let mut s = chain.session(meta());
            s.begin(Direction::ToClient);
            sessions.push(s);
        }
        let instance = start.elapsed() / rounds as u32;
        drop(sessions);

        let mut session = chain.session(meta());
        session.begin(Direction::ToClient);
        let per_event = |session: &mut sluice::plugin::Session, event: &Event| {
            for _ in 0..200 {
                std::hint::black_box(session.on_event(event.clone()));
            }
            let n = 5000;
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(session.on_event(event.clone()));
            }
            start.elapsed() / n
        };
        let pass = per_event(&mut session, &event_256(false));
        let modify = if config.is_empty() {
            None
        } else {
            assert!(
                matches!(session.on_event(event_256(true)), Outcome::Forward(e) if e.data_str().contains("[REDACTED]"))
            );
            Some(per_event(&mut session, &event_256(true)))
        };
        assert_eq!(chain.stats(0).failures(), 0, "{name} failed");

        // Memory: the smallest cap, in pages, that works.
        let (mut lo, mut hi) = (0usize, 8192usize); // lo fails (0 pages), hi works (512 MiB)
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(&cached, name, source, config, mid * PAGE) {
                hi = mid;
            } else {
                lo = mid;
            }
        }

        println!(
            "| {name} | {:.1} KB | {:.1} ms | {:.2} ms | {:.0} µs | {:.2} µs | {} | {} KiB ({hi} pages) |",
            *size as f64 / 1000.0,
            compile.as_secs_f64() * 1e3,
            hit.as_secs_f64() * 1e3,
            micros(instance),
            micros(pass),
            modify.map_or("—".to_string(), |m| format!("{:.2} µs", micros(m))),
            hi * 64,
        );
    }
    let _ = std::fs::remove_dir_all(&cache_dir);
}
