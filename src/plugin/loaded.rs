//! A plugin compiled, checked against the contract, and ready to be instantiated.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{
    Component, ComponentExportIndex, Func, InstancePre, Resource, TypedFunc,
};
use wasmtime::{Store, Trap};

use super::bindings::{SseEvent, StreamInfo, Verdict, v2};
use super::cache::{self, CacheStatus, Compiled};
use super::capabilities::Capabilities;
use super::contract::{self, Contract, PublishedStreamInfo};
use super::convert::{self, Direction};
use super::error::PluginError;
use super::interest::Interest;
use super::message::{Current, Facts};
use super::runtime::Runtime;
use super::state::{PluginState, Powers};
use super::store::StateLimits;
use super::wasi::{self, WasiState};
use crate::failure::FailureKind;

/// The least time the trial instance of [`Plugin::load`] gets for instantiation and
/// `init` (see there).
const LOAD_DEADLINE: Duration = Duration::from_secs(1);

/// What the proxy does with an event when a plugin fails on it.
///
/// Closed by default: a plugin is a guard, and a guard that lets through whatever makes
/// it fail can be bypassed by anyone who can make it fail (a 3 MB `tools/call` that runs
/// a Python filter out of memory used to reach the server unexamined). Open is the
/// operator's explicit choice for observers (an audit log, metrics) whose failure must
/// not cost availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Pass the event on as if the plugin had answered `pass` (availability first).
    Open,
    /// Drop the event as if the plugin had answered `drop` (safety first: a broken
    /// redactor must not leak what it was meant to hide); a dropped request is answered
    /// with a JSON-RPC error that names the plugin and the failure.
    #[default]
    Closed,
}

/// The sandbox of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Time budget of one call (`init`, `on-event`, ...), enforced by epoch
    /// interruption: once it has passed, the call is cut when it has also used half of
    /// it again in CPU time, so a call waiting for a core on a busy machine is not cut
    /// (`plugin::deadline`).
    pub deadline: Duration,
    /// Largest linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// What happens to an event the plugin failed on.
    pub failure: FailurePolicy,
    /// Fuel (wasmtime instruction budget) of one call, on top of the deadline: a
    /// deterministic bound that does not depend on machine load. `None`: no fuel limit.
    pub fuel: Option<u64>,
    /// Largest event (`id` + `event` + `data` bytes) handed to the plugin. A larger one
    /// is not passed in at all: it is a failure of kind `too_large` under the failure
    /// policy, decided before the call, so an operator who knows what a plugin can
    /// digest in its memory and deadline does not depend on how it fails past that.
    /// `None`: every event the proxy accepts (`--max-event-bytes`).
    pub max_message_bytes: Option<usize>,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(10),
            memory_bytes: 16 << 20,
            failure: FailurePolicy::Closed,
            fuel: None,
            max_message_bytes: None,
        }
    }
}

/// Where a plugin's bytes come from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A `.wasm` component on disk.
    File(PathBuf),
    /// A component built into the binary (the demo plugin, test fixtures).
    Bytes(&'static [u8]),
}

/// Everything needed to load one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Name used in logs, errors and JSON-RPC errors sent to clients.
    pub name: String,
    /// The component.
    pub source: PluginSource,
    /// Handed to `init` on every new instance.
    pub config: String,
    /// The sandbox.
    pub limits: PluginLimits,
    /// What the plugin may reach beyond the sluice contract (nothing by default); each
    /// grant is named in the configuration so that it is visible and logged.
    pub capabilities: Capabilities,
    /// What the powers of a 0.2 plugin may use (granted headers, the state store's
    /// bounds).
    pub powers: PowerGrants,
}

/// The operator's settings for a 0.2 plugin's powers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerGrants {
    /// Request headers the plugin may read (`context.header`), lower-case. None by
    /// default; `Authorization` and `Cookie` only when named here.
    pub headers: Vec<String>,
    /// The bounds of the plugin's state store.
    pub state: StateLimits,
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// 0.1: `on-event` only; sees events going to the client.
    Filter,
    /// 0.1: `init`, `on-stream-start`, `on-event`, `on-stream-end`; sees both directions.
    Interceptor,
    /// 0.2: `init` and `on-message`; sees what its declared interest says.
    Plugin,
}

