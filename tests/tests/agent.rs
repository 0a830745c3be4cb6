//! The agent loop end to end: the offline provider component, tool components, sessions and
//! memory on SQLite and on the local PostgreSQL.

use std::sync::Arc;

use databot::agent::memory_tool::scope_key;
use databot::agent::sessions::SessionStore;
use databot::agent::{Agent, Conversation};
use databot::config::{AgentConfig, MemoryScope};
use databot::contract::chat::Role;
use databot::events::{TurnEvent, event_queue};
use databot_e2e::TestHost;

async fn agent_with(sessions_url: &str) -> (Agent, TestHost) {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    host.load_builtin("offline").await;
    let sessions = SessionStore::connect(sessions_url).await.unwrap();
    let agent = Agent::new(
        host.runtime.clone(),
        Arc::new(sessions),
        AgentConfig::default(),
    );
    (agent, host)
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}-{}", std::process::id())
}

async fn a_turn_with_a_tool_call_is_answered_and_persisted(agent: &Agent) {
    let session = unique("test:tool");
    let (events, mut received) = event_queue(1024, Default::default());
    let outcome = agent
        .turn(
            &session,
            r#"/echo {"text": "hello from the test"}"#,
            Some(&events),
        )
        .await
        .unwrap();
    assert_eq!(outcome.tool_calls, 1);
    assert_eq!(outcome.iterations, 2);
    assert!(
        outcome.content.contains("`echo` returned"),
        "{}",
        outcome.content
    );
    assert!(
        outcome.content.contains("hello from the test"),
        "{}",
        outcome.content
    );
    assert!(outcome.usage.total_tokens > 0);

    let mut seen = Vec::new();
    while let Some(event) = received.try_recv() {
        seen.push(event);
    }
    assert!(
        matches!(&seen[0], TurnEvent::ToolStart { name, .. } if name == "echo"),
        "{seen:?}"
    );
    assert!(
        matches!(&seen[1], TurnEvent::ToolResult { ok: true, .. }),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, TurnEvent::Delta { .. })),
        "{seen:?}"
    );

    let history = agent.sessions().history(&session).await.unwrap();
    let roles: Vec<Role> = history.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(history[1].tool_calls[0].name, "echo");
    assert_eq!(
        agent.sessions().usage(&session).await.unwrap(),
        outcome.usage
    );

    // A second turn adds to the same session, and usage accumulates.
    let second = agent.turn(&session, "anything", None).await.unwrap();
    assert_eq!(agent.sessions().history(&session).await.unwrap().len(), 6);
    assert_eq!(
        agent.sessions().usage(&session).await.unwrap().total_tokens,
        outcome.usage.total_tokens + second.usage.total_tokens
    );

    // Each turn has its record, with its messages, tokens and tool calls.
    let (turns, messages) = agent
        .sessions()
        .conversation_turns(&session, 10)
        .await
        .unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!((turns[0].first_seq, turns[0].messages), (1, 4));
    assert_eq!((turns[1].first_seq, turns[1].messages), (5, 2));
    assert_eq!(turns[0].record.tool_calls, 1);
    assert_eq!(turns[0].record.iterations, 2);
    assert_eq!(
        turns[0].prompt_tokens as u64 + turns[0].completion_tokens as u64,
        outcome.usage.total_tokens
    );
    assert!(turns[0].record.started_at_ms > 1_700_000_000_000);
    assert!(turns[1].record.started_at_ms >= turns[0].record.started_at_ms);
    assert_eq!(messages.len(), 6);
    assert_eq!(messages[0].0, 1);
    // Found by a word of a message (any case, `%` taken literally), listed with its totals.
    let found = search(agent, "HELLO FROM THE TEST").await;
    let this = found
        .iter()
        .find(|c| c.session_key == session)
        .expect("found by its message");
    assert_eq!((this.turns, this.tool_calls), (2, 1));
    assert!(
        !search(agent, "hello%from")
            .await
            .iter()
            .any(|c| c.session_key == session),
        "`%` is literal"
    );
    assert!(search(agent, &session).await.len() == 1);
}

