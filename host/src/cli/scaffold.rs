//! `databot plugin new`: a plugin crate per kind that builds to a working component, and
//! `databot plugin wit`: the contract for other toolchains. The SDK and the contract are the
//! ones this binary was built with, carried inside it (`build_sdk.rs`), so a new crate builds
//! on a machine with only this binary and Rust: nothing points back at a source tree.

use std::path::Path;

use anyhow::{Context, bail};

use super::plugin::{Kind, kind_name};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// Where a new crate keeps its copy of the SDK (`sdk/`) and the contract (`wit/`).
const VENDOR: &str = "vendor";

/// The contract's files (`databot.wit`, ...) as `(file name, text)`.
pub fn contract() -> impl Iterator<Item = (&'static str, &'static str)> {
    embedded::SDK_FILES
        .iter()
        .filter_map(|(path, text)| path.strip_prefix("wit/").map(|name| (name, *text)))
}

/// Writes the contract's files into `dir`.
pub fn write_contract(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in contract() {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes the SDK and the contract under `dir/vendor`.
fn write_sdk(dir: &Path) -> anyhow::Result<()> {
    let vendor = dir.join(VENDOR);
    for (relative, text) in embedded::SDK_FILES {
        let path = vendor.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let readme = format!(
        "The databot plugin SDK (`sdk/`) and contract (`wit/`) of databot {version}, written by \
         `databot plugin new`.\nA newer databot writes newer copies: `databot plugin new` in a \
         scratch folder, then replace this folder with its `{VENDOR}/`.\n`databot plugin wit \
         --out DIR` writes the contract alone, for other toolchains.\n",
        version = env!("CARGO_PKG_VERSION")
    );
    std::fs::write(vendor.join("README.md"), readme)?;
    Ok(())
}

/// Refuses a name no manifest may carry and a folder that is not new or empty.
pub fn check_new(name: &str, dir: &Path) -> anyhow::Result<()> {
    crate::config::check_plugin_name(name).map_err(anyhow::Error::msg)?;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    Ok(())
}

pub fn create(kind: Kind, name: &str, dir: &Path) -> anyhow::Result<()> {
    check_new(name, dir)?;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A databot plugin: `databot plugin build` (or `cargo build --release --target wasm32-wasip2`)
# produces target/wasm32-wasip2/release/{name}.wasm. Drop it in the host's plugins folder.
[lib]
crate-type = ["cdylib"]

[dependencies]
# The SDK this databot carries, written next to the crate (see vendor/README.md).
databot-sdk = {{ path = "{VENDOR}/sdk" }}
schemars = "1"
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1

# Keep this crate out of any enclosing workspace.
[workspace]
"#
    );
    std::fs::write(dir.join("Cargo.toml"), cargo_toml)?;
    write_sdk(dir)?;
    std::fs::write(dir.join("src/lib.rs"), source(kind, name))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(())
}

fn source(kind: Kind, name: &str) -> String {
    let header = format!(
        r#"//! `{name}`: a databot {kind} plugin.

use databot_sdk::prelude::*;

databot_sdk::manifest! {{
    name: "{name}",
    kind: "{kind}",
    description: "TODO: say what {name} does.",
    capabilities: [{capabilities}],
}}
"#,
        kind = kind_name(kind),
        capabilities = match kind {
            Kind::Channel => r#""logging", "verify", "http""#,
            _ => r#""logging""#,
        }
    );
    let body = match kind {
        Kind::Tool => format!(
            r#"
#[derive(Deserialize, JsonSchema)]
struct GreetArgs {{
    /// Who to greet.
    name: String,
}}

databot_sdk::tools! {{
    /// Greet someone by name.
    fn {name}_greet(args: GreetArgs) -> Result<Value, PluginError> {{
        log::info(&format!("greeting {{}}", args.name));
        Ok(json!({{ "greeting": format!("hello, {{}}", args.name) }}))
    }}
}}
"#
        ),
        Kind::Connector => r#"
use databot_sdk::worlds::connector::exports::databot::plugin::connector_handler::Guest;
use databot_sdk::{Health, HealthStatus, OperationSpec};

#[derive(Deserialize, JsonSchema)]
struct PingArgs {
    /// Text to echo back.
    text: String,
}

struct Connector;

impl Guest for Connector {
    fn capabilities() -> Vec<OperationSpec> {
        vec![OperationSpec {
            name: "ping".into(),
            description: "Echo text back.".into(),
            input_schema: json_schema_of::<PingArgs>(),
        }]
    }

    fn check_health() -> Health {
        Health { status: HealthStatus::Healthy, message: "ok".into() }
    }

    fn execute(operation: String, params: String) -> Result<String, PluginError> {
        match operation.as_str() {
            "ping" => {
                let args: PingArgs = serde_json::from_str(&params)
                    .map_err(|e| PluginError::InvalidInput(e.to_string()))?;
                Ok(json!({ "pong": args.text }).to_string())
            }
            other => Err(PluginError::NotFound(format!("no operation `{other}`"))),
        }
    }
}

databot_sdk::worlds::connector::export_connector_world!(Connector);
"#
        .to_owned(),
        Kind::Provider => r#"
use databot_sdk::provider::{ChatRequest, ChatResponse, Provider, Stream, Usage};
use databot_sdk::{Health, HealthStatus};

/// Answers every chat with the last user message, reversed. Replace with a real model API.
struct Reverse;

impl Provider for Reverse {
    fn models() -> Result<Vec<String>, PluginError> {
        Ok(vec!["reverse-1".into()])
    }

    fn chat(request: ChatRequest<'static>) -> Result<ChatResponse, PluginError> {
        let last = request.messages.last().map(|m| m.content_text()).unwrap_or("");
        Ok(ChatResponse {
            content: Some(last.chars().rev().collect()),
            model: Some("reverse-1".into()),
            usage: Usage::new(0, 0),
            ..ChatResponse::default()
        })
    }

    /// Streams the answer word by word (the default sends it as one piece).
    fn chat_stream(request: ChatRequest<'static>, stream: &Stream) -> Result<ChatResponse, PluginError> {
        let response = Self::chat(request)?;
        for word in response.content.as_deref().unwrap_or("").split_inclusive(' ') {
            stream.delta(word);
        }
        Ok(response)
    }

    fn check_health() -> Health {
        Health { status: HealthStatus::Healthy, message: "offline".into() }
    }
}

databot_sdk::provider!(Reverse);
"#
        .to_owned(),
        Kind::Channel => r#"
use databot_sdk::channel::{
    self, Addressed, Channel, ChannelLimits, InboundMessage, InboundRequest, Outgoing, Received,
    SendError,
};
use databot_sdk::http::{self, Request};
use databot_sdk::markdown::{Dialect, render};

/// A webhook channel. Requests carry `x-signature: HEX` = HMAC-SHA256 of the body under the
/// secret the operator names `signing_secret` (`plugins.NAME.permissions.verify`); the host
/// holds the secret and answers 401 unless the check below passed. Bodies are
/// `{"id", "user", "chat", "thread"?, "text"}`. Replies go to the endpoint `api`
/// (`plugins.NAME.endpoints.api`, its credentials added by the host): `POST /messages`
/// answers `{"id"}`, `PUT /messages/ID` edits.
struct Webhook;

fn api() -> Result<String, PluginError> {
    let endpoints: Option<Value> = databot_sdk::config_value("endpoints")?;
    endpoints
        .and_then(|e| e["api"].as_str().map(str::to_owned))
        .ok_or_else(|| PluginError::Denied("set plugins.NAME.endpoints.api".into()))
}

impl Channel for Webhook {
    fn limits() -> ChannelLimits {
        ChannelLimits { max_message_chars: 4000, min_edit_interval_ms: 1000 }
    }

    fn receive(request: InboundRequest) -> Result<Received, PluginError> {
        let signature = channel::header(&request, "x-signature").and_then(channel::decode_hex);
        let verified = match signature {
            Some(signature) => {
                databot_sdk::verify::hmac_sha256("signing_secret", &request.body, &signature)?
            }
            None => false,
        };
        if request.transport == channel::Transport::Webhook && !verified {
            return Ok(channel::nothing());
        }
        let body = channel::json_body(&request)?;
        let field = |name: &str| body[name].as_str().map(str::to_owned);
        let message = InboundMessage {
            event_id: field("id").unwrap_or_default(),
            sender: field("user").unwrap_or_default(),
            sender_name: None,
            from_bot: false,
            not_a_message: false,
            chat: field("chat").unwrap_or_default(),
            thread: field("thread"),
            workspace: None,
            addressed: Addressed::Direct,
            text: field("text").unwrap_or_default(),
            attachments: Vec::new(),
            reply_context: None,
        };
        Ok(Received { response: None, messages: vec![message] })
    }

    fn send(message: Outgoing) -> Result<String, SendError> {
        let body = json!({
            "chat": message.chat,
            "thread": message.thread,
            "text": render(&message.text, Dialect::Slack),
        });
        let url = format!("{}/messages", api().map_err(channel::failed)?);
        let response = http::send(&Request::post_json(url, &body)).map_err(channel::failed)?;
        let answer: Value = serde_json::from_slice(&channel::check_status(response, "POST /messages")?)
            .map_err(|e| channel::failed(PluginError::Failed(e.to_string())))?;
        Ok(answer["id"].as_str().unwrap_or_default().to_owned())
    }

    fn update(handle: String, message: Outgoing) -> Result<(), SendError> {
        let url = format!("{}/messages/{handle}", api().map_err(channel::failed)?);
        let mut request = Request::post_json(url, &json!({ "text": render(&message.text, Dialect::Slack) }));
        request.method = "PUT";
        let response = http::send(&request).map_err(channel::failed)?;
        channel::check_status(response, "PUT /messages").map(drop)
    }
}

databot_sdk::channel!(Webhook);
"#
        .to_owned(),
    };
    format!("{header}{body}")
}
