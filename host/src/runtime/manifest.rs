//! The plugin manifest embedded in a component's `databot-manifest` custom section, and the
//! checks that refuse what is not a loadable plugin before anything is compiled.

use serde::{Deserialize, Serialize};

pub use crate::contract::CONTRACT_VERSION;
pub const MANIFEST_SECTION: &str = "databot-manifest";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Tool,
    Connector,
    Provider,
    Channel,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Connector => "connector",
            Self::Provider => "provider",
            Self::Channel => "channel",
        }
    }

    /// The interface a component of this kind must export.
    pub fn export_interface(self) -> String {
        match self {
            Self::Channel => format!("databot:plugin/chat-channel@{CONTRACT_VERSION}"),
            _ => format!(
                "databot:plugin/{}-handler@{CONTRACT_VERSION}",
                self.as_str()
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub contract: String,
    pub description: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Why a file is not a loadable plugin.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the file is damaged or truncated: {0}")]
    Malformed(String),
    #[error(
        "no `databot-manifest` section: build the plugin with databot-sdk and its `manifest!` macro"
    )]
    Missing,
    #[error("the manifest is not valid: {0}")]
    Invalid(String),
    #[error(
        "built against contract databot:plugin@{found}, but this host speaks databot:plugin@{CONTRACT_VERSION}; rebuild it with a databot-sdk of the {expected} line"
    )]
    ContractMismatch { found: String, expected: String },
}

/// The compatibility line of a semver version: the major, or `0.minor` for 0.x.
pub fn compatibility_line(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let major: u64 = parts.next()?.parse().ok()?;
    let minor: u64 = parts.next()?.parse().ok()?;
    if major == 0 {
        Some(format!("0.{minor}"))
    } else {
        Some(major.to_string())
    }
}

/// Checks that `bytes` are a component (not a core module, not something else).
fn check_component(bytes: &[u8]) -> Result<(), ManifestError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ManifestError::NotWasm);
    }
    if !wasmparser::Parser::is_component(bytes) {
        if wasmparser::Parser::is_core_wasm(bytes) {
            return Err(ManifestError::CoreModule);
        }
        return Err(ManifestError::Malformed(
            "unknown WebAssembly encoding".into(),
        ));
    }
    Ok(())
}

/// The first `databot-manifest` section's bytes, anywhere in the component.
fn manifest_section(bytes: &[u8]) -> Result<Option<Vec<u8>>, ManifestError> {
    let mut found = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == MANIFEST_SECTION
            && found.is_none()
        {
            found = Some(section.data().to_vec());
        }
    }
    Ok(found)
}

/// Read and check the manifest of component bytes without compiling or running them.
pub fn read_manifest(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    check_component(bytes)?;
    let data = manifest_section(bytes)?.ok_or(ManifestError::Missing)?;
    let manifest: Manifest =
        serde_json::from_slice(&data).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    crate::config::check_plugin_name(&manifest.name).map_err(ManifestError::Invalid)?;
    let expected = compatibility_line(CONTRACT_VERSION).unwrap_or_default();
    match compatibility_line(&manifest.contract) {
        Some(line) if line == expected => Ok(manifest),
        _ => Err(ManifestError::ContractMismatch {
            found: manifest.contract,
            expected,
        }),
    }
}

/// `bytes`, a component with no manifest yet, with `manifest_json` embedded as its
/// `databot-manifest` section: how a component built by another toolchain (componentize-py,
/// componentize-js, wit-bindgen in any language) becomes a plugin. The manifest is checked as
/// a load would check it; a missing `contract` is this host's (the contract `databot plugin
/// wit` gives). A component that already has a manifest is refused, never given two.
pub fn embed_manifest(bytes: &[u8], manifest_json: &str) -> Result<Vec<u8>, ManifestError> {
    check_component(bytes)?;
    if manifest_section(bytes)?.is_some() {
        return Err(ManifestError::Invalid(
            "the component already has a databot-manifest section; package the build that has none"
                .into(),
        ));
    }
    let mut value: serde_json::Value =
        serde_json::from_str(manifest_json).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let Some(fields) = value.as_object_mut() else {
        return Err(ManifestError::Invalid(
            "the manifest must be a JSON object".into(),
        ));
    };
    fields
        .entry("contract")
        .or_insert_with(|| CONTRACT_VERSION.into());
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let json = serde_json::to_vec(&manifest).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let mut section = Vec::new();
    leb128(MANIFEST_SECTION.len(), &mut section);
    section.extend_from_slice(MANIFEST_SECTION.as_bytes());
    section.extend_from_slice(&json);
    let mut packaged = bytes.to_vec();
    packaged.push(0);
    leb128(section.len(), &mut packaged);
    packaged.extend(section);
    read_manifest(&packaged)?;
    Ok(packaged)
}

