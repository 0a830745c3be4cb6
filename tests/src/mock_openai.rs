//! An OpenAI-compatible chat server on loopback that answers at once, for end-to-end
//! benchmarks (keep-alive HTTP/1.1 with the server defaults of axum/hyper, so it writes the way
//! an ordinary server does: no `TCP_NODELAY`).
//!
//! What it answers to `POST /v1/chat/completions`:
//! - the last message is a tool result: `done: RESULT`;
//! - the last user message starts with `tool `: a call of `echo` with `{"text": REST}`;
//! - anything else: `answer: CONTENT`;
//!
//! as one JSON answer, or with `"stream": true` as server-sent events ending in `[DONE]`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// Serve on an ephemeral loopback port; the port.
pub async fn serve_mock_openai() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the mock provider");
    let port = listener.local_addr().expect("address").port();
    let app = Router::new().route("/v1/chat/completions", post(completions));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

async fn completions(body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let content = last["content"].as_str().unwrap_or_default().to_owned();
    let reply = if last["role"] == "tool" {
        Reply::Text(format!("done: {content}"))
    } else if let Some(text) = content.strip_prefix("tool ") {
        Reply::Echo(json!({ "text": text }).to_string())
    } else {
        Reply::Text(format!("answer: {content}"))
    };
    if request["stream"] == true {
        stream(&reply)
    } else {
        whole(&reply)
    }
}

/// What the model "says": text, or a call of `echo` with these JSON arguments.
enum Reply {
    Text(String),
    Echo(String),
}

fn whole(reply: &Reply) -> Response {
    let (message, finish) = match reply {
        Reply::Text(text) => (json!({ "role": "assistant", "content": text }), "stop"),
        Reply::Echo(arguments) => (
            json!({ "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": "echo", "arguments": arguments } }
            ] }),
            "tool_calls",
        ),
    };
    let answer = json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "model": "mock",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": { "prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25 }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// The reply as chunks (text word by word; a tool call in two pieces of arguments), then the
/// finish with usage and `[DONE]`, each its own body frame.
fn stream(reply: &Reply) -> Response {
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({ "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": "mock",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {chunk}\n\n")))
    };
    let mut frames = Vec::new();
    let finish = match reply {
        Reply::Text(text) => {
            for word in text.split_inclusive(' ') {
                frames.push(chunk(json!({ "content": word }), Value::Null));
            }
            "stop"
        }
        Reply::Echo(arguments) => {
            let (head, tail) = arguments.split_at(arguments.len() / 2);
            frames.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "id": "call_1", "type": "function",
                    "function": { "name": "echo", "arguments": head } }] }),
                Value::Null,
            ));
            frames.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": tail } }] }),
                Value::Null,
            ));
            "tool_calls"
        }
    };
    frames.push(chunk(json!({}), json!(finish)));
    frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(futures::stream::iter(frames)),
    )
        .into_response()
}
