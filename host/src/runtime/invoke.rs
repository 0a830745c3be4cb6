//! One call into a plugin: admission (circuit breaker, concurrency), a fresh store and
//! instance with the plugin's grants and budgets, the guest call, and the mapping of every
//! way it can go wrong to a `CallError`. The host never panics on guest misbehaviour.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::error::{CallError, ErrorKind};
use super::revision::{KindExports, Revision};
use super::{PluginSlot, RuntimeInner};
use crate::capabilities::host_memory::{MAX_HOST_OBJECTS, Refusal};
use crate::capabilities::{BudgetBreach, CallLimits, LogBudget, LogRate, PluginGrants, StoreState};
use crate::config::Budgets;
use crate::contract::{Health, OperationSpec, chat_channel};
use crate::telemetry::{CallIdentity, CallSpan};

/// wasmtime's default hostcall fuel: the most one host call copies out of the guest.
const DEFAULT_HOSTCALL_FUEL: usize = 128 * 1024 * 1024;

/// Time allowed beyond the deadline for host-side awaits (HTTP in flight) to unwind.
const HOST_GRACE: Duration = Duration::from_millis(50);

pub(super) enum Operation<'a> {
    ToolCall {
        tool: &'a str,
        arguments: &'a String,
        /// Who the call acts for (the `caller` capability).
        caller: Option<Arc<crate::capabilities::Caller>>,
    },
    /// A chat completion; with a sink, the provider streams events into it as they arrive.
    ProviderChat {
        request: &'a String,
        sink: Option<crate::events::EventSink>,
    },
    ConnectorExecute {
        operation: &'a str,
        params: &'a String,
    },
    /// Embeddings for a list of texts.
    ProviderEmbed { request: &'a String },
    /// A channel's limits (message length, edit interval).
    ChannelLimits,
    /// A channel turns an inbound request into an answer and messages.
    ChannelReceive {
        request: chat_channel::InboundRequest,
    },
    /// A channel posts a message.
    ChannelSend { message: chat_channel::Outgoing },
    /// A channel edits a message it posted.
    ChannelUpdate {
        handle: String,
        message: chat_channel::Outgoing,
    },
}

pub(super) enum Outcome {
    Json(String),
    Operations(Vec<OperationSpec>),
    Health(Health),
    ChannelLimits(chat_channel::ChannelLimits),
    /// What `receive` returned and the key that verified the request, if one did.
    Received {
        received: chat_channel::Received,
        verified_by: Option<String>,
    },
    /// A message was sent (its handle; empty for an update), or the platform asked to wait
    /// this many milliseconds.
    Sent(Result<String, u32>),
}

impl Outcome {
    /// Bytes the host copied out of the guest for this outcome (held against
    /// `max_output_bytes`).
    fn output_bytes(&self) -> usize {
        match self {
            Self::Json(json) => json.len(),
            Self::Received { received, .. } => {
                let response = received.response.as_ref().map_or(0, |r| {
                    r.body.len()
                        + r.headers
                            .iter()
                            .map(|(n, v)| n.len() + v.len())
                            .sum::<usize>()
                });
                response
                    + received
                        .messages
                        .iter()
                        .map(|m| {
                            m.text.len()
                                + m.event_id.len()
                                + m.sender.len()
                                + m.chat.len()
                                + m.reply_context.as_ref().map_or(0, String::len)
                                + m.attachments
                                    .iter()
                                    .map(|a| a.name.len() + a.url.as_ref().map_or(0, String::len))
                                    .sum::<usize>()
                                + 64
                        })
                        .sum::<usize>()
            }
            Self::Sent(Ok(handle)) => handle.len(),
            _ => 0,
        }
    }
}

enum Request<'a> {
    Run(Operation<'a>),
    Describe,
    Health,
}

