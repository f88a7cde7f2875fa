//! Realistic OpenAI-style chat-completion bodies, streamed and not.
//!
//! Built with `format!` rather than `json!` so the key order matches what
//! real servers send; every string value is escaped by serde_json.

pub const MODEL: &str = "test-model";
pub const COMPLETION_ID: &str = "chatcmpl-test123";
pub const CREATED: u64 = 1_700_000_000;

/// The stream terminator.
pub const DONE: &str = "data: [DONE]\n\n";

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

/// One `data: {...}\n\n` event around a `choices[0]` object body.
fn choice_event(delta: &str, finish_reason: &str) -> String {
    format!(
        "data: {{\"id\":{id},\"object\":\"chat.completion.chunk\",\"created\":{CREATED},\
         \"model\":{model},\"choices\":[{{\"index\":0,\"delta\":{delta},\
         \"logprobs\":null,\"finish_reason\":{finish_reason}}}]}}\n\n",
        id = q(COMPLETION_ID),
        model = q(MODEL),
    )
}

/// First event of a stream: the assistant role with empty content.
pub fn role_event() -> String {
    choice_event(r#"{"role":"assistant","content":""}"#, "null")
}

/// One content token.
pub fn chunk_event(content: &str) -> String {
    choice_event(&format!("{{\"content\":{}}}", q(content)), "null")
}

/// Empty delta with a finish reason ("stop", "length", ...).
pub fn finish_event(reason: &str) -> String {
    choice_event("{}", &q(reason))
}

/// The usage-only event sent with `stream_options.include_usage`.
pub fn usage_event(prompt_tokens: u64, completion_tokens: u64) -> String {
    format!(
        "data: {{\"id\":{id},\"object\":\"chat.completion.chunk\",\"created\":{CREATED},\
         \"model\":{model},\"choices\":[],\"usage\":{usage}}}\n\n",
        id = q(COMPLETION_ID),
        model = q(MODEL),
        usage = usage_json(prompt_tokens, completion_tokens),
    )
}

/// An in-band error event, as some servers send mid-stream.
pub fn error_event(message: &str) -> String {
    format!(
        "data: {{\"error\":{{\"message\":{},\"type\":\"server_error\",\"code\":null}}}}\n\n",
        q(message)
    )
}

/// Role event, one event per token, finish "stop", then `[DONE]`.
pub fn sse_stream(tokens: &[&str]) -> Vec<u8> {
    let mut s = role_event();
    for t in tokens {
        s.push_str(&chunk_event(t));
    }
    s.push_str(&finish_event("stop"));
    s.push_str(DONE);
    s.into_bytes()
}

fn usage_json(prompt_tokens: u64, completion_tokens: u64) -> String {
    format!(
        "{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":{completion_tokens},\
         \"total_tokens\":{}}}",
        prompt_tokens + completion_tokens
    )
}

/// A non-streaming `chat.completion` body.
pub fn completion_json(content: &str) -> String {
    // Rough token count; tests only need it to be plausible and stable.
    let completion_tokens = content.split_whitespace().count().max(1) as u64;
    format!(
        "{{\"id\":{id},\"object\":\"chat.completion\",\"created\":{CREATED},\"model\":{model},\
         \"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{content}}},\
         \"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":{usage}}}",
        id = q(COMPLETION_ID),
        model = q(MODEL),
        content = q(content),
        usage = usage_json(9, completion_tokens),
    )
}

/// An OpenAI-style error body, e.g. for `Script::json(401, &error_json(..))`.
pub fn error_json(message: &str, kind: &str) -> String {
    format!(
        "{{\"error\":{{\"message\":{},\"type\":{},\"param\":null,\"code\":null}}}}",
        q(message),
        q(kind)
    )
}
