//! MCP over stdin/stdout (`databot mcp`): one reader of the client's lines, one writer of
//! whole answer lines. Once the session is initialised, `tools/call` requests are answered
//! directly (`direct`), each in its own task, at most `MAX_DIRECT_IN_FLIGHT` (and 64 MiB of
//! requests) at a time: the reader waits for room, so a client cannot pile up unbounded work;
//! a call always runs to its end, and cancelling it withholds its answer; every other
//! message goes through the MCP library's session over an in-memory pipe, and its output is
//! copied to stdout line by line. On Linux pipes the standard streams are driven by the I/O
//! reactor (their own non-blocking file descriptions), not by a blocking thread per read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use parking_lot::Mutex;
use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::DatabotMcp;
use super::direct::{DirectCall, cancelled_request};
use super::notify::{PeerRegistry, forward_runtime_events};
use crate::runtime::Runtime;

/// Longest request line taken, newline included (16 MiB, the MCP library's own limit); a
/// longer one is refused with a JSON-RPC error and skipped, and the session goes on.
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
/// to the library; returns once every direct call has finished (a call is never dropped
/// half-way: a plugin call runs to its end, and a cancellation only withholds its answer).
async fn read_requests(
    mcp: &DatabotMcp,
    input: impl AsyncRead + Unpin,
    mut to_library: tokio::io::DuplexStream,
    lines: &mpsc::Sender<Vec<u8>>,
    negotiated: &OnceLock<bool>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let slots = Arc::new(Semaphore::new(MAX_DIRECT_IN_FLIGHT));
    let bytes = Arc::new(Semaphore::new(DIRECT_BYTES_IN_FLIGHT / BYTE_UNIT));
    let running = Arc::new(RunningCalls::default());
    let mut calls = JoinSet::new();
    let mut initialized = false;
    let mut line = Vec::with_capacity(4096);
    let outcome: anyhow::Result<()> = async {
        loop {
            line.clear();
            let read = (&mut reader)
                .take(MAX_LINE_BYTES as u64)
                .read_until(b'\n', &mut line)
                .await
                .context("reading stdin")?;
            if read == 0 {
                return Ok(());
            }
            // A full line, newline included, is at most `MAX_LINE_BYTES` (the library's own
            // limit, so both paths take and refuse the same lines).
            if line.len() == MAX_LINE_BYTES && line.last() != Some(&b'\n') {
                skip_rest_of_line(&mut reader).await?;
                let refusal = format!(
                    r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32600,"message":"request line longer than {MAX_LINE_BYTES} bytes: refused; send smaller arguments"}}}}{}"#,
                    '\n'
                );
                if lines.send(refusal.into_bytes()).await.is_err() {
                    return Ok(());
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
                    // Bounded by count and by the bytes of the requests held: the reader waits
                    // here (back-pressure on the client) until both have room.
                    let units = (message.len() / BYTE_UNIT + 1).min(DIRECT_BYTES_IN_FLIGHT / BYTE_UNIT);
                    let slot = slots.clone().acquire_owned().await?;
                    let held = bytes.clone().acquire_many_owned(units as u32).await?;
                    let registration = running.register(call.id_key());
                    let mcp = mcp.clone();
                    let lines = lines.clone();
                    calls.spawn(async move {
                        let mut answer = call.answer(&mcp, |_| None).await;
                        answer.push(b'\n');
                        if !registration.finish() {
                            let _ = lines.send(answer).await;
                        }
                        drop((slot, held));
                    });
                    continue;
                }
                if !running.is_empty()
                    && let Some(key) = cancelled_request(message)
                    && running.cancel(&key)
                {
                    // The call runs to its end, but its answer is withheld (the MCP
                    // cancellation rule: a cancelled request gets no answer).
                    continue;
                }
            } else if !initialized && is_initialized_notice(message) {
                initialized = true;
            }
            if to_library.write_all(&line).await.is_err() {
                // The library's session ended (it refused the client): nothing more to serve.
                return Ok(());
            }
        }
    }
    .await;
    drop(to_library);
    while calls.join_next().await.is_some() {}
    outcome
}

/// Bytes of direct requests held at once (64 MiB), counted in `BYTE_UNIT`s.
const DIRECT_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;
const BYTE_UNIT: usize = 1024;

/// The direct calls still running, by request id, each with the flag that withholds its answer.
#[derive(Default)]
struct RunningCalls {
    calls: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl RunningCalls {
    /// Note a call as running (registered before it starts, so it cannot finish first). A
    /// second call with the same id replaces the first in the map; each removes only itself.
    fn register(self: &Arc<Self>, key: String) -> Registration {
        let cancelled = Arc::new(AtomicBool::new(false));
        self.calls.lock().insert(key.clone(), cancelled.clone());
        Registration {
            running: self.clone(),
            key,
            cancelled,
            finished: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.calls.lock().is_empty()
    }

    /// Withhold the answer of the running call `key`; false when no call by that id runs.
    fn cancel(&self, key: &str) -> bool {
        match self.calls.lock().remove(key) {
            Some(cancelled) => {
                cancelled.store(true, Ordering::Release);
                true
            }
            None => false,
        }
    }
}

/// One running call's entry in `RunningCalls`, removed when the call finishes (or unwinds).
struct Registration {
    running: Arc<RunningCalls>,
    key: String,
    cancelled: Arc<AtomicBool>,
    finished: bool,
}

impl Registration {
    /// Leave the map; whether the call was cancelled before it did (decided under the map's
    /// lock, so a cancellation is either seen here or finds no call and passes on).
    fn finish(mut self) -> bool {
        self.leave();
        self.cancelled.load(Ordering::Acquire)
    }

    fn leave(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut calls = self.running.calls.lock();
        if calls
            .get(&self.key)
            .is_some_and(|flag| Arc::ptr_eq(flag, &self.cancelled))
        {
            calls.remove(&self.key);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.leave();
    }
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
