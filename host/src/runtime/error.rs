//! Errors of the runtime: why a plugin could not load, and why a call failed.

use std::fmt;

use serde::Serialize;

use crate::contract::GuestError;

/// The category of a failed call; stable names for CLI, HTTP and MCP callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidInput,
    Denied,
    NotFound,
    Unavailable,
    Timeout,
    Failed,
    /// The guest trapped: a panic, an explicit trap, a stack overflow.
    Trap,
    MemoryExceeded,
    OutputTooLarge,
    /// The call had its `max_connections` outgoing connections open and asked for another.
    ConnectionLimit,
    /// The call had its `max_open_files` files open and asked for another.
    FileLimit,
    CircuitOpen,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::Denied => "denied",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Failed => "failed",
            Self::Trap => "trap",
            Self::MemoryExceeded => "memory_exceeded",
            Self::OutputTooLarge => "output_too_large",
            Self::ConnectionLimit => "connection_limit",
            Self::FileLimit => "file_limit",
            Self::CircuitOpen => "circuit_open",
        }
    }

    /// Does this failure count against the plugin's circuit breaker?
    pub fn is_plugin_fault(self) -> bool {
        matches!(
            self,
            Self::Trap
                | Self::Timeout
                | Self::MemoryExceeded
                | Self::OutputTooLarge
                | Self::ConnectionLimit
                | Self::FileLimit
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one call failed.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallError {
    pub kind: ErrorKind,
    pub message: String,
    /// The call never started: every call slot of the plugin was taken for its whole
    /// deadline. Safe to try again, whatever the operation does.
    #[serde(skip)]
    pub never_started: bool,
}

impl CallError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            never_started: false,
        }
    }
}

impl From<GuestError> for CallError {
    fn from(error: GuestError) -> Self {
        match error {
            GuestError::InvalidInput(m) => Self::new(ErrorKind::InvalidInput, m),
            GuestError::Denied(m) => Self::new(ErrorKind::Denied, m),
            GuestError::NotFound(m) => Self::new(ErrorKind::NotFound, m),
            GuestError::Unavailable(m) => Self::new(ErrorKind::Unavailable, m),
            GuestError::Timeout(m) => Self::new(ErrorKind::Timeout, m),
            GuestError::Failed(m) => Self::new(ErrorKind::Failed, m),
        }
    }
}

impl From<CallError> for GuestError {
    fn from(error: CallError) -> Self {
        let message = error.message;
        match error.kind {
            ErrorKind::InvalidInput => Self::InvalidInput(message),
            ErrorKind::Denied => Self::Denied(message),
            ErrorKind::NotFound => Self::NotFound(message),
            ErrorKind::Unavailable | ErrorKind::CircuitOpen => Self::Unavailable(message),
            ErrorKind::Timeout => Self::Timeout(message),
            ErrorKind::Failed
            | ErrorKind::Trap
            | ErrorKind::MemoryExceeded
            | ErrorKind::OutputTooLarge
            | ErrorKind::ConnectionLimit
            | ErrorKind::FileLimit => Self::Failed(message),
        }
    }
}
