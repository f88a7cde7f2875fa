//! The request side and the client's policies through the C ABI: body and headers, input
//! validation, retries, timeouts, deadline, cancellation, threads, conversations.

mod common;

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::capi::*;
use common::*;
use serde_json::json;
use ylokh::ffi::*;

fn ok_stream() -> Script {
    Script::sse(&sse_stream(&["o", "k"]), Framing::ContentLength).with_keep_alive(true)
}

#[test]
fn request_body_has_the_original_defaults_and_merged_options() {
    let server = Server::always(ok_stream());
    let client = CClient::new(&server.base_url());
    client.chat(None).ok();
    client
        .chat_full(
            Some("my-model"),
            r#"[{"role":"system","content":"s"},{"role":"user","content":"u"}]"#,
            Some(r#"{"temperature":0.2,"max_tokens":50,"seed":7}"#),
            None,
        )
        .ok();
    let requests = server.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(
        requests[0].json(),
        json!({"messages":[{"role":"user","content":"hi"}],"model":"gpt-3.5-turbo",
               "temperature":1,"presence_penalty":0,"top_p":1,"frequency_penalty":0,
               "allow_fallback":true,"stream":true})
    );
    let body = requests[1].json();
    assert_eq!(body["model"], "my-model");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["top_p"], 1);
    assert_eq!(body["messages"][0]["role"], "system");
}

#[test]
fn default_headers_api_key_and_header_changes() {
    let server = Server::always(ok_stream());
    let client = CClient::new(&server.base_url());
    client.chat(None).ok();
    assert_eq!(client.set_api_key("sk-test-123"), YLOKH_OK);
    assert_eq!(client.set_header("Origin", None), YLOKH_OK);
    assert_eq!(client.set_header("X-Extra", Some("1")), YLOKH_OK);
    client.chat(None).ok();
    assert_eq!(
        client.set_header("authorization", Some("Token abc")),
        YLOKH_OK
    );
    client.chat(None).ok();

    let r = server.requests();
    assert_eq!(r[0].header("Origin"), Some("https://chat.ylokh.xyz"));
    assert_eq!(r[0].header("Referer"), Some("https://chat.ylokh.xyz/"));
    assert_eq!(r[0].header("Content-Type"), Some("application/json"));
    assert_eq!(r[0].header("Authorization"), None);
    assert_eq!(r[1].header("Authorization"), Some("Bearer sk-test-123"));
    assert_eq!(r[1].header("Origin"), None);
    assert_eq!(r[1].header("Referer"), Some("https://chat.ylokh.xyz/"));
    assert_eq!(r[1].header("X-Extra"), Some("1"));
    // An explicit Authorization header wins over the API key, and is sent once.
    assert_eq!(r[2].header("Authorization"), Some("Token abc"));
    let count = r[2]
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .count();
    assert_eq!(count, 1);
}

