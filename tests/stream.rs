//! Streaming behaviour through the C ABI against a scripted loopback server: framings,
//! splits at every offset, SSE quirks, termination, in-stream errors, limits.

mod common;

use std::time::{Duration, Instant};

use common::capi::*;
use common::*;
use ylokh::ffi::*;

const TOKENS: &[&str] = &["Hel", "lo", ", ", "wörld", " 日本", "\u{1F600}", "!"];

fn expected() -> String {
    TOKENS.concat()
}

#[test]
fn every_framing_delivers_the_exact_tokens_in_order() {
    let body = sse_stream(TOKENS);
    for framing in [
        Framing::ContentLength,
        Framing::Chunked(vec![]),
        Framing::ChunkedEvery(37),
        Framing::ChunkedEvery(1000),
        Framing::CloseDelimited,
        Framing::Http10,
    ] {
        let server = Server::always(Script::sse(&body, framing.clone()));
        let client = CClient::new(&server.base_url());
        let out = client.chat(None);
        out.ok();
        let tokens: Vec<&[u8]> = out.tokens.iter().map(Vec::as_slice).collect();
        let want: Vec<&[u8]> = TOKENS.iter().map(|t| t.as_bytes()).collect();
        assert_eq!(tokens, want, "{framing:?}");
    }
}

#[test]
fn bytes_split_at_every_offset_give_the_same_tokens() {
    // Short stream so that one request per offset stays fast; CRLF line ends and a
    // multi-byte character make the interesting cut points.
    let body = format!(
        "{}{}{}{}",
        chunk_event("é日"),
        chunk_event("\u{1F600}x"),
        finish_event("stop"),
        DONE
    )
    .replace("\n", "\r\n");
    let body = body.as_bytes().to_vec();
    let server = Server::start({
        let body = body.clone();
        move |req| {
            let cut: usize = req.header("x-cut").unwrap().parse().unwrap();
            Script::sse(&body, Framing::Chunked(vec![cut])).with_keep_alive(true)
        }
    });
    let client = CClient::new(&server.base_url());
    for cut in 1..body.len() {
        assert_eq!(client.set_header("X-Cut", Some(&cut.to_string())), YLOKH_OK);
        let out = client.chat(None);
        out.ok();
        assert_eq!(out.text(), "é日\u{1F600}x", "cut at {cut}");
    }
    // Reuse depends on the zero-length chunk arriving within the 10 ms drain after
    // `[DONE]`; on a loaded machine a few cuts miss it and open a new connection. Without
    // reuse every cut would need one, so "most cuts reuse" still fails if reuse breaks.
    let cuts = body.len() - 1;
    assert!(
        server.connections() <= cuts / 4,
        "keep-alive connection reused: {} connections for {cuts} requests",
        server.connections()
    );
}

#[test]
fn line_endings_lf_cr_crlf_all_work() {
    for ending in ["\n", "\r", "\r\n"] {
        let body = String::from_utf8(sse_stream(TOKENS))
            .unwrap()
            .replace('\n', ending);
        let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(13)));
        let out = CClient::new(&server.base_url()).chat(None);
        out.ok();
        assert_eq!(out.text(), expected(), "{ending:?}");
    }
}

#[test]
fn sse_quirks_comments_bom_fields_and_multiline_data() {
    let body = format!(
        "\u{FEFF}: keep-alive\n\n: ping\nid: 1\nretry: 100\n\nevent: message\ndata:{}\n\n\
         : OPENROUTER PROCESSING\n\ndata: {{\"choices\":\ndata: [{{\"delta\":{{\"content\":\"B\"}}}}]}}\n\n\
         id: 7\n\n{}{}",
        "{\"choices\":[{\"delta\":{\"content\":\"A\"}}]}",
        finish_event("stop"),
        DONE
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(5)));
    let out = CClient::new(&server.base_url()).chat(None);
    out.ok();
    assert_eq!(out.text(), "AB");
}

#[test]
fn unknown_named_events_and_empty_data_are_ignored() {
    let body = format!(
        "event: ping\ndata: {{\"type\":\"ping\"}}\n\ndata:\n\n{}{}{}",
        chunk_event("x"),
        finish_event("stop"),
        DONE
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
    let out = CClient::new(&server.base_url()).chat(None);
    out.ok();
    assert_eq!(out.text(), "x");
}

#[test]
fn done_ends_the_call_without_waiting_for_the_server() {
    // The server sends [DONE] and then keeps the body open for 30 s.
    let mut body = sse_stream(&["a", "b"]);
    body.truncate(body.len()); // whole stream, but no terminating chunk follows
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let server = Server::always(
        Script::raw(head.to_vec())
            .then(Step::Write(encode_chunk(&body)))
            .then(Step::Stall),
    );
    let client = CClient::new(&server.base_url());
    let started = Instant::now();
    let out = client.chat(None);
    out.ok();
    assert_eq!(out.text(), "ab");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call waited for the server after [DONE]: {:?}",
        started.elapsed()
    );
}

