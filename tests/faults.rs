//! Hostile and broken servers, through the C ABI: resets, stalls, slow drips, broken
//! chunked encoding, HTTP/1.0, missing or lying framing, garbage, endless lines and endless
//! bodies, invalid UTF-8.
//!
//! Every case checks the exact status and that the tokens delivered are exactly the
//! complete events the server sent before the fault: never fewer (a token that arrived is
//! not lost), never more, never garbage.
//!
//! The memory tests read the process's peak resident size (VmHWM), so they take an
//! exclusive lock that every other test here takes shared: nothing else in this binary runs
//! while they measure.

mod common;

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::capi::*;
use common::raw::*;
use common::*;
use ylokh::ffi::*;

static MEMORY: RwLock<()> = RwLock::new(());

/// Taken by every test that does not measure memory.
fn shared() -> RwLockReadGuard<'static, ()> {
    MEMORY.read().unwrap_or_else(|e| e.into_inner())
}

/// Taken by the tests that measure memory: they run alone in this binary.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MEMORY.write().unwrap_or_else(|e| e.into_inner())
}

const SSE_CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
const SSE_CLOSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
const SSE_HTTP10_HEAD: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";

/// Long enough for the client to read what came before a reset, so the test checks the
/// library and not the kernel's handling of data queued when the RST arrives.
const BEFORE_RESET: Duration = Duration::from_millis(50);

/// The idle timeout of the stall tests.
const TIMEOUT_MS: u64 = 300;

const TOKENS: &[&str] = &["Hel", "lo", ", w", "ö", "rld", " \u{1F600}", "!"];

fn events(tokens: &[&str]) -> Vec<u8> {
    tokens
        .iter()
        .map(|t| chunk_event(t))
        .collect::<String>()
        .into_bytes()
}

fn client_with_timeout(url: &str, timeout_ms: u64) -> CClient {
    let client = CClient::new(url);
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_timeout_ms(client.0, timeout_ms) },
        YLOKH_OK
    );
    client
}

/// The call's status is `status` and its tokens are exactly `tokens`, all valid.
#[track_caller]
fn expect(out: &Outcome, status: c_int, tokens: &[&str], case: &str) {
    assert_eq!(
        out.status, status,
        "{case}: status {} ({}), tokens {:?}",
        out.status, out.error, out.tokens
    );
    let got: Vec<&[u8]> = out.tokens.iter().map(Vec::as_slice).collect();
    let want: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    assert_eq!(got, want, "{case}: tokens ({})", out.error);
    assert!(out.violations.is_empty(), "{case}: {:?}", out.violations);
}

// ---------------------------------------------------------------------------
// Resets
// ---------------------------------------------------------------------------

#[test]
fn reset_mid_stream_is_an_io_error_after_every_token_sent() {
    let _g = shared();
    for (name, head, chunked) in [
        ("chunked", SSE_CHUNKED_HEAD, true),
        ("content-length", &b""[..], false),
    ] {
        for sent in [0, 1, 4] {
            let mut steps = vec![if chunked {
                Step::Write(head.to_vec())
            } else {
                // A length for the whole stream, of which only `sent` events come.
                Step::Write(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                         Content-Length: {}\r\n\r\n",
                        sse_stream(TOKENS).len()
                    )
                    .into_bytes(),
                )
            }];
            for t in &TOKENS[..sent] {
                let event = chunk_event(t).into_bytes();
                steps.push(Step::Write(if chunked {
                    encode_chunk(&event)
                } else {
                    event
                }));
            }
            steps.extend([Step::Sleep(BEFORE_RESET), Step::Reset]);
            let server = Server::always(Script::new(steps));
            let out = CClient::new(&server.base_url()).chat(None);
            let case = format!("{name}, reset after {sent} tokens");
            expect(&out, YLOKH_E_IO, &TOKENS[..sent], &case);
            assert_eq!(out.http_status, 200, "{case}");
            assert_eq!(server.requests().len(), 1, "{case}: not retried");
        }
    }
}

#[test]
fn reset_ending_a_close_delimited_stream_counts_as_its_end() {
    let _g = shared();
    // A close-delimited body has no length to fall short of, and ureq takes a reset there
    // as the end of the body (servers that close with unread request bytes send RST
    // instead of FIN after a complete body). The stream's own markers then decide: without
    // [DONE] or a finish reason the reply is incomplete (PROTOCOL, not IO); with a finish
    // reason it is complete. Either way every token sent is delivered.
    for sent in [0, 1, 4] {
        let mut steps = vec![Step::Write(SSE_CLOSE_HEAD.to_vec())];
        steps.extend(
            TOKENS[..sent]
                .iter()
                .map(|t| Step::Write(chunk_event(t).into_bytes())),
        );
        steps.extend([Step::Sleep(BEFORE_RESET), Step::Reset]);
        let server = Server::always(Script::new(steps));
        let out = CClient::new(&server.base_url()).chat(None);
        let case = format!("close-delimited, reset after {sent} tokens");
        expect(&out, YLOKH_E_PROTOCOL, &TOKENS[..sent], &case);
        assert!(out.error.contains("incomplete"), "{case}: {}", out.error);
    }
    let server = Server::always(Script::new(vec![
        Step::Write(SSE_CLOSE_HEAD.to_vec()),
        Step::Write(events(&TOKENS[..2])),
        Step::Write(finish_event("stop").into_bytes()),
        Step::Sleep(BEFORE_RESET),
        Step::Reset,
    ]));
    let out = CClient::new(&server.base_url()).chat(None);
    expect(
        &out,
        YLOKH_OK,
        &TOKENS[..2],
        "reset after the finish reason",
    );
}