impl World {
    /// The WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Filter => "filter",
            World::Interceptor => "interceptor",
            World::Plugin => "plugin",
        }
    }
}

/// Export indices resolved once per component so that instances skip name lookups.
enum Exports {
    /// `sluice:plugin@0.1.0` (either shape).
    V1 {
        on_event: ComponentExportIndex,
        /// The optional batch call of the `batch-*` worlds.
        on_events: Option<ComponentExportIndex>,
        lifecycle: Option<Lifecycle>,
    },
    /// `sluice:plugin@0.2.0`: the functions of `handler`.
    V2 {
        init: ComponentExportIndex,
        on_message: ComponentExportIndex,
    },
}

struct Lifecycle {
    init: ComponentExportIndex,
    start: ComponentExportIndex,
    end: ComponentExportIndex,
}

/// A compiled plugin. Cheap to share: every stream instantiates it afresh.
pub struct Plugin {
    name: Arc<str>,
    world: World,
    contract: Contract,
    /// Which messages it wants (0.2's `interest`; for 0.1, by world).
    interest: Interest,
    powers: PowerGrants,
    /// `powers.headers`, shared with every instance.
    granted_headers: Arc<[String]>,
    pre: InstancePre<PluginState>,
    exports: Exports,
    config: String,
    limits: PluginLimits,
    deadline_ticks: u64,
    /// Fuel each call starts with: the limit, or `u64::MAX` when there is none.
    fuel: u64,
    /// The capabilities, when any are granted: then the plugin is linked with WASI and
    /// every instance gets a `WasiCtx` holding exactly these.
    grants: Option<Capabilities>,
    compile_time: Duration,
    cache: CacheStatus,
    path: Option<PathBuf>,
    /// The hex SHA-256 of the component's bytes ([`Plugin::load`]): which build of the
    /// plugin judged a message, as tapes record it.
    component_sha256: Option<Arc<str>>,
    _runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("world", &self.world)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Compiles the component, checks it implements `filter` or `interceptor` and that
    /// the host can satisfy its imports, then instantiates it once and runs `init` with
    /// the configuration, so that a bad plugin or a bad configuration is refused at load
    /// time rather than on the first stream.
    pub fn load(runtime: &Arc<Runtime>, spec: PluginSpec) -> Result<Self, PluginError> {
        let name = spec.name.clone();
        let bytes: std::borrow::Cow<'static, [u8]> = match &spec.source {
            PluginSource::File(path) => std::fs::read(path)
                .map_err(|source| PluginError::Read {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?
                .into(),
            PluginSource::Bytes(bytes) => (*bytes).into(),
        };
        if is_core_module(&bytes) {
            return Err(PluginError::CoreModule { name });
        }
        let compiled = cache::compile(runtime.engine(), runtime.cache(), &name, &bytes)?;
        let mut plugin = Self::from_compiled(runtime, spec, compiled)?;
        plugin.component_sha256 = Some(cache::sha256_hex(&bytes).into());
        Ok(plugin)
    }

    /// The checks and the trial `init` of [`Plugin::load`], for a component already
    /// compiled: `sluice plugin check` times the compilation itself and reports each
    /// step before this one.
    pub(crate) fn from_compiled(
        runtime: &Arc<Runtime>,
        spec: PluginSpec,
        compiled: Compiled,
    ) -> Result<Self, PluginError> {
        let name = spec.name.clone();
        let Compiled {
            component,
            cache,
            elapsed: compile_time,
        } = compiled;
        let contract = contract::detect(&component, runtime.engine());
        let exports = resolve_exports(&component, &name, contract)?;
        // No capability: the linker without WASI, and a WASI import is named as such
        // (rather than as a generic missing import) with how to grant it.
        let grants = (!spec.capabilities.is_empty()).then(|| spec.capabilities.clone());
        let linker = match &grants {
            None => {
                let imports = wasi::imports(&component, runtime.engine());
                if !imports.is_empty() {
                    return Err(PluginError::WasiNotGranted { name, imports });
                }
                runtime.linker()
            }
            Some(grants) => {
                // Checked once here so that a missing directory is a load error.
                WasiState::new(grants).map_err(|source| PluginError::Capability {
                    name: name.clone(),
                    source,
                })?;
                runtime.wasi_linker()?
            }
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|source| PluginError::Imports {
                name: name.clone(),
                source,
            })?;
        let world = match &exports {
            Exports::V2 { .. } => World::Plugin,
            Exports::V1 {
                lifecycle: Some(_), ..
            } => World::Interceptor,
            Exports::V1 { .. } => World::Filter,
        };
        let mut plugin = Self {
            name: name.clone().into(),
            world,
            contract,
            interest: Interest {
                to_server: world != World::Filter,
                ..Interest::default()
            },
            granted_headers: spec
                .powers
                .headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            powers: spec.powers,
            pre,
            exports,
            config: spec.config,
            limits: spec.limits,
            deadline_ticks: Runtime::ticks(spec.limits.deadline),
            fuel: spec.limits.fuel.unwrap_or(u64::MAX),
            grants,
            compile_time,
            cache,
            path: match &spec.source {
                PluginSource::File(path) => Some(path.clone()),
                PluginSource::Bytes(_) => None,
            },
            component_sha256: None,
            _runtime: runtime.clone(),
        };
        // The trial instance proves the component and its configuration work; a busy
        // machine at start-up (a deploy, CI) must not turn a healthy plugin into a
        // refused one, so it gets at least LOAD_DEADLINE. An `init` that loops is
        // still refused, a little later.
        let trial_ticks = plugin.deadline_ticks.max(Runtime::ticks(LOAD_DEADLINE));
        let trial = plugin
            .instantiate_within(Powers::detached(&name), trial_ticks)
            .map_err(|source| PluginError::Init {
                name: name.clone(),
                source,
            })?;
        // What the first `init` declared is the plugin's interest (0.2).
        if let Some(interest) = trial.store.into_data().interest {
            plugin.interest = interest;
        }
        tracing::info!(
            plugin = %plugin.name,
            contract = contract.as_str(),
            world = world.as_str(),
            cache = cache.as_str(),
            compile_ms = %format_args!("{:.2}", compile_time.as_secs_f64() * 1e3),
            "plugin loaded"
        );
        if let Some(grants) = &plugin.grants {
            tracing::info!(
                plugin = %plugin.name,
                "plugin {} granted: {}",
                plugin.name,
                wasi::describe(grants)
            );
        }
        Ok(plugin)
    }

    /// The name used in logs and in errors sent to clients.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The world the component implements.
    pub fn world(&self) -> World {
        self.world
    }

    /// True when the plugin exports `on-events` (a `batch-*` world): the chain then
    /// hands it events that arrived together in one call.
    pub fn batches(&self) -> bool {
        matches!(
            self.exports,
            Exports::V1 {
                on_events: Some(_),
                ..
            }
        )
    }

    /// The contract version the component implements.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// The messages the plugin wants (what a 0.2 plugin declared; a 0.1 filter wants
    /// what goes to the client, an interceptor everything).
    pub fn interest(&self) -> &Interest {
        &self.interest
    }

    /// What the operator granted its powers.
    pub fn powers(&self) -> &PowerGrants {
        &self.powers
    }

    /// The request headers it may read, lower-case.
    pub(crate) fn granted_headers(&self) -> &Arc<[String]> {
        &self.granted_headers
    }

    /// The sandbox the plugin runs in.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// The file the plugin was loaded from (none for built-in plugins): what the
    /// reload watcher watches.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// How long getting the compiled component took: compiling it, or on a compile
    /// cache hit, reading and deserialising it.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Whether the compiled component came from the compile cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache
    }

