//! Hostile or careless callers, through the C ABI (SECURITY.md, "C arguments" and "The
//! calling program"): headers that would change the request's framing, URLs with bad
//! ports, credentials or non-ASCII paths, API keys that cannot be sent, hostile JSON, and
//! a cancel from inside the call's own callback. Every refusal is
//! `YLOKH_E_INVALID_ARGUMENT` with a message saying what is wrong, and loses nothing: the
//! previous setting stays and the next chat works.

mod common;

use std::ffi::{c_char, c_int, c_void, CStr};

use common::capi::*;
use common::hostile::*;
use common::*;
use ylokh::ffi::*;

fn ok_server() -> Server {
    Server::always(Script::sse(&sse_stream(&["ok"]), Framing::ContentLength).with_keep_alive(true))
}

#[test]
fn headers_that_define_framing_or_the_connection_are_refused() {
    let server = ok_server();
    let c = CClient::new(&server.base_url());
    for name in [
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Host",
        "Keep-Alive",
        "Proxy-Connection",
    ] {
        for value in [Some("999"), Some("0"), Some("chunked"), None] {
            assert_eq!(
                c.set_header(name, value),
                YLOKH_E_INVALID_ARGUMENT,
                "{name}: {value:?}"
            );
            let error = last_error();
            assert!(error.contains(name), "{error}");
        }
    }
    // Nothing was lost: the next chat sends one correct framing header.
    assert_eq!(c.chat(None).ok().text(), "ok");
    let request = &server.requests()[0];
    let lengths: Vec<_> = request
        .headers
        .iter()
        .filter(|(n, _)| {
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
        })
        .collect();
    assert_eq!(lengths.len(), 1, "{:?}", request.headers);
    assert_eq!(
        lengths[0].1.parse::<usize>().ok(),
        Some(request.body.len()),
        "{:?}",
        request.headers
    );
}

#[test]
fn a_content_type_set_by_the_program_replaces_the_librarys() {
    let server = ok_server();
    let c = CClient::new(&server.base_url());
    assert_eq!(
        c.set_header("content-type", Some("application/json; charset=utf-8")),
        YLOKH_OK
    );
    c.chat(None).ok();
    let request = &server.requests()[0];
    let types: Vec<_> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(types, ["application/json; charset=utf-8"]);
}

#[test]
fn header_names_and_values_that_could_split_the_request_are_refused() {
    let c = CClient::new("http://127.0.0.1:9/v1");
    for (name, value) in [
        ("X-A", "one\r\nX-Injected: 1"),
        ("X-A", "one\nX-Injected: 1"),
        ("X-A", "bell\u{7}"),
        ("X-A B", "v"),
        ("X-A:", "v"),
        ("", "v"),
        ("X-\u{e9}", "v"),
    ] {
        assert_eq!(
            c.set_header(name, Some(value)),
            YLOKH_E_INVALID_ARGUMENT,
            "{name:?}: {value:?}"
        );
        assert_eq!(has_control(&last_error()), None, "{:?}", last_error());
    }
}

fn has_control(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control())
}

#[test]
fn base_urls_with_invalid_ports_are_refused_and_the_old_one_kept() {
    let server = ok_server();
    let c = CClient::new(&server.base_url());
    for bad in [
        "http://127.0.0.1:65536/v1",
        "http://127.0.0.1:65616/v1",
        "http://127.0.0.1:99999999999/v1",
        "http://127.0.0.1:-1/v1",
        "http://127.0.0.1:/v1",
        "http://127.0.0.1:0/v1",
        "http://127.0.0.1:8x/v1",
        "https://[::1]:70000/v1",
    ] {
        assert_eq!(c.set_base_url(bad), YLOKH_E_INVALID_ARGUMENT, "{bad}");
        assert!(last_error().contains("port"), "{bad}: {}", last_error());
    }
    assert_eq!(c.chat(None).ok().text(), "ok");
    assert_eq!(c.set_base_url("http://127.0.0.1:65535/v1"), YLOKH_OK);
    assert_eq!(c.set_base_url("http://[::1]:8080/v1"), YLOKH_OK);
}

#[test]
fn proxy_urls_with_invalid_ports_are_refused() {
    let c = CClient::new("http://127.0.0.1:9/v1");
    for bad in [
        "http://127.0.0.1:65616",
        "socks5://127.0.0.1:99999",
        "http://user:pw-secret@127.0.0.1:-1",
        "http://127.0.0.1:",
    ] {
        assert_eq!(
            set_str(&c, ylokh_client_set_proxy, Some(bad)),
            YLOKH_E_INVALID_ARGUMENT,
            "{bad}"
        );
        assert!(!last_error().contains("pw-secret"), "{}", last_error());
    }
}

#[test]
fn a_base_url_with_a_user_name_or_password_is_refused_without_showing_it() {
    let server = ok_server();
    let c = CClient::new(&server.base_url());
    let port = server.addr().port();
    for bad in [
        format!("http://user:pw-secret@127.0.0.1:{port}/v1"),
        format!("http://pw-secret@127.0.0.1:{port}/v1"),
        format!("https://user:pw-secret@127.0.0.1:{port}/v1"),
    ] {
        assert_eq!(c.set_base_url(&bad), YLOKH_E_INVALID_ARGUMENT, "{bad}");
        let error = last_error();
        assert!(!error.contains("pw-secret"), "{error}");
        assert!(error.contains("user name or password"), "{error}");
    }
    c.chat(None).ok();
    assert!(server.requests()[0].header("Authorization").is_none());
}

