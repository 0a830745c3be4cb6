//! Scheduled jobs end to end: two hosts on one PostgreSQL run every slot exactly once; a
//! failing check notifies a webhook and a passing one stays quiet; the agent's `cron` tool
//! keeps to the operator's limits; the HTTP endpoints; restarts of the real binary in the
//! middle of a run and across a due slot, decided by the misfire policy; `databot cron`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use databot::agent::Conversation;
use databot::agent::host_tool::HostTool;
use databot::config::JobSpec;
use databot::schedules::store::{RunStatus, now_ms};
use databot::schedules::{JobOrigin, RunRecord, ScheduleStore};
use databot_e2e::chat_platforms::eventually;
use databot_e2e::schedules::{SchedulerUnderTest, postgres_sessions};
use databot_e2e::{ScriptedResponse, TestHost, serve_scripted};
use serde_json::json;

/// A job from its JSON definition (the fields of `schedules.jobs`).
fn job(json: &str) -> JobSpec {
    serde_json::from_str(json).expect("a job definition")
}

async fn all_runs(store: &ScheduleStore, name: &str) -> Vec<RunRecord> {
    let mut runs = store.history(name, 1000).await.expect("history");
    runs.reverse();
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_on_one_postgres_run_every_slot_exactly_once() {
    let url = postgres_sessions("databot_sched_two").await;
    let host_a = TestHost::start("", &["echo"]).await.expect("host a");
    let host_b = TestHost::start("", &["echo"]).await.expect("host b");
    let a = SchedulerUnderTest::start(&host_a, &url, "host-a", "").await;
    let b = SchedulerUnderTest::start(&host_b, &url, "host-b", "").await;
    let store = a.schedules.store.clone();
    let jobs = 20;
    for index in 0..jobs {
        let spec = job(&format!(
            r#"{{"name": "tick-{index}", "every": "1s", "tool": "echo", "arguments": {{"text": "slot"}}, "misfire_grace_seconds": 30}}"#
        ));
        store
            .add(spec, JobOrigin::Operator, "test", None, now_ms())
            .await
            .expect("job added");
    }
    // About 16 one-second slots per job: over 300 in all, split between the two hosts.
    tokio::time::sleep(Duration::from_secs(16)).await;
    for index in 0..jobs {
        store
            .set_paused(
                &format!("tick-{index}"),
                true,
                now_ms(),
                databot::schedules::store::Only::Any,
            )
            .await
            .expect("paused");
    }
    let settled = eventually(Duration::from_secs(30), || {
        futures::executor::block_on(async {
            for index in 0..jobs {
                if !store
                    .open_runs(&format!("tick-{index}"))
                    .await
                    .expect("open runs")
                    .is_empty()
                {
                    return false;
                }
            }
            true
        })
    })
    .await;
    assert!(settled, "runs still open after pausing");
    let mut total = 0;
    let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..jobs {
        let runs = all_runs(&store, &format!("tick-{index}")).await;
        assert!(
            runs.len() >= 12,
            "tick-{index} ran only {} times",
            runs.len()
        );
        for pair in runs.windows(2) {
            assert_eq!(
                pair[1].slot - pair[0].slot,
                1000,
                "tick-{index}: slots must follow one another without gaps or repeats"
            );
        }
        for run in &runs {
            assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
            assert_eq!(run.attempt, 1, "{run:?}");
            assert!(run.trace_id.as_deref().is_some_and(|t| t.len() == 32));
            *by_replica
                .entry(run.replica.clone().unwrap_or_default())
                .or_default() += 1;
        }
        total += runs.len();
    }
    assert!(total >= 300, "only {total} slots ran");
    // Every run called the tool once, on exactly one of the hosts.
    let calls =
        host_a.runtime.metrics().calls("echo", "ok") + host_b.runtime.metrics().calls("echo", "ok");
    assert_eq!(calls as usize, total, "tool calls across both hosts");
    assert_eq!(by_replica.len(), 2, "both hosts ran slots: {by_replica:?}");
    a.stop().await;
    b.stop().await;
}

/// A host with the built-in `data_quality` tool over a SQLite source whose `loads` table has
/// three rows.
async fn quality_host() -> TestHost {
    let yaml = r#"data:
  sql:
    lite: {url: "sqlite://{dir}/data.db"}
plugins:
  lite:
    builtin: sql_connector
    config: {source: lite}
    permissions: {sql: [lite]}
  data_quality:
    config: {connectors: [lite]}
    permissions: {connectors: [lite]}
"#;
    let host = TestHost::start_with(yaml, &[], |dir| {
        databot_e2e::sqlite_setup(
            &dir.join("data.db"),
            "CREATE TABLE loads (id INTEGER PRIMARY KEY, loaded_at TEXT); INSERT INTO loads VALUES (1, datetime('now', '-2 hours')), (2, datetime('now', '-1 hours')), (3, NULL);",
        )
    })
    .await
    .expect("host starts");
    host.load_builtin("sql_connector").await;
    host.load_builtin("data_quality").await;
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_notifies_its_webhook_and_a_passing_one_stays_quiet() {
    let host = quality_host().await;
    let (hook_port, seen) = serve_scripted(|_, _| ScriptedResponse::json(200, json!({}))).await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler = SchedulerUnderTest::start(
        &host,
        &url,
        "solo",
        "  webhooks:\n    allow_private: true\n",
    )
    .await;
    let store = scheduler.schedules.store.clone();
    let hook = format!("http://127.0.0.1:{hook_port}/hooks/T0KEN");
    for (name, min_rows) in [("enough-loads", 1), ("too-few-loads", 1000)] {
        let spec = job(&format!(
            r#"{{"name": "{name}", "every": "1h", "tool": "dq_row_count", "arguments": {{"table": "loads", "min_rows": {min_rows}}}, "notify": "on_failure", "deliver": {{"webhook": "{hook}"}}}}"#
        ));
        store
            .add(spec, JobOrigin::Operator, "test", None, now_ms())
            .await
            .expect("job added");
    }
    let passing = store
        .trigger("enough-loads", now_ms())
        .await
        .expect("trigger");
    let failing = store
        .trigger("too-few-loads", now_ms())
        .await
        .expect("trigger");
    let finished = |name: &'static str, slot: i64| {
        let store = store.clone();
        async move {
            for _ in 0..200 {
                if let Some(run) = store.run(name, slot).await.expect("run")
                    && run.status.is_final()
                {
                    return run;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("{name} did not finish");
        }
    };
    let quiet = finished("enough-loads", passing).await;
    let loud = finished("too-few-loads", failing).await;
    assert_eq!(quiet.status, RunStatus::Succeeded);
    assert_eq!(
        quiet.delivered.as_deref(),
        Some("not sent (notify: on_failure)")
    );
    assert!(
        quiet
            .output
            .as_deref()
            .is_some_and(|o| o.contains("\"passed\":true"))
    );
    assert_eq!(loud.status, RunStatus::Failed);
    assert_eq!(loud.error.as_deref(), Some("the check did not pass"));
    assert_eq!(
        loud.delivered.as_deref(),
        Some(format!("posted to webhook http://127.0.0.1:{hook_port}").as_str())
    );
    let posts = seen.all();
    assert_eq!(posts.len(), 1, "only the failing check is posted");
    assert_eq!(posts[0].method, "POST");
    assert_eq!(posts[0].path, "/hooks/T0KEN");
    let body = posts[0].json();
    assert_eq!(body["job"], "too-few-loads");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["trace_id"], loud.trace_id.clone().expect("a trace id"));
    assert!(
        body["output"]
            .as_str()
            .is_some_and(|o| o.contains("\"passed\":false"))
    );
    // The API shows the webhook by its origin only.
    let shown = store.get("too-few-loads").await.expect("job").view();
    assert!(!shown.to_string().contains("T0KEN"), "{shown}");
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_a_private_address_is_refused_unless_allowed() {
    let host = TestHost::start("", &["echo"]).await.expect("host");
    let (hook_port, seen) = serve_scripted(|_, _| ScriptedResponse::json(200, json!({}))).await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler = SchedulerUnderTest::start(&host, &url, "solo", "").await;
    let store = scheduler.schedules.store.clone();
    let spec = job(&format!(
        r#"{{"name": "hook", "every": "1h", "tool": "echo", "arguments": {{"text": "x"}}, "deliver": {{"webhook": "http://127.0.0.1:{hook_port}/h"}}}}"#
    ));
    store
        .add(spec, JobOrigin::Operator, "test", None, now_ms())
        .await
        .expect("job added");
    let slot = store.trigger("hook", now_ms()).await.expect("trigger");
    let mut run = None;
    for _ in 0..200 {
        run = store
            .run("hook", slot)
            .await
            .expect("run")
            .filter(|r| r.status.is_final());
        if run.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = run.expect("the run finished");
    assert_eq!(run.status, RunStatus::Succeeded, "the job itself ran");
    let delivered = run.delivered.unwrap_or_default();
    assert!(
        delivered.starts_with("not delivered:") && delivered.contains("non-public address"),
        "{delivered}"
    );
    assert!(seen.all().is_empty(), "nothing reached the private address");
    scheduler.stop().await;
}

fn conversation(channel: &str, chat: &str, user: &str) -> Conversation {
    conversation_in(channel, chat, None, user)
}

fn conversation_in(channel: &str, chat: &str, thread: Option<&str>, user: &str) -> Conversation {
    Conversation {
        session_key: databot::bus::session_key(channel, chat, thread),
        user: format!("{channel}:{user}"),
        caller: Some(Arc::new(databot::capabilities::Caller {
            channel: channel.to_owned(),
            user: user.to_owned(),
            display_name: None,
            chat: chat.to_owned(),
            thread: thread.map(str::to_owned),
            workspace: None,
        })),
        scope: databot::bus::TurnScope::default(),
        reply: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_cron_tool_keeps_to_the_operators_limits() {
    let host = TestHost::start("", &["echo"]).await.expect("host");
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let config = databot::config::Config::parse(
        "schedules:\n  agent:\n    allow: ['slack:*', 'telegram:U9']\n    min_interval_seconds: 3600\n    max_jobs_per_conversation: 2\n",
        "t.yaml",
        |_| None,
    )
    .expect("config");
    let sessions = databot::agent::sessions::SessionStore::connect(&url)
        .await
        .expect("sessions");
    let schedules = databot::schedules::Schedules::open(&config, Arc::new(sessions))
        .await
        .expect("schedules");
    let tool = databot::schedules::cron_tool::CronTool::new(
        schedules.store.clone(),
        host.runtime.clone(),
        config.schedules.agent.clone(),
    );
    let alice = conversation("slack", "C1", "U1");
    let add = |name: &str, when: serde_json::Value| {
        let mut arguments =
            json!({"action": "add", "name": name, "prompt": "post the standup reminder"});
        for (key, value) in when.as_object().expect("object") {
            arguments[key] = value.clone();
        }
        arguments
    };
    // Who may schedule.
    let denied = tool
        .call(
            &conversation("telegram", "7", "U1"),
            None,
            &add("t", json!({"cron": "0 9 * * MON-FRI"})),
        )
        .await
        .expect_err("telegram:U1 is not allowed");
    assert!(denied.contains("may not schedule"), "{denied}");
    // The shortest interval, for intervals and for cron patterns alike.
    let fast = tool
        .call(&alice, None, &add("fast", json!({"every": "5m"})))
        .await
        .expect_err("too frequent");
    assert!(
        fast.contains("shortest interval allowed is 3600 s"),
        "{fast}"
    );
    let fast_cron = tool
        .call(&alice, None, &add("fast2", json!({"cron": "*/10 * * * *"})))
        .await
        .expect_err("too frequent");
    assert!(fast_cron.contains("600 s apart"), "{fast_cron}");
    // Allowed: a weekday reminder in a time zone, kept for this conversation.
    let added = tool
        .call(
            &alice,
            None,
            &add(
                "standup",
                json!({"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"}),
            ),
        )
        .await
        .expect("added");
    assert!(added.contains("Scheduled `standup`"), "{added}");
    let stored = schedules.store.get("standup").await.expect("stored");
    assert_eq!(stored.origin, JobOrigin::Agent);
    assert_eq!(stored.owner, "slack:U1");
    assert_eq!(stored.conversation.as_deref(), Some("slack:C1"));
    // No `slack` channel plugin is loaded here, so its results are kept in the history.
    assert!(stored.spec.deliver.is_stored());
    tool.call(&alice, None, &add("weekly", json!({"every": "7d"})))
        .await
        .expect("a second job");
    let third = tool
        .call(&alice, None, &add("third", json!({"every": "1d"})))
        .await
        .expect_err("over the per-conversation limit");
    assert!(third.contains("max_jobs_per_conversation"), "{third}");
    // Another conversation sees none of them and cannot touch them.
    let bob = conversation("slack", "C2", "U2");
    let listed = tool
        .call(&bob, None, &json!({"action": "list"}))
        .await
        .expect("list");
    assert!(listed.contains("no scheduled jobs"), "{listed}");
    let steal = tool
        .call(&bob, None, &json!({"action": "remove", "name": "standup"}))
        .await
        .expect_err("not bob's job");
    assert!(steal.contains("no job named `standup`"), "{steal}");
    let listed = tool
        .call(&alice, None, &json!({"action": "list"}))
        .await
        .expect("list");
    assert!(
        listed.contains("standup") && listed.contains("weekly"),
        "{listed}"
    );
    tool.call(&alice, None, &json!({"action": "pause", "name": "standup"}))
        .await
        .expect("paused");
    assert!(schedules.store.get("standup").await.expect("job").paused);
    tool.call(&alice, None, &json!({"action": "remove", "name": "weekly"}))
        .await
        .expect("removed");
    // The model cannot aim a job elsewhere: delivery is not an argument.
    let aimed = tool.call(&alice, None, &json!({"action": "add", "name": "x", "every": "1d", "prompt": "p", "deliver": {"webhook": "http://127.0.0.1:1/"}}),
        )
        .await
        .expect_err("unknown field");
    assert!(aimed.contains("unknown field"), "{aimed}");
    // An operator may forbid the tool to everyone.
    let closed = databot::config::AgentSchedulingConfig {
        allow: Vec::new(),
        ..config.schedules.agent.clone()
    };
    let tool = databot::schedules::cron_tool::CronTool::new(
        schedules.store.clone(),
        host.runtime.clone(),
        closed,
    );
    assert!(
        tool.call(&alice, None, &add("n", json!({"every": "1d"})))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_cannot_make_jobs_nor_escape_their_specialist() {
    let host = TestHost::start("", &["echo"]).await.expect("host");
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let config = databot::config::Config::parse("{}", "t.yaml", |_| None).expect("config");
    let sessions = databot::agent::sessions::SessionStore::connect(&url)
        .await
        .expect("sessions");
    let schedules = databot::schedules::Schedules::open(&config, Arc::new(sessions))
        .await
        .expect("schedules");
    let tool = databot::schedules::cron_tool::CronTool::new(
        schedules.store.clone(),
        host.runtime.clone(),
        config.schedules.agent.clone(),
    );
    // A scheduled run's own turn is not offered the tool, and cannot call it.
    let run_turn = Conversation::local("schedule:parent");
    assert!(!tool.offered(&run_turn));
    let refused = tool
        .call(
            &run_turn,
            None,
            &json!({"action": "add", "name": "child", "every": "1d", "prompt": "spawn more"}),
        )
        .await
        .expect_err("a job cannot make jobs");
    assert!(refused.contains("scheduled run cannot"), "{refused}");
    // A tool job keeps to the specialist that answered: `quality` has no `echo`.
    let alice = conversation("slack", "C1", "U1");
    let tool_job = json!({"action": "add", "name": "t", "every": "1d", "tool": "echo", "arguments": {"text": "x"}});
    let denied = tool
        .call(&alice, Some("quality"), &tool_job)
        .await
        .expect_err("not a quality tool");
    assert!(denied.contains("`quality` specialist"), "{denied}");
    // A channel's pinned specialist holds the same way.
    let mut pinned = conversation("slack", "C2", "U1");
    pinned.scope.specialist = Some("sql".into());
    let denied = tool
        .call(&pinned, None, &tool_job)
        .await
        .expect_err("not an sql tool");
    assert!(denied.contains("`sql` specialist"), "{denied}");
    // Without a specialist (router off) the tool job is made, and records who answered.
    tool.call(&alice, None, &tool_job).await.expect("made");
    assert!(
        schedules
            .store
            .get("t")
            .await
            .expect("job")
            .context
            .is_some()
    );
    // Parallel adds of one answer cannot pass the per-conversation limit (5 by default).
    let adds = (0..12).map(|i| {
        let tool = &tool;
        let alice = &alice;
        async move {
            tool.call(
                alice,
                None,
                &json!({"action": "add", "name": format!("p{i}"), "every": "1d", "prompt": "x"}),
            )
            .await
        }
    });
    let made = futures::future::join_all(adds)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    assert_eq!(made, 4, "one job existed, the limit is 5");
    assert_eq!(
        schedules
            .store
            .list_for_conversation("slack:C1")
            .await
            .expect("list")
            .len(),
        5
    );
}

/// A `databot serve` child on `config`, ready on `port`.
async fn serve(config: &std::path::Path, port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("DATABOT_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("databot serve starts");
    let ready = eventually(Duration::from_secs(120), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(ready, "databot serve did not listen");
    child
}

/// SIGTERM, as a service manager stops the host; waits for it to exit.
async fn terminate(mut child: tokio::process::Child) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}

/// The schedule store of a data folder's default sessions database, beside a running host.
async fn store_of(data: &std::path::Path) -> ScheduleStore {
    let sessions = databot::agent::sessions::SessionStore::connect(&format!(
        "sqlite://{}",
        data.join("sessions.db").display()
    ))
    .await
    .expect("sessions database");
    ScheduleStore::open(&sessions, "reader".into(), Duration::from_secs(30))
        .await
        .expect("schedule tables")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_across_due_slots_follows_each_jobs_misfire_policy() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = databot_e2e::process_folder(
        dir.path(),
        &["echo"],
        false,
        &format!(
            r#"gateway: {{bind: "127.0.0.1:{port}"}}
schedules:
  poll_interval_ms: 200
  jobs:
    - {{name: once, every: 2s, tool: echo, arguments: {{text: a}}, misfire: run_once, misfire_grace_seconds: 1}}
    - {{name: skip, every: 2s, tool: echo, arguments: {{text: b}}, misfire: skip, misfire_grace_seconds: 1}}
"#
        ),
    );
    let data = dir.path().join("data");
    let first = serve(&config, port).await;
    let store = store_of(&data).await;
    let ran = |name: &'static str| {
        let store = &store;
        async move {
            store
                .history(name, 100)
                .await
                .expect("history")
                .iter()
                .filter(|r| r.status == RunStatus::Succeeded)
                .count()
        }
    };
    for _ in 0..100 {
        if ran("once").await >= 1 && ran("skip").await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ran("once").await >= 1 && ran("skip").await >= 1,
        "both jobs ran before the crash"
    );
    // A crash: no hand-back, no shutdown. Three or four slots pass while no host runs.
    drop(first);
    let down_from = now_ms();
    tokio::time::sleep(Duration::from_millis(7500)).await;
    let down_to = now_ms();
    let second = serve(&config, port).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    terminate(second).await;
    for (name, late_runs) in [("once", 1), ("skip", 0)] {
        let runs = all_runs(&store, name).await;
        // Slots are unique (the primary key) and every slot of the outage is accounted for:
        // run late (per the policy) or recorded as missed with a count.
        let outage: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.slot > down_from && r.slot < down_to)
            .collect();
        let late: Vec<&&RunRecord> = outage
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .collect();
        assert_eq!(late.len(), late_runs, "{name}: {runs:#?}");
        let missed: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.status == RunStatus::Missed)
            .collect();
        assert_eq!(
            missed.len(),
            1,
            "{name}: one record of the missed slots: {runs:#?}"
        );
        let error = missed[0].error.clone().unwrap_or_default();
        assert!(
            error.contains("passed while no host could run them"),
            "{error}"
        );
        // After the restart the job runs on schedule again.
        assert!(
            runs.iter()
                .any(|r| r.slot >= down_to && r.status == RunStatus::Succeeded),
            "{name} ran after the restart: {runs:#?}"
        );
        for pair in runs.windows(2) {
            assert!(
                pair[0].slot < pair[1].slot,
                "{name}: slots repeat: {runs:#?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_by_a_crash_is_run_again_or_recorded_by_the_misfire_policy() {
    // The provider takes about six seconds to answer (five pieces 1.2 s apart): long enough
    // to crash mid-run, within the provider's 10 s budget.
    let provider = databot_e2e::chat_platforms::fake_provider(
        "the weekly summary",
        3,
        Duration::from_millis(1200),
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = dir.path().join("databot.yaml");
    std::fs::write(
        &config,
        format!(
            r#"runtime:
  plugins_dir: {plugins}
  data_dir: {data}
  builtin_plugins: true
  watch: false
agent: {{provider: openai, router: {{enabled: false}}}}
rag: {{enabled: false}}
gateway: {{bind: "127.0.0.1:{port}"}}
schedules:
  poll_interval_ms: 200
  lease_seconds: 3
  jobs:
    - {{name: again, every: 1h, prompt: "summarise the week", misfire: run_once, timeout_seconds: 60}}
    - {{name: dropped, every: 1h, prompt: "summarise the week", misfire: skip, timeout_seconds: 60}}
plugins:
{provider_yaml}"#,
            plugins = dir.path().join("plugins").display(),
            data = dir.path().join("data").display(),
            provider_yaml = databot_e2e::chat_platforms::provider_config(provider),
        ),
    )
    .expect("config");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins");
    let first = serve(&config, port).await;
    let store = store_of(&dir.path().join("data")).await;
    store.trigger("again", now_ms()).await.expect("trigger");
    store.trigger("dropped", now_ms()).await.expect("trigger");
    // Both runs start; the host dies while the provider is still answering.
    let mut started = false;
    for _ in 0..200 {
        let again = store.open_runs("again").await.expect("runs");
        let dropped = store.open_runs("dropped").await.expect("runs");
        if again
            .iter()
            .chain(&dropped)
            .filter(|r| r.status == RunStatus::Running)
            .count()
            == 2
        {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "both runs started");
    drop(first);
    // The next host takes the stranded runs up once their leases (3 s) run out.
    let second = serve(&config, port).await;
    let mut settled = false;
    for _ in 0..400 {
        let again = all_runs(&store, "again").await;
        let dropped = all_runs(&store, "dropped").await;
        if again.iter().chain(&dropped).all(|r| r.status.is_final())
            && again.len() == 1
            && dropped.len() == 1
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(second).await;
    assert!(settled, "both runs reached an end");
    let again = all_runs(&store, "again").await;
    assert_eq!(again.len(), 1, "one slot, one record: {again:#?}");
    assert_eq!(again[0].status, RunStatus::Succeeded, "{again:#?}");
    assert_eq!(again[0].attempt, 2, "run again after the crash: {again:#?}");
    assert_eq!(again[0].output.as_deref(), Some("the weekly summary"));
    let dropped = all_runs(&store, "dropped").await;
    assert_eq!(dropped[0].status, RunStatus::Interrupted, "{dropped:#?}");
    assert_eq!(dropped[0].attempt, 1);
}

/// `databot` with `args` on `config`: (exit code, stdout, stderr).
fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATABOT_LOG")
        .output()
        .expect("the databot binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cron_command_manages_jobs_and_runs_one_through_the_serving_host() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = databot_e2e::process_folder(
        dir.path(),
        &["echo"],
        false,
        &format!("gateway: {{bind: \"127.0.0.1:{port}\"}}\nschedules: {{poll_interval_ms: 200}}\n"),
    );
    let (code, out, err) = cli(
        &config,
        &[
            "cron",
            "add",
            "nightly",
            "--cron",
            "0 30 2 * * *",
            "--timezone",
            "Europe/Berlin",
            "--tool",
            "echo",
            "--args",
            r#"{"text": "hi"}"#,
            "--notify",
            "on_change",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("added `nightly`: cron 0 30 2 * * * (Europe/Berlin)"),
        "{out}"
    );
    let (code, _, err) = cli(
        &config,
        &["cron", "add", "nightly", "--every", "1h", "--tool", "echo"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("exists already"), "{err}");
    let (code, _, err) = cli(
        &config,
        &[
            "cron",
            "add",
            "bad",
            "--cron",
            "0 25 * * *",
            "--tool",
            "echo",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("is not a cron pattern"), "{err}");
    let (code, _, err) = cli(
        &config,
        &[
            "cron",
            "add",
            "zone",
            "--cron",
            "0 9 * * *",
            "--timezone",
            "Mars/Base",
            "--tool",
            "echo",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("IANA time zone"), "{err}");
    let (_, out, _) = cli(&config, &["cron", "list"]);
    assert!(out.contains("nightly") && out.contains("active"), "{out}");
    let (code, out, _) = cli(&config, &["cron", "pause", "nightly"]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = cli(&config, &["cron", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed[0]["paused"], true);
    let (code, out, _) = cli(&config, &["cron", "resume", "nightly"]);
    assert_eq!(code, 0);
    assert!(out.contains("next run 20"), "{out}");
    // Nothing serves yet: a run is queued and reported as not picked up.
    let (code, _, err) = cli(&config, &["cron", "run", "nightly", "--wait", "1"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no host finished it"), "{err}");
    // The serving host runs the queued run and the next one asked for.
    let host = serve(&config, port).await;
    let (code, out, err) = cli(&config, &["cron", "run", "nightly", "--wait", "60"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("succeeded"), "{out}");
    let (_, out, _) = cli(&config, &["cron", "history", "nightly", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&out).expect("json");
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{out}");
    assert!(
        runs.iter()
            .all(|r| r["status"] == "succeeded" && r["manual"] == true),
        "{out}"
    );
    assert!(
        runs.iter()
            .all(|r| r["trace_id"].as_str().is_some_and(|t| t.len() == 32))
    );
    let (_, out, _) = cli(&config, &["cron", "show", "nightly"]);
    assert!(
        out.contains("timezone: Europe/Berlin") && out.contains("succeeded"),
        "{out}"
    );
    let (code, _, _) = cli(&config, &["cron", "remove", "nightly"]);
    assert_eq!(code, 0);
    let (code, _, err) = cli(&config, &["cron", "show", "nightly"]);
    assert_ne!(code, 0);
    assert!(err.contains("no job named `nightly`"), "{err}");
    terminate(host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_endpoints_manage_jobs_behind_the_api_keys() {
    let host = TestHost::start("", &["echo"]).await.expect("host");
    let key = "schedules-test-key-0123456789";
    let other = "another-clients-key-0123456789";
    let admin = "the-operators-key-0123456789";
    let port = host
        .start_gateway(
            "offline",
            &format!(
                "gateway:\n  api_keys: [\"{key}\", \"{other}\"]\n  admin_keys: [\"{admin}\"]\n"
            ),
        )
        .await;
    let as_key = |key: &'static str, method: &'static str, path: &'static str| async move {
        let auth = format!("Bearer {key}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let (status, _, body) = databot_e2e::http_call(port, method, path, &headers, "").await;
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or(json!(body)),
        )
    };
    let auth = format!("Bearer {key}");
    let call = |method: &'static str, path: String, body: String| {
        let auth = auth.clone();
        async move {
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let (status, _, body) =
                databot_e2e::http_call(port, method, &path, &headers, &body).await;
            (
                status,
                serde_json::from_str::<serde_json::Value>(&body).unwrap_or(json!(body)),
            )
        }
    };
    // No key, no schedules.
    let (status, _, _) = databot_e2e::http_call(port, "GET", "/api/v1/schedules", &[], "").await;
    assert_eq!(status, 401);
    let created = json!({"name": "freshness", "every": "1h", "tool": "echo", "arguments": {"text": "x"},
        "notify": "on_failure", "deliver": {"webhook": "https://hooks.example/services/SECRET"}});
    let (status, body) = call("POST", "/api/v1/schedules".into(), created.to_string()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["job"]["when"], "every 1h");
    assert_eq!(body["job"]["deliver"], "webhook https://hooks.example");
    assert!(!body.to_string().contains("SECRET"), "{body}");
    assert!(
        body["job"]["owner"]
            .as_str()
            .is_some_and(|o| o.starts_with("key:")),
        "{body}"
    );
    let (status, body) = call("POST", "/api/v1/schedules".into(), created.to_string()).await;
    assert_eq!(status, 409, "{body}");
    let bad = json!({"name": "bad", "cron": "61 * * * *", "tool": "echo"});
    let (status, body) = call("POST", "/api/v1/schedules".into(), bad.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a cron pattern")),
        "{body}"
    );
    let unknown = json!({"name": "u", "every": "1h", "tool": "echo", "colour": "red"});
    let (status, _) = call("POST", "/api/v1/schedules".into(), unknown.to_string()).await;
    assert_eq!(status, 400);
    let (status, body) = call("GET", "/api/v1/schedules".into(), String::new()).await;
    assert_eq!(status, 200);
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(1));
    // Another client's key does not see it; the operator's key does.
    let (status, body) = as_key(other, "GET", "/api/v1/schedules").await;
    assert_eq!(
        (status, body["jobs"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
    for (method, path) in [
        ("GET", "/api/v1/schedules/freshness"),
        ("DELETE", "/api/v1/schedules/freshness"),
        ("POST", "/api/v1/schedules/freshness/run"),
        ("GET", "/api/v1/schedules/freshness/runs"),
    ] {
        let (status, _) = as_key(other, method, path).await;
        assert_eq!(status, 404, "{method} {path} by another client");
    }
    let (status, body) = as_key(admin, "GET", "/api/v1/schedules").await;
    assert_eq!(
        (status, body["jobs"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
    // Only an operator turns tool groups on and off.
    let (status, _) = as_key(key, "POST", "/api/v1/tool-groups/shell/disable").await;
    assert_eq!(status, 403);
    let (status, _) = as_key(admin, "POST", "/api/v1/tool-groups/shell/disable").await;
    assert_eq!(status, 200);
    // A name that cannot be a job's is simply not found.
    let (status, _) = as_key(key, "GET", "/api/v1/schedules/a%00b").await;
    assert_eq!(status, 404);
    let (status, body) = call(
        "POST",
        "/api/v1/schedules/freshness/pause".into(),
        String::new(),
    )
    .await;
    assert_eq!((status, body["job"]["paused"].clone()), (200, json!(true)));
    let (status, body) = call(
        "POST",
        "/api/v1/schedules/freshness/resume".into(),
        String::new(),
    )
    .await;
    assert_eq!((status, body["job"]["paused"].clone()), (200, json!(false)));
    let (status, body) = call(
        "POST",
        "/api/v1/schedules/freshness/run".into(),
        String::new(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let slot = body["slot"].as_i64().expect("slot");
    let (status, body) = call(
        "GET",
        "/api/v1/schedules/freshness/runs?limit=5".into(),
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["runs"][0]["slot"], slot);
    assert_eq!(
        body["runs"][0]["status"], "pending",
        "no scheduler runs in this gateway"
    );
    let (status, _) = call(
        "GET",
        "/api/v1/schedules/freshness/runs?limit=x".into(),
        String::new(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = call("GET", "/api/v1/schedules/freshness".into(), String::new()).await;
    assert_eq!(status, 200);
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(1));
    let (status, _) = call(
        "DELETE",
        "/api/v1/schedules/freshness".into(),
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call("GET", "/api/v1/schedules/freshness".into(), String::new()).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = call(
        "POST",
        "/api/v1/schedules/nothing/run".into(),
        String::new(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call("GET", "/metrics".into(), String::new()).await;
    assert_eq!(status, 200);
    assert!(
        body.as_str()
            .is_some_and(|m| m.contains("# TYPE databot_schedule_lag_seconds histogram")),
        "{body}"
    );
}

/// Wait for the run of `name` at `slot` to end; its record.
async fn finished_run(store: &ScheduleStore, name: &str, slot: i64, limit: Duration) -> RunRecord {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(run) = store.run(name, slot).await.expect("run")
            && run.status.is_final()
        {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not end in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_with_backoff_and_only_the_last_is_delivered() {
    let host = TestHost::start("", &["hostile"]).await.expect("host");
    let (hook_port, seen) = serve_scripted(|_, _| ScriptedResponse::json(200, json!({}))).await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler = SchedulerUnderTest::start(
        &host,
        &url,
        "solo",
        "  webhooks:\n    allow_private: true\n",
    )
    .await;
    let store = scheduler.schedules.store.clone();
    let spec = job(&format!(
        r#"{{"name": "flaky", "every": "1h", "tool": "panic", "retries": 2, "retry_backoff_seconds": 1, "deliver": {{"webhook": "http://127.0.0.1:{hook_port}/h"}}}}"#
    ));
    store
        .add(spec, JobOrigin::Operator, "test", None, now_ms())
        .await
        .expect("job added");
    let started = std::time::Instant::now();
    let slot = store.trigger("flaky", now_ms()).await.expect("trigger");
    let run = finished_run(&store, "flaky", slot, Duration::from_secs(30)).await;
    // Attempts at 0 s, after 1 s and after 2 more: about 3 s in all.
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.attempt, 3, "{run:?}");
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("the tool failed")),
        "{run:?}"
    );
    let metrics = &scheduler.schedules.metrics;
    assert_eq!(metrics.runs("flaky", "retrying"), 2);
    assert_eq!(metrics.runs("flaky", "failed"), 1);
    assert_eq!(seen.all().len(), 1, "only the last attempt is delivered");
    assert_eq!(seen.all()[0].json()["attempt"], 3);
    scheduler.stop().await;
}

/// A host whose agent answers through a provider that takes about six seconds.
async fn slow_provider_host() -> TestHost {
    let provider =
        databot_e2e::chat_platforms::fake_provider("done slowly", 3, Duration::from_millis(1200))
            .await;
    let host = TestHost::start(
        &format!(
            "agent: {{provider: openai, router: {{enabled: false}}}}\nplugins:\n{}",
            databot_e2e::chat_platforms::provider_config(provider)
        ),
        &[],
    )
    .await
    .expect("host");
    host.load_builtin("openai").await;
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_timeout_fails_and_says_so() {
    let host = slow_provider_host().await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler = SchedulerUnderTest::start(&host, &url, "solo", "").await;
    let store = scheduler.schedules.store.clone();
    store
        .add(
            job(r#"{"name": "slow", "every": "1h", "prompt": "take your time", "timeout_seconds": 1}"#),
            JobOrigin::Operator,
            "test",
            None,
            now_ms(),
        )
        .await
        .expect("job added");
    let slot = store.trigger("slow", now_ms()).await.expect("trigger");
    let run = finished_run(&store, "slow", slot, Duration::from_secs(20)).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("timed out after 1 s (timeout_seconds)")
    );
    assert!(
        run.duration_ms()
            .is_some_and(|ms| (1000..3000).contains(&ms)),
        "{run:?}"
    );
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_slots_follow_the_concurrency_policy() {
    let host = slow_provider_host().await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    // Short leases, so a cancellation is seen within a second.
    let scheduler = SchedulerUnderTest::start(&host, &url, "solo", "  lease_seconds: 3\n").await;
    let store = scheduler.schedules.store.clone();
    for (name, every, policy) in [
        ("forbid", "2s", "forbid"),
        ("queued", "1h", "forbid"),
        ("replace", "1h", "replace"),
        ("allow", "1h", "allow"),
    ] {
        store
            .add(
                job(&format!(
                    r#"{{"name": "{name}", "every": "{every}", "prompt": "summarise", "concurrency": "{policy}", "timeout_seconds": 30}}"#
                )),
                JobOrigin::Operator,
                "test",
                None,
                now_ms(),
            )
            .await
            .expect("job added");
    }
    let mut first = BTreeMap::new();
    for name in ["queued", "replace", "allow"] {
        first.insert(name, store.trigger(name, now_ms()).await.expect("trigger"));
    }
    // Once the first runs go, a second run of each is asked for while they still run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut second = BTreeMap::new();
    for name in ["queued", "replace", "allow"] {
        second.insert(name, store.trigger(name, now_ms()).await.expect("trigger"));
    }
    let limit = Duration::from_secs(60);
    // `forbid`: a run asked for by hand waits for the running one, then runs.
    let queued = (
        finished_run(&store, "queued", first["queued"], limit).await,
        finished_run(&store, "queued", second["queued"], limit).await,
    );
    assert_eq!(
        (queued.0.status, queued.1.status),
        (RunStatus::Succeeded, RunStatus::Succeeded),
        "{queued:?}"
    );
    assert!(queued.1.started_at >= queued.0.finished_at, "{queued:?}");
    let replace = (
        finished_run(&store, "replace", first["replace"], limit).await,
        finished_run(&store, "replace", second["replace"], limit).await,
    );
    assert_eq!(replace.0.status, RunStatus::Cancelled, "{:?}", replace.0);
    assert_eq!(replace.0.delivered.as_deref(), Some("not sent (cancelled)"));
    assert_eq!(replace.1.status, RunStatus::Succeeded, "{:?}", replace.1);
    let allow = (
        finished_run(&store, "allow", first["allow"], limit).await,
        finished_run(&store, "allow", second["allow"], limit).await,
    );
    assert_eq!(
        (allow.0.status, allow.1.status),
        (RunStatus::Succeeded, RunStatus::Succeeded)
    );
    assert!(
        allow.1.started_at < allow.0.finished_at,
        "the two runs overlapped: {allow:?}"
    );
    // `forbid` on a 2 s schedule with 6 s runs: the slots that come due while one runs are
    // skipped, and no two runs overlap.
    store
        .set_paused(
            "forbid",
            true,
            now_ms(),
            databot::schedules::store::Only::Any,
        )
        .await
        .expect("paused");
    let deadline = tokio::time::Instant::now() + limit;
    while !store.open_runs("forbid").await.expect("open").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "forbid runs still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = all_runs(&store, "forbid").await;
    let ran: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .collect();
    assert!(!ran.is_empty(), "{runs:#?}");
    assert!(
        runs.iter().any(|r| r.status == RunStatus::Skipped
            && r.error
                .as_deref()
                .is_some_and(|e| e.contains("concurrency: forbid"))),
        "{runs:#?}"
    );
    for pair in ran.windows(2) {
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "overlap: {runs:#?}"
        );
    }
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_agent_made_in_a_slack_thread_posts_its_result_back_to_that_thread() {
    use databot_e2e::chat_platforms::{SlackExtra, fake_slack, requests_to, slack_config};
    let (slack_port, seen) = fake_slack(|_, _| None).await;
    let host = TestHost::start(
        &format!(
            "agent: {{provider: offline, router: {{enabled: false}}}}\nplugins:\n{}",
            slack_config(slack_port, "unused-secret", SlackExtra::default())
        ),
        &["echo"],
    )
    .await
    .expect("host");
    host.load_builtin("offline").await;
    host.load_builtin("slack").await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler = SchedulerUnderTest::start(&host, &url, "solo", "").await;
    let store = scheduler.schedules.store.clone();
    let tool = databot::schedules::cron_tool::CronTool::new(
        store.clone(),
        host.runtime.clone(),
        databot::config::AgentSchedulingConfig::default(),
    );
    let asking = conversation_in("slack", "C1", Some("1700000000.000100"), "U1");
    let answer = tool
        .call(
            &asking,
            None,
            &json!({"action": "add", "name": "standup", "cron": "0 9 * * MON-FRI",
                    "prompt": "/echo {\"text\": \"standup time\"}"}),
        )
        .await
        .expect("added");
    assert!(
        answer.contains("results go to this conversation"),
        "{answer}"
    );
    let job = store.get("standup").await.expect("job");
    assert_eq!(
        job.spec.deliver.describe(),
        "slack C1 (thread 1700000000.000100)"
    );
    let slot = store.trigger("standup", now_ms()).await.expect("trigger");
    let run = finished_run(&store, "standup", slot, Duration::from_secs(30)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        run.delivered.as_deref(),
        Some("sent to slack C1 (thread 1700000000.000100)")
    );
    let posts = requests_to(&seen, "/chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:?}");
    let body = posts[0].json();
    assert_eq!(body["channel"], "C1");
    assert_eq!(body["thread_ts"], "1700000000.000100");
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|t| t.contains("standup time")),
        "{body}"
    );
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_on_change_sends_a_result_only_when_it_differs_from_the_last_sent() {
    let host = TestHost::start(
        "plugins:\n  echo:\n    permissions: {state: true}\n",
        &["echo"],
    )
    .await
    .expect("host");
    let (hook_port, seen) = serve_scripted(|_, _| ScriptedResponse::json(200, json!({}))).await;
    let url = format!("sqlite://{}", host.dir.path().join("sessions.db").display());
    let scheduler = SchedulerUnderTest::start(
        &host,
        &url,
        "solo",
        "  webhooks:\n    allow_private: true\n",
    )
    .await;
    let store = scheduler.schedules.store.clone();
    let hook = format!("http://127.0.0.1:{hook_port}/h");
    // `echo` answers the same each time; `counter` answers a new number each time.
    for (name, tool, arguments) in [
        ("same", "echo", r#"{"text": "42 rows"}"#),
        ("changing", "counter", r#"{"key": "k"}"#),
    ] {
        let spec = job(&format!(
            r#"{{"name": "{name}", "every": "1h", "tool": "{tool}", "arguments": {arguments}, "notify": "on_change", "deliver": {{"webhook": "{hook}"}}}}"#
        ));
        store
            .add(spec, JobOrigin::Operator, "test", None, now_ms())
            .await
            .expect("job added");
    }
    let mut delivered = BTreeMap::new();
    for name in ["same", "changing"] {
        for _ in 0..2 {
            let slot = store.trigger(name, now_ms()).await.expect("trigger");
            let run = finished_run(&store, name, slot, Duration::from_secs(20)).await;
            assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
            delivered
                .entry(name)
                .or_insert_with(Vec::new)
                .push(run.delivered.unwrap_or_default());
        }
    }
    assert!(
        delivered["same"][0].starts_with("posted to"),
        "{delivered:?}"
    );
    assert_eq!(delivered["same"][1], "not sent (notify: on_change)");
    assert!(
        delivered["changing"]
            .iter()
            .all(|d| d.starts_with("posted to")),
        "{delivered:?}"
    );
    assert_eq!(seen.all().len(), 3);
    scheduler.stop().await;
}
