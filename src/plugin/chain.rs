//! The ordered chain of plugins and one exchange's walk through it.
//!
//! A [`Chain`] is the loaded set of plugins, shared by all streams. A [`Session`] is
//! one HTTP exchange's private instances of those plugins: a POST's request message and
//! its response events go through the same instances, so a plugin can remember what
//! was asked when it sees the answer, and nothing it remembers reaches another
//! exchange.

mod batch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::{SseEvent, StreamInfo};
use super::convert::{self, Direction, InFlight, StreamMeta};
use super::loaded::{Answer, CallFailure, FailurePolicy, HoldSpec, Instance, Plugin, RpcError};
use super::message::MessageKind;
use super::state::Powers;
use super::store::{StateStore, StateStores};
use crate::error_chain::ErrorChain;
use crate::failure::FailureKind;
use crate::metrics::{Metrics, PluginCounters, PluginMetrics, Refusals, StatsSnapshot};
use crate::shape;
use crate::sse::Event;

/// Why an event left the chain early.
enum Stop {
    /// A `drop` verdict, or a failure under fail-closed.
    Dropped {
        plugin: Arc<str>,
        failure: Option<FailureKind>,
    },
    /// A `respond` verdict: the plugin answered the request.
    Answered {
        plugin: Arc<str>,
        answer: Result<String, RpcError>,
    },
    /// A `hold` verdict: the walk goes on at plugin `resume` after the wait.
    Held {
        plugin: Arc<str>,
        hold: HoldSpec,
        resume: usize,
    },
}

impl Stop {
    /// The outcome of the event that stopped here.
    fn outcome(self, event: Event) -> Outcome {
        match self {
            Stop::Dropped { plugin, failure } => Outcome::Dropped {
                plugin,
                failure,
                event,
            },
            Stop::Answered { plugin, answer } => Outcome::Answered {
                plugin,
                answer,
                event,
            },
            Stop::Held {
                plugin,
                hold,
                resume,
            } => Outcome::Held {
                plugin,
                hold,
                event,
                resume,
            },
        }
    }
}

/// The plugins in the order the operator gave them.
#[derive(Debug, Default)]
pub struct Chain {
    plugins: Vec<Arc<Plugin>>,
    /// Their names, in the same order: what a [`Step`]'s index resolves to.
    names: Arc<[Arc<str>]>,
    /// The metric handles of each plugin, in the same order.
    metrics: Vec<PluginMetrics>,
    /// Messages the MCP rules refuse before the plugins (detached until
    /// [`Chain::with_metrics`]).
    refusals: Refusals,
    /// Each plugin's own counters (the `metrics` power), in the same order.
    counters: Vec<PluginCounters>,
    /// Each plugin's state store (the `state` power), in the same order.
    stores: Vec<Arc<StateStore>>,
    /// True when a 0.2 plugin wants messages going to the client: it may hold one, so
    /// a stream's events then go one by one, never in batches.
    one_by_one: bool,
    generation: u64,
}

impl Chain {
    /// True when a plugin of this chain sees messages going `direction` (a filter sees
    /// none going to the server).
    pub fn sees(&self, direction: Direction) -> bool {
        self.plugins.iter().any(|p| applies(p, direction))
    }

    /// A chain of already loaded plugins, in order. Each gets a state store of its own
    /// ([`Chain::with_state`] gives it the one it had before a reload).
    pub fn new(plugins: Vec<Plugin>) -> Self {
        let metrics = plugins
            .iter()
            .map(|p| loaded(PluginMetrics::detached(p.name())))
            .collect();
        Self {
            names: plugins.iter().map(|p| p.name_arc().clone()).collect(),
            counters: plugins
                .iter()
                .map(|p| PluginCounters::detached(p.name()))
                .collect(),
            stores: plugins
                .iter()
                .map(|p| Arc::new(StateStore::new(p.powers().state)))
                .collect(),
            one_by_one: plugins.iter().any(|p| {
                p.contract() == super::Contract::V0_2
                    && p.interest().wants_direction(Direction::ToClient)
            }),
            plugins: plugins.into_iter().map(Arc::new).collect(),
            metrics,
            refusals: Refusals::default(),
            generation: 0,
        }
    }

