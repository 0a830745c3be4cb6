//! Telegram as a databot channel.
//!
//! In: Bot API updates (`setWebhook` with a `secret_token`) on `/channels/telegram`, verified by
//! the host comparing `X-Telegram-Bot-Api-Secret-Token` with the verify key; deduplicated on
//! `update_id`. Private chats are direct messages; in groups the bot answers mentions of its
//! `bot_username`, commands and replies to its own messages. Edited messages, joins and other
//! service messages are not new messages.
//!
//! Out: `sendMessage` (a reply to the message answered, in its forum topic) and
//! `editMessageText`, in HTML parse mode. The bot token is in the URL path
//! (`/bot<token>/METHOD`): the host adds it as a path prefix, so this plugin calls
//! `API/METHOD` and never holds it.
//!
//! Config (`plugins.telegram.config`): `api` (default `https://api.telegram.org`),
//! `bot_username` (without `@`, for mentions in groups), `secret_key` (the verify key's
//! name, default `secret_token`).

use databot_sdk::channel::{
    self, Addressed, Channel, ChannelLimits, InboundMessage, InboundRequest, Outgoing, Received,
    SendError,
};
use databot_sdk::http::{self, Request};
use databot_sdk::markdown::{Dialect, render};
use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "telegram",
    kind: "channel",
    description: "Telegram: Bot API updates in, replies and streamed edits out.",
    capabilities: ["http", "verify", "config"],
}

fn verified(request: &InboundRequest) -> Result<bool, PluginError> {
    match channel::header(request, "x-telegram-bot-api-secret-token") {
        Some(token) => databot_sdk::verify::secret_equals(
            &channel::setting("secret_key", "secret_token"),
            token.as_bytes(),
        ),
        None => Ok(false),
    }
}

