//! The Anthropic provider component against a local server speaking the messages API: tool
//! use, the event stream with split tool input, 529 overload then success, stream errors.

use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, TestHost, serve_scripted};
use serde_json::{Value, json};

async fn host(port: u16) -> TestHost {
    let config = format!(
        r#"plugins:
  anthropic:
    permissions:
      http:
        allow: ["127.0.0.1:{port}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{port}", header: x-api-key, value: "sk-ant-test" }}
    config:
      base_url: "http://127.0.0.1:{port}"
      model: claude-test
      retry_base_ms: 10
"#
    );
    let host = TestHost::start(&config, &["echo"]).await.unwrap();
    host.load_builtin("anthropic").await;
    host
}

fn message(content: Value, stop_reason: &str) -> ScriptedResponse {
    ScriptedResponse::json(
        200,
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": content, "stop_reason": stop_reason,
            "usage": { "input_tokens": 20, "output_tokens": 5 }
        }),
    )
}

/// One SSE event in Anthropic's framing (`event:` line, then `data:`).
fn event(value: Value) -> String {
    format!(
        "event: {}\ndata: {value}\n\n",
        value["type"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_turn_with_tool_use() {
    let (port, seen) = serve_scripted(|_, index| {
        if index == 0 {
            message(
                json!([{ "type": "text", "text": "Checking." },
                       { "type": "tool_use", "id": "toolu_1", "name": "echo", "input": { "text": "via claude" } }]),
                "tool_use",
            )
        } else {
            message(json!([{ "type": "text", "text": "Done: via claude." }]), "end_turn")
        }
    })
    .await;
    let host = host(port).await;
    let agent = host.agent("anthropic", false).await;
    let outcome = agent
        .turn("test:claude", "echo something", None)
        .await
        .unwrap();
    assert_eq!(outcome.content, "Done: via claude.");
    assert_eq!(outcome.usage.total_tokens, 50);

    let requests = seen.all();
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(requests[0].header("anthropic-version"), Some("2023-06-01"));
    let first = requests[0].json();
    assert!(first["system"].as_str().unwrap().contains("databot"));
    assert_eq!(first["messages"][0]["role"], "user");
    assert!(
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo" && t["input_schema"].is_object())
    );
    let second = requests[1].json();
    let messages = second["messages"].as_array().unwrap();
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["content"][1]["type"], "tool_use");
    assert_eq!(
        assistant["content"][1]["input"],
        json!({"text": "via claude"})
    );
    let result = messages.last().unwrap();
    assert_eq!(result["role"], "user");
    assert_eq!(result["content"][0]["type"], "tool_result");
    assert_eq!(result["content"][0]["tool_use_id"], "toolu_1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_with_split_tool_input() {
    let (port, _seen) = serve_scripted(|_, _| {
        let events = [
            json!({"type": "message_start", "message": {"model": "claude-test", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "look."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "echo", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"text\": \"spl"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "it\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        ScriptedResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: events.into_iter().map(event).collect(),
            pause: std::time::Duration::from_millis(1),
        }
    })
    .await;
    let host = host(port).await;
    let (sink, mut events) = databot::events::event_queue(1024, Default::default());
    let request = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    let output = host
        .runtime
        .provider_chat("anthropic", &request, Some(sink))
        .await
        .unwrap();
    let response: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(response["content"], "Let me look.");
    assert_eq!(response["tool_calls"][0]["id"], "toolu_9");
    assert_eq!(
        response["tool_calls"][0]["arguments"],
        json!({"text": "split"})
    );
    assert_eq!(response["usage"]["total_tokens"], 21);
    let mut deltas = 0;
    while events.try_recv().is_some() {
        deltas += 1;
    }
    assert_eq!(deltas, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_retried_then_succeeds() {
    let (port, seen) = serve_scripted(|_, index| {
        if index == 0 {
            ScriptedResponse::json(529, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
        } else {
            message(json!([{ "type": "text", "text": "fine" }]), "end_turn")
        }
    })
    .await;
    let host = host(port).await;
    let output = host
        .runtime
        .provider_chat(
            "anthropic",
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
            None,
        )
        .await
        .unwrap();
    assert!(output.contains("\"fine\""), "{output}");
    assert_eq!(seen.all().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_in_the_stream_is_reported() {
    let (port, _seen) = serve_scripted(|_, _| ScriptedResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: vec![
            event(json!({"type": "message_start", "message": {"model": "claude-test", "usage": {"input_tokens": 1}}})),
            event(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
        ],
        pause: std::time::Duration::from_millis(1),
    })
    .await;
    let host = host(port).await;
    let (sink, _events) = databot::events::event_queue(1024, Default::default());
    let error = host
        .runtime
        .provider_chat(
            "anthropic",
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
            Some(sink),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("overloaded_error"), "{error}");
}