    /// The same chain, its plugins' state stores taken from `stores` (by plugin name:
    /// a store outlives the chain that made it).
    pub fn with_state(mut self, stores: &StateStores) -> Self {
        stores.keep_only(self.plugins.iter().map(|p| p.name()));
        self.stores = self
            .plugins
            .iter()
            .map(|p| stores.for_plugin(p.name(), p.powers().state))
            .collect();
        self
    }

    /// The same chain, counting into a proxy's `metrics` (by plugin name, so the
    /// series go on across reloads).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.metrics = self
            .plugins
            .iter()
            .map(|p| loaded(metrics.plugin(p.name())))
            .collect();
        self.refusals = metrics.refusals();
        self.counters = self
            .plugins
            .iter()
            .map(|p| metrics.plugin_counters(p.name()))
            .collect();
        self
    }

    /// Where the MCP rules count the messages they refuse before the plugins.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// The same chain, numbered: each successful reload makes the next generation, so
    /// logs and the admin API can tell which chain served a stream.
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// Which reload made this chain (0 for the chain loaded at start).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// No plugins: every event passes.
    pub fn empty() -> Self {
        Self::default()
    }

    /// True when there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The plugins, in order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// The plugins' names, in order: a [`Step`]'s `plugin` indexes them. Shared (a
    /// tape of the exchange keeps them as long as it needs).
    pub fn plugin_names(&self) -> &Arc<[Arc<str>]> {
        &self.names
    }

    /// The figures of plugin `index` in this chain (this generation).
    pub fn stats(&self, index: usize) -> StatsSnapshot {
        self.metrics[index].stats()
    }

    /// Starts one exchange. No instance is created until a phase that needs it begins.
    pub fn session(self: &Arc<Self>, meta: StreamMeta) -> Session {
        Session {
            slots: self.plugins.iter().map(|_| None).collect(),
            chain: self.clone(),
            meta: Arc::new(meta),
            phase: None,
            max_event_bytes: usize::MAX,
            steps: None,
            event_steps: Vec::new(),
            event_steps_len: 0,
            calls: 0,
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this event on (possibly modified by plugins).
    Forward(Event),
    /// A plugin dropped the event, by verdict or by failing under fail-closed.
    Dropped {
        /// Name of the plugin that dropped it.
        plugin: Arc<str>,
        /// `None` for a `drop` verdict; the failure for fail-closed.
        failure: Option<FailureKind>,
        /// The event as that plugin saw it, so the proxy can answer for it (a dropped
        /// JSON-RPC response is replaced by an error with the same id).
        event: Event,
    },
    /// A plugin answered a client's request itself (`respond`): the request goes no
    /// further; the proxy sends the answer (through the to-client chain).
    Answered {
        /// Name of the plugin that answered.
        plugin: Arc<str>,
        /// The `result` member's JSON text, or the error.
        answer: Result<String, RpcError>,
        /// The request as that plugin saw it (its `id` is the answer's).
        event: Event,
    },
    /// A plugin held the event (`hold`): after the wait the proxy calls
    /// [`Session::resume`] with it (or drops it, as the hold ends).
    Held {
        /// Name of the plugin that held it.
        plugin: Arc<str>,
        /// How long, and for what.
        hold: HoldSpec,
        /// The event as that plugin saw it.
        event: Event,
        /// Where the walk goes on: the plugin after the one that held it.
        resume: usize,
    },
}

/// One plugin call in this many feeds `sluice_plugin_call_seconds` (the first of each
/// session included): enough for latency percentiles, at a fraction of the cost.
pub const TIMING_SAMPLE: u32 = 8;

/// One plugin's part in one event's walk through the chain: what tapes record and
/// `sluice plugin test` prints. Collected only when a session traces (it costs a clock
/// read per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The plugin: its place in the session's chain ([`Chain::plugin_names`] has its
    /// name).
    pub plugin: usize,
    /// What it answered.
    pub verdict: StepVerdict,
    /// Wall time of the call (instantiation included when it happened in this call).
    pub elapsed: Duration,
    /// Fuel (wasm instructions, roughly) the `on-event` call consumed.
    pub fuel: u64,
    /// For a `modify` or `respond`, the SHA-256 of what the plugin returned
    /// ([`output_digest`]): a tape keeps it so that a replay can tell whether a plugin
    /// still makes the same output without the tape holding each plugin's text.
    pub output: Option<[u8; 32]>,
}