    /// The hex SHA-256 of the component's bytes, when loaded by [`Plugin::load`]: tapes
    /// record it, so a replay knows whether the same build judged a message.
    pub fn component_sha256(&self) -> Option<&Arc<str>> {
        self.component_sha256.as_ref()
    }

    /// Creates a fresh instance for one exchange and runs `init` on it.
    pub(crate) fn instantiate(&self, powers: Powers) -> Result<Instance, CallFailure> {
        self.instantiate_within(powers, self.deadline_ticks)
    }

    /// Like [`Plugin::instantiate`], with `ticks` as the deadline of instantiation and
    /// `init` (the instance's calls get the plugin's deadline as always).
    fn instantiate_within(&self, powers: Powers, ticks: u64) -> Result<Instance, CallFailure> {
        if self.grants.is_some() {
            // Instantiation and `init` may already call WASI (see `wasi::outside_async`).
            wasi::outside_async(|| self.instantiate_here(powers, ticks))
        } else {
            self.instantiate_here(powers, ticks)
        }
    }

    fn instantiate_here(&self, powers: Powers, ticks: u64) -> Result<Instance, CallFailure> {
        let mut state = PluginState::new(self.name.clone(), powers, self.limits.memory_bytes);
        if let Some(grants) = &self.grants {
            let wasi = WasiState::new(grants).map_err(|e| {
                CallFailure::caused(FailureKind::Instantiate, "", wasmtime::Error::new(e))
            })?;
            state.wasi = Some(Box::new(wasi));
        }
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().deadline.decide());
        arm_deadline(&mut store, ticks);
        store
            .set_fuel(self.fuel)
            .expect("the engine consumes fuel (Runtime::with_cache)");
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallFailure::caused(FailureKind::Instantiate, "", e))?;
        let contract = |e: wasmtime::Error| {
            CallFailure::caused(
                FailureKind::Instantiate,
                format!("export does not match {}", self.contract.as_str()),
                e,
            )
        };
        let (calls, init) = match &self.exports {
            Exports::V1 {
                on_event,
                on_events,
                lifecycle,
            } => {
                let on_event = *instance
                    .get_typed_func::<(&SseEvent,), (Verdict,)>(&mut store, on_event)
                    .map_err(contract)?
                    .func();
                let on_events = match on_events {
                    Some(index) => Some(
                        *instance
                            .get_typed_func::<(&[SseEvent],), (Vec<Verdict>,)>(&mut store, index)
                            .map_err(contract)?
                            .func(),
                    ),
                    None => None,
                };
                let mut init = None;
                let mut instance_lifecycle = None;
                if let Some(exports) = lifecycle {
                    init = Some(
                        instance
                            .get_typed_func::<(&str,), (Result<(), String>,)>(
                                &mut store,
                                &exports.init,
                            )
                            .map_err(contract)?,
                    );
                    let start = if self.contract == Contract::V0_1Published {
                        *instance
                            .get_typed_func::<(&PublishedStreamInfo,), ()>(
                                &mut store,
                                &exports.start,
                            )
                            .map_err(contract)?
                            .func()
                    } else {
                        *instance
                            .get_typed_func::<(&StreamInfo,), ()>(&mut store, &exports.start)
                            .map_err(contract)?
                            .func()
                    };
                    let end = *instance
                        .get_typed_func::<(), ()>(&mut store, &exports.end)
                        .map_err(contract)?
                        .func();
                    instance_lifecycle = Some(InstanceLifecycle { start, end });
                }
                let calls = Calls::V1 {
                    on_event,
                    on_events,
                    lifecycle: instance_lifecycle,
                    published: self.contract == Contract::V0_1Published,
                };
                (calls, init)
            }
            Exports::V2 { init, on_message } => {
                let init = instance
                    .get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, init)
                    .map_err(contract)?;
                let on_message = *instance
                    .get_typed_func::<(Resource<v2::Message>,), (v2::Verdict,)>(
                        &mut store, on_message,
                    )
                    .map_err(contract)?
                    .func();
                (Calls::V2 { on_message }, Some(init))
            }
        };
        if let Some(init) = init {
            arm_deadline(&mut store, ticks);
            store
                .set_fuel(self.fuel)
                .expect("the engine consumes fuel (Runtime::with_cache)");
            store.data_mut().memory_denied = false;
            match init.call(&mut store, (self.config.as_str(),)) {
                Ok((Ok(()),)) => {}
                Ok((Err(reason),)) => {
                    return Err(CallFailure::new(
                        FailureKind::Instantiate,
                        format!("init refused the configuration: {reason}"),
                    ));
                }
                Err(e) => {
                    let failure = CallFailure::from_call(e, store.data());
                    let what = match failure.what.as_ref() {
                        "" => format!("init failed ({})", failure.kind.as_str()),
                        what => format!("init failed ({}): {what}", failure.kind.as_str()),
                    };
                    return Err(CallFailure {
                        kind: FailureKind::Instantiate,
                        what: what.into(),
                        source: failure.source,
                    });
                }
            }
        }
        Ok(Instance {
            store,
            calls,
            deadline_ticks: self.deadline_ticks,
            fuel: self.fuel,
            wasi: self.grants.is_some(),
        })
    }
}

