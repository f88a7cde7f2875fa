//! Message history: a conversation sends all its messages and keeps the assistant's reply
//! only when the call succeeded, so a failed or aborted call can simply be retried.

use std::ops::ControlFlow;

use serde_json::{json, Map, Value};

use crate::cancel::CancelToken;
use crate::chunk::Event;
use crate::client::Client;
use crate::error::Error;
use crate::message::Message;
use crate::request::{self, ChatRequest};

/// An ordered list of chat messages (`{"role": ..., "content": ...}` objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    messages: Vec<Value>,
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
    /// success appends the assistant's reply as [`Message::to_history`] makes it (its text,
    /// its refusal and its tool calls, if any).
    pub fn chat(
        &mut self,
        client: &Client,
        model: Option<&str>,
        options: &Map<String, Value>,
        cancel: Option<&CancelToken>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let request = ChatRequest::new(model, &self.messages, options);
        let mut reply = Message::new();
        client.chat_with_cancel(&request, cancel, &mut |event| {
            reply.apply(&event);
            on_event(event)
        })?;
        self.push_reply(&reply);
        Ok(())
    }

    /// Appends an assistant's reply as [`Message::to_history`] makes it (a pull stream's,
    /// once it ended normally).
    pub fn push_reply(&mut self, reply: &Message) {
        self.messages.push(reply.to_history());
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
