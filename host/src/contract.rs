//! The `databot:plugin` contract as the host sees it: bindings generated from
//! `wit/databot.wit` and the error type every capability and handler shares. The bottom of the
//! host's module graph: every layer may use it, it uses none of them.
//!
//! The `host` world imports every capability and exports every handler interface; a plugin
//! component exports only the handler of its kind, which `runtime::revision` looks up per kind.

/// The contract this host speaks: the version of the `databot:plugin` WIT package. The WIT
/// file, the SDK and its macros carry copies (bindgen and wit-bindgen need literals); the test
/// below fails when one disagrees.
pub const CONTRACT_VERSION: &str = "0.1.1";

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// The typed data of the contract's `json` strings (chat requests, responses, embeddings),
/// defined once for the host and the SDK.
pub use databot_types::chat;

pub use self::databot::plugin::types::{Error as GuestError, Health, HealthStatus, OperationSpec};
pub use exports::databot::plugin::{
    channel_handler, chat_channel, connector_handler, provider_handler, tool_handler,
};

#[cfg(test)]
mod tests {
    use super::CONTRACT_VERSION;

    fn read(path: &str) -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Every `@VERSION` after `databot:plugin` in `text`, and every `CONTRACT_VERSION` literal.
    fn versions_in(text: &str) -> Vec<String> {
        let mut found: Vec<String> = text
            .match_indices("databot:plugin")
            .filter_map(|(at, _)| {
                let rest = &text[at..];
                let end = rest.find(|c: char| c == '"' || c == ';' || c.is_whitespace())?;
                let (_, version) = rest[..end].split_once('@')?;
                Some(version.to_owned())
            })
            .collect();
        for line in text.lines() {
            if let Some((_, value)) = line.split_once("CONTRACT_VERSION: &str = \"") {
                found.push(value.trim_end_matches("\";").to_owned());
            }
        }
        found
    }

    #[test]
    fn every_copy_of_the_contract_version_agrees() {
        for path in ["wit/databot.wit", "sdk/src/lib.rs", "sdk/macros/src/lib.rs"] {
            let versions = versions_in(&read(path));
            assert!(!versions.is_empty(), "{path} names no contract version");
            for version in versions {
                assert_eq!(
                    version, CONTRACT_VERSION,
                    "{path} says databot:plugin@{version}; the host speaks {CONTRACT_VERSION}"
                );
            }
        }
    }
}
