//! Checks the scripted test server itself with a plain `TcpStream` client, so
//! failures in client tests can be trusted to be the client's.

mod common;

use common::*;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.addr()).expect("connect");
    // Bounds every test even if the server misbehaves.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn post(path: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         {extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one response head and its content-length body.
fn read_cl_response(r: &mut BufReader<TcpStream>) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "EOF in response head");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (head, body)
}

fn split_head(raw: &[u8]) -> (String, Vec<u8>) {
    let pos = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    (
        String::from_utf8(raw[..pos + 4].to_vec()).unwrap(),
        raw[pos + 4..].to_vec(),
    )
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let server = Server::always(Script::json(200, &completion_json("hello")));
    let mut r = BufReader::new(connect(&server));
    for i in 0..2 {
        r.get_mut()
            .write_all(&post("/v1/chat/completions", "", &format!("{{\"n\":{i}}}")))
            .unwrap();
        let (head, body) = read_cl_response(&mut r);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hello");
    }
    assert_eq!(server.connections(), 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.connection == 0));
    assert_eq!(reqs[1].json()["n"], 1);
}

#[test]
fn client_connection_close_ends_the_connection() {
    let server = Server::always(Script::json(200, "{}"));
    let mut s = connect(&server);
    s.write_all(&post("/v1/x", "Connection: close\r\n", "{}"))
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap(); // EOF proves the server closed
    let (head, body) = split_head(&raw);
    assert!(head.contains("Content-Length: 2\r\n"), "{head}");
    assert_eq!(body, b"{}");
}

#[test]
fn chunked_framing_is_exact_on_the_wire() {
    let server = Server::sequence(vec![
        Script::sse(b"hello world", Framing::Chunked(vec![5])),
        Script::sse(b"abcdefghij", Framing::ChunkedEvery(4)),
        Script::sse(b"whole", Framing::Chunked(vec![])),
    ]);
    let expected: [&[u8]; 3] = [
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"4\r\nabcd\r\n4\r\nefgh\r\n2\r\nij\r\n0\r\n\r\n",
        b"5\r\nwhole\r\n0\r\n\r\n",
    ];
    for want in expected {
        let mut s = connect(&server);
        s.write_all(&post("/v1/chat/completions", "Connection: close\r\n", "{}"))
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let (head, body) = split_head(&raw);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("content-length"));
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(want)
        );
    }
}

#[test]
fn chunks_are_separate_writes() {
    // Two pieces with a long gap: the first read must not contain the second.
    let script = Script::new(vec![
        Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
        Step::Write(encode_chunk(b"one")),
        Step::Sleep(Duration::from_millis(150)),
        Step::Write(encode_chunk(b"two")),
        Step::Write(b"0\r\n\r\n".to_vec()),
    ]);
    let server = Server::always(script);
    let mut s = connect(&server);
    s.write_all(&post("/v1/x", "", "{}")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"3\r\none\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        assert!(!String::from_utf8_lossy(&got).contains("two"));
    }
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let server = Server::sequence(vec![
        Script::sse(&sse_stream(&["a", "b"]), Framing::CloseDelimited),
        Script::response(200, &[], b"old style", Framing::Http10),
        Script::response(200, &[], b"abcdef", Framing::CloseDelimitedAt(vec![2, 4])),
    ]);
    let cases: [(&str, &[u8]); 3] = [
        ("HTTP/1.1 200 OK\r\n", &sse_stream(&["a", "b"])),
        ("HTTP/1.0 200 OK\r\n", b"old style"),
        ("HTTP/1.1 200 OK\r\n", b"abcdef"),
    ];
    for (status_line, want) in cases {
        let mut s = connect(&server);
        // No `Connection: close`: the server must close on its own.
        s.write_all(&post("/v1/chat/completions", "", "{}"))
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let (head, body) = split_head(&raw);
        assert!(head.starts_with(status_line), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("content-length") && !lower.contains("transfer-encoding"));
        assert_eq!(body, want);
    }
}