/// Starts a call's deadline: `ticks` epochs until the store's callback first looks at
/// how much CPU the call used (see `plugin::deadline`).
fn arm_deadline(store: &mut Store<PluginState>, ticks: u64) {
    let ticks = store.data_mut().deadline.arm(ticks);
    store.set_epoch_deadline(ticks);
}

/// One live instance of a plugin, owned by one stream.
pub(crate) struct Instance {
    store: Store<PluginState>,
    calls: Calls,
    deadline_ticks: u64,
    fuel: u64,
    /// Linked with WASI: calls run outside the async context (`wasi::outside_async`).
    wasi: bool,
}

struct InstanceLifecycle {
    start: Func,
    end: Func,
}

/// The functions of an instance, by contract version.
enum Calls {
    V1 {
        on_event: Func,
        on_events: Option<Func>,
        lifecycle: Option<InstanceLifecycle>,
        /// `on-stream-start` takes the six-field `stream-info` of the published 0.1.0.
        published: bool,
    },
    V2 {
        on_message: Func,
    },
}

/// A plugin's answer for one message, whatever its contract version: what the chain
/// acts on.
#[derive(Debug)]
pub(crate) enum Answer {
    Pass,
    Drop,
    Modify(SseEvent),
    Respond(Result<String, RpcError>),
    Hold(HoldSpec),
}

