//! `sluice plugin test`: plugins run offline over a recorded tape.
//!
//! A plugin author wants to know what their plugin does to real traffic without
//! standing up a client, a server and the proxy, and wants a regression check that
//! fails when that changes. [`run`] replays every stream of a tape through a chain
//! exactly as the proxy would: one [`Session`](crate::plugin::Session) per exchange
//! (the same instances for the request and its response events), the request body
//! through [`messages::to_server`], each upstream event through
//! [`messages::to_client`]. So the verdicts are those of a live run, batch splitting,
//! control events and the SSE cursor included, and a tape recorded through the same
//! chain is reproduced ([`Summary::live_reproduced`]).
//!
//! Events are named `stream/index`: index 0 is the stream's request, 1.. its
//! response events in tape order. What is printed lives in `render`; the golden file
//! (verdicts and outputs, never times) in `golden`; the field diff in `diff`.
//!
//! A live verdict is only compared where the tape says the same build judged it: a
//! tape records each exchange's chain generation and each plugin's component hash,
//! and each `modify`/`respond` step's output digest. An exchange judged by another
//! component (a tape recorded across a hot swap) is reported, not compared; a tape
//! from before these fields is compared by verdict kinds only, and says so.
//!
//! [`messages`] runs hand-written JSON-RPC messages instead of a tape
//! (`--message`, `--input`), through the same code of the proxy.

mod diff;
mod golden;
mod messages;
mod render;
mod replay;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::format::{self, ChainPlugin, Record, TapeError, TapeEvent, TapeStep};
use crate::plugin::{Chain, CompileCache, FailurePolicy, Plugin, PluginError, PluginSpec, Runtime};

pub use diff::event_diff;
pub use golden::{Golden, GoldenEntry, Mismatch};
pub use render::{Slow, Summary};

/// The proxy's default `--max-event-bytes`: a `modify` larger than this is refused
/// (`oversized`) offline as it would be live.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// The verdict of an event that never reached the chain because, in this run, the
/// proxy answered the stream's request itself (a plugin dropped it): the upstream would
/// not have sent the events the tape holds.
pub const UNREACHED: &str = "unreached";

/// How to replay, beyond the plugins themselves.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// See [`DEFAULT_MAX_EVENT_BYTES`]; match the live proxy's flag to reproduce it.
    pub max_event_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Which half of an exchange an event belongs to. Its own type (not
/// [`Direction`]) because golden files spell it and must parse it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Leg {
    /// The client's request body.
    ToServer,
    /// An upstream event or JSON response.
    ToClient,
}

impl Leg {
    /// `to-server` / `to-client`, as in logs and golden files.
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::ToServer => "to-server",
            Leg::ToClient => "to-client",
        }
    }
}

/// One plugin call, as this run measured it. Micros are fractional because a small
/// plugin answers in well under a microsecond, which a whole number would show as 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// The plugin's name (the file stem, as the proxy names it).
    pub plugin: String,
    /// `pass`, `drop`, `modify` or a failure kind.
    pub verdict: String,
    /// Wall time of the `on-event` call.
    pub micros: f64,
    /// Fuel the call consumed.
    pub fuel: u64,
    /// For `modify` and `respond`: the hex SHA-256 of what the plugin returned, as a
    /// tape records it ([`TapeStep::output`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The chain ended at this call: a drop, a plugin's answer, or a failure of a
    /// plugin that fails closed.
    #[serde(skip)]
    pub stops: bool,
}

/// A component other than the one under test judged an exchange of the tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherComponent {
    /// The plugin's name.
    pub plugin: String,
    /// The recorded component's hex SHA-256 (`None`: the tape does not know it).
    pub sha256: Option<String>,
    /// The chain generation that judged the exchange.
    pub generation: Option<u64>,
}

/// What became of one event of the tape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventResult {
    /// The tape's stream (HTTP exchange).
    pub stream: u64,
    /// 0 for the request, 1.. for the response events.
    pub index: usize,
    /// Which way the event went.
    pub direction: Leg,
    /// `drop` if any step dropped, else a failure kind if any step failed, else
    /// `modify` if any step modified, else `pass`; [`UNREACHED`] when the chain never
    /// saw it.
    pub verdict: String,
    /// Each plugin call, in order (every message of a batch in turn). Empty for a
    /// control event (no data), which plugins never see.
    pub steps: Vec<StepResult>,
    /// The event as the chain received it: a request body as `data`; a legacy
    /// `endpoint` event after the proxy's rewrite.
    pub input: TapeEvent,
    /// What would be sent on: upstream for a request, to the client for an event;
    /// `None` when nothing would be.
    pub output: Option<TapeEvent>,
    /// For a request: what sluice itself answers the client (the JSON-RPC error for a
    /// dropped or refused request, a plugin's `respond`), as the proxy would send it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// What the message is (`--message`/`--input`): e.g. `request tools/call (id 1)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The reload generation of the chain that judged the exchange live, if recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Set when a different component than the one under test judged the exchange
    /// live: its steps are then not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_component: Option<OtherComponent>,
    /// The verdict the same rule gives the steps recorded on the tape, if it has any.
    pub live_verdict: Option<String>,
    /// The steps recorded on the tape during the live run.
    pub live_steps: Vec<TapeStep>,
}

