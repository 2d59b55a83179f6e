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

mod diff;
mod golden;
mod render;
mod replay;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::format::{self, Record, TapeError, TapeEvent, TapeStep};
use crate::plugin::{Chain, Plugin, PluginError, PluginSpec, Runtime};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

    /// Whether this run's steps are the live run's, plugin by plugin (`None` when
    /// neither run called a plugin on it).
    pub fn reproduces_live(&self) -> Option<bool> {
        if self.steps.is_empty() && self.live_steps.is_empty() {
            return None;
        }
        let ours = self.steps.iter().map(|s| (&s.plugin, &s.verdict));
        let live = self.live_steps.iter().map(|s| (&s.plugin, &s.verdict));
        Some(ours.eq(live))
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
    let loaded = plugins
        .into_iter()
        .map(|spec| Plugin::load(runtime, spec))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(replay::tape(
        &Arc::new(Chain::new(loaded)),
        records,
        options,
    ))
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
    /// `step` of the plugin named `plugin`.
    fn new(step: &crate::plugin::Step, plugin: &str) -> Self {
        Self {
            plugin: plugin.to_string(),
            verdict: step.verdict.as_str().to_string(),
            micros: step.elapsed.as_nanos() as f64 / 1000.0,
            fuel: step.fuel,
        }
    }
}

/// What `sluice plugin test` was asked to do; the CLI builds it from the flags.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The tape to replay.
    pub tape: PathBuf,
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
    let records = format::read(&invocation.tape)?;
    let expected = invocation.expect.as_deref().map(Golden::load).transpose()?;
    let runtime = Runtime::new()?;
    let report = run(
        &runtime,
        invocation.plugins.clone(),
        &records,
        &invocation.options,
    )?;
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
                },
                "a",
            ),
            StepResult {
                plugin: "b".into(),
                verdict: "drop".into(),
                micros: 0.5,
                fuel: 3,
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
    }
}