fn id_of(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The message an update carries, and whether it is a new one.
fn update_message(update: &Value) -> Option<(&Value, bool)> {
    if let Some(message) = update.get("message") {
        return Some((message, true));
    }
    for kind in ["edited_message", "channel_post", "edited_channel_post"] {
        if let Some(message) = update.get(kind) {
            return Some((message, false));
        }
    }
    None
}

fn inbound(update: &Value) -> Option<InboundMessage> {
    let event_id = id_of(update, "update_id")?;
    let (message, new) = update_message(update)?;
    let chat = message.get("chat")?;
    let from = message.get("from").cloned().unwrap_or(Value::Null);
    let bot = channel::setting("bot_username", "");
    let text = channel::text_of(message, "text")
        .or_else(|| channel::text_of(message, "caption"))
        .unwrap_or_default();
    let private = chat.get("type").and_then(Value::as_str) == Some("private");
    let mention = find_mention(&text, &bot).is_some();
    let command = text.starts_with('/');
    let reply_to_bot = message
        .get("reply_to_message")
        .and_then(|r| r.get("from"))
        .is_some_and(|f| {
            f.get("is_bot").and_then(Value::as_bool) == Some(true)
                && !bot.is_empty()
                && channel::text_of(f, "username").is_some_and(|u| u.eq_ignore_ascii_case(&bot))
        });
    let addressed = if private {
        Addressed::Direct
    } else if mention || command || reply_to_bot {
        Addressed::Mention
    } else {
        Addressed::Ambient
    };
    let service = message.get("new_chat_members").is_some()
        || message.get("left_chat_member").is_some()
        || message.get("pinned_message").is_some();
    let name = [
        channel::text_of(&from, "first_name"),
        channel::text_of(&from, "last_name"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let cleaned = if bot.is_empty() {
        text.trim().to_owned()
    } else {
        strip_mention(&text, &bot)
    };
    let attachments = ["document", "photo", "audio", "video", "voice"]
        .iter()
        .filter_map(|kind| {
            let item = message.get(*kind)?;
            let item = item.as_array().and_then(|a| a.last()).unwrap_or(item);
            let fields = channel::AttachmentFields {
                name: "file_name",
                mime_type: "mime_type",
                size: Some("file_size"),
                url: None,
            };
            Some(channel::attachment(item, &fields, kind))
        })
        .collect();
    Some(InboundMessage {
        event_id,
        sender: id_of(&from, "id").unwrap_or_default(),
        sender_name: (!name.is_empty())
            .then_some(name)
            .or_else(|| channel::text_of(&from, "username")),
        from_bot: from.get("is_bot").and_then(Value::as_bool) == Some(true),
        not_a_message: !new || service,
        chat: id_of(chat, "id")?,
        // Only forum topics are threads; Telegram sets `message_thread_id` on replies in
        // ordinary supergroups too, where sending it back fails.
        thread: (message["is_topic_message"].as_bool() == Some(true))
            .then(|| id_of(message, "message_thread_id"))
            .flatten(),
        workspace: None,
        addressed,
        text: cleaned,
        attachments,
        reply_context: id_of(message, "message_id"),
    })
}

/// Where `@bot` starts in `text` (ASCII case-insensitive: Telegram usernames are ASCII), as a
/// byte offset on a character boundary; the match is ASCII, so its end is one too.
fn find_mention(text: &str, bot: &str) -> Option<usize> {
    let needle = format!("@{bot}");
    if bot.is_empty() || !needle.is_ascii() {
        return None;
    }
    text.char_indices().map(|(at, _)| at).find(|&at| {
        text.as_bytes()
            .get(at..at + needle.len())
            .is_some_and(|bytes| bytes.eq_ignore_ascii_case(needle.as_bytes()))
    })
}

/// `text` without `@bot`.
fn strip_mention(text: &str, bot: &str) -> String {
    match find_mention(text, bot) {
        Some(at) => format!("{}{}", &text[..at], &text[at + bot.len() + 1..])
            .trim()
            .to_owned(),
        None => text.trim().to_owned(),
    }
}

struct Telegram;

impl Channel for Telegram {
    fn limits() -> ChannelLimits {
        // 4096 after entities are parsed; markup is not counted, a margin is kept for the
        // rare characters that count twice.
        ChannelLimits {
            max_message_chars: 4000,
            min_edit_interval_ms: 1000,
        }
    }

    fn receive(request: InboundRequest) -> Result<Received, PluginError> {
        if request.transport == channel::Transport::Webhook && !verified(&request)? {
            return Ok(channel::nothing());
        }
        let update = channel::json_body(&request)?;
        Ok(Received {
            response: None,
            messages: inbound(&update).into_iter().collect(),
        })
    }

    fn send(message: Outgoing) -> Result<String, SendError> {
        let mut body = json!({
            "chat_id": message.chat,
            "text": render(&message.text, Dialect::TelegramHtml),
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        if let Some(thread) = &message.thread {
            body["message_thread_id"] = json!(thread.parse::<i64>().unwrap_or_default());
        }
        if let Some(reply_to) = message
            .reply_context
            .as_deref()
            .and_then(|m| m.parse::<i64>().ok())
        {
            body["reply_parameters"] =
                json!({"message_id": reply_to, "allow_sending_without_reply": true});
        }
        let result = call("sendMessage", &body)?;
        let id = result
            .get("message_id")
            .map(Value::to_string)
            .ok_or_else(|| {
                channel::failed(PluginError::Failed(
                    "sendMessage returned no message_id".into(),
                ))
            })?;
        Ok(format!("{}|{id}", message.chat))
    }

    fn update(handle: String, message: Outgoing) -> Result<(), SendError> {
        let (chat, id) = handle.split_once('|').ok_or_else(|| {
            channel::failed(PluginError::InvalidInput(format!(
                "not a Telegram message handle: {handle}"
            )))
        })?;
        let body = json!({
            "chat_id": chat,
            "message_id": id.parse::<i64>().unwrap_or_default(),
            "text": render(&message.text, Dialect::TelegramHtml),
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        match call("editMessageText", &body) {
            Ok(_) => Ok(()),
            // Editing to the same text is refused by Telegram and changes nothing.
            Err(SendError::Failed(PluginError::Failed(reason)))
                if reason.contains("message is not modified") =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn check_health() -> databot_sdk::Health {
        channel::health_from_send(call("getMe", &json!({})), "getMe passed")
    }
}

/// One Bot API call: `{"ok": true, "result": ...}`, or the error Telegram described; a 429's
/// wait comes from `parameters.retry_after` (or `Retry-After`).
fn call(method: &str, body: &Value) -> Result<Value, SendError> {
    let request = Request::post_json(
        format!("{}/{method}", channel::api_base("https://api.telegram.org")),
        body,
    );
    let response = http::send(&request).map_err(channel::failed)?;
    let status = response.status;
    let header_wait = http::retry_after(&response);
    let (bytes, _) = response.read_capped(1024 * 1024).map_err(channel::failed)?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status == 429 {
        let seconds = answer["parameters"]["retry_after"]
            .as_u64()
            .map(std::time::Duration::from_secs)
            .or(header_wait)
            .unwrap_or(std::time::Duration::from_secs(1));
        return Err(SendError::RateLimited(
            seconds.as_millis().clamp(1, u128::from(u32::MAX)) as u32,
        ));
    }
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
    }
    let description =
        channel::text_of(&answer, "description").unwrap_or_else(|| format!("HTTP {status}"));
    Err(channel::failed(PluginError::Failed(format!(
        "Telegram {method} failed: {description}"
    ))))
}

databot_sdk::channel!(Telegram);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_and_removed_whatever_the_text_around_them() {
        assert_eq!(
            strip_mention("@DataBot_Bot how many?", "databot_bot"),
            "how many?"
        );
        // Characters that change byte length when lower-cased, around the mention.
        let text = "\u{130}@databot_bot\u{e9}\u{2126}";
        assert_eq!(find_mention(text, "databot_bot"), Some(2));
        assert_eq!(strip_mention(text, "databot_bot"), "\u{130}\u{e9}\u{2126}");
        assert_eq!(find_mention("no mention here", "databot_bot"), None);
        assert_eq!(find_mention("@databot", "databot_bot"), None);
    }
}
