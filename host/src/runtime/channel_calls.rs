//! Calls into channel plugins (`chat-channel`): their limits, turning a request into
//! messages, sending and editing messages, health. Each runs under the plugin's budgets like
//! any other call.

use std::sync::Arc;

use super::error::{CallError, ErrorKind};
use super::invoke::{self, Operation, Outcome};
use super::{PluginKind, PluginSlot, Revision, Runtime};
use crate::contract::chat_channel::{ChannelLimits, InboundRequest, Outgoing, Received};

/// What a channel made of one request.
#[derive(Debug)]
pub struct ChannelReceipt {
    pub received: Received,
    /// The key whose check passed for this request (`verify`), if one did.
    pub verified_by: Option<String>,
}

/// Why a message did not go out.
#[derive(Debug)]
pub enum SendFailure {
    /// The platform asked to wait this long before sending again.
    RateLimited(std::time::Duration),
    Failed(CallError),
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RateLimited(wait) => write!(f, "rate limited for {} ms", wait.as_millis()),
            Self::Failed(error) => write!(f, "{error}"),
        }
    }
}

fn unexpected() -> CallError {
    CallError::new(ErrorKind::Failed, "unexpected outcome")
}

impl Runtime {
    /// The loaded channel plugin `name` and its current revision.
    fn channel_slot(&self, name: &str) -> Result<(Arc<PluginSlot>, Arc<Revision>), CallError> {
        let slot = self.plugin(name).ok_or_else(|| {
            CallError::new(
                ErrorKind::NotFound,
                format!("no channel named `{name}` is loaded"),
            )
        })?;
        let revision = slot.current();
        if revision.manifest.kind != PluginKind::Channel {
            return Err(CallError::new(
                ErrorKind::InvalidInput,
                format!("plugin `{name}` is not a channel"),
            ));
        }
        Ok((slot, revision))
    }

    /// The names of the loaded channel plugins.
    pub fn channels(&self) -> Vec<String> {
        self.inner
            .plugins
            .read()
            .values()
            .filter(|slot| slot.current().manifest.kind == PluginKind::Channel)
            .map(|slot| slot.name.clone())
            .collect()
    }

    pub async fn channel_limits(&self, name: &str) -> Result<ChannelLimits, CallError> {
        let (slot, revision) = self.channel_slot(name)?;
        match invoke::run(&self.inner, &slot, revision, Operation::ChannelLimits).await? {
            Outcome::ChannelLimits(limits) => Ok(limits),
            _ => Err(unexpected()),
        }
    }

    pub async fn channel_receive(
        &self,
        name: &str,
        request: InboundRequest,
    ) -> Result<ChannelReceipt, CallError> {
        let (slot, revision) = self.channel_slot(name)?;
        match invoke::run(
            &self.inner,
            &slot,
            revision,
            Operation::ChannelReceive { request },
        )
        .await?
        {
            Outcome::Received {
                received,
                verified_by,
            } => Ok(ChannelReceipt {
                received,
                verified_by,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Post a message; its handle.
    pub async fn channel_send(&self, name: &str, message: Outgoing) -> Result<String, SendFailure> {
        let (slot, revision) = self.channel_slot(name).map_err(SendFailure::Failed)?;
        sent(
            invoke::run(
                &self.inner,
                &slot,
                revision,
                Operation::ChannelSend { message },
            )
            .await,
        )
    }

    /// Edit a posted message.
    pub async fn channel_update(
        &self,
        name: &str,
        handle: String,
        message: Outgoing,
    ) -> Result<(), SendFailure> {
        let (slot, revision) = self.channel_slot(name).map_err(SendFailure::Failed)?;
        sent(
            invoke::run(
                &self.inner,
                &slot,
                revision,
                Operation::ChannelUpdate { handle, message },
            )
            .await,
        )
        .map(drop)
    }

    pub async fn channel_health(&self, name: &str) -> Result<crate::contract::Health, CallError> {
        let (slot, revision) = self.channel_slot(name)?;
        invoke::health(&self.inner, &slot, revision).await
    }
}

fn sent(result: Result<Outcome, CallError>) -> Result<String, SendFailure> {
    match result {
        Ok(Outcome::Sent(Ok(handle))) => Ok(handle),
        Ok(Outcome::Sent(Err(wait_ms))) => Err(SendFailure::RateLimited(
            std::time::Duration::from_millis(u64::from(wait_ms)),
        )),
        Ok(_) => Err(SendFailure::Failed(unexpected())),
        Err(error) => Err(SendFailure::Failed(error)),
    }
}
