//! One loaded revision of a plugin: compiled, linked (`InstancePre`), its exports resolved and
//! its operations' argument validators compiled. Built off the hot path, then swapped in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, anyhow};
use serde::Serialize;
use wasmtime::component::InstancePre;

use super::cache::CompileSource;
use super::manifest::{Manifest, PluginKind};
use crate::capabilities::StoreState;
use crate::contract::{
    OperationSpec, channel_handler, chat_channel, connector_handler, provider_handler, tool_handler,
};

/// Where a revision's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginSource {
    File(PathBuf),
    Builtin,
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Builtin => f.write_str("<built in>"),
        }
    }
}

/// The export indices of the plugin's kind, resolved once per revision.
pub enum KindExports {
    Tool(tool_handler::GuestIndices),
    Connector(connector_handler::GuestIndices),
    Provider(provider_handler::GuestIndices),
    Channel(chat_channel::GuestIndices),
    /// A channel of contract 0.1.0 (`channel-handler`): it loads and is listed, but no
    /// ingress serves it (`channels` answers that it needs rebuilding).
    LegacyChannel(channel_handler::GuestIndices),
}

pub struct Revision {
    pub manifest: Manifest,
    pub digest: String,
    pub source: PluginSource,
    pub loaded_at: SystemTime,
    pub compiled_from: CompileSource,
    /// Who signed it, when its signature was checked against a trusted key.
    pub signer: Option<crate::signature::Signer>,
    pub pre: InstancePre<StoreState>,
    pub exports: KindExports,
    /// Tools (for tool plugins) or operations (for connectors), filled by `describe`.
    pub operations: Vec<OperationSpec>,
    validators: HashMap<String, jsonschema::Validator>,
    /// The digest and operation names as shared span attribute values: a call span clones a
    /// reference instead of copying the strings (`runtime::invoke::call_span`).
    span_digest: opentelemetry::StringValue,
    span_operations: HashMap<String, opentelemetry::StringValue>,
}

impl Revision {
    pub fn new(
        manifest: Manifest,
        digest: String,
        source: PluginSource,
        compiled_from: CompileSource,
        pre: InstancePre<StoreState>,
    ) -> anyhow::Result<Self> {
        let wanted = manifest.kind.export_interface();
        let missing = |e: wasmtime::Error| {
            anyhow!(
                "the manifest says kind `{}`, but the component does not export `{wanted}`: {e}",
                manifest.kind.as_str()
            )
        };
        let exports = match manifest.kind {
            PluginKind::Tool => {
                KindExports::Tool(tool_handler::GuestIndices::new(&pre).map_err(missing)?)
            }
            PluginKind::Connector => {
                KindExports::Connector(connector_handler::GuestIndices::new(&pre).map_err(missing)?)
            }
            PluginKind::Provider => {
                KindExports::Provider(provider_handler::GuestIndices::new(&pre).map_err(missing)?)
            }
            PluginKind::Channel => match chat_channel::GuestIndices::new(&pre) {
                Ok(indices) => KindExports::Channel(indices),
                Err(error) => match channel_handler::GuestIndices::new(&pre) {
                    Ok(indices) => KindExports::LegacyChannel(indices),
                    Err(_) => return Err(missing(error)),
                },
            },
        };
        Ok(Self {
            manifest,
            span_digest: std::sync::Arc::<str>::from(digest.as_str()).into(),
            span_operations: HashMap::new(),
            digest,
            source,
            loaded_at: SystemTime::now(),
            compiled_from,
            signer: None,
            pre,
            exports,
            operations: Vec::new(),
            validators: HashMap::new(),
        })
    }

    /// Record the operations the plugin described and compile their argument schemas.
    pub fn set_operations(&mut self, operations: Vec<OperationSpec>) -> anyhow::Result<()> {
        let mut validators = HashMap::new();
        for operation in &operations {
            crate::config::check_tool_name(&operation.name).map_err(anyhow::Error::msg)?;
            let schema: serde_json::Value = serde_json::from_str(&operation.input_schema)
                .with_context(|| format!("the input schema of `{}` is not JSON", operation.name))?;
            let validator = jsonschema::validator_for(&schema).map_err(|e| {
                anyhow!(
                    "the input schema of `{}` is not a valid JSON Schema: {e}",
                    operation.name
                )
            })?;
            if validators
                .insert(operation.name.clone(), validator)
                .is_some()
            {
                anyhow::bail!("operation `{}` is declared twice", operation.name);
            }
        }
        self.span_operations = operations
            .iter()
            .map(|o| {
                let value = std::sync::Arc::<str>::from(o.name.as_str()).into();
                (o.name.clone(), value)
            })
            .collect();
        self.operations = operations;
        self.validators = validators;
        Ok(())
    }

    /// The digest as a span attribute value (shared, not copied).
    pub fn span_digest(&self) -> opentelemetry::StringValue {
        self.span_digest.clone()
    }

    /// An operation's name as a span attribute value (shared when the plugin declared it).
    pub fn span_operation(&self, name: &str) -> opentelemetry::StringValue {
        self.span_operations
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned().into())
    }

    pub fn operation(&self, name: &str) -> Option<&OperationSpec> {
        self.operations.iter().find(|o| o.name == name)
    }

    /// Check arguments against the operation's schema; the message lists every violation.
    pub fn validate_arguments(
        &self,
        operation: &str,
        arguments: &serde_json::Value,
    ) -> Result<(), String> {
        let Some(validator) = self.validators.get(operation) else {
            return Ok(());
        };
        let problems: Vec<String> = validator
            .iter_errors(arguments)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "arguments of `{operation}` do not match its schema: {}",
                problems.join("; ")
            ))
        }
    }
}
