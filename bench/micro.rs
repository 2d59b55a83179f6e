//! Micro-benchmarks (issue 8): the SSE decoder on realistic MCP traffic, one plugin call
//! per event size next to wasmtime's own floor (an empty component call on the same
//! engine), the same plugin on contract 0.1 and 0.2 and the host calls of 0.2
//! (`contracts`, issue 25), and the time to create a fresh per-exchange instance of
//! every plugin.
//!
//! Run: `cargo bench --bench micro -- --warm-up-time 1 --measurement-time 3`
//! (numbers and machine in BENCHMARKS.md, "Micro-benchmarks").
//!
//! On a shared machine the decoder's wall-clock figures move with the load. For its CPU
//! time instead, build with `cargo bench --bench micro --no-run`, then run the binary it
//! names as `MICRO_DECODE=python,1460 perf stat -e task-clock target/release/deps/micro-…`
//! (`ts` or `python`, a read size, optionally a number of rounds, 2000 by default):
//! it decodes the traffic that many times and exits.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use serde_json::{Value, json};
use sluice::plugin::{
    Capabilities, Chain, Direction, Outcome, Plugin, PluginLimits, PluginSource, PluginSpec,
    Runtime, StreamMeta, builtin,
};
use sluice::sse::{Decoder, Event, Frame};
use wasmtime::Store;
use wasmtime::component::{Component, Func, Linker, TypedFunc};

#[path = "micro/contracts.rs"]
mod contracts;
#[path = "micro/library.rs"]
mod library;

/// The proxy's default `--max-event-bytes`.
const MAX_EVENT_BYTES: usize = 4 << 20;

/// Read sizes for the decoder: one TCP segment (Ethernet MSS), and two typical
/// socket-buffer reads.
const CHUNKS: [usize; 3] = [1460, 16 << 10, 64 << 10];

/// Event data sizes for the plugin calls.
const SIZES: [usize; 3] = [256, 4 << 10, 64 << 10];

// ---- Realistic MCP traffic ---------------------------------------------------------------

/// xorshift64*: the same bytes on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A random (version 4) UUID, as `str(uuid4())` writes it.
    fn uuid4(&mut self) -> String {
        let (x, y) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            x >> 32,
            (x >> 16) & 0xffff,
            x & 0xfff,
            0x8000 | ((y >> 48) & 0x3fff),
            y & 0xffff_ffff_ffff
        )
    }

    /// `Math.random().toString(36).substring(2, 10)`.
    fn base36(&mut self, len: usize) -> String {
        const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        (0..len)
            .map(|_| DIGITS[self.below(36) as usize] as char)
            .collect()
    }
}

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "request", "returned", "file", "src/lib.rs", "match", "line", "function", "config",
    "value", "error", "résumé", "naïve", "déjà", "données", "→", "✓", "🙂", "user_id", "token",
    "\"quoted\"", "path/to/module.py", "TODO:", "fn", "return", "self", "async", "await",
    "None", "42", "0.75", "2026-11-25T19:46:48Z", "{", "}", "[", "]", "=", "=>", "\\",
];

/// Tool output: lines of words (some non-ASCII, quotes, backslashes, tabs), about `len`
/// bytes; JSON escaping later turns its newlines, quotes and tabs into escapes.
fn text(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 32);
    let mut line = 0;
    while out.len() < len {
        if line > 40 + rng.below(60) as usize {
            out.push('\n');
            if rng.below(6) == 0 {
                out.push('\t');
            }
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        let word = rng.pick(WORDS);
        out.push_str(word);
        line += word.len();
    }
    out
}

