//! Chat chunk JSON -> events: content tokens, reasoning text, tool-call deltas, finish
//! reasons, usage, and the error shapes real servers put inside a 200 reply.
//!
//! Only the fields needed are parsed, and strings without escapes are borrowed from the
//! input, so the common content chunk costs no allocation.
//!
//! Two parsers: [`fast`], a single pass over the bytes for the chunks that make up nearly
//! every stream (one choice with content, reasoning, tool-call pieces or a finish reason),
//! and serde for everything else. The fast path accepts only input that it is sure serde
//! accepts too and reports exactly what serde's path would; on anything else (usage,
//! errors, several choices, odd JSON) it steps aside before reporting any event.

use std::borrow::Cow;
use std::fmt;
use std::ops::ControlFlow;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::Error;

/// Token counts of a reply, as the server reported them. Usage is informational: a count
/// that is missing or not a whole number from 0 to 2^64-1 (null, 1.5, -1, 1e999, "12") is
/// 0, and `json` keeps what was sent; it never fails a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage<'a> {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// The whole `usage` object as sent, for details beyond the three counts.
    pub json: &'a str,
}

/// One thing a reply said. `choice` is the index of the choice it belongs to (0 unless the
/// request asked for several with `n`). More kinds may be added: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A piece of the answer (`delta.content`, or `message.content` when not streaming).
    Content { choice: u32, text: &'a str },
    /// A piece of the model's reasoning (`reasoning_content` or `reasoning`).
    Reasoning { choice: u32, text: &'a str },
    /// A piece of the model's refusal to answer (`refusal`), to be concatenated like content.
    Refusal { choice: u32, text: &'a str },
    /// A piece of a tool call. The `arguments` JSON text arrives in fragments to be
    /// concatenated per `index`. Most servers send `id`, `kind` (the call's `type`) and
    /// `name` only in the first piece of a call, but some (llama-cpp-python, and LiteLLM
    /// passing it on) repeat them in every piece: keep the first non-empty value of each,
    /// never concatenate them.
    ToolCall {
        choice: u32,
        index: u32,
        id: Option<&'a str>,
        kind: Option<&'a str>,
        name: Option<&'a str>,
        arguments: &'a str,
    },
    /// Why the choice ended (`stop`, `length`, `tool_calls`, ...). Empty reasons are skipped.
    Finish { choice: u32, reason: &'a str },
    /// Token counts (the last chunk with `stream_options.include_usage`, or the whole reply).
    Usage(Usage<'a>),
}

/// The choice that is "the answer": its content is what token callbacks and `chat_text`
/// deliver and what a conversation keeps. Other choices (asked for with `n`) reach only
/// the event API.
pub(crate) const ANSWER_CHOICE: u32 = 0;

impl<'a> Event<'a> {
    /// The piece of the answer this event carries, if it is one: content of choice 0,
    /// the answer's choice.
    pub fn token(&self) -> Option<&'a str> {
        match *self {
            Event::Content {
                choice: ANSWER_CHOICE,
                text,
            } => Some(text),
            _ => None,
        }
    }
}

/// A string that is borrowed from the input when it has no escapes.
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// A piece of streamed text (content, reasoning, refusal, arguments) as serde_json's bytes:
/// UTF-8 but for lone surrogates from `\u` escapes, which [`halves`] resolves.
#[derive(Debug)]
struct Piece<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Piece<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PieceVisitor;
        impl<'de> Visitor<'de> for PieceVisitor {
            type Value = Piece<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Piece(Cow::Borrowed(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Piece(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Piece(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Piece(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(PieceVisitor)
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Choices<'a>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<Value>,
    /// vLLM's error shape: `{"object": "error", "message": ...}`.
    #[serde(default, borrow)]
    object: Option<Text<'a>>,
    #[serde(default)]
    message: Option<Value>,
}

/// The choices array, kept without a heap allocation for the usual single choice.
#[derive(Default)]
struct Choices<'a> {
    first: Option<Choice<'a>>,
    rest: Vec<Choice<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ChoicesVisitor;
        impl<'de> Visitor<'de> for ChoicesVisitor {
            type Value = Choices<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Choices::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut choices = Choices {
                    first: seq.next_element()?,
                    rest: Vec::new(),
                };
                while let Some(choice) = seq.next_element()? {
                    choices.rest.push(choice);
                }
                Ok(choices)
            }
        }
        d.deserialize_any(ChoicesVisitor)
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    /// A non-streaming reply has `message` where a chunk has `delta`.
    #[serde(default, borrow)]
    message: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Piece<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Piece<'a>>,
    #[serde(default, borrow)]
    reasoning: Option<Piece<'a>>,
    #[serde(default, borrow)]
    refusal: Option<Piece<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Piece<'a>>,
}

/// What one choice of a chunk says. Both parsers report through [`Said::report`], so the
/// order of a chunk's events is written once: reasoning, content, refusal, tool calls (in
/// the order sent), finish reason. Empty texts and reasons are not reported.
pub(crate) struct Said<'s, T> {
    pub(crate) index: u32,
    pub(crate) reasoning: Option<&'s str>,
    pub(crate) content: Option<&'s str>,
    pub(crate) refusal: Option<&'s str>,
    /// `Event::ToolCall`s.
    pub(crate) tools: T,
    pub(crate) finish: Option<&'s str>,
}

impl<'s, T: Iterator<Item = Event<'s>>> Said<'s, T> {
    pub(crate) fn report<B, F>(self, on_event: &mut F) -> ControlFlow<B>
    where
        F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
    {
        let choice = self.index;
        let text = |t: Option<&'s str>| t.filter(|t| !t.is_empty());
        if let Some(text) = text(self.reasoning) {
            on_event(Event::Reasoning { choice, text })?;
        }
        if let Some(text) = text(self.content) {
            on_event(Event::Content { choice, text })?;
        }
        if let Some(text) = text(self.refusal) {
            on_event(Event::Refusal { choice, text })?;
        }
        for call in self.tools {
            on_event(call)?;
        }
        if let Some(reason) = text(self.finish) {
            on_event(Event::Finish { choice, reason })?;
        }
        ControlFlow::Continue(())
    }
}

/// The chunk parser of one reply: each chunk is parsed on its own, but a surrogate pair
/// split across chunks is joined (see [`halves`]), so the parser lives as long as the reply.
#[derive(Debug, Default)]
pub struct Parser {
    halves: Halves,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Parses one chunk (a `data:` payload, or a whole non-streaming reply) and reports its
    /// events in order. Returns `Break` as soon as `on_event` does.
    ///
    /// Errors: invalid JSON or text that is not UTF-8 is [`ErrorKind::Protocol`](crate::ErrorKind::Protocol); an error
    /// object in any of the shapes servers send (`{"error": {...}}`, `{"error": "text"}`,
    /// `{"object": "error", ...}`) is [`ErrorKind::Api`](crate::ErrorKind::Api) carrying the server's message.
    pub fn parse<B, F>(&mut self, data: &[u8], on_event: &mut F) -> Result<ControlFlow<B>, Error>
    where
        F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
    {
        // A half waiting for its partner needs the general path, which joins it.
        if self.halves.is_empty() {
            if let Some(flow) = fast::parse(data, on_event) {
                return Ok(flow);
            }
        }
        parse_serde(data, &mut self.halves, on_event)
    }

    /// The reply ended: a surrogate half still waiting for its partner is reported as
    /// U+FFFD.
    pub fn finish<B, F>(&mut self, on_event: &mut F) -> ControlFlow<B>
    where
        F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
    {
        for (choice, field) in self.halves.take_all() {
            on_event(replacement(choice, field))?;
        }
        ControlFlow::Continue(())
    }
}

/// Parses a chunk that stands alone (a whole reply): [`Parser::parse`] then
/// [`Parser::finish`].
pub fn parse<B, F>(data: &[u8], on_event: &mut F) -> Result<ControlFlow<B>, Error>
where
    F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
{
    let mut parser = Parser::new();
    if let ControlFlow::Break(b) = parser.parse(data, on_event)? {
        return Ok(ControlFlow::Break(b));
    }
    Ok(parser.finish(on_event))
}

/// The general parser alone, on a chunk that stands alone (for tests and fuzzing).
#[cfg(any(test, feature = "test-hooks"))]
pub(crate) fn parse_with_serde<B, F>(data: &[u8], on_event: &mut F) -> Result<ControlFlow<B>, Error>
where
    F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
{
    let mut halves = Halves::default();
    if let ControlFlow::Break(b) = parse_serde(data, &mut halves, on_event)? {
        return Ok(ControlFlow::Break(b));
    }
    let mut parser = Parser { halves };
    Ok(parser.finish(on_event))
}

/// The general parser, for every shape the fast path leaves alone.
fn parse_serde<B, F>(
    data: &[u8],
    halves: &mut Halves,
    on_event: &mut F,
) -> Result<ControlFlow<B>, Error>
where
    F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
{
    let chunk: Chunk = serde_json::from_slice(data).map_err(|e| {
        Error::protocol(format!(
            "the server sent invalid JSON ({e}): {}",
            snippet(data)
        ))
    })?;
    if let Some(error) = &chunk.error {
        if !error.is_null() {
            return Err(api_error(error));
        }
    }
    if chunk.object.as_ref().is_some_and(|o| o.0 == "error") {
        let message = chunk.message.unwrap_or(Value::Null);
        return Err(api_error(&message));
    }
    // Every text is resolved before the first event, so a chunk that is not UTF-8 reports
    // nothing.
    // serde_json hands out string bytes unchecked: bytes that are not UTF-8 are lone
    // surrogates from escapes (resolved by `halves`) only if the raw chunk was UTF-8.
    let raw_utf8 = std::cell::OnceCell::new();
    let raw_utf8 = || *raw_utf8.get_or_init(|| std::str::from_utf8(data).is_ok());
    let choices = chunk.choices.first.iter().chain(&chunk.choices.rest);
    let resolved = choices
        .map(|choice| Resolved::of(choice, halves, &raw_utf8))
        .collect::<Result<Vec<_>, NotUtf8>>()
        .map_err(|NotUtf8| {
            Error::protocol(format!(
                "the server sent invalid JSON (text that is not UTF-8): {}",
                snippet(data)
            ))
        })?;
    for choice in &resolved {
        if let ControlFlow::Break(b) = choice.report(on_event) {
            return Ok(ControlFlow::Break(b));
        }
    }
    if let Some(raw) = chunk.usage.filter(|raw| raw.get() != "null") {
        if let ControlFlow::Break(b) = on_event(Event::Usage(Usage::lenient(raw.get()))) {
            return Ok(ControlFlow::Break(b));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// One choice of a chunk parsed by serde, its texts resolved through [`Halves`].
struct Resolved<'a> {
    index: u32,
    /// Fields whose waiting half this choice does not continue: each is reported first, as
    /// U+FFFD.
    orphans: Vec<Field>,
    reasoning: Option<Cow<'a, str>>,
    content: Option<Cow<'a, str>>,
    refusal: Option<Cow<'a, str>>,
    tools: Vec<ResolvedTool<'a>>,
    finish: Option<&'a str>,
}

struct ResolvedTool<'a> {
    index: u32,
    id: Option<&'a str>,
    kind: Option<&'a str>,
    name: Option<&'a str>,
    arguments: Cow<'a, str>,
}

impl<'a> Resolved<'a> {
    fn of(
        choice: &'a Choice<'a>,
        halves: &mut Halves,
        raw_utf8: &dyn Fn() -> bool,
    ) -> Result<Resolved<'a>, NotUtf8> {
        let index = choice.index.unwrap_or(0);
        // As in the fast path: `delta`, or else `message`.
        let delta = choice.delta.as_ref().or(choice.message.as_ref());
        let reasoning = delta.and_then(|d| d.reasoning_content.as_ref().or(d.reasoning.as_ref()));
        let content = delta.and_then(|d| d.content.as_ref());
        let refusal = delta.and_then(|d| d.refusal.as_ref());
        let calls = delta.and_then(|d| d.tool_calls.as_deref()).unwrap_or(&[]);
        let call_index = |position: usize, call: &ToolCallDelta| -> u32 {
            call.index.unwrap_or(position as u32)
        };
        let orphans = if halves.is_empty() {
            Vec::new()
        } else {
            halves.orphans(index, |field| match field {
                Field::Reasoning => reasoning.is_some(),
                Field::Content => content.is_some(),
                Field::Refusal => refusal.is_some(),
                Field::Arguments(i) => calls.iter().enumerate().any(|(p, c)| {
                    call_index(p, c) == i
                        && c.function.as_ref().is_some_and(|f| f.arguments.is_some())
                }),
            })
        };
        let mut text = |field, piece: Option<&'a Piece<'a>>| match piece {
            Some(piece) if std::str::from_utf8(&piece.0).is_err() && !raw_utf8() => Err(NotUtf8),
            Some(piece) => halves.text(index, field, &piece.0).map(Some),
            None => Ok(None),
        };
        let reasoning = text(Field::Reasoning, reasoning)?;
        let content = text(Field::Content, content)?;
        let refusal = text(Field::Refusal, refusal)?;
        let mut tools = Vec::with_capacity(calls.len());
        for (position, call) in calls.iter().enumerate() {
            let function = call.function.as_ref();
            let index = call_index(position, call);
            let arguments = function.and_then(|f| f.arguments.as_ref());
            tools.push(ResolvedTool {
                index,
                id: call.id.as_ref().map(|t| &*t.0),
                kind: call.kind.as_ref().map(|t| &*t.0),
                name: function.and_then(|f| f.name.as_ref()).map(|t| &*t.0),
                arguments: text(Field::Arguments(index), arguments)?.unwrap_or_default(),
            });
        }
        Ok(Resolved {
            index,
            orphans,
            reasoning,
            content,
            refusal,
            tools,
            finish: choice.finish_reason.as_ref().map(|t| &*t.0),
        })
    }

    fn report<B, F>(&self, on_event: &mut F) -> ControlFlow<B>
    where
        F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
    {
        for &field in &self.orphans {
            on_event(replacement(self.index, field))?;
        }
        let choice = self.index;
        Said {
            index: choice,
            reasoning: self.reasoning.as_deref(),
            content: self.content.as_deref(),
            refusal: self.refusal.as_deref(),
            tools: self.tools.iter().map(|t| Event::ToolCall {
                choice,
                index: t.index,
                id: t.id,
                kind: t.kind,
                name: t.name,
                arguments: &t.arguments,
            }),
            finish: self.finish,
        }
        .report(on_event)
    }
}

/// The event for a surrogate half that found no partner.
fn replacement(choice: u32, field: Field) -> Event<'static> {
    const TEXT: &str = "\u{FFFD}";
    match field {
        Field::Reasoning => Event::Reasoning { choice, text: TEXT },
        Field::Content => Event::Content { choice, text: TEXT },
        Field::Refusal => Event::Refusal { choice, text: TEXT },
        Field::Arguments(index) => Event::ToolCall {
            choice,
            index,
            id: None,
            kind: None,
            name: None,
            arguments: TEXT,
        },
    }
}

impl<'a> Usage<'a> {
    /// Usage is informational: a count that is missing or not a whole number from 0 to
    /// 2^64-1 (null, 1.5, -1, 1e999, "12", 2^64) is reported as 0, never as a failed
    /// reply; `json` keeps what was sent.
    fn lenient(json: &'a str) -> Usage<'a> {
        #[derive(Deserialize, Default)]
        struct Counts<'a> {
            #[serde(default, borrow)]
            prompt_tokens: Option<&'a RawValue>,
            #[serde(default, borrow)]
            completion_tokens: Option<&'a RawValue>,
            #[serde(default, borrow)]
            total_tokens: Option<&'a RawValue>,
        }
        let counts: Counts = serde_json::from_str(json).unwrap_or_default();
        // The JSON text of a whole number is its decimal digits: nothing else parses.
        let count = |raw: Option<&RawValue>| raw.and_then(|r| r.get().parse().ok()).unwrap_or(0);
        Usage {
            prompt_tokens: count(counts.prompt_tokens),
            completion_tokens: count(counts.completion_tokens),
            total_tokens: count(counts.total_tokens),
            json,
        }
    }
}

pub(crate) mod fast;
mod halves;
mod server_error;

use halves::{Field, Halves, NotUtf8};
pub use server_error::{api_error, error_text_from_body, snippet};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    type Outcome = Result<Vec<String>, ErrorKind>;

    fn collect(f: impl FnOnce(&mut dyn FnMut(Event<'_>) -> ControlFlow<()>)) -> Vec<String> {
        let mut out = Vec::new();
        f(&mut |e| {
            out.push(format!("{e:?}"));
            ControlFlow::Continue(())
        });
        out
    }

    fn by_serde(data: &[u8]) -> Outcome {
        let mut err = None;
        let out = collect(|cb| {
            if let Err(e) = parse_with_serde(data, cb) {
                err = Some(e.kind());
            }
        });
        err.map_or(Ok(out), Err)
    }

    fn by_fast(data: &[u8]) -> Option<Vec<String>> {
        let mut handled = false;
        let out = collect(|cb| handled = fast::parse(data, cb).is_some());
        handled.then_some(out)
    }

    fn by_parse(data: &[u8]) -> Outcome {
        let mut err = None;
        let out = collect(|cb| {
            if let Err(e) = parse(data, cb) {
                err = Some(e.kind());
            }
        });
        err.map_or(Ok(out), Err)
    }

    /// The fast path either steps aside or agrees with serde exactly.
    fn check(data: &[u8]) -> Result<(), TestCaseError> {
        let serde = by_serde(data);
        if let Some(fast) = by_fast(data) {
            prop_assert_eq!(
                Ok(fast),
                serde.clone(),
                "fast path disagrees on {:?}",
                String::from_utf8_lossy(data)
            );
        }
        prop_assert_eq!(by_parse(data), serde);
        Ok(())
    }

    const REAL: &str = r#"{"id":"chatcmpl-B9MBs8","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}"#;

    #[test]
    fn fast_path_takes_the_usual_chunks() {
        let usual = [
            REAL,
            r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
            r#"{"choices":[{"delta":{"content":"a\n\"b\" \u00e9 \ud83d\ude00"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm","content":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"1}"}},{"index":3}]}}]}"#,
            r#" { "choices" : [ { "index" : 7 , "message" : { "content" : "Hi" } , "finish_reason" : "length" } ] , "timings" : {"a":[1,-2.5e3,true,false,null,{}]} } "#,
            r#"{"choices":[],"object":"chat.completion.chunk"}"#,
            r#"{"choices":null}"#,
        ];
        for data in usual {
            assert!(by_fast(data.as_bytes()).is_some(), "{data}");
            check(data.as_bytes()).unwrap();
        }
    }

    #[test]
    fn fast_path_steps_aside_for_the_rest() {
        let rare = [
            r#"{"choices":[{"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            r#"{"error":{"message":"boom"}}"#,
            r#"{"object":"error","message":"bad"}"#,
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[{"index":-1,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"index":1.0,"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#,
            r#"{"choices":[{"delta":{"content":1}}]}"#,
            r#"{"choices":[{"delta":{"content":"a"}}]} x"#,
            r#"{"choices":[{"delta":{"cont\u0065nt":"a"}}]}"#,
            "{\"choices\":[{\"delta\":{\"content\":\"a\tb\"}}]}",
            r#"{"choices":[{"delta":{"content":"a"}}],}"#,
            r#"{"x":01,"choices":[]}"#,
            r#"[]"#,
            r#""#,
        ];
        for data in rare {
            assert!(by_fast(data.as_bytes()).is_none(), "{data}");
            check(data.as_bytes()).unwrap();
        }
        // Invalid UTF-8 anywhere: serde decides.
        let mut bad = REAL.as_bytes().to_vec();
        bad[10] = 0xFF;
        assert!(by_fast(&bad).is_none());
        check(&bad).unwrap();
    }

    #[test]
    fn resumed_chunks_parse_like_fresh_ones() {
        // The same prefix, then every kind of ending: each must come out as if parsed
        // alone, whatever was parsed before it on this thread.
        let prefix = &REAL[..REAL.find("\"Hel\"").unwrap()];
        let endings = [
            r#""Hel"},"logprobs":null,"finish_reason":null}]}"#,
            r#""a\nb"},"logprobs":null,"finish_reason":null}]}"#,
            r#"null,"reasoning":"r"},"finish_reason":"stop"}],"usage":null}"#,
            r#""x","tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}}]}"#,
            r#""x"}},{"index":1,"delta":{"content":"y"}}]}"#,
            r#""x"}}],"usage":{"prompt_tokens":1}}"#,
            r#""x","content":"y"}}]}"#,
            r#""x"}}]"#,
            r#"1}}]}"#,
            "\"\u{FFFF}\u{10FFFF}\"}}]}",
            r#""x"}, "index": 2}]}"#,
            r#""x"}, "index": 2, "index": 3}]}"#,
            r#""x"}, "delta": {}}]}"#,
            r#""x"}}], "choices": []}"#,
        ];
        for first in endings {
            for second in endings {
                for data in [format!("{prefix}{first}"), format!("{prefix}{second}")] {
                    check(data.as_bytes()).unwrap();
                }
            }
        }
        check(format!("{prefix}\"ok\"}}}}]}}").as_bytes()).unwrap();
        let mut invalid = prefix.as_bytes().to_vec();
        invalid.extend_from_slice(b"\"a\xC3\"}}]}");
        check(&invalid).unwrap();
    }

    #[test]
    fn a_suffix_is_learnt_only_for_its_own_prefix() {
        check(REAL.as_bytes()).unwrap();
        check(REAL.as_bytes()).unwrap();
        // A prefix too long to keep, whose chunk ends with an `index` after the delta...
        let long = format!(
            r#"{{"id":"{}","choices":[{{"delta":{{"content":"a"}},"index":5}}]}}"#,
            "x".repeat(2000)
        );
        check(long.as_bytes()).unwrap();
        // ...must not teach that ending to the kept prefix, where `index` came first.
        let prefix = &REAL[..REAL.find("\"Hel\"").unwrap()];
        let dup = format!(r#"{prefix}"b"}},"index":5}}]}}"#);
        assert_eq!(by_parse(dup.as_bytes()), Err(ErrorKind::Protocol));
        check(dup.as_bytes()).unwrap();
    }

    /// A JSON value of a few levels, as text with random spacing.
    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            any::<i32>().prop_map(|n| n.to_string()),
            Just("-0.5e-3".to_owned()),
            json_string(),
        ];
        leaf.prop_recursive(3, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((json_string(), inner), 0..3).prop_map(|v| {
                    let members: Vec<String> =
                        v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", members.join(" , "))
                }),
            ]
        })
    }

    /// A JSON string literal with the characters that matter: escapes, non-ASCII, quotes.
    fn json_string() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => proptest::char::range('a', 'e').prop_map(|c| c.to_string()),
                1 => Just("é".to_owned()),
                1 => Just("日本".to_owned()),
                1 => Just("\u{1F600}".to_owned()),
                1 => Just("\\n".to_owned()),
                1 => Just("\\\"".to_owned()),
                1 => Just("\\u00e9".to_owned()),
                1 => Just("\\ud83d\\ude00".to_owned()),
            ],
            0..6,
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat()))
    }

    /// A chunk built from the fields that matter, in random order, with random extras.
    fn chunk_json() -> impl Strategy<Value = String> {
        let opt_str = prop_oneof![Just("null".to_owned()), json_string()];
        let tool = (
            proptest::option::of(0u32..3),
            proptest::option::of(json_string()),
            proptest::option::of(opt_str.clone()),
        )
            .prop_map(|(index, id, args)| {
                let mut m = Vec::new();
                if let Some(i) = index {
                    m.push(format!("\"index\":{i}"));
                }
                if let Some(id) = id {
                    m.push(format!("\"id\":{id}"));
                }
                if let Some(a) = args {
                    m.push(format!("\"function\":{{\"name\":\"f\",\"arguments\":{a}}}"));
                }
                format!("{{{}}}", m.join(","))
            });
        let delta = (
            proptest::option::of(opt_str.clone()),
            proptest::option::of(opt_str.clone()),
            proptest::option::of(opt_str.clone()),
            proptest::option::of(proptest::collection::vec(tool, 0..3)),
            proptest::option::of(json_value()),
            proptest::option::of(opt_str.clone()),
            any::<bool>(),
        )
            .prop_map(|(content, rc, r, tools, extra, refusal, flip)| {
                let mut m = Vec::new();
                if let Some(x) = refusal {
                    m.push(format!("\"refusal\":{x}"));
                }
                if let Some(x) = extra {
                    m.push(format!("\"role\":{x}"));
                }
                if let Some(c) = content {
                    m.push(format!("\"content\":{c}"));
                }
                if let Some(c) = rc {
                    m.push(format!("\"reasoning_content\":{c}"));
                }
                if let Some(c) = r {
                    m.push(format!("\"reasoning\":{c}"));
                }
                if let Some(t) = tools {
                    m.push(format!("\"tool_calls\":[{}]", t.join(",")));
                }
                if flip {
                    m.reverse();
                }
                format!("{{{}}}", m.join(","))
            })
            .boxed();
        let choice = (
            proptest::option::of(prop_oneof![
                Just("0".to_owned()),
                Just("1".to_owned()),
                Just("null".to_owned())
            ]),
            proptest::option::of(prop_oneof![Just("null".to_owned()), delta.clone()]),
            proptest::option::of(delta),
            proptest::option::of(opt_str),
            proptest::option::of(json_value()),
        )
            .prop_map(|(index, delta, message, finish, logprobs)| {
                let mut m = Vec::new();
                if let Some(i) = index {
                    m.push(format!("\"index\":{i}"));
                }
                if let Some(d) = delta {
                    m.push(format!("\"delta\":{d}"));
                }
                if let Some(d) = message {
                    m.push(format!("\"message\":{d}"));
                }
                if let Some(l) = logprobs {
                    m.push(format!("\"logprobs\":{l}"));
                }
                if let Some(f) = finish {
                    m.push(format!("\"finish_reason\":{f}"));
                }
                format!("{{{}}}", m.join(","))
            });
        (
            proptest::collection::vec(choice, 0..3),
            proptest::option::of(json_value()),
            proptest::option::of(prop_oneof![
                Just("null".to_owned()),
                Just("\"chat.completion.chunk\"".to_owned())
            ]),
            any::<bool>(),
        )
            .prop_map(|(choices, extra, object, usage_null)| {
                let mut m = vec!["\"id\":\"chatcmpl-1\"".to_owned()];
                if let Some(o) = object {
                    m.push(format!("\"object\":{o}"));
                }
                if let Some(x) = extra {
                    m.push(format!("\"system_fingerprint\":{x}"));
                }
                m.push(format!("\"choices\":[{}]", choices.join(",")));
                if usage_null {
                    m.push("\"usage\":null".to_owned());
                }
                format!("{{{}}}", m.join(","))
            })
    }

    #[test]
    fn the_generator_exercises_the_fast_path() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = chunk_json();
        let (mut fast, mut total) = (0, 0);
        for _ in 0..500 {
            let chunk = strategy.new_tree(&mut runner).unwrap().current();
            total += 1;
            if by_fast(chunk.as_bytes()).is_some() {
                fast += 1;
            }
        }
        assert!(
            fast * 4 > total,
            "the fast path took only {fast} of {total}"
        );
    }

    proptest! {
        #[test]
        fn prop_fast_path_agrees_with_serde(chunk in chunk_json()) {
            check(chunk.as_bytes())?;
        }

        #[test]
        fn prop_mutated_chunks_agree(
            chunk in chunk_json(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let mut bytes = chunk.into_bytes();
            for (at, byte, op) in edits {
                let at = at % (bytes.len() + 1);
                match op {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => { bytes.remove(at); }
                    _ if at < bytes.len() => bytes[at] = byte,
                    _ => {}
                }
            }
            check(&bytes)?;
        }

        #[test]
        fn prop_streams_agree(chunks in proptest::collection::vec(chunk_json(), 1..6), cut in any::<usize>()) {
            // Chunks of one stream share their start: resumed parses must match too.
            let shared = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"#;
            for c in &chunks {
                check(c.as_bytes())?;
                let mut resumed = shared.as_bytes().to_vec();
                resumed.extend_from_slice(&c.as_bytes()[cut % c.len()..]);
                check(&resumed)?;
                check(format!("{shared}\"t\"}}}}]}}").as_bytes())?;
            }
        }
    }

    fn events(data: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let flow = parse::<(), _>(data.as_bytes(), &mut |e| {
            out.push(format!("{e:?}"));
            ControlFlow::Continue(())
        })?;
        assert_eq!(flow, ControlFlow::Continue(()));
        Ok(out)
    }

    #[test]
    fn content_is_borrowed_and_reported() {
        let data = r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}"#;
        let mut borrowed = false;
        let _ = parse::<(), _>(data.as_bytes(), &mut |e| {
            if let Event::Content { text, .. } = e {
                let range = data.as_bytes().as_ptr_range();
                borrowed = range.contains(&text.as_ptr());
                assert_eq!(text, "Hel");
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(borrowed, "unescaped content must not be copied");
    }

    #[test]
    fn escapes_and_nul_are_decoded() {
        let got = events(r#"{"choices":[{"delta":{"content":"a\u0000b\n\"\u00e9"}}]}"#).unwrap();
        assert_eq!(got, vec![r#"Content { choice: 0, text: "a\0b\n\"é" }"#]);
    }

    #[test]
    fn null_and_empty_content_are_skipped() {
        assert!(events(r#"{"choices":[{"delta":{"content":null}}]}"#)
            .unwrap()
            .is_empty());
        assert!(
            events(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#)
                .unwrap()
                .is_empty()
        );
        assert!(events(r#"{"choices":[]}"#).unwrap().is_empty());
        assert!(events(r#"{"choices":null,"usage":null}"#)
            .unwrap()
            .is_empty());
        assert!(events(r#"{"choices":[{"delta":null,"finish_reason":""}]}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reasoning_tool_calls_finish_and_usage() {
        let got =
            events(r#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#).unwrap();
        assert_eq!(got, vec![r#"Reasoning { choice: 0, text: "hmm" }"#]);
        let got = events(r#"{"choices":[{"index":1,"delta":{"reasoning":"so"}}]}"#).unwrap();
        assert_eq!(got, vec![r#"Reasoning { choice: 1, text: "so" }"#]);
        let got = events(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                r#"ToolCall { choice: 0, index: 0, id: Some("call_1"), kind: Some("function"), name: Some("get"), arguments: "{\"a\"" }"#
            ]
        );
        let got = events(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#).unwrap();
        assert_eq!(
            got,
            vec![
                r#"Finish { choice: 0, reason: "length" }"#.to_owned(),
                r#"Usage(Usage { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8, json: "{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}" })"#.to_owned()
            ]
        );
    }

    #[test]
    fn non_streaming_message() {
        let got = events(r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}]}"#).unwrap();
        assert_eq!(
            got,
            vec![
                r#"Content { choice: 0, text: "Hi there" }"#,
                r#"Finish { choice: 0, reason: "stop" }"#
            ]
        );
    }

    #[test]
    fn error_shapes() {
        let cases = [
            (
                r#"{"error":{"code":500,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}}"#,
                "server error: the request exceeds the available context size (type exceed_context_size_error, code 500)",
            ),
            (r#"{"error":"model not found"}"#, "server error: model not found"),
            (
                r#"{"object":"error","message":"max_tokens is too large","type":"BadRequestError","code":400}"#,
                "server error: max_tokens is too large",
            ),
            (r#"{"error":{"message":"rate limited"}}"#, "server error: rate limited"),
        ];
        for (data, expected) in cases {
            let err = events(data).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Api);
            assert_eq!(err.message(), expected);
        }
    }

    #[test]
    fn invalid_json_is_a_protocol_error() {
        let err = events("{\"choices\":[").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert!(err.message().contains("invalid JSON"));
    }

    #[test]
    fn break_stops_early() {
        let data =
            r#"{"choices":[{"delta":{"reasoning":"r","content":"c"},"finish_reason":"stop"}]}"#;
        let mut seen = 0;
        let flow = parse(data.as_bytes(), &mut |_| {
            seen += 1;
            ControlFlow::Break(7)
        })
        .unwrap();
        assert_eq!(flow, ControlFlow::Break(7));
        assert_eq!(seen, 1);
    }
}