#[test]
fn connection_is_reused_after_a_complete_stream() {
    let server = Server::always(
        Script::sse(&sse_stream(TOKENS), Framing::ChunkedEvery(64)).with_keep_alive(true),
    );
    let client = CClient::new(&server.base_url());
    for _ in 0..5 {
        assert_eq!(client.chat(None).ok().text(), expected());
    }
    assert_eq!(server.connections(), 1);
}

#[test]
fn end_without_done_is_fine_after_a_finish_reason() {
    let body = format!("{}{}", chunk_event("ok"), finish_event("length"));
    let server = Server::always(Script::sse(body.as_bytes(), Framing::CloseDelimited));
    let out = CClient::new(&server.base_url()).chat(None);
    out.ok();
    assert_eq!(out.text(), "ok");
}

#[test]
fn end_without_done_or_finish_is_an_error_after_delivering_what_came() {
    let body = format!("{}{}", chunk_event("par"), chunk_event("tial"));
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(50)));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL);
    assert_eq!(out.text(), "partial");
    assert!(out.error.contains("ended before [DONE]"), "{}", out.error);
}

#[test]
fn errors_inside_a_200_stream_in_every_shape() {
    let cases: Vec<(String, &str)> = vec![
        // llama.cpp, LiteLLM: error object, then the stream ends without [DONE].
        (
            format!("{}{}", chunk_event("a"), error_event("context overflow")),
            "context overflow",
        ),
        // OpenAI's newer format.
        (
            format!(
                "{}event: error\ndata: {{\"error\":{{\"message\":\"overloaded\"}}}}\n\n",
                chunk_event("a")
            ),
            "overloaded",
        ),
        // vLLM: an error object, then [DONE].
        (
            format!(
                "{}data: {{\"object\":\"error\",\"message\":\"bad sampling\",\"type\":\"BadRequestError\",\"code\":400}}\n\n{DONE}",
                chunk_event("a")
            ),
            "bad sampling",
        ),
        // Ollama after streaming began.
        (
            format!("{}data: {{\"error\":\"model crashed\"}}\n\n", chunk_event("a")),
            "model crashed",
        ),
    ];
    for (body, message) in cases {
        let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(30)));
        let out = CClient::new(&server.base_url()).chat(None);
        assert_eq!(out.status, YLOKH_E_API, "{body}");
        assert!(out.error.contains(message), "{}: {}", message, out.error);
        assert_eq!(out.text(), "a", "tokens before the error are delivered");
        assert_eq!(out.http_status, 200);
    }
}

#[test]
fn json_error_body_with_200_is_an_api_error() {
    let server = Server::always(Script::json(
        200,
        &error_json("quota exceeded", "insufficient_quota"),
    ));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_API);
    assert!(out.error.contains("quota exceeded"), "{}", out.error);
    assert!(out.tokens.is_empty());
}

#[test]
fn non_2xx_returns_http_status_with_the_servers_message() {
    let server = Server::always(Script::json(
        404,
        &error_json("model 'x' not found", "not_found"),
    ));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS);
    assert_eq!(out.http_status, 404);
    assert!(out.error.contains("model 'x' not found"), "{}", out.error);
    assert!(out.error.contains("404"), "{}", out.error);
    assert_eq!(
        server.requests().len(),
        1,
        "4xx other than 408/429 is not retried"
    );

    let plain = Server::always(Script::response(
        401,
        &[("Content-Type", "text/plain")],
        b"invalid api key",
        Framing::ContentLength,
    ));
    let out = CClient::new(&plain.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS);
    assert!(out.error.contains("invalid api key"), "{}", out.error);
}

