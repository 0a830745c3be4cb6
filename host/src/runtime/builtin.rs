//! First-party plugins compiled into the binary (built from `plugins/` by `host/build.rs`).

/// `(name, component bytes)` of every built-in plugin.
pub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[
    (
        "web_fetch",
        include_bytes!(concat!(env!("OUT_DIR"), "/guests/web_fetch.wasm")),
    ),
    (
        "offline",
        include_bytes!(concat!(env!("OUT_DIR"), "/guests/offline_provider.wasm")),
    ),
    (
        "openai",
        include_bytes!(concat!(env!("OUT_DIR"), "/guests/openai_provider.wasm")),
    ),
    (
        "anthropic",
        include_bytes!(concat!(env!("OUT_DIR"), "/guests/anthropic_provider.wasm")),
    ),
];

/// The component bytes of a built-in plugin.
pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, bytes)| *bytes)
}