/// Run an operation under the plugin's budgets; its outcome as it is.
pub(super) async fn run(
    inner: &Arc<RuntimeInner>,
    slot: &Arc<PluginSlot>,
    revision: Arc<Revision>,
    operation: Operation<'_>,
) -> Result<Outcome, CallError> {
    admitted_call(inner, slot, &revision, Request::Run(operation), 0, None).await
}

/// Run an operation under the plugin's budgets.
pub(super) async fn call(
    inner: &Arc<RuntimeInner>,
    slot: &Arc<PluginSlot>,
    revision: Arc<Revision>,
    operation: Operation<'_>,
    depth: u8,
    parent: Option<&opentelemetry::Context>,
) -> Result<String, CallError> {
    match admitted_call(
        inner,
        slot,
        &revision,
        Request::Run(operation),
        depth,
        parent,
    )
    .await?
    {
        Outcome::Json(json) => Ok(json),
        _ => Err(CallError::new(ErrorKind::Failed, "unexpected outcome")),
    }
}

/// Ask a connector for its health.
pub(super) async fn health(
    inner: &Arc<RuntimeInner>,
    slot: &Arc<PluginSlot>,
    revision: Arc<Revision>,
) -> Result<Health, CallError> {
    match admitted_call(inner, slot, &revision, Request::Health, 0, None).await? {
        Outcome::Health(health) => Ok(health),
        _ => Err(CallError::new(ErrorKind::Failed, "unexpected outcome")),
    }
}

/// Ask a freshly loaded revision for its tools or operations (before it is installed).
pub(super) async fn describe(
    inner: &Arc<RuntimeInner>,
    revision: &Revision,
    grants: &Arc<PluginGrants>,
    budgets: &Budgets,
) -> Result<Vec<OperationSpec>, CallError> {
    let log_rate = LogRate::new(budgets.max_log_bytes_per_minute);
    let terms = CallTerms {
        grants,
        budgets,
        log_rate: &log_rate,
    };
    match run_in_fresh_instance(inner, revision, terms, Request::Describe, 0, None).await? {
        Outcome::Operations(operations) => Ok(operations),
        _ => Err(CallError::new(ErrorKind::Failed, "unexpected outcome")),
    }
}

impl Request<'_> {
    /// The metrics label of this request and, for tools and connectors, what it calls.
    fn label(&self) -> (&'static str, Option<&str>) {
        match self {
            Self::Run(Operation::ToolCall { tool, .. }) => ("tool", Some(tool)),
            Self::Run(Operation::ConnectorExecute { operation, .. }) => {
                ("connector", Some(operation))
            }
            Self::Run(Operation::ProviderChat { .. }) => ("provider_chat", None),
            Self::Run(Operation::ProviderEmbed { .. }) => ("provider_embed", None),
            Self::Run(Operation::ChannelLimits) => ("channel_limits", None),
            Self::Run(Operation::ChannelReceive { .. }) => ("channel_receive", None),
            Self::Run(Operation::ChannelSend { .. }) => ("channel_send", None),
            Self::Run(Operation::ChannelUpdate { .. }) => ("channel_update", None),
            Self::Describe => ("describe", None),
            Self::Health => ("health", None),
        }
    }
}

/// The span of one plugin call (tool calls follow the GenAI `execute_tool` convention): what
/// is known at the start is given here, what the call produces is added as it ends (memory
/// peak, bytes out, outcome). The call's duration is the span's own. Built only with export on.
fn call_span(
    parent: Option<&opentelemetry::Context>,
    slot: &PluginSlot,
    revision: &Revision,
    operation: &'static str,
    target: Option<&str>,
) -> CallSpan {
    CallSpan::start(parent, || CallIdentity {
        operation,
        plugin: slot.span_name.clone(),
        plugin_kind: revision.manifest.kind.as_str(),
        target: target.map(|target| revision.span_operation(target)),
        digest: revision.span_digest(),
    })
}