impl From<Verdict> for Answer {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Pass => Answer::Pass,
            Verdict::Drop => Answer::Drop,
            Verdict::Modify(event) => Answer::Modify(event),
        }
    }
}

/// A JSON-RPC error a plugin answered a request with (`respond`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// The message.
    pub message: String,
    /// The `data` member, as JSON text.
    pub data: Option<String>,
}

/// The longest a message may be held, whatever a plugin asks.
pub const MAX_HOLD: Duration = Duration::from_secs(600);

/// A plugin's `hold`, as the proxy carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSpec {
    /// How long at most (capped at [`MAX_HOLD`]).
    pub timeout: Duration,
    /// Wait for a decision from the admin API; otherwise a plain delay.
    pub approval: bool,
    /// Shown to whoever decides.
    pub reason: String,
    /// An approval hold that times out drops the message (else it goes on).
    pub drop_on_timeout: bool,
}

impl Answer {
    /// A 0.2 verdict about `event` (a `modify` keeps the event's SSE fields).
    fn from_v2(verdict: v2::Verdict, event: &SseEvent) -> Self {
        match verdict {
            v2::Verdict::Pass => Answer::Pass,
            v2::Verdict::Drop => Answer::Drop,
            v2::Verdict::Modify(data) => Answer::Modify(SseEvent {
                id: event.id.clone(),
                event: event.event.clone(),
                data,
                retry: event.retry,
            }),
            v2::Verdict::Respond(answer) => Answer::Respond(answer.map_err(|e| RpcError {
                code: e.code,
                message: e.message,
                data: e.data,
            })),
            v2::Verdict::Hold(hold) => Answer::Hold(HoldSpec {
                timeout: Duration::from_millis(hold.timeout_ms).min(MAX_HOLD),
                approval: hold.approval,
                reason: super::state::truncate(&hold.reason, 1024).to_string(),
                drop_on_timeout: matches!(hold.on_timeout, v2::OnTimeout::Drop),
            }),
        }
    }
}

