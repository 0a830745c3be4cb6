//! MCP over stdin/stdout (`databot mcp`): one reader of the client's lines, one writer of
//! whole answer lines. Once the session is initialised, `tools/call` requests are answered
//! directly (`direct`), each in its own task, at most `MAX_DIRECT_IN_FLIGHT` at a time (the
//! reader waits for a free slot, so a client cannot pile up unbounded work); every other
//! message goes through the MCP library's session over an in-memory pipe, and its output is
//! copied to stdout line by line. On Linux pipes the standard streams are driven by the I/O
//! reactor (their own non-blocking file descriptions), not by a blocking thread per read.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use parking_lot::Mutex;
use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};

use super::DatabotMcp;
use super::direct::{DirectCall, cancelled_request};
use super::notify::{PeerRegistry, forward_runtime_events};
use crate::runtime::Runtime;

/// Longest request line taken (16 MiB); a longer one is refused with a JSON-RPC error and
/// skipped, and the session goes on.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Direct tool calls running at once; the next request waits for one to finish.
const MAX_DIRECT_IN_FLIGHT: usize = 256;
/// Answer lines queued for stdout; when the client stops reading, calls wait here.
const OUTPUT_QUEUE: usize = 256;
/// Size of each in-memory pipe to and from the library's session.
const LIBRARY_PIPE_BYTES: usize = 256 * 1024;

/// Serve one MCP client on stdin/stdout until it closes stdin. Logs go to stderr only.
pub async fn serve_stdio(runtime: Runtime) -> anyhow::Result<()> {
    let peers = Arc::new(PeerRegistry::default());
    forward_runtime_events(&runtime, &peers);
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    serve(DatabotMcp::new(runtime, peers), stdin, stdout).await
}

/// Serve one MCP client reading `input` and writing `output`.
pub async fn serve(
    mcp: DatabotMcp,
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin + Send + 'static,
) -> anyhow::Result<()> {
    let (to_library, library_input) = tokio::io::duplex(LIBRARY_PIPE_BYTES);
    let (library_output, from_library) = tokio::io::duplex(LIBRARY_PIPE_BYTES);
    let (lines, queued) = mpsc::channel::<Vec<u8>>(OUTPUT_QUEUE);
    let writer = tokio::spawn(write_lines(queued, output));
    // Set from the library's `initialize` answer: whether its version has the handshake
    // (every version before 2026-07-28), which the direct answers' shape assumes.
    let negotiated: Arc<OnceLock<bool>> = Arc::default();
    let copier = tokio::spawn(copy_library_output(
        from_library,
        lines.clone(),
        negotiated.clone(),
    ));
    let library = tokio::spawn({
        let mcp = mcp.clone();
        async move {
            let running = mcp
                .serve((library_input, library_output))
                .await
                .context("starting the MCP session on stdio")?;
            let reason = running
                .waiting()
                .await
                .context("running the MCP session on stdio")?;
            tracing::debug!(?reason, "MCP stdio session ended");
            anyhow::Ok(())
        }
    });

    let read = read_requests(&mcp, input, to_library, &lines, &negotiated).await;
    // stdin is closed (or unreadable): the library's input is closed with it, so its session
    // ends; direct calls still running finish and are answered first.
    let library = library.await;
    drop(lines);
    let copied = copier.await;
    let written = writer.await;
    read?;
    library.context("the MCP session task failed")??;
    copied.context("the MCP output task failed")?;
    written.context("the stdout writer failed")??;
    Ok(())
}