/// `admitted_call_untraced` in its span, with its metrics.
async fn admitted_call(
    inner: &Arc<RuntimeInner>,
    slot: &Arc<PluginSlot>,
    revision: &Revision,
    request: Request<'_>,
    depth: u8,
    parent: Option<&opentelemetry::Context>,
) -> Result<Outcome, CallError> {
    let (operation, target) = request.label();
    let mut span = call_span(parent, slot, revision, operation, target);
    let started = Instant::now();
    let result = admitted_call_untraced(inner, slot, revision, request, depth, &mut span).await;
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(_) => crate::telemetry::spans::OUTCOME_OK,
        Err(error) => error.kind.as_str(),
    };
    inner
        .metrics
        .plugin_call(&slot.name, operation, outcome, elapsed);
    if span.is_recording() {
        span.set_outcome(outcome);
        match &result {
            Ok(outcome) => span.set_output_bytes(outcome.output_bytes()),
            Err(error) => span.fail(error.kind.as_str()),
        }
    }
    result
}

async fn admitted_call_untraced(
    inner: &Arc<RuntimeInner>,
    slot: &Arc<PluginSlot>,
    revision: &Revision,
    request: Request<'_>,
    depth: u8,
    span: &mut CallSpan,
) -> Result<Outcome, CallError> {
    let plugin = &slot.name;
    if let Err(remaining) = slot.breaker.admit() {
        return Err(CallError::new(
            ErrorKind::CircuitOpen,
            format!(
                "plugin `{plugin}` failed {} times in a row and is paused for {}s more; see `databot plugin list`",
                slot.breaker.consecutive_failures(),
                remaining.as_secs() + 1
            ),
        ));
    }
    // From here on the call either records its outcome or, if it ends early (no slot, or its
    // future is dropped), lets the next call probe a half-open breaker.
    let mut outcome = PendingOutcome {
        breaker: &slot.breaker,
        recorded: false,
    };
    let timeout = Duration::from_millis(slot.budgets.timeout_ms);
    let started = Instant::now();
    let pool = if matches!(request, Request::Run(Operation::ChannelReceive { .. })) {
        &slot.inbound_concurrency
    } else {
        &slot.concurrency
    };
    // Fast path without a timer when a slot is free.
    let permit = match pool.clone().try_acquire_owned() {
        Ok(permit) => Ok(Ok(permit)),
        Err(_) => tokio::time::timeout(timeout, pool.clone().acquire_owned()).await,
    };
    let _permit = match permit {
        Ok(Ok(permit)) => permit,
        _ => {
            // A probe that never ran must not keep the breaker half-open forever (the
            // `PendingOutcome` guard lets the next call probe).
            inner
                .metrics
                .budget_hit(plugin, crate::telemetry::Budget::Concurrency);
            let mut busy = CallError::new(
                ErrorKind::Unavailable,
                format!(
                    "plugin `{plugin}` is busy: {} calls in flight for {} ms; raise plugins.{plugin}.budgets.max_concurrency",
                    slot.budgets.max_concurrency, slot.budgets.timeout_ms
                ),
            );
            busy.never_started = true;
            return Err(busy);
        }
    };
    let mut budgets = slot.budgets.clone();
    // Time spent waiting for a slot counts against the deadline.
    budgets.timeout_ms = budgets
        .timeout_ms
        .saturating_sub(started.elapsed().as_millis() as u64)
        .max(1);
    slot.calls.fetch_add(1, Ordering::Relaxed);
    let terms = CallTerms {
        grants: &slot.grants,
        budgets: &budgets,
        log_rate: &slot.log_rate,
    };
    let result = run_in_fresh_instance(inner, revision, terms, request, depth, Some(span)).await;
    let fault = result
        .as_ref()
        .err()
        .is_some_and(|e| e.kind.is_plugin_fault());
    if fault {
        slot.failures.fetch_add(1, Ordering::Relaxed);
    }
    slot.breaker.record(fault);
    outcome.recorded = true;
    result
}

