//! MCP `tools/call` of the small `echo` tool through the whole server path, measured from a
//! real MCP client (rmcp's): round trip over stdio (`databot mcp` as a child process) and over
//! Streamable HTTP on the gateway (with an API key), and throughput of 16 concurrent HTTP
//! clients (one session each; one iteration = one call from every client at once).

use std::process::Stdio;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use databot_e2e::{TestHost, process_folder};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};

const KEY: &str = "bench-key-0123456789";
const CLIENTS: usize = 16;

type Client = RunningService<RoleClient, ()>;

fn echo_call() -> CallToolRequestParams {
    let mut arguments = JsonObject::new();
    arguments.insert("text".into(), "hello".into());
    arguments.insert("tag".into(), 7.into());
    CallToolRequestParams::new("echo").with_arguments(arguments)
}

async fn call(client: &Client) {
    let result = client.call_tool(echo_call()).await.expect("tools/call");
    assert_ne!(result.is_error, Some(true), "echo failed: {result:?}");
}

/// `databot mcp` as a child process over a folder with the `echo` plugin.
async fn stdio_client(dir: &std::path::Path) -> Client {
    let config = process_folder(dir, &["echo"], false, "");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_databot_cli"));
    command.arg("--config").arg(&config).arg("mcp");
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .expect("databot mcp starts");
    ().serve(transport)
        .await
        .expect("MCP initialize over stdio")
}

async fn http_client(port: u16) -> Client {
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("http://127.0.0.1:{port}/mcp"))
            .auth_header(KEY);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("MCP initialize over HTTP")
}

fn mcp(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let stdio = runtime.block_on(stdio_client(dir.path()));

    let host = runtime
        .block_on(TestHost::start("", &["echo"]))
        .expect("host starts");
    runtime.block_on(host.load_builtin("offline"));
    let port = runtime.block_on(host.start_gateway(
        "offline",
        &format!(
            "gateway:\n  api_keys: [\"{KEY}\"]\n  rate_limit:\n    requests: 4000000000\n    window_seconds: 1\n"
        ),
    ));
    let http = runtime.block_on(http_client(port));
    let many: Vec<Client> = runtime.block_on(async {
        let mut clients = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            clients.push(http_client(port).await);
        }
        clients
    });

    let mut group = c.benchmark_group("mcp_tools_call");
    group.bench_function("stdio_echo", |b| b.to_async(&runtime).iter(|| call(&stdio)));
    group.bench_function("http_echo", |b| b.to_async(&runtime).iter(|| call(&http)));
    group.throughput(Throughput::Elements(CLIENTS as u64));
    group.bench_function("http_echo_16_clients", |b| {
        b.to_async(&runtime)
            .iter(|| futures_join_all(many.iter().map(call)))
    });
    group.finish();

    runtime.block_on(async {
        let _ = stdio.cancel().await;
        let _ = http.cancel().await;
        for client in many {
            let _ = client.cancel().await;
        }
    });
}

/// Run every future concurrently and wait for all (no extra crate for one join).
async fn futures_join_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    std::future::poll_fn(|cx| {
        let mut pending = false;
        set.retain_mut(|f| {
            let done = f.as_mut().poll(cx).is_ready();
            pending |= !done;
            !done
        });
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
}

criterion_group!(benches, mcp);
criterion_main!(benches);
