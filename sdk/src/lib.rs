//! databot-sdk: write databot plugins in Rust.
//!
//! A plugin is one WebAssembly component built for `wasm32-wasip2`. This crate owns the guest
//! side of the contract in `wit/databot.wit`: the generated bindings, the host capabilities as
//! plain Rust functions, the plugin manifest macro, the typed contract data (`chat`, `event`) and
//! the export macros: `tools!` and `connector!` turn typed Rust functions into tools and
//! operations whose argument JSON Schema is derived from the argument type, `provider!` exports
//! a typed `provider::Provider`.
//!
//! ```ignore
//! use databot_sdk::prelude::*;
//!
//! databot_sdk::manifest! {
//!     name: "greeter",
//!     kind: "tool",
//!     description: "Says hello.",
//!     capabilities: [],
//! }
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct GreetArgs {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! databot_sdk::tools! {
//!     /// Greet someone by name.
//!     fn greet(args: GreetArgs) -> Result<String, PluginError> {
//!         Ok(format!("hello, {}", args.name))
//!     }
//! }
//! ```

#![allow(clippy::too_many_arguments)]

pub mod api;
pub mod channel;
pub mod http;
pub mod markdown;
pub mod provider;

/// The typed data of the contract's `json` strings, shared with the host.
pub use databot_types::{chat, event};

/// Bindings of every capability the host can grant (generated from the `capabilities` world).
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "capabilities",
        generate_all,
    });
}

/// World-specific export bindings. Each reuses the capability bindings above.
pub mod worlds {
    /// The `tool` world.
    pub mod tool {
        wit_bindgen::generate!({
            path: "../wit",
            world: "tool",
            with: {
                "databot:plugin/types@0.1.1": crate::wit::databot::plugin::types,
                "databot:plugin/logging@0.1.1": crate::wit::databot::plugin::logging,
                "databot:plugin/config@0.1.1": crate::wit::databot::plugin::config,
                "databot:plugin/state@0.1.1": crate::wit::databot::plugin::state,
                "databot:plugin/caller@0.1.1": crate::wit::databot::plugin::caller,
                "databot:plugin/connectors@0.1.1": crate::wit::databot::plugin::connectors,
                "databot:plugin/sql@0.1.1": crate::wit::databot::plugin::sql,
                "databot:plugin/shell@0.1.1": crate::wit::databot::plugin::shell,
                "databot:plugin/kafka@0.1.1": crate::wit::databot::plugin::kafka,
                "databot:plugin/vectors@0.1.1": crate::wit::databot::plugin::vectors,
            },
            pub_export_macro: true,
            export_macro_name: "export_tool_world",
            default_bindings_module: "databot_sdk::worlds::tool",
        });
    }

    /// The `connector` world.
    pub mod connector {
        wit_bindgen::generate!({
            path: "../wit",
            world: "connector",
            with: {
                "databot:plugin/types@0.1.1": crate::wit::databot::plugin::types,
                "databot:plugin/logging@0.1.1": crate::wit::databot::plugin::logging,
                "databot:plugin/config@0.1.1": crate::wit::databot::plugin::config,
                "databot:plugin/state@0.1.1": crate::wit::databot::plugin::state,
                "databot:plugin/sql@0.1.1": crate::wit::databot::plugin::sql,
                "databot:plugin/kafka@0.1.1": crate::wit::databot::plugin::kafka,
                "databot:plugin/vectors@0.1.1": crate::wit::databot::plugin::vectors,
            },
            pub_export_macro: true,
            export_macro_name: "export_connector_world",
            default_bindings_module: "databot_sdk::worlds::connector",
        });
    }

    /// The `provider` world.
    pub mod provider {
        wit_bindgen::generate!({
            path: "../wit",
            world: "provider",
            with: {
                "databot:plugin/types@0.1.1": crate::wit::databot::plugin::types,
                "databot:plugin/logging@0.1.1": crate::wit::databot::plugin::logging,
                "databot:plugin/config@0.1.1": crate::wit::databot::plugin::config,
                "databot:plugin/state@0.1.1": crate::wit::databot::plugin::state,
                "databot:plugin/stream-sink@0.1.1": crate::wit::databot::plugin::stream_sink,
            },
            pub_export_macro: true,
            export_macro_name: "export_provider_world",
            default_bindings_module: "databot_sdk::worlds::provider",
        });
    }

