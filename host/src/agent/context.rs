//! Builds the messages of one model call: system prompt with persistent memory, as much
//! history as fits the context budget (newest first, never starting on an orphaned tool
//! result), then the new user message.

use crate::contract::chat::{ChatMessage, Role};

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are databot, an assistant for data platform \
operations: databases, pipelines, data quality, catalogs and streaming. Use the tools you are \
given; prefer read-only operations; show query results as tables; say what you did and why; \
warn before anything expensive or destructive. Be concise and technical; answer in markdown.";

/// The system message: the prompt, then the persistent memories.
pub fn system_message(system_prompt: &str, memories: &[(String, String)]) -> ChatMessage {
    let mut system = system_prompt.to_owned();
    if !memories.is_empty() {
        system.push_str("\n\n## Persistent memory\n");
        for (key, value) in memories {
            system.push_str(&format!("- {key}: {value}\n"));
        }
    }
    ChatMessage::text(Role::System, system)
}

/// Tokens left for history once the system message and the user's message are counted.
pub fn history_budget(system: &ChatMessage, user: &ChatMessage, context_tokens: usize) -> usize {
    context_tokens.saturating_sub(system.estimated_tokens() + user.estimated_tokens())
}

/// Admits history into a token budget, newest message first, until the first that does not
/// fit (which closes it: older messages never skip over a newer one).
pub struct HistoryBudget {
    left: usize,
    closed: bool,
}

impl HistoryBudget {
    pub fn new(tokens: usize) -> Self {
        Self {
            left: tokens,
            closed: false,
        }
    }

    /// Whether `message` (the next older one) still fits; it is counted if it does.
    pub fn admit(&mut self, message: &ChatMessage) -> bool {
        let cost = message.estimated_tokens();
        if self.closed || cost > self.left {
            self.closed = true;
            return false;
        }
        self.left -= cost;
        true
    }
}

/// The messages of one model call: `system`, `history` (already fitted to the budget, as
/// `SessionStore::recent_history` with a `HistoryBudget` reads it), the user's message.
pub fn build(system: ChatMessage, history: &[ChatMessage], user: ChatMessage) -> Vec<ChatMessage> {
    let mut start = 0;
    // A tool result without the assistant message that asked for it confuses every API.
    while start < history.len() && history[start].role == Role::Tool {
        start += 1;
    }
    let mut messages = Vec::with_capacity(history.len() - start + 2);
    messages.push(system);
    messages.extend_from_slice(&history[start..]);
    messages.push(user);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::chat::ToolCall;

    /// What a turn sends: the newest history that fits `context_tokens`, read newest first
    /// through a `HistoryBudget` as the agent does.
    fn fitted(
        system: &str,
        history: &[ChatMessage],
        user: &str,
        tokens: usize,
    ) -> Vec<ChatMessage> {
        let system = system_message(system, &[]);
        let user = ChatMessage::text(Role::User, user);
        let mut budget = HistoryBudget::new(history_budget(&system, &user, tokens));
        let mut kept: Vec<ChatMessage> = history
            .iter()
            .rev()
            .take_while(|m| budget.admit(m))
            .cloned()
            .collect();
        kept.reverse();
        build(system, &kept, user)
    }

    #[test]
    fn history_is_trimmed_to_the_budget_from_the_oldest() {
        let history: Vec<ChatMessage> = (0..100)
            .map(|i| {
                ChatMessage::text(
                    Role::User,
                    format!("message number {i} {}", "x".repeat(100)),
                )
            })
            .collect();
        let messages = fitted("sys", &history, "now", 300);
        assert!(messages.len() < 20, "{}", messages.len());
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(messages.last().unwrap().content.as_deref(), Some("now"));
        assert!(
            messages[messages.len() - 2]
                .content
                .as_deref()
                .unwrap()
                .contains("number 99")
        );
    }

    #[test]
    fn never_starts_on_an_orphaned_tool_result() {
        let call = ToolCall {
            id: "1".into(),
            name: "t".into(),
            arguments: serde_json::json!({}),
        };
        let mut assistant = ChatMessage::text(Role::Assistant, "x".repeat(400));
        assistant.tool_calls.push(call.clone());
        let history = vec![assistant, ChatMessage::tool_result(&call, "ok".into())];
        let messages = fitted("sys", &history, "now", 60);
        assert!(messages.iter().all(|m| m.role != Role::Tool));
    }

    #[test]
    fn memories_are_in_the_system_prompt() {
        let messages = build(
            system_message("sys", &[("db".into(), "postgres".into())]),
            &[],
            ChatMessage::text(Role::User, "hi"),
        );
        assert!(
            messages[0]
                .content
                .as_deref()
                .unwrap()
                .contains("- db: postgres")
        );
    }
}
