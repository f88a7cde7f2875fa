//! The assistant message a reply adds up to: the events of choice 0 put together the way
//! the chat-completions API's own non-streaming `message` is, plus the finish reason and
//! usage. A conversation stores it; the whole-reply and pull calls hand it out as JSON.
//!
//! The rules live here once: text pieces (content, reasoning, refusal) are appended in
//! order; a tool call's pieces are grouped by their `index`, and of `id`, `type` and
//! function `name` the first non-empty value is kept (servers such as llama-cpp-python
//! repeat them in every piece, others send them once) while only `arguments` is appended.

use serde_json::{json, Map, Value};

use crate::chunk::{Event, ANSWER_CHOICE};

/// Most distinct tool calls kept for one message; pieces of further calls are dropped, so a
/// hostile stream of ever-new indices cannot grow the message without bound.
pub const MAX_TOOL_CALLS: usize = 1024;

/// A tool call assembled from its pieces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// The `index` its pieces carried.
    pub index: u32,
    /// The first non-empty `id` of its pieces ("" when none had one).
    pub id: String,
    /// The first non-empty `type` of its pieces; "function" when none had one.
    pub kind: String,
    /// The first non-empty function `name` of its pieces.
    pub name: String,
    /// The `arguments` fragments of its pieces, concatenated (JSON text, as the model wrote
    /// it; not checked).
    pub arguments: String,
}

/// The assistant message of the answer's choice (`ANSWER_CHOICE`, 0) of a reply,
/// accumulated from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    content: String,
    reasoning: String,
    refusal: String,
    /// In the order of their first piece.
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<String>,
    /// The last `usage` object, as the server sent it.
    usage_json: Option<String>,
}

impl Message {
    pub fn new() -> Message {
        Message::default()
    }

    /// Adds one event of the reply. Events of choices other than 0 are ignored (a message
    /// is one choice's); usage belongs to the whole reply and is always kept.
    #[inline]
    pub fn apply(&mut self, event: &Event<'_>) {
        // The usual event, inline where it is pulled; the others out of line.
        match *event {
            Event::Content {
                choice: ANSWER_CHOICE,
                text,
            } => self.content.push_str(text),
            _ => self.apply_other(event),
        }
    }

    fn apply_other(&mut self, event: &Event<'_>) {
        match *event {
            Event::Content {
                choice: ANSWER_CHOICE,
                text,
            } => self.content.push_str(text),
            Event::Reasoning {
                choice: ANSWER_CHOICE,
                text,
            } => self.reasoning.push_str(text),
            Event::Refusal {
                choice: ANSWER_CHOICE,
                text,
            } => self.refusal.push_str(text),
            Event::ToolCall {
                choice: ANSWER_CHOICE,
                index,
                id,
                kind,
                name,
                arguments,
            } => {
                let position = match self.tool_calls.iter().position(|c| c.index == index) {
                    Some(p) => p,
                    None if self.tool_calls.len() < MAX_TOOL_CALLS => {
                        self.tool_calls.push(ToolCall {
                            index,
                            ..ToolCall::default()
                        });
                        self.tool_calls.len() - 1
                    }
                    None => return,
                };
                let call = &mut self.tool_calls[position];
                keep_first(&mut call.id, id);
                keep_first(&mut call.kind, kind);
                keep_first(&mut call.name, name);
                call.arguments.push_str(arguments);
            }
            Event::Finish {
                choice: ANSWER_CHOICE,
                reason,
            } => self.finish_reason = Some(reason.to_owned()),
            Event::Usage(usage) => self.usage_json = Some(usage.json.to_owned()),
            _ => {}
        }
    }

    /// The answer's text.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The model's reasoning text (`reasoning_content` or `reasoning`), if it sent any.
    pub fn reasoning(&self) -> &str {
        &self.reasoning
    }

    /// The model's refusal, if it refused.
    pub fn refusal(&self) -> &str {
        &self.refusal
    }

    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.tool_calls
    }

    /// Why choice 0 ended ("stop", "length", "tool_calls", ...); `None` when the server did
    /// not say (some servers end a reply with `[DONE]` alone, for example when they cut it
    /// short).
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// The `usage` object as the server sent it, if it sent one.
    pub fn usage_json(&self) -> Option<&str> {
        self.usage_json.as_deref()
    }

    /// The message as a conversation stores it and sends it back: what the chat-completions
    /// API accepts as an assistant message. `role` and `content` (null when there are tool
    /// calls and no text), then `refusal` and `tool_calls` when there are any. Reasoning is
    /// left out: servers do not take it back (DeepSeek's API refuses it).
    pub fn to_history(&self) -> Value {
        Value::Object(self.history_fields())
    }

    fn history_fields(&self) -> Map<String, Value> {
        let mut message = Map::new();
        message.insert("role".into(), Value::from("assistant"));
        let content = if self.content.is_empty() && !self.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::from(self.content.as_str())
        };
        message.insert("content".into(), content);
        if !self.refusal.is_empty() {
            message.insert("refusal".into(), Value::from(self.refusal.as_str()));
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(ToolCall::to_json).collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        message
    }

    /// Everything known about the reply as one JSON object: the fields of
    /// [`Message::to_history`], with `content` always present (null only when nothing came
    /// and there are tool calls), plus `reasoning` (null when none), `refusal` (null when
    /// none), `tool_calls` (an empty array when none), `finish_reason` (null when the
    /// server sent none) and `usage` (the server's object, or null).
    pub fn to_json(&self) -> String {
        let mut message = self.history_fields();
        let text_or_null = |s: &str| {
            if s.is_empty() {
                Value::Null
            } else {
                Value::from(s)
            }
        };
        message.insert("reasoning".into(), text_or_null(&self.reasoning));
        message.insert("refusal".into(), text_or_null(&self.refusal));
        message
            .entry("tool_calls")
            .or_insert_with(|| Value::Array(Vec::new()));
        message.insert(
            "finish_reason".into(),
            self.finish_reason
                .as_deref()
                .map_or(Value::Null, Value::from),
        );
        // The usage text came from the JSON parser, so it is valid JSON.
        let usage = self
            .usage_json
            .as_deref()
            .and_then(|u| serde_json::from_str(u).ok())
            .unwrap_or(Value::Null);
        message.insert("usage".into(), usage);
        Value::Object(message).to_string()
    }
}

