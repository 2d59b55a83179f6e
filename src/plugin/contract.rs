//! Which version of the plugin contract a component implements, and what the host
//! hands a plugin of an older one.
//!
//! A published version is never edited (`wit/README.md`), and the host loads every one:
//!
//! - `sluice:plugin@0.1.0` as first published: `stream-info` has six fields;
//! - `sluice:plugin@0.1.0` as sluice later revised it in place: a seventh field,
//!   `protocol-version`, and the `batch-*` worlds. The revision broke the plugins of
//!   the first ("expected record of 7 fields, found 6 fields"); both load now;
//! - `sluice:plugin@0.2.0`, whose exports live in the versioned interface
//!   `sluice:plugin/handler@0.2.0`.
//!
//! 0.1's exports are plain function names, the same in both shapes; the version shows
//! in the type of `on-stream-start`'s record. A filter has no such export, and its
//! world is the same in both.

use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentType, Lower};

use super::bindings::{Direction, StreamInfo};

/// The text of each published contract, by the name `sluice wit --version` takes:
/// what a plugin author builds against outside a checkout of sluice.
pub const WIT: &[(&str, &str)] = &[
    ("0.2.0", include_str!("../../wit/plugin.wit")),
    ("0.1.0", include_str!("../../wit/0.1.0/plugin.wit")),
    (
        "0.1.0-revised",
        include_str!("../../wit/0.1.0-revised/plugin.wit"),
    ),
];

/// The export holding a 0.2 plugin's functions.
pub(crate) const HANDLER_V0_2: &str = "sluice:plugin/handler@0.2.0";

/// A version of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `sluice:plugin@0.1.0` as first published (`stream-info` of six fields); also
    /// every 0.1 filter, which the revision did not change.
    V0_1Published,
    /// `sluice:plugin@0.1.0` as revised in place (`stream-info.protocol-version`, the
    /// batch worlds).
    V0_1Revised,
    /// `sluice:plugin@0.2.0`.
    V0_2,
}

impl Contract {
    /// How `sluice plugin check` and the logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1Published => "sluice:plugin@0.1.0",
            Contract::V0_1Revised => "sluice:plugin@0.1.0 (revised: protocol-version, batch)",
            Contract::V0_2 => "sluice:plugin@0.2.0",
        }
    }
}

/// The version `component` implements, read from its exports. A component of none
/// is called 0.1 here; the export check then says what is missing.
pub(crate) fn detect(component: &Component, engine: &Engine) -> Contract {
    let ty = component.component_type();
    if ty.get_export(engine, HANDLER_V0_2).is_some() {
        return Contract::V0_2;
    }
    if ty.get_export(engine, "on-events").is_some() {
        return Contract::V0_1Revised;
    }
    let Some(ComponentItem::ComponentFunc(start)) =
        ty.get_export(engine, "on-stream-start").map(|e| e.ty)
    else {
        return Contract::V0_1Published;
    };
    match start.params().next() {
        Some((_, Type::Record(record))) if record.fields().len() == 6 => Contract::V0_1Published,
        _ => Contract::V0_1Revised,
    }
}

/// `stream-info` as first published: the revised record without `protocol-version`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct PublishedStreamInfo {
    #[component(name = "stream-id")]
    stream_id: u64,
    direction: Direction,
    #[component(name = "session-id")]
    session_id: Option<String>,
    method: String,
    path: String,
    #[component(name = "rpc-method")]
    rpc_method: Option<String>,
}

impl From<&StreamInfo> for PublishedStreamInfo {
    fn from(info: &StreamInfo) -> Self {
        Self {
            stream_id: info.stream_id,
            direction: info.direction,
            session_id: info.session_id.clone(),
            method: info.method.clone(),
            path: info.path.clone(),
            rpc_method: info.rpc_method.clone(),
        }
    }
}
