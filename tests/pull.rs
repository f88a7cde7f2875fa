//! The pull API from Rust (`ylokh::Stream`) against the scripted loopback server: exact
//! events under every split, the iterator, errors, cancel, close at any point, back-pressure.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ylokh::{CancelToken, ChatRequest, Client, ErrorKind, OwnedEvent, Pulled, Stream};

const TOKENS: &[&str] = &["Hel", "lo", ", ", "wörld", " 日本", "\u{1F600}", "!"];

fn new_client(url: &str) -> Client {
    let client = Client::with_settings(ylokh::Settings::default());
    client.set_base_url(url).unwrap();
    client.set_retry_delay(Duration::from_millis(10));
    client
}

fn request() -> ChatRequest {
    ChatRequest::from_json(None, r#"[{"role":"user","content":"hi"}]"#, None).unwrap()
}

fn text_of(events: &[OwnedEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            OwnedEvent::Content { choice: 0, text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn iterator_yields_every_event_in_order() {
    let server = Server::always(Script::sse(&sse_stream(TOKENS), Framing::ChunkedEvery(37)));
    let client = new_client(&server.base_url());
    let events: Vec<OwnedEvent> = client
        .stream(request())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let tokens: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            OwnedEvent::Content { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(tokens, TOKENS);
    assert!(matches!(events.last(), Some(OwnedEvent::Finish { reason, .. }) if reason == "stop"));
}

#[test]
fn bytes_split_at_every_offset_give_the_same_events_as_the_callback_api() {
    let body = format!(
        "{}{}{}{}{}",
        chunk_event("é日"),
        chunk_event("\u{1F600}x"),
        finish_event("stop"),
        usage_event(3, 4),
        DONE
    )
    .replace('\n', "\r\n")
    .into_bytes();
    let server = Server::start({
        let body = body.clone();
        move |req| {
            let cut: usize = req.header("x-cut").unwrap().parse().unwrap();
            Script::sse(&body, Framing::Chunked(vec![cut])).with_keep_alive(true)
        }
    });
    let mut want = Vec::new();
    let reference = new_client(&server.base_url());
    reference.set_header("x-cut", Some("1")).unwrap();
    reference
        .chat(&request(), |e| {
            want.push(OwnedEvent::from(e));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(want.len(), 4);
    for cut in 1..body.len() {
        let client = new_client(&server.base_url());
        client.set_header("x-cut", Some(&cut.to_string())).unwrap();
        let got: Vec<OwnedEvent> = client
            .stream(request())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(got, want, "cut at {cut}");
    }
}

#[test]
fn pull_without_waiting_returns_pending_then_the_events_then_end_for_ever() {
    // The reply comes after a pause, so the first pulls find nothing.
    let mut script = Script::sse(&sse_stream(&["a", "b"]), Framing::ChunkedEvery(64));
    script
        .steps
        .insert(0, Step::Sleep(Duration::from_millis(200)));
    let server = Server::always(script);
    let client = new_client(&server.base_url());
    let mut stream = client.stream(request()).unwrap();
    assert_eq!(stream.pull(Duration::ZERO).unwrap(), Pulled::Pending);
    let mut text = String::new();
    let started = Instant::now();
    loop {
        match stream.pull(Duration::from_millis(50)).unwrap() {
            Pulled::Event(ylokh::Event::Content { text: t, .. }) => text.push_str(t),
            Pulled::Event(_) | Pulled::Pending => {}
            Pulled::End => break,
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(text, "ab");
    for _ in 0..3 {
        assert_eq!(stream.pull(Duration::ZERO).unwrap(), Pulled::End);
    }
    assert!(stream.is_finished());
}

#[test]
fn an_error_after_some_events_is_reported_after_them_and_stays() {
    let body = format!(
        "{}{}",
        chunk_event("partial"),
        error_event("model overloaded")
    );
    let server = Server::always(Script::sse(body.as_bytes(), Framing::CloseDelimited));
    let client = new_client(&server.base_url());
    let mut stream = client.stream(request()).unwrap();
    let first = stream.next().unwrap().unwrap();
    assert_eq!(text_of(&[first]), "partial");
    let e = stream.next().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Api);
    assert!(e.message().contains("model overloaded"), "{e}");
    assert!(stream.next().is_none());
    let again = stream.pull(Duration::ZERO).unwrap_err();
    assert_eq!(again, e);
}

#[test]
fn http_errors_and_retries_behave_as_in_the_callback_api() {
    let server = Server::sequence(vec![
        Script::json(503, &error_json("busy", "server_error")),
        Script::sse(&sse_stream(&["ok"]), Framing::ContentLength),
    ]);
    let client = new_client(&server.base_url());
    let events: Vec<OwnedEvent> = client
        .stream(request())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(text_of(&events), "ok");
    assert_eq!(server.requests().len(), 2);

    let server = Server::always(Script::json(404, &error_json("no such model", "x")));
    let client = new_client(&server.base_url());
    let e = client
        .stream(request())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HttpStatus);
    assert_eq!(e.http_status(), Some(404));
    assert!(e.message().contains("no such model"));
}

#[test]
fn cancel_token_stops_a_stream_waiting_on_a_silent_server_within_100_ms() {
    let server = Server::always(
        Script::sse(chunk_event("first").as_bytes(), Framing::CloseDelimited).then(Step::Stall),
    );
    let client = new_client(&server.base_url());
    let cancel = CancelToken::new();
    let mut stream = Stream::open(&client, request(), Some(&cancel)).unwrap();
    assert!(matches!(
        stream.pull(Duration::from_secs(10)).unwrap(),
        Pulled::Event(_)
    ));
    let trigger = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let at = Instant::now();
            cancel.cancel();
            at
        })
    };
    let e = stream.pull(Duration::from_secs(10)).unwrap_err();
    let took = trigger.join().unwrap().elapsed();
    assert_eq!(e.kind(), ErrorKind::Aborted);
    assert!(took < Duration::from_millis(100), "took {took:?}");
}

#[test]
fn close_at_any_point_returns_promptly() {
    let tokens: Vec<String> = (0..2000).map(|i| format!("t{i} ")).collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let body = sse_stream(&refs);
    let stall = Server::always(Script::stall());
    let server = Server::always(Script::sse(&body, Framing::ChunkedEvery(100)));
    for pulls in [0usize, 1, 5, 300, 1999, 5000] {
        for url in [stall.base_url(), server.base_url()] {
            let client = new_client(&url);
            let mut stream = client.stream(request()).unwrap();
            for _ in 0..pulls {
                if !matches!(stream.pull(Duration::from_millis(2)), Ok(Pulled::Event(_))) {
                    break;
                }
            }
            let at = Instant::now();
            drop(stream);
            assert!(
                at.elapsed() < Duration::from_millis(100),
                "close after {pulls} pulls took {:?}",
                at.elapsed()
            );
        }
    }
}

#[test]
fn a_stalled_consumer_stops_the_worker_reading() {
    // 20,000 events of ~100 bytes (2 MB): far more than the queue's bound.
    let tokens: Vec<String> = (0..20_000)
        .map(|i| format!("token number {i:>6} "))
        .collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let body = sse_stream(&refs);
    let server = Server::always(Script::sse(&body, Framing::ContentLength));
    let client = new_client(&server.base_url());
    let mut stream = client.stream(request()).unwrap();
    assert!(matches!(
        stream.pull(Duration::from_secs(10)).unwrap(),
        Pulled::Event(_)
    ));
    std::thread::sleep(Duration::from_millis(500));
    // The rest is exact despite the pause.
    let mut text = String::new();
    for e in stream.by_ref() {
        if let OwnedEvent::Content { text: t, .. } = e.unwrap() {
            text.push_str(&t);
        }
    }
    assert_eq!(text, tokens[1..].concat());
}

#[test]
fn large_http_chunks_and_large_events_pass_through_the_small_connection_buffers() {
    // The connection's input buffer is 16 KiB and a read takes at most 16 KiB: HTTP
    // chunks of 64 KiB, and events of 40 KiB, must still arrive whole, by pull and by
    // callback alike.
    let big = "x".repeat(40 * 1024);
    let tokens: Vec<String> = (0..200)
        .map(|i| {
            if i % 10 == 0 {
                format!("{i}{big}")
            } else {
                format!("t{i} ")
            }
        })
        .collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let body = sse_stream(&refs);
    for framing in [Framing::ChunkedEvery(64 * 1024), Framing::ContentLength] {
        let server = Server::always(Script::sse(&body, framing.clone()));
        let client = new_client(&server.base_url());
        let events: Vec<OwnedEvent> = client
            .stream(request())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{framing:?}: {e}"));
        assert_eq!(text_of(&events), tokens.concat(), "{framing:?}");
        let text = client.chat_text(&request()).unwrap();
        assert_eq!(text, tokens.concat(), "{framing:?}");
    }
}

#[test]
fn a_response_head_up_to_16_kib_is_accepted_and_a_larger_one_is_a_protocol_error() {
    // The connection's input buffer (16 KiB) bounds the response head: a 12 KiB head (big
    // cookies and policies) is fine; a 20 KiB one is refused by name, not as an I/O error.
    let script = |header_bytes: usize| {
        let value = "v".repeat(header_bytes);
        Script::response(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("X-Large", value.as_str()),
            ],
            &sse_stream(&["ok"]),
            Framing::ContentLength,
        )
    };
    let server = Server::always(script(12 * 1024));
    let client = new_client(&server.base_url());
    assert_eq!(client.chat_text(&request()).unwrap(), "ok");
    let events: Vec<OwnedEvent> = client
        .stream(request())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(text_of(&events), "ok");

    let server = Server::always(script(20 * 1024));
    let client = new_client(&server.base_url());
    let e = client.chat_text(&request()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}

#[test]
fn a_connection_whose_input_buffer_grew_still_refuses_a_head_over_16_kib() {
    // A fast reply makes the connection's input buffer grow (up to 128 KiB); the same
    // connection, reused, must still refuse a 20 KiB head: the limit is the setting, not
    // the buffer's size at the time.
    let tokens: Vec<String> = (0..20_000).map(|i| format!("t{i} ")).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let big_head = "v".repeat(20 * 1024);
    let server = Server::sequence(vec![
        Script::sse(&sse_stream(&tokens), Framing::ContentLength),
        Script::response(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("X-Large", big_head.as_str()),
            ],
            &sse_stream(&["ok"]),
            Framing::ContentLength,
        ),
    ]);
    let client = new_client(&server.base_url());
    assert_eq!(client.chat_text(&request()).unwrap(), tokens.concat());
    let e = client.chat_text(&request()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert_eq!(
        server.connections(),
        1,
        "the second request reused the connection"
    );
}

#[test]
fn the_deadline_bounds_a_stream_and_no_retry_follows_a_delivered_event() {
    // A token every 100 ms, for ever: the 400 ms deadline ends the reply after the tokens
    // that came before it.
    let mut steps = vec![Step::Write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            .as_bytes()
            .to_vec(),
    )];
    for i in 0..100 {
        steps.push(Step::Write(chunk_event(&format!("t{i} ")).into_bytes()));
        steps.push(Step::Sleep(Duration::from_millis(100)));
    }
    let server = Server::always(Script::new(steps));
    let client = new_client(&server.base_url());
    client.set_deadline(Some(Duration::from_millis(400)));
    let started = Instant::now();
    let mut stream = client.stream(request()).unwrap();
    let mut tokens = 0;
    let error = loop {
        match stream.next() {
            Some(Ok(_)) => tokens += 1,
            Some(Err(e)) => break e,
            None => panic!("the reply ended normally"),
        }
    };
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!((2..=6).contains(&tokens), "{tokens} tokens");
    assert!(
        took >= Duration::from_millis(380) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // One event, then the connection breaks: an error, and no second request (retries
    // happen only before the first event).
    let body = chunk_event("only");
    let server =
        Server::always(Script::sse(body.as_bytes(), Framing::CloseDelimited).then(Step::Reset));
    let client = new_client(&server.base_url());
    client.set_max_retries(3);
    let results: Vec<Result<OwnedEvent, ylokh::Error>> =
        client.stream(request()).unwrap().collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].is_ok() && results[1].is_err(), "{results:?}");
    assert_eq!(server.requests().len(), 1);
}
