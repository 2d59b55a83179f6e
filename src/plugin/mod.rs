//! The WebAssembly side: loading plugins into a sandbox and running events through them.
//!
//! `runtime` owns the one engine and its epoch clock; `loaded` turns a component into a
//! checked [`Plugin`]; `chain` runs an exchange's events through fresh instances of every
//! plugin in order. Generated WIT types stay inside `bindings` and `convert`.

mod bindings;
pub mod builtin;
mod cache;
mod capabilities;
mod chain;
mod contract;
mod convert;
mod deadline;
mod error;
mod host;
mod interest;
mod message;
mod store;

mod loaded;
mod runtime;
mod state;
mod wasi;

pub use crate::failure::FailureKind;
pub use cache::{CacheStatus, CompileCache};
pub(crate) use cache::{Compiled, compile, hex};
pub use capabilities::Capabilities;
pub use chain::{Chain, Outcome, Session, Step, StepVerdict, human_bytes};
pub(crate) use contract::detect as detect_contract;
pub use contract::{Contract, WIT};
pub use convert::{Direction, RequestHeaders, StreamMeta};
pub use error::PluginError;
pub use interest::Interest;
pub use loaded::{
    CallFailure, ContractError, FailurePolicy, HoldSpec, MAX_HOLD, Plugin, PluginLimits,
    PluginSource, PluginSpec, PowerGrants, RpcError, World,
};
pub use message::{Facts, MessageKind};
pub use runtime::{EPOCH_TICK, Runtime};
pub use store::{StateLimits, StateStore, StateStores, StoreError};
pub use wasi::{GUEST_DIR, ReadDirError};