/// A failed call (or instantiation), classified for the failure policy, logs and
/// metrics: what happened in the host's words, and the error beneath it (wasmtime's,
/// or a rule's) as its source.
#[derive(Debug)]
pub struct CallFailure {
    pub(crate) kind: FailureKind,
    /// Empty when the source says it all (a trap).
    what: Cow<'static, str>,
    source: Option<wasmtime::Error>,
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        match (&self.source, self.what.is_empty()) {
            (Some(source), true) => write!(f, "{source}"),
            (Some(source), false) => write!(f, ": {source}"),
            (None, _) => Ok(()),
        }
    }
}

impl std::error::Error for CallFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl CallFailure {
    /// A failure the host decided on (a limit, a rule), with nothing beneath it.
    pub(crate) fn new(kind: FailureKind, what: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            what: what.into(),
            source: None,
        }
    }

    /// A failure caused by `source`.
    pub(crate) fn caused(
        kind: FailureKind,
        what: impl Into<Cow<'static, str>>,
        source: wasmtime::Error,
    ) -> Self {
        Self {
            kind,
            what: what.into(),
            source: Some(source),
        }
    }

    fn from_call(err: wasmtime::Error, state: &PluginState) -> Self {
        let kind = if state.memory_denied {
            FailureKind::OutOfMemory
        } else {
            match err.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => FailureKind::Deadline,
                Some(Trap::OutOfFuel) => FailureKind::Fuel,
                _ => FailureKind::Trap,
            }
        };
        match kind {
            // The trap says no more than this (and a backtrace).
            FailureKind::Deadline => {
                Self::new(kind, "call ran past its deadline and was interrupted")
            }
            FailureKind::Fuel => Self::new(kind, "call used up its fuel and was stopped"),
            FailureKind::OutOfMemory => Self::caused(kind, "memory cap reached", err),
            _ => Self::caused(kind, "", err),
        }
    }
}

impl Instance {
    /// Runs one guest call on the store with fresh per-call budgets (deadline, fuel,
    /// memory-denied flag): here, or for a WASI-linked instance outside the async
    /// context (see `wasi::outside_async`). The budgets are set on the thread that
    /// makes the call, so starting that thread is not charged to the plugin.
    fn run<R: Send>(&mut self, call: impl FnOnce(&mut Store<PluginState>) -> R + Send) -> R {
        self.run_for(1, call)
    }

    /// [`Instance::run`] with the deadline of `events` calls (a batch).
    fn run_for<R: Send>(
        &mut self,
        events: u64,
        call: impl FnOnce(&mut Store<PluginState>) -> R + Send,
    ) -> R {
        let (ticks, fuel) = (self.deadline_ticks.saturating_mul(events.max(1)), self.fuel);
        let armed = move |store: &mut Store<PluginState>| {
            arm_deadline(store, ticks);
            store
                .set_fuel(fuel)
                .expect("the engine consumes fuel (Runtime::with_cache)");
            store.data_mut().memory_denied = false;
            call(store)
        };
        if self.wasi {
            let store = &mut self.store;
            wasi::outside_async(move || armed(store))
        } else {
            armed(&mut self.store)
        }
    }

