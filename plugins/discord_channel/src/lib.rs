//! Discord as a databot channel.
//!
//! In: the interactions endpoint (`/channels/discord`): each request is verified by the host,
//! an Ed25519 signature of `X-Signature-Timestamp` followed by the body under the
//! application's public key. PING is answered with PONG; an application command is deferred at
//! once (`type: 5`, Discord shows "thinking") and handed to the agent with the interaction
//! token as its reply context.
//!
//! Out: the first part of an answer replaces the deferred response (`PATCH
//! /webhooks/APP/TOKEN/messages/@original`), further parts are follow-ups; edits go to the
//! same webhook message. Messages to a channel without an interaction (proactive sends) use
//! `POST /channels/ID/messages` with the bot token the host adds. Mentions never ping anyone
//! (`allowed_mentions: {parse: []}`).
//!
//! Config (`plugins.discord.config`): `api` (default `https://discord.com/api/v10`),
//! `public_key_name` (the verify key's name, default `public_key`).

use databot_sdk::channel::{
    self, Addressed, Channel, ChannelLimits, InboundMessage, InboundRequest, Outgoing, Received,
    SendError,
};
use databot_sdk::http::{self, Request};
use databot_sdk::markdown::{Dialect, render};
use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "discord",
    kind: "channel",
    description: "Discord: slash-command interactions in, deferred and streamed answers out.",
    capabilities: ["http", "verify", "config"],
}

const PING: u64 = 1;
const APPLICATION_COMMAND: u64 = 2;
/// Discord's `DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE`.
const DEFERRED: u64 = 5;
/// The `LOADING` flag of a deferred response not yet edited.
const LOADING_FLAG: u64 = 1 << 7;

fn verified(request: &InboundRequest) -> Result<bool, PluginError> {
    let (Some(signature), Some(timestamp)) = (
        channel::header(request, "x-signature-ed25519"),
        channel::header(request, "x-signature-timestamp"),
    ) else {
        return Ok(false);
    };
    let Some(signature) = channel::decode_hex(signature) else {
        return Ok(false);
    };
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(&request.body);
    databot_sdk::verify::ed25519(
        &channel::setting("public_key_name", "public_key"),
        &message,
        &signature,
    )
}

/// The words of a command: its options' values in order (sub-commands flattened).
fn command_text(data: &Value) -> String {
    fn collect(options: &Value, out: &mut Vec<String>) {
        for option in options.as_array().into_iter().flatten() {
            match option.get("value") {
                Some(Value::String(text)) => out.push(text.clone()),
                Some(value) => out.push(value.to_string()),
                None => {}
            }
            if let Some(nested) = option.get("options") {
                collect(nested, out);
            }
        }
    }
    let mut words = Vec::new();
    collect(data.get("options").unwrap_or(&Value::Null), &mut words);
    if words.is_empty() {
        channel::text_of(data, "name").unwrap_or_default()
    } else {
        words.join(" ")
    }
}

fn command_message(interaction: &Value) -> Option<InboundMessage> {
    let user = interaction
        .get("member")
        .and_then(|m| m.get("user"))
        .or_else(|| interaction.get("user"))?;
    let guild = channel::text_of(interaction, "guild_id");
    let data = interaction.get("data")?;
    Some(InboundMessage {
        event_id: channel::text_of(interaction, "id")?,
        sender: channel::text_of(user, "id")?,
        sender_name: channel::text_of(user, "global_name")
            .or_else(|| channel::text_of(user, "username")),
        from_bot: user.get("bot").and_then(Value::as_bool) == Some(true),
        not_a_message: false,
        chat: channel::text_of(interaction, "channel_id").or_else(|| {
            interaction
                .get("channel")
                .and_then(|c| channel::text_of(c, "id"))
        })?,
        thread: None,
        addressed: if guild.is_some() {
            Addressed::Mention
        } else {
            Addressed::Direct
        },
        workspace: guild,
        text: command_text(data),
        attachments: Vec::new(),
        reply_context: Some(format!(
            "interaction|{}|{}",
            channel::text_of(interaction, "application_id")?,
            channel::text_of(interaction, "token")?
        )),
    })
}

/// A `MESSAGE_CREATE` from the Gateway: a direct message outside guilds, a mention when it
/// names the bot, else ambient; the bot's `<@ID>` removed from the text.
fn gateway_message(dispatch: &Value, bot: Option<&str>) -> Option<InboundMessage> {
    if dispatch["t"].as_str() != Some("MESSAGE_CREATE") {
        return None;
    }
    let message = &dispatch["d"];
    let author = &message["author"];
    let guild = channel::text_of(message, "guild_id");
    let mentioned = bot.is_some_and(|bot| {
        message["mentions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["id"].as_str() == Some(bot))
    });
    let mut text = channel::text_of(message, "content").unwrap_or_default();
    if let Some(bot) = bot {
        text = text
            .replace(&format!("<@{bot}>"), "")
            .replace(&format!("<@!{bot}>"), "");
    }
    let id = channel::text_of(message, "id")?;
    let attachments = message["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let fields = channel::AttachmentFields {
                name: "filename",
                mime_type: "content_type",
                size: Some("size"),
                url: Some("url"),
            };
            channel::attachment(a, &fields, "")
        })
        .collect();
    Some(InboundMessage {
        event_id: id.clone(),
        sender: channel::text_of(author, "id")?,
        sender_name: channel::text_of(author, "global_name")
            .or_else(|| channel::text_of(author, "username")),
        from_bot: author["bot"].as_bool() == Some(true)
            || bot.is_some_and(|bot| author["id"].as_str() == Some(bot)),
        // Only plain messages and replies (types 0 and 19) are new messages.
        not_a_message: !matches!(message["type"].as_u64(), Some(0) | Some(19) | None),
        chat: channel::text_of(message, "channel_id")?,
        thread: None,
        addressed: if guild.is_none() {
            Addressed::Direct
        } else if mentioned {
            Addressed::Mention
        } else {
            Addressed::Ambient
        },
        workspace: guild,
        text: text.trim().to_owned(),
        attachments,
        reply_context: Some(format!("message|{id}")),
    })
}

