//! `ylokh_event`, the C view of one event of a reply, shared by the callback API (`chat`)
//! and the pull API (`stream`).

use std::ffi::c_char;

use crate::chunk::Event;

/// What a `ylokh_event` reports.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ylokh_event_kind {
    /// A piece of the answer: `text`.
    YLOKH_EVENT_CONTENT = 0,
    /// A piece of the model's reasoning (`reasoning_content` or `reasoning`): `text`.
    YLOKH_EVENT_REASONING = 1,
    /// A piece of a tool call: `tool_index`, `tool_id` and `tool_name` (NULL when the piece
    /// has none), and `text`, a fragment of the arguments JSON to append. Most servers send
    /// the id and name only in a call's first piece; some (llama-cpp-python, LiteLLM passing
    /// it on) repeat them in every piece: keep the first non-empty id and name, never
    /// concatenate them.
    YLOKH_EVENT_TOOL_CALL = 2,
    /// A choice finished: `text` is the reason ("stop", "length", "tool_calls", ...).
    YLOKH_EVENT_FINISH = 3,
    /// Token counts: `prompt_tokens`, `completion_tokens`, `total_tokens`, and `text`, the
    /// whole usage JSON object as sent (for details such as cached tokens).
    YLOKH_EVENT_USAGE = 4,
    /// A piece of the model's refusal to answer (`refusal`): `text`, to be appended like
    /// content. Since 0.1.0.
    YLOKH_EVENT_REFUSAL = 5,
}

/// One event of a reply. Every pointer is borrowed for the duration of the callback; every
/// string is UTF-8 with its length given and a NUL after it. Fields that do not apply to the
/// kind are zero or NULL. Events arrive in the order the server sent them.
#[repr(C)]
pub struct ylokh_event {
    /// The size of this struct as the library filled it: `sizeof(ylokh_event)` of the
    /// library's version. Later versions append fields; before reading one that is newer
    /// than the oldest library you support, check `YLOKH_HAS_FIELD(event, ylokh_event,
    /// field)`.
    pub struct_size: usize,
    pub kind: ylokh_event_kind,
    /// Index of the choice the event belongs to (0 unless the request asked for several).
    pub choice: u32,
    /// The text of the event (see `ylokh_event_kind`); never NULL, may be empty.
    pub text: *const c_char,
    pub text_len: usize,
    /// YLOKH_EVENT_TOOL_CALL: which call of the message this piece belongs to.
    pub tool_index: u32,
    /// YLOKH_EVENT_TOOL_CALL: the call's id, or NULL when this piece has none.
    pub tool_id: *const c_char,
    pub tool_id_len: usize,
    /// YLOKH_EVENT_TOOL_CALL: the function's name, or NULL when this piece has none.
    pub tool_name: *const c_char,
    pub tool_name_len: usize,
    /// YLOKH_EVENT_USAGE: the counts as reported; 0 when missing or not a whole number
    /// (`text` has the usage JSON as sent).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}
impl ylokh_event {
    /// A content event with no text: the starting point of every conversion.
    pub(super) const EMPTY: ylokh_event = ylokh_event {
        struct_size: std::mem::size_of::<ylokh_event>(),
        kind: ylokh_event_kind::YLOKH_EVENT_CONTENT,
        choice: 0,
        text: std::ptr::null(),
        text_len: 0,
        tool_index: 0,
        tool_id: std::ptr::null(),
        tool_id_len: 0,
        tool_name: std::ptr::null(),
        tool_name_len: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
    };

    /// The C view of `event`. Its strings (the text, and a tool call piece's id and name,
    /// "" when absent) go to `place`, which returns where each one is followed by a NUL:
    /// the callback API copies them into a buffer, the pull API already stores them so.
    pub(super) fn new(
        event: &Event<'_>,
        place: impl FnOnce([&str; 3]) -> [*const c_char; 3],
    ) -> ylokh_event {
        use ylokh_event_kind::*;
        let mut c = ylokh_event::EMPTY;
        let (kind, choice, text, id, name) = match *event {
            Event::Content { choice, text } => (YLOKH_EVENT_CONTENT, choice, text, None, None),
            Event::Reasoning { choice, text } => (YLOKH_EVENT_REASONING, choice, text, None, None),
            Event::Refusal { choice, text } => (YLOKH_EVENT_REFUSAL, choice, text, None, None),
            Event::Finish { choice, reason } => (YLOKH_EVENT_FINISH, choice, reason, None, None),
            Event::ToolCall {
                choice,
                index,
                id,
                name,
                arguments,
                ..
            } => {
                c.tool_index = index;
                (YLOKH_EVENT_TOOL_CALL, choice, arguments, id, name)
            }
            Event::Usage(usage) => {
                c.prompt_tokens = usage.prompt_tokens;
                c.completion_tokens = usage.completion_tokens;
                c.total_tokens = usage.total_tokens;
                (YLOKH_EVENT_USAGE, 0, usage.json, None, None)
            }
        };
        c.kind = kind;
        c.choice = choice;
        let [text_at, id_at, name_at] = place([text, id.unwrap_or(""), name.unwrap_or("")]);
        c.text = text_at;
        c.text_len = text.len();
        if let Some(id) = id {
            c.tool_id = id_at;
            c.tool_id_len = id.len();
        }
        if let Some(name) = name {
            c.tool_name = name_at;
            c.tool_name_len = name.len();
        }
        c
    }
}
