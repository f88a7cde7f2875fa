//! Raw transcripts recorded from a live llama.cpp server (tests/fixtures/live, see its
//! README) replayed through the scripted server, so the decoder keeps working on what a
//! real server sends.

mod common;

use common::capi::*;
use common::*;
use ylokh::ffi::*;

const STREAM: &[u8] = include_bytes!("fixtures/live/stream_normal.sse");
const STREAM_USAGE: &[u8] = include_bytes!("fixtures/live/stream_usage.sse");
const NONSTREAM: &str = include_str!("fixtures/live/nonstream.json");
const ERROR_CONTEXT: &[u8] = include_bytes!("fixtures/live/error_context.txt");

fn recorded_text() -> String {
    let reply: serde_json::Value = serde_json::from_str(NONSTREAM).unwrap();
    reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn recorded_stream_equals_the_recorded_non_streaming_reply() {
    for framing in [
        Framing::ChunkedEvery(300),
        Framing::ChunkedEvery(7),
        Framing::CloseDelimited,
    ] {
        let server = Server::always(Script::sse(STREAM, framing.clone()));
        let out = CClient::new(&server.base_url()).chat(None);
        out.ok();
        assert_eq!(out.text(), recorded_text(), "{framing:?}");
        assert_eq!(
            out.text(),
            " red, blue, and yellow.\n\nThe primary colors are red, blue,"
        );
    }
    let server = Server::always(Script::json(200, NONSTREAM));
    let out = CClient::new(&server.base_url()).chat(Some(r#"{"stream":false}"#));
    assert_eq!(out.ok().tokens, vec![recorded_text().into_bytes()]);
}

#[test]
fn recorded_usage_and_finish_reason_reach_the_event_api() {
    let server = Server::always(Script::sse(STREAM_USAGE, Framing::ChunkedEvery(120)));
    let (status, events, error) = CClient::new(&server.base_url()).events(None);
    assert_eq!(status, YLOKH_OK, "{error}");
    let finish: Vec<_> = events
        .iter()
        .filter(|e| e.kind == ylokh_event_kind::YLOKH_EVENT_FINISH)
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0].text, "length");
    let usage = events.last().unwrap();
    assert_eq!(usage.kind, ylokh_event_kind::YLOKH_EVENT_USAGE);
    assert_eq!(usage.counts, [6, 16, 22]);
    assert!(usage.text.contains("cached_tokens"));
}

#[test]
fn recorded_context_error_carries_the_servers_message() {
    let server = Server::always(Script::raw(ERROR_CONTEXT.to_vec()));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS);
    assert_eq!(out.http_status, 400);
    assert!(
        out.error.contains("exceeds the available context size"),
        "{}",
        out.error
    );
}