#[test]
fn reset_mid_headers_is_an_io_error() {
    let _g = shared();
    for partial in [
        &b"HTTP/1.1 200 OK\r\nContent-Ty"[..],
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 2",
    ] {
        let server = Server::always(
            Script::raw(partial.to_vec())
                .then(Step::Sleep(BEFORE_RESET))
                .then(Step::Reset),
        );
        let out = CClient::new(&server.base_url()).chat(None);
        let case = format!("reset after {:?}", String::from_utf8_lossy(partial));
        expect(&out, YLOKH_E_IO, &[], &case);
        assert_eq!(out.http_status, 0, "{case}: no reply was complete");
        assert_eq!(server.requests().len(), 1, "{case}: not retried");
    }
}

#[test]
fn reset_before_any_reply_byte_is_retried_then_an_io_error() {
    let _g = shared();
    // Retried like a connect failure (issue 14, finding 15): the default 2 retries.
    let server = Server::always(Script::reset());
    let out = CClient::new(&server.base_url()).chat(None);
    expect(&out, YLOKH_E_IO, &[], "reset before the reply");
    assert_eq!(server.requests().len(), 3, "sent once and retried twice");
}

#[test]
fn reset_mid_chunk_delivers_the_complete_events_inside_the_chunk() {
    let _g = shared();
    // One HTTP chunk announced with all of TOKENS, cut after two whole events and part of
    // the third: the two whole events are delivered before the reset is noticed.
    let body = events(TOKENS);
    let whole_two = events(&TOKENS[..2]).len();
    let mut partial = format!("{:x}\r\n", body.len()).into_bytes();
    partial.extend_from_slice(&body[..whole_two + 20]);
    let first = encode_chunk(&events(&TOKENS[..1]));
    let server = Server::always(Script::new(vec![
        Step::Write(SSE_CHUNKED_HEAD.to_vec()),
        Step::Write(first),
        Step::Write(partial),
        Step::Sleep(BEFORE_RESET),
        Step::Reset,
    ]));
    let out = CClient::new(&server.base_url()).chat(None);
    expect(
        &out,
        YLOKH_E_IO,
        &[TOKENS[0], TOKENS[0], TOKENS[1]],
        "reset mid-chunk",
    );
}

// ---------------------------------------------------------------------------
// Stalls and slow servers
// ---------------------------------------------------------------------------

#[test]
fn a_stall_anywhere_times_out_within_the_timeout_plus_a_margin() {
    let _g = shared();
    let body = events(&TOKENS[..3]);
    let two = events(&TOKENS[..2]).len();
    let mut mid_chunk = format!("{:x}\r\n", body.len()).into_bytes();
    mid_chunk.extend_from_slice(&body[..two + 10]);
    let cases: Vec<(&str, Vec<Step>, &[&str])> = vec![
        ("before the status line", vec![], &[]),
        (
            "mid status line",
            vec![Step::Write(b"HTTP/1.1 200".to_vec())],
            &[],
        ),
        (
            "mid headers",
            vec![Step::Write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/e".to_vec(),
            )],
            &[],
        ),
        (
            "after the headers",
            vec![Step::Write(SSE_CHUNKED_HEAD.to_vec())],
            &[],
        ),
        (
            "mid chunk-size line",
            vec![
                Step::Write(SSE_CHUNKED_HEAD.to_vec()),
                Step::Write(encode_chunk(&events(&TOKENS[..1]))),
                Step::Write(b"1".to_vec()),
            ],
            &TOKENS[..1],
        ),
        (
            "mid chunk, after two whole events",
            vec![
                Step::Write(SSE_CHUNKED_HEAD.to_vec()),
                Step::Write(mid_chunk),
            ],
            &TOKENS[..2],
        ),
        (
            "mid event, close-delimited",
            vec![
                Step::Write(SSE_CLOSE_HEAD.to_vec()),
                Step::Write(body[..two + 10].to_vec()),
            ],
            &TOKENS[..2],
        ),
    ];
    for (name, mut steps, tokens) in cases {
        steps.push(Step::Stall);
        let server = Server::always(Script::new(steps));
        // Default retries: a timeout is not retried, so it costs one timeout, not three.
        let client = client_with_timeout(&server.base_url(), TIMEOUT_MS);
        let started = Instant::now();
        let out = client.chat(None);
        let took = started.elapsed();
        expect(&out, YLOKH_E_TIMEOUT, tokens, name);
        let timeout = Duration::from_millis(TIMEOUT_MS);
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(1),
            "{name}: took {took:?}"
        );
        assert_eq!(server.requests().len(), 1, "{name}: not retried");
        // The client hung up on the silent server rather than leaving the socket open.
        assert!(
            server.wait_until(Duration::from_secs(5), |s| s.client_disconnects() == 1),
            "{name}: the server did not see the client close"
        );
    }
}

