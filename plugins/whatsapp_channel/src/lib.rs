//! WhatsApp (Cloud API) as a databot channel.
//!
//! In: the webhook at `/channels/whatsapp`. The subscription handshake is a GET with
//! `hub.mode=subscribe`, `hub.verify_token` (compared by the host with the verify key) and
//! `hub.challenge`, echoed as the body. Deliveries are POSTs signed with
//! `X-Hub-Signature-256: sha256=HEX`, HMAC-SHA256 of the body under the app secret (checked by
//! the host). Each text message is passed on with its `wamid` as event id; delivery and read
//! statuses are not messages.
//!
//! Out: `POST /PHONE_NUMBER_ID/messages` (the access token is added by the host), rendered in
//! WhatsApp's formatting. WhatsApp cannot edit messages, so answers are sent once, whole.
//!
//! Config (`plugins.whatsapp.config`): `api` (default `https://graph.facebook.com/v21.0`),
//! `phone_number_id` (the sender for messages that answer nothing), `app_secret_key` and
//! `verify_token_key` (the verify keys' names, default `app_secret` and `verify_token`).

use databot_sdk::channel::{
    self, Addressed, Channel, ChannelLimits, InboundMessage, InboundRequest, Outgoing, Received,
    SendError,
};
use databot_sdk::http::{self, Request};
use databot_sdk::markdown::{Dialect, render};
use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "whatsapp",
    kind: "channel",
    description: "WhatsApp Cloud API: messages in, replies out.",
    capabilities: ["http", "verify", "config"],
}

/// The verify-token handshake: the challenge to echo when the token is right.
fn handshake(request: &InboundRequest) -> Result<Option<String>, PluginError> {
    if channel::query_param(request, "hub.mode").as_deref() != Some("subscribe") {
        return Ok(None);
    }
    let (Some(token), Some(challenge)) = (
        channel::query_param(request, "hub.verify_token"),
        channel::query_param(request, "hub.challenge"),
    ) else {
        return Ok(None);
    };
    let key = channel::setting("verify_token_key", "verify_token");
    Ok(databot_sdk::verify::secret_equals(&key, token.as_bytes())?.then_some(challenge))
}

fn signed(request: &InboundRequest) -> Result<bool, PluginError> {
    let Some(mac) = channel::header(request, "x-hub-signature-256")
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(channel::decode_hex)
    else {
        return Ok(false);
    };
    let key = channel::setting("app_secret_key", "app_secret");
    databot_sdk::verify::hmac_sha256(&key, &request.body, &mac)
}

fn messages(payload: &Value) -> Vec<InboundMessage> {
    let mut found = Vec::new();
    for entry in payload["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            let phone_number_id = value["metadata"]["phone_number_id"]
                .as_str()
                .map(str::to_owned);
            let names: Vec<(String, String)> = value["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((
                        channel::text_of(c, "wa_id")?,
                        c["profile"]["name"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            for message in value["messages"].as_array().into_iter().flatten() {
                let (Some(id), Some(from)) = (
                    channel::text_of(message, "id"),
                    channel::text_of(message, "from"),
                ) else {
                    continue;
                };
                let kind = channel::text_of(message, "type").unwrap_or_default();
                let text = match kind.as_str() {
                    "text" => message["text"]["body"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    "button" => message["button"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    "interactive" => message["interactive"]["button_reply"]["title"]
                        .as_str()
                        .or_else(|| message["interactive"]["list_reply"]["title"].as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    _ => message[&kind]["caption"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                };
                let attachments = ["image", "document", "audio", "video", "sticker"]
                    .iter()
                    .filter_map(|media| {
                        let item = message.get(*media)?;
                        let fields = channel::AttachmentFields {
                            name: "filename",
                            mime_type: "mime_type",
                            size: None,
                            url: None,
                        };
                        Some(channel::attachment(item, &fields, media))
                    })
                    .collect();
                found.push(InboundMessage {
                    event_id: id,
                    sender_name: names
                        .iter()
                        .find(|(wa, _)| *wa == from)
                        .map(|(_, n)| n.clone()),
                    sender: from.clone(),
                    from_bot: false,
                    not_a_message: kind == "reaction" || kind == "unsupported" || kind == "system",
                    chat: from,
                    thread: None,
                    workspace: phone_number_id.clone(),
                    addressed: Addressed::Direct,
                    text,
                    attachments,
                    reply_context: phone_number_id.clone(),
                });
            }
        }
    }
    found
}

struct WhatsApp;

impl Channel for WhatsApp {
    fn limits() -> ChannelLimits {
        ChannelLimits {
            max_message_chars: 4000,
            min_edit_interval_ms: 0,
        }
    }

    fn receive(request: InboundRequest) -> Result<Received, PluginError> {
        if request.method == "GET" {
            return Ok(match handshake(&request)? {
                Some(challenge) => Received {
                    response: Some(channel::respond_text(200, &challenge)),
                    messages: Vec::new(),
                },
                None => channel::nothing(),
            });
        }
        if request.transport == channel::Transport::Webhook && !signed(&request)? {
            return Ok(channel::nothing());
        }
        let payload = channel::json_body(&request)?;
        Ok(Received {
            response: None,
            messages: messages(&payload),
        })
    }

    fn send(message: Outgoing) -> Result<String, SendError> {
        let phone_number_id = message
            .reply_context
            .clone()
            .or_else(|| databot_sdk::config_value::<String>("phone_number_id").ok().flatten())
            .ok_or_else(|| {
                channel::failed(PluginError::Denied(
                    "set plugins.whatsapp.config.phone_number_id to send messages that answer nothing".into(),
                ))
            })?;
        let url = format!(
            "{}/{phone_number_id}/messages",
            channel::api_base("https://graph.facebook.com/v21.0")
        );
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.chat,
            "type": "text",
            "text": {"body": render(&message.text, Dialect::WhatsApp), "preview_url": false},
        });
        let response = http::send(&Request::post_json(url, &body)).map_err(channel::failed)?;
        let bytes = channel::check_status(response, "messages")?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(answer["messages"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    fn update(_handle: String, _message: Outgoing) -> Result<(), SendError> {
        Err(channel::failed(PluginError::InvalidInput(
            "WhatsApp messages cannot be edited".into(),
        )))
    }
}

databot_sdk::channel!(WhatsApp);