impl EventResult {
    /// `stream/index`, the name events go by in every output.
    pub fn name(&self) -> String {
        format!("{}/{}", self.stream, self.index)
    }

    /// Time summed over the chain.
    pub fn micros(&self) -> f64 {
        self.steps.iter().map(|s| s.micros).sum()
    }

    /// Fuel summed over the chain.
    pub fn fuel(&self) -> u64 {
        self.steps.iter().map(|s| s.fuel).sum()
    }

    /// Whether this run's steps are the live run's, plugin by plugin: the verdicts, and
    /// the output digests where the tape has them (`None` when neither run called a
    /// plugin on it, or when another component judged it live).
    pub fn reproduces_live(&self) -> Option<bool> {
        if self.steps.is_empty() && self.live_steps.is_empty() || self.other_component.is_some() {
            return None;
        }
        let same = |ours: &StepResult, live: &TapeStep| {
            ours.plugin == live.plugin
                && ours.verdict == live.verdict
                && (live.output.is_none() || ours.output == live.output)
        };
        Some(
            self.steps.len() == self.live_steps.len()
                && self
                    .steps
                    .iter()
                    .zip(&self.live_steps)
                    .all(|(o, l)| same(o, l)),
        )
    }

    /// A plugin saw it, in this run or live.
    pub fn seen(&self) -> bool {
        !(self.steps.is_empty() && self.live_steps.is_empty())
    }

    /// What the chain did with the message: `pass`, `drop`, `modify`, `respond` or
    /// `hold` (a failure counts as what its plugin's failure policy made of it: a drop
    /// when it fails closed, nothing when it fails open).
    pub fn outcome(&self) -> &'static str {
        if self.verdict == UNREACHED {
            return UNREACHED;
        }
        if let Some(stop) = self.steps.iter().find(|s| s.stops) {
            return if stop.verdict == "respond" {
                "respond"
            } else {
                "drop"
            };
        }
        let has = |v: &str| self.steps.iter().any(|s| s.verdict == v);
        if has("modify") {
            "modify"
        } else if has("hold") {
            "hold"
        } else {
            "pass"
        }
    }
}

/// The outcome of a replay: every event, in tape order (stream by stream).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The plugin names of this run, in chain order.
    pub chain: Vec<String>,
    /// The plugin names found in the tape's recorded steps, in order of appearance:
    /// the live chain, as far as the tape shows it.
    pub tape_chain: Vec<String>,
    /// This run's plugins with their component hashes.
    pub components: Vec<ChainPlugin>,
    /// The chain generations the tape's exchanges were recorded with, in order.
    pub generations: Vec<u64>,
    /// The tape records component hashes and output digests (a tape of an older
    /// sluice does not: its verdict kinds only are compared).
    pub tape_has_hashes: bool,
    /// Hand-written messages (`--message`, `--input`), not a tape.
    pub messages: bool,
    /// Every replayed event.
    pub events: Vec<EventResult>,
    /// What the replay could not do as the proxy would have (a stream without its
    /// request, an error status), one sentence each.
    pub notes: Vec<String>,
}

/// Why a replay or the subcommand cannot run: bad input, not a failed test.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The tape cannot be read.
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// A plugin cannot be loaded (the message names it), or the engine failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Nothing to test.
    #[error("no plugin given")]
    NoPlugin,
    /// A golden file cannot be read or written, or the output cannot be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A `--message` or `--input` message cannot be run.
    #[error("{what}: {reason}")]
    Input {
        /// Which message (or file).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A golden file line is not a golden entry.
    #[error("{path}:{line}: not a golden entry: {reason}")]
    Golden {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What serde said.
        reason: String,
    },
}