struct Discord;

impl Channel for Discord {
    fn limits() -> ChannelLimits {
        ChannelLimits {
            max_message_chars: 1900,
            min_edit_interval_ms: 1000,
        }
    }

    fn receive(request: InboundRequest) -> Result<Received, PluginError> {
        if request.transport == channel::Transport::Connection {
            // A Gateway dispatch the host received on its own connection.
            let dispatch = channel::json_body(&request)?;
            let bot = channel::header(&request, "x-databot-bot-user");
            return Ok(Received {
                response: None,
                messages: gateway_message(&dispatch, bot).into_iter().collect(),
            });
        }
        if !verified(&request)? {
            return Ok(channel::nothing());
        }
        let interaction = channel::json_body(&request)?;
        match interaction.get("type").and_then(Value::as_u64) {
            Some(PING) => Ok(Received {
                response: Some(channel::respond_json(200, &json!({ "type": 1 }))),
                messages: Vec::new(),
            }),
            Some(APPLICATION_COMMAND) => Ok(Received {
                response: Some(channel::respond_json(200, &json!({ "type": DEFERRED }))),
                messages: command_message(&interaction).into_iter().collect(),
            }),
            _ => Ok(Received {
                response: Some(channel::respond_json(
                    400,
                    &json!({"error": "unsupported interaction type"}),
                )),
                messages: Vec::new(),
            }),
        }
    }

    fn send(message: Outgoing) -> Result<String, SendError> {
        let content = json!({
            "content": render(&message.text, Dialect::Discord),
            "allowed_mentions": {"parse": []},
        });
        let context: Vec<&str> = message
            .reply_context
            .as_deref()
            .map(|c| c.split('|').collect())
            .unwrap_or_default();
        match context.as_slice() {
            ["interaction", app, token] => {
                let webhook = format!(
                    "{}/webhooks/{app}/{token}",
                    channel::api_base("https://discord.com/api/v10")
                );
                // The first part replaces the deferred "thinking" response; later ones follow.
                let original = call("GET", &format!("{webhook}/messages/@original"), None)?;
                let loading = original["flags"].as_u64().unwrap_or(0) & LOADING_FLAG != 0;
                if loading {
                    call(
                        "PATCH",
                        &format!("{webhook}/messages/@original"),
                        Some(&content),
                    )?;
                    return Ok(format!("webhook|{app}|{token}|@original"));
                }
                let posted = call("POST", &format!("{webhook}?wait=true"), Some(&content))?;
                let id = channel::text_of(&posted, "id").unwrap_or_default();
                Ok(format!("webhook|{app}|{token}|{id}"))
            }
            reply => {
                let url = format!(
                    "{}/channels/{}/messages",
                    channel::api_base("https://discord.com/api/v10"),
                    message.chat
                );
                let mut content = content;
                // A reply to the message answered (a Gateway message), the first part only
                // matters to Discord, the rest read as a continuation.
                if let ["message", id] = reply {
                    content["message_reference"] =
                        json!({"message_id": id, "fail_if_not_exists": false});
                }
                let posted = call("POST", &url, Some(&content))?;
                let id = channel::text_of(&posted, "id").ok_or_else(|| {
                    channel::failed(PluginError::Failed("Discord returned no message id".into()))
                })?;
                Ok(format!("channel|{}|{id}", message.chat))
            }
        }
    }

    fn update(handle: String, message: Outgoing) -> Result<(), SendError> {
        let content = json!({
            "content": render(&message.text, Dialect::Discord),
            "allowed_mentions": {"parse": []},
        });
        let parts: Vec<&str> = handle.split('|').collect();
        let url = match parts.as_slice() {
            ["webhook", app, token, id] => {
                format!(
                    "{}/webhooks/{app}/{token}/messages/{id}",
                    channel::api_base("https://discord.com/api/v10")
                )
            }
            ["channel", chat, id] => format!(
                "{}/channels/{chat}/messages/{id}",
                channel::api_base("https://discord.com/api/v10")
            ),
            _ => {
                return Err(channel::failed(PluginError::InvalidInput(format!(
                    "not a Discord message handle: {handle}"
                ))));
            }
        };
        call("PATCH", &url, Some(&content)).map(drop)
    }

    fn check_health() -> databot_sdk::Health {
        channel::health_from_send(
            call(
                "GET",
                &format!(
                    "{}/users/@me",
                    channel::api_base("https://discord.com/api/v10")
                ),
                None,
            ),
            "the bot token is valid",
        )
    }
}

fn call(method: &'static str, url: &str, body: Option<&Value>) -> Result<Value, SendError> {
    let mut request = match body {
        Some(body) => Request::post_json(url, body),
        None => Request::get(url),
    };
    request.method = method;
    let response = http::send(&request).map_err(channel::failed)?;
    let bytes = channel::check_status(response, method)?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        channel::failed(PluginError::Failed(format!(
            "Discord answered with something that is not JSON: {e}"
        )))
    })
}

databot_sdk::channel!(Discord);