/// The SHA-256 of what a plugin returned: for `modify`, the message (the event's
/// `data`); for `respond`, its answer (`result` and the JSON text; or `error`, the code,
/// the message after its length, and the data), so two answers that differ never hash
/// the same bytes. `None` for every other verdict, whose output is its input or
/// nothing.
fn output_digest(verdict: &Result<Answer, CallFailure>) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    match verdict {
        Ok(Answer::Modify(new)) => Some(Sha256::digest(new.data.as_bytes()).into()),
        Ok(Answer::Respond(answer)) => {
            let mut hash = Sha256::new();
            match answer {
                Ok(result) => hash.update(format!("result\0{result}")),
                Err(error) => hash.update(format!(
                    "error\0{}\0{}:{}{}",
                    error.code,
                    error.message.len(),
                    error.message,
                    error.data.as_deref().unwrap_or("")
                )),
            }
            Some(hash.finalize().into())
        }
        _ => None,
    }
}

/// A plugin's answer as a tape records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepVerdict {
    /// `pass`.
    Pass,
    /// `drop` (the chain ends).
    Drop,
    /// `modify` (the next plugin sees the new event).
    Modify,
    /// `respond` (the plugin answered the request; the chain ends).
    Respond,
    /// `hold` (the walk waits, then goes on or ends).
    Hold,
    /// The call failed; the plugin's failure policy decided.
    Failed(FailureKind),
}

impl StepVerdict {
    /// The step a call's result makes (after the event-size limit).
    fn of(result: &Result<Answer, CallFailure>) -> Self {
        match result {
            Ok(Answer::Pass) => StepVerdict::Pass,
            Ok(Answer::Drop) => StepVerdict::Drop,
            Ok(Answer::Modify(_)) => StepVerdict::Modify,
            Ok(Answer::Respond(_)) => StepVerdict::Respond,
            Ok(Answer::Hold(_)) => StepVerdict::Hold,
            Err(failure) => StepVerdict::Failed(failure.kind),
        }
    }

    /// `pass`, `drop`, `modify`, `respond`, `hold`, or the failure kind (`trap`,
    /// `deadline`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StepVerdict::Pass => "pass",
            StepVerdict::Drop => "drop",
            StepVerdict::Modify => "modify",
            StepVerdict::Respond => "respond",
            StepVerdict::Hold => "hold",
            StepVerdict::Failed(kind) => kind.as_str(),
        }
    }
}

/// One exchange's instances of the chain's plugins.
pub struct Session {
    chain: Arc<Chain>,
    /// Shared with the 0.2 instances, whose `context` reads it.
    meta: Arc<StreamMeta>,
    slots: Vec<Option<Instance>>,
    phase: Option<(Direction, StreamInfo)>,
    /// Largest event a `modify` may return (see [`Session::with_max_event_bytes`]).
    max_event_bytes: usize,
    /// `Some` when tracing: the steps of the events since the last `take_steps`.
    steps: Option<Vec<Step>>,
    /// When tracing, each event's steps of the last [`Session::on_events`] call, in
    /// its order: the first `event_steps_len` (the buffers are kept from call to call,
    /// also beyond a shorter batch, so a stream's batches allocate none).
    event_steps: Vec<Vec<Step>>,
    event_steps_len: usize,
    /// Plugin calls so far, for sampling the latency histogram.
    calls: u32,
}

