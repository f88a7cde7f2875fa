//! The stream-decoding cases of the peers' test suites, as data: web-platform-tests
//! (`eventsource/format-*.htm`), eventsource-parser (`test/parse.test.ts`) and openai-python
//! (`tests/test_streaming.py`), and openai-python's recorded real-server streams.
//!
//! Each vector is written here from the peer case's input and expected output (no peer
//! code): the peers test an SSE decoder's events, libylokh delivers chat tokens, so each
//! case's framing (BOMs, line ends, comments, fields, data lines) is kept and its data is a
//! chat chunk whose content stands for the data the peer expects. Where libylokh
//! deliberately differs from a peer, the vector asserts libylokh's documented behaviour
//! and `why` says so. Every vector is served split at every byte offset, through the C ABI.

mod common;

use std::sync::Arc;

use common::capi::*;
use common::*;
use serde_json::{json, Value};
use ylokh::ffi::*;

/// A chunk JSON whose content is `text`.
fn c(text: &str) -> String {
    json!({"choices": [{"delta": {"content": text}}]}).to_string()
}

/// The usual end of a stream: a finish reason and `[DONE]`.
fn end() -> String {
    format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    )
}

struct Vector {
    peer: &'static str,
    case: &'static str,
    body: Vec<u8>,
    /// The text delivered (the status is `YLOKH_OK` unless `status` says otherwise).
    text: &'static str,
    status: i32,
    /// Why libylokh differs from the peer here, when it does.
    why: &'static str,
}

fn v(
    peer: &'static str,
    case: &'static str,
    body: impl Into<Vec<u8>>,
    text: &'static str,
) -> Vector {
    Vector {
        peer,
        case,
        body: body.into(),
        text,
        status: YLOKH_OK,
        why: "",
    }
}