fn tools_list(rng: &mut Rng, id: u64) -> Value {
    const VERBS: &[&str] = &["search", "read", "write", "list", "get", "create", "update"];
    #[rustfmt::skip]
    const NOUNS: &[&str] = &[
        "files", "issues", "pull_request", "commits", "branches", "documents", "records",
        "tickets", "users", "logs",
    ];
    const TYPES: &[&str] = &["string", "integer", "boolean", "number"];
    let tools: Vec<Value> = (0..20)
        .map(|i| {
            let name = format!("{}_{}_{i}", rng.pick(VERBS), rng.pick(NOUNS));
            let mut properties = serde_json::Map::new();
            let mut required = Vec::new();
            for p in 0..(3 + rng.below(4)) {
                let prop = format!("{}_{p}", rng.pick(NOUNS));
                let ty = rng.pick(TYPES);
                let len = 40 + rng.below(80) as usize;
                let mut schema = json!({"type": ty, "description": text(rng, len)});
                match ty {
                    "integer" => {
                        schema["minimum"] = json!(1);
                        schema["maximum"] = json!(100);
                        schema["default"] = json!(30);
                    }
                    "string" if rng.below(3) == 0 => {
                        schema["enum"] = json!(["asc", "desc", "relevance"]);
                    }
                    _ => {}
                }
                if rng.below(2) == 0 {
                    required.push(prop.clone());
                }
                properties.insert(prop, schema);
            }
            let len = 120 + rng.below(200) as usize;
            let mut tool = json!({
                "name": name,
                "title": name.replace('_', " "),
                "description": text(rng, len),
                "inputSchema": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                    "$schema": "http://json-schema.org/draft-07/schema#"
                },
                "annotations": {"readOnlyHint": rng.below(2) == 0, "openWorldHint": false}
            });
            if rng.below(4) == 0 {
                tool["outputSchema"] = json!({
                    "type": "object",
                    "properties": {"total": {"type": "integer"}, "items": {"type": "array", "items": {"type": "string"}}},
                    "required": ["total", "items"]
                });
            }
            tool
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}})
}

/// A `tools/call` result whose text content is about `len` bytes.
fn tool_result(rng: &mut Rng, id: u64, len: usize) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {"content": [{"type": "text", "text": text(rng, len)}], "isError": false}
    })
}

/// The framing of one server implementation.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// The TypeScript SDK: `event: message`, then `id: <stream>_<ms>_<random>` (its
    /// in-memory event store), then `data:`; LF line ends. Keep-alives: `: keep-alive`.
    TypeScript,
    /// The Python SDK (`sse-starlette`): `id: <uuid4>` (the example event store), then
    /// `event: message`, then `data:`; CRLF line ends, `: ping - <timestamp>` keep-alives.
    Python,
}

impl Style {
    fn name(self) -> &'static str {
        match self {
            Style::TypeScript => "ts-sdk-lf",
            Style::Python => "python-sdk-crlf",
        }
    }
}

/// One server's SSE output under construction.
struct Wire {
    style: Style,
    out: String,
    rng: Rng,
    stream: String,
    clock_ms: u64,
    events: usize,
    comments: usize,
}

impl Wire {
    fn message(&mut self, message: &Value) {
        let data = serde_json::to_string(message).expect("JSON");
        self.clock_ms += 1 + self.rng.below(40);
        match self.style {
            Style::TypeScript => {
                let random = self.rng.base36(8);
                let _ = write!(
                    self.out,
                    "event: message\nid: {}_{}_{random}\ndata: {data}\n\n",
                    self.stream,
                    1_795_000_000_000 + self.clock_ms
                );
            }
            Style::Python => {
                let id = self.rng.uuid4();
                let _ = write!(
                    self.out,
                    "id: {id}\r\nevent: message\r\ndata: {data}\r\n\r\n"
                );
            }
        }
        self.events += 1;
    }

    fn keep_alive(&mut self) {
        match self.style {
            Style::TypeScript => self.out.push_str(": keep-alive\n\n"),
            Style::Python => {
                let (s, us) = (self.clock_ms / 1000 % 60, self.clock_ms % 1000 * 1000);
                let _ = write!(
                    self.out,
                    ": ping - 2026-11-25 19:46:{s:02}.{us:06}+00:00\r\n\r\n"
                );
            }
        }
        self.comments += 1;
    }
}

