//! Message history: a conversation sends all its messages and keeps the assistant's reply
//! only when the call succeeded, so a failed or aborted call can simply be retried.

use std::ops::ControlFlow;

use serde_json::{json, Map, Value};

use crate::cancel::CancelToken;
use crate::chunk::{Event, ANSWER_CHOICE};
use crate::client::Client;
use crate::error::Error;
use crate::request::{self, ChatRequest};

/// An ordered list of chat messages (`{"role": ..., "content": ...}` objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    messages: Vec<Value>,
}

/// A tool call being put together from its deltas.
#[derive(Default)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

impl Conversation {
    pub fn new() -> Conversation {
        Conversation::default()
    }

    /// A conversation from a JSON array of messages, validated like `messages` of a chat.
    pub fn from_json(json: &str) -> Result<Conversation, Error> {
        Ok(Conversation {
            messages: request::parse_messages(json)?,
        })
    }

    /// The messages as a JSON array (what [`Conversation::from_json`] reads back).
    pub fn to_json(&self) -> String {
        Value::Array(self.messages.clone()).to_string()
    }

    /// Appends `{"role": role, "content": content}`. The role must not be empty.
    pub fn push(&mut self, role: &str, content: &str) -> Result<(), Error> {
        self.push_json(json!({"role": role, "content": content}))
    }

    /// Appends one message object given as JSON (for tool results, names, parts ...).
    pub fn push_message_json(&mut self, message_json: &str) -> Result<(), Error> {
        let value: Value = serde_json::from_str(message_json)
            .map_err(|e| Error::invalid(format!("message is not valid JSON: {e}")))?;
        self.push_json(value)
    }

    fn push_json(&mut self, message: Value) -> Result<(), Error> {
        request::validate_message(self.messages.len(), &message)?;
        self.messages.push(message);
        Ok(())
    }

    pub fn messages(&self) -> &[Value] {
        &self.messages
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Sends every message, reports the reply's events like [`Client::chat`], and on
    /// success appends the assistant's reply (its text, and its tool calls if any).
    pub fn chat(
        &mut self,
        client: &Client,
        model: Option<&str>,
        options: &Map<String, Value>,
        cancel: Option<&CancelToken>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let request = ChatRequest::new(model, &self.messages, options);
        let mut content = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        client.chat_with_cancel(&request, cancel, &mut |event| {
            match event {
                Event::Content {
                    choice: ANSWER_CHOICE,
                    text,
                } => content.push_str(text),
                Event::ToolCall {
                    choice: ANSWER_CHOICE,
                    index,
                    id,
                    name,
                    arguments,
                } => {
                    let index = index as usize;
                    if calls.len() <= index && index < 1024 {
                        calls.resize_with(index + 1, ToolCall::default);
                    }
                    if let Some(call) = calls.get_mut(index) {
                        call.id.push_str(id.unwrap_or(""));
                        call.name.push_str(name.unwrap_or(""));
                        call.arguments.push_str(arguments);
                    }
                }
                _ => {}
            }
            on_event(event)
        })?;
        let mut reply = Map::new();
        reply.insert("role".into(), Value::from("assistant"));
        if calls.is_empty() {
            reply.insert("content".into(), Value::from(content));
        } else {
            let content = if content.is_empty() {
                Value::Null
            } else {
                Value::from(content)
            };
            reply.insert("content".into(), content);
            let calls = calls
                .into_iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
            reply.insert("tool_calls".into(), Value::Array(calls));
        }
        self.messages.push(Value::Object(reply));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_round_trip() {
        let mut c = Conversation::new();
        c.push("system", "be brief").unwrap();
        c.push("user", "hi \"there\"").unwrap();
        c.push_message_json(r#"{"role":"tool","tool_call_id":"c1","content":"42"}"#)
            .unwrap();
        let back = Conversation::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.len(), 3);
        assert!(c.push("", "x").is_err());
        assert!(c.push_message_json("[]").is_err());
        assert_eq!(c.len(), 3);
    }
}
