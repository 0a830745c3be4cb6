//! Slack as a databot channel.
//!
//! In: the Events API (`app_mention`, `message` in direct messages and, when the operator
//! answers ambient messages, in channels) and slash commands, on `/channels/slack`. Each
//! request is verified by the host: HMAC-SHA256 under the signing secret over
//! `v0:TIMESTAMP:BODY`, the timestamp within five minutes. A mention arrives twice from Slack
//! (`app_mention` and `message`); only `app_mention` is passed on.
//!
//! Out: `chat.postMessage` and `chat.update` on the Web API (the bot token is added by the
//! host), in the thread of the message answered, rendered as Slack `mrkdwn`.
//!
//! Config (`plugins.slack.config`): `api` (default `https://slack.com/api`),
//! `signing_key` (the name of the verify key, default `signing_secret`).

use databot_sdk::channel::{
    self, Addressed, Attachment, Channel, ChannelLimits, InboundMessage, InboundRequest, Outgoing,
    Received, SendError,
};
use databot_sdk::http::{self, Request};
use databot_sdk::markdown::{Dialect, render};
use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "slack",
    kind: "channel",
    description: "Slack: Events API and slash commands in, threaded and streamed replies out.",
    capabilities: ["http", "verify", "config"],
}

/// Slack's signature window, as its SDKs check it.
const MAX_AGE_SECONDS: i64 = 300;

/// Is the request signed by Slack within the window? (The host records a passed check.)
fn verified(request: &InboundRequest) -> Result<bool, PluginError> {
    let (Some(timestamp), Some(signature)) = (
        channel::header(request, "x-slack-request-timestamp"),
        channel::header(request, "x-slack-signature"),
    ) else {
        return Ok(false);
    };
    let Ok(seconds) = timestamp.trim().parse::<i64>() else {
        return Ok(false);
    };
    if channel::unix_now().abs_diff(seconds) > MAX_AGE_SECONDS.unsigned_abs() {
        return Ok(false);
    }
    let Some(hex) = signature.strip_prefix("v0=") else {
        return Ok(false);
    };
    let Some(mac) = channel::decode_hex(hex) else {
        return Ok(false);
    };
    let mut message = format!("v0:{timestamp}:").into_bytes();
    message.extend_from_slice(&request.body);
    databot_sdk::verify::hmac_sha256(
        &channel::setting("signing_key", "signing_secret"),
        &message,
        &mac,
    )
}

/// `<@U123>` mentions of the bot removed from a message's text.
fn without_mention(text: &str, bot: Option<&str>) -> String {
    match bot {
        Some(bot) => text.replace(&format!("<@{bot}>"), "").trim().to_owned(),
        None => text.trim().to_owned(),
    }
}

