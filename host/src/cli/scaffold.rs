//! `databot plugin new`: a plugin crate per kind that builds to a working component.

use std::path::Path;

use anyhow::{Context, bail};

use super::plugin::{Kind, kind_name};

/// The SDK dependency line: the source tree's SDK when this binary was built from one.
fn sdk_dependency() -> String {
    let source_sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    match source_sdk.canonicalize() {
        Ok(path) => format!(
            "databot-sdk = {{ path = {:?} }}",
            path.display().to_string()
        ),
        Err(_) => format!("databot-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

pub fn create(kind: Kind, name: &str, dir: &Path) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("plugin name `{name}` must be lowercase letters, digits and `_`");
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
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
{sdk}
schemars = "1"
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1

# Keep this crate out of any enclosing workspace.
[workspace]
"#,
        sdk = sdk_dependency()
    );
    std::fs::write(dir.join("Cargo.toml"), cargo_toml)?;
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
    capabilities: ["logging"],
}}
"#,
        kind = kind_name(kind)
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
use databot_sdk::worlds::channel::exports::databot::plugin::channel_handler::Guest;
use databot_sdk::{Health, HealthStatus};

/// Accepts `{"body": "{\"text\": ...}"}` webhooks. Verify signatures before trusting input.
struct Channel;

impl Guest for Channel {
    fn receive(request: String) -> Result<String, PluginError> {
        let request: Value = serde_json::from_str(&request)
            .map_err(|e| PluginError::InvalidInput(e.to_string()))?;
        let body: Value = serde_json::from_str(request["body"].as_str().unwrap_or("{}"))
            .map_err(|e| PluginError::InvalidInput(e.to_string()))?;
        Ok(json!([{ "content": body["text"], "chat_id": "default", "sender_id": "webhook" }]).to_string())
    }

    fn send(message: String) -> Result<String, PluginError> {
        log::info(&format!("would deliver: {message}"));
        Ok(json!({ "delivered": true }).to_string())
    }

    fn check_health() -> Health {
        Health { status: HealthStatus::Healthy, message: "ok".into() }
    }
}

databot_sdk::worlds::channel::export_channel_world!(Channel);
"#
        .to_owned(),
    };
    format!("{header}{body}")
}