    /// The `channel` world.
    pub mod channel {
        wit_bindgen::generate!({
            path: "../wit",
            world: "channel",
            with: {
                "databot:plugin/types@0.1.1": crate::wit::databot::plugin::types,
                "databot:plugin/logging@0.1.1": crate::wit::databot::plugin::logging,
                "databot:plugin/config@0.1.1": crate::wit::databot::plugin::config,
                "databot:plugin/state@0.1.1": crate::wit::databot::plugin::state,
                "databot:plugin/verify@0.1.1": crate::wit::databot::plugin::verify,
            },
            pub_export_macro: true,
            export_macro_name: "export_channel_world",
            default_bindings_module: "databot_sdk::worlds::channel",
        });
    }
}

pub use databot_sdk_macros::manifest;
pub use wit::databot::plugin::types::{Error as PluginError, Health, HealthStatus, OperationSpec};
pub use wit::databot::plugin::{
    caller, config, connectors, kafka, shell, sql, state, stream_sink, vectors, verify,
};

/// The contract version this SDK builds against (the `databot:plugin` WIT package version).
pub const CONTRACT_VERSION: &str = "0.1.1";

/// What most plugins need in scope.
pub mod prelude {
    pub use crate::log;
    pub use crate::{PluginError, json_schema_of};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{Value, json};
}

#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde_json;
}

/// Logging through the host (attributed to this plugin, filtered by the host's log level).
pub mod log {
    use crate::wit::databot::plugin::logging::{Level, log};

    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The JSON Schema of a Rust type, as JSON text (draft 2020-12, as schemars generates it).
pub fn json_schema_of<T: schemars::JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(T)).unwrap_or_else(|_| "{}".to_owned())
}

/// A typed configuration value set by the operator (`plugins.NAME.config.KEY`).
pub fn config_value<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, PluginError> {
    match config::get(key) {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            PluginError::InvalidInput(format!("config value `{key}` has the wrong shape: {e}"))
        }),
    }
}

/// The connector instance a tool should call: `requested` when the caller named one (the host
/// checks it against `permissions.connectors` when it is called), else the only one in
/// `config.connectors`, which defaults to the instances granted in `permissions.connectors`.
/// `what` names the kind for messages ("SQL", "Spark"); `argument` is the tool's argument
/// that names a connector (`connection`, `connector`).
pub fn pick_connector(
    requested: Option<&str>,
    what: &str,
    argument: &str,
) -> Result<String, PluginError> {
    if let Some(name) = requested.map(str::trim).filter(|n| !n.is_empty()) {
        return Ok(name.to_owned());
    }
    let configured: Vec<String> = config_value("connectors")?.unwrap_or_default();
    match configured.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(PluginError::InvalidInput(format!(
            "no {what} connector to use: pass `{argument}`, or have the operator grant exactly one in `permissions.connectors` of this tool (or list it in `config.connectors`)"
        ))),
        several => Err(PluginError::InvalidInput(format!(
            "several {what} connectors are available ({}); pass `{argument}` with one of them",
            several.join(", ")
        ))),
    }
}

/// Call a connector operation with typed params and decode its JSON result.
pub fn call_connector<T: serde::de::DeserializeOwned>(
    connector: &str,
    operation: &str,
    params: &serde_json::Value,
) -> Result<T, PluginError> {
    let text = connectors::execute(connector, operation, &params.to_string())?;
    serde_json::from_str(&text).map_err(|e| {
        PluginError::Failed(format!(
            "connector `{connector}` answered `{operation}` with unexpected JSON: {e}"
        ))
    })
}