impl ToolCall {
    fn to_json(&self) -> Value {
        let kind = if self.kind.is_empty() {
            "function"
        } else {
            &self.kind
        };
        json!({"id": self.id, "type": kind,
               "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// Sets `slot` from `value` unless it already has a non-empty value.
fn keep_first(slot: &mut String, value: Option<&str>) {
    if let (true, Some(value)) = (slot.is_empty(), value) {
        slot.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Usage;

    fn tool<'a>(
        index: u32,
        id: Option<&'a str>,
        name: Option<&'a str>,
        arguments: &'a str,
    ) -> Event<'a> {
        Event::ToolCall {
            choice: 0,
            index,
            id,
            kind: id.map(|_| "function"),
            name,
            arguments,
        }
    }

    #[test]
    fn repeated_ids_and_names_are_kept_once_and_arguments_appended() {
        let mut m = Message::new();
        for piece in ["{\"city\":", "\"Paris\"", "}"] {
            m.apply(&tool(0, Some("call_1"), Some("get_weather"), piece));
        }
        assert_eq!(
            m.tool_calls(),
            &[ToolCall {
                index: 0,
                id: "call_1".into(),
                kind: "function".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }]
        );
    }

    #[test]
    fn first_piece_only_empty_values_and_interleaved_calls() {
        let mut m = Message::new();
        m.apply(&tool(1, Some(""), Some(""), ""));
        m.apply(&tool(0, Some("a"), Some("f"), "{"));
        m.apply(&tool(1, Some("b"), Some("g"), "["));
        m.apply(&tool(0, None, None, "}"));
        m.apply(&tool(1, None, Some("other"), "]"));
        let calls: Vec<_> = m
            .tool_calls()
            .iter()
            .map(|c| {
                (
                    c.index,
                    c.id.as_str(),
                    c.name.as_str(),
                    c.arguments.as_str(),
                )
            })
            .collect();
        assert_eq!(calls, [(1, "b", "g", "[]"), (0, "a", "f", "{}")]);
    }

    #[test]
    fn text_finish_usage_and_other_choices() {
        let mut m = Message::new();
        m.apply(&Event::Reasoning {
            choice: 0,
            text: "hm",
        });
        m.apply(&Event::Content {
            choice: 0,
            text: "Hi",
        });
        m.apply(&Event::Content {
            choice: 1,
            text: "other choice",
        });
        m.apply(&Event::Refusal {
            choice: 0,
            text: "no",
        });
        m.apply(&Event::Finish {
            choice: 1,
            reason: "length",
        });
        assert_eq!(m.finish_reason(), None);
        m.apply(&Event::Finish {
            choice: 0,
            reason: "stop",
        });
        m.apply(&Event::Usage(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            json: r#"{"prompt_tokens":1,"x":[1]}"#,
        }));
        assert_eq!(
            (m.content(), m.reasoning(), m.refusal()),
            ("Hi", "hm", "no")
        );
        assert_eq!(
            m.to_history(),
            json!({"role": "assistant", "content": "Hi", "refusal": "no"})
        );
        let full: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(
            full,
            json!({"role": "assistant", "content": "Hi", "reasoning": "hm", "refusal": "no",
                   "tool_calls": [], "finish_reason": "stop",
                   "usage": {"prompt_tokens": 1, "x": [1]}})
        );
    }

    #[test]
    fn empty_and_tool_only_messages() {
        let m = Message::new();
        assert_eq!(m.to_history(), json!({"role": "assistant", "content": ""}));
        let full: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(full["finish_reason"], Value::Null);
        assert_eq!(full["usage"], Value::Null);
        let mut m = Message::new();
        m.apply(&Event::ToolCall {
            choice: 0,
            index: 0,
            id: None,
            kind: None,
            name: Some("f"),
            arguments: "{}",
        });
        assert_eq!(
            m.to_history(),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        );
    }

    #[test]
    fn tool_calls_are_bounded() {
        let mut m = Message::new();
        for index in 0..(MAX_TOOL_CALLS as u32 + 10) {
            m.apply(&tool(index, Some("x"), Some("f"), "{}"));
        }
        assert_eq!(m.tool_calls().len(), MAX_TOOL_CALLS);
    }
}
