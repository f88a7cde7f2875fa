//! Hostile servers, through the C ABI against loopback servers (SECURITY.md, "The server's
//! bytes" and "Redirects"): redirects that would carry credentials to another origin,
//! endless informational responses, and text meant to inject into terminals and logs.

mod common;

use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::capi::*;
use common::hostile::*;
use common::raw::RawServer;
use common::*;
use ylokh::ffi::*;

fn redirect(status: u16, location: &str) -> Script {
    Script::response(
        status,
        &[("Location", location)],
        b"",
        Framing::ContentLength,
    )
}

/// Every kind of credential a program may give: the API key, and headers that carry one
/// (Azure's `api-key`, Anthropic's `x-api-key`, cookies) or may (any custom header).
fn client_with_credentials(url: &str) -> CClient {
    let c = CClient::new(url);
    assert_eq!(c.set_api_key("sk-key-secret"), YLOKH_OK);
    for (name, value) in [
        ("api-key", "azure-secret"),
        ("x-api-key", "anthropic-secret"),
        ("Cookie", "session=cookie-secret"),
        ("X-Custom-Token", "custom-secret"),
    ] {
        assert_eq!(c.set_header(name, Some(value)), YLOKH_OK, "{name}");
    }
    c
}

fn allow_cross_origin_redirects(c: &CClient, allow: bool) {
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_cross_origin_redirects(c.0, i32::from(allow)) },
        YLOKH_OK
    );
}

#[test]
fn a_redirect_to_another_origin_is_refused_by_default_and_names_the_location() {
    let other = Server::always(Script::sse(&sse_stream(&["x"]), Framing::ContentLength));
    let target = format!("{}/chat/completions", other.base_url());
    for status in [307, 308] {
        let server = Server::always(redirect(status, &target));
        let c = client_with_credentials(&server.base_url());
        let out = c.chat(None);
        assert_eq!(out.status, YLOKH_E_HTTP_STATUS, "{}", out.error);
        assert_eq!(out.http_status, i32::from(status));
        assert!(out.error.contains(&target), "{}", out.error);
        assert!(
            out.error
                .contains("ylokh_client_set_cross_origin_redirects"),
            "{}",
            out.error
        );
    }
    assert!(
        other.requests().is_empty(),
        "nothing reached the other origin"
    );
}

#[test]
fn an_allowed_cross_origin_redirect_carries_no_credential_of_any_kind() {
    let other = Server::always(Script::sse(
        &sse_stream(&["elsewhere"]),
        Framing::ContentLength,
    ));
    // Another port of the same host is another origin.
    let target = format!("{}/chat/completions", other.base_url());
    let server = Server::always(redirect(307, &target));
    let c = client_with_credentials(&server.base_url());
    allow_cross_origin_redirects(&c, true);
    assert_eq!(c.chat(None).ok().text(), "elsewhere");
    let sent = &other.requests()[0];
    let head = format!("{:?}", sent.headers).to_ascii_lowercase();
    for leak in [
        "secret",
        "authorization",
        "api-key",
        "cookie",
        "x-custom-token",
    ] {
        assert!(
            !head.contains(leak),
            "{leak} reached the other origin: {head}"
        );
    }
    assert_eq!(sent.json(), server.requests()[0].json(), "the body follows");
    // The origin itself had everything.
    let first = &server.requests()[0];
    assert_eq!(first.header("Authorization"), Some("Bearer sk-key-secret"));
    assert_eq!(first.header("api-key"), Some("azure-secret"));

    // Turned off again: refused.
    allow_cross_origin_redirects(&c, false);
    assert_eq!(c.chat(None).status, YLOKH_E_HTTP_STATUS);
    assert_eq!(other.requests().len(), 1);
}

#[test]
fn a_same_origin_redirect_keeps_every_header() {
    let server = Server::start(|req| {
        if req.path == "/v1/chat/completions" {
            redirect(307, "/v2/chat/completions")
        } else {
            Script::sse(&sse_stream(&["moved"]), Framing::ContentLength)
        }
    });
    let c = client_with_credentials(&server.base_url());
    assert_eq!(c.chat(None).ok().text(), "moved");
    let second = &server.requests()[1];
    assert_eq!(second.header("api-key"), Some("azure-secret"));
    assert_eq!(second.header("Authorization"), Some("Bearer sk-key-secret"));
}