/// Join the lines of a doc comment into a tool description: lines of a paragraph are joined
/// with spaces, paragraphs with a blank line.
#[doc(hidden)]
pub fn __description(lines: &[&str]) -> String {
    let mut paragraphs: Vec<String> = vec![String::new()];
    for line in lines.iter().map(|line| line.trim()) {
        if line.is_empty() {
            paragraphs.push(String::new());
            continue;
        }
        if let Some(current) = paragraphs.last_mut() {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs.join("\n\n")
}

/// Decode the arguments of a tool call into its typed argument struct.
#[doc(hidden)]
pub fn __decode_arguments<T: serde::de::DeserializeOwned>(
    tool: &str,
    arguments: &str,
) -> Result<T, PluginError> {
    serde_json::from_str(arguments)
        .map_err(|e| PluginError::InvalidInput(format!("arguments of `{tool}`: {e}")))
}

/// JSON text that is already encoded, returned by a tool or operation as it is (a large
/// result passed through from a connector or the host, which need not be parsed again).
/// The host still checks that every result is JSON.
#[derive(Debug, Clone)]
pub struct RawJson(pub String);

/// What a tool or operation may return: anything `Serialize`, or `RawJson`.
pub trait IntoResultJson {
    fn into_result_json(self, name: &str) -> Result<String, PluginError>;
}

impl<T: serde::Serialize> IntoResultJson for T {
    fn into_result_json(self, name: &str) -> Result<String, PluginError> {
        serde_json::to_string(&self)
            .map_err(|e| PluginError::Failed(format!("result of `{name}` is not JSON: {e}")))
    }
}

impl IntoResultJson for RawJson {
    fn into_result_json(self, _name: &str) -> Result<String, PluginError> {
        Ok(self.0)
    }
}

/// Encode the result of a tool call as JSON text.
#[doc(hidden)]
pub fn __encode_result<T: IntoResultJson>(tool: &str, value: T) -> Result<String, PluginError> {
    value.into_result_json(tool)
}

/// Declare the tools of a tool plugin as typed Rust functions and export them.
///
/// Each function takes one argument whose type implements `Deserialize + JsonSchema` and
/// returns `Result<T, PluginError>` with `T: Serialize`. The doc comment becomes the tool's
/// description; the JSON Schema of the argument type is what the host validates calls against.
#[macro_export]
macro_rules! tools {
    ($(
        $(#[doc = $doc:literal])*
        fn $name:ident ($arg:ident : $arg_ty:ty) -> $ret:ty $body:block
    )+) => {
        $(
            $(#[doc = $doc])*
            fn $name($arg: $arg_ty) -> $ret $body
        )+

        struct __DatabotTools;

        impl $crate::worlds::tool::exports::databot::plugin::tool_handler::Guest for __DatabotTools {
            fn list_tools() -> ::std::vec::Vec<$crate::OperationSpec> {
                ::std::vec![$(
                    $crate::OperationSpec {
                        name: ::std::string::String::from(stringify!($name)),
                        description: $crate::__description(&[$($doc),*]),
                        input_schema: $crate::json_schema_of::<$arg_ty>(),
                    }
                ),+]
            }

            fn call(
                name: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::PluginError> {
                match name.as_str() {
                    $(
                        stringify!($name) => {
                            let args = $crate::__decode_arguments::<$arg_ty>(&name, &arguments)?;
                            let value = $name(args)?;
                            $crate::__encode_result(&name, value)
                        }
                    )+
                    other => ::std::result::Result::Err($crate::PluginError::NotFound(
                        ::std::format!("this plugin has no tool named `{other}`"),
                    )),
                }
            }
        }

        $crate::worlds::tool::export_tool_world!(__DatabotTools);
    };
}

/// Declare the operations of a connector plugin as typed Rust functions and export them, with
/// its health check.
///
/// ```ignore
/// databot_sdk::connector! {
///     health: check_health,
///     /// List the batches.
///     fn list_batches(args: ListArgs) -> Result<Value, PluginError> { ... }
/// }
/// fn check_health() -> databot_sdk::Health { ... }
/// ```
///
/// As with `tools!`, the doc comment is the operation's description and the argument type's
/// JSON Schema is what the host validates `params` against.
#[macro_export]
macro_rules! connector {
    (
        health: $health:path,
        $(
            $(#[doc = $doc:literal])*
            fn $name:ident ($arg:ident : $arg_ty:ty) -> $ret:ty $body:block
        )+
    ) => {
        $(
            $(#[doc = $doc])*
            fn $name($arg: $arg_ty) -> $ret $body
        )+

        struct __DatabotConnector;

        impl $crate::worlds::connector::exports::databot::plugin::connector_handler::Guest for __DatabotConnector {
            fn capabilities() -> ::std::vec::Vec<$crate::OperationSpec> {
                ::std::vec![$(
                    $crate::OperationSpec {
                        name: ::std::string::String::from(stringify!($name)),
                        description: $crate::__description(&[$($doc),*]),
                        input_schema: $crate::json_schema_of::<$arg_ty>(),
                    }
                ),+]
            }

            fn check_health() -> $crate::Health {
                $health()
            }

            fn execute(
                operation: ::std::string::String,
                params: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::PluginError> {
                match operation.as_str() {
                    $(
                        stringify!($name) => {
                            let args = $crate::__decode_arguments::<$arg_ty>(&operation, &params)?;
                            let value = $name(args)?;
                            $crate::__encode_result(&operation, value)
                        }
                    )+
                    other => ::std::result::Result::Err($crate::PluginError::NotFound(
                        ::std::format!(
                            "this connector has no operation `{other}`; it offers: {}",
                            [$(stringify!($name)),+].join(", ")
                        ),
                    )),
                }
            }
        }

        $crate::worlds::connector::export_connector_world!(__DatabotConnector);
    };
}
