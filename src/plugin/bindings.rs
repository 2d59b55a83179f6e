//! The only place the WIT contract is turned into Rust.
//!
//! Generated types stay behind this module: the rest of the crate speaks `sse::Event`
//! and `plugin::Direction`, and `convert` translates at the boundary. The host binds the
//! `interceptor` world because it is a superset of `filter`; exports are looked up one
//! by one (see `plugin::loaded`), so a component of either world can be loaded.

#![allow(missing_docs, reason = "bindgen-generated code")]

wasmtime::component::bindgen!({
    world: "interceptor",
    path: "wit/0.1.0-revised",
});

pub use self::sluice::plugin::host::Level;
pub use self::sluice::plugin::types::Direction;

/// Registers the host functions every plugin may import.
pub(crate) fn add_host_to_linker<T: HostFunctions + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    sluice::plugin::host::add_to_linker::<T, wasmtime::component::HasSelf<T>>(linker, |s| s)?;
    sluice::plugin::types::add_to_linker::<T, wasmtime::component::HasSelf<T>>(linker, |s| s)
}

/// Both generated host traits, implemented by the store data.
pub(crate) trait HostFunctions:
    sluice::plugin::host::Host + sluice::plugin::types::Host
{
}
impl<T: sluice::plugin::host::Host + sluice::plugin::types::Host> HostFunctions for T {}