    /// Hands one message to the plugin (`on-event` of 0.1, `on-message` of 0.2) and
    /// returns its answer. A 0.2 plugin gets the message as a borrowed handle: the
    /// event is moved into the store for the call and back after it, so nothing is
    /// copied unless the plugin reads it; `facts` are the message's JSON-RPC facts when
    /// known, and come back filled when the plugin read them.
    pub(crate) fn call(
        &mut self,
        event: &mut SseEvent,
        direction: Direction,
        facts: &mut Option<Facts>,
    ) -> Result<Answer, CallFailure> {
        match &self.calls {
            Calls::V1 { on_event, .. } => {
                // SAFETY: `on_event` was obtained through `get_typed_func::<(&SseEvent,),
                // (Verdict,)>` when the instance was created, which type-checked exactly
                // these parameter and result types (lifetimes aside, which do not exist
                // at the component level). Skipping the per-call check keeps a call near
                // a microsecond.
                let typed =
                    unsafe { TypedFunc::<(&SseEvent,), (Verdict,)>::new_unchecked(*on_event) };
                let event = &*event;
                match self.run(|store| typed.call(store, (event,))) {
                    Ok((verdict,)) => Ok(verdict.into()),
                    Err(e) => Err(CallFailure::from_call(e, self.store.data())),
                }
            }
            Calls::V2 { on_message } => {
                // SAFETY: as above: `on_message` was type-checked as exactly this
                // signature by `get_typed_func` when the instance was created.
                let typed = unsafe {
                    TypedFunc::<(Resource<v2::Message>,), (v2::Verdict,)>::new_unchecked(
                        *on_message,
                    )
                };
                let lent = std::mem::replace(event, convert::empty_event());
                self.store.data_mut().current = Some(Current::new(lent, direction, facts.take()));
                // The host lends the handle; its number means nothing (one message per
                // call, kept in the store).
                let handle = Resource::new_borrow(0);
                let result = self.run(|store| typed.call(store, (handle,)));
                if let Some(current) = self.store.data_mut().current.take() {
                    let (back, read) = current.into_parts();
                    *event = back;
                    *facts = read;
                }
                match result {
                    Ok((verdict,)) => Ok(Answer::from_v2(verdict, event)),
                    Err(e) => Err(CallFailure::from_call(e, self.store.data())),
                }
            }
        }
    }

    /// Calls `on-events` (the `batch-*` worlds) on `events`. A result with another
    /// number of verdicts than events is a failure of the call (kind `trap`): the
    /// contract says one verdict per event.
    pub(crate) fn on_events(&mut self, events: &[SseEvent]) -> Result<Vec<Verdict>, CallFailure> {
        let Calls::V1 {
            on_events: Some(func),
            ..
        } = &self.calls
        else {
            unreachable!("the chain batches only plugins that export on-events (Plugin::batches)")
        };
        let func = *func;
        // SAFETY: as in `on_event`: `func` was type-checked as exactly this signature
        // by `get_typed_func` when the instance was created.
        let typed = unsafe { TypedFunc::<(&[SseEvent],), (Vec<Verdict>,)>::new_unchecked(func) };
        let n = events.len();
        match self.run_for(n as u64, |store| typed.call(store, (events,))) {
            Ok((verdicts,)) if verdicts.len() == n => Ok(verdicts),
            Ok((verdicts,)) => Err(CallFailure::new(
                FailureKind::Trap,
                format!(
                    "on-events returned {} verdicts for {n} events (one per event, in order)",
                    verdicts.len()
                ),
            )),
            Err(e) => Err(CallFailure::from_call(e, self.store.data())),
        }
    }

    /// Fuel the last call consumed (the budget is reset before every call).
    pub(crate) fn fuel_used(&self) -> u64 {
        self.fuel.saturating_sub(self.store.get_fuel().unwrap_or(0))
    }