/// Loads the plugins as the proxy does (compile, contract checks, trial `init`) and
/// replays every stream of `records` through them.
pub fn run(
    runtime: &Arc<Runtime>,
    plugins: Vec<PluginSpec>,
    records: &[Record],
    options: &Options,
) -> Result<Report, HarnessError> {
    if plugins.is_empty() {
        return Err(HarnessError::NoPlugin);
    }
    Ok(replay::tape(&load(runtime, plugins)?, records, options))
}

/// Loads the plugins as the proxy does and runs hand-written messages through them
/// ([`messages`]): `direction` overrides each message's own; `method` is what a
/// response answers when its request is not among the messages.
pub fn run_messages(
    runtime: &Arc<Runtime>,
    plugins: Vec<PluginSpec>,
    input: &[Message],
    options: &Options,
) -> Result<Report, HarnessError> {
    Ok(messages::run(&load(runtime, plugins)?, input, options))
}

pub use messages::{Message, read_messages};

fn load(runtime: &Arc<Runtime>, plugins: Vec<PluginSpec>) -> Result<Arc<Chain>, HarnessError> {
    if plugins.is_empty() {
        return Err(HarnessError::NoPlugin);
    }
    let loaded = plugins
        .into_iter()
        .map(|spec| Plugin::load(runtime, spec))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Chain::new(loaded)))
}

/// One word for a whole walk through the chain: a drop outweighs a failure, which
/// outweighs a modification, because that is the order in which they change what is
/// sent.
pub fn final_verdict<'a>(verdicts: impl IntoIterator<Item = &'a str>) -> String {
    let mut best = "pass";
    // What became of the message: a hold it came through shows, a change more, a
    // failure more, and what stopped it (a drop, a plugin's own answer) most.
    let rank = |v: &str| match v {
        "pass" => 0,
        "hold" => 1,
        "modify" => 2,
        "drop" => 4,
        "respond" => 5,
        _ => 3,
    };
    for verdict in verdicts {
        if rank(verdict) > rank(best) {
            best = verdict;
        }
    }
    best.to_string()
}

impl StepResult {
    /// `step` of the plugin named `plugin`, whose failure policy is `failure`.
    fn new(step: &crate::plugin::Step, plugin: &str, failure: FailurePolicy) -> Self {
        use crate::plugin::StepVerdict;
        Self {
            plugin: plugin.to_string(),
            verdict: step.verdict.as_str().to_string(),
            micros: step.elapsed.as_nanos() as f64 / 1000.0,
            fuel: step.fuel,
            output: step.output.map(|d| crate::plugin::hex(&d)),
            stops: match step.verdict {
                StepVerdict::Drop | StepVerdict::Respond => true,
                StepVerdict::Failed(_) => failure == FailurePolicy::Closed,
                _ => false,
            },
        }
    }
}

/// What `sluice plugin test` runs the chain over.
#[derive(Debug, Clone)]
pub enum Input {
    /// A tape (`--tape`).
    Tape(PathBuf),
    /// A file of messages (`--input`; `-`: standard input).
    File(PathBuf),
    /// Messages given on the command line (`--message`).
    Messages(Vec<String>),
}

/// What `sluice plugin test` was asked to do; the CLI builds it from the flags.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The tape or messages to run.
    pub input: Input,
    /// For messages: the direction of every one (default: from each message).
    pub direction: Option<Leg>,
    /// For messages: the method a response answers when its request is not among them.
    pub method: Option<String>,
    /// The compile cache directory (`None`: compile without one).
    pub cache_dir: Option<PathBuf>,
    /// The chain, in order.
    pub plugins: Vec<PluginSpec>,
    /// Replay options.
    pub options: Options,
    /// Print one JSON document instead of text.
    pub json: bool,
    /// Write the golden file of this run here.
    pub save: Option<PathBuf>,
    /// Compare this run with this golden file.
    pub expect: Option<PathBuf>,
}

