//! The request side: arbitrary base URLs, header names and values, API keys, proxy URLs
//! and options JSON through the C setters (and the options parser a chat uses), as a
//! hostile or careless caller would pass them. For every accepted value, the request the
//! client would send must be well-formed; for every refusal, the message must not repeat
//! a secret. Nothing may panic (a panic would also show as YLOKH_E_INTERNAL).
//!
//! Input: fields separated by 0xFF bytes, in this order: base URL, header name, header
//! value, API key, proxy URL, options JSON. NUL bytes end a field early (C strings).

#![no_main]

use std::ffi::{CStr, CString};

use libfuzzer_sys::fuzz_target;
use ylokh::ffi::*;

fn field(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL before end")
}

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string that lives until the next failure.
    unsafe { CStr::from_ptr(ylokh_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Every status a setter may return for a bad value; anything else is a bug.
fn check_status(status: ylokh_status, what: &str) {
    assert!(
        status == YLOKH_OK || status == YLOKH_E_INVALID_ARGUMENT,
        "{what}: status {status}: {}",
        last_error()
    );
    if status != YLOKH_OK {
        let message = last_error();
        assert!(
            !message.chars().any(char::is_control),
            "{what}: control character in {message:?}"
        );
    }
}

const FORBIDDEN: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "host",
    "keep-alive",
    "proxy-connection",
];

/// The request the client would send now is well-formed.
fn check_request(client: &ylokh_client, what: &str) {
    let head = ylokh::fuzzing::request_head(client)
        .unwrap_or_else(|e| panic!("{what}: accepted settings give no request: {e}"));
    assert!(head.url.is_ascii(), "{what}: non-ASCII URL {:?}", head.url);
    assert!(
        head.scheme == "http" || head.scheme == "https",
        "{what}: {:?}",
        head.url
    );
    assert!(!head.host.is_empty(), "{what}: no host in {:?}", head.url);
    if let Some(port) = &head.port {
        assert!(
            matches!(port.parse::<u32>(), Ok(1..=65535)),
            "{what}: port {port:?} in {:?}",
            head.url
        );
    }
    let authority = head.url.split("://").nth(1).unwrap_or("");
    let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
    assert!(
        !authority.contains('@'),
        "{what}: userinfo in {:?}",
        head.url
    );
    let mut content_types = 0;
    for (name, value) in &head.headers {
        assert!(
            !FORBIDDEN.contains(&name.as_str()),
            "{what}: framing header {name} set by the caller"
        );
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "{what}: line break in header {name}"
        );
        if name == "content-type" {
            content_types += 1;
        }
    }
    assert_eq!(content_types, 1, "{what}: {:?}", head.headers);
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0xff);
    let mut next = || field(fields.next().unwrap_or(&[]));
    let (base_url, name, value, key, proxy, options) =
        (next(), next(), next(), next(), next(), next());

    let client = ylokh_client_new();
    assert!(!client.is_null());
    // SAFETY: a live client and NUL-terminated strings, for every call below.
    unsafe {
        let c = &*client;
        check_status(
            ylokh_client_set_base_url(client, base_url.as_ptr()),
            "base URL",
        );
        check_request(c, "base URL");

        check_status(
            ylokh_client_set_header(client, name.as_ptr(), value.as_ptr()),
            "header",
        );
        check_request(c, "header");
        check_status(
            ylokh_client_set_header(client, name.as_ptr(), std::ptr::null()),
            "header removal",
        );

        let key_status = ylokh_client_set_api_key(client, key.as_ptr());
        check_status(key_status, "API key");
        // A refused key is never shown: the message is the same for a key of the same kind
        // whose letters and digits are all different. (Checking that the message does not
        // contain the key fails for short keys that are words of the message itself, which
        // the fuzzer found: " not".)
        if let (false, Ok(text)) = (key_status == YLOKH_OK, key.to_str()) {
            let refused = last_error();
            let masked: String = text
                .chars()
                .map(|c| match c {
                    '0'..='9' | 'a'..='z' | 'A'..='Z' => 'x',
                    c => c,
                })
                .collect();
            if let Ok(masked) = CString::new(masked) {
                let status = ylokh_client_set_api_key(client, masked.as_ptr());
                assert_eq!(status, key_status, "a key of the same kind, masked");
                assert_eq!(
                    last_error(),
                    refused,
                    "the message depends on the key's text"
                );
            }
        }
        check_request(c, "API key");

        let proxy_status = ylokh_client_set_proxy(client, proxy.as_ptr());
        check_status(proxy_status, "proxy URL");
        // The same URL shape with a known password in it: whether accepted or refused, the
        // password never shows in a message. (Unless the rest of the URL holds the same
        // text: a message may quote a bad port or host, and did so for a fuzzer's input.)
        let text = proxy.to_string_lossy();
        if let Some((scheme, rest)) = text.split_once("://") {
            let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let host_part = if host_part.contains("CANARY-pw-7f3a") {
                "h"
            } else {
                host_part
            };
            let canary = format!("{scheme}://fuzzuser:CANARY-pw-7f3a@{host_part}");
            if let Ok(canary) = CString::new(canary) {
                let status = ylokh_client_set_proxy(client, canary.as_ptr());
                check_status(status, "proxy URL with a password");
                if status != YLOKH_OK {
                    assert!(!last_error().contains("CANARY-pw-7f3a"), "{}", last_error());
                }
            }
        }
        check_request(c, "proxy URL");
        ylokh_client_free(client);
    }

    // Options as a chat parses them: a clean refusal or an object without the reserved keys.
    if let Ok(text) = options.to_str() {
        match ylokh::parse_options(Some(text)) {
            Ok(map) => {
                assert!(!map.contains_key("messages") && !map.contains_key("model"));
                if let Some(stream) = map.get("stream") {
                    assert!(stream.is_boolean());
                }
                let request = ylokh::ChatRequest::from_json(
                    None,
                    r#"[{"role":"user","content":"hi"}]"#,
                    Some(text),
                )
                .expect("options that parse make a request");
                let body: serde_json::Value =
                    serde_json::from_slice(request.body()).expect("the body is JSON");
                assert!(body["messages"].is_array());
            }
            Err(e) => assert_eq!(e.kind(), ylokh::ErrorKind::InvalidArgument),
        }
    }
});
