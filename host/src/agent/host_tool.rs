//! Tools the host implements in a layer above the agent (the scheduler's `cron`): offered to
//! the model beside the memory tool, filtered by specialists and channel scopes like it, and
//! called with the conversation that asked, so they can act for it and no further.

use super::Conversation;
use crate::contract::chat::ToolDefinition;

#[async_trait::async_trait]
pub trait HostTool: Send + Sync {
    /// The tool's name (one of `config::RESERVED_NAMES`, so no plugin can take it).
    fn name(&self) -> &str;

    /// What the model is shown.
    fn definition(&self) -> ToolDefinition;

    /// Is the tool there at all in `conversation` (not offered, not callable otherwise)?
    fn offered(&self, _conversation: &Conversation) -> bool {
        true
    }

    /// Run one call for `conversation`, in a turn answered by `specialist` (if the router
    /// or the channel chose one); an error is text the model reads and acts on.
    async fn call(
        &self,
        conversation: &Conversation,
        specialist: Option<&str>,
        arguments: &serde_json::Value,
    ) -> Result<String, String>;
}
