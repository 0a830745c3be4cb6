//! First-party plugins compiled into the binary (built from `plugins/` by `host/build.rs`).

/// `(name, component bytes)` of every built-in plugin.
pub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[(
    "web_fetch",
    include_bytes!(concat!(env!("OUT_DIR"), "/guests/web_fetch.wasm")),
)];