fn vectors() -> Vec<Vector> {
    let long = "x".repeat(300);
    vec![
        // web-platform-tests eventsource/format-*
        v("wpt", "format-bom: only the first BOM is skipped",
          format!("\u{FEFF}data:{}\n\n\u{FEFF}data:{}\n\ndata:{}\n\n{}", c("1"), c("2"), c("3"), end()), "13"),
        v("wpt", "format-bom-2: a second BOM makes the field unknown",
          format!("\u{FEFF}\u{FEFF}data:{}\n\ndata:{}\n\ndata:{}\n\n{}", c("1"), c("2"), c("3"), end()), "23"),
        v("wpt", "format-comments: comments between data lines, every line end",
          format!("data:{{\"choices\":\r:\0\n:\r\ndata:[{{\"delta\":\n:{long}\rdata:{{\"content\":\"1234\"}}}}]}}\n:data:fail\r:{long}\ndata:\n\n{}", end()), "1234"),
        v("wpt", "format-data-before-final-empty-line: the unterminated event is dropped",
          format!("retry:1000\ndata:{}\n\nid:test\ndata:{}", json!({"choices": [{"delta": {"content": "1"}, "finish_reason": "stop"}]}), c("2")), "1"),
        v("wpt", "format-field-data: empty data dispatches nothing",
          format!("data:\n\ndata\ndata\n\ndata:{}\n\n{}", c("test"), end()), "test"),
        Vector {
            why: "EventSource hands a named event to its listeners; libylokh reads a named \
                  event's JSON object as a chunk (as openai-python does)",
            ..v("wpt", "format-field-event: named and unnamed",
                format!("event:test\ndata:{}\n\ndata:{}\n\n{}", c("x"), c("y"), end()), "xy")
        },
        v("wpt", "format-field-event-empty: an empty name is a message",
          format!("event: \ndata:{}\n\n{}", c("data"), end()), "data"),
        v("wpt", "format-field-id and format-field-id-null: ids change nothing",
          format!("id:1\ndata:{}\n\nid:\ndata:{}\n\nid:a\0b\ndata:{}\n\n{}", c("a"), c("b"), c("c"), end()), "abc"),
        v("wpt", "format-field-id-2: a non-ASCII id, and an id that changes",
          format!("id: \u{2026}\ndata: {}\n\nid: \u{2026}\u{2026}\ndata: {}\n\n{}", c("hello"), c(" \u{2026}"), end()),
          "hello \u{2026}"),
        v("wpt", "format-field-id-3: an id that persists, changes, and is reset",
          format!("id: 1\ndata: {}\n\ndata: {}\n\nid: 2\ndata: {}\n\nid\ndata: {}\n\nid:\ndata: {}\n\n{}",
                  c("a"), c("b"), c("c"), c("d"), c("e"), end()),
          "abcde"),
        v("wpt", "format-field-parsing: only exact `data` fields count",
          format!("data:{{\"choices\":[{{\"delta\":{{\"content\":\nData:\"wrong\",\ndata\0:\"wrong\",\ndata:\"ok\"\rda-ta:\"wrong\"\ndata_5\n data:\"wrong\"\ndata:}}}}]}}\n\n{}", end()), "ok"),
        v("wpt", "format-field-retry, -retry-bogus, -retry-empty: retry is ignored",
          format!("retry:1000\nretry:1000x\nretry\nretry:\ndata:{}\n\n{}", c("x"), end()), "x"),
        v("wpt", "format-field-unknown: unknown fields and bare lines are ignored",
          format!("data:{{\"choices\":[\n data\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:{{\"delta\":{{\"content\":\"test\"}}}}]}}\n\n{}", end()), "test"),
        v("wpt", "format-leading-space: one space after the colon is dropped, a tab is kept",
          format!("data:\t{}\r\ndata:  \n\ndata:{}\n\n{}", c("a"), c("b"), end()), "ab"),
        v("wpt", "format-newlines: CRLF, LF and CR mixed",
          format!("data:{}\r\n\r\ndata:{}\n\ndata:{}\r\r{}", c("1"), c("2"), c("3"), end()), "123"),
        v("wpt", "format-null-character: NUL in data",
          format!("data:{}\n\n{}", c("\0"), end()), "\0"),
        v("wpt", "format-utf-8", format!("data:{}\n\n{}", c("ok\u{2026}"), end()), "ok\u{2026}"),
        // eventsource-parser test/parse.test.ts
        v("eventsource-parser", "stream of `time` event names, unbalanced chunks",
          format!("event: time\ndata: {}\n\nevent: time\ndata: {}\n\n{}", c("12:00"), c(" 12:01"), end()), "12:00 12:01"),
        v("eventsource-parser", "stream of multi-line data events",
          format!("data: {{\"choices\":\ndata: [{{\"delta\":{{\"content\":\"one\"}}}}]}}\n\n{}", end()), "one"),
        v("eventsource-parser", "stream of multi-byte events with empty lines thrown in",
          format!("\n\ndata: {}\n\n\n\ndata: {}\n\n{}", c("我現在"), c(" 都看 😊"), end()), "我現在 都看 😊"),
        v("eventsource-parser", "stream with cr separating chunks of same event",
          format!("data: {{\"choices\":[{{\"delta\":\rdata: {{\"content\":\"cr\"}}}}]}}\r\r{}", end()), "cr"),
        v("eventsource-parser", "stream with varying odd uses of comments",
          format!(":\n: \n:::\ndata: {}\n:data: {}\n\n{}", c("a"), c("no"), end()), "a"),
        v("eventsource-parser", "stream with empty `event` and `retry` fields",
          format!("event:\nretry:\ndata: {}\n\n{}", c("e"), end()), "e"),
        v("eventsource-parser", "stream with unknown fields",
          format!("foo: bar\ndata: {}\n\n{}", c("u"), end()), "u"),
        v("eventsource-parser", "stream of identified messages + retry interval",
          format!("retry: 50\nid: 1337\nevent: tick\ndata: {}\n\nretry: 50\nid: 1338\nevent: tick\ndata: {}\n\n{}",
                  c("1337"), c(" 1338"), end()),
          "1337 1338"),
        v("eventsource-parser", "stream of heartbeat comments, unnamed events",
          format!(": \u{2665}\ndata: {}\n\n: \u{2665}\n: \u{2665}\ndata: {}\n\n: \u{2665}\n{}", c("A"), c("B"), end()),
          "AB"),
        Vector {
            why: "eventsource-parser emits `data:` alone and `data` lines as events with data \
                  \"\" and \"\\n\"; a chat stream's event without a JSON chunk carries nothing, \
                  so libylokh skips them",
            ..v("eventsource-parser", "stream with oddly shaped data field",
                format!("data:\n\ndata\ndata\n\ndata:{}\n\n{}", c("test"), end()), "test")
        },
        v("eventsource-parser", "stream with `id` field containing a NULL character",
          format!("id: 123\nid: bad\0id\ndata: {}\n\n{}", c("hello"), end()), "hello"),
        v("eventsource-parser", "stream with incorrect retry fields",
          format!("\nretry: 500\n\ndata: {}\n\nretry: 50x\n\ndata: {}\n\n{}", c("first"), c(" second"), end()),
          "first second"),
        v("eventsource-parser", "basic unnamed events stream (and a named last one)",
          format!("data: {}\n\ndata: {}\n\ndata: {}\n\ndata: {}\n\ndata: {}\n\nevent: done\ndata: {}\n\n{}",
                  c("0"), c("1"), c("2"), c("3"), c("4"), c("\u{2714}"), end()),
          "01234\u{2714}"),
        v("eventsource-parser", "stream containing byte-order mark (multiple places)",
          format!("\u{feff}data: {}\n\n\u{feff}data: {}\n\ndata: {}\n\n{}",
                  c("bomful 1"), c("bomful 2"), c(" bomless 3"), end()),
          "bomful 1 bomless 3"),
        v("eventsource-parser", "streams using carriage returns, line feeds, and both",
          ["\r", "\n", "\r\n"].map(|le| format!(
              "data: {{\"choices\":[{{\"delta\":{le}data: {{\"content\":\"dog\"}}}}]}}{le}{le}\
               data: {{\"choices\":[{{\"delta\":{le}data: {{\"content\":\" bark\"}}}}]}}{le}{le}"
          )).concat() + &end(),
          "dog barkdog barkdog bark"),
        Vector {
            status: YLOKH_E_PROTOCOL,
            why: "eventsource-parser dispatches nothing after the last complete event either; \
                  libylokh then fails the call, since the reply never ended ([DONE] or a \
                  finish reason), with the four tokens delivered",
            ..v("eventsource-parser", "stream with even more odd uses of comments, unterminated last event",
                format!("data:{}\r\r:\0\n:\r\ndata:{}\n\n:{long2k}\rdata:{}\n\n:data:fail\r:{long2k}\ndata:{}\n\ndata:{}",
                        c("1"), c("2"), c("3"), c("4"), c("5"), long2k = "x".repeat(2 * 1024 + 1)),
                "1234")
        },
        // openai-python tests/test_streaming.py
        v("openai-python", "test_multiple_data_lines_with_empty_line",
          format!("data: {{\ndata: \"choices\":\ndata: \ndata:\ndata: [{{\"delta\":{{\"content\":\"x\"}}}}]}}\n\n\n{}", end()), "x"),
        v("openai-python", "test_data_json_escaped_double_new_line",
          format!("data: {}\n\n{}", c("my long\n\ncontent"), end()), "my long\n\ncontent"),
        v("openai-python", "test_special_new_line_character (U+2028 in content)",
          format!("data: {}\n\ndata: {}\n\ndata: {}\n\n{}", c(" culpa"), c(" \u{2028}"), c("foo"), end()), " culpa \u{2028}foo"),
        v("openai-python", "test_multi_byte_character_multiple_chunks",
          format!("data: {}\n\n{}", c("известни"), end()), "известни"),
        v("openai-python", "test_event_missing_data and test_multiple_events: nothing to deliver",
          format!("event: ping\n\nevent: completion\n\ndata: {}\n\n{}", c("z"), end()), "z"),
        v("openai-python", "[DONE] under any event name ends the stream",
          format!("data: {}\n\nevent: done\ndata: [DONE]\n\n", c("d")), "d"),
        Vector {
            status: YLOKH_E_PROTOCOL,
            why: "openai-python stops on data that starts with [DONE]; libylokh needs the \
                  data to be [DONE] (white space aside) and reads anything else as a chunk",
            ..v("openai-python", "data that only starts with [DONE]",
                format!("data: {}\n\ndata: [DONE] trailing\n\n", c("t")), "t")
        },
    ]
}