/// Read request lines until end of input, answering direct calls and handing everything else
/// to the library; returns once every direct call has been answered.
async fn read_requests(
    mcp: &DatabotMcp,
    input: impl AsyncRead + Unpin,
    mut to_library: tokio::io::DuplexStream,
    lines: &mpsc::Sender<Vec<u8>>,
    negotiated: &OnceLock<bool>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let slots = Arc::new(Semaphore::new(MAX_DIRECT_IN_FLIGHT));
    let running: Arc<Mutex<HashMap<String, AbortHandle>>> = Arc::default();
    let mut calls = JoinSet::new();
    let mut initialized = false;
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .context("reading stdin")?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            skip_rest_of_line(&mut reader).await?;
            let refusal = format!(
                r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32600,"message":"request line longer than {MAX_LINE_BYTES} bytes: refused; send smaller arguments"}}}}{}"#,
                '\n'
            );
            if lines.send(refusal.into_bytes()).await.is_err() {
                break;
            }
            continue;
        }
        while calls.try_join_next().is_some() {}
        let message = line.trim_ascii();
        if message.is_empty() {
            continue;
        }
        if initialized && negotiated.get() == Some(&true) {
            if let Some(call) = DirectCall::parse(message) {
                let slot = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .context("the direct call slots closed")?;
                let key = call.id_key();
                let mcp = mcp.clone();
                let lines = lines.clone();
                let finished = running.clone();
                let done_key = key.clone();
                let handle = calls.spawn(async move {
                    let mut answer = call.answer(&mcp, |_| None).await;
                    answer.push(b'\n');
                    // Unregister before answering: a cancellation that arrives after the
                    // answer was queued no longer names a running call.
                    finished.lock().remove(&done_key);
                    let _ = lines.send(answer).await;
                    drop(slot);
                });
                running.lock().insert(key, handle);
                continue;
            }
            if let Some(key) = cancelled_request(message)
                && let Some(handle) = running.lock().remove(&key)
            {
                // A cancelled request gets no answer (the MCP cancellation rule).
                handle.abort();
                continue;
            }
        } else if !initialized && is_initialized_notice(message) {
            initialized = true;
        }
        if to_library.write_all(&line).await.is_err() {
            // The library's session ended (it refused the client): nothing more to serve.
            break;
        }
    }
    drop(to_library);
    while calls.join_next().await.is_some() {}
    Ok(())
}

async fn skip_rest_of_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> anyhow::Result<()> {
    loop {
        let buffer = reader.fill_buf().await.context("reading stdin")?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    }
}

fn is_initialized_notice(message: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Notice<'a> {
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
    }
    message
        .windows(b"notifications/initialized".len())
        .any(|w| w == b"notifications/initialized")
        && serde_json::from_slice::<Notice>(message)
            .is_ok_and(|notice| notice.method == "notifications/initialized")
}

/// Copy the library's output lines to the writer; note the version its `initialize` answer
/// negotiated.
async fn copy_library_output(
    from_library: tokio::io::DuplexStream,
    lines: mpsc::Sender<Vec<u8>>,
    negotiated: Arc<OnceLock<bool>>,
) {
    let mut reader = BufReader::new(from_library);
    loop {
        let mut line = Vec::with_capacity(256);
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if negotiated.get().is_none()
            && let Some(version) = initialize_answer_version(&line)
        {
            let _ = negotiated.set(version.has_initialize());
        }
        if lines.send(line).await.is_err() {
            return;
        }
    }
}

/// The protocol version in an `initialize` answer.
fn initialize_answer_version(line: &[u8]) -> Option<rmcp::model::ProtocolVersion> {
    if !line.windows(16).any(|w| w == b"protocolVersion\"") {
        return None;
    }
    let mut message: serde_json::Value = serde_json::from_slice(line).ok()?;
    serde_json::from_value(
        message
            .get_mut("result")?
            .get_mut("protocolVersion")?
            .take(),
    )
    .ok()
}

/// Write queued lines to `output`, several at a time when they queue up, flushing after each
/// batch.
async fn write_lines(
    mut queued: mpsc::Receiver<Vec<u8>>,
    mut output: impl AsyncWrite + Unpin,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(line) = queued.recv().await {
        batch.clear();
        batch.extend_from_slice(&line);
        while batch.len() < 256 * 1024 {
            match queued.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        output.write_all(&batch).await.context("writing stdout")?;
        output.flush().await.context("flushing stdout")?;
    }
    Ok(())
}