/// An admitted call that has not recorded its outcome in the breaker yet; dropped unrecorded
/// (the call gave up or its future was dropped), it abandons a possible probe so a half-open
/// breaker is never left waiting for an outcome that will not come.
struct PendingOutcome<'a> {
    breaker: &'a super::breaker::CircuitBreaker,
    recorded: bool,
}

impl Drop for PendingOutcome<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.abandon_probe();
        }
    }
}

/// What a call runs under: the plugin's grants, its budgets, and its log rate across calls.
#[derive(Clone, Copy)]
struct CallTerms<'a> {
    grants: &'a Arc<PluginGrants>,
    budgets: &'a Budgets,
    log_rate: &'a Arc<LogRate>,
}

async fn run_in_fresh_instance(
    inner: &Arc<RuntimeInner>,
    revision: &Revision,
    terms: CallTerms<'_>,
    request: Request<'_>,
    depth: u8,
    mut span: Option<&mut CallSpan>,
) -> Result<Outcome, CallError> {
    let CallTerms {
        grants,
        budgets,
        log_rate,
    } = terms;
    let plugin = revision.manifest.name.as_str();
    let memory_bytes = usize::try_from(budgets.memory_mb * 1024 * 1024).unwrap_or(usize::MAX);
    let limits = CallLimits {
        memory_bytes,
        max_connections: budgets.max_connections as usize,
        max_open_files: budgets.max_open_files as usize,
        log: LogBudget::new(budgets.max_log_bytes, log_rate.clone()),
    };
    let state = StoreState::new(grants.clone(), inner.services.clone(), limits, depth)
        .map_err(|e| CallError::new(ErrorKind::Failed, format!("{e:#}")))?;
    let mut store = Store::new(&inner.engine, state);
    if let Some(span) = &span
        && span.is_recording()
    {
        store.data_mut().set_trace_context(span.trace());
    }
    match &request {
        Request::Run(Operation::ProviderChat {
            sink: Some(sink), ..
        }) => store.data_mut().set_sink(sink.clone()),
        Request::Run(Operation::ToolCall {
            caller: Some(caller),
            ..
        }) => store.data_mut().set_caller(caller.clone()),
        Request::Run(Operation::ChannelReceive { request }) => store
            .data_mut()
            .set_inbound(bytes::Bytes::copy_from_slice(&request.body)),
        _ => {}
    }
    store.limiter(|state| state);
    // What one host call may copy out of the guest (strings, lists) stays within the budget.
    store.set_hostcall_fuel(memory_bytes.min(DEFAULT_HOSTCALL_FUEL));
    let timeout = Duration::from_millis(budgets.timeout_ms);
    // Every epoch tick the guest yields to the async runtime (a spinning guest never holds a
    // worker thread) and is interrupted once its deadline has passed.
    let deadline = Instant::now() + timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(wasmtime::UpdateDeadline::Interrupt)
        } else {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });

    let guest = guest_call(&mut store, revision, request);
    let result = tokio::time::timeout(timeout + HOST_GRACE, guest).await;
    if let Some(span) = &mut span
        && span.is_recording()
    {
        span.set_memory_peak(store.data().memory.linear_peak);
    }
    store.data_mut().abort_unfinished_bodies();
    store.data().log.report_dropped(plugin);
    if store.data().log.dropped() {
        inner
            .metrics
            .budget_hit(plugin, crate::telemetry::Budget::Log);
    }
    // A deadline or a trap is the host enforcing a budget (a guest reporting its own upstream
    // timeout is not).
    let host_stopped = matches!(result, Err(_) | Ok(Err(_)));
    let outcome = match result {
        Err(_elapsed) => Err(deadline_error(plugin, budgets)),
        Ok(Err(trap)) => Err(trap_error(plugin, budgets, &store, trap)),
        Ok(Ok(Err(guest_error))) => {
            let mut error = CallError::from(guest_error);
            let denials = store.data().egress_denials();
            if !denials.is_empty() {
                error.message = format!("{} (host: {})", error.message, denials.join("; "));
            }
            Err(error)
        }
        Ok(Ok(Ok(Outcome::Received { received, .. }))) => Ok(Outcome::Received {
            received,
            verified_by: store
                .data()
                .inbound()
                .and_then(|check| check.verified_by().map(str::to_owned)),
        }),
        Ok(Ok(Ok(outcome))) => Ok(outcome),
    };
    // A limit the guest was told about through an error code ends the call whatever the
    // guest made of it: the operator sees the budget, not what the plugin reported.
    let (outcome, host_stopped) = match store.data().budget_breach() {
        Some(breach) => (Err(breach_error(breach)), true),
        None => (outcome, host_stopped),
    };
    if let Err(error) = &outcome
        && host_stopped
    {
        let budget = match error.kind {
            ErrorKind::Timeout => Some(crate::telemetry::Budget::Timeout),
            ErrorKind::MemoryExceeded => Some(crate::telemetry::Budget::Memory),
            ErrorKind::ConnectionLimit => Some(crate::telemetry::Budget::Connections),
            ErrorKind::FileLimit => Some(crate::telemetry::Budget::OpenFiles),
            _ => None,
        };
        if let Some(budget) = budget {
            inner.metrics.budget_hit(plugin, budget);
        }
    }
    let outcome = outcome?;
    let output_bytes = outcome.output_bytes();
    if output_bytes as u64 > budgets.max_output_bytes {
        inner
            .metrics
            .budget_hit(plugin, crate::telemetry::Budget::Output);
        return Err(CallError::new(
            ErrorKind::OutputTooLarge,
            format!(
                "plugin `{plugin}` returned {output_bytes} bytes, over its {}-byte output budget (plugins.{plugin}.budgets.max_output_bytes)",
                budgets.max_output_bytes
            ),
        ));
    }
    if let Outcome::Json(json) = &outcome
        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(json)
    {
        return Err(CallError::new(
            ErrorKind::Failed,
            format!("plugin `{plugin}` returned a result that is not JSON: {e}"),
        ));
    }
    Ok(outcome)
}