#[test]
fn the_peers_cases_hold_at_every_split() {
    let vectors = Arc::new(vectors());
    let server = Server::start({
        let vectors = vectors.clone();
        move |req| {
            let index: usize = req.header("x-vector").unwrap().parse().unwrap();
            let cut: usize = req.header("x-cut").unwrap().parse().unwrap();
            let body = &vectors[index].body;
            Script::sse(body, Framing::Chunked(vec![cut])).with_keep_alive(true)
        }
    });
    let client = CClient::new(&server.base_url());
    assert_eq!(client.set_header("X-Vector", Some("0")), YLOKH_OK);
    let mut requests = 0;
    for (index, vector) in vectors.iter().enumerate() {
        assert_eq!(
            client.set_header("X-Vector", Some(&index.to_string())),
            YLOKH_OK
        );
        for cut in 0..vector.body.len() {
            assert_eq!(client.set_header("X-Cut", Some(&cut.to_string())), YLOKH_OK);
            let out = client.chat(None);
            requests += 1;
            let case = format!(
                "{} {} (cut at {cut}) {}",
                vector.peer, vector.case, vector.why
            );
            assert_eq!(out.status, vector.status, "{case}: {}", out.error);
            assert!(out.violations.is_empty(), "{case}: {:?}", out.violations);
            assert_eq!(out.text(), vector.text, "{case}");
        }
    }
    assert!(requests > 1000, "{requests} requests");
}