#[test]
fn reset_is_seen_as_connection_reset() {
    let script = Script::sse(&sse_stream(&["x"; 4]), Framing::ChunkedEvery(16))
        .truncate(100)
        .then(Step::Reset);
    let server = Server::always(script);
    let mut s = connect(&server);
    s.write_all(&post("/v1/chat/completions", "", "{}"))
        .unwrap();
    let mut buf = [0u8; 4096];
    let err = loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("clean EOF instead of a reset"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");
}

#[test]
fn reset_before_any_byte() {
    let server = Server::always(Script::reset());
    let mut s = connect(&server);
    s.write_all(&post("/v1/x", "", "{}")).unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).expect_err("reset expected");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");
}

#[test]
fn stall_ends_when_server_is_dropped() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
    let server = Server::always(Script::raw(head.to_vec()).then(Step::Stall));
    let mut s = connect(&server);
    s.write_all(&post("/v1/chat/completions", "", "{}"))
        .unwrap();
    let mut got = vec![0; head.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, head);

    let t = Instant::now();
    drop(server);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        t.elapsed()
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("EOF after drop");
    assert!(rest.is_empty());
}

#[test]
fn stall_ends_when_client_closes() {
    let server = Server::always(Script::stall());
    let mut s = connect(&server);
    s.write_all(&post("/v1/x", "", "{}")).unwrap();
    assert!(server.wait_until(Duration::from_secs(2), |s| s.requests().len() == 1));
    drop(s);
    assert!(
        server.wait_until(Duration::from_secs(2), |s| s.client_disconnects() == 1
            && s.live_connections() == 0)
    );
}

#[test]
fn sleep_is_cut_short_by_drop() {
    let server = Server::always(Script::new(vec![Step::Sleep(Duration::from_secs(60))]));
    let mut s = connect(&server);
    s.write_all(&post("/v1/x", "", "{}")).unwrap();
    assert!(server.wait_until(Duration::from_secs(2), |s| s.requests().len() == 1));
    let t = Instant::now();
    drop(server);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        t.elapsed()
    );
}

#[test]
fn requests_record_method_path_headers_and_body() {
    let server = Server::always(Script::json(200, "{}"));
    let mut r = BufReader::new(connect(&server));
    let body =
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi \"there\""}]}"#;
    r.get_mut()
        .write_all(&post(
            "/v1/chat/completions?x=1",
            "Authorization: Bearer sk-test\r\nX-Custom:  spaced value \r\n",
            body,
        ))
        .unwrap();
    read_cl_response(&mut r);

    // A chunked request body on a second connection.
    let mut s2 = connect(&server);
    s2.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nTrailer: t\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    s2.read_to_end(&mut raw).unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions?x=1");
    assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(req.header("AUTHORIZATION"), Some("Bearer sk-test"));
    assert_eq!(req.header("x-custom"), Some("spaced value"));
    assert_eq!(req.header("missing"), None);
    assert_eq!(req.body, body.as_bytes());
    assert_eq!(req.json()["messages"][0]["content"], "hi \"there\"");
    assert_eq!(req.connection, 0);

    assert_eq!(reqs[1].connection, 1);
    assert_eq!(reqs[1].json(), serde_json::json!({"a": 1}));
    assert_eq!(server.connections(), 2);
}

#[test]
fn handler_sees_request_and_picks_script() {
    let server = Server::start(|req| {
        if req.path.ends_with("/models") {
            Script::json(200, r#"{"data":[]}"#)
        } else {
            Script::json(404, &error_json("nope", "invalid_request_error"))
        }
    });
    let mut r = BufReader::new(connect(&server));
    r.get_mut().write_all(&post("/v1/models", "", "")).unwrap();
    let (head, _) = read_cl_response(&mut r);
    assert!(head.starts_with("HTTP/1.1 200 "));
    r.get_mut().write_all(&post("/v1/other", "", "")).unwrap();
    let (head, body) = read_cl_response(&mut r);
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["message"], "nope");
}

