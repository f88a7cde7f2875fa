//! Replies real OpenAI-compatible servers and proxies send that once went wrong (issue 9),
//! through the C ABI against the scripted loopback server.

mod common;

use common::capi::*;
use common::*;
use serde_json::json;
use ylokh::ffi::*;

/// One streamed chunk around a `choices[0].delta` object.
fn delta_event(delta: &str, finish_reason: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
         \"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\
         \"finish_reason\":{finish_reason}}}]}}\n\n"
    )
}

#[test]
fn repeated_tool_call_ids_and_names_are_stored_once() {
    // llama-cpp-python (and LiteLLM passing it on) repeats id, type and name in every delta.
    let mut body = delta_event(r#"{"role":"assistant","content":null}"#, "null");
    let pieces = ["{\"", "location", "\":", " \"", "Paris", "\"}"];
    for piece in pieces {
        let delta = json!({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": piece}}]});
        body.push_str(&delta_event(&delta.to_string(), "null"));
    }
    body.push_str(&delta_event("{}", "\"tool_calls\""));
    body.push_str(DONE);
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(61)));
    let client = CClient::new(&server.base_url());
    let conversation = CConversation::new();
    conversation.add("user", "weather in Paris?");
    let (status, events, error) = conversation.chat(&client, None);
    assert_eq!(status, YLOKH_OK, "{error}");
    // Every piece reports what the server sent; the stored message has each value once.
    let tool_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == ylokh_event_kind::YLOKH_EVENT_TOOL_CALL)
        .collect();
    assert_eq!(tool_events.len(), pieces.len());
    assert!(tool_events
        .iter()
        .all(|e| e.tool_id.as_deref() == Some("call_abc")));
    assert_eq!(
        conversation.messages()[1],
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc",
            "type": "function", "function": {"name": "get_weather",
            "arguments": "{\"location\": \"Paris\"}"}}]})
    );
}

#[test]
fn refusals_are_events_and_stored_in_conversations() {
    // OpenAI's recorded refusal streams: a role chunk with "refusal": null, then pieces.
    let mut body = delta_event(
        r#"{"role":"assistant","content":null,"refusal":null}"#,
        "null",
    );
    for piece in ["I'm sorry", ", I can't", " help with that."] {
        body.push_str(&delta_event(&json!({"refusal": piece}).to_string(), "null"));
    }
    body.push_str(&delta_event("{}", "\"stop\""));
    body.push_str(DONE);
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(50)));
    let client = CClient::new(&server.base_url());
    let (status, events, error) = client.events(None);
    assert_eq!(status, YLOKH_OK, "{error}");
    let refusal: String = events
        .iter()
        .filter(|e| e.kind == ylokh_event_kind::YLOKH_EVENT_REFUSAL)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(refusal, "I'm sorry, I can't help with that.");
    let conversation = CConversation::new();
    conversation.add("user", "something bad");
    let (status, _, error) = conversation.chat(&client, None);
    assert_eq!(status, YLOKH_OK, "{error}");
    assert_eq!(
        conversation.messages()[1],
        json!({"role": "assistant", "content": "",
               "refusal": "I'm sorry, I can't help with that."})
    );
    // The non-streaming form: message.refusal.
    let reply = json!({"object": "chat.completion", "choices": [{"index": 0, "message":
        {"role": "assistant", "content": null, "refusal": "No."}, "finish_reason": "stop"}]});
    let server = Server::always(Script::json(200, &reply.to_string()));
    let client = CClient::new(&server.base_url());
    let (status, events, error) = client.events(Some(r#"{"stream":false}"#));
    assert_eq!(status, YLOKH_OK, "{error}");
    assert_eq!(events[0].kind, ylokh_event_kind::YLOKH_EVENT_REFUSAL);
    assert_eq!(events[0].text, "No.");
}