/// web-platform-tests `format-mime-*`: an EventSource accepts `text/event-stream` with any
/// parameters (a bogus or foreign charset, a trailing semicolon; the data is UTF-8 anyway)
/// and fails on any other type. libylokh agrees on the first and deliberately differs on
/// the second: what the body is decides, not its label, because proxies label streams
/// `application/json` or `text/plain` (see `src/reply.rs`); a body that is neither a
/// stream nor JSON fails whatever its label says (tests/real_servers.rs).
#[test]
fn the_wpt_mime_cases_go_by_the_body() {
    let body = format!("data: {}\n\n{}", c("ok"), end());
    for label in [
        "text/event-stream",
        "text/event-stream;charset=bogus",
        "text/event-stream; charset=windows-1252",
        "text/event-stream;",
        "TEXT/EVENT-STREAM",
        "text/x-bogus",
    ] {
        let server = Server::always(Script::response(
            200,
            &[("Content-Type", label)],
            body.as_bytes(),
            Framing::ChunkedEvery(5),
        ));
        let out = CClient::new(&server.base_url()).chat(None);
        assert_eq!(out.status, YLOKH_OK, "{label}: {}", out.error);
        assert_eq!(out.text(), "ok", "{label}");
    }
}

/// What a stream says by a plain reading: each `data: {...}` line parsed on its own.
fn plain_reading(stream: &[u8]) -> (String, String, Vec<Value>) {
    let (mut content, mut refusal, mut calls) = (String::new(), String::new(), Vec::new());
    for line in std::str::from_utf8(stream).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ").filter(|d| d.starts_with('{')) else {
            continue;
        };
        let chunk: Value = serde_json::from_str(data).unwrap();
        let Some(delta) = chunk["choices"].get(0).map(|c| &c["delta"]) else {
            continue;
        };
        content.push_str(delta["content"].as_str().unwrap_or(""));
        refusal.push_str(delta["refusal"].as_str().unwrap_or(""));
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            calls.push(call.clone());
        }
    }
    (content, refusal, calls)
}

#[test]
fn openai_pythons_recorded_streams_replay_exactly() {
    let cases: [(&[u8], &str); 3] = [
        (
            include_bytes!("fixtures/openai-python/length_limited.sse"),
            "length",
        ),
        (include_bytes!("fixtures/openai-python/refusal.sse"), "stop"),
        (
            include_bytes!("fixtures/openai-python/tool_call.sse"),
            "tool_calls",
        ),
    ];
    for (stream, finish) in cases {
        let (content, refusal, calls) = plain_reading(stream);
        for framing in [
            Framing::ChunkedEvery(7),
            Framing::ChunkedEvery(300),
            Framing::CloseDelimited,
        ] {
            let server = Server::always(Script::sse(stream, framing.clone()));
            let client = CClient::new(&server.base_url());
            let (status, events, error) = client.events(None);
            assert_eq!(status, YLOKH_OK, "{error}");
            let text = |kind| -> String {
                events
                    .iter()
                    .filter(|e| e.kind == kind)
                    .map(|e| e.text.as_str())
                    .collect()
            };
            use ylokh_event_kind::*;
            assert_eq!(text(YLOKH_EVENT_CONTENT), content, "{framing:?}");
            assert_eq!(text(YLOKH_EVENT_REFUSAL), refusal, "{framing:?}");
            assert_eq!(text(YLOKH_EVENT_FINISH), finish, "{framing:?}");
            let pieces = events
                .iter()
                .filter(|e| e.kind == YLOKH_EVENT_TOOL_CALL)
                .count();
            assert_eq!(pieces, calls.len(), "{framing:?}");
            assert_eq!(events.last().unwrap().kind, YLOKH_EVENT_USAGE);
        }
    }
    // What openai-python's own tests expect of these recordings.
    let (content, _, _) =
        plain_reading(include_bytes!("fixtures/openai-python/length_limited.sse"));
    assert_eq!(content, "{\"");
    let (_, refusal, _) = plain_reading(include_bytes!("fixtures/openai-python/refusal.sse"));
    assert_eq!(refusal, "I'm sorry, I can't assist with that request.");
    let conversation = CConversation::new();
    conversation.add("user", "weather in NYC?");
    let server = Server::always(Script::sse(
        include_bytes!("fixtures/openai-python/tool_call.sse"),
        Framing::ChunkedEvery(64),
    ));
    let (status, _, error) = conversation.chat(&CClient::new(&server.base_url()), None);
    assert_eq!(status, YLOKH_OK, "{error}");
    assert_eq!(
        conversation.messages()[1]["tool_calls"],
        json!([{"id": "call_4XzlGBLtUe9dy3GVNV4jhq7h", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"New York City\"}"}}])
    );
}