#[test]
fn sse_stream_events_are_valid_openai_chunks() {
    let tokens = ["Hel", "lo \"q\"", "\n", "ünï 😀", "\\"];
    let body = String::from_utf8(sse_stream(&tokens)).unwrap();
    assert!(body.ends_with(DONE));
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), tokens.len() + 3);
    let mut text = String::new();
    let mut finish = None;
    for ev in &events[..events.len() - 1] {
        let json = ev.strip_prefix("data: ").expect("data: prefix");
        assert!(!json.contains('\n'), "event must be one line: {json}");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["model"], MODEL);
        assert!(v["id"].is_string() && v["created"].is_u64());
        let choice = &v["choices"][0];
        if let Some(c) = choice["delta"]["content"].as_str() {
            text.push_str(c);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(text, tokens.concat());
    assert_eq!(finish.as_deref(), Some("stop"));

    let v: serde_json::Value = serde_json::from_str(&completion_json("a \"b\"\n")).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "a \"b\"\n");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["usage"]["total_tokens"].is_u64());

    let u = usage_event(3, 4);
    let v: serde_json::Value =
        serde_json::from_str(u.strip_prefix("data: ").unwrap().trim()).unwrap();
    assert_eq!(v["usage"]["total_tokens"], 7);
    let e = error_event("boom");
    let v: serde_json::Value =
        serde_json::from_str(e.strip_prefix("data: ").unwrap().trim()).unwrap();
    assert_eq!(v["error"]["message"], "boom");
}

#[test]
fn truncate_keeps_exactly_n_bytes_then_closes() {
    let full = Script::sse(b"0123456789", Framing::ContentLengthAt(vec![3, 6]));
    let all = full.written_bytes();
    let script = full.truncate(all.len() - 4);
    assert_eq!(script.written_bytes(), &all[..all.len() - 4]);
    let server = Server::always(script);
    let mut s = connect(&server);
    s.write_all(&post("/v1/x", "", "{}")).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(raw, &all[..all.len() - 4]);
}

#[test]
fn sequence_answers_in_order_and_flags_extra_requests() {
    let server = Server::sequence(vec![Script::json(200, "1"), Script::json(201, "2")]);
    let mut r = BufReader::new(connect(&server));
    for want in ["200", "201", "500"] {
        r.get_mut().write_all(&post("/v1/x", "", "")).unwrap();
        let (head, _) = read_cl_response(&mut r);
        assert!(head.starts_with(&format!("HTTP/1.1 {want} ")), "{head}");
    }
}

#[test]
fn expect_100_continue_is_answered() {
    let server = Server::always(Script::json(200, "{}"));
    let mut r = BufReader::new(connect(&server));
    r.get_mut()
        .write_all(
            b"POST /v1/x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    r.read_line(&mut line).unwrap();
    r.get_mut().write_all(b"{}").unwrap();
    let (head, _) = read_cl_response(&mut r);
    assert!(head.starts_with("HTTP/1.1 200 "));
    assert_eq!(server.requests()[0].body, b"{}");
}

#[test]
fn many_abrupt_clients_do_not_break_the_server() {
    // Clients that vanish mid-request, mid-response and while idle.
    // ~100 chunks 2 ms apart: long enough to vanish mid-response, short
    // enough to keep the test fast.
    let server = Server::always(Script::sse(
        &sse_stream(&["tok"; 10]),
        Framing::ChunkedEvery(20),
    ));
    for i in 0..20 {
        let mut s = connect(&server);
        match i % 3 {
            0 => s
                .write_all(b"POST /v1/x HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
                .unwrap(),
            1 => {
                s.write_all(&post("/v1/x", "", "{}")).unwrap();
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
            }
            _ => {}
        }
        drop(s);
    }
    // Still serves normally afterwards.
    let mut s = connect(&server);
    s.write_all(&post("/v1/x", "Connection: close\r\n", "{}"))
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(raw.ends_with(b"0\r\n\r\n"));
    assert!(server.wait_until(Duration::from_secs(5), |s| s.live_connections() == 0));
}

#[test]
#[should_panic(expected = "handler call(s) panicked")]
fn handler_panic_fails_the_test_on_drop() {
    let server = Server::start(|_| panic!("deliberate handler panic"));
    let mut r = BufReader::new(connect(&server));
    r.get_mut().write_all(&post("/v1/x", "", "")).unwrap();
    let (head, _) = read_cl_response(&mut r);
    assert!(head.starts_with("HTTP/1.1 500 "));
    drop(r);
    drop(server);
}