#[test]
fn non_streaming_reply_comes_in_one_call() {
    let server = Server::always(Script::json(200, &completion_json("The whole reply.")));
    let out = CClient::new(&server.base_url()).chat(Some(r#"{"stream":false}"#));
    out.ok();
    assert_eq!(out.tokens, vec![b"The whole reply.".to_vec()]);
    assert_eq!(server.requests()[0].json()["stream"], false);

    let null_content = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"stop"}]}"#;
    let server = Server::always(Script::json(200, null_content));
    let out = CClient::new(&server.base_url()).chat(Some(r#"{"stream":false}"#));
    out.ok();
    assert!(out.tokens.is_empty());
}

#[test]
fn content_with_nul_is_delivered_with_its_length() {
    let server = Server::always(Script::sse(
        &sse_stream(&["a\u{0}b", "c"]),
        Framing::ContentLength,
    ));
    let out = CClient::new(&server.base_url()).chat(None);
    out.ok();
    assert_eq!(out.tokens, vec![b"a\0b".to_vec(), b"c".to_vec()]);
}

#[test]
fn invalid_utf8_in_content_is_rejected_never_delivered() {
    let mut body = chunk_event("ok").into_bytes();
    let mut bad = chunk_event("XX").into_bytes();
    let at = bad.windows(2).position(|w| w == b"XX").unwrap();
    bad[at] = 0xff;
    bad[at + 1] = 0xfe;
    body.extend_from_slice(&bad);
    body.extend_from_slice(DONE.as_bytes());
    let server = Server::always(Script::sse(&body, Framing::ContentLength));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL);
    assert_eq!(out.text(), "ok");
    assert!(out.violations.is_empty());
}

#[test]
fn a_line_over_the_limit_is_a_protocol_error() {
    let long = "x".repeat(8000);
    let body = format!("{}{}", chunk_event(&long), DONE);
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(1000)));
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_event_bytes(client.0, 4096) },
        YLOKH_OK
    );
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL);
    assert!(out.error.contains("4096"), "{}", out.error);

    // The same limit applies to a whole non-streaming reply.
    let server = Server::always(Script::json(200, &completion_json(&long)));
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_event_bytes(client.0, 4096) },
        YLOKH_OK
    );
    assert_eq!(
        client.chat(Some(r#"{"stream":false}"#)).status,
        YLOKH_E_PROTOCOL
    );
}

#[test]
fn abort_from_the_callback_stops_at_once_and_the_client_stays_usable() {
    let tokens: Vec<String> = (0..50).map(|i| format!("t{i} ")).collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let server = Server::always(
        Script::sse(&sse_stream(&refs), Framing::ChunkedEvery(200)).with_keep_alive(true),
    );
    let client = CClient::new(&server.base_url());
    let out = client.chat_full(None, USER_HI, None, Some(3));
    assert_eq!(out.status, YLOKH_E_ABORTED);
    assert_eq!(out.tokens.len(), 3, "no token after the abort");
    assert!(out.error.contains("callback"), "{}", out.error);
    let out = client.chat(None);
    out.ok();
    assert_eq!(out.tokens.len(), 50);
    assert_eq!(
        server.connections(),
        2,
        "the aborted connection was not reused"
    );
}

#[test]
fn reasoning_tool_calls_finish_and_usage_reach_the_event_api() {
    let body = format!(
        "{}{}{}{}{}{}{}",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"think\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"ing\"}}]}\n\n",
        chunk_event("Hi"),
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
        usage_event(12, 5),
        DONE
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(40)));
    let (status, events, error) = CClient::new(&server.base_url()).events(None);
    assert_eq!(status, YLOKH_OK, "{error}");
    use ylokh_event_kind::*;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            YLOKH_EVENT_REASONING,
            YLOKH_EVENT_REASONING,
            YLOKH_EVENT_CONTENT,
            YLOKH_EVENT_TOOL_CALL,
            YLOKH_EVENT_TOOL_CALL,
            YLOKH_EVENT_FINISH,
            YLOKH_EVENT_USAGE
        ]
    );
    assert_eq!(events[0].text, "think");
    assert_eq!(events[1].text, "ing");
    assert_eq!(events[2].text, "Hi");
    assert_eq!(events[3].tool_id.as_deref(), Some("call_1"));
    assert_eq!(events[3].tool_name.as_deref(), Some("get"));
    assert_eq!(events[3].text, "{\"a\":");
    assert_eq!(events[4].tool_id, None);
    assert_eq!(events[4].text, "1}");
    assert_eq!(events[5].text, "tool_calls");
    assert_eq!(events[6].counts, [12, 5, 17]);
    assert!(events[6].text.contains("\"total_tokens\":17"));
}

#[test]
fn only_choice_zero_reaches_the_token_callback() {
    let body = format!(
        "{}{}{}",
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"mine\"}}]}\n\n",
        DONE
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
    let client = CClient::new(&server.base_url());
    assert_eq!(client.chat(Some(r#"{"n":2}"#)).ok().text(), "mine");
    let (_, events, _) = client.events(Some(r#"{"n":2}"#));
    assert_eq!(events[0].choice, 1);
    assert_eq!(events[0].text, "other");
}

#[test]
fn invalid_json_chunk_is_a_protocol_error_naming_the_data() {
    let body = format!("{}data: {{not json}}\n\n{}", chunk_event("a"), DONE);
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL);
    assert!(out.error.contains("{not json}"), "{}", out.error);
}