impl Session {
    /// Refuses `modify` results larger than `limit` bytes (`id` + `event` + `data`), as
    /// the failure kind `oversized` under the plugin's failure policy. The proxy passes
    /// its `--max-event-bytes`, so that a plugin cannot send the client (or the
    /// upstream) an event the proxy would not have accepted from the other side.
    /// Without it there is no limit beyond the plugin's memory cap.
    pub fn with_max_event_bytes(mut self, limit: usize) -> Self {
        self.max_event_bytes = limit;
        self
    }

    /// Records a [`Step`] per plugin call (time and fuel included), for tapes and
    /// `sluice plugin test`. Off by default: the hot path reads no clock.
    pub fn traced(mut self) -> Self {
        self.steps = Some(Vec::new());
        self
    }

    /// The steps recorded since the last call (empty when not tracing).
    pub fn take_steps(&mut self) -> Vec<Step> {
        self.steps.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The steps recorded since the last [`Session::clear_steps`], without giving up
    /// the buffer (the recorder's per-event path: no allocation per event).
    pub fn steps(&self) -> &[Step] {
        self.steps.as_deref().unwrap_or_default()
    }

    /// When tracing, the steps of each event of the last [`Session::on_events`] call,
    /// in the order of its events (empty when not tracing).
    pub fn event_steps(&self) -> &[Vec<Step>] {
        &self.event_steps[..self.event_steps_len]
    }

    /// Forgets the recorded steps, keeping the buffer.
    pub fn clear_steps(&mut self) {
        if let Some(steps) = &mut self.steps {
            steps.clear();
        }
    }

    /// True when a plugin of the chain can hold a message going to the client (a 0.2
    /// plugin that wants some): a stream's events then go through the chain one at a
    /// time, so that those behind a held one wait.
    pub fn may_hold(&self) -> bool {
        self.chain.one_by_one
    }

    /// The direction of the phase under way, if one is.
    pub fn phase_direction(&self) -> Option<Direction> {
        self.phase.as_ref().map(|(d, _)| *d)
    }

    /// The stream this session belongs to.
    pub fn meta(&self) -> &StreamMeta {
        &self.meta
    }

    /// The chain this session runs: the one that was current when it started, even
    /// if a reload has replaced it since.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// Begins a phase (the request going to the server, or the response stream going
    /// to the client): ends the previous phase, then calls `on-stream-start` on every
    /// plugin that sees this direction, creating its instance if it has none.
    pub fn begin(&mut self, direction: Direction) {
        if self.chain.is_empty() {
            return;
        }
        self.end();
        self.phase = Some((direction, self.meta.to_wit(direction)));
        for index in 0..self.slots.len() {
            let plugin = self.chain.plugins[index].clone();
            if !applies(&plugin, direction) {
                continue;
            }
            // An instance kept from the previous phase of this exchange learns about
            // the new one; a new instance is told when it is created.
            if let (Some(instance), Some((_, info))) = (&mut self.slots[index], &self.phase)
                && let Err(failure) = instance.on_stream_start(info)
            {
                self.failed(index, &failure, "on-stream-start");
            }
            // A 0.2 plugin has no stream start to be told of: its instance is made
            // for the first message it wants (often none: most messages pass it).
            if plugin.world() == super::World::Plugin {
                continue;
            }
            // A failure here is logged and counted; the slot stays empty and the
            // first event retries (and then applies the failure policy).
            let _ = self.ensure_instance(index);
        }
    }

    /// Runs one event through the chain of the current phase.
    pub fn on_event(&mut self, event: Event) -> Outcome {
        self.walk(InFlight::new(event), 0)
    }

    /// Goes on with an event a plugin held ([`Outcome::Held`]) once its wait is over:
    /// the plugins from `resume` on see it, as if the holder had passed it.
    pub fn resume(&mut self, event: Event, resume: usize) -> Outcome {
        self.walk(InFlight::new(event), resume)
    }

    /// The event through plugins `from..` of the current phase.
    fn walk(&mut self, mut flight: InFlight, from: usize) -> Outcome {
        let Some((direction, _)) = &self.phase else {
            return Outcome::Forward(flight.into_event());
        };
        let direction = *direction;
        for index in from..self.slots.len() {
            let plugin = self.chain.plugins[index].clone();
            if !self.wants(&plugin, direction, &mut flight) {
                continue;
            }
            let (verdict, step) = self.event_call(index, &plugin, &mut flight);
            if let Some(steps) = &mut self.steps {
                steps.push(step);
            }
            let mut stopped = None;
            self.apply(index, &plugin, verdict, &mut flight, &mut stopped);
            if let Some(stop) = stopped {
                return stop.outcome(flight.into_event());
            }
        }
        Outcome::Forward(flight.into_event())
    }

    /// Whether `plugin` wants the event (its interest; a 0.1 filter wants only what
    /// goes to the client).
    fn wants(&self, plugin: &Plugin, direction: Direction, flight: &mut InFlight) -> bool {
        let interest = plugin.interest();
        if interest.wants_all(direction) {
            return true;
        }
        if !interest.wants_direction(direction) {
            return false;
        }
        let answers = match direction {
            Direction::ToClient => self.meta.rpc_method.as_deref(),
            Direction::ToServer => None,
        };
        interest.wants(direction, flight.facts(), answers)
    }

    /// One call of plugin `index` with the event in flight (unless the event is over
    /// the plugin's `max_message_bytes`), its result held to the proxy's rules (event
    /// size, message shape, where `respond` may answer), and the step it makes
    /// (recorded by the caller when tracing). For [`Session::on_event`] and the batch
    /// path's one-at-a-time calls alike.
    fn event_call(
        &mut self,
        index: usize,
        plugin: &Plugin,
        flight: &mut InFlight,
    ) -> (Result<Answer, CallFailure>, Step) {
        let direction = self.phase.as_ref().map_or(Direction::ToClient, |(d, _)| *d);
        let (verdict, measured) = match too_large(plugin, &flight.event) {
            Some(failure) => (Err(failure), Measured::default()),
            None => {
                let InFlight { event, facts, .. } = flight;
                self.timed_call(index, 1, |instance| instance.call(event, direction, facts))
            }
        };
        let limit = self.max_event_bytes;
        let verdict = verdict
            .and_then(|verdict| within_limit(verdict, limit))
            .and_then(|verdict| keeps_shape(direction, &flight.event, verdict))
            .and_then(|verdict| answerable(direction, flight, verdict));
        let mut step = measured.step(index, StepVerdict::of(&verdict));
        if self.steps.is_some() {
            step.output = output_digest(&verdict);
        }
        (verdict, step)
    }

    /// One call into plugin `index`'s instance (created first when its slot is
    /// empty), handing it `events` events: counted, and timed when sampled or traced.
    /// The latency histogram gets the call alone (divided among its events); a traced
    /// call's steps get its time with the instance's creation, and its fuel, divided
    /// likewise. Clock reads cost about a tenth of a small plugin's call: every call is
    /// timed only when tracing, otherwise one in `TIMING_SAMPLE` (the same ones when
    /// tracing). A failed creation is counted and logged in `ensure_instance`; `call`'s
    /// failure is the caller's to handle.
    fn timed_call<R>(
        &mut self,
        index: usize,
        events: usize,
        call: impl FnOnce(&mut Instance) -> Result<R, CallFailure>,
    ) -> (Result<R, CallFailure>, Measured) {
        let sampled = self.calls.is_multiple_of(TIMING_SAMPLE);
        let traced = self.steps.is_some();
        self.calls = self.calls.wrapping_add(1);
        let started = (sampled || traced).then(Instant::now);
        let created = self.slots[index].is_none();
        let (result, called, ended, fuel) = match self.ensure_instance(index) {
            Ok(instance) => {
                let called = if created && sampled {
                    Some(Instant::now())
                } else {
                    started
                };
                let result = call(instance);
                let ended = started.map(|_| Instant::now());
                (result, called, ended, traced.then(|| instance.fuel_used()))
            }
            Err(failure) => {
                let elapsed = started.filter(|_| traced).map(|s| s.elapsed());
                return (Err(failure), Measured::new(elapsed, None, 1));
            }
        };
        let metrics = &self.chain.metrics[index];
        metrics.calls(events as u64);
        let share = events.max(1) as u32;
        if sampled && let (Some(called), Some(ended)) = (called, ended) {
            metrics.call_time((ended - called) / share);
        }
        let elapsed = started.zip(ended).filter(|_| traced).map(|(s, e)| e - s);
        (result, Measured::new(elapsed, fuel, share))
    }

    /// What a verdict (or a failure) does to one event: counted, logged, the event
    /// replaced (`modify`) or marked as dropped. One place for `on_event` and the
    /// batch path (`batch`), so both count alike.
    fn apply(
        &mut self,
        index: usize,
        plugin: &Plugin,
        verdict: Result<Answer, CallFailure>,
        flight: &mut InFlight,
        stopped: &mut Option<Stop>,
    ) {
        match verdict {
            Ok(Answer::Pass) => {
                self.chain.metrics[index].pass();
            }
            Ok(Answer::Drop) => {
                self.chain.metrics[index].drop_();
                tracing::debug!(
                    plugin = plugin.name(),
                    stream = self.meta.stream_id,
                    "event dropped"
                );
                *stopped = Some(Stop::Dropped {
                    plugin: plugin.name_arc().clone(),
                    failure: None,
                });
            }
            Ok(Answer::Modify(new)) => {
                self.chain.metrics[index].modify();
                if convert::has_unsafe_field(&new) {
                    tracing::warn!(
                        plugin = plugin.name(),
                        stream = self.meta.stream_id,
                        "plugin returned a line break in `id` or `event`; removed before encoding"
                    );
                }
                flight.replace(new);
            }
            Ok(Answer::Respond(answer)) => {
                // Counted as the plugin's drop of the request (it goes no further);
                // the proxy counts the answer.
                self.chain.metrics[index].drop_();
                tracing::debug!(
                    plugin = plugin.name(),
                    stream = self.meta.stream_id,
                    "request answered by the plugin"
                );
                *stopped = Some(Stop::Answered {
                    plugin: plugin.name_arc().clone(),
                    answer,
                });
            }
            Ok(Answer::Hold(hold)) => {
                // The plugin's own figures count a hold with its passes (the message
                // goes on to the next plugin, or is dropped when its hold ends);
                // `sluice_plugin_holds_total` says how each hold ended.
                self.chain.metrics[index].pass();
                tracing::debug!(
                    plugin = plugin.name(),
                    stream = self.meta.stream_id,
                    approval = hold.approval,
                    timeout_ms = hold.timeout.as_millis() as u64,
                    "message held"
                );
                *stopped = Some(Stop::Held {
                    plugin: plugin.name_arc().clone(),
                    hold,
                    resume: index + 1,
                });
            }
            Err(failure) => {
                // A failed instantiation was counted and logged where it happened.
                if failure.kind != FailureKind::Instantiate {
                    let call = match plugin.world() {
                        super::World::Plugin => "on-message",
                        _ => "on-event",
                    };
                    self.failed(index, &failure, call);
                }
                if plugin.limits().failure == FailurePolicy::Closed {
                    *stopped = Some(Stop::Dropped {
                        plugin: plugin.name_arc().clone(),
                        failure: Some(failure.kind),
                    });
                }
            }
        }
    }

    /// Ends the current phase: `on-stream-end` on every live instance that saw it.
    pub fn end(&mut self) {
        let Some((direction, _)) = self.phase.take() else {
            return;
        };
        for index in 0..self.slots.len() {
            let plugin = self.chain.plugins[index].clone();
            if !applies(&plugin, direction) {
                continue;
            }
            if let Some(instance) = &mut self.slots[index]
                && let Err(failure) = instance.on_stream_end()
            {
                self.failed(index, &failure, "on-stream-end");
            }
        }
    }

    /// The instance of plugin `index`, created (and told about the current phase) if
    /// the slot is empty: at the start of a phase, or after a failure replaced it.
    fn ensure_instance(&mut self, index: usize) -> Result<&mut Instance, CallFailure> {
        if self.slots[index].is_none() {
            self.chain.metrics[index].instantiating();
            let powers = Powers {
                exchange: self.meta.clone(),
                headers: self.chain.plugins[index].granted_headers().clone(),
                store: self.chain.stores[index].clone(),
                counters: self.chain.counters[index].clone(),
            };
            let mut instance = self.chain.plugins[index]
                .instantiate(powers)
                .inspect_err(|failure| self.failed(index, failure, "instantiate"))?;
            if let Some((_, info)) = &self.phase
                && let Err(failure) = instance.on_stream_start(info)
            {
                self.failed(index, &failure, "on-stream-start");
                return Err(failure);
            }
            self.chain.metrics[index].instance_created();
            self.slots[index] = Some(instance);
        }
        Ok(self.slots[index].as_mut().expect("slot filled above"))
    }

    /// A failed call of plugin `index` (`call` names it in the log): the instance
    /// discarded when the failure leaves it untrustworthy, the failure counted and
    /// logged. Every failure of a plugin goes through here once.
    fn failed(&mut self, index: usize, failure: &CallFailure, call: &str) {
        if failure.kind.breaks_instance() {
            self.discard(index);
        }
        self.chain.metrics[index].failure(failure.kind);
        self.log_failure(index, failure, call);
    }

    /// Drops plugin `index`'s instance (after a failure); the next event gets a new one.
    fn discard(&mut self, index: usize) {
        if self.slots[index].take().is_some() {
            self.chain.metrics[index].instance_gone();
        }
    }

    fn log_failure(&self, index: usize, failure: &CallFailure, call: &str) {
        let plugin = &self.chain.plugins[index];
        let policy = match (plugin.limits().failure, failure.kind.breaks_instance()) {
            (FailurePolicy::Open, true) => "fail-open: event passed unchanged, instance replaced",
            (FailurePolicy::Open, false) => "fail-open: event passed unchanged",
            (FailurePolicy::Closed, true) => "fail-closed: event dropped, instance replaced",
            (FailurePolicy::Closed, false) => "fail-closed: event dropped",
        };
        tracing::warn!(
            plugin = plugin.name(),
            stream = self.meta.stream_id,
            call,
            kind = failure.kind.as_str(),
            "plugin failed: {}; {policy}",
            ErrorChain(failure)
        );
    }
}

impl Drop for Session {
    /// The exchange is over (or the client went away): its instances go, and the
    /// live-instances gauge says so.
    fn drop(&mut self) {
        for (slot, metrics) in self.slots.iter().zip(&self.chain.metrics) {
            if slot.is_some() {
                metrics.instance_gone();
            }
        }
    }
}

/// What [`Session::timed_call`] measured for the steps of one call: zero unless
/// tracing.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    /// Each event's share of the call's time.
    elapsed: Duration,
    /// Each event's share of the fuel the call consumed.
    fuel: u64,
}