#[test]
fn bad_input_is_refused_and_never_reaches_the_network() {
    let server = Server::always(ok_stream());
    let client = CClient::new(&server.base_url());
    let cases = [
        ("not json", None, "messages are not valid JSON"),
        (r#"{"role":"user"}"#, None, "JSON array"),
        (r#"["hi"]"#, None, "messages[0] is not a JSON object"),
        (r#"[{"content":"x"}]"#, None, "messages[0] has no role"),
        (
            r#"[{"role":"user","content":{}}]"#,
            None,
            "messages[0].content",
        ),
        (USER_HI, Some("[1,2]"), "options must be a JSON object"),
        (USER_HI, Some("{bad"), "options are not valid JSON"),
        (USER_HI, Some(r#"{"stream":"yes"}"#), "options.stream"),
    ];
    for (messages, options, expected) in cases {
        let out = client.chat_full(None, messages, options, None);
        assert_eq!(
            out.status, YLOKH_E_INVALID_ARGUMENT,
            "{messages} {options:?}"
        );
        assert!(out.error.contains(expected), "{expected}: {}", out.error);
    }
    // NULL pointers and non-UTF-8 strings.
    let messages = cstring(USER_HI);
    let bad_utf8 = b"[{\"role\":\"user\",\"content\":\"\xff\"}]\0";
    // SAFETY: each pointer is NULL or a NUL-terminated string; the callbacks are valid.
    unsafe {
        let cb = Some(collect_token as unsafe extern "C" fn(_, _, _) -> _);
        let mut collector = Collector {
            outcome: Outcome::default(),
            abort_after: None,
        };
        let ud = (&mut collector as *mut Collector).cast::<c_void>();
        assert_eq!(
            ylokh_chat(
                ptr::null_mut(),
                ptr::null(),
                messages.as_ptr(),
                ptr::null(),
                cb,
                ud
            ),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert!(last_error().contains("client is NULL"));
        assert_eq!(
            ylokh_chat(client.0, ptr::null(), ptr::null(), ptr::null(), cb, ud),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert!(last_error().contains("messages_json is NULL"));
        assert_eq!(
            ylokh_chat(
                client.0,
                ptr::null(),
                messages.as_ptr(),
                ptr::null(),
                None,
                ud
            ),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert!(last_error().contains("on_token is NULL"));
        assert_eq!(
            ylokh_chat(
                client.0,
                ptr::null(),
                bad_utf8.as_ptr().cast(),
                ptr::null(),
                cb,
                ud
            ),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert!(last_error().contains("not valid UTF-8"), "{}", last_error());
        assert_eq!(
            ylokh_chat_ex(client.0, ptr::null()),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert_eq!(
            ylokh_client_set_base_url(ptr::null_mut(), messages.as_ptr()),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert_eq!(
            ylokh_client_set_timeout_ms(client.0, 0),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert_eq!(
            ylokh_client_set_max_event_bytes(client.0, 10),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert_eq!(ylokh_cancel_trigger(ptr::null()), YLOKH_E_INVALID_ARGUMENT);
        assert_eq!(
            ylokh_conversation_add(ptr::null_mut(), messages.as_ptr(), messages.as_ptr()),
            YLOKH_E_INVALID_ARGUMENT
        );
        // Freeing NULL does nothing.
        ylokh_client_free(ptr::null_mut());
        ylokh_conversation_free(ptr::null_mut());
        ylokh_cancel_free(ptr::null_mut());
        ylokh_string_free(ptr::null_mut());
    }
    for (name, value, expected) in [
        ("Bad Name", Some("x"), "not a valid header name"),
        ("X-Ok", Some("a\r\nInjected: 1"), "not valid"),
    ] {
        assert_eq!(client.set_header(name, value), YLOKH_E_INVALID_ARGUMENT);
        assert!(last_error().contains(expected), "{}", last_error());
    }
    for url in ["ftp://x/v1", "localhost:8080", "", "http://"] {
        assert_eq!(client.set_base_url(url), YLOKH_E_INVALID_ARGUMENT, "{url}");
    }
    assert!(
        server.requests().is_empty(),
        "bad input reached the network"
    );
    // The client still works, with its old base URL.
    client.chat(None).ok();
}

#[test]
fn retries_on_5xx_then_succeeds() {
    let server = Server::sequence(vec![
        Script::json(503, &error_json("busy", "server_error")),
        Script::json(500, &error_json("oops", "server_error")),
        ok_stream(),
    ]);
    let out = CClient::new(&server.base_url()).chat(None);
    out.ok();
    assert_eq!(out.text(), "ok");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn retries_stop_after_max_retries_with_the_last_error() {
    let server = Server::always(Script::json(
        502,
        &error_json("bad gateway", "server_error"),
    ));
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_retries(client.0, 3) },
        YLOKH_OK
    );
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS);
    assert_eq!(out.http_status, 502);
    assert!(out.error.contains("bad gateway"));
    assert_eq!(server.requests().len(), 4);

    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_retries(client.0, 0) },
        YLOKH_OK
    );
    client.chat(None);
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn retry_after_is_honoured_for_429_and_408() {
    for status in [429, 408] {
        let limited = Script::response(
            status,
            &[
                ("Content-Type", "application/json"),
                ("Retry-After-Ms", "300"),
            ],
            error_json("slow down", "rate_limit").as_bytes(),
            Framing::ContentLength,
        );
        let server = Server::sequence(vec![limited, ok_stream()]);
        let started = Instant::now();
        CClient::new(&server.base_url()).chat(None).ok();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{status}: {:?}",
            started.elapsed()
        );
        assert_eq!(server.requests().len(), 2);
    }
    // Retry-After in seconds.
    let limited = Script::response(429, &[("Retry-After", "1")], b"", Framing::ContentLength);
    let server = Server::sequence(vec![limited, ok_stream()]);
    let started = Instant::now();
    CClient::new(&server.base_url()).chat(None).ok();
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn no_retry_once_a_token_was_delivered() {
    let body = format!("{}{}", chunk_event("a"), chunk_event("b"));
    let server =
        Server::always(Script::sse(body.as_bytes(), Framing::Chunked(vec![])).then(Step::Reset));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_ne!(out.status, YLOKH_OK);
    assert_eq!(out.text(), "ab");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_pooled_connection_closed_by_the_server_is_replaced_at_once() {
    let server = Server::sequence(vec![
        ok_stream(),
        Script::close(),
        ok_stream(),
        Script::close(),
    ]);
    let client = CClient::new(&server.base_url());
    // SAFETY: live client. Without retries, only the stale-connection resend can help.
    assert_eq!(
        unsafe { ylokh_client_set_max_retries(client.0, 0) },
        YLOKH_OK
    );
    client.chat(None).ok();
    client.chat(None).ok();
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.connections(), 2);
    // On a fresh connection the same failure is not resent.
    let fresh = Server::always(Script::close());
    let out = CClient::new(&fresh.base_url()).chat_full(None, USER_HI, None, None);
    assert_eq!(out.status, YLOKH_E_IO, "{}", out.error);
    assert_eq!(fresh.requests().len(), 1);
}

#[test]
fn a_pooled_connection_with_stray_bytes_waiting_is_not_reused() {
    // After a complete reply, the server writes what looks like a second reply on the idle
    // connection. The liveness check (a peek that does not wait) must see the bytes and
    // drop the connection, not parse them as the next call's reply.
    let mut stray = ok_stream();
    stray.steps.push(Step::Sleep(Duration::from_millis(50)));
    stray.steps.push(Step::Write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ));
    let server = Server::sequence(vec![stray, ok_stream()]);
    let client = CClient::new(&server.base_url());
    assert_eq!(client.chat(None).ok().text(), "ok");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(client.chat(None).ok().text(), "ok");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(
        server.connections(),
        2,
        "the connection with stray bytes was dropped"
    );
}

#[test]
fn connect_failure_is_retried_and_reported() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = CClient::new(&format!("http://127.0.0.1:{port}/v1"));
    let started = Instant::now();
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_CONNECT, "{}", out.error);
    assert_eq!(out.http_status, 0);
    assert!(!out.error.is_empty());
    // Two retries with a 10 ms base delay (jittered): at least ~15 ms spent waiting.
    assert!(started.elapsed() >= Duration::from_millis(15));
}

#[test]
fn unknown_host_is_a_connect_error() {
    let client = CClient::new("http://no-such-host.invalid/v1");
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_retries(client.0, 0) },
        YLOKH_OK
    );
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_CONNECT, "{}", out.error);
    assert!(out.error.contains("no-such-host.invalid"), "{}", out.error);
}

#[test]
fn idle_timeout_fires_on_a_silent_server_but_not_on_a_slow_steady_stream() {
    // Headers, one token, then silence.
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let server = Server::always(
        Script::raw(head.to_vec())
            .then(Step::Write(encode_chunk(chunk_event("a").as_bytes())))
            .then(Step::Stall),
    );
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_timeout_ms(client.0, 300) },
        YLOKH_OK
    );
    let started = Instant::now();
    let out = client.chat(None);
    let elapsed = started.elapsed();
    assert_eq!(out.status, YLOKH_E_TIMEOUT, "{}", out.error);
    assert_eq!(out.text(), "a");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );

    // A token every 150 ms for 1.5 s, with the same 300 ms timeout: never cut.
    let mut steps = vec![Step::Write(head.to_vec())];
    for i in 0..10 {
        steps.push(Step::Sleep(Duration::from_millis(150)));
        steps.push(Step::Write(encode_chunk(
            chunk_event(&i.to_string()).as_bytes(),
        )));
    }
    steps.push(Step::Write(encode_chunk(DONE.as_bytes())));
    steps.push(Step::Write(b"0\r\n\r\n".to_vec()));
    let server = Server::always(Script::new(steps));
    client.set_base_url(&server.base_url());
    let out = client.chat(None);
    out.ok();
    assert_eq!(out.text(), "0123456789");
}

#[test]
fn a_timeout_longer_than_a_read_slice_fires_once_at_its_end() {
    // A call without a cancel token waits for input in slices of at most 1 s (so that the
    // socket's timeout stays the same from one read to the next). A 2.5 s timeout spans
    // three slices: it must fire once, after 2.5 s, neither at the first slice's end nor
    // never (a budget restarted at each slice).
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let server = Server::always(
        Script::raw(head.to_vec())
            .then(Step::Write(encode_chunk(chunk_event("a").as_bytes())))
            .then(Step::Stall),
    );
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_timeout_ms(client.0, 2_500) },
        YLOKH_OK
    );
    let started = Instant::now();
    let out = client.chat(None);
    let elapsed = started.elapsed();
    assert_eq!(out.status, YLOKH_E_TIMEOUT, "{}", out.error);
    assert_eq!(out.text(), "a");
    assert!(
        elapsed >= Duration::from_millis(2_500) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
}