type GuestResult = wasmtime::Result<Result<Outcome, crate::contract::GuestError>>;

async fn guest_call(
    store: &mut Store<StoreState>,
    revision: &Revision,
    request: Request<'_>,
) -> GuestResult {
    let instance = revision.pre.instantiate_async(&mut *store).await?;
    match (&revision.exports, request) {
        (KindExports::Tool(indices), Request::Describe) => {
            let guest = indices.load(&mut *store, &instance)?;
            Ok(Ok(Outcome::Operations(
                guest.call_list_tools(&mut *store).await?,
            )))
        }
        (
            KindExports::Tool(indices),
            Request::Run(Operation::ToolCall {
                tool, arguments, ..
            }),
        ) => {
            let guest = indices.load(&mut *store, &instance)?;
            Ok(guest
                .call_call(&mut *store, tool, arguments)
                .await?
                .map(Outcome::Json))
        }
        (KindExports::Connector(indices), Request::Describe) => {
            let guest = indices.load(&mut *store, &instance)?;
            Ok(Ok(Outcome::Operations(
                guest.call_capabilities(&mut *store).await?,
            )))
        }
        (KindExports::Connector(indices), Request::Health) => {
            let guest = indices.load(&mut *store, &instance)?;
            Ok(Ok(Outcome::Health(
                guest.call_check_health(&mut *store).await?,
            )))
        }
        (
            KindExports::Connector(indices),
            Request::Run(Operation::ConnectorExecute { operation, params }),
        ) => {
            let guest = indices.load(&mut *store, &instance)?;
            Ok(guest
                .call_execute(&mut *store, operation, params)
                .await?
                .map(Outcome::Json))
        }
        (
            KindExports::Provider(indices),
            Request::Run(Operation::ProviderChat { request, sink }),
        ) => {
            let guest = indices.load(&mut *store, &instance)?;
            let result = if sink.is_some() {
                guest.call_chat_stream(&mut *store, request).await?
            } else {
                guest.call_chat(&mut *store, request).await?
            };
            Ok(result.map(Outcome::Json))
        }
        (KindExports::Provider(indices), Request::Run(Operation::ProviderEmbed { request })) => {
            let guest = indices.load(&mut *store, &instance)?;
            Ok(guest
                .call_embed(&mut *store, request)
                .await?
                .map(Outcome::Json))
        }
        (KindExports::Channel(indices), Request::Run(operation)) => {
            let guest = indices.load(&mut *store, &instance)?;
            channel_call(store, &guest, operation).await
        }
        (KindExports::Channel(indices), Request::Health) => {
            let guest = indices.load(&mut *store, &instance)?;
            Ok(Ok(Outcome::Health(
                guest.call_check_health(&mut *store).await?,
            )))
        }
        (KindExports::LegacyChannel(_), _) => {
            Ok(Err(crate::contract::GuestError::InvalidInput(format!(
                "channel `{}` was built against databot:plugin@0.1.0, whose `channel-handler` no host serves; rebuild it with a databot-sdk of the 0.1 line (the `channel!` macro)",
                revision.manifest.name
            ))))
        }
        _ => Ok(Err(crate::contract::GuestError::InvalidInput(format!(
            "plugin `{}` of kind `{}` does not offer this operation",
            revision.manifest.name,
            revision.manifest.kind.as_str()
        )))),
    }
}

