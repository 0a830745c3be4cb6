//! The agent loop: one turn of a conversation. Builds the context, asks the provider plugin,
//! runs the tool calls it asks for (arguments validated by the runtime, independent calls in
//! parallel, errors fed back to the model, outputs capped), repeats up to the iteration limit,
//! and persists the whole exchange with its token usage.
//!
//! Cancellation: dropping the future of `Agent::turn` stops it, including guest calls in flight;
//! nothing of a cancelled turn is persisted.

pub mod context;
mod handler;
pub mod host_tool;
pub mod memory_tool;
pub mod router;
pub mod sessions;

use std::sync::Arc;

use self::host_tool::HostTool;
use self::router::{Specialist, ToolOwner};
use self::sessions::SessionStore;
use crate::bus::TurnScope;
use crate::capabilities::Caller;
use crate::config::AgentConfig;
use crate::contract::chat::{
    ChatMessage, ChatRequest, ChatResponse, Role, ToolCall, ToolDefinition, Usage,
};
use crate::events::{EventSink, TurnEvent};
use crate::runtime::{CallError, Runtime};
use serde::Serialize;

/// The conversation a turn belongs to and the user speaking in it, as the server side of the
/// channel knows them (the gateway: the API key; the CLI: the local user), never as a message
/// claims them.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// `channel:chat_id`: history, routing and the one-writer lock.
    pub session_key: String,
    /// `channel:sender`: whose memories the `user` memory scope holds.
    pub user: String,
    /// Who the turn's tool calls act for (the `caller` capability); `None` for a local user.
    pub caller: Option<Arc<Caller>>,
    /// The receiving side's rules: a pinned specialist, a narrower set of tools.
    pub scope: TurnScope,
    /// Set for a message of a replicated bus: the turn records its reply (the message's
    /// processed record) in the same statement as its session writes.
    pub reply: Option<crate::bus::outbox::ReplyReceipt>,
}

impl Conversation {
    /// A conversation of its channel's local user: `cli:default` is spoken by `cli:local`.
    pub fn local(session_key: &str) -> Self {
        let channel = session_key
            .split_once(':')
            .map_or(session_key, |(channel, _)| channel);
        Self {
            session_key: session_key.to_owned(),
            user: format!("{channel}:local"),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TurnOutcome {
    pub content: String,
    /// The specialist that answered (`None` with the router off).
    pub specialist: Option<String>,
    pub usage: Usage,
    pub iterations: u32,
    pub tool_calls: u32,
    /// The trace of the turn, when spans were recorded.
    pub trace_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the provider `{provider}` failed: {error}")]
    Provider { provider: String, error: CallError },
    #[error("the provider `{provider}` answered something that is not a chat response: {message}")]
    BadResponse { provider: String, message: String },
    #[error("session store: {0:#}")]
    Sessions(anyhow::Error),
    /// The receiving side pinned a specialist that does not exist; answering without it
    /// would drop the tool restriction the pin stands for.
    #[error(
        "the specialist `{0}` this channel is pinned to does not exist; check agent.router.specialists"
    )]
    UnknownSpecialist(String),
}

impl AgentError {
    /// A stable name for metrics and the turn span's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Provider { error, .. } => error.kind.as_str(),
            Self::BadResponse { .. } => "bad_response",
            Self::Sessions(_) => "sessions",
            Self::UnknownSpecialist(_) => "unknown_specialist",
        }
    }
}

pub struct Agent {
    runtime: Runtime,
    sessions: Arc<SessionStore>,
    settings: AgentConfig,
    specialists: Vec<Specialist>,
    /// Knowledge base searched before each turn and fed with completed turns.
    rag: Option<Arc<crate::rag::Rag>>,
    /// Tools the host implements in a layer above (the scheduler's `cron`).
    host_tools: Vec<Arc<dyn HostTool>>,
}

impl Agent {
    pub fn new(runtime: Runtime, sessions: Arc<SessionStore>, settings: AgentConfig) -> Self {
        let specialists = router::specialists(&settings.router.specialists);
        Self {
            runtime,
            sessions,
            settings,
            specialists,
            rag: None,
            host_tools: Vec::new(),
        }
    }

    /// Offer this host tool to the model, beside the memory tool and the plugins' tools.
    pub fn with_host_tool(mut self, tool: Arc<dyn HostTool>) -> Self {
        self.host_tools.push(tool);
        self
    }

    /// Enrich prompts from (and remember turns in) this knowledge base.
    pub fn with_rag(mut self, rag: Arc<crate::rag::Rag>) -> Self {
        self.rag = Some(rag);
        self
    }

