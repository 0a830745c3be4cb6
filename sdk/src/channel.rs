//! Channel plugins: implement [`Channel`] and export it with [`channel!`](crate::channel).
//!
//! The host calls `receive` with each request to `/channels/NAME` (and with frames of the
//! connections it holds for the platform); the plugin verifies it through
//! [`verify`](crate::verify) (the host holds the secrets and answers 401 unless a check
//! passed), answers the platform's handshake in `Received::response`, and returns the
//! messages for the agent. `send` and `update` post and edit the agent's answers; the host
//! splits long answers, throttles edits and waits out rate limits reported as
//! [`SendError::RateLimited`].
//!
//! ```ignore
//! struct Echo;
//! impl databot_sdk::channel::Channel for Echo { /* limits, receive, send, update */ }
//! databot_sdk::channel!(Echo);
//! ```

use crate::PluginError;

pub use crate::worlds::channel::exports::databot::plugin::chat_channel::{
    Addressed, Attachment, ChannelLimits, HttpResponse, InboundMessage, InboundRequest, Outgoing,
    Received, SendError, Transport,
};

/// What a channel plugin implements.
pub trait Channel {
    /// The platform's message length and edit rate.
    fn limits() -> ChannelLimits;
    /// Verify one request and turn it into an immediate answer and messages.
    fn receive(request: InboundRequest) -> Result<Received, PluginError>;
    /// Post a message; its handle (whatever `update` needs to find it again).
    fn send(message: Outgoing) -> Result<String, SendError>;
    /// Replace the text of a posted message.
    fn update(handle: String, message: Outgoing) -> Result<(), SendError>;
    /// Whether the platform is reachable with the configured credentials.
    fn check_health() -> crate::Health {
        crate::Health {
            status: crate::HealthStatus::Healthy,
            message: "no check implemented".into(),
        }
    }
}

/// The first value of a header (names are lower case in requests from the host).
pub fn header<'a>(request: &'a InboundRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The value of a query parameter (percent-decoded).
pub fn query_param(request: &InboundRequest, name: &str) -> Option<String> {
    request.query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A string setting of the channel (`plugins.NAME.config.KEY`), or `default`.
pub fn setting(key: &str, default: &str) -> String {
    crate::config_value::<String>(key)
        .ok()
        .flatten()
        .unwrap_or_else(|| default.to_owned())
}

/// The base URL of the platform's API: the `api` setting or `default`, without a trailing `/`.
pub fn api_base(default: &str) -> String {
    setting("api", default).trim_end_matches('/').to_owned()
}

/// A string field of a JSON object.
pub fn text_of(value: &serde_json::Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// Bytes from hexadecimal text (either case); `None` when it is not hex.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Nothing to answer and no messages (the host answers 200).
pub fn nothing() -> Received {
    Received {
        response: None,
        messages: Vec::new(),
    }
}

/// An immediate answer with a JSON body.
pub fn respond_json(status: u16, body: &serde_json::Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// An immediate answer with a plain-text body.
pub fn respond_text(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: body.as_bytes().to_vec(),
    }
}

/// The request body as JSON.
pub fn json_body(request: &InboundRequest) -> Result<serde_json::Value, PluginError> {
    serde_json::from_slice(&request.body)
        .map_err(|e| PluginError::InvalidInput(format!("the request body is not JSON: {e}")))
}

/// Seconds since the Unix epoch (for signature timestamps).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A platform's answer as a send outcome: 2xx is `Ok`, 429 is `RateLimited` with the wait
/// it asked for (`Retry-After`, or a second), anything else a failure naming the status.
pub fn check_status(response: crate::http::Response, what: &str) -> Result<Vec<u8>, SendError> {
    let status = response.status;
    if status == 429 {
        let wait = crate::http::retry_after(&response)
            .unwrap_or(std::time::Duration::from_secs(1))
            .as_millis()
            .min(u128::from(u32::MAX)) as u32;
        return Err(SendError::RateLimited(wait.max(1)));
    }
    let (body, _) = response
        .read_capped(1024 * 1024)
        .map_err(SendError::Failed)?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(SendError::Failed(crate::http::status_error(
            status,
            &format!("{what}: {}", String::from_utf8_lossy(&body)),
        )))
    }
}

/// A transport or protocol failure as a send error.
pub fn failed(error: PluginError) -> SendError {
    SendError::Failed(error)
}

/// A health answer from a probe made with the plugin's send path (`auth.test`, `getMe`): a
/// rate limit means the platform is there but busy.
pub fn health_from_send<T>(probe: Result<T, SendError>, healthy: &str) -> crate::Health {
    crate::http::health_from(
        probe.map_err(|error| match error {
            SendError::Failed(error) => error,
            SendError::RateLimited(ms) => {
                PluginError::Unavailable(format!("rate limited for {ms} ms"))
            }
        }),
        healthy,
    )
}

/// Where a platform keeps an attachment's metadata in its JSON object.
pub struct AttachmentFields<'a> {
    pub name: &'a str,
    pub mime_type: &'a str,
    pub size: Option<&'a str>,
    pub url: Option<&'a str>,
}

/// An attachment's metadata read from `item` (the file itself is never fetched); `fallback`
/// names it when the platform gives no name.
pub fn attachment(
    item: &serde_json::Value,
    fields: &AttachmentFields,
    fallback: &str,
) -> Attachment {
    Attachment {
        name: text_of(item, fields.name).unwrap_or_else(|| fallback.to_owned()),
        mime_type: text_of(item, fields.mime_type),
        size: fields
            .size
            .and_then(|key| item.get(key))
            .and_then(serde_json::Value::as_u64),
        url: fields.url.and_then(|key| text_of(item, key)),
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::worlds::channel::exports::databot::plugin::chat_channel::Guest;
}

/// Export a type implementing [`Channel`] as the plugin's `chat-channel`.
#[macro_export]
macro_rules! channel {
    ($channel:ty) => {
        struct __DatabotChannel;

        impl $crate::channel::__private::Guest for __DatabotChannel {
            fn limits() -> $crate::channel::ChannelLimits {
                <$channel as $crate::channel::Channel>::limits()
            }

            fn receive(
                request: $crate::channel::InboundRequest,
            ) -> ::std::result::Result<$crate::channel::Received, $crate::PluginError> {
                <$channel as $crate::channel::Channel>::receive(request)
            }

            fn send(
                message: $crate::channel::Outgoing,
            ) -> ::std::result::Result<::std::string::String, $crate::channel::SendError> {
                <$channel as $crate::channel::Channel>::send(message)
            }

            fn update(
                handle: ::std::string::String,
                message: $crate::channel::Outgoing,
            ) -> ::std::result::Result<(), $crate::channel::SendError> {
                <$channel as $crate::channel::Channel>::update(handle, message)
            }

            fn check_health() -> $crate::Health {
                <$channel as $crate::channel::Channel>::check_health()
            }
        }

        $crate::worlds::channel::export_channel_world!(__DatabotChannel);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_plus_escapes_and_stray_percents() {
        assert_eq!(percent_decode("a+b%20c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A4"), "ä");
    }

    #[test]
    fn hex_decoding_refuses_odd_lengths_and_non_hex() {
        assert_eq!(decode_hex("00ffAB"), Some(vec![0, 255, 171]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("é0"), None);
    }
}