#[test]
fn silent_server_before_headers_times_out() {
    let server = Server::always(Script::stall());
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    unsafe {
        assert_eq!(ylokh_client_set_timeout_ms(client.0, 200), YLOKH_OK);
        assert_eq!(ylokh_client_set_max_retries(client.0, 0), YLOKH_OK);
    }
    let started = Instant::now();
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_TIMEOUT, "{}", out.error);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn deadline_bounds_the_whole_call() {
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut steps = vec![Step::Write(head.to_vec())];
    for i in 0..40 {
        steps.push(Step::Sleep(Duration::from_millis(50)));
        steps.push(Step::Write(encode_chunk(
            chunk_event(&format!("{i},")).as_bytes(),
        )));
    }
    let server = Server::always(Script::new(steps));
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_deadline_ms(client.0, 500) },
        YLOKH_OK
    );
    let started = Instant::now();
    let out = client.chat(None);
    let elapsed = started.elapsed();
    assert_eq!(out.status, YLOKH_E_TIMEOUT, "{}", out.error);
    assert!(!out.tokens.is_empty() && out.tokens.len() < 40);
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[test]
fn cancel_from_another_thread_stops_a_waiting_call_quickly() {
    let server = Server::always(Script::stall());
    let client = Arc::new(CClient::new(&server.base_url()));
    let cancel = ylokh_cancel_new();
    let cancel_addr = cancel as usize;
    let worker = {
        let client = client.clone();
        thread::spawn(move || {
            let messages = cstring(USER_HI);
            let mut collector = Collector {
                outcome: Outcome::default(),
                abort_after: None,
            };
            let request = ylokh_request {
                struct_size: std::mem::size_of::<ylokh_request>(),
                model: ptr::null(),
                messages_json: messages.as_ptr(),
                options_json: ptr::null(),
                conversation: ptr::null_mut(),
                on_token: Some(collect_token),
                on_event: None,
                userdata: (&mut collector as *mut Collector).cast(),
                cancel: cancel_addr as *const ylokh_cancel,
            };
            // SAFETY: every pointer in the request lives until the call returns.
            let status = unsafe { ylokh_chat_ex(client.0, &request) };
            (status, last_error(), Instant::now())
        })
    };
    assert!(server.wait_until(Duration::from_secs(5), |s| s.requests().len() == 1));
    thread::sleep(Duration::from_millis(100));
    let cancelled_at = Instant::now();
    // SAFETY: live token.
    assert_eq!(unsafe { ylokh_cancel_trigger(cancel) }, YLOKH_OK);
    let (status, error, returned_at) = worker.join().unwrap();
    assert_eq!(status, YLOKH_E_ABORTED, "{error}");
    assert!(error.contains("cancelled"), "{error}");
    let took = returned_at - cancelled_at;
    assert!(took < Duration::from_millis(100), "cancel took {took:?}");
    // SAFETY: no call uses the token any more.
    unsafe { ylokh_cancel_free(cancel) };
}