impl Measured {
    fn new(elapsed: Option<Duration>, fuel: Option<u64>, events: u32) -> Self {
        Self {
            elapsed: elapsed.map_or(Duration::ZERO, |e| e / events),
            fuel: fuel.map_or(0, |f| f / u64::from(events)),
        }
    }

    /// The step of plugin `plugin` (its index) that answered `verdict`.
    fn step(self, plugin: usize, verdict: StepVerdict) -> Step {
        Step {
            plugin,
            verdict,
            elapsed: self.elapsed,
            fuel: self.fuel,
            output: None,
        }
    }
}

/// A loaded plugin's figures in a new chain: it was instantiated once already, to run
/// its `init` when it was loaded.
fn loaded(metrics: PluginMetrics) -> PluginMetrics {
    metrics.instantiating();
    metrics
}

/// A `modify` result larger than `limit` is refused as a failure (`oversized`) rather
/// than forwarded: the host has already copied it out of the plugin (bounded by the
/// plugin's memory cap), but the proxy never emits an event larger than it accepts.
fn within_limit(verdict: Answer, limit: usize) -> Result<Answer, CallFailure> {
    let (what, size) = match &verdict {
        Answer::Modify(new) => ("modify returned an event", convert::event_bytes(new)),
        Answer::Respond(Ok(result)) => ("respond returned a result", result.len()),
        Answer::Respond(Err(error)) => (
            "respond returned an error",
            error.message.len() + error.data.as_deref().map_or(0, str::len),
        ),
        _ => return Ok(verdict),
    };
    if size <= limit {
        return Ok(verdict);
    }
    Err(CallFailure::new(
        FailureKind::Oversized,
        format!("{what} of {size} bytes, over the {limit}-byte event limit (--max-event-bytes)"),
    ))
}

