//! Several `databot serve` replicas on the Kafka bus (tansu on loopback) and one PostgreSQL:
//! every message answered exactly once, each conversation in order, through replica deaths
//! and a graceful drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use databot_e2e::replicas::{Replicas, done_texts, stream_accepted};
use sqlx::Row;

const BINARY: &str = env!("CARGO_BIN_EXE_databot_cli");

/// The tests that run replicas take turns: on two cores, two sets of replicas and their
/// clients at once only measure the machine.
static REPLICAS_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Replies received, by `(conversation, message)`.
    replies: std::sync::Mutex<HashMap<(usize, usize), Vec<String>>>,
    /// Streams cut before their reply (their replica died).
    cut: AtomicUsize,
    /// Submissions that had to go to another replica.
    retried: AtomicUsize,
    /// A body of a cut stream, to show.
    cut_sample: std::sync::Mutex<Option<String>>,
}

/// Send `conversations` × `messages` round-robin over the replicas' gateways, each message of
/// a conversation only once the previous one was accepted (so the bus decides the order);
/// a replica that refuses or is gone is skipped for the next, under the same idempotency key.
async fn send_all(
    ports: Arc<std::sync::Mutex<Vec<Option<u16>>>>,
    conversations: usize,
    messages: usize,
    prefix: String,
    seen: Arc<Seen>,
) {
    let parallel = Arc::new(tokio::sync::Semaphore::new(150));
    let mut tasks = Vec::new();
    for conversation in 0..conversations {
        let ports = ports.clone();
        let seen = seen.clone();
        let parallel = parallel.clone();
        let chat = format!("{prefix}-{conversation}");
        tasks.push(tokio::spawn(async move {
            let _slot = parallel.acquire().await.expect("semaphore");
            let mut readers = Vec::new();
            for message in 0..messages {
                let content = format!("c{conversation} m{message}");
                let key = format!("{chat}-{message}");
                let mut attempt = conversation + message;
                let reader = loop {
                    let port = {
                        let ports = ports.lock().expect("lock");
                        ports[attempt % ports.len()]
                    };
                    attempt += 1;
                    let Some(port) = port else {
                        continue;
                    };
                    match stream_accepted(port, &chat, &content, Some(&key)).await {
                        Ok(reader) => break reader,
                        Err(_) => {
                            seen.retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                };
                readers.push((message, reader));
            }
            for (message, reader) in readers {
                let body = reader.await.expect("reader");
                let texts = done_texts(&body);
                if texts.is_empty() {
                    seen.cut.fetch_add(1, Ordering::Relaxed);
                    seen.cut_sample.lock().expect("lock").get_or_insert(body);
                }
                seen.replies
                    .lock()
                    .expect("lock")
                    .entry((conversation, message))
                    .or_default()
                    .extend(texts);
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
}

/// Wait until `expected` messages have their reply recorded; then check, from the shared
/// database, that each conversation holds its messages exactly once and in order, each
/// with its answer, and that every message has exactly one recorded reply.
async fn check_database(replicas: &Replicas, prefix: &str, conversations: usize, messages: usize) {
    let pool = sqlx::PgPool::connect(&replicas.database_url)
        .await
        .expect("database");
    let expected = (conversations * messages) as i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let recorded: i64 = sqlx::query("SELECT COUNT(*) FROM databot_replies")
            .fetch_one(&pool)
            .await
            .expect("count")
            .get(0);
        if recorded >= expected {
            assert_eq!(recorded, expected, "one reply per message, no more");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {recorded} of {expected} messages answered"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let failed: i64 =
        sqlx::query("SELECT COUNT(*) FROM databot_replies WHERE reply LIKE '%\"failed\":true%'")
            .fetch_one(&pool)
            .await
            .expect("count")
            .get(0);
    assert_eq!(failed, 0, "no turn failed");
    let rows = sqlx::query(
        "SELECT session_key, message FROM databot_messages WHERE session_key LIKE $1 ORDER BY session_key, seq",
    )
    .bind(format!("api:{prefix}-%"))
    .fetch_all(&pool)
    .await
    .expect("history");
    let mut history: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in rows {
        let message: serde_json::Value =
            serde_json::from_str(&row.get::<String, _>(1)).expect("message json");
        history.entry(row.get(0)).or_default().push((
            message["role"].as_str().unwrap_or_default().to_owned(),
            message["content"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    assert_eq!(history.len(), conversations, "every conversation saved");
    for conversation in 0..conversations {
        let turns = &history[&format!("api:{prefix}-{conversation}")];
        let expected: Vec<(String, String)> = (0..messages)
            .flat_map(|message| {
                let content = format!("c{conversation} m{message}");
                [
                    ("user".to_owned(), content.clone()),
                    ("assistant".to_owned(), format!("answer: {content}")),
                ]
            })
            .collect();
        assert_eq!(
            turns, &expected,
            "conversation {conversation}: each message once, in the order sent"
        );
    }
    // Replies whose replica died are delivered (or, for the API, marked) by the others.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let undelivered: i64 =
            sqlx::query("SELECT COUNT(*) FROM databot_replies WHERE delivered_at IS NULL")
                .fetch_one(&pool)
                .await
                .expect("count")
                .get(0);
        if undelivered == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{undelivered} replies never delivered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn check_clients(seen: &Seen, conversations: usize, messages: usize, cut_allowed: bool) {
    let replies = seen.replies.lock().expect("lock");
    let mut received = 0;
    for conversation in 0..conversations {
        for message in 0..messages {
            let texts = replies
                .get(&(conversation, message))
                .cloned()
                .unwrap_or_default();
            assert!(
                texts.len() <= 1,
                "c{conversation} m{message} answered {} times: {texts:?}",
                texts.len()
            );
            if let Some(text) = texts.first() {
                assert_eq!(text, &format!("answer: c{conversation} m{message}"));
                received += 1;
            }
        }
    }
    let cut = seen.cut.load(Ordering::Relaxed);
    let unanswered: Vec<(usize, usize)> = (0..conversations)
        .flat_map(|c| (0..messages).map(move |m| (c, m)))
        .filter(|key| replies.get(key).is_none_or(Vec::is_empty))
        .take(10)
        .collect();
    assert_eq!(
        received + cut,
        conversations * messages,
        "unanswered (conversation, message): {unanswered:?}"
    );
    if !cut_allowed {
        assert_eq!(
            cut,
            0,
            "every client got its reply; unanswered (conversation, message): {unanswered:?}; one cut stream: {:?}",
            seen.cut_sample.lock().expect("lock")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_answer_every_message_once_in_conversation_order() {
    let _turn = REPLICAS_AT_A_TIME.lock().await;
    let replicas = Replicas::start(BINARY, 3, "").await;
    let ports = Arc::new(std::sync::Mutex::new(
        (0..3).map(|index| Some(replicas.port(index))).collect(),
    ));
    let seen = Arc::new(Seen::default());
    let prefix = databot_e2e::unique_name("steady");
    send_all(ports, 1000, 5, prefix.clone(), seen.clone()).await;
    // The database first: a failure there (a message never run) tells a lost message from a
    // reply that did not reach its client.
    check_database(&replicas, &prefix, 1000, 5).await;
    check_clients(&seen, 1000, 5, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_and_a_restarted_replica_lose_and_duplicate_nothing() {
    let _turn = REPLICAS_AT_A_TIME.lock().await;
    let mut replicas = Replicas::start(BINARY, 3, "").await;
    let ports = Arc::new(std::sync::Mutex::new(
        (0..3)
            .map(|index| Some(replicas.port(index)))
            .collect::<Vec<_>>(),
    ));
    let seen = Arc::new(Seen::default());
    let prefix = databot_e2e::unique_name("faults");
    let load = tokio::spawn(send_all(
        ports.clone(),
        1000,
        5,
        prefix.clone(),
        seen.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The load balancer takes a dead replica out of rotation.
    ports.lock().expect("lock")[1] = None;
    replicas.members[1].kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ports.lock().expect("lock")[2] = None;
    replicas.members[2].kill().await;
    replicas.members[2].restart().await;
    ports.lock().expect("lock")[2] = Some(replicas.port(2));
    load.await.expect("load");
    eprintln!(
        "streams cut by the kill: {}, submissions sent to another replica: {}",
        seen.cut.load(Ordering::Relaxed),
        seen.retried.load(Ordering::Relaxed)
    );
    check_clients(&seen, 1000, 5, true);
    check_database(&replicas, &prefix, 1000, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_replica_drains_in_time_and_loses_no_turn() {
    let _turn = REPLICAS_AT_A_TIME.lock().await;
    let mut replicas = Replicas::start(BINARY, 2, "").await;
    let ports = Arc::new(std::sync::Mutex::new(vec![
        Some(replicas.port(0)),
        Some(replicas.port(1)),
    ]));
    let seen = Arc::new(Seen::default());
    let prefix = databot_e2e::unique_name("drain");
    let load = tokio::spawn(send_all(
        ports.clone(),
        300,
        5,
        prefix.clone(),
        seen.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    ports.lock().expect("lock")[0] = None;
    let took = replicas.members[0]
        .terminate(Duration::from_secs(30))
        .await
        .expect("the replica exits within 30 s of SIGTERM");
    load.await.expect("load");
    // A drained replica answered what it had accepted: no client lost its reply.
    check_clients(&seen, 300, 5, false);
    check_database(&replicas, &prefix, 300, 5).await;
    eprintln!("drained in {took:?}");
}

/// A store and outbox on a schema of the test's own.
async fn postgres_outbox() -> (
    Arc<databot::agent::sessions::SessionStore>,
    databot::bus::outbox::Outbox,
) {
    let schema = databot_e2e::unique_name("outbox");
    databot_e2e::postgres_exec(&[format!("CREATE SCHEMA {schema}")]).await;
    let url = format!(
        "{}?options=-c%20search_path%3D{schema}",
        databot_e2e::POSTGRES_URL
    );
    let sessions = Arc::new(
        databot::agent::sessions::SessionStore::connect(&url)
            .await
            .expect("sessions"),
    );
    let outbox = databot::bus::outbox::Outbox::open(sessions.pool().clone())
        .await
        .expect("outbox");
    (sessions, outbox)
}

fn replicated_message(id: &str, content: &str) -> databot::bus::InboundMessage {
    databot::bus::InboundMessage {
        channel: "api".into(),
        chat_id: "chat".into(),
        sender_id: "someone".into(),
        content: content.into(),
        id: id.into(),
        reply_to: Some(databot::bus::outbox::ReplyAddress {
            replica: "r0".into(),
            request: "q1".into(),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_and_its_processed_record_are_saved_together_or_not_at_all() {
    use databot::contract::chat::{ChatMessage, Role, Usage};
    let (sessions, outbox) = postgres_outbox().await;
    let message = replicated_message("m-1", "hello");
    let receipt = databot::bus::outbox::ReplyReceipt::of(&message).expect("a receipt");
    let turn = [
        ChatMessage::text(Role::User, "hello"),
        ChatMessage::text(Role::Assistant, "hi"),
    ];
    let record = receipt.record("hi", false).expect("record");
    sessions
        .append_turn(
            "api:chat",
            &turn,
            Usage::default(),
            &Default::default(),
            Some(&record),
        )
        .await
        .expect("the first answer is saved");
    // A second replica that ran the same message (a zombie after a rebalance) saves nothing.
    let late = receipt.record("hi again", false).expect("record");
    let refused = sessions
        .append_turn(
            "api:chat",
            &turn,
            Usage::default(),
            &Default::default(),
            Some(&late),
        )
        .await;
    assert!(refused.is_err(), "the same message is not answered twice");
    let history = sessions.history("api:chat").await.expect("history");
    assert_eq!(
        history.len(),
        2,
        "only the first turn's messages: {history:?}"
    );
    let stored = outbox
        .reply_for("m-1")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(stored.reply.content, "hi");
    assert!(!stored.delivered);
    // A failure recorded on its own does not replace an answer.
    let failure = receipt.record("sorry", true).expect("record");
    assert!(!outbox.record(&failure).await.expect("record"));
    assert_eq!(
        outbox
            .reply_for("m-1")
            .await
            .expect("read")
            .expect("kept")
            .reply
            .content,
        "hi"
    );
}

/// Counts the turns it runs; fails those whose content is `fail`, panics on `panic`, and
/// cannot reach its store on run number `first_transient` of `store down once`.
#[derive(Default)]
struct Counting {
    runs: AtomicUsize,
    first_transient: usize,
}

#[async_trait::async_trait]
impl databot::bus::MessageHandler for Counting {
    async fn handle(
        &self,
        message: databot::bus::InboundMessage,
        _events: databot::events::EventSink,
    ) -> databot::bus::OutboundMessage {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        assert_ne!(message.content, "panic", "a bug in a turn");
        databot::bus::OutboundMessage {
            channel: message.channel,
            chat_id: message.chat_id,
            content: format!("ran: {}", message.content),
            failed: message.content == "fail" || message.content == "store down once",
            // The session store is out of reach on the first run only.
            transient: message.content == "store down once" && run == self.first_transient,
            ..Default::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_again_is_not_run_again() {
    use databot::bus::MessageHandler;
    let (_sessions, outbox) = postgres_outbox().await;
    let inner = Arc::new(Counting::default());
    let durable = databot::bus::DurableHandler::new(inner.clone(), outbox.clone());
    let (events, _receiver) = databot::events::event_queue(8, Arc::default());
    // Not recorded by the turn (a failure): the handler records it, once.
    let first = durable
        .handle(replicated_message("m-2", "fail"), events.clone())
        .await;
    assert!(first.failed && first.recorded);
    let again = durable
        .handle(replicated_message("m-2", "fail"), events.clone())
        .await;
    assert_eq!(again.content, first.content);
    assert_eq!(inner.runs.load(Ordering::SeqCst), 1, "run once");
    assert_eq!(
        outbox
            .reply_for("m-2")
            .await
            .expect("read")
            .expect("recorded")
            .reply
            .content,
        "ran: fail"
    );
    // A turn that panics is answered as failed (its message is not lost).
    let panicked = durable
        .handle(replicated_message("m-3", "panic"), events.clone())
        .await;
    assert!(panicked.failed && panicked.recorded, "{panicked:?}");
    assert!(panicked.content.contains("unexpectedly"));
    assert!(
        outbox
            .reply_for("m-3")
            .await
            .expect("read")
            .expect("recorded")
            .reply
            .failed,
        "the failure is the message's answer"
    );
    // A turn that could not reach its store runs again instead of recording the failure.
    let inner = Arc::new(Counting {
        first_transient: 0,
        ..Counting::default()
    });
    let durable = databot::bus::DurableHandler::new(inner.clone(), outbox.clone());
    let retried = durable
        .handle(replicated_message("m-4", "store down once"), events.clone())
        .await;
    assert_eq!(inner.runs.load(Ordering::SeqCst), 2, "ran again");
    assert!(retried.recorded && !retried.transient);
    // Without a reply address (the in-process bus) it is the inner handler alone.
    let local = durable
        .handle(
            databot::bus::InboundMessage {
                content: "x".into(),
                ..Default::default()
            },
            events,
        )
        .await;
    assert!(!local.recorded);
    assert_eq!(inner.runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_rate_limit_holds_across_replicas() {
    let schema = databot_e2e::unique_name("limits");
    databot_e2e::postgres_exec(&[format!("CREATE SCHEMA {schema}")]).await;
    let url = format!(
        "{}?options=-c%20search_path%3D{schema}",
        databot_e2e::POSTGRES_URL
    );
    let host = databot_e2e::TestHost::start("", &[]).await.expect("host");
    let gateway = |shared: bool| {
        format!(
            "agent:
  sessions_url: \"{url}\"
gateway:
  api_keys: [\"key-one-0123456789\", \"key-two-0123456789\"]
  rate_limit:
    requests: 4
    window_seconds: 60
    shared: {shared}
"
        )
    };
    let get = |port: u16, key: &'static str| async move {
        databot_e2e::http_call(port, "GET", "/api/v1/channels", &[("x-api-key", key)], "")
            .await
            .0
    };
    // Two replicas sharing the count: four requests in all, wherever they land.
    let a = host.start_gateway("offline", &gateway(true)).await;
    let b = host.start_gateway("offline", &gateway(true)).await;
    let mut statuses = Vec::new();
    for n in 0..6 {
        statuses.push(get(if n % 2 == 0 { a } else { b }, "key-one-0123456789").await);
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
    assert_eq!(get(b, "key-two-0123456789").await, 200, "per key");
    // Counted apart, each replica allows the limit on its own.
    let c = host.start_gateway("offline", &gateway(false)).await;
    let d = host.start_gateway("offline", &gateway(false)).await;
    let mut allowed = 0;
    for n in 0..10 {
        if get(if n % 2 == 0 { c } else { d }, "key-two-0123456789").await == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_state_is_one_for_every_replica() {
    let schema = databot_e2e::unique_name("state");
    databot_e2e::postgres_exec(&[format!("CREATE SCHEMA {schema}")]).await;
    let url = format!(
        "{}?options=-c%20search_path%3D{schema}",
        databot_e2e::POSTGRES_URL
    );
    let one = databot::capabilities::SharedStateStore::connect_lazy(&url).expect("store");
    let two = databot::capabilities::SharedStateStore::connect_lazy(&url).expect("store");
    one.set("counter", "seen/a".into(), b"1".to_vec())
        .await
        .expect("set");
    one.set("counter", "seen/b".into(), vec![0, 255, 7])
        .await
        .expect("set");
    one.set("other", "seen/c".into(), b"x".to_vec())
        .await
        .expect("set");
    assert_eq!(
        two.get("counter", "seen/b").await.expect("get"),
        Some(vec![0, 255, 7]),
        "bytes as they were, on another replica"
    );
    assert_eq!(
        two.keys("counter", "seen/").await.expect("keys"),
        vec!["seen/a", "seen/b"],
        "a plugin sees its own keys only"
    );
    assert_eq!(
        two.keys("counter", "%").await.expect("keys"),
        Vec::<String>::new()
    );
    two.set("counter", "seen/a".into(), b"2".to_vec())
        .await
        .expect("overwrite");
    assert_eq!(
        one.get("counter", "seen/a").await.expect("get"),
        Some(b"2".to_vec())
    );
    two.delete("counter", "seen/a").await.expect("delete");
    assert_eq!(one.get("counter", "seen/a").await.expect("get"), None);
    // The per-plugin limit holds for the shared store too.
    let big = vec![7u8; 1024 * 1024];
    let mut stored = 0;
    let refused = loop {
        match one.set("hoarder", format!("k{stored}"), big.clone()).await {
            Ok(()) => stored += 1,
            Err(error) => break error,
        }
        assert!(stored < 40, "the limit never bit");
    };
    assert!(refused.to_string().contains("full"), "{refused}");
    assert_eq!(stored, 15, "16 MiB of keys and values at most");
    assert!(
        one.set("other", "fits".into(), big).await.is_ok(),
        "per plugin"
    );
}