#[test]
fn eight_threads_share_one_client() {
    let server = Server::start(|req| {
        let who = req.json()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        let tokens: Vec<String> = (0..20).map(|i| format!("{who}-{i};")).collect();
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        Script::sse(&sse_stream(&refs), Framing::ChunkedEvery(97)).with_keep_alive(true)
    });
    let client = Arc::new(CClient::new(&server.base_url()));
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let client = client.clone();
            thread::spawn(move || {
                for call in 0..10 {
                    let who = format!("t{t}c{call}");
                    let messages = format!(r#"[{{"role":"user","content":"{who}"}}]"#);
                    let out = client.chat_full(None, &messages, None, None);
                    out.ok();
                    let want: String = (0..20).map(|i| format!("{who}-{i};")).collect();
                    assert_eq!(out.text(), want);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(server.requests().len(), 80);
    // Pooled: 8 connections when every call finds its body's end within the 10 ms drain
    // after [DONE]; on a machine busy with other tests some do not and open a new one.
    // Without pooling it would be 80.
    assert!(
        server.connections() <= 40,
        "connections are pooled: {}",
        server.connections()
    );
}

#[test]
fn a_setter_during_a_chat_affects_only_later_calls() {
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut steps = vec![Step::Write(head.to_vec())];
    for t in ["slow", "-", "one"] {
        steps.push(Step::Sleep(Duration::from_millis(150)));
        steps.push(Step::Write(encode_chunk(chunk_event(t).as_bytes())));
    }
    steps.push(Step::Write(encode_chunk(
        format!("{}{}", finish_event("stop"), DONE).as_bytes(),
    )));
    steps.push(Step::Write(b"0\r\n\r\n".to_vec()));
    let first = Server::always(Script::new(steps));
    let second = Server::always(ok_stream());
    let client = Arc::new(CClient::new(&first.base_url()));
    let worker = {
        let client = client.clone();
        thread::spawn(move || client.chat(None))
    };
    assert!(first.wait_until(Duration::from_secs(5), |s| s.requests().len() == 1));
    assert_eq!(client.set_base_url(&second.base_url()), YLOKH_OK);
    assert_eq!(client.set_api_key("sk-later"), YLOKH_OK);
    let out = worker.join().unwrap();
    out.ok();
    assert_eq!(out.text(), "slow-one");
    assert_eq!(first.requests()[0].header("Authorization"), None);
    client.chat(None).ok();
    assert_eq!(second.requests().len(), 1);
    assert_eq!(
        second.requests()[0].header("Authorization"),
        Some("Bearer sk-later")
    );
}

extern "C" fn reenter(userdata: *mut c_void, _token: *const c_char, _len: usize) -> c_int {
    // SAFETY: userdata is the (client, status) pair of the test below.
    let (client, status) = unsafe { &mut *(userdata as *mut (*mut ylokh_client, c_int)) };
    let messages = cstring(USER_HI);
    // SAFETY: live client, valid strings; the nested call must be refused, not run.
    *status = unsafe {
        ylokh_chat(
            *client,
            ptr::null(),
            messages.as_ptr(),
            ptr::null(),
            Some(reenter),
            userdata,
        )
    };
    0
}

#[test]
fn a_chat_from_inside_a_callback_is_refused() {
    let server = Server::always(ok_stream());
    let client = CClient::new(&server.base_url());
    let messages = cstring(USER_HI);
    let mut state: (*mut ylokh_client, c_int) = (client.0, -1);
    // SAFETY: live client; state outlives the call.
    let status = unsafe {
        ylokh_chat(
            client.0,
            ptr::null(),
            messages.as_ptr(),
            ptr::null(),
            Some(reenter),
            (&mut state as *mut (*mut ylokh_client, c_int)).cast(),
        )
    };
    assert_eq!(status, YLOKH_OK);
    assert_eq!(state.1, YLOKH_E_INVALID_ARGUMENT);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn chat_text_returns_the_whole_reply() {
    let server = Server::always(Script::sse(
        &sse_stream(&["a\u{0}", "bc"]),
        Framing::ChunkedEvery(20),
    ));
    let client = CClient::new(&server.base_url());
    let messages = cstring(USER_HI);
    let mut text: *mut c_char = ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: live client; out pointers are valid.
    unsafe {
        let status = ylokh_chat_text(
            client.0,
            ptr::null(),
            messages.as_ptr(),
            ptr::null(),
            &mut text,
            &mut len,
        );
        assert_eq!(status, YLOKH_OK, "{}", last_error());
        assert_eq!(
            std::slice::from_raw_parts(text.cast::<u8>(), len + 1),
            b"a\0bc\0"
        );
        ylokh_string_free(text);
    }
    // On failure the output is untouched.
    let failing = Server::always(Script::json(400, &error_json("no", "bad")));
    client.set_base_url(&failing.base_url());
    let mut untouched: *mut c_char = ptr::null_mut();
    // SAFETY: as above.
    let status = unsafe {
        ylokh_chat_text(
            client.0,
            ptr::null(),
            messages.as_ptr(),
            ptr::null(),
            &mut untouched,
            ptr::null_mut(),
        )
    };
    assert_eq!(status, YLOKH_E_HTTP_STATUS);
    assert!(untouched.is_null());
}

#[test]
fn conversation_sends_history_and_keeps_only_successful_replies() {
    let server = Server::sequence(vec![
        Script::sse(&sse_stream(&["Paris", "."]), Framing::ContentLength).with_keep_alive(true),
        Script::json(500, &error_json("down", "server_error")).with_keep_alive(true),
        Script::sse(&sse_stream(&["About ", "2M."]), Framing::ContentLength).with_keep_alive(true),
    ]);
    let client = CClient::new(&server.base_url());
    // SAFETY: live client with no retries; the conversation is used by this thread only.
    unsafe {
        assert_eq!(ylokh_client_set_max_retries(client.0, 0), YLOKH_OK);
        let conv = ylokh_conversation_new();
        let add = |role: &str, text: &str| {
            let (r, t) = (cstring(role), cstring(text));
            ylokh_conversation_add(conv, r.as_ptr(), t.as_ptr())
        };
        assert_eq!(add("system", "Be brief."), YLOKH_OK);
        assert_eq!(add("user", "Capital of France?"), YLOKH_OK);
        let chat = || {
            let mut collector = Collector {
                outcome: Outcome::default(),
                abort_after: None,
            };
            let status = ylokh_conversation_chat(
                client.0,
                conv,
                ptr::null(),
                ptr::null(),
                Some(collect_token),
                (&mut collector as *mut Collector).cast(),
            );
            (status, collector.outcome.text())
        };
        assert_eq!(chat(), (YLOKH_OK, "Paris.".to_owned()));
        assert_eq!(ylokh_conversation_len(conv), 3);
        assert_eq!(add("user", "Population?"), YLOKH_OK);
        assert_eq!(chat().0, YLOKH_E_HTTP_STATUS);
        assert_eq!(
            ylokh_conversation_len(conv),
            4,
            "a failed call adds nothing"
        );
        assert_eq!(chat(), (YLOKH_OK, "About 2M.".to_owned()));
        assert_eq!(ylokh_conversation_len(conv), 5);

        let sent = server.requests()[2].json()["messages"].clone();
        assert_eq!(
            sent,
            json!([{"role":"system","content":"Be brief."},
                   {"role":"user","content":"Capital of France?"},
                   {"role":"assistant","content":"Paris."},
                   {"role":"user","content":"Population?"}])
        );

        let mut text: *mut c_char = ptr::null_mut();
        assert_eq!(
            ylokh_conversation_to_json(conv, &mut text, ptr::null_mut()),
            YLOKH_OK
        );
        let saved = CStr::from_ptr(text).to_str().unwrap().to_owned();
        let mut restored: *mut ylokh_conversation = ptr::null_mut();
        assert_eq!(ylokh_conversation_from_json(text, &mut restored), YLOKH_OK);
        ylokh_string_free(text);
        assert_eq!(ylokh_conversation_len(restored), 5);
        let value: serde_json::Value = serde_json::from_str(&saved).unwrap();
        assert_eq!(value[4], json!({"role":"assistant","content":"About 2M."}));

        let bad = cstring(r#"[{"role":1}]"#);
        let mut untouched: *mut ylokh_conversation = ptr::null_mut();
        assert_eq!(
            ylokh_conversation_from_json(bad.as_ptr(), &mut untouched),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert!(untouched.is_null());
        assert_eq!(ylokh_conversation_clear(restored), YLOKH_OK);
        assert_eq!(ylokh_conversation_len(restored), 0);
        ylokh_conversation_free(restored);
        ylokh_conversation_free(conv);
    }
}

#[test]
fn status_strings_version_and_provider_facts() {
    let text = |p: *const c_char| {
        // SAFETY: static NUL-terminated strings from the library.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
    };
    assert_eq!(text(ylokh_status_str(YLOKH_OK)), "ok");
    for status in 1..=10 {
        let s = text(ylokh_status_str(status));
        assert!(!s.is_empty() && s != "unknown status", "{status}");
    }
    assert_eq!(
        text(ylokh_status_str(YLOKH_E_AGAIN)),
        "nothing yet, try again"
    );
    assert_eq!(text(ylokh_status_str(12)), "unknown status");
    assert_eq!(text(ylokh_status_str(-5)), "unknown status");
    assert_eq!(text(ylokh_version()), env!("CARGO_PKG_VERSION"));
    // SAFETY: static data.
    let info = unsafe { &*ylokh_provider() };
    assert_eq!(text(info.url), "https://chat.ylokh.xyz");
    assert_eq!(text(info.api_base), "https://chatapi.ylokh.xyz/v1");
    assert_eq!(text(info.default_model), "gpt-3.5-turbo");
    assert_eq!(info.working, 0);
    assert_eq!(info.supports_message_history, 1);
    assert_eq!(info.supports_gpt_35_turbo, 1);
}

#[test]
fn a_panic_inside_the_library_comes_back_as_internal_and_the_process_lives() {
    assert_eq!(ylokh_test_panic(), YLOKH_E_INTERNAL);
    assert!(
        last_error().contains("test panic requested"),
        "{}",
        last_error()
    );
    let server = Server::always(ok_stream());
    CClient::new(&server.base_url()).chat(None).ok();
}

extern "C" fn collect_log(userdata: *mut c_void, message: *const c_char, len: usize) {
    // SAFETY: userdata is the Mutex<Vec<String>> of the test below; message has len bytes.
    unsafe {
        let lines = &*(userdata as *const std::sync::Mutex<Vec<String>>);
        let bytes = std::slice::from_raw_parts(message.cast::<u8>(), len);
        lines
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(bytes).into_owned());
    }
}

#[test]
fn the_log_tells_each_step_and_never_a_secret() {
    let key = "sk-log-secret-42";
    let server = Server::sequence(vec![
        Script::json(
            503,
            &error_json(&format!("busy, key {key}"), "server_error"),
        ),
        ok_stream(),
        ok_stream(),
    ]);
    let client = CClient::new(&server.base_url());
    assert_eq!(client.set_api_key(key), YLOKH_OK);
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    // SAFETY: live client; `lines` outlives every call made before the log is removed.
    unsafe {
        let ud = (&lines as *const std::sync::Mutex<Vec<String>>)
            .cast_mut()
            .cast();
        assert_eq!(
            ylokh_client_set_log(client.0, Some(collect_log), ud),
            YLOKH_OK
        );
    }
    client.chat(None).ok();
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_log(client.0, None, ptr::null_mut()) },
        YLOKH_OK
    );
    client.chat(None).ok();

    let lines = lines.into_inner().unwrap();
    let log = lines.join("\n");
    let url = format!("{}/chat/completions", server.base_url());
    for expected in [
        format!("POST {url} (attempt 1)"),
        "HTTP 503 after".to_owned(),
        "retrying in".to_owned(),
        format!("POST {url} (attempt 2)"),
        "HTTP 200 after".to_owned(),
        "first event after".to_owned(),
        "done after".to_owned(),
    ] {
        assert!(log.contains(&expected), "log lacks {expected:?}:\n{log}");
    }
    assert!(log.contains("<redacted>"), "{log}");
    assert!(!log.contains(key), "{log}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("POST")).count(),
        2,
        "nothing logged once removed"
    );
}