#[test]
fn slow_drip_headers_and_body_succeed_when_every_gap_is_under_the_timeout() {
    let _g = shared();
    // Status line and headers one byte at a time, 3 ms apart (the body in 11-byte pieces):
    // the whole head takes longer than the 300 ms timeout, but no single wait does, and
    // the timeout bounds each wait, not the reply.
    let body = sse_stream(&["dr", "ip"]);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         X-Padding: {}\r\nContent-Length: {}\r\n\r\n",
        "p".repeat(40),
        body.len()
    );
    let mut steps = Vec::new();
    let gap = Step::Sleep(Duration::from_millis(3));
    for byte in head.bytes() {
        steps.extend([Step::Write(vec![byte]), gap.clone()]);
    }
    for piece in body.chunks(11) {
        steps.extend([Step::Write(piece.to_vec()), gap.clone()]);
    }
    let server = Server::always(Script::new(steps));
    let client = client_with_timeout(&server.base_url(), TIMEOUT_MS);
    let started = Instant::now();
    let out = client.chat(None);
    expect(&out, YLOKH_OK, &["dr", "ip"], "slow drip");
    assert!(
        started.elapsed() > Duration::from_millis(TIMEOUT_MS),
        "the drip should outlast one timeout: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Broken chunked encoding
// ---------------------------------------------------------------------------

#[test]
fn invalid_chunked_encoding_is_an_error_never_garbage() {
    let _g = shared();
    let good = encode_chunk(&events(&TOKENS[..2]));
    let next = events(&TOKENS[2..4]);
    let size_line = |n: usize| format!("{n:x}\r\n").into_bytes();
    // Each case: pieces written with a pause between them (so the client has read and
    // delivered one piece before the next arrives; see the ignored test below for why),
    // the status, and the tokens after the two of the good chunk.
    type Case = (&'static str, Vec<Vec<u8>>, c_int, &'static [&'static str]);
    let cases: Vec<Case> = vec![
        // Malformed framing is a protocol error.
        (
            "bad hex size",
            vec![b"zz\r\nhello\r\n".to_vec()],
            YLOKH_E_PROTOCOL,
            &[],
        ),
        (
            "size overflowing 64 bits",
            vec![b"1ffffffffffffffffff\r\nhello\r\n".to_vec()],
            YLOKH_E_PROTOCOL,
            &[],
        ),
        (
            "negative size",
            vec![b"-5\r\nhello\r\n".to_vec()],
            YLOKH_E_PROTOCOL,
            &[],
        ),
        (
            "empty size line",
            vec![b"\r\nhello\r\n".to_vec()],
            YLOKH_E_PROTOCOL,
            &[],
        ),
        (
            "size line of 30 digits",
            vec![b"000000000000000000000000000005\r\nhello\r\n".to_vec()],
            YLOKH_E_PROTOCOL,
            &[],
        ),
        (
            "non-ASCII size",
            vec![b"\xff\xfe\r\nhello\r\n".to_vec()],
            YLOKH_E_PROTOCOL,
            &[],
        ),
        // The chunk's data is whole, so its events count; the bytes where its CRLF should
        // be are the error.
        (
            "missing CRLF after the data",
            vec![
                [size_line(next.len()), next.clone()].concat(),
                [&b"XX"[..], &encode_chunk(&events(&TOKENS[4..]))].concat(),
            ],
            YLOKH_E_PROTOCOL,
            &TOKENS[2..4],
        ),
        // The connection closes inside a chunk or before the last chunk: the body is cut.
        (
            "truncated chunk, then close",
            vec![[size_line(next.len() + 100), next.clone()].concat()],
            YLOKH_E_IO,
            &TOKENS[2..4],
        ),
        ("no last chunk, then close", vec![], YLOKH_E_IO, &[]),
        (
            "close after the last chunk's size line",
            vec![b"0\r\n".to_vec()],
            YLOKH_E_PROTOCOL,
            &[],
        ),
    ];
    for (name, pieces, status, more) in cases {
        let mut steps = vec![
            Step::Write(SSE_CHUNKED_HEAD.to_vec()),
            Step::Write(good.clone()),
        ];
        for piece in pieces {
            steps.extend([Step::Sleep(BEFORE_RESET), Step::Write(piece)]);
        }
        steps.push(Step::Close);
        let server = Server::always(Script::new(steps));
        let out = CClient::new(&server.base_url()).chat(None);
        let want: Vec<&str> = TOKENS[..2].iter().chain(more).copied().collect();
        expect(&out, status, &want, name);
    }
}

/// Known bug in ureq-proto 0.7.1 (`Dechunker::parse_input`), which this library uses: when
/// complete chunks and malformed chunk framing arrive in the same read, the decoded data of
/// the complete chunks is dropped along with the error, so their tokens are never
/// delivered (the call still fails with YLOKH_E_PROTOCOL). Whether they are depends on how
/// TCP split the bytes. Fixing it needs a change to ureq-proto; until then the test is
/// ignored (reported as ignored, not passed): `cargo test --test faults -- --ignored`.
#[test]
#[ignore = "known ureq-proto 0.7.1 bug: complete chunks read together with broken framing are dropped"]
fn complete_chunks_read_together_with_broken_framing_are_still_delivered() {
    let _g = shared();
    let mut wire = SSE_CHUNKED_HEAD.to_vec();
    wire.extend_from_slice(&encode_chunk(&events(&TOKENS[..2])));
    wire.extend_from_slice(b"zz\r\nhello\r\n");
    // One write: the head, a good chunk and the bad size line arrive together.
    let server = Server::always(Script::raw(wire));
    let out = CClient::new(&server.base_url()).chat(None);
    expect(&out, YLOKH_E_PROTOCOL, &TOKENS[..2], "one read");
}

#[test]
fn valid_chunk_extensions_and_trailers_are_accepted() {
    let _g = shared();
    let body = sse_stream(&["ext", "ended"]);
    let (a, b) = body.split_at(body.len() / 2);
    let mut wire = format!("{:x};name=value;flag\r\n", a.len()).into_bytes();
    wire.extend_from_slice(a);
    wire.extend_from_slice(format!("\r\n{:X} ; q=\"x\"\r\n", b.len()).as_bytes());
    wire.extend_from_slice(b);
    wire.extend_from_slice(b"\r\n0\r\nX-Trailer: yes\r\n\r\n");
    let server = Server::always(
        Script::new(vec![
            Step::Write(SSE_CHUNKED_HEAD.to_vec()),
            Step::Write(wire),
        ])
        .with_keep_alive(true),
    );
    let client = CClient::new(&server.base_url());
    for _ in 0..2 {
        expect(
            &client.chat(None),
            YLOKH_OK,
            &["ext", "ended"],
            "extensions",
        );
    }
    assert_eq!(
        server.connections(),
        1,
        "a body ended by a zero chunk with trailers leaves the connection reusable"
    );
}

// ---------------------------------------------------------------------------
// HTTP/1.0 and framing lies
// ---------------------------------------------------------------------------

#[test]
fn http10_close_delimited_replies_end_with_the_connection() {
    let _g = shared();
    // Complete: tokens, finish, no [DONE] (the close ends it); never reused.
    let complete = [events(&["one", "two"]), finish_event("stop").into_bytes()].concat();
    let server = Server::always(Script::new(vec![
        Step::Write(SSE_HTTP10_HEAD.to_vec()),
        Step::Write(complete),
        Step::Close,
    ]));
    let client = CClient::new(&server.base_url());
    for _ in 0..2 {
        expect(&client.chat(None), YLOKH_OK, &["one", "two"], "HTTP/1.0");
    }
    assert_eq!(
        server.connections(),
        2,
        "an HTTP/1.0 connection is not reused"
    );

    // Cut inside the third event: the two whole ones, then "incomplete".
    let body = events(&["one", "two", "three"]);
    let cut = events(&["one", "two"]).len() + 30;
    let server = Server::always(Script::new(vec![
        Step::Write(SSE_HTTP10_HEAD.to_vec()),
        Step::Write(body[..cut].to_vec()),
        Step::Close,
    ]));
    let out = CClient::new(&server.base_url()).chat(None);
    expect(
        &out,
        YLOKH_E_PROTOCOL,
        &["one", "two"],
        "HTTP/1.0 cut short",
    );

    // HTTP/1.0 with Content-Length: the length ends the body.
    let body = sse_stream(&["len"]);
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let server = Server::always(Script::new(vec![
        Step::Write(head.into_bytes()),
        Step::Write(body),
        Step::Close,
    ]));
    expect(
        &CClient::new(&server.base_url()).chat(None),
        YLOKH_OK,
        &["len"],
        "HTTP/1.0 with a length",
    );
}

#[test]
fn close_right_after_the_headers() {
    let _g = shared();
    for (name, head, status) in [
        // A chunked body that never starts is a broken body.
        ("chunked", SSE_CHUNKED_HEAD, YLOKH_E_IO),
        // A close-delimited body that is empty is a complete, empty body: the stream
        // ended before [DONE] or a finish reason.
        ("close-delimited", SSE_CLOSE_HEAD, YLOKH_E_PROTOCOL),
        ("HTTP/1.0", SSE_HTTP10_HEAD, YLOKH_E_PROTOCOL),
    ] {
        let server = Server::always(Script::raw(head.to_vec()));
        let out = CClient::new(&server.base_url()).chat(None);
        expect(&out, status, &[], name);
        assert_eq!(out.http_status, 200, "{name}");
    }
    // With a Content-Length the body is short of its length.
    let server = Server::always(Script::raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 50\r\n\r\n"
            .to_vec(),
    ));
    let out = CClient::new(&server.base_url()).chat(None);
    expect(&out, YLOKH_E_IO, &[], "content-length");
}

#[test]
fn a_head_without_its_end_is_an_error() {
    let _g = shared();
    for head in [
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream",
        b"HTTP/1.1 200 OK",
    ] {
        let server = Server::always(Script::raw(head.to_vec()));
        let out = CClient::new(&server.base_url()).chat(None);
        let case = String::from_utf8_lossy(head).into_owned();
        expect(&out, YLOKH_E_IO, &[], &case);
        assert_eq!(out.http_status, 0, "{case}");
        assert_eq!(server.requests().len(), 1, "{case}: not retried");
    }
}

#[test]
fn garbage_instead_of_http_is_a_protocol_error() {
    let _g = shared();
    for garbage in [
        &b"HELLO\r\n\r\n"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/9.9 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
    ] {
        let server = Server::always(Script::raw(garbage.to_vec()));
        let out = CClient::new(&server.base_url()).chat(None);
        let case = format!("{:?}", String::from_utf8_lossy(garbage));
        expect(&out, YLOKH_E_PROTOCOL, &[], &case);
        assert_eq!(server.requests().len(), 1, "{case}: not retried");
    }
}

#[test]
fn content_length_larger_than_the_body_then_close() {
    let _g = shared();
    // Without [DONE]: the tokens that came, then an I/O error (the body is short).
    let body = events(&["a", "b"]);
    let lying = (body.len() + 1000).to_string();
    let server = Server::always(
        Script::response(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Content-Length", &lying),
            ],
            &body,
            Framing::ContentLength,
        )
        // Close after the short body instead of waiting for another request.
        .with_keep_alive(false),
    );
    let out = CClient::new(&server.base_url()).chat(None);
    expect(&out, YLOKH_E_IO, &["a", "b"], "short body without [DONE]");

    // With [DONE]: [DONE] ends the call at once, and the connection, whose body never
    // ended, is not reused.
    let body = sse_stream(&["a", "b"]);
    let lying = (body.len() + 1000).to_string();
    let server = Server::always(
        Script::response(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Content-Length", &lying),
            ],
            &body,
            Framing::ContentLength,
        )
        .with_keep_alive(false),
    );
    let client = CClient::new(&server.base_url());
    for _ in 0..2 {
        expect(
            &client.chat(None),
            YLOKH_OK,
            &["a", "b"],
            "short body with [DONE]",
        );
    }
    assert_eq!(server.connections(), 2);

    // A JSON (non-streaming) reply that is short of its length is an I/O error.
    let json = completion_json("whole");
    let lying = (json.len() + 10).to_string();
    let server = Server::always(
        Script::response(
            200,
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", &lying),
            ],
            json.as_bytes(),
            Framing::ContentLength,
        )
        .with_keep_alive(false),
    );
    let out = CClient::new(&server.base_url()).chat(Some(r#"{"stream":false}"#));
    expect(&out, YLOKH_E_IO, &[], "short JSON reply");
}

#[test]
fn informational_responses_before_the_reply_are_skipped() {
    let _g = shared();
    let body = sse_stream(&["a", "b"]);
    for interim in [
        &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    ] {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let server = Server::always(Script::new(vec![
            Step::Write(interim.to_vec()),
            Step::Write(head.into_bytes()),
            Step::Write(body.clone()),
        ]));
        let case = String::from_utf8_lossy(interim).into_owned();
        expect(
            &CClient::new(&server.base_url()).chat(None),
            YLOKH_OK,
            &["a", "b"],
            &case,
        );
    }
}

#[test]
fn framing_headers_that_disagree() {
    let _g = shared();
    let body = sse_stream(&["a", "b"]);
    let head = |extra: &str| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{extra}\r\n").into_bytes()
    };
    let len = body.len();
    // Both a length and chunked: chunked wins (RFC 9112 section 6.3), the length is ignored.
    let both = [
        head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
        encode_chunk(&body),
        b"0\r\n\r\n".to_vec(),
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>, c_int, &[&str])> = vec![
        ("length and chunked", both, YLOKH_OK, &["a", "b"]),
        (
            "the same length twice",
            [
                head(&format!(
                    "Content-Length: {len}\r\nContent-Length: {len}\r\n"
                )),
                body.clone(),
            ]
            .concat(),
            YLOKH_OK,
            &["a", "b"],
        ),
        (
            "two different lengths",
            [
                head(&format!("Content-Length: {len}\r\nContent-Length: 7\r\n")),
                body.clone(),
            ]
            .concat(),
            YLOKH_E_PROTOCOL,
            &[],
        ),
        (
            "a length that is not a number",
            [head("Content-Length: abc\r\n"), body.clone()].concat(),
            YLOKH_E_PROTOCOL,
            &[],
        ),
        (
            "a signed length",
            [head(&format!("Content-Length: +{len}\r\n")), body.clone()].concat(),
            YLOKH_E_PROTOCOL,
            &[],
        ),
    ];
    for (name, wire, status, tokens) in cases {
        let server = Server::always(Script::raw(wire));
        expect(
            &CClient::new(&server.base_url()).chat(None),
            status,
            tokens,
            name,
        );
    }
}

