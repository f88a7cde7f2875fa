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

fn content_event(content_json: &str) -> String {
    delta_event(&format!("{{\"content\":{content_json}}}"), "null")
}

fn last_finish_reason() -> String {
    // SAFETY: a NUL-terminated string owned by the library, read before the next call.
    unsafe { std::ffi::CStr::from_ptr(ylokh_last_finish_reason()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_surrogate_pair_split_across_chunks_is_joined() {
    // Servers that cut text by UTF-16 units send the two halves in two chunks.
    let body = [
        content_event(r#""Hiya\ud83d""#),
        content_event(r#""\ude00 ok""#),
        delta_event("{}", "\"stop\""),
        DONE.to_owned(),
    ]
    .concat();
    let body = body.as_bytes();
    let server = Server::start({
        let body = body.to_vec();
        move |req| {
            let cut: usize = req.header("x-cut").unwrap().parse().unwrap();
            Script::sse(&body, Framing::Chunked(vec![cut])).with_keep_alive(true)
        }
    });
    let client = CClient::new(&server.base_url());
    for cut in (1..body.len()).step_by(7).chain([body.len() / 2]) {
        assert_eq!(client.set_header("X-Cut", Some(&cut.to_string())), YLOKH_OK);
        let out = client.chat(None);
        out.ok(); // every token valid UTF-8, NUL-terminated, non-empty
        assert_eq!(out.text(), "Hiya\u{1F600} ok", "cut at {cut}");
    }
    // A half that never finds its partner becomes U+FFFD, nothing else is lost: at the end
    // of the reply, before another field of the choice, or when the next piece of the
    // field does not start with the low half.
    for (pieces, want) in [
        (&[r#""a\ud83d""#][..], "a\u{FFFD}"),
        (&[r#""a\ud83d""#, r#""b""#][..], "a\u{FFFD}b"),
        (&[r#""\ude00a""#][..], "\u{FFFD}a"),
        (
            &[r#""a\ud83d\ud83d""#, r#""\ude00""#][..],
            "a\u{FFFD}\u{1F600}",
        ),
    ] {
        let mut body: String = pieces.iter().map(|p| content_event(p)).collect();
        body.push_str(DONE);
        let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
        let out = CClient::new(&server.base_url()).chat(None);
        out.ok();
        assert_eq!(out.text(), want, "{pieces:?}");
    }
    let body = [
        content_event(r#""x\ud83d""#),
        delta_event(r#"{"reasoning_content":"r"}"#, "null"),
        DONE.to_owned(),
    ]
    .concat();
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
    let (status, events, error) = CClient::new(&server.base_url()).events(None);
    assert_eq!(status, YLOKH_OK, "{error}");
    let got: Vec<_> = events.iter().map(|e| (e.kind, e.text.as_str())).collect();
    use ylokh_event_kind::*;
    assert_eq!(
        got,
        [
            (YLOKH_EVENT_CONTENT, "x"),
            (YLOKH_EVENT_CONTENT, "\u{FFFD}"),
            (YLOKH_EVENT_REASONING, "r")
        ]
    );
}

#[test]
fn done_under_an_event_name_ends_the_reply_and_named_events_carry_chunks() {
    // go-openai's fixtures: `event: done` then `data: [DONE]`. No finish_reason came, so
    // the reply is complete only if that [DONE] counts.
    let body = format!(
        "{}event: ping\ndata: 2026-12-02 05:00:00.000000\n\n\
         event: completion\n{}event: done\ndata: [DONE]\n\n",
        content_event("\"a\""),
        content_event("\"b\""),
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(9)));
    let out = CClient::new(&server.base_url()).chat(None);
    out.ok();
    assert_eq!(out.text(), "ab");
    // An error object under a name is the server's error, as openai-python reads it.
    let body = format!(
        "{}event: chunk\ndata: {{\"error\":{{\"message\":\"overloaded\"}}}}\n\n",
        content_event("\"a\"")
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_API);
    assert!(out.error.contains("overloaded"), "{}", out.error);
}

#[test]
fn an_unterminated_last_event_is_dropped_unless_it_is_an_error() {
    // WHATWG and the SSE peers drop an event not closed by a blank line.
    let complete = [content_event("\"a\""), delta_event("{}", "\"stop\"")].concat();
    for tail in [
        "data: {\"choices\":[{\"delta\":{\"content\":\"tail\"}}]}\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"tail\"}}]}",
    ] {
        let body = format!("{complete}{tail}");
        let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
        let out = CClient::new(&server.base_url()).chat(None);
        out.ok();
        assert_eq!(out.text(), "a", "{tail:?}");
    }
    // An error object still reaches the caller: servers end streams that way.
    let body = format!(
        "{}data: {{\"error\":{{\"message\":\"context overflow\"}}}}",
        content_event("\"a\"")
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_API, "{}", out.error);
    assert!(out.error.contains("context overflow"), "{}", out.error);
    assert_eq!(out.text(), "a");
    // And an unterminated [DONE] still ends the reply.
    let body = format!("{}data: [DONE]", content_event("\"a\""));
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
    CClient::new(&server.base_url()).chat(None).ok();
}

#[test]
fn a_malformed_usage_object_still_delivers_the_reply() {
    for count in [
        "null",
        "1.5",
        "-1",
        "1e999",
        "\"12\"",
        "18446744073709551616",
        "{}",
    ] {
        let usage =
            format!("{{\"prompt_tokens\":{count},\"completion_tokens\":5,\"total_tokens\":8}}");
        let body = [
            content_event("\"Hi\""),
            delta_event("{}", "\"stop\""),
            format!("data: {{\"choices\":[],\"usage\":{usage}}}\n\n"),
            DONE.to_owned(),
        ]
        .concat();
        let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
        let client = CClient::new(&server.base_url());
        let (status, events, error) = client.events(None);
        assert_eq!(status, YLOKH_OK, "{count}: {error}");
        let last = events.last().unwrap();
        assert_eq!(last.kind, ylokh_event_kind::YLOKH_EVENT_USAGE, "{count}");
        assert_eq!(last.counts, [0, 5, 8], "{count}: what parses is reported");
        assert_eq!(last.text, usage, "{count}: the raw JSON is kept");
        // The whole-reply call returns the text.
        let (status, text, _) = chat_text(&client);
        assert_eq!(status, YLOKH_OK, "{count}: {}", last_error());
        assert_eq!(text, "Hi");
    }
}

/// `ylokh_chat_text` on `client`: its status, text and the finish reason it leaves.
fn chat_text(client: &CClient) -> (i32, String, String) {
    let messages = cstring(USER_HI);
    let (mut text, mut len) = (std::ptr::null_mut(), 0);
    // SAFETY: live client, NUL-terminated strings, writable outputs.
    let status = unsafe {
        ylokh_chat_text(
            client.0,
            std::ptr::null(),
            messages.as_ptr(),
            std::ptr::null(),
            &mut text,
            &mut len,
        )
    };
    let text = if status == YLOKH_OK {
        take_string(text, len)
    } else {
        String::new()
    };
    (status, text, last_finish_reason())
}

#[test]
fn the_finish_reason_is_visible_to_one_shot_and_whole_reply_callers() {
    // llama-cpp-python ends overlapping requests with a role chunk and [DONE] alone.
    let cut_short = [
        delta_event(r#"{"role":"assistant"}"#, "null"),
        DONE.to_owned(),
    ]
    .concat();
    let length = [
        content_event("\"Hi\""),
        delta_event("{}", "\"length\""),
        DONE.to_owned(),
    ]
    .concat();
    let server = Server::start(move |req| {
        let body = if req.body_str().contains("short") {
            &cut_short
        } else {
            &length
        };
        Script::sse(body.as_bytes(), Framing::ContentLength)
    });
    let client = CClient::new(&server.base_url());
    assert_eq!(chat_text(&client), (YLOKH_OK, "Hi".into(), "length".into()));
    let out = client.chat_full(None, r#"[{"role":"user","content":"short"}]"#, None, None);
    out.ok();
    assert_eq!(
        (out.text(), last_finish_reason()),
        (String::new(), String::new())
    );
    let out = client.chat(None);
    out.ok();
    assert_eq!(last_finish_reason(), "length");
    // A failed call leaves no reason behind.
    client.set_base_url("http://127.0.0.1:1/v1");
    assert_ne!(client.chat(None).status, YLOKH_OK);
    assert_eq!(last_finish_reason(), "");
}

#[test]
fn a_json_error_labelled_as_a_stream_is_the_servers_error() {
    // go-openai's test case: HTTP 200, text/event-stream, a JSON error body.
    let server = Server::always(Script::response(
        200,
        &[("Content-Type", "text/event-stream")],
        br#"{"error":{"message":"bad key"}}"#,
        Framing::ContentLength,
    ));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_API, "{}", out.error);
    assert!(out.error.contains("bad key"), "{}", out.error);
}

#[test]
fn a_stream_labelled_as_json_is_read_as_a_stream() {
    let body = sse_stream(&["a", "b"]);
    for label in [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
    ] {
        let server = Server::always(Script::response(
            200,
            &[("Content-Type", label)],
            &body,
            Framing::ChunkedEvery(11),
        ));
        let out = CClient::new(&server.base_url()).chat(None);
        out.ok();
        assert_eq!(out.text(), "ab", "{label}");
    }
}

#[test]
fn a_reply_that_is_neither_a_stream_nor_json_says_what_arrived() {
    // A captive portal's login page, a proxy's error page.
    let page = "<!DOCTYPE html>\n<html><head><title>Sign in to Wi-Fi</title></head>";
    for (headers, named) in [
        (
            &[("Content-Type", "text/html; charset=utf-8")][..],
            "text/html; charset=utf-8",
        ),
        (&[][..], "without a Content-Type"),
    ] {
        let server = Server::always(Script::response(
            200,
            headers,
            page.as_bytes(),
            Framing::ContentLength,
        ));
        let out = CClient::new(&server.base_url()).chat(None);
        assert_eq!(out.status, YLOKH_E_PROTOCOL, "{}", out.error);
        assert!(
            out.error.contains(&format!("the server replied {named}"))
                && out
                    .error
                    .contains(r#""<!DOCTYPE html>\n<html><head><title>Sign in"#),
            "{}",
            out.error
        );
    }
}

/// `data` compressed as `coding` ("gzip", "deflate" zlib-wrapped, or "raw" deflate), flushed
/// after every `every` bytes so the pieces can be decoded as they arrive.
fn compressed(data: &[u8], coding: &str, every: usize) -> Vec<u8> {
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;
    fn run<W: Write>(mut w: W, data: &[u8], every: usize) -> W {
        for piece in data.chunks(every) {
            w.write_all(piece).unwrap();
            w.flush().unwrap();
        }
        w
    }
    let level = Compression::fast();
    match coding {
        "gzip" => run(GzEncoder::new(Vec::new(), level), data, every)
            .finish()
            .unwrap(),
        "deflate" => run(ZlibEncoder::new(Vec::new(), level), data, every)
            .finish()
            .unwrap(),
        _ => run(DeflateEncoder::new(Vec::new(), level), data, every)
            .finish()
            .unwrap(),
    }
}

#[test]
fn gzip_and_deflate_replies_are_decoded_and_other_encodings_named() {
    let stream = sse_stream(&["Hel", "lo", " wörld"]);
    for (coding, header) in [("gzip", "gzip"), ("deflate", "deflate"), ("raw", "deflate")] {
        let body = compressed(&stream, coding, 50);
        let server = Server::always(Script::response(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Content-Encoding", header),
            ],
            &body,
            Framing::ChunkedEvery(13),
        ));
        let out = CClient::new(&server.base_url()).chat(None);
        out.ok();
        assert_eq!(out.text(), "Hello wörld", "{coding}");
        let reply = compressed(completion_json("Whole").as_bytes(), coding, 1000);
        let server = Server::always(Script::response(
            200,
            &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", header),
            ],
            &reply,
            Framing::ContentLength,
        ));
        let out = CClient::new(&server.base_url()).chat(Some(r#"{"stream":false}"#));
        out.ok();
        assert_eq!(out.text(), "Whole", "{coding}");
    }
    // Corrupt compressed data is the reply's fault, not the connection's.
    let mut body = compressed(&stream, "gzip", 50);
    let middle = body.len() / 2;
    body[middle..middle + 8].copy_from_slice(b"garbage!");
    let server = Server::always(Script::response(
        200,
        &[
            ("Content-Type", "text/event-stream"),
            ("Content-Encoding", "gzip"),
        ],
        &body,
        Framing::ContentLength,
    ));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL, "{}", out.error);
    assert!(
        out.error.contains("gzip reply could not be decoded"),
        "{}",
        out.error
    );
    for coding in ["br", "zstd", "gzip, gzip"] {
        let server = Server::always(Script::response(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Content-Encoding", coding),
            ],
            b"\x00\x01\x02",
            Framing::ContentLength,
        ));
        let out = CClient::new(&server.base_url()).chat(None);
        assert_eq!(out.status, YLOKH_E_PROTOCOL, "{}", out.error);
        assert!(
            out.error.contains(&format!(
                "Content-Encoding: {coding}, which libylokh cannot decode"
            )),
            "{}",
            out.error
        );
    }
}

#[test]
fn compression_is_asked_for_only_for_whole_replies() {
    let server = Server::start(|req| {
        if req.json()["stream"] == json!(false) {
            Script::json(200, &completion_json("x"))
        } else {
            Script::sse(&sse_stream(&["x"]), Framing::ContentLength)
        }
    });
    let client = CClient::new(&server.base_url());
    client.chat(None).ok();
    client.chat(Some(r#"{"stream":false}"#)).ok();
    assert_eq!(client.set_header("Accept-Encoding", Some("br")), YLOKH_OK);
    client.chat(None).ok();
    let asked: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("accept-encoding").unwrap_or("").to_owned())
        .collect();
    assert_eq!(asked, ["identity", "gzip, deflate", "br"]);
}
