//! The operator console's speed (issue 19's targets): the overview's first paint with 10,000
//! stored turns (≤ 500 ms), the conversations page over those turns, and the whole asset
//! bundle's compressed size (≤ 300 KB).
//!
//! A gateway on loopback with no keys (the console is open to loopback, no sign-in), its
//! SQLite session store seeded with 10,000 turns over 1,000 conversations (each turn a user
//! message, a tool call, its result and an answer, as the agent saves them), and Debian's
//! headless Chromium over WebDriver. Each round loads `/ui/` afresh (the gateway's `/health` between) and
//! reads the browser's own timings: first contentful paint, largest contentful paint, and the
//! end of the last API answer the overview waits for. The medians over `ROUNDS` rounds are
//! printed; the first round (cold browser cache) is printed on its own.
//!
//! `cargo bench -p databot-e2e --bench console` (`-- --test`: one round, to check it runs).

use std::time::{Duration, Instant};

use databot::agent::sessions::TurnRecord;
use databot::contract::chat::{ChatMessage, Role, ToolCall, Usage};
use databot_e2e::TestHost;
use databot_e2e::browser::Browser;
use serde_json::json;

const TURNS: usize = 10_000;
const CONVERSATIONS: usize = 1_000;
const ROUNDS: usize = 15;

/// One saved turn with a tool call, as the agent writes it.
fn turn_messages(n: usize) -> Vec<ChatMessage> {
    let call = ToolCall {
        id: format!("call-{n}"),
        name: "echo".to_owned(),
        arguments: json!({ "text": format!("rows of table_{n}") }),
    };
    let mut asking = ChatMessage::text(Role::Assistant, "");
    asking.tool_calls = vec![call.clone()];
    vec![
        ChatMessage::text(Role::User, format!("how fresh is table_{n}?")),
        asking,
        ChatMessage::tool_result(&call, format!("{{\"rows\": {n}}}")),
        ChatMessage::text(
            Role::Assistant,
            format!("table_{n} was loaded {n} minutes ago"),
        ),
    ]
}

async fn seed(host: &TestHost) -> Duration {
    let sessions = host.sessions("sessions").await;
    let started = Instant::now();
    let now = now_ms();
    for n in 0..TURNS {
        let key = format!("api:bench-{}", n % CONVERSATIONS);
        if n < CONVERSATIONS {
            sessions
                .claim_conversation(&key, "local")
                .await
                .expect("claim");
        }
        let record = TurnRecord {
            started_at_ms: now - (TURNS - n) as i64 * 1000,
            duration_ms: 40 + (n % 50) as i64,
            specialist: None,
            iterations: 2,
            tool_calls: 1,
            trace_id: None,
        };
        let usage = Usage {
            prompt_tokens: 120,
            completion_tokens: 30,
            total_tokens: 150,
        };
        sessions
            .append_turn(&key, &turn_messages(n), usage, &record, None)
            .await
            .expect("a saved turn");
    }
    started.elapsed()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The page's timings once `ready` (a CSS selector) shows text: first contentful paint,
/// largest contentful paint, and the end of the last `/api/` answer, in milliseconds from the
/// navigation's start.
async fn load(browser: &Browser, port: u16, url: &str, ready: &str) -> [f64; 3] {
    // Away from the console first, so each round is a whole new page load.
    browser
        .goto(&format!("http://127.0.0.1:{port}/health"))
        .await;
    browser.goto(url).await;
    browser
        .wait_for_text(ready, Duration::from_secs(20), |t| {
            !t.is_empty() && t != "Loading…"
        })
        .await;
    // Give the last answers a moment to be painted and the LCP entry to be queued.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let timings = browser
        .execute(
            r#"
            const paint = performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint');
            const api = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/'));
            return [paint ? paint.startTime : 0, 0, Math.max(0, ...api.map((e) => e.responseEnd))];
            "#,
            json!([]),
        )
        .await;
    let lcp = browser
        .execute(
            r#"
            return new Promise((resolve) => {
              new PerformanceObserver((list) => {
                const entries = list.getEntries();
                resolve(entries.length ? entries[entries.length - 1].startTime : 0);
              }).observe({ type: 'largest-contentful-paint', buffered: true });
              setTimeout(() => resolve(0), 500);
            });
            "#,
            json!([]),
        )
        .await;
    let number = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    [number(&timings[0]), number(&lcp), number(&timings[2])]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The compressed size of every file the console serves, as the gateway sends it gzipped.
async fn bundle_bytes(port: u16) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/console");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("console folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                files.push(
                    path.strip_prefix(&dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut total = 0;
    for file in files {
        let path = if file == "index.html" {
            "/ui/".to_owned()
        } else {
            format!("/ui/assets/{file}")
        };
        let (status, headers, body) =
            databot_e2e::http_call(port, "GET", &path, &[("accept-encoding", "gzip")], "").await;
        assert_eq!(status, 200, "{path}");
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(body.len());
        total += length;
    }
    total
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let host = TestHost::start("", &["echo"]).await.expect("host");
        host.load_builtin("offline").await;
        let seeded = seed(&host).await;
        println!("seeded {TURNS} turns over {CONVERSATIONS} conversations in {seeded:.1?}");
        let port = host.start_gateway("offline", "").await;
        let bundle = bundle_bytes(port).await;
        println!(
            "console bundle, gzipped as served: {bundle} bytes ({:.1} KB; target ≤ 300 KB)",
            bundle as f64 / 1000.0
        );
        let browser = Browser::start(1280, 860).await;
        let rounds = if quick { 1 } else { ROUNDS };
        for (page, ready) in [
            ("", "[data-test=charts]"),
            ("#/conversations", "[data-test=conversations]"),
        ] {
            let url = format!("http://127.0.0.1:{port}/ui/{page}");
            let cold = load(&browser, port, &url, ready).await;
            let (mut fcp, mut lcp, mut api) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let [f, l, a] = load(&browser, port, &url, ready).await;
                fcp.push(f);
                lcp.push(l);
                api.push(a);
            }
            let name = if page.is_empty() { "overview" } else { page };
            println!(
                "{name}: first round FCP {:.0} ms, LCP {:.0} ms, data {:.0} ms; median of {rounds}: FCP {:.0} ms, LCP {:.0} ms, last API answer {:.0} ms (target: painted ≤ 500 ms)",
                cold[0],
                cold[1],
                cold[2],
                median(&mut fcp),
                median(&mut lcp),
                median(&mut api),
            );
        }
    });
}