/// Header lines forever, as a hostile server might send: the client stops reading at its
/// limit for a response head, so the server sees it hang up after a bounded amount.
#[test]
fn an_endless_head_is_refused_after_a_bounded_read() {
    let _g = shared();
    let line =
        b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(100);
    let server = RawServer::start(move |conn| {
        if conn.read_request().is_some() && conn.write(b"HTTP/1.1 200 OK\r\n") {
            conn.write_while(1 << 30, |_, piece| {
                piece.extend_from_slice(&line);
                true
            });
        }
    });
    let out = CClient::new(&server.base_url()).chat(None);
    expect(&out, YLOKH_E_PROTOCOL, &[], "endless header lines");
    let reports = server.wait_reports(1, Duration::from_secs(10));
    assert!(
        reports[0].client_closed,
        "the client hung up: {:?}",
        reports[0]
    );
    // The head limit is 16 KiB (the connection's input buffer); the rest is what the
    // socket buffers took.
    assert!(
        reports[0].written < 16 * MIB,
        "the server wrote {} KiB",
        reports[0].written / 1024
    );
}

/// A response head over ureq's 64 KiB limit breaks a limit of the protocol, like a line over
/// the event limit or too many header lines: YLOKH_E_PROTOCOL, not an I/O failure.
#[test]
fn a_response_head_over_the_size_limit_is_a_protocol_error() {
    let _g = shared();
    let server = RawServer::start(|conn| {
        if conn.read_request().is_some() && conn.write(b"HTTP/1.1 200 OK\r\nX-Long: ") {
            conn.write_while(1 << 30, |_, piece| {
                piece.extend_from_slice(&[b'a'; 64 * 1024]);
                true
            });
        }
    });
    let out = CClient::new(&server.base_url()).chat(None);
    expect(&out, YLOKH_E_PROTOCOL, &[], "one endless header line");
}