/// What an MCP client session sees from one server: `initialize`, a `tools/list` of 20
/// tools with their JSON schemas, then 48 `tools/call`s, each with 5
/// `notifications/progress`, 2 `notifications/message` logs and a text result of 0.6 to
/// 6 KiB; a keep-alive comment after every 12th event. Returns the bytes and the
/// number of frames (events + comments) they decode to.
fn traffic(style: Style) -> (Vec<u8>, usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let stream = rng.uuid4();
    let mut wire = Wire {
        style,
        out: String::new(),
        rng: Rng(7),
        stream,
        clock_ms: 0,
        events: 0,
        comments: 0,
    };
    let send = |wire: &mut Wire, message: Value| {
        wire.message(&message);
        if wire.events.is_multiple_of(12) {
            wire.keep_alive();
        }
    };
    send(
        &mut wire,
        json!({"jsonrpc": "2.0", "id": 0, "result": {
            "protocolVersion": "2025-06-18",
            "capabilities": {"logging": {}, "tools": {"listChanged": true},
                             "resources": {"subscribe": false, "listChanged": true},
                             "prompts": {"listChanged": false}},
            "serverInfo": {"name": "bench-server", "title": "Bench Server", "version": "1.4.2"},
            "instructions": text(&mut rng, 300)
        }}),
    );
    send(&mut wire, tools_list(&mut rng, 1));
    for call in 0..48u64 {
        let id = call + 2;
        let token = format!("progress-{id}");
        for step in 1..=5 {
            send(
                &mut wire,
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                    "progressToken": token, "progress": step, "total": 5,
                    "message": format!("Processed {step} of 5 files")
                }}),
            );
            if step == 2 || step == 4 {
                let level = rng.pick(&["info", "debug", "warning"]);
                let len = 80 + rng.below(220) as usize;
                let data = text(&mut rng, len);
                send(
                    &mut wire,
                    json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {
                        "level": level, "logger": "bench-server.tools", "data": data
                    }}),
                );
            }
        }
        let len = [600, 1500, 3000, 6000][rng.below(4) as usize];
        send(&mut wire, tool_result(&mut rng, id, len));
    }
    let frames = wire.events + wire.comments;
    (wire.out.into_bytes(), frames)
}

/// Decodes `wire` in reads of `chunk` bytes, handing each frame on as the proxy does
/// (popped from the queue after every read); returns the number of frames.
fn decode_all(wire: &[u8], chunk: usize) -> usize {
    let mut decoder = Decoder::new(MAX_EVENT_BYTES);
    let mut out = VecDeque::new();
    let mut frames = 0;
    for piece in wire.chunks(chunk) {
        decoder.decode(piece, &mut out).expect("within the limit");
        while let Some(frame) = out.pop_front() {
            frames += 1;
            black_box(frame);
        }
    }
    assert!(!decoder.finish(), "the stream ends between events");
    frames
}

fn sse_decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse-decode");
    for style in [Style::TypeScript, Style::Python] {
        let (wire, frames) = traffic(style);
        let (mut events, mut largest) = (0, 0);
        let mut decoder = Decoder::new(MAX_EVENT_BYTES);
        let mut out = VecDeque::new();
        decoder.decode(&wire, &mut out).unwrap();
        for frame in &out {
            if let Frame::Event(event) = frame {
                events += 1;
                largest = largest.max(event.data_str().len());
            }
        }
        eprintln!(
            "{}: {} bytes, {frames} frames ({events} events, largest data {largest} bytes)",
            style.name(),
            wire.len()
        );
        group.throughput(Throughput::Bytes(wire.len() as u64));
        for chunk in CHUNKS {
            assert_eq!(decode_all(&wire, chunk), frames);
            group.bench_with_input(
                BenchmarkId::new(style.name(), chunk),
                &chunk,
                |b, &chunk| b.iter(|| decode_all(&wire, chunk)),
            );
        }
    }
    group.finish();
}

