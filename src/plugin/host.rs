//! The host side of `sluice:plugin@0.2.0`'s imports: `message`, `log`, `context`,
//! `state`, `metrics` and `interest`, each answered from the instance's store data.

use wasmtime::component::Resource;

use super::bindings::Level as LevelV1;
use super::bindings::v2::sluice::plugin as wit;
use super::bindings::v2::{Direction, Identity, Kind, Message, StateError};
use super::convert;
use super::interest::Interest;
use super::message::{Facts, MessageKind};
use super::state::PluginState;
use super::store::StoreError;

/// The most methods a plugin's interest may name.
const MAX_METHODS: usize = 256;

impl PluginState {
    /// The message of the running call. A handle can only come from a call's argument,
    /// so outside a call there is none; a plugin that kept a borrowed handle past its
    /// call is refused by the engine before it gets here.
    fn message(&self) -> wasmtime::Result<&super::message::Current> {
        self.current
            .as_ref()
            .ok_or_else(|| wasmtime::Error::msg("message used outside on-message"))
    }
}

impl wit::types::HostMessage for PluginState {
    fn direction(&mut self, _: Resource<Message>) -> Direction {
        match self.current.as_ref().map(|c| c.direction) {
            Some(convert::Direction::ToServer) => Direction::ToServer,
            _ => Direction::ToClient,
        }
    }

    fn kind(&mut self, _: Resource<Message>) -> Kind {
        match self.current.as_ref().map(|c| c.facts().kind) {
            Some(MessageKind::Request) => Kind::Request,
            Some(MessageKind::Notification) => Kind::Notification,
            Some(MessageKind::Response) => Kind::Response,
            Some(MessageKind::Error) => Kind::Error,
            _ => Kind::Other,
        }
    }

    fn method(&mut self, _: Resource<Message>) -> Option<String> {
        let current = self.current.as_ref()?;
        let facts: &Facts = current.facts();
        match facts.kind {
            MessageKind::Request | MessageKind::Notification => facts.method.clone(),
            MessageKind::Response | MessageKind::Error
                if current.direction == convert::Direction::ToClient =>
            {
                self.powers.exchange.rpc_method.clone()
            }
            _ => None,
        }
    }

    fn rpc_id(&mut self, _: Resource<Message>) -> Option<String> {
        self.current.as_ref()?.facts().id.clone()
    }

    fn data(&mut self, _: Resource<Message>) -> String {
        self.message()
            .map(|c| c.event.data.clone())
            .unwrap_or_default()
    }

    fn sse_event(&mut self, _: Resource<Message>) -> Option<String> {
        self.current.as_ref()?.event.event.clone()
    }

    fn drop(&mut self, _: Resource<Message>) -> wasmtime::Result<()> {
        // The host lends only borrowed handles: nothing to free.
        Ok(())
    }
}

impl wit::types::Host for PluginState {}

impl wit::log::Host for PluginState {
    fn log(&mut self, level: wit::log::Level, message: String) {
        use wit::log::Level as L;
        let level = match level {
            L::Trace => LevelV1::Trace,
            L::Debug => LevelV1::Debug,
            L::Info => LevelV1::Info,
            L::Warn => LevelV1::Warn,
            L::Error => LevelV1::Error,
        };
        self.write_log(level, &message);
    }
}

impl wit::context::Host for PluginState {
    fn caller(&mut self) -> Option<Identity> {
        let identity = &self.powers.exchange.identity;
        let anonymous = identity.subject.is_none()
            && identity.client_id.is_none()
            && identity.scopes.is_empty()
            && identity.claims.is_empty();
        (!anonymous).then(|| Identity {
            subject: identity.subject.clone(),
            client_id: identity.client_id.clone(),
            scopes: identity.scopes.clone(),
            claims: identity
                .claims
                .iter()
                .map(|(name, value)| (name.clone(), value.to_string()))
                .collect(),
        })
    }

    fn stream_id(&mut self) -> u64 {
        self.powers.exchange.stream_id
    }

    fn route(&mut self) -> String {
        self.powers
            .exchange
            .route
            .as_deref()
            .unwrap_or("default")
            .to_string()
    }

    fn client_address(&mut self) -> Option<String> {
        self.powers
            .exchange
            .identity
            .client_addr
            .map(|a| a.to_string())
    }

    fn session_id(&mut self) -> Option<String> {
        self.powers.exchange.session_id.clone()
    }

    fn protocol_version(&mut self) -> Option<String> {
        self.powers.exchange.protocol_version.clone()
    }

    fn http_method(&mut self) -> String {
        self.powers.exchange.method.clone()
    }

    fn path(&mut self) -> String {
        self.powers.exchange.path.clone()
    }

    fn rpc_method(&mut self) -> Option<String> {
        self.powers.exchange.rpc_method.clone()
    }

    fn header(&mut self, name: String) -> Option<String> {
        let name = name.to_ascii_lowercase();
        if !self.powers.headers.contains(&name) {
            return None;
        }
        let values: Vec<&str> = self
            .powers
            .exchange
            .headers
            .0
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

impl wit::state::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.powers.store.get(&key)
    }

    fn set(&mut self, key: String, value: String, ttl_ms: u64) -> Result<(), StateError> {
        self.powers
            .store
            .set(&key, value, ttl_ms)
            .map_err(state_error)
    }

    fn remove(&mut self, key: String) {
        self.powers.store.remove(&key);
    }

    fn add(&mut self, key: String, delta: i64, ttl_ms: u64) -> Result<i64, StateError> {
        self.powers
            .store
            .add(&key, delta, ttl_ms)
            .map_err(state_error)
    }
}

fn state_error(e: StoreError) -> StateError {
    match e {
        StoreError::TooLarge => StateError::TooLarge,
        StoreError::Full => StateError::Full,
    }
}

impl wit::metrics::Host for PluginState {
    fn add(&mut self, name: String, label: String, delta: u64) {
        self.powers.counters.add(&name, &label, delta);
    }
}

impl wit::interest::Host for PluginState {
    fn directions(&mut self, to_server: bool, to_client: bool) {
        let interest = self.interest.get_or_insert_with(Interest::default);
        interest.to_server = to_server;
        interest.to_client = to_client;
    }

    fn methods(&mut self, names: Vec<String>) {
        // Bounded: a plugin's list is read for every message. What is over the bound
        // is said, not silently lost: a guard would miss those methods.
        if names.len() > MAX_METHODS {
            tracing::warn!(
                plugin = %self.plugin,
                declared = names.len(),
                "interest.methods: only the first {MAX_METHODS} methods are kept"
            );
        }
        let names = names.into_iter().take(MAX_METHODS).collect();
        self.interest.get_or_insert_with(Interest::default).methods = Some(names);
    }
}