    /// The provider plugin this agent talks to.
    pub fn provider(&self) -> &str {
        &self.settings.provider
    }

    pub fn sessions(&self) -> &SessionStore {
        &self.sessions
    }

    /// Tools offered to the model: every loaded tool plugin's tools plus the memory tool,
    /// narrowed to the specialist's subset.
    fn tool_definitions(
        &self,
        specialist: Option<&Specialist>,
        conversation: &Conversation,
    ) -> Vec<ToolDefinition> {
        let scope = &conversation.scope;
        let mut tools: Vec<ToolDefinition> = self
            .runtime
            .tools()
            .into_iter()
            .filter(|tool| {
                let owner = ToolOwner::Plugin {
                    name: &tool.plugin,
                    configured: tool.configured,
                };
                specialist.is_none_or(|s| s.allows(&tool.name, owner))
                    && in_scope(scope, &tool.name, owner)
            })
            .map(|tool| ToolDefinition {
                name: tool.name,
                description: tool.description,
                input_schema: tool.input_schema,
            })
            .collect();
        let groups = self.runtime.tool_groups();
        if specialist.is_none_or(|s| s.allows(memory_tool::NAME, ToolOwner::Host))
            && in_scope(scope, memory_tool::NAME, ToolOwner::Host)
            && groups.allows(memory_tool::NAME, ToolOwner::Host)
        {
            tools.push(memory_tool::definition(self.settings.memory_scope));
        }
        for host_tool in self.host_tools.iter().filter(|t| t.offered(conversation)) {
            let definition = host_tool.definition();
            if specialist.is_none_or(|s| s.allows(&definition.name, ToolOwner::Host))
                && in_scope(scope, &definition.name, ToolOwner::Host)
                && groups.allows(&definition.name, ToolOwner::Host)
            {
                tools.push(definition);
            }
        }
        tools
    }

    /// Is there a specialist of this name (a channel may pin one)?
    pub fn has_specialist(&self, name: &str) -> bool {
        self.specialists.iter().any(|s| s.name == name)
    }