/// Runs the subcommand, printing to `out`. `Ok(true)`: done (and equal to the golden
/// file, if one was given); `Ok(false)`: the run differs from the golden file. The
/// binary turns these into exit codes 0 and 1, and an error into 2.
pub fn execute(invocation: &Invocation, out: &mut dyn Write) -> Result<bool, HarnessError> {
    let expected = invocation.expect.as_deref().map(Golden::load).transpose()?;
    let plugins = invocation.plugins.clone();
    let options = &invocation.options;
    let runtime = || {
        let cache = invocation.cache_dir.as_deref().and_then(CompileCache::open);
        Runtime::with_cache(cache)
    };
    let report = match &invocation.input {
        Input::Tape(tape) => {
            let records = format::read(tape)?;
            run(&runtime()?, plugins, &records, options)?
        }
        input => {
            let messages =
                read_messages(input, invocation.direction, invocation.method.as_deref())?;
            run_messages(&runtime()?, plugins, &messages, options)?
        }
    };
    let golden = Golden::of(&report);
    let mismatches = expected.as_ref().map(|e| e.compare(&golden));
    let written = |source| HarnessError::Io {
        path: "standard output".into(),
        source,
    };
    if invocation.json {
        let mut doc = report.to_json();
        if let (Some(path), Some(mismatches)) = (&invocation.expect, &mismatches) {
            doc["golden"] = golden::to_json(path, mismatches);
        }
        writeln!(out, "{doc:#}").map_err(written)?;
    } else {
        out.write_all(report.render_text().as_bytes())
            .map_err(written)?;
        if let (Some(path), Some(mismatches)) = (&invocation.expect, &mismatches) {
            out.write_all(golden::render(path, mismatches).as_bytes())
                .map_err(written)?;
        }
    }
    if let Some(path) = &invocation.save {
        golden.save(path)?;
        if !invocation.json {
            writeln!(out, "golden file written: {}", path.display()).map_err(written)?;
        }
    }
    Ok(mismatches.is_none_or(|m| m.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::replay::{data_only, result};
    use super::*;

    #[test]
    fn a_drop_outweighs_a_failure_which_outweighs_a_modify() {
        assert_eq!(final_verdict([]), "pass");
        assert_eq!(final_verdict(["pass", "modify", "pass"]), "modify");
        assert_eq!(final_verdict(["modify", "trap"]), "trap");
        assert_eq!(final_verdict(["modify", "deadline", "drop"]), "drop");
    }

    fn step(plugin: &str, verdict: &str) -> TapeStep {
        TapeStep {
            plugin: plugin.into(),
            verdict: verdict.into(),
            micros: 1,
            fuel: 1,
            output: None,
        }
    }

    #[test]
    fn the_live_run_is_reproduced_plugin_by_plugin() {
        let ours = vec![
            StepResult::new(
                &crate::plugin::Step {
                    plugin: 0,
                    verdict: crate::plugin::StepVerdict::Modify,
                    elapsed: std::time::Duration::from_nanos(1500),
                    fuel: 9,
                    output: None,
                },
                "a",
                FailurePolicy::Closed,
            ),
            StepResult {
                plugin: "b".into(),
                verdict: "drop".into(),
                micros: 0.5,
                fuel: 3,
                output: None,
                stops: true,
            },
        ];
        assert_eq!(ours[0].micros, 1.5);
        let event = |live: &[TapeStep]| {
            result(
                1,
                1,
                Leg::ToClient,
                data_only("{}".into()),
                None,
                ours.clone(),
                live,
            )
        };
        let same = event(&[step("a", "modify"), step("b", "drop")]);
        assert_eq!(same.verdict, "drop");
        assert_eq!(same.live_verdict.as_deref(), Some("drop"));
        assert_eq!(same.reproduces_live(), Some(true));
        assert_eq!(same.fuel(), 12);
        // The live `a` dropped, so `b` never ran: a different walk, same final verdict.
        assert_eq!(event(&[step("a", "drop")]).reproduces_live(), Some(false));
        let control = result(
            1,
            2,
            Leg::ToClient,
            data_only(String::new()),
            None,
            Vec::new(),
            &[],
        );
        assert_eq!(control.reproduces_live(), None);
        assert_eq!(control.verdict, "pass");

        // Where the tape has a step's output digest, the output must be the same too.
        let mut digested = ours.clone();
        digested[0].output = Some("aa".into());
        let live = |output: &str| {
            vec![
                TapeStep {
                    output: Some(output.into()),
                    ..step("a", "modify")
                },
                step("b", "drop"),
            ]
        };
        let run = |live: &[TapeStep]| {
            result(
                1,
                1,
                Leg::ToClient,
                data_only("{}".into()),
                None,
                digested.clone(),
                live,
            )
        };
        assert_eq!(run(&live("aa")).reproduces_live(), Some(true));
        assert_eq!(run(&live("bb")).reproduces_live(), Some(false));
        // Judged live by another component: not compared at all.
        let other = EventResult {
            other_component: Some(OtherComponent {
                plugin: "a".into(),
                sha256: Some("cc".into()),
                generation: Some(1),
            }),
            ..run(&live("aa"))
        };
        assert_eq!(other.reproduces_live(), None);
        assert_eq!(other.outcome(), "drop", "b dropped it");
    }
}