async fn search(agent: &Agent, text: &str) -> Vec<databot::agent::sessions::ConversationSummary> {
    agent
        .sessions()
        .conversations(&databot::agent::sessions::ConversationFilter {
            search: Some(text),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn tool_errors_are_fed_back_to_the_model(agent: &Agent) {
    let session = unique("test:error");
    let outcome = agent
        .turn(&session, r#"/echo {"text": 5}"#, None)
        .await
        .unwrap();
    assert!(
        outcome.content.contains("error: invalid_input"),
        "{}",
        outcome.content
    );
    let history = agent.sessions().history(&session).await.unwrap();
    assert!(
        history[2]
            .content
            .as_deref()
            .unwrap()
            .contains("do not match its schema")
    );
}

async fn memory_is_written_and_shown_to_later_turns(agent: &Agent) {
    let key = unique("warehouse");
    let session = unique("test:memory");
    let remember =
        format!(r#"/memory {{"action": "remember", "key": "{key}", "value": "postgres on 5432"}}"#);
    agent.turn(&session, &remember, None).await.unwrap();
    // `turn` speaks as the channel's local user; the default scope is that user's.
    let scope = scope_key(MemoryScope::User, &Conversation::local(&session));
    let memories = agent.sessions().memories(&scope, 1000).await.unwrap();
    assert!(memories.contains(&(key.clone(), "postgres on 5432".to_owned())));
    let recall = agent
        .turn(
            &unique("test:other"),
            r#"/memory {"action": "recall"}"#,
            None,
        )
        .await
        .unwrap();
    assert!(recall.content.contains(&key), "{}", recall.content);
    let forget = format!(r#"/memory {{"action": "forget", "key": "{key}"}}"#);
    agent.turn(&session, &forget, None).await.unwrap();
    assert!(
        !agent
            .sessions()
            .memories(&scope, 1000)
            .await
            .unwrap()
            .iter()
            .any(|(k, _)| *k == key)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let (agent, _host) = agent_with(&url).await;
    a_turn_with_a_tool_call_is_answered_and_persisted(&agent).await;
    tool_errors_are_fed_back_to_the_model(&agent).await;
    memory_is_written_and_shown_to_later_turns(&agent).await;

    // Sessions survive a restart of the store.
    let session = unique("test:restart");
    agent
        .turn(&session, "remember this turn", None)
        .await
        .unwrap();
    let reopened = SessionStore::connect(&url).await.unwrap();
    assert_eq!(reopened.history(&session).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_on_postgresql() {
    let url = std::env::var("DATABOT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let (agent, _host) = agent_with(&url).await;
    a_turn_with_a_tool_call_is_answered_and_persisted(&agent).await;
    tool_errors_are_fed_back_to_the_model(&agent).await;
    memory_is_written_and_shown_to_later_turns(&agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_of_one_session_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let (agent, _host) = agent_with(&url).await;
    let agent = Arc::new(agent);
    let session = unique("test:concurrent");
    let turns = (0..8).map(|i| {
        let agent = agent.clone();
        let session = session.clone();
        tokio::spawn(async move {
            agent
                .turn(&session, &format!("message {i}"), None)
                .await
                .unwrap()
        })
    });
    for turn in turns {
        turn.await.unwrap();
    }
    let history = agent.sessions().history(&session).await.unwrap();
    assert_eq!(history.len(), 16);
    // Every user message is directly followed by its own answer: no interleaving.
    for pair in history.chunks(2) {
        assert_eq!(pair[0].role, Role::User);
        assert_eq!(pair[1].role, Role::Assistant);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_provider_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start("", &["echo"]).await.unwrap();
    let sessions =
        SessionStore::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
    let settings = AgentConfig {
        provider: "nope".into(),
        ..AgentConfig::default()
    };
    let agent = Agent::new(host.runtime.clone(), Arc::new(sessions), settings);
    let error = agent
        .turn("test:x", "hi", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no provider named `nope` is loaded"),
        "{error}"
    );
    // Nothing of a failed turn is persisted.
    assert!(agent.sessions().history("test:x").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_through_the_bus_stream_and_keep_order() {
    use databot::bus::{Bus, BusLimits, InboundMessage, MemoryBus};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let (agent, _host) = agent_with(&url).await;
    let agent = Arc::new(agent);
    let bus = MemoryBus::new(agent.clone(), BusLimits::default());
    let mut deliveries = Vec::new();
    for n in 0..3 {
        for chat in 0..20 {
            let message = InboundMessage {
                channel: "test".into(),
                chat_id: format!("bus-{chat}"),
                sender_id: "u".into(),
                content: format!(r#"/echo {{"text": "chat {chat} message {n}"}}"#),
                stream: true,
                thread_id: None,
                trace_context: Vec::new(),
                ..Default::default()
            };
            deliveries.push((chat, n, bus.submit(message).await.unwrap()));
        }
    }
    for (chat, n, mut delivery) in deliveries {
        let reply = delivery.reply.await.unwrap();
        assert!(!reply.failed, "{}", reply.content);
        assert!(
            reply.content.contains(&format!("chat {chat} message {n}")),
            "{}",
            reply.content
        );
        let mut kinds = Vec::new();
        while let Some(event) = delivery.events.try_recv() {
            kinds.push(event.name());
        }
        assert_eq!(kinds.first(), Some(&"tool_start"), "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
        assert!(kinds.contains(&"delta"), "{kinds:?}");
    }
    for chat in 0..20 {
        let history = agent
            .sessions()
            .history(&format!("test:bus-{chat}"))
            .await
            .unwrap();
        let users: Vec<String> = history
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.clone().unwrap())
            .collect();
        let expected: Vec<String> = (0..3)
            .map(|n| format!(r#"/echo {{"text": "chat {chat} message {n}"}}"#))
            .collect();
        assert_eq!(users, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_turn_persists_nothing_and_frees_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start("", &["echo", "hostile"]).await.unwrap();
    host.load_builtin("offline").await;
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let sessions = SessionStore::connect(&url).await.unwrap();
    let agent = Agent::new(
        host.runtime.clone(),
        Arc::new(sessions),
        AgentConfig::default(),
    );
    // The spinning tool would run for the whole 10 s deadline; the caller gives up first.
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        agent.turn("test:cancel", "/spin {}", None),
    )
    .await;
    assert!(cancelled.is_err(), "the turn was expected to be cancelled");
    assert!(
        agent
            .sessions()
            .history("test:cancel")
            .await
            .unwrap()
            .is_empty()
    );
    // The session's lock was released with the dropped turn.
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        agent.turn("test:cancel", r#"/echo {"text": "after"}"#, None),
    )
    .await
    .expect("the session is free again")
    .unwrap();
    assert!(next.content.contains("after"));
}

/// An agent over the offline provider whose memory has `scope`, on a fresh SQLite store.
async fn scoped_agent(scope: MemoryScope, dir: &std::path::Path) -> (Agent, TestHost) {
    let host = TestHost::start("", &["echo"]).await.unwrap();
    host.load_builtin("offline").await;
    let url = format!("sqlite://{}", dir.join("sessions.db").display());
    let sessions = SessionStore::connect(&url).await.unwrap();
    let settings = AgentConfig {
        memory_scope: scope,
        ..AgentConfig::default()
    };
    (
        Agent::new(host.runtime.clone(), Arc::new(sessions), settings),
        host,
    )
}

/// One turn of `session` spoken by `user`: the reply.
async fn say_as(agent: &Agent, session: &str, user: &str, message: &str) -> String {
    let conversation = Conversation {
        session_key: session.to_owned(),
        user: user.to_owned(),
        ..Conversation::default()
    };
    agent
        .turn_in_trace(&conversation, message, None, &[])
        .await
        .unwrap()
        .content
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_scopes_keep_users_and_conversations_apart() {
    const REMEMBER: &str =
        r#"/memory {"action": "remember", "key": "plan", "value": "alice-secret-plan"}"#;
    const RECALL: &str = r#"/memory {"action": "recall"}"#;
    // (scope, seen in alice's other chat, seen by bob)
    for (scope, own_other_chat, other_user) in [
        (MemoryScope::Conversation, false, false),
        (MemoryScope::User, true, false),
        (MemoryScope::Global, true, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (agent, _host) = scoped_agent(scope, dir.path()).await;
        say_as(&agent, "api:alice-1", "api:key:alice", REMEMBER).await;
        let same_chat = say_as(&agent, "api:alice-1", "api:key:alice", RECALL).await;
        assert!(
            same_chat.contains("alice-secret-plan"),
            "{scope:?}: {same_chat}"
        );
        let other_chat = say_as(&agent, "api:alice-2", "api:key:alice", RECALL).await;
        assert_eq!(
            other_chat.contains("alice-secret-plan"),
            own_other_chat,
            "{scope:?}"
        );
        let bob = say_as(&agent, "api:bob-1", "api:key:bob", RECALL).await;
        assert_eq!(bob.contains("alice-secret-plan"), other_user, "{scope:?}");
        // Nor does bob's forgetting reach alice's memory unless they share it.
        say_as(
            &agent,
            "api:bob-1",
            "api:key:bob",
            r#"/memory {"action": "forget", "key": "plan"}"#,
        )
        .await;
        let after = say_as(&agent, "api:alice-1", "api:key:alice", RECALL).await;
        assert_eq!(
            !after.contains("alice-secret-plan"),
            other_user,
            "{scope:?}"
        );
        // What alice's scope holds afterwards.
        let alice = Conversation {
            session_key: "api:alice-1".into(),
            user: "api:key:alice".into(),
            ..Conversation::default()
        };
        let stored = agent
            .sessions()
            .memories(&scope_key(scope, &alice), 100)
            .await
            .unwrap();
        assert_eq!(stored.is_empty(), other_user, "{scope:?}: {stored:?}");
        // Another channel's user with the same name is another user.
        let cli_user = say_as(&agent, "cli:default", "cli:key:alice", RECALL).await;
        if scope != MemoryScope::Global {
            assert!(!cli_user.contains("alice-secret-plan"), "{scope:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_of_an_unscoped_store_move_to_the_global_scope() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    databot_e2e::sqlite_setup(
        &path,
        "CREATE TABLE databot_memory (memory_key TEXT PRIMARY KEY, memory_value TEXT NOT NULL, updated_at BIGINT NOT NULL);
         INSERT INTO databot_memory VALUES ('warehouse', 'postgres on 5432', 1);",
    )
    .unwrap();
    let url = format!("sqlite://{}", path.display());
    let store = SessionStore::connect(&url).await.unwrap();
    assert_eq!(
        store.memories("global", 10).await.unwrap(),
        [("warehouse".to_owned(), "postgres on 5432".to_owned())]
    );
    assert!(
        store
            .memories("user:cli:local", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Reopening moves nothing twice, and a forgotten memory stays forgotten.
    assert!(store.forget("global", "warehouse").await.unwrap());
    drop(store);
    let store = SessionStore::connect(&url).await.unwrap();
    assert!(store.memories("global", 10).await.unwrap().is_empty());
}
