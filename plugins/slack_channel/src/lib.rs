//! Slack as a databot channel.
//!
//! In: the Events API (`app_mention`, `message` in direct messages and, when the operator
//! answers ambient messages, in channels) and slash commands, on `/channels/slack`. Each
//! request is verified by the host: HMAC-SHA256 under the signing secret over
//! `v0:TIMESTAMP:BODY`, the timestamp within five minutes. A mention arrives twice from Slack
//! (`app_mention` and `message`); only `app_mention` is passed on.
//!
//! Out, on the Web API (the bot token is added by the host), in the thread of the message
//! answered:
//! - streamed replies in a thread use Slack's native streaming (`chat.startStream`, then
//!   `chat.appendStream` with what was added, then `chat.stopStream`), which needs
//!   `permissions.state: true` to remember what each stream has shown; without it, or in a
//!   direct message (streams are thread replies), or with `config.streaming: edits`, a reply
//!   is posted (`chat.postMessage`, rendered as `mrkdwn`) and edited (`chat.update`);
//! - a slash command is answered through its `response_url` (which works where the bot is not
//!   a member), once the answer is finished, and each invocation is its own conversation.
//!
//! Config (`plugins.slack.config`): `api` (default `https://slack.com/api`),
//! `signing_key` (the name of the verify key, default `signing_secret`), `streaming`
//! (`native`, the default, or `edits`).

use databot_sdk::channel::{
    self, Addressed, Channel, ChannelLimits, InboundMessage, InboundRequest, Outgoing, Received,
    SendError,
};
use databot_sdk::http::{self, Request};
use databot_sdk::markdown::{Dialect, render};
use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "slack",
    kind: "channel",
    description: "Slack: Events API and slash commands in, threaded and streamed replies out.",
    capabilities: ["http", "verify", "config", "state"],
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
                .map(|file| {
                    let fields = channel::AttachmentFields {
                        name: "name",
                        mime_type: "mimetype",
                        size: Some("size"),
                        url: Some("url_private"),
                    };
                    channel::attachment(file, &fields, "")
                })
                .collect()
        })
        .unwrap_or_default();
    let workspace = channel::text_of(event, "user_team")
        .or_else(|| channel::text_of(payload, "team_id"))
        .or_else(|| channel::text_of(event, "team"));
    let context = ReplyContext {
        user: Some(sender.clone()),
        team: workspace.clone(),
        response_url: None,
    };
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
        workspace,
        addressed,
        text: without_mention(&text, bot_user.as_deref()),
        attachments,
        reply_context: context.encode(),
    })
}

/// What a reply needs to know of the message it answers (`reply-context`).
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct ReplyContext {
    /// The sender and their workspace: a stream outside a direct message names its reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team: Option<String>,
    /// A slash command's reply address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_url: Option<String>,
}

impl ReplyContext {
    fn encode(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }

    fn of(message: &Outgoing) -> Self {
        message
            .reply_context
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

/// A slash command (`application/x-www-form-urlencoded`). Each invocation is a conversation of
/// its own (its trigger id stands in for a thread), so one user's command never carries
/// another's context.
fn command_message(request: &InboundRequest) -> Option<InboundMessage> {
    let form = InboundRequest {
        query: String::from_utf8_lossy(&request.body).into_owned(),
        ..request.clone()
    };
    let field = |name: &str| channel::query_param(&form, name);
    let command = field("command")?;
    let text = field("text").unwrap_or_default();
    let trigger = field("trigger_id")?;
    let sender = field("user_id")?;
    let context = ReplyContext {
        user: Some(sender.clone()),
        team: field("team_id"),
        response_url: field("response_url"),
    };
    Some(InboundMessage {
        event_id: trigger.clone(),
        sender,
        sender_name: field("user_name"),
        from_bot: false,
        not_a_message: false,
        chat: field("channel_id")?,
        thread: Some(format!("command-{trigger}")),
        workspace: field("team_id"),
        addressed: Addressed::Mention,
        text: if text.is_empty() { command } else { text },
        attachments: Vec::new(),
        reply_context: context.encode(),
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
        let context = ReplyContext::of(&message);
        if let Some(url) = context.response_url {
            // A slash command's answer goes out once, finished: an unfinished one is not
            // posted, and the empty handle tells the host to send the final text whole.
            if !message.finished {
                return Ok(String::new());
            }
            respond(&url, &message.text)?;
            return Ok(Handle::Command { url }.encode());
        }
        if !message.finished
            && let Some(thread) = &message.thread
            && let Some(handle) = stream::start(&message, thread, &context)?
        {
            return Ok(handle.encode());
        }
        post(&message)
    }

    fn update(handle: String, message: Outgoing) -> Result<(), SendError> {
        match Handle::decode(&handle)? {
            Handle::Message { chat, ts } => edit(&chat, &ts, &message.text),
            Handle::Stream { chat, ts } => stream::update(&chat, &ts, &message),
            // Posted finished and never shown before: there is nothing to edit.
            Handle::Command { .. } => Ok(()),
        }
    }

    fn check_health() -> databot_sdk::Health {
        channel::health_from_send(call("auth.test", &json!({})), "auth.test passed")
    }
}

/// What `send` returned, for `update` to find the message again.
#[derive(Debug, PartialEq)]
enum Handle {
    /// A posted message, edited with `chat.update`.
    Message { chat: String, ts: String },
    /// A native stream, appended to and stopped.
    Stream { chat: String, ts: String },
    /// A slash command's reply address.
    Command { url: String },
}

impl Handle {
    fn encode(&self) -> String {
        match self {
            Self::Message { chat, ts } => format!("message|{chat}|{ts}"),
            Self::Stream { chat, ts } => format!("stream|{chat}|{ts}"),
            Self::Command { url } => format!("command|{url}"),
        }
    }

    fn decode(handle: &str) -> Result<Self, SendError> {
        let invalid = || {
            channel::failed(PluginError::InvalidInput(format!(
                "not a Slack message handle: {handle}"
            )))
        };
        let (kind, rest) = handle.split_once('|').ok_or_else(invalid)?;
        if kind == "command" {
            return Ok(Self::Command {
                url: rest.to_owned(),
            });
        }
        let (chat, ts) = rest.split_once('|').ok_or_else(invalid)?;
        let (chat, ts) = (chat.to_owned(), ts.to_owned());
        match kind {
            "message" => Ok(Self::Message { chat, ts }),
            "stream" => Ok(Self::Stream { chat, ts }),
            _ => Err(invalid()),
        }
    }
}

/// Post a message (`chat.postMessage`, `mrkdwn`) in its thread; its handle.
fn post(message: &Outgoing) -> Result<String, SendError> {
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
    Ok(Handle::Message {
        chat: message.chat.clone(),
        ts,
    }
    .encode())
}

/// Replace a posted message's text (`chat.update`).
fn edit(chat: &str, ts: &str, text: &str) -> Result<(), SendError> {
    call(
        "chat.update",
        &json!({"channel": chat, "ts": ts, "text": render(text, Dialect::Slack)}),
    )
    .map(drop)
}

/// Answer a slash command through its `response_url`, visible to the channel. The URL comes
/// from the signed request; it must still start with `config.response_url_prefix` (Slack's
/// `https://hooks.slack.com/` by default).
fn respond(url: &str, text: &str) -> Result<(), SendError> {
    // Ending in `/`, the prefix fixes the whole authority: nothing can follow the host name.
    let mut prefix = channel::setting("response_url_prefix", "https://hooks.slack.com/");
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    if prefix.matches('/').count() < 3 || !url.starts_with(&prefix) {
        return Err(channel::failed(PluginError::InvalidInput(format!(
            "the slash command's response_url is not under {prefix}"
        ))));
    }
    let body = json!({
        "response_type": "in_channel",
        "text": render(text, Dialect::Slack),
        "mrkdwn": true,
    });
    let response =
        http::send(&Request::post_json(url.to_owned(), &body)).map_err(channel::failed)?;
    channel::check_status(response, "the slash command's response_url").map(drop)
}

/// Slack's native streaming. A stream shows Markdown as it is appended, so `update` sends
/// only what the text gained since the last call; what a stream has shown is kept in the
/// plugin's state under `stream/TS` until it stops.
mod stream {
    use super::*;

    /// Streams older than this are taken as abandoned (the host stopped mid-answer) and
    /// their state is removed when a new stream starts.
    const ABANDONED_AFTER_SECONDS: i64 = 3600;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Shown {
        text: String,
        started: i64,
    }

    fn key(ts: &str) -> String {
        format!("stream/{ts}")
    }

    /// The part of a live text that will not change: the host shows tool progress as a last
    /// paragraph in italics (`_Running …_`) and drops it when the answer goes on, and an
    /// appended stream cannot take text back, so that paragraph is never appended.
    pub(super) fn settled(text: &str) -> &str {
        let Some((before, last)) = text.trim_end().rsplit_once("\n\n") else {
            return if is_progress(text.trim()) { "" } else { text };
        };
        if is_progress(last.trim()) {
            before.trim_end()
        } else {
            text
        }
    }

    fn is_progress(paragraph: &str) -> bool {
        paragraph.len() > 2
            && paragraph.starts_with('_')
            && paragraph.ends_with('_')
            && !paragraph.contains('\n')
    }

    fn load(ts: &str) -> Option<Shown> {
        let bytes = databot_sdk::state::get(&key(ts)).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(ts: &str, shown: &Shown) -> Result<(), SendError> {
        let bytes = serde_json::to_vec(shown)
            .map_err(|e| channel::failed(PluginError::Failed(e.to_string())))?;
        databot_sdk::state::set(&key(ts), &bytes).map_err(channel::failed)
    }

    /// Whether native streaming is on and the plugin may keep state.
    fn available() -> bool {
        channel::setting("streaming", "native") == "native"
            && databot_sdk::state::list_keys("stream/").is_ok()
    }

    fn forget_abandoned() {
        let Ok(keys) = databot_sdk::state::list_keys("stream/") else {
            return;
        };
        let now = channel::unix_now();
        for key in keys {
            let stale = databot_sdk::state::get(&key)
                .ok()
                .flatten()
                .and_then(|bytes| serde_json::from_slice::<Shown>(&bytes).ok())
                .is_none_or(|shown| now - shown.started > ABANDONED_AFTER_SECONDS);
            if stale {
                let _ = databot_sdk::state::delete(&key);
            }
        }
    }

    /// Start a stream in `thread`, showing the message's text; `None` when streaming is not
    /// available here (the caller posts instead).
    pub(super) fn start(
        message: &Outgoing,
        thread: &str,
        context: &ReplyContext,
    ) -> Result<Option<Handle>, SendError> {
        if !available() {
            return Ok(None);
        }
        forget_abandoned();
        let first = settled(&message.text);
        let mut body = json!({"channel": message.chat, "thread_ts": thread});
        if !first.is_empty() {
            body["markdown_text"] = json!(first);
        }
        // Outside a direct message a stream names its reader.
        if let (Some(user), Some(team)) = (&context.user, &context.team) {
            body["recipient_user_id"] = json!(user);
            body["recipient_team_id"] = json!(team);
        }
        let answer = match call("chat.startStream", &body) {
            Ok(answer) => answer,
            Err(SendError::RateLimited(ms)) => return Err(SendError::RateLimited(ms)),
            // A workspace or conversation where streams are refused: post instead.
            Err(SendError::Failed(error)) => {
                databot_sdk::log::warn(&format!(
                    "chat.startStream failed, posting instead: {error:?}"
                ));
                return Ok(None);
            }
        };
        let ts = channel::text_of(&answer, "ts").ok_or_else(|| {
            channel::failed(PluginError::Failed(
                "chat.startStream returned no ts".into(),
            ))
        })?;
        let shown = Shown {
            text: first.to_owned(),
            started: channel::unix_now(),
        };
        if save(&ts, &shown).is_err() {
            // Without its record the stream cannot be appended to: stop it, and edit it as a
            // posted message from now on.
            let _ = call(
                "chat.stopStream",
                &json!({"channel": message.chat, "ts": ts}),
            );
            return Ok(Some(Handle::Message {
                chat: message.chat.clone(),
                ts,
            }));
        }
        Ok(Some(Handle::Stream {
            chat: message.chat.clone(),
            ts,
        }))
    }

    /// Append what the text gained; stop the stream on the finished text. A text that does
    /// not extend what was shown (progress replaced by the answer) waits for the finished
    /// one, which stops the stream and replaces the message whole.
    pub(super) fn update(chat: &str, ts: &str, message: &Outgoing) -> Result<(), SendError> {
        let Some(mut shown) = load(ts) else {
            // The state is gone (abandoned and swept): the message can still be replaced.
            if message.finished {
                let _ = call("chat.stopStream", &json!({"channel": chat, "ts": ts}));
                return edit(chat, ts, &message.text);
            }
            return Ok(());
        };
        if !message.finished {
            let live = settled(&message.text);
            if let Some(added) = live
                .strip_prefix(shown.text.as_str())
                .filter(|a| !a.is_empty())
            {
                call(
                    "chat.appendStream",
                    &json!({"channel": chat, "ts": ts, "markdown_text": added}),
                )?;
                shown.text = live.to_owned();
                save(ts, &shown)?;
            }
            return Ok(());
        }
        let added = message.text.strip_prefix(shown.text.as_str());
        let mut stop = json!({"channel": chat, "ts": ts});
        if let Some(added) = added.filter(|a| !a.is_empty()) {
            stop["markdown_text"] = json!(added);
        }
        call("chat.stopStream", &stop)?;
        if added.is_none() {
            edit(chat, ts, &message.text)?;
        }
        let _ = databot_sdk::state::delete(&key(ts));
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_progress_at_the_end_is_never_appended() {
        assert_eq!(
            stream::settled("Counting.\n\n_Running `sql_query`…_"),
            "Counting."
        );
        assert_eq!(stream::settled("_Running `sql_query`…_"), "");
        assert_eq!(
            stream::settled("Counting.\n\nThere are 3"),
            "Counting.\n\nThere are 3"
        );
        assert_eq!(stream::settled("a _b_"), "a _b_");
    }

    #[test]
    fn handles_round_trip_and_foreign_ones_are_refused() {
        for handle in [
            Handle::Message {
                chat: "C1".into(),
                ts: "1.2".into(),
            },
            Handle::Stream {
                chat: "C1".into(),
                ts: "1.3".into(),
            },
            Handle::Command {
                url: "https://hooks.slack.com/commands/T1/1/x".into(),
            },
        ] {
            assert_eq!(Handle::decode(&handle.encode()).unwrap(), handle);
        }
        assert!(Handle::decode("C1|1.2").is_err());
        assert!(Handle::decode("other|C1|1.2").is_err());
    }

    #[test]
    fn a_slash_command_is_its_own_conversation_and_keeps_its_response_url() {
        let body = "command=%2Fdatabot&text=how+many&trigger_id=9.8&user_id=U1&channel_id=C5&team_id=T1&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1%2F1%2Fx";
        let request = InboundRequest {
            transport: channel::Transport::Webhook,
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let message = command_message(&request).unwrap();
        assert_eq!(message.thread.as_deref(), Some("command-9.8"));
        assert_eq!(message.text, "how many");
        let outgoing = Outgoing {
            chat: "C5".into(),
            thread: message.thread.clone(),
            text: String::new(),
            reply_context: message.reply_context.clone(),
            finished: true,
        };
        let context = ReplyContext::of(&outgoing);
        assert_eq!(
            context.response_url.as_deref(),
            Some("https://hooks.slack.com/commands/T1/1/x")
        );
        assert_eq!(context.user.as_deref(), Some("U1"));
    }
}