// ---- One plugin call per event, next to wasmtime's floor ---------------------------------

/// The smallest component: `run: func()`, a core function that does nothing.
const EMPTY: &str = r#"
(component
  (core module $m (func (export "run")))
  (core instance $i (instantiate $m))
  (func (export "run") (canon lift (core func $i "run"))))
"#;

/// `run: func(s: string)`: the host copies the string into the guest's memory (at the
/// address the trivial `realloc` returns), the core function ignores it.
const STRING_ARG: &str = r#"
(component
  (core module $m
    (memory (export "memory") 2)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "run") (param i32 i32)))
  (core instance $i (instantiate $m))
  (func (export "run") (param "s" string)
    (canon lift (core func $i "run") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc")))))
"#;

/// A store on the plugins' engine with an instance of `wat`, and its `run` export.
fn floor(runtime: &Runtime, wat: &str) -> (Store<()>, Func) {
    let engine = runtime.engine();
    let component = Component::new(engine, wat::parse_str(wat).expect("WAT")).expect("component");
    let mut store = Store::new(engine, ());
    // The engine has fuel and epoch interruption on: give the store plenty of both.
    store.set_fuel(u64::MAX).unwrap();
    store.set_epoch_deadline(1 << 40);
    let instance = Linker::new(engine)
        .instantiate(&mut store, &component)
        .expect("instantiates");
    let run = instance.get_func(&mut store, "run").expect("run");
    (store, run)
}

fn limits() -> PluginLimits {
    PluginLimits {
        // Generous: a loaded 2-core machine must not turn a slow call or `init` into a
        // failure (the benches assert that none happened).
        deadline: Duration::from_secs(1),
        memory_bytes: 256 << 20,
        ..PluginLimits::default()
    }
}

fn load(
    runtime: &Arc<Runtime>,
    name: &str,
    source: PluginSource,
    config: &str,
    capabilities: Capabilities,
) -> Result<Plugin, sluice::plugin::PluginError> {
    Plugin::load(
        runtime,
        PluginSpec {
            powers: Default::default(),
            name: name.into(),
            source,
            config: config.into(),
            limits: limits(),
            capabilities,
        },
    )
}

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/dist")
}

/// A `tools/call` result of exactly `len` bytes of JSON.
fn event_data(len: usize) -> String {
    let mut rng = Rng(len as u64 | 1);
    fit(tool_result(&mut rng, 7, len), "/result/content/0/text", len)
}

/// `value` as JSON of exactly `len` bytes: the string at `pointer` trimmed until the
/// JSON fits, then padded with spaces.
fn fit(mut value: Value, pointer: &str, len: usize) -> String {
    let text = |value: &Value| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    };
    let mut data = serde_json::to_string(&value).unwrap();
    while data.len() > len {
        let text = text(&value);
        let mut cut = text.len() - (data.len() - len).min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        *value.pointer_mut(pointer).unwrap() = json!(&text[..cut]);
        data = serde_json::to_string(&value).unwrap();
    }
    let pad = len - data.len();
    *value.pointer_mut(pointer).unwrap() = json!(format!("{}{}", text(&value), " ".repeat(pad)));
    let data = serde_json::to_string(&value).unwrap();
    assert_eq!(data.len(), len);
    data
}