#[test]
fn an_endless_error_body_is_read_only_in_part() {
    let _g = shared();
    // A 500 whose body never ends: the message comes from its first 64 KiB, the call
    // returns at once, and the connection is closed rather than read to the end.
    let server = RawServer::start(|conn| {
        if conn.read_request().is_some()
            && conn.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n")
        {
            conn.write_while(1 << 30, |_, piece| {
                piece.extend_from_slice(&[b'e'; 64 * 1024]);
                true
            });
        }
    });
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_retries(client.0, 0) },
        YLOKH_OK
    );
    let started = Instant::now();
    let out = client.chat(None);
    expect(&out, YLOKH_E_HTTP_STATUS, &[], "endless error body");
    assert_eq!(out.http_status, 500);
    assert!(
        out.error.starts_with("HTTP 500"),
        "{}",
        &out.error[..80.min(out.error.len())]
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let reports = server.wait_reports(1, Duration::from_secs(10));
    assert!(
        reports[0].client_closed,
        "the client hung up: {:?}",
        reports[0]
    );
    assert!(
        reports[0].written < 16 * MIB,
        "{} KiB",
        reports[0].written / 1024
    );
}

// ---------------------------------------------------------------------------
// Invalid UTF-8
// ---------------------------------------------------------------------------

/// An event as the C event callback saw it, without assuming it is valid.
#[derive(Debug)]
struct RawEvent {
    kind: ylokh_event_kind,
    text: Vec<u8>,
}

#[derive(Default)]
struct EventLog {
    events: Vec<RawEvent>,
    violations: Vec<String>,
}

extern "C" fn record_event(userdata: *mut c_void, event: *const ylokh_event) -> c_int {
    // SAFETY: userdata is the &mut EventLog passed to the call; the event and its strings
    // are valid for this call, each `len` bytes followed by a NUL.
    unsafe {
        let log = &mut *(userdata as *mut EventLog);
        let e = &*event;
        for (what, p, len) in [
            ("text", e.text, e.text_len),
            ("tool_id", e.tool_id, e.tool_id_len),
            ("tool_name", e.tool_name, e.tool_name_len),
        ] {
            if p.is_null() {
                if what == "text" {
                    log.violations.push("NULL text".into());
                }
                continue;
            }
            let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len + 1);
            if bytes[len] != 0 {
                log.violations.push(format!("{what} not NUL-terminated"));
            }
            if std::str::from_utf8(&bytes[..len]).is_err() {
                log.violations
                    .push(format!("{what} not UTF-8: {:?}", &bytes[..len]));
            }
        }
        let text = if e.text.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(e.text.cast::<u8>(), e.text_len).to_vec()
        };
        log.events.push(RawEvent { kind: e.kind, text });
    }
    0
}

