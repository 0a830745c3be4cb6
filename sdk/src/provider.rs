//! Typed provider plugins: implement [`Provider`] with the contract's chat types and export it
//! with [`provider!`](crate::provider!). The SDK parses the host's requests and serialises the
//! answers, so a provider author only translates between these types and a vendor's API.
//!
//! ```ignore
//! use databot_sdk::prelude::*;
//! use databot_sdk::provider::{ChatRequest, ChatResponse, Provider, Stream};
//!
//! struct Echo;
//!
//! impl Provider for Echo {
//!     fn models() -> Result<Vec<String>, PluginError> {
//!         Ok(vec!["echo-1".into()])
//!     }
//!     fn chat(request: ChatRequest<'static>) -> Result<ChatResponse, PluginError> {
//!         let last = request.messages.last().map(|m| m.content_text()).unwrap_or("");
//!         Ok(ChatResponse { content: Some(last.to_owned()), ..Default::default() })
//!     }
//!     fn check_health() -> databot_sdk::Health { /* ... */ }
//! }
//!
//! databot_sdk::provider!(Echo);
//! ```

pub use databot_types::chat::{
    ChatMessage, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, EmbedUsage, Role,
    ToolCall, ToolDefinition, Usage,
};
pub use databot_types::event::TurnEvent;

use crate::{Health, PluginError};

/// A provider plugin's operations, typed. Only `models`, `chat` and `check_health` are
/// required: streaming defaults to one delta holding the whole answer, embeddings to an error
/// saying the provider has none.
pub trait Provider {
    /// The models this provider can serve.
    fn models() -> Result<Vec<String>, PluginError>;

    /// One chat completion.
    fn chat(request: ChatRequest<'static>) -> Result<ChatResponse, PluginError>;

    /// One chat completion whose text is sent through `stream` as it arrives; returns the
    /// complete response at the end.
    fn chat_stream(
        request: ChatRequest<'static>,
        stream: &Stream,
    ) -> Result<ChatResponse, PluginError> {
        let response = Self::chat(request)?;
        if let Some(content) = &response.content {
            stream.delta(content);
        }
        Ok(response)
    }

    /// Embeddings for a list of texts, one vector per text in order.
    fn embed(request: EmbedRequest<'static>) -> Result<EmbedResponse, PluginError> {
        let _ = request;
        Err(PluginError::InvalidInput(
            "this provider has no embeddings; configure another provider for embeddings".into(),
        ))
    }

    fn check_health() -> Health;
}

/// Text in one delta event at most: escaped (6 bytes a byte at worst), it stays under the
/// host's limit of 256 KiB an event.
const MAX_DELTA_TEXT: usize = 32 * 1024;

/// Where a streaming chat sends its text: to the turn's listeners (an SSE client, the CLI, a
/// channel), through the host.
pub struct Stream {
    _only_the_sdk_makes_one: (),
}

impl Stream {
    /// Send a piece of the answer's text (empty pieces are skipped). Long text goes out in
    /// several events, each well under the host's 256 KiB an event even when every character
    /// needs escaping.
    pub fn delta(&self, text: &str) {
        let mut rest = text;
        while !rest.is_empty() {
            let cut = rest.floor_char_boundary(MAX_DELTA_TEXT);
            // A character is at most 4 bytes, so a cut of 0 only happens below 4 bytes left.
            let cut = if cut == 0 { rest.len() } else { cut };
            let (piece, after) = rest.split_at(cut);
            let event = TurnEvent::Delta {
                text: piece.to_owned(),
            };
            if let Ok(json) = serde_json::to_string(&event) {
                crate::stream_sink::emit(&json);
            }
            rest = after;
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, PluginError> {
    serde_json::from_str(json)
        .map_err(|e| PluginError::InvalidInput(format!("the host's {what} request: {e}")))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<String, PluginError> {
    serde_json::to_string(value)
        .map_err(|e| PluginError::Failed(format!("the {what} response cannot be encoded: {e}")))
}

#[doc(hidden)]
pub fn __models<P: Provider>() -> Result<String, PluginError> {
    encode("models", &P::models()?)
}

#[doc(hidden)]
pub fn __chat<P: Provider>(request: &str) -> Result<String, PluginError> {
    encode("chat", &P::chat(parse("chat", request)?)?)
}

#[doc(hidden)]
pub fn __chat_stream<P: Provider>(request: &str) -> Result<String, PluginError> {
    let stream = Stream {
        _only_the_sdk_makes_one: (),
    };
    encode("chat", &P::chat_stream(parse("chat", request)?, &stream)?)
}

#[doc(hidden)]
pub fn __embed<P: Provider>(request: &str) -> Result<String, PluginError> {
    encode("embed", &P::embed(parse("embed", request)?)?)
}

/// Export a type implementing [`Provider`] as the plugin's `provider-handler`.
#[macro_export]
macro_rules! provider {
    ($provider:ty) => {
        struct __DatabotProvider;

        impl $crate::worlds::provider::exports::databot::plugin::provider_handler::Guest
            for __DatabotProvider
        {
            fn models() -> ::std::result::Result<::std::string::String, $crate::PluginError> {
                $crate::provider::__models::<$provider>()
            }

            fn chat(
                request: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::PluginError> {
                $crate::provider::__chat::<$provider>(&request)
            }

            fn chat_stream(
                request: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::PluginError> {
                $crate::provider::__chat_stream::<$provider>(&request)
            }

            fn embed(
                request: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::PluginError> {
                $crate::provider::__embed::<$provider>(&request)
            }

            fn check_health() -> $crate::Health {
                <$provider as $crate::provider::Provider>::check_health()
            }
        }

        $crate::worlds::provider::export_provider_world!(__DatabotProvider);
    };
}
