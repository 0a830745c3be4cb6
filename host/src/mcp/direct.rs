//! `tools/call` answered without the MCP library's per-message machinery: the hot request of
//! an MCP session, recognised in its raw JSON-RPC bytes, run through the same
//! [`DatabotMcp::call`] as the library path, and answered with the same wire JSON (rmcp's
//! own result and message types, with the same adjustments for peers that negotiated a
//! version with an `initialize` handshake). Anything else, or any `tools/call` this module
//! does not fully understand (extra fields, a task request, protocol metadata in `_meta`),
//! is left to the library so that behaviour stays the library's.

use rmcp::model::{JsonObject, RequestId, ServerJsonRpcMessage, ServerResult};
use serde::Deserialize;
use tracing::Instrument;

use super::DatabotMcp;

/// The `_meta` keys a direct call understands: trace context (the library path reads the
/// same keys) and a progress token (databot's tools report no progress).
const DIRECT_META_KEYS: [&str; 4] = ["traceparent", "tracestate", "baggage", "progressToken"];

/// A `tools/call` request this module answers itself.
#[derive(Debug)]
pub struct DirectCall {
    id: RequestId,
    name: String,
    arguments: Option<JsonObject>,
    meta: Option<JsonObject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: std::borrow::Cow<'a, str>,
    id: RequestId,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
    #[serde(rename = "_meta", default)]
    meta: Option<JsonObject>,
}

/// A cancellation notice: a JSON-RPC 2.0 notification (no `id`) and the request it names.
#[derive(Deserialize)]
struct Cancellation<'a> {
    #[serde(borrow)]
    jsonrpc: std::borrow::Cow<'a, str>,
    #[serde(default)]
    id: Option<serde::de::IgnoredAny>,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    params: CancelledParams,
}

#[derive(Deserialize)]
struct CancelledParams {
    #[serde(rename = "requestId")]
    request_id: RequestId,
}

impl DirectCall {
    /// The call in `message` (one JSON-RPC message), or `None` when it is anything else or
    /// carries something only the library path handles.
    pub fn parse(message: &[u8]) -> Option<Self> {
        // Cheap refusal of everything that is plainly not a tool call.
        if !contains(message, b"tools/call") {
            return None;
        }
        let envelope: Envelope = serde_json::from_slice(message).ok()?;
        if envelope.jsonrpc != "2.0" || envelope.method != "tools/call" {
            return None;
        }
        let params = envelope.params;
        if let Some(meta) = &params.meta
            && meta
                .keys()
                .any(|key| !DIRECT_META_KEYS.contains(&key.as_str()))
        {
            return None;
        }
        Some(Self {
            id: envelope.id,
            name: params.name,
            arguments: params.arguments,
            meta: params.meta,
        })
    }

    /// The request's id as its JSON text (the key a cancellation names it by).
    pub fn id_key(&self) -> String {
        request_id_key(&self.id)
    }

    /// Run the call and return the whole JSON-RPC response (no trailing newline).
    /// `header` looks up a transport header (trace context sent as HTTP headers).
    pub async fn answer(
        self,
        mcp: &DatabotMcp,
        header: impl Fn(&str) -> Option<String>,
    ) -> Vec<u8> {
        let span = tracing::info_span!("mcp.tools/call", tool = %self.name);
        let meta = self.meta;
        crate::telemetry::propagation::set_remote_parent(&span, |key| {
            meta.as_ref()
                .and_then(|meta| meta.get(key))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .or_else(|| header(key))
        });
        let result = mcp.call(&self.name, self.arguments).instrument(span).await;
        let mut result = ServerResult::CallToolResult(result);
        // Every session here negotiated its version with `initialize` (a version before
        // 2026-07-28): the result keeps that era's shape, as the library makes it.
        result.strip_result_type_for_legacy_peer();
        result.strip_non_object_output_for_legacy_peer();
        let message = ServerJsonRpcMessage::response(result, self.id);
        serde_json::to_vec(&message).unwrap_or_else(|error| {
            // Serialising plain strings and JSON values cannot fail; say so if it ever did.
            tracing::error!("could not encode a tools/call result: {error}");
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the tool result could not be encoded"}}"#.to_vec()
        })
    }
}

/// The id of the request a `notifications/cancelled` notification cancels, as its JSON text.
/// Parsed in full (no text pre-check: the method may be written with escapes); a message
/// with an `id` is a request, not this notification, and is left to the library to answer.
pub fn cancelled_request(message: &[u8]) -> Option<String> {
    let notice: Cancellation = serde_json::from_slice(message).ok()?;
    (notice.jsonrpc == "2.0" && notice.id.is_none() && notice.method == "notifications/cancelled")
        .then(|| request_id_key(&notice.params.request_id))
}

fn request_id_key(id: &RequestId) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_tool_call_is_direct() {
        let call = DirectCall::parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#,
        )
        .unwrap();
        assert_eq!(call.name, "echo");
        assert_eq!(call.id_key(), "7");
        assert_eq!(call.arguments.unwrap()["text"], "hi");
        let call = DirectCall::parse(
            br#"{"id":"a-1","method":"tools/call","jsonrpc":"2.0","params":{"name":"echo"}}"#,
        )
        .unwrap();
        assert_eq!(call.id_key(), "\"a-1\"");
        assert!(call.arguments.is_none());
    }

    #[test]
    fn anything_unusual_is_left_to_the_library() {
        for message in [
            // Other methods, notifications, batches, bad JSON.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo""#,
            // Wrong version, null id, missing name, arguments not an object.
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":[1]}}"#,
            // Task-augmented calls, unknown fields, protocol metadata.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","task":{"ttl":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","extra":1,"params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        ] {
            assert!(DirectCall::parse(message.as_bytes()).is_none(), "{message}");
        }
    }

    #[test]
    fn a_cancellation_names_its_request() {
        assert_eq!(
            cancelled_request(
                br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12,"reason":"x"}}"#
            )
            .as_deref(),
            Some("12")
        );
        assert_eq!(
            cancelled_request(
                br#"{"jsonrpc":"2.0","method":"notifications\/cancelled","params":{"requestId":"a"}}"#
            )
            .as_deref(),
            Some("\"a\"")
        );
        for other in [
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            // A request (it has an id) is answered by the library, not taken as a notice.
            r#"{"jsonrpc":"2.0","id":99,"method":"notifications/cancelled","params":{"requestId":7}}"#,
            r#"{"method":"notifications/cancelled","params":{"requestId":7}}"#,
            r#"{"jsonrpc":"1.0","method":"notifications/cancelled","params":{"requestId":7}}"#,
        ] {
            assert_eq!(cancelled_request(other.as_bytes()), None, "{other}");
        }
    }
}