fn plugin_calls(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();

    let mut group = c.benchmark_group("floor");
    let (mut store, run) = floor(&runtime, EMPTY);
    let run: TypedFunc<(), ()> = run.typed(&store).unwrap();
    group.bench_function("wasmtime-empty-call", |b| {
        b.iter(|| run.call(&mut store, ()).unwrap())
    });
    // What sluice sets before every call (Instance::run): a fresh epoch deadline and
    // fuel. The deadline of `limits()` (1 s): with 10 ticks, sluice's default, this
    // store (no CPU-time callback, unlike sluice's, see `plugin::deadline`) once had an
    // empty call interrupted while other processes held both cores for over 10 ms.
    group.bench_function("wasmtime-empty-call+budgets", |b| {
        b.iter(|| {
            store.set_epoch_deadline(1000);
            store.set_fuel(u64::MAX).unwrap();
            run.call(&mut store, ()).unwrap()
        })
    });
    group.finish();

    let mut chains = vec![(
        "wat-pass",
        load(
            &runtime,
            "pass",
            PluginSource::Bytes(builtin::PASS),
            "",
            Capabilities::default(),
        )
        .unwrap(),
    )];
    let passthrough = dist().join("passthrough.wasm");
    if passthrough.exists() {
        chains.push((
            "rust-passthrough",
            load(
                &runtime,
                "passthrough",
                PluginSource::File(passthrough),
                "",
                Capabilities::default(),
            )
            .unwrap(),
        ));
    } else {
        eprintln!("plugins/dist/passthrough.wasm missing: run `bash plugins/build-all.sh`");
    }
    let chains: Vec<(&str, Arc<Chain>)> = chains
        .into_iter()
        .map(|(name, plugin)| (name, Arc::new(Chain::new(vec![plugin]))))
        .collect();

    let (mut store, string_arg) = floor(&runtime, STRING_ARG);
    let mut group = c.benchmark_group("call");
    for size in SIZES {
        let data = event_data(size);
        group.throughput(Throughput::Bytes(size as u64));
        let run: TypedFunc<(&str,), ()> = string_arg.typed(&store).unwrap();
        group.bench_with_input(
            BenchmarkId::new("wasmtime-string-arg", size),
            &data,
            |b, data| b.iter(|| run.call(&mut store, (data.as_str(),)).unwrap()),
        );
        for (name, chain) in &chains {
            let mut session = chain.session(StreamMeta::default());
            session.begin(Direction::ToClient);
            // The event is built outside the timing: in the proxy it comes owned from
            // the decoder, no copy.
            group.bench_with_input(BenchmarkId::new(*name, size), &data, |b, data| {
                b.iter_batched(
                    || Event::message(data.clone()),
                    |event| session.on_event(event),
                    BatchSize::LargeInput,
                )
            });
            assert!(matches!(
                session.on_event(Event::message(data.clone())),
                Outcome::Forward(_)
            ));
            assert_eq!(chain.stats(0).failures(), 0, "{name} failed");
        }
    }
    group.finish();
}

// ---- A fresh instance per exchange --------------------------------------------------------

/// The reference filter's configuration (as in `examples/plugin_figures.rs`).
const REFERENCE_CONFIG: &str =
    r#"{"redact":["sk-live-"],"drop_methods":["notifications/progress"],"drop_events":["ping"]}"#;

fn config_for(name: &str) -> &'static str {
    match name {
        "redact" => r#"{"patterns":["sk-[a-z0-9]+"]}"#,
        "dropper" => r#"{"methods":["notifications/progress"]}"#,
        n if n.starts_with("reference-") => REFERENCE_CONFIG,
        _ => "",
    }
}

