//! Tracing and metrics end to end: spans of a real agent turn (router off, offline provider),
//! a tool call, a connector call and its SQL statement, plugin compile/instantiate, received by
//! a real OTLP receiver over gRPC and over HTTP/protobuf, with parent/child links and
//! attributes checked; W3C `traceparent` through the gateway; export off and an unreachable
//! collector change nothing for the host; `/metrics` counts calls, latencies and budgets hit.
//!
//! Each test installs its subscriber for its own thread (`otlp::set_thread_subscriber`) and
//! runs on a current-thread runtime, so every span of the test lands in its own receiver. Flushing blocks,
//! so it runs on the blocking pool while the runtime keeps serving the exporter's connection.

use std::time::Duration;

use databot::config::{OtlpProtocol, TelemetryConfig};
use databot_e2e::otlp::{OtlpReceiver, ReceivedSpan};
use databot_e2e::{TestHost, http_call};

const JSON: (&str, &str) = ("content-type", "application/json");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// Install a subscriber exporting to `endpoint` for this thread; returns what keeps it alive.
fn export_to(
    endpoint: &str,
    protocol: OtlpProtocol,
    service_name: Option<&str>,
    timeout_ms: Option<u64>,
) -> (
    databot::telemetry::TelemetryGuard,
    tracing::subscriber::DefaultGuard,
) {
    let config = TelemetryConfig {
        endpoint: Some(endpoint.to_owned()),
        protocol: Some(protocol),
        service_name: service_name.map(str::to_owned),
        timeout_ms,
        ..TelemetryConfig::default()
    };
    let settings = config
        .resolve(|_| None)
        .expect("valid settings")
        .expect("export on");
    let (subscriber, guard) =
        databot::telemetry::subscriber(Some(&settings), "warn").expect("exporter builds");
    assert!(guard.endpoint().is_some());
    let default = databot_e2e::otlp::set_thread_subscriber(subscriber);
    (guard, default)
}

/// Flush on the blocking pool (the gRPC connection lives on this test's runtime).
async fn flush(guard: databot::telemetry::TelemetryGuard) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let result = guard.force_flush();
        drop(guard);
        result
    })
    .await
    .expect("flush task")
}