async fn channel_call(
    store: &mut Store<StoreState>,
    guest: &chat_channel::Guest,
    operation: Operation<'_>,
) -> GuestResult {
    let sent = |result: Result<String, chat_channel::SendError>| match result {
        Ok(handle) => Ok(Outcome::Sent(Ok(handle))),
        Err(chat_channel::SendError::RateLimited(wait_ms)) => Ok(Outcome::Sent(Err(wait_ms))),
        Err(chat_channel::SendError::Failed(error)) => Err(error),
    };
    match operation {
        Operation::ChannelLimits => Ok(Ok(Outcome::ChannelLimits(
            guest.call_limits(&mut *store).await?,
        ))),
        Operation::ChannelReceive { request } => Ok(guest
            .call_receive(&mut *store, &request)
            .await?
            .map(|received| Outcome::Received {
                received,
                verified_by: None,
            })),
        Operation::ChannelSend { message } => {
            Ok(sent(guest.call_send(&mut *store, &message).await?))
        }
        Operation::ChannelUpdate { handle, message } => Ok(sent(
            guest
                .call_update(&mut *store, &handle, &message)
                .await?
                .map(|()| String::new()),
        )),
        _ => Ok(Err(crate::contract::GuestError::InvalidInput(
            "a channel plugin offers no such operation".into(),
        ))),
    }
}

fn deadline_error(plugin: &str, budgets: &Budgets) -> CallError {
    CallError::new(
        ErrorKind::Timeout,
        format!(
            "plugin `{plugin}` was stopped at its {} ms deadline (plugins.{plugin}.budgets.timeout_ms)",
            budgets.timeout_ms
        ),
    )
}