    /// Calls `on-stream-start` (0.1 interceptors only), with the record of the
    /// plugin's shape of 0.1.0.
    pub(crate) fn on_stream_start(&mut self, info: &StreamInfo) -> Result<(), CallFailure> {
        let Calls::V1 {
            lifecycle: Some(lifecycle),
            published,
            ..
        } = &self.calls
        else {
            return Ok(());
        };
        let (start, published) = (lifecycle.start, *published);
        let mismatch = |e| {
            CallFailure::caused(
                FailureKind::Trap,
                "export does not match sluice:plugin@0.1.0",
                e,
            )
        };
        let result = if published {
            let typed = start
                .typed::<(&PublishedStreamInfo,), ()>(&self.store)
                .map_err(mismatch)?;
            let info = PublishedStreamInfo::from(info);
            self.run(|store| typed.call(store, (&info,)))
        } else {
            let typed = start
                .typed::<(&StreamInfo,), ()>(&self.store)
                .map_err(mismatch)?;
            self.run(|store| typed.call(store, (info,)))
        };
        result.map_err(|e| CallFailure::from_call(e, self.store.data()))
    }

    /// Calls `on-stream-end` (0.1 interceptors only).
    pub(crate) fn on_stream_end(&mut self) -> Result<(), CallFailure> {
        let Calls::V1 {
            lifecycle: Some(lifecycle),
            ..
        } = &self.calls
        else {
            return Ok(());
        };
        let end = lifecycle.end;
        let typed = end.typed::<(), ()>(&self.store).map_err(|e| {
            CallFailure::caused(
                FailureKind::Trap,
                "export does not match sluice:plugin@0.1.0",
                e,
            )
        })?;
        self.run(|store| typed.call(store, ()))
            .map_err(|e| CallFailure::from_call(e, self.store.data()))
    }
}

/// A core module starts with the magic number and version 1; a component has a
/// different version/layer field.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// How a component fails the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// Neither 0.2's `handler` nor 0.1's `on-event`.
    #[error(
        "exports neither sluice:plugin/handler@0.2.0 nor `on-event`: not a sluice plugin \
         (build it against wit/plugin.wit, world `plugin`)"
    )]
    NoOnEvent,
    /// 0.2's `handler` without one of its functions.
    #[error("exports sluice:plugin/handler@0.2.0 without `{function}`")]
    NoHandlerFunction {
        /// The missing function.
        function: &'static str,
    },
    /// Some of the interceptor world's exports, not all.
    #[error(
        "exports part of the interceptor world but not {}: export all of init, \
         on-stream-start and on-stream-end, or none (filter world)",
        missing.join(", ")
    )]
    PartialInterceptor {
        /// The exports it lacks.
        missing: Vec<&'static str>,
    },
}

fn resolve_exports(
    component: &Component,
    name: &str,
    contract: Contract,
) -> Result<Exports, PluginError> {
    let fail = |problem| PluginError::Contract {
        name: name.to_string(),
        problem,
    };
    if contract == Contract::V0_2 {
        let handler = component.get_export_index(None, contract::HANDLER_V0_2);
        let export = |f: &'static str| {
            handler
                .as_ref()
                .and_then(|h| component.get_export_index(Some(h), f))
                .ok_or(fail(ContractError::NoHandlerFunction { function: f }))
        };
        return Ok(Exports::V2 {
            init: export("init")?,
            on_message: export("on-message")?,
        });
    }
    let on_event = component
        .get_export_index(None, "on-event")
        .ok_or_else(|| fail(ContractError::NoOnEvent))?;
    let init = component.get_export_index(None, "init");
    let start = component.get_export_index(None, "on-stream-start");
    let end = component.get_export_index(None, "on-stream-end");
    let lifecycle = match (init, start, end) {
        (Some(init), Some(start), Some(end)) => Some(Lifecycle { init, start, end }),
        (None, None, None) => None,
        (init, start, end) => {
            let missing: Vec<&'static str> = [
                ("init", init.is_none()),
                ("on-stream-start", start.is_none()),
                ("on-stream-end", end.is_none()),
            ]
            .into_iter()
            .filter_map(|(n, missing)| missing.then_some(n))
            .collect();
            return Err(fail(ContractError::PartialInterceptor { missing }));
        }
    };
    let on_events = component.get_export_index(None, "on-events");
    Ok(Exports::V1 {
        on_event,
        on_events,
        lifecycle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
        assert!(!is_core_module(b"\0as"));
    }
}