/// A host with the echo tool, the offline provider, and the `sql` tool over a SQLite
/// `sql_connector` instance named `lite` (table `items`, 3 rows).
async fn data_host() -> TestHost {
    let host = databot_e2e::sqlite_items_host(&["echo"]).await;
    host.load_builtin("offline").await;
    host
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found = named(spans, name);
    assert_eq!(
        found.len(),
        1,
        "expected one `{name}` span, got {}: {:#?}",
        found.len(),
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

/// Is `span` below `ancestor` (following parent links through `spans`)?
fn descends_from(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
    let mut parent = span.parent_span_id.clone();
    while !parent.is_empty() {
        if parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(next) => parent = next.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

fn is_digest(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_export_links_the_turn_to_the_callers_traceparent_down_to_the_sql_statement() {
    let receiver = OtlpReceiver::grpc().await;
    let (guard, _default) = export_to(&receiver.endpoint, OtlpProtocol::Grpc, None, None);
    let host = data_host().await;
    let port = host.start_gateway("offline", "").await;

    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let (status, _, body) = http_call(
        port,
        "POST",
        "/api/v1/message",
        &[JSON, ("traceparent", &traceparent)],
        r#"{"content": "/sql_query {\"query\": \"SELECT id, name FROM items ORDER BY id\"}"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sql_query"), "{body}");
    // A second turn without trace context starts its own trace.
    let (status, _, body) = http_call(
        port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "/echo {\"text\": \"untraced\"}"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The streaming endpoint carries the caller's context too.
    let streamed_trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, _, body) = http_call(
        port,
        "POST",
        "/api/v1/stream",
        &[
            JSON,
            (
                "traceparent",
                &format!("00-{streamed_trace}-b7ad6b7169203331-01"),
            ),
        ],
        r#"{"content": "/echo {\"text\": \"streamed\"}"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("streamed"), "{body}");
    flush(guard).await.expect("flush");

    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().filter(|s| s.name == "agent.turn").count() >= 3
        })
        .await;
    let streamed = spans
        .iter()
        .find(|s| s.name == "agent.turn" && s.trace_id == streamed_trace)
        .expect("the streamed turn joined the caller's trace");
    assert_eq!(streamed.parent_span_id, "b7ad6b7169203331");
    assert!(receiver.requests() >= 1);
    let turns = named(&spans, "agent.turn");
    assert_eq!(
        turns.len(),
        3,
        "{} requests: {:?}",
        receiver.requests(),
        spans
            .iter()
            .map(|s| (
                &s.name,
                &s.trace_id[..6],
                &s.span_id[..6],
                &s.parent_span_id
            ))
            .collect::<Vec<_>>()
    );
    let turn = turns
        .iter()
        .find(|s| s.trace_id == TRACE_ID)
        .expect("a turn in the caller's trace");
    assert_eq!(turn.parent_span_id, PARENT_ID);
    assert_eq!(
        turn.str_attr("databot.session")
            .map(|s| s.starts_with("api:")),
        Some(true)
    );
    assert_eq!(
        turn.int_attr("databot.turn.tool_calls"),
        Some(1),
        "{turn:#?}"
    );
    assert_eq!(turn.int_attr("databot.turn.iterations"), Some(2));
    assert!(
        turn.int_attr("gen_ai.usage.input_tokens").unwrap_or(0) > 0,
        "{turn:?}"
    );
    assert_eq!(turn.service_name, "databot");
    assert_eq!(turn.service_version, env!("CARGO_PKG_VERSION"));
    let other = turns
        .iter()
        .find(|s| s.trace_id != TRACE_ID && s.trace_id != streamed_trace)
        .expect("second turn");
    assert!(other.parent_span_id.is_empty(), "a root span: {other:?}");

    // Provider calls: GenAI conventions, tokens, children of the turn.
    let chats: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == "chat offline" && s.trace_id == TRACE_ID)
        .collect();
    assert_eq!(chats.len(), 2, "two model rounds: {spans:#?}");
    assert!(
        chats
            .iter()
            .any(|c| c.int_attr("gen_ai.usage.output_tokens").unwrap_or(0) > 0),
        "{chats:#?}"
    );
    for chat in &chats {
        assert_eq!(chat.parent_span_id, turn.span_id);
        assert_eq!(chat.kind, 3, "client span");
        assert_eq!(chat.str_attr("gen_ai.operation.name"), Some("chat"));
        assert_eq!(chat.str_attr("gen_ai.provider.name"), Some("offline"));
        assert_eq!(chat.str_attr("gen_ai.response.model"), Some("offline-1"));
        assert!(
            chat.int_attr("gen_ai.usage.input_tokens").unwrap_or(0) > 0,
            "{chat:?}"
        );
        assert!(
            chat.int_attr("gen_ai.usage.output_tokens").is_some(),
            "{chat:?}"
        );
    }

    // The tool call: child of the turn, with plugin, revision digest, outcome, memory, bytes.
    let tool = one(&spans, "execute_tool sql_query");
    assert_eq!(tool.trace_id, TRACE_ID);
    assert_eq!(tool.parent_span_id, turn.span_id);
    assert_eq!(tool.str_attr("gen_ai.operation.name"), Some("execute_tool"));
    assert_eq!(tool.str_attr("gen_ai.tool.name"), Some("sql_query"));
    assert_eq!(tool.str_attr("databot.plugin.name"), Some("sql"));
    assert!(
        is_digest(tool.str_attr("databot.plugin.digest")),
        "{tool:?}"
    );
    assert_eq!(tool.str_attr("databot.call.outcome"), Some("ok"));
    assert!(
        tool.int_attr("databot.guest.memory_peak_bytes")
            .unwrap_or(0)
            > 0,
        "{tool:?}"
    );
    assert!(
        tool.int_attr("databot.output.bytes").unwrap_or(0) > 0,
        "{tool:?}"
    );
    assert!(
        tool.end_ns > tool.start_ns,
        "the span's duration is the call's: {tool:?}"
    );

    // The connector the tool called, and the statement it ran, below the tool call.
    let connector = one(&spans, "connector lite.query");
    assert_eq!(connector.parent_span_id, tool.span_id);
    let sql = one(&spans, "SELECT lite");
    assert!(descends_from(&spans, sql, tool), "{sql:?}");
    assert_eq!(sql.parent_span_id, connector.span_id);
    assert_eq!(sql.str_attr("db.system.name"), Some("sqlite"));
    assert_eq!(sql.str_attr("db.operation.name"), Some("SELECT"));
    assert_eq!(sql.str_attr("databot.sql.source"), Some("lite"));
    assert_eq!(sql.int_attr("db.response.returned_rows"), Some(3));
    assert_eq!(
        sql.attr("databot.sql.truncated"),
        Some(&serde_json::json!(false))
    );

    // Loading: compile (a cache miss in a fresh folder) and instantiate under plugin.load.
    let loads = named(&spans, "plugin.load");
    let sql_load = loads
        .iter()
        .find(|s| s.str_attr("databot.plugin.name") == Some("sql"))
        .expect("the sql plugin's load");
    let compile = named(&spans, "plugin.compile")
        .into_iter()
        .find(|s| s.parent_span_id == sql_load.span_id)
        .expect("compile under load");
    assert_eq!(compile.str_attr("databot.compile.cache"), Some("miss"));
    assert_eq!(
        compile.str_attr("databot.plugin.digest"),
        tool.str_attr("databot.plugin.digest")
    );
    assert!(
        named(&spans, "plugin.instantiate")
            .iter()
            .any(|s| s.parent_span_id == sql_load.span_id),
        "{spans:#?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn http_export_carries_a_direct_turn_and_a_hot_swap() {
    let receiver = OtlpReceiver::http().await;
    let (guard, _default) = export_to(
        &receiver.endpoint,
        OtlpProtocol::HttpProtobuf,
        Some("databot-http-test"),
        None,
    );
    let host = TestHost::start("", &["echo"]).await.expect("host starts");
    host.load_builtin("offline").await;
    let agent = host.agent("offline", false).await;
    let outcome = agent
        .turn("test:http", r#"/echo {"text": "over http"}"#, None)
        .await
        .expect("turn");
    assert_eq!(outcome.tool_calls, 1);
    // With the router on, the routing decision is its own span inside the turn.
    let routed = host
        .agent("offline", true)
        .await
        .turn("test:routed", "hello", None)
        .await
        .expect("routed turn");
    let specialist = routed.specialist.expect("a specialist");
    // A new revision of echo swaps in.
    let bytes = std::fs::read(databot_e2e::fixture("echo")).expect("fixture");
    let old = host
        .runtime
        .plugin("echo")
        .expect("echo")
        .current()
        .digest
        .clone();
    let new = host
        .runtime
        .load_bytes(
            databot_e2e::with_marker(&bytes, "v2"),
            databot::runtime::PluginSource::Builtin,
        )
        .await
        .expect("second revision");
    flush(guard).await.expect("flush");

    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.name == "plugin.swap")
        })
        .await;
    let turns = named(&spans, "agent.turn");
    assert_eq!(turns.len(), 2, "{spans:#?}");
    let routed_turn = turns
        .iter()
        .find(|s| s.str_attr("databot.session") == Some("test:routed"))
        .expect("the routed turn");
    assert_eq!(
        routed_turn.str_attr("databot.specialist"),
        Some(specialist.as_str())
    );
    let route = one(&spans, "agent.route");
    assert_eq!(route.parent_span_id, routed_turn.span_id);
    assert_eq!(
        route.str_attr("databot.specialist"),
        Some(specialist.as_str())
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "chat offline" && s.parent_span_id == route.span_id),
        "the router's provider call is inside the route span"
    );
    let turn = *turns
        .iter()
        .find(|s| s.str_attr("databot.session") == Some("test:http"))
        .expect("the direct turn");
    assert!(turn.parent_span_id.is_empty());
    assert_eq!(turn.service_name, "databot-http-test");
    let tool = one(&spans, "execute_tool echo");
    assert_eq!(tool.parent_span_id, turn.span_id);
    assert_eq!(tool.trace_id, turn.trace_id);
    assert_eq!(tool.str_attr("databot.plugin.name"), Some("echo"));
    assert_eq!(tool.str_attr("databot.plugin.digest"), Some(old.as_str()));
    assert!(
        named(&spans, "chat offline")
            .iter()
            .filter(|s| s.trace_id == turn.trace_id)
            .all(|s| s.parent_span_id == turn.span_id)
    );
    let swap = one(&spans, "plugin.swap");
    assert_eq!(
        swap.str_attr("databot.plugin.digest.old"),
        Some(old.as_str())
    );
    assert_eq!(
        swap.str_attr("databot.plugin.digest"),
        Some(new.digest.as_str())
    );
    let load = spans
        .iter()
        .find(|s| s.span_id == swap.parent_span_id)
        .expect("the swap's load span");
    assert_eq!(load.name, "plugin.load");
}

#[tokio::test(flavor = "current_thread")]
async fn without_configuration_nothing_is_exported_and_everything_works() {
    // Nothing in YAML and nothing in the environment: export is off.
    assert_eq!(TelemetryConfig::default().resolve(|_| None), Ok(None));
    let (subscriber, guard) = databot::telemetry::subscriber(None, "warn").expect("subscriber");
    assert!(guard.endpoint().is_none());
    let _default = databot_e2e::otlp::set_thread_subscriber(subscriber);
    let host = data_host().await;
    let agent = host.agent("offline", false).await;
    let outcome = agent
        .turn(
            "test:off",
            r#"/sql_query {"query": "SELECT id FROM items"}"#,
            None,
        )
        .await
        .expect("turn");
    assert!(outcome.content.contains("sql_query"), "{}", outcome.content);
    // No OpenTelemetry layer: spans carry no trace context to propagate.
    let span = tracing::info_span!("probe");
    assert!(databot::telemetry::propagation::current_context(&span).is_empty());
    flush(guard).await.expect("nothing to flush");
}

#[tokio::test(flavor = "current_thread")]
async fn an_unreachable_collector_does_not_stop_the_host() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!(
        "http://127.0.0.1:{}",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let (guard, _default) = export_to(&endpoint, OtlpProtocol::Grpc, None, Some(300));
    let host = TestHost::start("", &["echo"]).await.expect("host starts");
    host.load_builtin("offline").await;
    let port = host.start_gateway("offline", "").await;
    for _ in 0..2 {
        let (status, _, body) = http_call(
            port,
            "POST",
            "/api/v1/message",
            &[
                JSON,
                (
                    "traceparent",
                    "00-00000000000000000000000000000000-0000000000000000-01",
                ),
            ],
            r#"{"content": "/echo {\"text\": \"still serving\"}"}"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("still serving"), "{body}");
    }
    // The export fails (nobody listens) within its timeout; it is an error, not a hang or a panic.
    let started = std::time::Instant::now();
    let _ = flush(guard).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (status, _, _) = http_call(port, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
}

#[test]
fn bad_settings_are_refused_at_startup() {
    for (yaml, expected) in [
        ("endpoint: localhost:4317", "telemetry.endpoint"),
        ("endpoint: \"ftp://collector:21\"", "http://"),
        ("endpoint: http://c:4317\nsample_ratio: 1.5", "sample_ratio"),
    ] {
        // In the YAML: refused when the configuration loads (`databot config check` too).
        let error = databot::config::Config::parse(
            &format!(
                "telemetry:\n{}",
                yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
            ),
            "t.yaml",
            |_| None,
        )
        .err()
        .unwrap_or_else(|| panic!("{yaml} should be refused"));
        assert!(error.to_string().contains(expected), "{error}");
    }
    // Settings that reach `init` another way (a config built in code) are refused there too.
    let config = TelemetryConfig {
        endpoint: Some("localhost:4317".into()),
        ..TelemetryConfig::default()
    };
    let error = databot::telemetry::init(&config, "warn")
        .err()
        .unwrap_or_else(|| panic!("a URL without a scheme should be refused"));
    assert!(error.to_string().contains("telemetry.endpoint"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_latencies_and_budgets_hit() {
    let config = r#"
  budgets:
    timeout_ms: 300
    memory_mb: 32
  circuit_breaker:
    failure_threshold: 1000
plugins:
  hostile:
    budgets:
      max_output_bytes: 1024
    permissions:
      filesystem:
        - { host: "{dir}/granted", guest: /data, mode: ro }
"#;
    let host = TestHost::start_with(config, &["hostile", "echo"], |dir| {
        std::fs::create_dir_all(dir.join("granted"))
    })
    .await
    .expect("host starts");
    host.load_builtin("offline").await;
    let port = host.start_gateway("offline", "").await;
    let spin = host
        .runtime
        .call_tool("spin", "{}")
        .await
        .expect_err("spins");
    assert_eq!(spin.kind, databot::runtime::ErrorKind::Timeout);
    let grow = host
        .runtime
        .call_tool("grow_memory", r#"{"amount": 100}"#)
        .await
        .expect_err("too big");
    assert_eq!(grow.kind, databot::runtime::ErrorKind::MemoryExceeded);
    let big = host
        .runtime
        .call_tool("big_output", r#"{"amount": 4096}"#)
        .await
        .expect_err("too much output");
    assert_eq!(big.kind, databot::runtime::ErrorKind::OutputTooLarge);
    let (status, _, body) = http_call(
        port,
        "POST",
        "/api/v1/message",
        &[JSON],
        r#"{"content": "/echo {\"text\": \"m\"}"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, _, metrics) = http_call(port, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    for expected in [
        "databot_budget_exceeded_total{plugin=\"hostile\",budget=\"timeout\"} 1",
        "databot_budget_exceeded_total{plugin=\"hostile\",budget=\"memory\"} 1",
        "databot_budget_exceeded_total{plugin=\"hostile\",budget=\"output\"} 1",
        "databot_plugin_invocations_total{plugin=\"hostile\",operation=\"tool\",outcome=\"timeout\"} 1",
        "databot_plugin_invocations_total{plugin=\"echo\",operation=\"tool\",outcome=\"ok\"} 1",
        "databot_plugin_invocations_total{plugin=\"offline\",operation=\"provider_chat\",outcome=\"ok\"} 2",
        "databot_plugin_errors_total{kind=\"memory_exceeded\"} 1",
        "databot_plugin_call_duration_seconds_count{plugin=\"echo\",operation=\"tool\"} 1",
        "databot_plugin_call_duration_seconds_bucket{plugin=\"hostile\",operation=\"tool\",le=\"+Inf\"} 3",
        "databot_provider_call_duration_seconds_count{provider=\"offline\"} 2",
        "databot_http_request_duration_seconds_count{route=\"/api/v1/message\"} 1",
        // The names that existed before stay.
        "databot_http_requests_total{route=\"/api/v1/message\",status=\"200\"} 1",
        "databot_turns_total 1",
        "databot_plugin_calls_total{plugin=\"echo\"} 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing `{expected}` in:\n{metrics}"
        );
    }
    let tokens = metrics
        .lines()
        .find(|l| l.starts_with("databot_gen_ai_tokens_total{provider=\"offline\",type=\"input\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(tokens > 0, "{metrics}");
    assert_eq!(
        host.runtime
            .metrics()
            .budgets_hit("hostile", databot::telemetry::Budget::Timeout),
        1
    );
}

/// A failed plugin call is exported with error status and `error.type`; a successful one under
/// the caller's own span (a `tracing` span the host did not make) is that span's child.
#[tokio::test(flavor = "current_thread")]
async fn failed_calls_are_marked_and_calls_nest_under_the_callers_span() {
    let receiver = OtlpReceiver::http().await;
    let (guard, _default) = export_to(&receiver.endpoint, OtlpProtocol::HttpProtobuf, None, None);
    let host = TestHost::start(
        "  budgets:\n    timeout_ms: 300\n  circuit_breaker:\n    failure_threshold: 1000\n",
        &["hostile", "echo"],
    )
    .await
    .expect("host starts");
    let spin = host
        .runtime
        .call_tool("spin", "{}")
        .await
        .expect_err("spins");
    assert_eq!(spin.kind, databot::runtime::ErrorKind::Timeout);
    let caller = tracing::info_span!(target: "databot::test", "caller");
    tracing::Instrument::instrument(
        host.runtime.call_tool("echo", r#"{"text": "x"}"#),
        caller.clone(),
    )
    .await
    .expect("echo answers");
    drop(caller);
    flush(guard).await.expect("flush");

    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.name == "execute_tool echo")
                && spans.iter().any(|s| s.name == "caller")
        })
        .await;
    let spin = one(&spans, "execute_tool spin");
    assert_eq!(spin.status_code, 2, "{spin:?}");
    assert_eq!(spin.str_attr("error.type"), Some("timeout"));
    assert_eq!(spin.str_attr("databot.call.outcome"), Some("timeout"));
    assert!(spin.parent_span_id.is_empty(), "a root span: {spin:?}");
    let caller = one(&spans, "caller");
    let echo = one(&spans, "execute_tool echo");
    assert_eq!(echo.parent_span_id, caller.span_id);
    assert_eq!(echo.trace_id, caller.trace_id);
    assert_eq!(echo.status_code, 0, "{echo:?}");
    assert!(echo.end_ns >= echo.start_ns);
}

#[tokio::test(flavor = "current_thread")]
async fn a_scheduled_run_and_its_agent_turn_share_the_trace_in_its_history() {
    let receiver = OtlpReceiver::grpc().await;
    let (guard, _default) = export_to(&receiver.endpoint, OtlpProtocol::Grpc, None, None);
    let host = data_host().await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler =
        databot_e2e::schedules::SchedulerUnderTest::start(&host, &url, "traced", "").await;
    let store = scheduler.schedules.store.clone();
    let spec: databot::config::JobSpec = serde_json::from_value(serde_json::json!({
        "name": "nightly-echo", "every": "1h", "prompt": "/echo {\"text\": \"from the schedule\"}"
    }))
    .expect("a job");
    store
        .add(
            spec,
            databot::schedules::JobOrigin::Operator,
            "test",
            None,
            databot::schedules::store::now_ms(),
        )
        .await
        .expect("added");
    let slot = store
        .trigger("nightly-echo", databot::schedules::store::now_ms())
        .await
        .expect("triggered");
    let mut run = None;
    for _ in 0..400 {
        run = store
            .run("nightly-echo", slot)
            .await
            .expect("run")
            .filter(|r| r.status.is_final());
        if run.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let run = run.expect("the run finished");
    assert_eq!(
        run.status,
        databot::schedules::RunStatus::Succeeded,
        "{run:?}"
    );
    assert!(
        run.output
            .as_deref()
            .is_some_and(|o| o.contains("from the schedule")),
        "{run:?}"
    );
    let trace_id = run.trace_id.clone().expect("a trace id");
    assert_eq!(
        scheduler
            .schedules
            .metrics
            .runs("nightly-echo", "succeeded"),
        1
    );
    // Removing the job takes its conversation with it: a later job of the same name starts
    // with nothing of this one's.
    let sessions = databot::agent::sessions::SessionStore::connect(&url)
        .await
        .expect("sessions");
    assert!(
        !sessions
            .history("schedule:nightly-echo")
            .await
            .expect("history")
            .is_empty()
    );
    store
        .remove("nightly-echo", databot::schedules::store::Only::Any)
        .await
        .expect("removed");
    assert!(
        sessions
            .history("schedule:nightly-echo")
            .await
            .expect("history")
            .is_empty()
    );
    assert!(
        store
            .history("nightly-echo", 10)
            .await
            .expect("runs")
            .is_empty()
    );
    scheduler.stop().await;
    flush(guard).await.expect("flushed");
    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            !named(spans, "schedule.run").is_empty() && !named(spans, "agent.turn").is_empty()
        })
        .await;
    let runs = named(&spans, "schedule.run");
    assert_eq!(runs.len(), 1, "{spans:#?}");
    let run_span = runs[0];
    assert_eq!(
        run_span.trace_id, trace_id,
        "the history links the run's trace"
    );
    assert_eq!(run_span.str_attr("databot.job"), Some("nightly-echo"));
    assert_eq!(run_span.str_attr("databot.outcome"), Some("succeeded"));
    let turn = named(&spans, "agent.turn")
        .into_iter()
        .find(|t| t.str_attr("databot.session") == Some("schedule:nightly-echo"))
        .expect("the scheduled turn");
    assert_eq!(turn.trace_id, trace_id, "the turn joins the run's trace");
    assert_eq!(
        turn.parent_span_id, run_span.span_id,
        "under the run's span"
    );
}