fn trap_error(
    plugin: &str,
    budgets: &Budgets,
    store: &Store<StoreState>,
    error: wasmtime::Error,
) -> CallError {
    let state = store.data();
    if let Some(breach) = &state.output_breach {
        return CallError::new(
            ErrorKind::OutputTooLarge,
            format!("plugin `{plugin}`: {breach}"),
        );
    }
    if let Some(desired) = state.memory.refused_growth {
        let held = state.memory.refusal().host_bytes();
        let host = if held > 0 {
            format!(" with {} for it in the host", in_mib(held))
        } else {
            String::new()
        };
        return CallError::new(
            ErrorKind::MemoryExceeded,
            format!(
                "plugin `{plugin}` tried to grow its memory to {}{host}, over its {} MiB budget (plugins.{plugin}.budgets.memory_mb)",
                in_mib(desired),
                budgets.memory_mb
            ),
        );
    }
    if let Some(refusal) = state.memory.objects_refused
        && table_was_full(&error)
    {
        return objects_error(plugin, budgets, refusal);
    }
    if header_map_was_full(&error) {
        return CallError::new(
            ErrorKind::Trap,
            format!(
                "plugin `{plugin}` built a header map over the host's limit of {} KiB (names, values and their bookkeeping); send fewer or smaller headers",
                crate::capabilities::MAX_HEADER_BYTES / 1024
            ),
        );
    }
    let stderr = state.stderr_text();
    let said = if stderr.is_empty() {
        String::new()
    } else {
        format!("; the plugin wrote: {}", last_lines(&stderr, 5))
    };
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => deadline_error(plugin, budgets),
        Some(wasmtime::Trap::StackOverflow) => CallError::new(
            ErrorKind::Trap,
            format!("plugin `{plugin}` overflowed its stack (runaway recursion){said}"),
        ),
        Some(wasmtime::Trap::MemoryOutOfBounds) => CallError::new(
            ErrorKind::Trap,
            format!(
                "plugin `{plugin}` trapped: out of bounds memory access (in Rust and C guests usually a stack overflow from runaway recursion){said}"
            ),
        ),
        Some(trap) => CallError::new(
            ErrorKind::Trap,
            format!("plugin `{plugin}` trapped: {trap}{said}"),
        ),
        None => CallError::new(
            ErrorKind::Trap,
            format!("plugin `{plugin}` failed: {error:#}{said}"),
        ),
    }
}

/// The error of a call that broke a host-side limit while the guest went on.
fn breach_error(breach: BudgetBreach) -> CallError {
    match breach {
        BudgetBreach::CallConnections(reason) => CallError::new(ErrorKind::ConnectionLimit, reason),
        BudgetBreach::ConnectionMemory(reason) => CallError::new(ErrorKind::MemoryExceeded, reason),
        BudgetBreach::OpenFiles(reason) => CallError::new(ErrorKind::FileLimit, reason),
    }
}

/// Did the trap come from a resource table that refused a new entry?
fn table_was_full(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<wasmtime::component::ResourceTableError>()
            .is_some_and(|e| matches!(e, wasmtime::component::ResourceTableError::Full))
    })
}

/// Did the trap come from a header map that passed its size limit?
fn header_map_was_full(error: &wasmtime::Error) -> bool {
    use wasmtime_wasi_http::FieldMapError;
    error.chain().any(|cause| {
        cause.downcast_ref::<FieldMapError>().is_some_and(|e| {
            matches!(
                e,
                FieldMapError::TotalSizeTooBig | FieldMapError::TooManyFields
            )
        })
    })
}

/// The error of a call whose host objects (HTTP requests, bodies, header maps, streams)
/// reached its memory budget or the per-call cap.
fn objects_error(plugin: &str, budgets: &Budgets, refusal: Refusal) -> CallError {
    let message = if refusal.objects >= MAX_HOST_OBJECTS {
        format!(
            "plugin `{plugin}` held {} host objects (HTTP requests, bodies, header maps, streams), the most one call may hold",
            refusal.objects
        )
    } else {
        format!(
            "plugin `{plugin}` held {} host objects (HTTP requests, bodies, header maps, streams; {} in the host) and {} of its own memory, and more would pass its {} MiB budget (plugins.{plugin}.budgets.memory_mb)",
            refusal.objects,
            in_mib(refusal.host_bytes()),
            in_mib(refusal.linear),
            budgets.memory_mb
        )
    };
    CallError::new(ErrorKind::MemoryExceeded, message)
}

fn in_mib(bytes: usize) -> String {
    format!("{} MiB", bytes.div_ceil(1024 * 1024))
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join(" | ")
}
