//! `logging` capability: guest log lines become host `tracing` events tagged with the plugin.
//! Lines are cut at `MAX_LINE`; the log's field formatter (`telemetry::log_format`) escapes
//! line breaks and other control characters, so a plugin cannot forge log lines.

use crate::runtime::bindings::databot::plugin::logging::{Host, Level};

use super::StoreState;

/// Longest guest log line kept; longer lines are cut (a plugin cannot flood the host's logs).
const MAX_LINE: usize = 4096;

impl Host for StoreState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = self.grants.plugin.as_str();
        let message = if message.len() > MAX_LINE {
            let cut = message.floor_char_boundary(MAX_LINE);
            format!("{}… ({} bytes cut)", &message[..cut], message.len() - cut)
        } else {
            message
        };
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
        Ok(())
    }
}
