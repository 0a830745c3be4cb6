//! Host-side bindings of the `databot:plugin` contract, generated from `wit/databot.wit`.
//!
//! The `host` world imports every capability and exports every handler interface; a plugin
//! component exports only the handler of its kind, which `revision` looks up per kind.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::databot::plugin::types::{Error as GuestError, Health, HealthStatus, OperationSpec};
pub use exports::databot::plugin::{
    channel_handler, connector_handler, provider_handler, tool_handler,
};