    /// Every `plugins.NAME.channel.specialist` and `schedules.jobs[].specialist` names a
    /// specialist of this agent; the error names the first that does not.
    pub fn check_pinned_specialists(&self, config: &crate::config::Config) -> Result<(), String> {
        for (name, plugin) in &config.plugins {
            if let Some(pinned) = plugin
                .channel
                .as_ref()
                .and_then(|c| c.specialist.as_deref())
                && !self.has_specialist(pinned)
            {
                let known: Vec<&str> = self.specialists.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "plugins.{name}.channel.specialist: no specialist named `{pinned}` (there are: {})",
                    known.join(", ")
                ));
            }
        }
        for job in &config.schedules.jobs {
            if let Some(pinned) = &job.specialist
                && !self.has_specialist(pinned)
            {
                return Err(format!(
                    "schedules.jobs ({}): no specialist named `{pinned}`; check agent.router.specialists",
                    job.name
                ));
            }
        }
        Ok(())
    }

    /// Pick the specialist for this message; the conversation's current one when in doubt.
    async fn route(
        &self,
        session_key: &str,
        user: &str,
        scope: &TurnScope,
        usage: &mut Usage,
    ) -> Result<Option<&Specialist>, AgentError> {
        if let Some(pinned) = &scope.specialist {
            return match self.specialists.iter().find(|s| &s.name == pinned) {
                Some(specialist) => Ok(Some(specialist)),
                None => Err(AgentError::UnknownSpecialist(pinned.clone())),
            };
        }
        if !self.settings.router.enabled {
            return Ok(None);
        }
        let current = self
            .sessions
            .route(session_key)
            .await
            .map_err(AgentError::Sessions)?;
        let messages = [
            ChatMessage::text(
                Role::System,
                router::router_prompt(&self.specialists, current.as_deref()),
            ),
            ChatMessage::text(Role::User, user),
        ];
        let choice = match self.ask_provider(&messages, &[], None).await {
            Ok(response) => {
                *usage += response.usage;
                router::parse_choice(response.content.as_deref().unwrap_or(""), &self.specialists)
            }
            Err(error) => {
                tracing::warn!(
                    session = session_key,
                    "routing failed, keeping the current specialist: {error}"
                );
                None
            }
        };
        let name = choice
            .or(current)
            .unwrap_or_else(|| router::FALLBACK.to_owned());
        let specialist = self
            .specialists
            .iter()
            .find(|s| s.name == name)
            .or_else(|| self.specialists.iter().find(|s| s.name == router::FALLBACK));
        if let Some(specialist) = specialist {
            self.sessions
                .set_route(session_key, &specialist.name)
                .await
                .map_err(AgentError::Sessions)?;
            tracing::debug!(session = session_key, specialist = %specialist.name, "routed");
        }
        Ok(specialist)
    }

    /// Run one turn of the conversation `session_key`, spoken by its channel's local user (see
    /// `Conversation::local`), for the user's message.
    pub async fn turn(
        &self,
        session_key: &str,
        user: &str,
        events: Option<&EventSink>,
    ) -> Result<TurnOutcome, AgentError> {
        self.turn_in_trace(&Conversation::local(session_key), user, events, &[])
            .await
    }

    /// A turn of `conversation` in an `agent.turn` span that joins the caller's W3C trace
    /// context (`traceparent` / `tracestate` pairs, e.g. from HTTP headers carried over the bus).
    pub async fn turn_in_trace(
        &self,
        conversation: &Conversation,
        user: &str,
        events: Option<&EventSink>,
        trace_context: &[(String, String)],
    ) -> Result<TurnOutcome, AgentError> {
        let session_key = conversation.session_key.as_str();
        use tracing::Instrument;
        use tracing::field::Empty;
        let span = tracing::info_span!(
            "agent.turn",
            databot.session = session_key,
            databot.provider = %self.settings.provider,
            databot.specialist = Empty,
            databot.turn.iterations = Empty,
            databot.turn.tool_calls = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        crate::telemetry::propagation::set_remote_parent(&span, |key| {
            crate::telemetry::propagation::lookup(trace_context, key)
        });
        let started = std::time::Instant::now();
        let result = self
            .run_turn(conversation, user, events)
            .instrument(span.clone())
            .await;
        self.runtime.metrics().turn(
            started.elapsed(),
            result.as_ref().map_or(0, |outcome| outcome.tool_calls),
            result.is_err(),
        );
        match &result {
            Ok(outcome) => {
                span.record("databot.turn.iterations", i64::from(outcome.iterations));
                span.record("databot.turn.tool_calls", i64::from(outcome.tool_calls));
                span.record(
                    "gen_ai.usage.input_tokens",
                    crate::telemetry::spans::int(outcome.usage.prompt_tokens),
                );
                span.record(
                    "gen_ai.usage.output_tokens",
                    crate::telemetry::spans::int(outcome.usage.completion_tokens),
                );
            }
            Err(error) => crate::telemetry::spans::record_error(&span, error.kind()),
        }
        result
    }

    async fn run_turn(
        &self,
        conversation: &Conversation,
        user: &str,
        events: Option<&EventSink>,
    ) -> Result<TurnOutcome, AgentError> {
        let session_key = conversation.session_key.as_str();
        let memory_scope = memory_tool::scope_key(self.settings.memory_scope, conversation);
        let _writer = self.sessions.lock(session_key).await;
        // The turn's own time starts once it may write: waiting for another turn of the
        // conversation is not part of it.
        let started_at_ms = crate::timing::now_ms();
        let started = std::time::Instant::now();
        let memories = self
            .sessions
            .memories(&memory_scope, self.settings.memory_items)
            .await
            .map_err(AgentError::Sessions)?;
        let mut usage = Usage::default();
        let route_span = if self.settings.router.enabled {
            tracing::info_span!("agent.route", databot.specialist = tracing::field::Empty)
        } else {
            tracing::Span::none()
        };
        let specialist = tracing::Instrument::instrument(
            self.route(session_key, user, &conversation.scope, &mut usage),
            route_span.clone(),
        )
        .await?;
        if let Some(specialist) = specialist {
            route_span.record("databot.specialist", specialist.name.as_str());
            tracing::Span::current().record("databot.specialist", specialist.name.as_str());
        }
        let system_prompt = match (specialist, self.settings.system_prompt.as_deref()) {
            // The operator's prompt replaces the general one (and the single agent's).
            (Some(s), Some(own)) if s.name == router::FALLBACK => own,
            (Some(s), _) => s.system_prompt.as_str(),
            (None, own) => own.unwrap_or(context::DEFAULT_SYSTEM_PROMPT),
        };
        // Retrieved text is data, not instructions: it goes in as a user-side message just
        // before the user's own (never as a system message), and is not stored with the
        // conversation. Its size comes out of the history's token budget.
        let knowledge = self
            .knowledge(session_key, user)
            .await
            .map(|text| ChatMessage::text(Role::User, text));
        let context_tokens = self
            .settings
            .context_tokens
            .saturating_sub(knowledge.as_ref().map_or(0, ChatMessage::estimated_tokens));
        let system = context::system_message(system_prompt, &memories);
        let user_message = ChatMessage::text(Role::User, user);
        let mut budget = context::HistoryBudget::new(context::history_budget(
            &system,
            &user_message,
            context_tokens,
        ));
        let history = self
            .sessions
            .recent_history(session_key, |message| budget.admit(message))
            .await
            .map_err(AgentError::Sessions)?;
        let mut messages = context::build(system, &history, user_message);
        if let Some(knowledge) = knowledge {
            messages.insert(messages.len() - 1, knowledge);
        }
        let first_new = messages.len() - 1;
        let tools = self.tool_definitions(specialist, conversation);
        let mut tool_calls = 0;
        let mut iterations = 0;
        let content = loop {
            if iterations >= self.settings.max_iterations {
                break format!(
                    "I stopped after {iterations} rounds of tool calls without a final answer (agent.max_iterations)."
                );
            }
            iterations += 1;
            let response = self.ask_provider(&messages, &tools, events).await?;
            usage += response.usage;
            if response.tool_calls.is_empty() {
                let content = response.content.unwrap_or_default();
                messages.push(ChatMessage::text(Role::Assistant, content.clone()));
                break content;
            }
            let mut assistant =
                ChatMessage::text(Role::Assistant, response.content.unwrap_or_default());
            assistant.tool_calls = response.tool_calls.clone();
            messages.push(assistant);
            tool_calls += response.tool_calls.len() as u32;
            let results =
                futures::future::join_all(response.tool_calls.iter().map(|call| {
                    self.run_tool(call, specialist, conversation, &memory_scope, events)
                }))
                .await;
            for (call, output) in response.tool_calls.iter().zip(results) {
                messages.push(ChatMessage::tool_result(call, output));
            }
        };
        let reply = match &conversation.reply {
            Some(receipt) => Some(
                receipt
                    .record(&content, false)
                    .map_err(|e| AgentError::Sessions(e.into()))?,
            ),
            None => None,
        };
        let record = sessions::TurnRecord {
            started_at_ms,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            specialist: specialist.map(|s| s.name.clone()),
            iterations,
            tool_calls,
            trace_id: crate::telemetry::propagation::trace_id(&tracing::Span::current()),
        };
        self.sessions
            .append_turn(
                session_key,
                &messages[first_new..],
                usage,
                &record,
                reply.as_ref(),
            )
            .await
            .map_err(AgentError::Sessions)?;
        self.remember(session_key, user, &content);
        Ok(TurnOutcome {
            content,
            specialist: record.specialist,
            usage,
            iterations,
            tool_calls,
            trace_id: record.trace_id,
        })
    }

    /// Knowledge-base context for this message; retrieval failures are logged, never fatal.
    async fn knowledge(&self, session_key: &str, user: &str) -> Option<String> {
        let rag = self.rag.as_ref()?;
        match rag.context_for(session_key, user).await {
            Ok(context) => context,
            Err(error) => {
                tracing::warn!(
                    session = session_key,
                    "knowledge base search failed, answering without it: {error}"
                );
                None
            }
        }
    }

    /// Keep the finished turn in the knowledge base, in the background.
    fn remember(&self, session_key: &str, user: &str, answer: &str) {
        let Some(rag) = self.rag.clone() else {
            return;
        };
        if !rag.settings().ingest_conversations {
            return;
        }
        let (session, user, answer) = (session_key.to_owned(), user.to_owned(), answer.to_owned());
        // In the turn's trace: the embedding call is part of answering this message.
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            if let Err(error) = rag.remember_turn(&session, &user, &answer).await {
                tracing::warn!(session = %session, "keeping the turn in the knowledge base failed: {error}");
            }
        }));
    }

    async fn ask_provider(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        events: Option<&EventSink>,
    ) -> Result<ChatResponse, AgentError> {
        let provider = &self.settings.provider;
        let request = ChatRequest {
            model: self.settings.model.as_deref().map(Into::into),
            messages: messages.into(),
            tools: tools.into(),
        };
        let request = serde_json::to_string(&request).map_err(|e| AgentError::BadResponse {
            provider: provider.clone(),
            message: e.to_string(),
        })?;
        let span = provider_span(provider, self.settings.model.as_deref());
        let started = std::time::Instant::now();
        let result = tracing::Instrument::instrument(
            self.runtime
                .provider_chat(provider, &request, events.cloned()),
            span.clone(),
        )
        .await;
        let text = result.map_err(|error| {
            crate::telemetry::spans::record_error(&span, error.kind.as_str());
            AgentError::Provider {
                provider: provider.clone(),
                error,
            }
        })?;
        let response: ChatResponse = serde_json::from_str(&text).map_err(|e| {
            crate::telemetry::spans::record_error(&span, "bad_response");
            AgentError::BadResponse {
                provider: provider.clone(),
                message: e.to_string(),
            }
        })?;
        self.runtime.metrics().provider_call(
            provider,
            started.elapsed(),
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
        );
        if let Some(model) = &response.model {
            span.record("gen_ai.response.model", model.as_str());
        }
        span.record(
            "gen_ai.usage.input_tokens",
            crate::telemetry::spans::int(response.usage.prompt_tokens),
        );
        span.record(
            "gen_ai.usage.output_tokens",
            crate::telemetry::spans::int(response.usage.completion_tokens),
        );
        Ok(response)
    }

    /// Run one tool call (the memory tool in `memory_scope`); failures become text the model
    /// can read and act on.
    async fn run_tool(
        &self,
        call: &ToolCall,
        specialist: Option<&Specialist>,
        conversation: &Conversation,
        memory_scope: &str,
        events: Option<&EventSink>,
    ) -> String {
        // Nobody listens (a bus turn whose sender wants no events): build no events.
        let events = events.filter(|events| !events.is_closed());
        if let Some(events) = events {
            events.emit(TurnEvent::ToolStart {
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
        }
        let resolved = self.runtime.resolve_tool(&call.name);
        let owner = match &resolved {
            Some(resolved) => ToolOwner::Plugin {
                name: resolved.plugin(),
                configured: resolved.configured,
            },
            None => ToolOwner::Host,
        };
        let result = if let Some(specialist) = specialist.filter(|s| !s.allows(&call.name, owner)) {
            Err(format!(
                "denied: tool `{}` is not among the `{}` specialist's tools ({})",
                call.name,
                specialist.name,
                specialist.tools.join(", ")
            ))
        } else if !in_scope(&conversation.scope, &call.name, owner) {
            Err(format!(
                "denied: tool `{}` is not among the tools this channel allows",
                call.name
            ))
        } else if owner == ToolOwner::Host && !self.runtime.tool_groups().allows(&call.name, owner)
        {
            Err(self.runtime.unavailable_tool(&call.name).to_string())
        } else if call.name == memory_tool::NAME {
            memory_tool::run(&self.sessions, memory_scope, &call.arguments).await
        } else if let Some(host_tool) = self
            .host_tools
            .iter()
            .find(|t| t.name() == call.name && t.offered(conversation))
        {
            let specialist = specialist.map(|s| s.name.as_str());
            host_tool
                .call(conversation, specialist, &call.arguments)
                .await
        } else if let Some(resolved) = &resolved {
            self.runtime
                .call_resolved_as(
                    resolved,
                    &call.name,
                    &call.arguments,
                    conversation.caller.clone(),
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            Err(self.runtime.unavailable_tool(&call.name).to_string())
        };
        let ok = result.is_ok();
        let output = match result {
            Ok(output) => truncate(output, self.settings.max_tool_output_bytes),
            Err(error) => format!("error: {error}"),
        };
        if let Some(events) = events {
            events.emit(TurnEvent::ToolResult {
                name: call.name.clone(),
                ok,
                output: output.clone(),
            });
        }
        output
    }
}

/// Does the receiving side's tool list (if it has one) name `tool`?
fn in_scope(scope: &TurnScope, tool: &str, owner: ToolOwner<'_>) -> bool {
    scope
        .tools
        .as_deref()
        .is_none_or(|list| router::names_tool(list, tool, owner))
}

/// The span of one provider call, after the GenAI semantic conventions (`chat {model}`).
fn provider_span(provider: &str, model: Option<&str>) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "chat",
        otel.name = Empty,
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider,
        gen_ai.system = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("chat {}", model.unwrap_or(provider)));
    }
    span
}

/// Cut a tool output to `limit` bytes with a notice the model can see.
fn truncate(output: String, limit: usize) -> String {
    if output.len() <= limit {
        return output;
    }
    let cut = output.floor_char_boundary(limit);
    format!(
        "{}\n[output truncated: {} of {} bytes shown (agent.max_tool_output_bytes)]",
        &output[..cut],
        cut,
        output.len()
    )
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_utf8_and_says_so() {
        let text = "é".repeat(100);
        let cut = truncate(text.clone(), 11);
        assert!(cut.starts_with(&"é".repeat(5)));
        assert!(cut.contains("output truncated: 10 of 200 bytes"));
        assert_eq!(truncate("short".into(), 100), "short");
    }
}