fn chat_events(client: &CClient, options: Option<&str>) -> (c_int, EventLog, String) {
    let messages = cstring(USER_HI);
    let options = options.map(cstring);
    let mut log = EventLog::default();
    // SAFETY: live client; strings NUL-terminated or NULL; the log outlives the call.
    let status = unsafe {
        ylokh_chat_events(
            client.0,
            ptr::null(),
            messages.as_ptr(),
            options.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
            Some(record_event),
            (&mut log as *mut EventLog).cast(),
        )
    };
    let error = if status == YLOKH_OK {
        String::new()
    } else {
        last_error()
    };
    (status, log, error)
}

/// `template` with `@@` replaced by raw (possibly invalid) bytes.
fn with_bytes(template: &str, bytes: &[u8]) -> Vec<u8> {
    let at = template.find("@@").expect("template has @@");
    [
        template.as_bytes()[..at].to_vec(),
        bytes.to_vec(),
        template.as_bytes()[at + 2..].to_vec(),
    ]
    .concat()
}

#[test]
fn invalid_utf8_in_any_delivered_field_is_rejected_never_delivered() {
    let _g = shared();
    // tests/stream.rs checks 0xFF 0xFE in content; these are the subtler encodings.
    let bad_sequences: &[(&str, &[u8])] = &[
        ("lone continuation byte", b"a\x80b"),
        ("overlong slash", b"\xc0\xaf"),
        ("overlong NUL", b"\xc0\x80"),
        ("UTF-16 surrogate encoded", b"\xed\xa0\x80"),
        ("above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("F5 lead byte", b"\xf5\x80\x80\x80"),
        ("sequence cut by the quote", b"ok\xe6\x97"),
        ("sequence cut by a plain byte", b"\xe6\x97x"),
        ("4-byte lead then ASCII", b"\xf0\x9f\x98"),
    ];
    let fields = [
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"@@\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"@@\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\",\"reasoning\":\"@@\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"@@\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"@@\",\"function\":{\"name\":\"f\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"@@\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"@@\"}]}\n\n",
        // The same chunk shape as the good one before it, so a parser that reuses what it
        // learnt from the previous chunk's prefix sees only the tail.
        "data: {\"id\":\"chatcmpl-test123\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"test-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"@@\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"@@\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2,\"note\":\"@@\"}}\n\n",
    ];
    for field in fields {
        for (name, bad) in bad_sequences {
            let mut body = chunk_event("ok").into_bytes();
            body.extend_from_slice(&with_bytes(field, bad));
            body.extend_from_slice(chunk_event("never").as_bytes());
            body.extend_from_slice(DONE.as_bytes());
            let case = format!("{name} in {}", &field[..field.find("@@").unwrap()]);
            // Split inside the bad sequence, so it also straddles two HTTP chunks.
            let cut = body.len() - DONE.len() - chunk_event("never").len() - 8;
            let server = Server::always(Script::sse(&body, Framing::Chunked(vec![cut])));
            let client = CClient::new(&server.base_url());
            let out = client.chat(None);
            expect(&out, YLOKH_E_PROTOCOL, &["ok"], &case);
            let (status, log, error) = chat_events(&client, None);
            assert_eq!(status, YLOKH_E_PROTOCOL, "{case}: {error}");
            assert!(log.violations.is_empty(), "{case}: {:?}", log.violations);
            let events: Vec<_> = log.events.iter().map(|e| (e.kind, &e.text[..])).collect();
            assert_eq!(
                events,
                [(ylokh_event_kind::YLOKH_EVENT_CONTENT, &b"ok"[..])],
                "{case}"
            );
        }
    }
}

#[test]
fn json_escapes_of_lone_surrogates_become_replacement_characters_and_pairs_decoded() {
    let _g = shared();
    // A half with no partner becomes U+FFFD (issue 9: servers cut text by UTF-16 units;
    // halves split across chunks are joined, see tests/real_servers.rs). A high half at the
    // end of a piece waits for the next piece of its field, and is replaced when the
    // choice's next chunk (here the finish) does not continue it.
    for (escaped, ok) in [
        (r"\ud83d\ude00", Some(&["\u{1F600}"][..])),
        (r"\uD83D\uDE00", Some(&["\u{1F600}"][..])),
        (r"a\u00e9\u65e5\u0000b", Some(&["aé日\u{0}b"][..])),
        (r"\ud83d", Some(&["\u{FFFD}"][..])),
        (r"\ud83dx", Some(&["\u{FFFD}x"][..])),
        (r"\ude00", Some(&["\u{FFFD}"][..])),
        (r"\ud83d\u0041", Some(&["\u{FFFD}A"][..])),
        (r"\ud83d\ud83d", Some(&["\u{FFFD}", "\u{FFFD}"][..])),
        (r"\u12", None),
        (r"\x41", None),
    ] {
        let chunk = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{escaped}\"}}}}]}}\n\n"
        );
        let body = [chunk_event("ok"), chunk, finish_event("stop"), DONE.into()].concat();
        let server = Server::always(Script::sse(body.as_bytes(), Framing::ContentLength));
        let out = CClient::new(&server.base_url()).chat(None);
        match ok {
            Some(texts) => expect(&out, YLOKH_OK, &[&["ok"][..], texts].concat(), escaped),
            None => expect(&out, YLOKH_E_PROTOCOL, &["ok"], escaped),
        }
    }
}

#[test]
fn invalid_utf8_outside_delivered_text_is_harmless() {
    let _g = shared();
    // Comments, unknown fields, ids and event names are never delivered: bytes that are
    // not UTF-8 there change nothing.
    let mut body = Vec::new();
    body.extend_from_slice(b": \xff\xfe keep-alive\n\n");
    body.extend_from_slice(b"id: \xc0\xaf\nretry: \xff\n\xfe\xff: x\n\n");
    body.extend_from_slice(b"event: \xff\ndata: {\"x\":1}\n\n");
    body.extend_from_slice(chunk_event("fine").as_bytes());
    body.extend_from_slice(&sse_stream(&[]));
    let server = Server::always(Script::sse(&body, Framing::ChunkedEvery(7)));
    expect(
        &CClient::new(&server.base_url()).chat(None),
        YLOKH_OK,
        &["fine"],
        "invalid UTF-8 in ignored places",
    );
}