fn event_message(payload: &Value) -> Option<InboundMessage> {
    let event = payload.get("event")?;
    let kind = event.get("type")?.as_str()?;
    let bot_user = payload
        .get("authorizations")
        .and_then(|a| a.get(0))
        .and_then(|a| channel::text_of(a, "user_id"));
    let text = channel::text_of(event, "text").unwrap_or_default();
    let channel_type = channel::text_of(event, "channel_type");
    let subtype = channel::text_of(event, "subtype");
    let direct = channel_type.as_deref() == Some("im");
    let addressed = match kind {
        "app_mention" => Addressed::Mention,
        "message" if direct => Addressed::Direct,
        "message" => Addressed::Ambient,
        _ => return None,
    };
    let mentions_bot = bot_user
        .as_deref()
        .is_some_and(|bot| text.contains(&format!("<@{bot}>")));
    // Slack sends a mention as `app_mention` and again as `message`: one is enough.
    let duplicate_of_mention = kind == "message" && !direct && mentions_bot;
    let sender = channel::text_of(event, "user").unwrap_or_default();
    let from_bot = event.get("bot_id").is_some()
        || subtype.as_deref() == Some("bot_message")
        || bot_user.as_deref().is_some_and(|bot| bot == sender);
    let not_a_message = duplicate_of_mention
        || subtype
            .as_deref()
            .is_some_and(|s| s != "file_share" && s != "thread_broadcast");
    let ts = channel::text_of(event, "ts");
    let thread = channel::text_of(event, "thread_ts").or(if direct { None } else { ts.clone() });
    let attachments = event
        .get("files")
        .and_then(Value::as_array)
        .map(|files| {
            files
                .iter()
                .map(|file| Attachment {
                    name: channel::text_of(file, "name").unwrap_or_default(),
                    mime_type: channel::text_of(file, "mimetype"),
                    size: file.get("size").and_then(Value::as_u64),
                    url: channel::text_of(file, "url_private"),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(InboundMessage {
        event_id: channel::text_of(payload, "event_id")?,
        sender,
        sender_name: None,
        from_bot,
        not_a_message,
        chat: channel::text_of(event, "channel")?,
        thread,
        // The sender's own workspace: in a channel shared with another organisation (Slack
        // Connect) that is `user_team`, not the team the app is installed in.
        workspace: channel::text_of(event, "user_team")
            .or_else(|| channel::text_of(payload, "team_id"))
            .or_else(|| channel::text_of(event, "team")),
        addressed,
        text: without_mention(&text, bot_user.as_deref()),
        attachments,
        reply_context: None,
    })
}

/// A slash command (`application/x-www-form-urlencoded`).
fn command_message(request: &InboundRequest) -> Option<InboundMessage> {
    let form = InboundRequest {
        query: String::from_utf8_lossy(&request.body).into_owned(),
        ..request.clone()
    };
    let field = |name: &str| channel::query_param(&form, name);
    let command = field("command")?;
    let text = field("text").unwrap_or_default();
    Some(InboundMessage {
        event_id: field("trigger_id")?,
        sender: field("user_id")?,
        sender_name: field("user_name"),
        from_bot: false,
        not_a_message: false,
        chat: field("channel_id")?,
        thread: None,
        workspace: field("team_id"),
        addressed: Addressed::Mention,
        text: if text.is_empty() { command } else { text },
        attachments: Vec::new(),
        reply_context: None,
    })
}

/// Percent-encoding for a form value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Slack;

impl Channel for Slack {
    fn limits() -> ChannelLimits {
        ChannelLimits {
            max_message_chars: 3500,
            min_edit_interval_ms: 1000,
        }
    }

    fn receive(request: InboundRequest) -> Result<Received, PluginError> {
        if request.transport == channel::Transport::Webhook && !verified(&request)? {
            return Ok(channel::nothing());
        }
        // Chosen from the signed body, not from the unsigned `content-type`: an Events API
        // payload is a JSON object, a slash command a form.
        let form = request.body.first() != Some(&b'{');
        if form {
            return Ok(Received {
                response: None,
                messages: command_message(&request).into_iter().collect(),
            });
        }
        let payload = channel::json_body(&request)?;
        match payload.get("type").and_then(Value::as_str) {
            Some("url_verification") => {
                let challenge = channel::text_of(&payload, "challenge").unwrap_or_default();
                Ok(Received {
                    response: Some(channel::respond_json(
                        200,
                        &json!({ "challenge": challenge }),
                    )),
                    messages: Vec::new(),
                })
            }
            Some("event_callback") => Ok(Received {
                response: None,
                messages: event_message(&payload).into_iter().collect(),
            }),
            // A slash command through Socket Mode: the form's fields as a JSON object.
            None if payload.get("command").is_some() => {
                let form = payload
                    .as_object()
                    .map(|fields| {
                        fields
                            .iter()
                            .filter_map(|(k, v)| Some(format!("{k}={}", encode(v.as_str()?))))
                            .collect::<Vec<_>>()
                            .join("&")
                    })
                    .unwrap_or_default();
                let as_form = InboundRequest {
                    body: form.into_bytes(),
                    ..request.clone()
                };
                Ok(Received {
                    response: None,
                    messages: command_message(&as_form).into_iter().collect(),
                })
            }
            _ => Ok(channel::nothing()),
        }
    }

    fn send(message: Outgoing) -> Result<String, SendError> {
        let mut body = json!({
            "channel": message.chat,
            "text": render(&message.text, Dialect::Slack),
            "mrkdwn": true,
        });
        if let Some(thread) = &message.thread {
            body["thread_ts"] = json!(thread);
        }
        let answer = call("chat.postMessage", &body)?;
        let ts = channel::text_of(&answer, "ts").ok_or_else(|| {
            channel::failed(PluginError::Failed(
                "chat.postMessage returned no ts".into(),
            ))
        })?;
        Ok(format!("{}|{ts}", message.chat))
    }

    fn update(handle: String, message: Outgoing) -> Result<(), SendError> {
        let (chat, ts) = handle.split_once('|').ok_or_else(|| {
            channel::failed(PluginError::InvalidInput(format!(
                "not a Slack message handle: {handle}"
            )))
        })?;
        call(
            "chat.update",
            &json!({
                "channel": chat,
                "ts": ts,
                "text": render(&message.text, Dialect::Slack),
            }),
        )
        .map(drop)
    }

    fn check_health() -> databot_sdk::Health {
        http::health_from(
            call("auth.test", &json!({})).map_err(|e| match e {
                SendError::Failed(error) => error,
                SendError::RateLimited(ms) => {
                    PluginError::Unavailable(format!("rate limited for {ms} ms"))
                }
            }),
            "auth.test passed",
        )
    }
}

/// One Web API call; Slack answers HTTP 200 with `"ok": false` for most errors.
fn call(method: &str, body: &Value) -> Result<Value, SendError> {
    let request = Request::post_json(
        format!("{}/{method}", channel::api_base("https://slack.com/api")),
        body,
    );
    let response = http::send(&request).map_err(channel::failed)?;
    let bytes = channel::check_status(response, method)?;
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
        channel::failed(PluginError::Failed(format!(
            "{method} answered with something that is not JSON: {e}"
        )))
    })?;
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(answer);
    }
    let error = channel::text_of(&answer, "error").unwrap_or_else(|| "unknown error".into());
    if error == "ratelimited" {
        return Err(SendError::RateLimited(1000));
    }
    Err(channel::failed(PluginError::Failed(format!(
        "Slack {method} failed: {error}"
    ))))
}

databot_sdk::channel!(Slack);