#[test]
fn a_redirect_to_a_url_with_user_and_password_is_refused_without_showing_them() {
    let server = Server::start(|req| {
        let port = req
            .header("host")
            .and_then(|h| h.rsplit(':').next())
            .unwrap_or("1")
            .to_owned();
        redirect(
            307,
            &format!("http://mallory:pw-in-location@127.0.0.1:{port}/v2/chat/completions"),
        )
    });
    let c = CClient::new(&server.base_url());
    allow_cross_origin_redirects(&c, true);
    let out = c.chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL, "{}", out.error);
    assert!(!out.error.contains("pw-in-location"), "{}", out.error);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_location_echoing_the_api_key_is_redacted() {
    let server = Server::always(redirect(307, "http://127.0.0.1:1/v1?key=sk-key-secret"));
    let c = client_with_credentials(&server.base_url());
    let out = c.chat(None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS, "{}", out.error);
    assert!(!out.error.contains("sk-key-secret"), "{}", out.error);
    assert!(out.error.contains("<redacted>"), "{}", out.error);
}

#[test]
fn endless_informational_responses_are_bounded() {
    // 102 Processing every 20 ms, 500 times (10 s), then a reply: each one restarts the
    // wait, so only a bound on their number ends the call early.
    let server = RawServer::start(|conn| {
        if conn.read_request().is_none() {
            return;
        }
        for _ in 0..500 {
            if !conn.write(b"HTTP/1.1 102 Processing\r\n\r\n")
                || !conn.sleep(Duration::from_millis(20))
            {
                return;
            }
        }
        let body = sse_stream(&["late"]);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write(head.as_bytes());
        conn.write(&body);
    });
    let c = CClient::new(&server.base_url());
    set_timeout_ms(&c, 2000);
    set_max_retries(&c, 0);
    let started = Instant::now();
    let out = c.chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL, "{}", out.error);
    assert!(out.error.contains("informational"), "{}", out.error);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_few_informational_responses_are_still_skipped() {
    let body = sse_stream(&["a"]);
    let mut steps =
        vec![Step::Write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".to_vec()); 8];
    steps.push(Step::Write(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes(),
    ));
    steps.push(Step::Write(body));
    let server = Server::always(Script::new(steps));
    assert_eq!(CClient::new(&server.base_url()).chat(None).ok().text(), "a");
}

extern "C" fn collect_log(userdata: *mut c_void, message: *const c_char, len: usize) {
    // SAFETY: userdata is the Mutex<Vec<String>> the test passed; message has len bytes.
    unsafe {
        let lines = &*(userdata as *const Mutex<Vec<String>>);
        let bytes = std::slice::from_raw_parts(message.cast::<u8>(), len);
        lines
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(bytes).into_owned());
    }
}

fn has_control(text: &str) -> Option<char> {
    text.chars()
        .find(|c| c.is_control() || matches!(*c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

#[test]
fn control_characters_from_the_server_never_reach_last_error_or_the_log() {
    let hostile = "bad key\r\nINFO forged log line\u{1b}[31mred\u{7}\u{8}\u{202e}txet";
    let body = serde_json::json!({"error": {"message": hostile}}).to_string();
    let in_stream = format!(
        "event: error\ndata: {}\n\n",
        serde_json::json!({"error": {"message": hostile}})
    );
    let server = Server::sequence(vec![
        Script::json(400, &body),
        Script::sse(in_stream.as_bytes(), Framing::ContentLength),
        Script::json(200, &body),
    ]);
    let c = CClient::new(&server.base_url());
    let lines = Mutex::new(Vec::<String>::new());
    // SAFETY: live client; `lines` outlives every call made before the log is removed.
    unsafe {
        let ud = (&lines as *const Mutex<Vec<String>>).cast_mut().cast();
        assert_eq!(ylokh_client_set_log(c.0, Some(collect_log), ud), YLOKH_OK);
    }
    for case in ["HTTP error body", "error event", "JSON error in a 200"] {
        let out = c.chat(if case.contains("200") {
            Some(r#"{"stream":false}"#)
        } else {
            None
        });
        assert_ne!(out.status, YLOKH_OK, "{case}");
        assert!(
            out.error.contains("forged log line"),
            "{case}: {}",
            out.error
        );
        assert_eq!(has_control(&out.error), None, "{case}: {:?}", out.error);
        assert!(
            out.error.contains("\\n") && out.error.contains("\\x1b"),
            "{case}: {}",
            out.error
        );
    }
    // SAFETY: live client.
    unsafe { ylokh_client_set_log(c.0, None, ptr::null_mut()) };
    let lines = lines.into_inner().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("forged log line")),
        "{lines:?}"
    );
    for line in &lines {
        assert_eq!(has_control(line), None, "{line:?}");
    }
}