#[test]
fn invalid_utf8_in_a_non_streaming_reply_or_an_error_body() {
    let _g = shared();
    let reply = with_bytes(&completion_json("@@"), b"bad\xff");
    let server = Server::always(Script::response(
        200,
        &[("Content-Type", "application/json")],
        &reply,
        Framing::ContentLength,
    ));
    let out = CClient::new(&server.base_url()).chat(Some(r#"{"stream":false}"#));
    expect(&out, YLOKH_E_PROTOCOL, &[], "non-streaming reply");

    // An error body that is not UTF-8 still gives a readable message and the status.
    let server = Server::always(Script::response(
        400,
        &[("Content-Type", "application/json")],
        b"{\"error\":{\"message\":\"bad \xff input\"}}",
        Framing::ContentLength,
    ));
    let out = CClient::new(&server.base_url()).chat(None);
    expect(&out, YLOKH_E_HTTP_STATUS, &[], "error body");
    assert_eq!(out.http_status, 400);
    assert!(out.error.contains("400"), "{}", out.error);
}

// ---------------------------------------------------------------------------
// Endless lines and bodies, and memory
// ---------------------------------------------------------------------------

/// Peak resident growth while `f` runs, in bytes (the peak is reset first).
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let reset = reset_peak_rss();
    let before = if reset { rss() } else { peak_rss() };
    let value = f();
    let growth = match (before, peak_rss()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    (value, growth)
}

/// A raw server that answers the first request with `head` and then whatever `body`
/// writes until the client hangs up (or 1 GiB, the safety stop).
fn endless_server(
    head: &'static [u8],
    body: impl Fn(u64, &mut Vec<u8>) -> bool + Send + Sync + 'static,
) -> RawServer {
    RawServer::start(move |conn| {
        if conn.read_request().is_none() || !conn.write(head) {
            return;
        }
        conn.write_while(1 << 30, &body);
    })
}

#[test]
fn a_never_ending_line_stops_at_the_default_16_mib_limit() {
    let _g = exclusive();
    // `data: ` and then bytes without a line end, for as long as the client reads.
    let filler = vec![b'x'; 64 * 1024];
    let server = endless_server(SSE_CLOSE_HEAD, move |n, piece| {
        if n == 0 {
            piece.extend_from_slice(b"data: ");
        }
        piece.extend_from_slice(&filler);
        true
    });
    let client = CClient::new(&server.base_url());
    let (out, growth) = peak_growth(|| client.chat(None));
    expect(&out, YLOKH_E_PROTOCOL, &[], "endless line");
    assert!(out.error.contains("16777216"), "{}", out.error);

    let reports = server.wait_reports(1, Duration::from_secs(10));
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert!(r.client_closed, "the client hung up: {r:?}");
    // Everything up to the limit was read; beyond it only what the socket buffers held
    // (loopback buffers grow to a few MiB each way).
    let limit = 16 * MIB;
    eprintln!(
        "endless line: the server wrote {} KiB, peak RSS growth {:?} KiB",
        r.written / 1024,
        growth.map(|g| g / 1024)
    );
    assert!(
        r.written > limit && r.written < limit + 32 * MIB,
        "the server wrote {} MiB",
        r.written / MIB
    );
    // The line is buffered up to the limit (16 MiB), and nothing more: the peak stays
    // well under the 1 GiB the server would have sent.
    if let Some(growth) = growth {
        assert!(growth < 64 * MIB, "peak RSS grew {} MiB", growth / MIB);
    }
}

/// Token `i` of the endless stream: distinct, checkable without storing it.
fn endless_token(i: u64, filler: &str) -> String {
    format!("<{i}>{filler}")
}

#[test]
fn an_endless_stream_of_valid_events_runs_in_bounded_memory_until_the_callback_stops_it() {
    let _g = exclusive();
    // Hundreds of MB of valid events (a multi-gigabyte body would take minutes on
    // loopback in a debug build; memory that is bounded for 300 MB is bounded, since
    // nothing is kept per event). The callback checks each token and stops after N.
    const TOKEN_BYTES: usize = 4096;
    const N: u64 = 75_000; // about 300 MiB of body
    let filler = "é".repeat(TOKEN_BYTES / 2);
    let server_filler = filler.clone();
    let server = endless_server(SSE_CHUNKED_HEAD, move |i, piece| {
        piece.extend_from_slice(&encode_chunk(
            chunk_event(&endless_token(i, &server_filler)).as_bytes(),
        ));
        true
    });
    let client = CClient::new(&server.base_url());

    struct Check {
        seen: u64,
        stop_after: u64,
        filler: String,
        wrong: Option<String>,
    }
    extern "C" fn check(
        userdata: *mut c_void,
        token: *const std::ffi::c_char,
        len: usize,
    ) -> c_int {
        // SAFETY: userdata is the &mut Check of the call; token is len bytes.
        let (c, bytes) = unsafe {
            (
                &mut *(userdata as *mut Check),
                std::slice::from_raw_parts(token.cast::<u8>(), len),
            )
        };
        if c.wrong.is_none() && bytes != endless_token(c.seen, &c.filler).as_bytes() {
            c.wrong = Some(format!(
                "token {} is {:?}",
                c.seen,
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            ));
        }
        c.seen += 1;
        c_int::from(c.seen >= c.stop_after)
    }
    let mut state = Check {
        seen: 0,
        stop_after: N,
        filler,
        wrong: None,
    };
    let messages = cstring(USER_HI);
    let started = Instant::now();
    let (status, growth) = peak_growth(|| {
        // SAFETY: live client; the state outlives the call.
        unsafe {
            ylokh_chat(
                client.0,
                ptr::null(),
                messages.as_ptr(),
                ptr::null(),
                Some(check),
                (&mut state as *mut Check).cast(),
            )
        }
    });
    assert_eq!(status, YLOKH_E_ABORTED, "{}", last_error());
    assert_eq!(state.wrong, None);
    assert_eq!(state.seen, N, "no token after the abort");
    let reports = server.wait_reports(1, Duration::from_secs(10));
    assert!(
        reports[0].client_closed,
        "the client hung up: {:?}",
        reports[0]
    );
    let mib = reports[0].written / MIB;
    assert!(mib >= 290, "only {mib} MiB were streamed");
    eprintln!(
        "endless valid events: {mib} MiB in {:?}, peak RSS growth {:?} KiB",
        started.elapsed(),
        growth.map(|g| g / 1024)
    );
    // Per call the client holds one read buffer, one event and ureq's buffers: tens of
    // KiB. Measured: about 0.25 MiB of peak growth (server thread and socket buffers
    // included). 8 MiB leaves room for allocator and stack noise on other machines, and
    // still fails for a buffer that keeps the body (300 MiB) or a leak of more than about
    // 110 bytes per event (75,000 events).
    if let Some(growth) = growth {
        assert!(growth < 8 * MIB, "peak RSS grew {} MiB", growth / MIB);
    }
}

#[test]
fn over_100_mb_of_lines_without_data_runs_in_bounded_memory() {
    let _g = exclusive();
    // Comments (keep-alives), id-only events, retry and unknown fields, named events that
    // are ignored, and `event:` lines without a blank line (each one replaces the last):
    // nothing here is dispatched, so nothing may accumulate. Then a real event and [DONE].
    let block: Vec<u8> = [
        &b": keep-alive padding padding padding padding padding padding\n\n"[..],
        b"id: 1234567890\n\n",
        b"retry: 1000\nfoo: bar\n\n",
        b"event: ping\ndata: {\"type\":\"ping\"}\n\n",
        b"event: a\nevent: b\nid: 7\n",
        b"\n",
    ]
    .concat();
    const TOTAL: u64 = 120 * MIB;
    let ending = [chunk_event("after"), finish_event("stop"), DONE.into()].concat();
    let server = RawServer::start(move |conn| {
        if conn.read_request().is_none() || !conn.write(SSE_CLOSE_HEAD) {
            return;
        }
        let block = block.repeat(64 * 1024 / block.len());
        conn.write_while(TOTAL, |_, out| {
            out.extend_from_slice(&block);
            true
        });
        if conn.write(ending.as_bytes()) {
            conn.close();
        }
    });
    let client = CClient::new(&server.base_url());
    let started = Instant::now();
    let (out, growth) = peak_growth(|| client.chat(None));
    expect(&out, YLOKH_OK, &["after"], "100 MB of non-data lines");
    eprintln!(
        "non-data lines: {} MiB in {:?}, peak RSS growth {:?} KiB",
        TOTAL / MIB,
        started.elapsed(),
        growth.map(|g| g / 1024)
    );
    // Measured: about 0.15 MiB. As above, 8 MiB is noise headroom; a buffer that kept
    // the ignored lines would be 120 MiB, and a leak of 4 bytes per ignored line (about
    // 2.6 million of them) would be 10 MiB.
    if let Some(growth) = growth {
        assert!(growth < 8 * MIB, "peak RSS grew {} MiB", growth / MIB);
    }
}

#[test]
fn events_just_under_the_limit_pass_and_just_over_fail_whatever_the_split() {
    let _g = shared();
    // The limit counts the line without its terminator: `data: ` + JSON.
    const LIMIT: usize = 4096;
    let line_len = |content: &str| chunk_event(content).len() - 2;
    let base = line_len("");
    let fits = "y".repeat(LIMIT - base);
    let over = "y".repeat(LIMIT - base + 1);
    assert_eq!(line_len(&fits), LIMIT);
    for every in [1000, 4095, 4096, 4097, 9000] {
        for (content, status) in [(&fits, YLOKH_OK), (&over, YLOKH_E_PROTOCOL)] {
            let body = sse_stream(&["a", content]);
            let server = Server::always(Script::sse(&body, Framing::ChunkedEvery(every)));
            let client = CClient::new(&server.base_url());
            // SAFETY: live client.
            assert_eq!(
                unsafe { ylokh_client_set_max_event_bytes(client.0, LIMIT) },
                YLOKH_OK
            );
            let out = client.chat(None);
            let case = format!("line of {} bytes, chunks of {every}", line_len(content));
            if status == YLOKH_OK {
                expect(&out, status, &["a", content], &case);
            } else {
                expect(&out, status, &["a"], &case);
            }
        }
    }
}

#[test]
fn a_server_writing_forever_is_cut_by_the_deadline_and_hung_up_on() {
    let _g = shared();
    // Keep-alive comments forever, each well within the idle timeout: only the deadline
    // ends the call.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let server = RawServer::start(move |conn| {
        if conn.read_request().is_none() || !conn.write(SSE_CLOSE_HEAD) {
            return;
        }
        conn.write(chunk_event("first").as_bytes());
        while conn.sleep(Duration::from_millis(20)) && conn.write(b": still here\n\n") {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let client = client_with_timeout(&server.base_url(), TIMEOUT_MS);
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_deadline_ms(client.0, 600) },
        YLOKH_OK
    );
    let started = Instant::now();
    let out = client.chat(None);
    let took = started.elapsed();
    expect(&out, YLOKH_E_TIMEOUT, &["first"], "deadline");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(1600),
        "{took:?}"
    );
    assert!(sent.load(Ordering::SeqCst) > 5, "the server kept talking");
    let reports = server.wait_reports(1, Duration::from_secs(5));
    assert!(
        reports[0].client_closed,
        "the client hung up: {:?}",
        reports[0]
    );
}
