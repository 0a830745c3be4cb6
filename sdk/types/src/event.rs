//! What a turn reports while it runs, from the provider's streamed text to the client.
//!
//! One type travels the whole way: a provider plugin emits `Delta`s through `stream-sink`, the
//! agent adds tool progress and the end of the turn, and the gateway (SSE), the CLI and
//! channels render the same values. Its JSON form is `{"type": "delta", "text": ...}` and so on.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// A piece of the answer's text, as the model produces it.
    Delta { text: String },
    /// A tool call is about to run.
    ToolStart {
        name: String,
        #[serde(default)]
        arguments: serde_json::Value,
    },
    /// A tool call finished; `output` is what the model sees (an error's text when `!ok`).
    ToolResult {
        name: String,
        ok: bool,
        output: String,
    },
    /// The turn ended with this answer (the last event of a turn that succeeded), and what
    /// the turn took when the host knows it.
    Done {
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<TurnSummary>,
    },
    /// The turn failed; `message` says why in words fit for the user (the last event).
    Error { message: String },
}

/// Who answered a finished turn and what it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnSummary {
    /// The specialist that answered (none with the router off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialist: Option<String>,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub tool_calls: u32,
    /// The turn's W3C trace id, when its spans were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl TurnEvent {
    /// The last event of a turn that answered `content`, without a summary.
    pub fn done(content: impl Into<String>) -> Self {
        Self::Done {
            content: content.into(),
            summary: None,
        }
    }

    /// The event's name, as in its JSON `type` (and the SSE `event:` field).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Delta { .. } => "delta",
            Self::ToolStart { .. } => "tool_start",
            Self::ToolResult { .. } => "tool_result",
            Self::Done { .. } => "done",
            Self::Error { .. } => "error",
        }
    }

    /// True for the event that ends a turn.
    pub fn is_last(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Error { .. })
    }

    /// Bytes the event holds (its text fields), for bounding buffers by size.
    pub fn size(&self) -> usize {
        match self {
            Self::Delta { text } => text.len(),
            Self::ToolStart { name, arguments } => name.len() + json_len(arguments),
            Self::ToolResult { name, output, .. } => name.len() + output.len(),
            Self::Done { content, summary } => {
                content.len()
                    + summary.as_ref().map_or(0, |s| {
                        s.specialist.as_ref().map_or(0, String::len)
                            + s.trace_id.as_ref().map_or(0, String::len)
                    })
            }
            Self::Error { message } => message.len(),
        }
    }
}

/// A JSON value's serialised size, counted without building the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_is_tagged_by_name() {
        let events = [
            TurnEvent::Delta { text: "hi".into() },
            TurnEvent::ToolStart {
                name: "echo".into(),
                arguments: serde_json::json!({"text": "é\"x"}),
            },
            TurnEvent::ToolResult {
                name: "echo".into(),
                ok: true,
                output: "x".into(),
            },
            TurnEvent::done("done"),
            TurnEvent::Done {
                content: "done".into(),
                summary: Some(TurnSummary {
                    specialist: Some("sql".into()),
                    prompt_tokens: 3,
                    completion_tokens: 4,
                    tool_calls: 1,
                    trace_id: None,
                }),
            },
            TurnEvent::Error {
                message: "no".into(),
            },
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.name());
            let back: TurnEvent = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, event);
        }
        assert_eq!(
            serde_json::from_str::<TurnEvent>(r#"{"type":"delta","text":"a"}"#).unwrap(),
            TurnEvent::Delta { text: "a".into() }
        );
    }

    #[test]
    fn size_bounds_the_arguments_json() {
        let arguments = serde_json::json!({"a": ["\u{1}\u{2}", 1.5e300, null, {"b": "\"\\"}]});
        let event = TurnEvent::ToolStart {
            name: String::new(),
            arguments: arguments.clone(),
        };
        assert_eq!(event.size(), arguments.to_string().len());
    }
}