#[test]
fn api_keys_that_cannot_be_sent_are_refused_when_set() {
    let server = ok_server();
    let c = CClient::new(&server.base_url());
    assert_eq!(c.set_api_key("sk-good"), YLOKH_OK);
    for (bad, why) in [
        ("sk-key\r", "carriage return"),
        ("sk-key\n", "line feed"),
        ("sk-\u{43a}\u{43b}\u{44e}\u{447}", "non-ASCII"),
        (" sk-key", "space"),
        ("sk-key ", "space"),
        ("sk-\u{1}key", "control"),
    ] {
        assert_eq!(c.set_api_key(bad), YLOKH_E_INVALID_ARGUMENT, "{bad:?}");
        let error = last_error();
        assert!(error.contains(why), "{bad:?}: {error}");
        assert!(!error.contains("sk-"), "the key is never shown: {error}");
    }
    c.chat(None).ok();
    assert_eq!(
        server.requests()[0].header("Authorization"),
        Some("Bearer sk-good"),
        "the good key stayed"
    );
}

#[test]
fn a_non_ascii_base_url_path_is_percent_encoded() {
    let server = ok_server();
    let port = server.addr().port();
    let c = CClient::new(&server.base_url());
    assert_eq!(
        c.set_base_url(&format!("http://127.0.0.1:{port}/\u{43a}\u{43b}/v1")),
        YLOKH_OK,
        "{}",
        last_error()
    );
    c.chat(None).ok();
    assert_eq!(
        server.requests()[0].path,
        "/%D0%BA%D0%BB/v1/chat/completions"
    );
    // A non-ASCII host name is refused (its punycode form works).
    assert_eq!(
        c.set_base_url("http://\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.test/v1"),
        YLOKH_E_INVALID_ARGUMENT
    );
    assert_eq!(c.set_base_url("http://xn--e1afmkfd.test/v1"), YLOKH_OK);
}

#[test]
fn hostile_options_and_messages_are_refused_before_the_network() {
    let server = ok_server();
    let c = CClient::new(&server.base_url());
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    for options in [
        deep_array.as_str(),
        deep_object.as_str(),
        r#"{"temperature": 1e999}"#,
        r#"{"stream": "yes"}"#,
        r#"{"messages": []}"#,
        r#"{"a": 1"#,
        "[]",
    ] {
        let out = c.chat(Some(options));
        assert_eq!(
            out.status,
            YLOKH_E_INVALID_ARGUMENT,
            "{}",
            &options[..options.len().min(40)]
        );
    }
    for messages in [
        deep_array.as_str(),
        deep_object.as_str(),
        "[1]",
        r#"[{"role":""}]"#,
    ] {
        let out = c.chat_full(None, messages, None, None);
        assert_eq!(
            out.status,
            YLOKH_E_INVALID_ARGUMENT,
            "{}",
            &messages[..messages.len().min(40)]
        );
    }
    assert!(server.requests().is_empty());
    assert_eq!(c.chat(None).ok().text(), "ok");
}

struct CancelInCallback {
    cancel: *mut ylokh_cancel,
    tokens: Vec<String>,
}

extern "C" fn cancel_on_first_token(
    userdata: *mut c_void,
    token: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: userdata is the test's CancelInCallback; token has len bytes.
    unsafe {
        let state = &mut *(userdata as *mut CancelInCallback);
        let bytes = std::slice::from_raw_parts(token.cast::<u8>(), len);
        state
            .tokens
            .push(String::from_utf8_lossy(bytes).into_owned());
        ylokh_cancel_trigger(state.cancel);
    }
    0
}

#[test]
fn a_cancel_from_inside_the_callback_stops_the_call_before_the_next_callback() {
    // Every token in one write: all of them are buffered when the first is delivered.
    let body = sse_stream(&["one", "two", "three", "four"]);
    let server = Server::always(Script::sse(&body, Framing::ContentLength));
    let c = CClient::new(&server.base_url());
    for last_only in [false, true] {
        let cancel = ylokh_cancel_new();
        let mut state = CancelInCallback {
            cancel,
            tokens: Vec::new(),
        };
        let messages = cstring(USER_HI);
        let options = cstring(if last_only {
            r#"{"stream":false}"#
        } else {
            "{}"
        });
        let request = ylokh_request {
            messages_json: messages.as_ptr(),
            options_json: options.as_ptr(),
            on_token: Some(cancel_on_first_token),
            userdata: (&mut state as *mut CancelInCallback).cast(),
            cancel,
            ..ylokh_request::default()
        };
        // SAFETY: every pointer lives until the call returns.
        let status = unsafe { ylokh_chat_ex(c.0, &request) };
        assert_eq!(status, YLOKH_E_ABORTED, "{}", last_error());
        assert_eq!(state.tokens.len(), 1, "{:?}", state.tokens);
        // SAFETY: no call uses it any more.
        unsafe { ylokh_cancel_free(cancel) };
    }
}

#[test]
fn last_error_stays_valid_and_unchanged_across_successful_calls() {
    let server = ok_server();
    let c = CClient::new(&server.base_url());
    assert_eq!(c.set_base_url("nope"), YLOKH_E_INVALID_ARGUMENT);
    let pointer = ylokh_last_error();
    // SAFETY: documented valid until the next failing call on this thread.
    let before = unsafe { CStr::from_ptr(pointer) }.to_owned();
    c.chat(None).ok();
    assert_eq!(c.set_api_key("sk-fine"), YLOKH_OK);
    // SAFETY: as above; no call failed since.
    assert_eq!(unsafe { CStr::from_ptr(pointer) }, before.as_c_str());
    assert_eq!(ylokh_last_error(), pointer);
}