/// The failure of handing `event` to `plugin` when it is over the plugin's
/// `max_message_bytes`: decided before the call, so the plugin never sees it.
pub(super) fn too_large(plugin: &Plugin, event: &SseEvent) -> Option<CallFailure> {
    let limit = plugin.limits().max_message_bytes?;
    let size = convert::event_bytes(event);
    (size > limit).then(|| {
        CallFailure::new(
            FailureKind::TooLarge,
            format!(
                "the message is {}, over the plugin's max_message_bytes ({limit} bytes)",
                human_bytes(size)
            ),
        )
    })
}

/// A `modify` of a JSON-RPC message must give exactly one JSON object with distinct
/// member names (`shape`; going to the server, held to the client-message rule at
/// every depth, so a later plugin and the server read it alike); a `modify` of any other
/// JSON value must give exactly one JSON value. Either way a result cannot splice a
/// second message into a batch. Other events (SSE that is not JSON) may become any text.
/// Checked before the verdict is recorded, so traces show the refusal.
pub(super) fn keeps_shape(
    direction: Direction,
    before: &SseEvent,
    verdict: Answer,
) -> Result<Answer, CallFailure> {
    let Answer::Modify(after) = &verdict else {
        return Ok(verdict);
    };
    let malformed = |e: shape::ShapeError| {
        CallFailure::caused(
            FailureKind::Malformed,
            "modify turned a JSON-RPC message into something else",
            wasmtime::Error::new(e),
        )
    };
    if shape::looks_like_object(&before.data) {
        match direction {
            Direction::ToServer => shape::client_message(&after.data),
            Direction::ToClient => shape::one_object(&after.data, shape::Depth::Top),
        }
        .map_err(malformed)?;
    } else if serde_json::from_str::<serde::de::IgnoredAny>(&before.data).is_ok()
        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&after.data)
    {
        return Err(malformed(shape::ShapeError::NotJson(e.to_string())));
    }
    Ok(verdict)
}

