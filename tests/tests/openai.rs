//! The OpenAI-compatible provider component against a local server speaking the
//! chat-completions wire format: tool calls, SSE streaming with split tool calls and a
//! malformed chunk, 429 then success, timeouts, bad keys; the key injected by the host.

use databot::agent::Agent;
use databot::config::AgentConfig;
use databot::events::{TurnEvent, event_queue};
use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

fn config(port: u16, extra: &str) -> String {
    format!(
        r#"plugins:
  openai:
    permissions:
      http:
        allow: ["127.0.0.1:{port}"]
        allow_private: true
        secrets:
          - {{ host: "http://127.0.0.1:{port}", header: authorization, value: "Bearer sk-test-key" }}
    config:
      base_url: "http://127.0.0.1:{port}/v1"
      model: gpt-test
      retry_base_ms: 10
{extra}
"#
    )
}

async fn host(port: u16, extra: &str) -> TestHost {
    let host = TestHost::start(&config(port, extra), &["echo"])
        .await
        .unwrap();
    host.load_builtin("openai").await;
    host
}

fn completion(message: Value) -> ScriptedResponse {
    ScriptedResponse::json(
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
            "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_turn_with_a_tool_call() {
    let (port, seen) = serve_scripted(|request: &SeenRequest, index| {
        assert_eq!(request.path, "/v1/chat/completions");
        if index == 0 {
            completion(json!({
                "role": "assistant", "content": null,
                "tool_calls": [{ "id": "call_abc", "type": "function",
                    "function": { "name": "echo", "arguments": "{\"text\":\"from the model\"}" } }]
            }))
        } else {
            completion(json!({ "role": "assistant", "content": "The tool said: from the model." }))
        }
    })
    .await;
    let host = host(port, "").await;
    let agent = host.agent("openai", false).await;
    let outcome = agent
        .turn("test:openai", "please echo", None)
        .await
        .unwrap();
    assert_eq!(outcome.content, "The tool said: from the model.");
    assert_eq!(outcome.tool_calls, 1);
    assert_eq!(outcome.usage.total_tokens, 36);

    let requests = seen.all();
    assert_eq!(requests.len(), 2);
    // The key was added by the host; the plugin never had it.
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk-test-key")
    );
    let first = requests[0].json();
    assert_eq!(first["model"], "gpt-test");
    assert_eq!(first["tool_choice"], "auto");
    let echo = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "echo")
        .unwrap();
    assert_eq!(echo["type"], "function");
    assert_eq!(
        echo["function"]["parameters"]["properties"]["text"]["type"],
        "string"
    );
    let second = requests[1].json();
    let messages = second["messages"].as_array().unwrap();
    let assistant = &messages[messages.len() - 2];
    assert_eq!(
        assistant["tool_calls"][0]["function"]["arguments"],
        "{\"text\":\"from the model\"}"
    );
    let tool = messages.last().unwrap();
    assert_eq!(tool["role"], "tool");
    assert_eq!(tool["tool_call_id"], "call_abc");
    assert!(tool["content"].as_str().unwrap().contains("from the model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_with_split_tool_calls_and_a_malformed_chunk() {
    let (port, seen) = serve_scripted(|_, _| {
        let mut response = ScriptedResponse::sse(&[
            json!({"model": "gpt-test", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me "}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "check."}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "echo", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"te"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "xt\":\"hi\"}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}),
        ]);
        // A broken chunk in the middle of the stream is skipped, not fatal.
        response.chunks.insert(2, "data: {not json\n\n".into());
        response
    })
    .await;
    let host = host(port, "").await;
    let (sink, mut events) = databot::events::event_queue(1024, Default::default());
    let request =
        json!({ "messages": [{"role": "user", "content": "hi"}], "tools": [] }).to_string();
    let output = host
        .runtime
        .provider_chat("openai", &request, Some(sink))
        .await
        .unwrap();
    let response: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(response["content"], "Let me check.");
    // Kept although the finish reason says "stop".
    assert_eq!(response["tool_calls"][0]["name"], "echo");
    assert_eq!(
        response["tool_calls"][0]["arguments"],
        json!({"text": "hi"})
    );
    assert_eq!(response["usage"]["total_tokens"], 8);
    let mut deltas = Vec::new();
    while let Some(event) = events.try_recv() {
        match event {
            TurnEvent::Delta { text } => deltas.push(text),
            other => panic!("a provider streamed {other:?}"),
        }
    }
    assert_eq!(deltas, ["Let me ", "check."]);
    let body = seen.all()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_turns_reach_the_caller_token_by_token() {
    let (port, _seen) = serve_scripted(|_, _| {
        ScriptedResponse::sse(&[
            json!({"choices": [{"index": 0, "delta": {"content": "one "}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "two"}, "finish_reason": "stop"}]}),
        ])
    })
    .await;
    let host = host(port, "").await;
    let agent = host.agent("openai", false).await;
    let (events, mut received) = event_queue(1024, Default::default());
    let outcome = agent
        .turn("test:stream", "count", Some(&events))
        .await
        .unwrap();
    assert_eq!(outcome.content, "one two");
    let mut deltas = Vec::new();
    while let Some(TurnEvent::Delta { text }) = received.try_recv() {
        deltas.push(text);
    }
    assert_eq!(deltas, ["one ", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_honouring_retry_after() {
    let (port, seen) = serve_scripted(|_, index| {
        if index == 0 {
            let mut limited =
                ScriptedResponse::json(429, json!({"error": {"message": "slow down"}}));
            limited.headers.push(("retry-after".into(), "0.2".into()));
            limited
        } else {
            completion(json!({ "role": "assistant", "content": "ok" }))
        }
    })
    .await;
    let host = host(port, "").await;
    let started = std::time::Instant::now();
    let output = host
        .runtime
        .provider_chat(
            "openai",
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
            None,
        )
        .await
        .unwrap();
    assert!(output.contains("\"ok\""), "{output}");
    assert_eq!(seen.all().len(), 2);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(200),
        "Retry-After was not honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_surface_after_the_retries() {
    let (port, seen) = serve_scripted(|_, _| {
        ScriptedResponse::json(503, json!({"error": {"message": "overloaded"}}))
    })
    .await;
    let host = host(port, "      max_retries: 2\n").await;
    let error = host
        .runtime
        .provider_chat("openai", r#"{"messages": []}"#, None)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("503: overloaded"), "{error}");
    assert_eq!(seen.all().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_is_a_timeout() {
    let (port, _seen) = serve_scripted(|_, _| {
        let mut slow = completion(json!({ "role": "assistant", "content": "late" }));
        slow.pause = std::time::Duration::from_secs(3);
        slow
    })
    .await;
    let host = host(port, "      timeout_ms: 300\n      max_retries: 0\n").await;
    let error = host
        .runtime
        .provider_chat("openai", r#"{"messages": []}"#, None)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_denied_with_a_hint() {
    let (port, seen) = serve_scripted(|_, _| {
        ScriptedResponse::json(
            401,
            json!({"error": {"message": "Incorrect API key provided"}}),
        )
    })
    .await;
    let host = host(port, "").await;
    let error = host
        .runtime
        .provider_chat("openai", r#"{"messages": []}"#, None)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("Incorrect API key"), "{error}");
    assert!(error.message.contains("secret header"), "{error}");
    assert_eq!(seen.all().len(), 1, "401 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_tool_calls_run_in_parallel() {
    let (port, seen) = serve_scripted(|request: &SeenRequest, _| {
        let messages = request.json()["messages"].as_array().unwrap().clone();
        if messages.last().unwrap()["role"] == "tool" {
            completion(json!({ "role": "assistant", "content": "both done" }))
        } else {
            completion(json!({ "role": "assistant", "content": null, "tool_calls": [
                { "id": "a", "type": "function", "function": { "name": "spin", "arguments": "{}" } },
                { "id": "b", "type": "function", "function": { "name": "spin", "arguments": "{}" } }
            ] }))
        }
    })
    .await;
    // Only the spinning tool gets the short deadline.
    let extra = "  hostile:\n    budgets:\n      timeout_ms: 1500\n";
    let host = TestHost::start(&format!("{}{extra}", config(port, "")), &["hostile"])
        .await
        .unwrap();
    host.load_builtin("openai").await;
    let agent = host.agent("openai", false).await;
    let started = std::time::Instant::now();
    let outcome = agent
        .turn("test:parallel", "spin twice", None)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome.content, "both done");
    // Two 1.5 s tool deadlines side by side (serially it would take 3 s or more).
    assert!(
        elapsed < std::time::Duration::from_millis(2800),
        "{elapsed:?}"
    );
    let last = seen.all()[1].json();
    let results: Vec<&Value> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|m| m["content"].as_str().unwrap().contains("deadline"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_stops_calling_tools_hits_the_iteration_limit() {
    let (port, seen) = serve_scripted(|_, _| {
        completion(json!({ "role": "assistant", "content": null, "tool_calls": [
            { "id": "again", "type": "function", "function": { "name": "echo", "arguments": "{\"text\":\"loop\"}" } }
        ] }))
    })
    .await;
    let host = host(port, "").await;
    let settings = AgentConfig {
        provider: "openai".into(),
        max_iterations: 3,
        router: databot::config::RouterConfig {
            enabled: false,
            specialists: Vec::new(),
        },
        ..AgentConfig::default()
    };
    let agent = Agent::new(host.runtime.clone(), host.sessions("loop").await, settings);
    let outcome = agent.turn("test:loop", "go", None).await.unwrap();
    assert_eq!(outcome.iterations, 3);
    assert_eq!(outcome.tool_calls, 3);
    assert!(
        outcome.content.contains("agent.max_iterations"),
        "{}",
        outcome.content
    );
    assert_eq!(seen.all().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_request_bodies_are_sent_whole() {
    // Regression: writing a body larger than the host's outgoing buffer before sending the
    // request used to wait forever.
    let (port, seen) =
        serve_scripted(|_, _| completion(json!({ "role": "assistant", "content": "ok" }))).await;
    let host = host(port, "").await;
    let big = "x".repeat(300_000);
    let request = json!({ "messages": [{ "role": "user", "content": big }] }).to_string();
    host.runtime
        .provider_chat("openai", &request, None)
        .await
        .unwrap();
    let body = seen.all()[0].json();
    assert_eq!(
        body["messages"][0]["content"].as_str().unwrap().len(),
        300_000
    );
}
