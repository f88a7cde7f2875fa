//! [`OwnedEvent`]: an event that owns its strings, what iterating a stream yields.

use crate::chunk::{Event, Usage};

/// An event that owns its strings (what iterating a [`Stream`](crate::Stream) yields).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnedEvent {
    Content {
        choice: u32,
        text: String,
    },
    Reasoning {
        choice: u32,
        text: String,
    },
    Refusal {
        choice: u32,
        text: String,
    },
    ToolCall {
        choice: u32,
        index: u32,
        id: Option<String>,
        kind: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish {
        choice: u32,
        reason: String,
    },
    Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
        json: String,
    },
}

impl OwnedEvent {
    /// The borrowed form, as the callback API reports it.
    pub fn as_event(&self) -> Event<'_> {
        match self {
            OwnedEvent::Content { choice, text } => Event::Content {
                choice: *choice,
                text,
            },
            OwnedEvent::Reasoning { choice, text } => Event::Reasoning {
                choice: *choice,
                text,
            },
            OwnedEvent::Refusal { choice, text } => Event::Refusal {
                choice: *choice,
                text,
            },
            OwnedEvent::ToolCall {
                choice,
                index,
                id,
                kind,
                name,
                arguments,
            } => Event::ToolCall {
                choice: *choice,
                index: *index,
                id: id.as_deref(),
                kind: kind.as_deref(),
                name: name.as_deref(),
                arguments,
            },
            OwnedEvent::Finish { choice, reason } => Event::Finish {
                choice: *choice,
                reason,
            },
            OwnedEvent::Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens,
                json,
            } => Event::Usage(Usage {
                prompt_tokens: *prompt_tokens,
                completion_tokens: *completion_tokens,
                total_tokens: *total_tokens,
                json,
            }),
        }
    }
}

impl From<Event<'_>> for OwnedEvent {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Content { choice, text } => OwnedEvent::Content {
                choice,
                text: text.to_owned(),
            },
            Event::Reasoning { choice, text } => OwnedEvent::Reasoning {
                choice,
                text: text.to_owned(),
            },
            Event::Refusal { choice, text } => OwnedEvent::Refusal {
                choice,
                text: text.to_owned(),
            },
            Event::ToolCall {
                choice,
                index,
                id,
                kind,
                name,
                arguments,
            } => OwnedEvent::ToolCall {
                choice,
                index,
                id: id.map(str::to_owned),
                kind: kind.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: arguments.to_owned(),
            },
            Event::Finish { choice, reason } => OwnedEvent::Finish {
                choice,
                reason: reason.to_owned(),
            },
            Event::Usage(usage) => OwnedEvent::Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
                json: usage.json.to_owned(),
            },
        }
    }
}