/// `3.0 MB`, `512 KB`, `17 bytes`: sizes in messages people read.
pub fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 10_000 => format!("{} KB", n / 1000),
        n => format!("{n} bytes"),
    }
}

/// Whether `plugin` sees any event going `direction` (a 0.1 `filter` sees only what
/// goes to the client; a 0.2 plugin what its interest says).
fn applies(plugin: &Plugin, direction: Direction) -> bool {
    plugin.interest().wants_direction(direction)
}

/// A `respond` answers a client's request and nothing else, with JSON: its `ok` must
/// be one JSON value, its error's `data` too. Anything else is the plugin's failure
/// (kind `malformed`), under its failure policy.
fn answerable(
    direction: Direction,
    flight: &mut InFlight,
    verdict: Answer,
) -> Result<Answer, CallFailure> {
    let Answer::Respond(answer) = &verdict else {
        return Ok(verdict);
    };
    let malformed = |what: &'static str| Err(CallFailure::new(FailureKind::Malformed, what));
    if direction != Direction::ToServer || flight.facts().kind != MessageKind::Request {
        return malformed("respond answers a client's request only (kind request, to-server)");
    }
    let json = |text: &str| serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok();
    match answer {
        Ok(result) if !json(result) => malformed("respond's result is not one JSON value"),
        Err(RpcError {
            data: Some(data), ..
        }) if !json(data) => malformed("respond's error data is not one JSON value"),
        _ => Ok(verdict),
    }
}
