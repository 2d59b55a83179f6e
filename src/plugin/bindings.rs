//! The only place the WIT contracts are turned into Rust.
//!
//! Generated types stay behind this module and `contract`: the rest of the crate
//! speaks `sse::Event` and `plugin::Direction`. Two packages are bound:
//!
//! - `sluice:plugin@0.1.0` as revised in place (`wit/0.1.0-revised`), whose types the
//!   chain also uses for the message in flight (`SseEvent`). A plugin of the 0.1.0 first
//!   published (`wit/0.1.0`) imports the same `host` and `types` interfaces; only its
//!   `stream-info` differs, and `contract` hands it that record by hand.
//! - `sluice:plugin@0.2.0` (`wit/`), the current contract, in [`v2`].
//!
//! Exports of 0.1 are top-level functions looked up one by one (see `plugin::loaded`);
//! 0.2's live in the versioned interface `sluice:plugin/handler@0.2.0`.

#![allow(missing_docs, reason = "bindgen-generated code")]

wasmtime::component::bindgen!({
    world: "interceptor",
    path: "wit/0.1.0-revised",
});

/// The bindings of `sluice:plugin@0.2.0`.
pub mod v2 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "wit",
    });

    /// Every host trait of the 0.2 imports.
    pub trait Imports:
        sluice::plugin::types::Host
        + sluice::plugin::log::Host
        + sluice::plugin::context::Host
        + sluice::plugin::state::Host
        + sluice::plugin::metrics::Host
        + sluice::plugin::interest::Host
    {
    }
    impl<T> Imports for T where
        T: sluice::plugin::types::Host
            + sluice::plugin::log::Host
            + sluice::plugin::context::Host
            + sluice::plugin::state::Host
            + sluice::plugin::metrics::Host
            + sluice::plugin::interest::Host
    {
    }
    pub use self::sluice::plugin::context::Identity;
    pub use self::sluice::plugin::state::StateError;
    pub use self::sluice::plugin::types::{Direction, Kind, Message, OnTimeout, Verdict};
}

pub use self::sluice::plugin::host::Level;
pub use self::sluice::plugin::types::Direction;

/// Registers the host functions of every contract version a plugin may import.
pub(crate) fn add_host_to_linker<T: HostFunctions + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    sluice::plugin::host::add_to_linker::<T, HasSelf<T>>(linker, |s| s)?;
    sluice::plugin::types::add_to_linker::<T, HasSelf<T>>(linker, |s| s)?;
    v2::Plugin::add_to_linker::<T, HasSelf<T>>(linker, |s| s)
}

/// Every generated host trait, implemented by the store data.
pub(crate) trait HostFunctions:
    sluice::plugin::host::Host + sluice::plugin::types::Host + v2::Imports
{
}
impl<T: sluice::plugin::host::Host + sluice::plugin::types::Host + v2::Imports> HostFunctions
    for T
{
}
