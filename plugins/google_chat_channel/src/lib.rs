//! Google Chat as a databot channel.
//!
//! In: the app's HTTP endpoint (`/channels/google_chat`). Every event carries
//! `Authorization: Bearer JWT`, signed by Google: the host checks it against the key set, the
//! issuers and the audiences the operator configured (`verify` key `google`). `MESSAGE`
//! events in direct messages and mentions in spaces are passed on, with the message's thread
//! (a thread is its own conversation); the app's own messages and other events are not.
//!
//! Out: `spaces.messages.create` in the thread of the message answered, and
//! `spaces.messages.patch` (`updateMask=text`) for streamed edits. The service account's
//! access token is minted and added by the host (an endpoint with
//! `auth: {type: google_service_account, ...}`), never seen here.
//!
//! Config (`plugins.google_chat.config`): `api` (default `https://chat.googleapis.com`),
//! `jwt_key` (the verify key's name, default `google`).

use databot_sdk::channel::{
    self, Addressed, Channel, ChannelLimits, InboundMessage, InboundRequest, Outgoing, Received,
    SendError,
};
use databot_sdk::http::{self, Request};
use databot_sdk::markdown::{Dialect, render};
use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "google_chat",
    kind: "channel",
    description: "Google Chat: app events in, threaded and streamed replies out.",
    capabilities: ["http", "verify", "config"],
}

fn verified(request: &InboundRequest) -> Result<bool, PluginError> {
    let Some(token) =
        channel::header(request, "authorization").and_then(|value| value.strip_prefix("Bearer "))
    else {
        return Ok(false);
    };
    Ok(databot_sdk::verify::jwt(&channel::setting("jwt_key", "google"), token.trim())?.is_some())
}

fn event_message(event: &Value) -> Option<InboundMessage> {
    let kind = event["type"].as_str()?;
    let message = &event["message"];
    let space = if event["space"].is_object() {
        &event["space"]
    } else {
        &message["space"]
    };
    let direct = space["type"].as_str() == Some("DM")
        || space["spaceType"].as_str() == Some("DIRECT_MESSAGE")
        || space["singleUserBotDm"].as_bool() == Some(true);
    let sender = &message["sender"];
    let text = channel::text_of(message, "argumentText")
        .or_else(|| channel::text_of(message, "text"))
        .unwrap_or_default();
    let attachments = message["attachment"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let fields = channel::AttachmentFields {
                name: "contentName",
                mime_type: "contentType",
                size: None,
                url: Some("downloadUri"),
            };
            channel::attachment(a, &fields, "")
        })
        .collect();
    Some(InboundMessage {
        event_id: channel::text_of(message, "name")?,
        sender: channel::text_of(sender, "name")?,
        sender_name: channel::text_of(sender, "displayName"),
        from_bot: sender["type"].as_str() == Some("BOT"),
        not_a_message: kind != "MESSAGE",
        chat: channel::text_of(space, "name")?,
        thread: if direct {
            None
        } else {
            message["thread"]["name"].as_str().map(str::to_owned)
        },
        workspace: None,
        // In a space Google Chat sends the app only the messages that mention it.
        addressed: if direct {
            Addressed::Direct
        } else {
            Addressed::Mention
        },
        text: text.trim().to_owned(),
        attachments,
        reply_context: None,
    })
}

struct GoogleChat;

impl Channel for GoogleChat {
    fn limits() -> ChannelLimits {
        ChannelLimits {
            max_message_chars: 4000,
            min_edit_interval_ms: 1000,
        }
    }

    fn receive(request: InboundRequest) -> Result<Received, PluginError> {
        if request.transport == channel::Transport::Webhook && !verified(&request)? {
            return Ok(channel::nothing());
        }
        let event = channel::json_body(&request)?;
        Ok(Received {
            // An empty synchronous answer: the reply comes through the Chat API.
            response: Some(channel::respond_json(200, &json!({}))),
            messages: event_message(&event).into_iter().collect(),
        })
    }

    fn send(message: Outgoing) -> Result<String, SendError> {
        let mut body = json!({ "text": render(&message.text, Dialect::Slack) });
        let mut url = format!(
            "{}/v1/{}/messages",
            channel::api_base("https://chat.googleapis.com"),
            message.chat
        );
        if let Some(thread) = &message.thread {
            body["thread"] = json!({ "name": thread });
            url.push_str("?messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD");
        }
        let response = http::send(&Request::post_json(url, &body)).map_err(channel::failed)?;
        let bytes = channel::check_status(response, "spaces.messages.create")?;
        let created: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        channel::text_of(&created, "name").ok_or_else(|| {
            channel::failed(PluginError::Failed(
                "spaces.messages.create returned no message name".into(),
            ))
        })
    }

    fn update(handle: String, message: Outgoing) -> Result<(), SendError> {
        if !handle.starts_with("spaces/") || handle.contains("..") {
            return Err(channel::failed(PluginError::InvalidInput(format!(
                "not a Google Chat message name: {handle}"
            ))));
        }
        let url = format!(
            "{}/v1/{handle}?updateMask=text",
            channel::api_base("https://chat.googleapis.com")
        );
        let mut request = Request::post_json(
            url,
            &json!({ "text": render(&message.text, Dialect::Slack) }),
        );
        request.method = "PATCH";
        let response = http::send(&request).map_err(channel::failed)?;
        channel::check_status(response, "spaces.messages.patch").map(drop)
    }
}

databot_sdk::channel!(GoogleChat);