/// `n` as unsigned LEB128, the encoding of WebAssembly's sizes.
fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_lines() {
        assert_eq!(compatibility_line("0.1.0").as_deref(), Some("0.1"));
        assert_eq!(compatibility_line("0.1.7").as_deref(), Some("0.1"));
        assert_eq!(compatibility_line("2.3.0").as_deref(), Some("2"));
        assert_eq!(compatibility_line("x"), None);
    }

    /// An empty component whose only section is a `databot-manifest` holding `json`.
    fn component_with_manifest(json: &str) -> Vec<u8> {
        let mut payload = Vec::new();
        leb128(MANIFEST_SECTION.len(), &mut payload);
        payload.extend_from_slice(MANIFEST_SECTION.as_bytes());
        payload.extend_from_slice(json.as_bytes());
        let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
        bytes.push(0);
        leb128(payload.len(), &mut bytes);
        bytes.extend(payload);
        bytes
    }

    fn manifest_named(name: &str) -> Vec<u8> {
        let json = serde_json::json!({
            "name": name,
            "version": "1.0.0",
            "kind": "tool",
            "contract": CONTRACT_VERSION,
            "description": "d",
        });
        component_with_manifest(&json.to_string())
    }

    #[test]
    fn plugin_names_are_checked() {
        let manifest = read_manifest(&manifest_named("good_name_2")).unwrap();
        assert_eq!(manifest.name, "good_name_2");
        for bad in [
            "",
            "Upper",
            "with-dash",
            "with space",
            "line\nbreak",
            "quote\"",
            "metric\"} 1\nfake_metric{a=\"",
            "2fast",
            "_hidden",
            "../escape",
            &"n".repeat(65),
        ] {
            match read_manifest(&manifest_named(bad)) {
                Err(ManifestError::Invalid(message)) => {
                    assert!(message.contains("plugin name"), "{message}");
                    assert!(!message.contains('\n'), "{message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_non_wasm_and_core_modules() {
        assert!(matches!(
            read_manifest(b"hello world"),
            Err(ManifestError::NotWasm)
        ));
        let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
        assert!(matches!(
            read_manifest(&core),
            Err(ManifestError::CoreModule)
        ));
    }

    #[test]
    fn a_manifest_is_embedded_once_and_checked() {
        // The smallest component: its preamble.
        let bare = b"\0asm\x0d\x00\x01\x00".to_vec();
        assert!(matches!(read_manifest(&bare), Err(ManifestError::Missing)));
        let json = r#"{"name": "py_tool", "version": "0.2.0", "kind": "tool", "description": "d", "capabilities": ["logging"]}"#;
        let packaged = embed_manifest(&bare, json).unwrap();
        let manifest = read_manifest(&packaged).unwrap();
        assert_eq!(manifest.name, "py_tool");
        assert_eq!(manifest.contract, CONTRACT_VERSION);
        assert_eq!(manifest.capabilities, ["logging"]);
        // Never two manifests.
        let twice = embed_manifest(&packaged, json).unwrap_err().to_string();
        assert!(twice.contains("already has"), "{twice}");
        // The same checks as a load.
        for (bad, expected) in [
            (
                r#"{"name": "Bad", "version": "1", "kind": "tool", "description": "d"}"#,
                "plugin name",
            ),
            (
                r#"{"name": "x", "version": "1", "kind": "robot", "description": "d"}"#,
                "robot",
            ),
            (
                r#"{"name": "x", "version": "1", "kind": "tool", "description": "d", "extra": 1}"#,
                "extra",
            ),
            (
                r#"{"name": "x", "version": "1", "kind": "tool", "description": "d", "contract": "9.0.0"}"#,
                "9.0.0",
            ),
            ("[]", "JSON object"),
            ("{", "EOF"),
        ] {
            let error = embed_manifest(&bare, bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{bad}: {error}");
        }
        assert!(matches!(
            embed_manifest(b"\0asm\x01\x00\x00\x00", json),
            Err(ManifestError::CoreModule)
        ));
        assert!(matches!(
            embed_manifest(b"nope", json),
            Err(ManifestError::NotWasm)
        ));
    }
}
