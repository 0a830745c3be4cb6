//! The router: the provider's classification picks a specialist whose tools are enforced; a
//! nonsense answer keeps the conversation's specialist (or falls back to `general`); it can be
//! switched off.

use std::sync::{Arc, Mutex};

use databot::agent::Agent;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

fn reply(message: Value) -> ScriptedResponse {
    ScriptedResponse::json(
        200,
        json!({ "model": "m", "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 } }),
    )
}

fn is_router_call(request: &SeenRequest) -> bool {
    request.json()["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .starts_with("You route messages")
}

/// A model whose routing answers come from `routes` in order, and which calls `echo` once
/// on the first main call of each turn.
async fn setup(
    routes: Vec<&'static str>,
    router_enabled: bool,
) -> (Agent, TestHost, Arc<databot_e2e::recorded::Requests>) {
    let routes = Arc::new(Mutex::new(routes.into_iter()));
    let (port, seen) = serve_scripted(move |request, _| {
        if is_router_call(request) {
            let answer = routes.lock().unwrap().next().unwrap_or("???");
            return reply(json!({ "role": "assistant", "content": answer }));
        }
        let messages = request.json()["messages"].as_array().unwrap().clone();
        if messages.last().unwrap()["role"] == "tool" {
            reply(json!({ "role": "assistant", "content": "done" }))
        } else {
            reply(json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "c1", "type": "function",
                "function": { "name": "echo", "arguments": "{\"text\":\"x\"}" } }] }))
        }
    })
    .await;
    let config = format!(
        "plugins:\n  openai:\n    permissions:\n      http:\n        allow: [\"127.0.0.1:{port}\"]\n        allow_private: true\n    config:\n      base_url: \"http://127.0.0.1:{port}/v1\"\n"
    );
    let host = TestHost::start(&config, &["echo"]).await.unwrap();
    host.load_builtin("openai").await;
    let agent = host.agent("openai", router_enabled).await;
    (agent, host, seen)
}

fn offered_tools(request: &SeenRequest) -> Vec<String> {
    request.json()["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chosen_specialist_scopes_tools_and_sticks() {
    let (agent, _host, seen) = setup(
        vec![
            r#"```json
{"agent": "sql", "reasoning": "a query"}
```"#,
            "I am not sure, maybe something",
        ],
        true,
    )
    .await;
    let first = agent
        .turn("test:route", "how many orders yesterday?", None)
        .await
        .unwrap();
    assert_eq!(first.specialist.as_deref(), Some("sql"));
    let requests = seen.all();
    assert!(is_router_call(&requests[0]));
    // The sql specialist sees only its tools; echo is not among them...
    assert_eq!(offered_tools(&requests[1]), ["memory"]);
    assert!(
        requests[1].json()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("SQL specialist")
    );
    // ...and a call to it anyway is refused when it runs, not only hidden.
    let history = agent.sessions().history("test:route").await.unwrap();
    assert!(
        history[2]
            .content
            .as_deref()
            .unwrap()
            .contains("not among the `sql` specialist's tools")
    );

    // A nonsense routing answer keeps the conversation on sql.
    let second = agent
        .turn("test:route", "and the day before?", None)
        .await
        .unwrap();
    assert_eq!(second.specialist.as_deref(), Some("sql"));
    let router_prompt = seen.all()[3].json()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        router_prompt.contains("currently handled by `sql`"),
        "{router_prompt}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsense_on_a_new_conversation_falls_back_to_general() {
    let (agent, _host, seen) = setup(vec!["banana"], true).await;
    let outcome = agent.turn("test:fallback", "hello", None).await.unwrap();
    assert_eq!(outcome.specialist.as_deref(), Some("general"));
    assert_eq!(outcome.content, "done");
    // General has every tool.
    let tools = offered_tools(&seen.all()[1]);
    assert!(
        tools.contains(&"echo".to_owned()) && tools.contains(&"memory".to_owned()),
        "{tools:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_there_is_no_routing_call() {
    let (agent, _host, seen) = setup(vec![], false).await;
    let outcome = agent.turn("test:single", "hello", None).await.unwrap();
    assert_eq!(outcome.specialist, None);
    assert!(seen.all().iter().all(|r| !is_router_call(r)));
    assert_eq!(outcome.content, "done");
}