fn instantiate(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut plugins: Vec<(String, Plugin)> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dist())
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let config = config_for(&name);
        match load(
            &runtime,
            &name,
            PluginSource::File(file),
            config,
            Capabilities::default(),
        ) {
            Ok(plugin) => plugins.push((name, plugin)),
            Err(e) => eprintln!("{name}: skipped, does not load: {e}"),
        }
    }
    for (name, bytes) in builtin::ALL {
        // `init` refuses every configuration / never returns: they cannot be loaded.
        if matches!(*name, "badinit" | "initloop") {
            continue;
        }
        let label = format!("wat-{name}");
        let plugin = load(
            &runtime,
            name,
            PluginSource::Bytes(bytes),
            "",
            Capabilities::default(),
        )
        .map(|p| (label.clone(), p))
        .or_else(|_| {
            // The WASI fixtures load only with a grant: the empty WASI context.
            let wasi = Capabilities {
                wasi: true,
                ..Capabilities::default()
            };
            load(&runtime, name, PluginSource::Bytes(bytes), "", wasi)
                .map(|p| (format!("{label}+wasi"), p))
        });
        match plugin {
            Ok(plugin) => plugins.push(plugin),
            Err(e) => eprintln!("{label}: skipped, does not load: {e}"),
        }
    }

    let first = event_data(256);
    let mut group = c.benchmark_group("instantiate");
    for (name, plugin) in plugins {
        let chain = Arc::new(Chain::new(vec![plugin]));
        // What the proxy does for each exchange: a session, whose first phase creates
        // the instance of a 0.1 plugin (and, for an interceptor, runs `init` and
        // `on-stream-start`); the instance is dropped with the session, inside the
        // timing. A 0.2 plugin's instance is made for its first message, so for it only
        // `first-event` includes the instance.
        group.bench_function(&name, |b| {
            b.iter(|| {
                let mut session = chain.session(StreamMeta::default());
                session.begin(Direction::ToClient);
                session
            })
        });
        // The first event on a fresh instance costs far more than on a warm one, so the
        // per-exchange cost is this one, not the line above. (A profile of wat-pass
        // points at the kernel: page faults in the fresh linear memory, and unmapping
        // it when the instance goes.)
        if handles_events(&name) {
            group.bench_function(format!("{name}/first-event"), |b| {
                b.iter(|| {
                    let mut session = chain.session(StreamMeta::default());
                    session.begin(Direction::ToClient);
                    // Building the 256-byte event: about 1/1000 of the time measured.
                    session.on_event(Event::message(first.clone()));
                    session
                })
            });
        }
        assert_eq!(chain.stats(0).failures(), 0, "{name} failed");
    }
    group.finish();
}

/// The plugins whose `on-event` does ordinary work (not trap, hang, grow its memory
/// to the cap or answer 8 MiB).
fn handles_events(name: &str) -> bool {
    matches!(
        name,
        "passthrough"
            | "passthrough-c"
            | "passthrough-v0.2"
            | "passthrough-c-v0.2"
            | "redact"
            | "dropper"
            | "streaminfo"
            | "wat-pass"
            | "wat-demo"
            | "wat-reference"
    ) || name.starts_with("reference-")
}

criterion_group!(
    benches,
    sse_decoder,
    plugin_calls,
    contracts::contracts,
    library::library,
    instantiate
);

/// `criterion_main!`, plus the decoder's CPU-time mode (see the module documentation).
fn main() {
    if let Ok(spec) = std::env::var("MICRO_DECODE") {
        decode_for_cpu_time(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// `MICRO_DECODE=<ts|python>,<read size>[,<rounds>]`: decodes that traffic `rounds` times
/// (default 2000) and exits, for `perf stat -e task-clock`: CPU time, which other
/// processes on a shared machine inflate far less than criterion's wall time.
fn decode_for_cpu_time(spec: &str) {
    let mut parts = spec.split(',');
    let style = match parts.next() {
        Some("ts") => Style::TypeScript,
        Some("python") => Style::Python,
        other => panic!("MICRO_DECODE: style {other:?}, expected ts or python"),
    };
    let parse = |part: Option<&str>, default: Option<usize>| {
        part.map(|p| p.parse().expect("MICRO_DECODE: a number"))
            .or(default)
            .expect("MICRO_DECODE=<ts|python>,<read size>[,<rounds>]")
    };
    let chunk = parse(parts.next(), None);
    let rounds = parse(parts.next(), Some(2000));
    let (wire, frames) = traffic(style);
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        assert_eq!(decode_all(&wire, chunk), frames);
    }
    let elapsed = started.elapsed();
    println!(
        "{}, {chunk}-byte reads: {rounds} x {} bytes, {:.1} us wall per round",
        style.name(),
        wire.len(),
        elapsed.as_secs_f64() * 1e6 / rounds as f64
    );
}
