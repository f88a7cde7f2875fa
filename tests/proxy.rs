//! Proxies through the C ABI: real HTTP CONNECT and SOCKS5 proxies on loopback, with and
//! without credentials, a dead proxy, and secrets kept out of every error message.

mod common;

use std::ffi::CString;

use common::capi::*;
use common::proxy::Proxy;
use common::*;
use ylokh::ffi::*;

fn set_proxy(client: &CClient, url: Option<&str>) -> i32 {
    let url = url.map(|u| CString::new(u).unwrap());
    // SAFETY: live client; NULL or a NUL-terminated string.
    unsafe {
        ylokh_client_set_proxy(
            client.0,
            url.as_ref().map_or(std::ptr::null(), |u| u.as_ptr()),
        )
    }
}

fn origin() -> Server {
    Server::always(Script::sse(
        &sse_stream(&["via ", "proxy"]),
        Framing::ChunkedEvery(20),
    ))
}

#[test]
fn http_connect_proxy_without_and_with_credentials() {
    let server = origin();
    let open = Proxy::http_connect(None);
    let client = CClient::new(&server.base_url());
    assert_eq!(
        set_proxy(&client, Some(&format!("http://127.0.0.1:{}", open.port))),
        YLOKH_OK
    );
    assert_eq!(client.chat(None).ok().text(), "via proxy");
    assert_eq!(open.tunnels(), 1);

    let guarded = Proxy::http_connect(Some(("alice", "s3cret pw")));
    let url = format!("http://alice:s3cret%20pw@127.0.0.1:{}", guarded.port);
    assert_eq!(set_proxy(&client, Some(&url)), YLOKH_OK);
    assert_eq!(client.chat(None).ok().text(), "via proxy");
    assert_eq!(guarded.tunnels(), 1);
    // The credentials went to the proxy only, never to the origin server.
    for request in server.requests() {
        assert_eq!(request.header("Proxy-Authorization"), None);
        assert!(!format!("{:?}", request.headers).contains("s3cret"));
    }
}

#[test]
fn wrong_proxy_credentials_fail_without_revealing_them() {
    let server = origin();
    let guarded = Proxy::http_connect(Some(("alice", "right")));
    let client = CClient::new(&server.base_url());
    let url = format!("http://alice:wrong-hunter2@127.0.0.1:{}", guarded.port);
    assert_eq!(set_proxy(&client, Some(&url)), YLOKH_OK);
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_CONNECT, "{}", out.error);
    assert!(!out.error.contains("wrong-hunter2"), "{}", out.error);
    assert!(server.requests().is_empty());
}

#[test]
fn socks5_proxy_without_and_with_credentials() {
    let server = origin();
    let client = CClient::new(&server.base_url());
    let open = Proxy::socks5(None);
    assert_eq!(
        set_proxy(&client, Some(&format!("socks5://127.0.0.1:{}", open.port))),
        YLOKH_OK
    );
    assert_eq!(client.chat(None).ok().text(), "via proxy");
    assert_eq!(open.tunnels(), 1);

    let guarded = Proxy::socks5(Some(("bob", "p@ss")));
    let url = format!("socks5://bob:p%40ss@127.0.0.1:{}", guarded.port);
    assert_eq!(set_proxy(&client, Some(&url)), YLOKH_OK);
    assert_eq!(client.chat(None).ok().text(), "via proxy");
    assert_eq!(guarded.tunnels(), 1);
    assert_eq!(
        guarded.credentials_seen.lock().unwrap().as_slice(),
        ["bob:p@ss"]
    );
}

#[test]
fn a_dead_proxy_is_a_connect_error_with_a_clear_message() {
    let server = origin();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for scheme in ["http", "socks5"] {
        let client = CClient::new(&server.base_url());
        // SAFETY: live client.
        unsafe { ylokh_client_set_max_retries(client.0, 0) };
        let url = format!("{scheme}://carol:topsecret@127.0.0.1:{dead_port}");
        assert_eq!(set_proxy(&client, Some(&url)), YLOKH_OK);
        let out = client.chat(None);
        assert_eq!(out.status, YLOKH_E_CONNECT, "{scheme}: {}", out.error);
        assert!(!out.error.is_empty());
        assert!(!out.error.contains("topsecret"), "{}", out.error);
    }
    assert!(server.requests().is_empty());
}

#[test]
fn bad_proxy_urls_are_refused_without_echoing_them() {
    let client = CClient::new("http://127.0.0.1:1/v1");
    for url in ["ftp://u:leak@127.0.0.1:1", "http://u:leak@[::1"] {
        assert_eq!(
            set_proxy(&client, Some(url)),
            YLOKH_E_INVALID_ARGUMENT,
            "{url}"
        );
        assert!(!last_error().contains("leak"), "{}", last_error());
    }
    assert_eq!(set_proxy(&client, None), YLOKH_OK);
}

#[test]
fn the_api_key_never_appears_in_error_messages() {
    let key = "sk-very-secret-key-0123456789";
    // Some servers echo the key they rejected.
    let echo = Server::always(Script::json(
        401,
        &error_json(
            &format!("Incorrect API key provided: {key}"),
            "invalid_request_error",
        ),
    ));
    let client = CClient::new(&echo.base_url());
    assert_eq!(client.set_api_key(key), YLOKH_OK);
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS);
    assert!(
        out.error.contains("Incorrect API key provided"),
        "{}",
        out.error
    );
    assert!(!out.error.contains(key), "{}", out.error);
    assert!(out.error.contains("<redacted>"), "{}", out.error);

    let in_stream = Server::always(Script::sse(
        error_event(&format!("bad key {key}")).as_bytes(),
        Framing::ContentLength,
    ));
    assert_eq!(client.set_base_url(&in_stream.base_url()), YLOKH_OK);
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_API);
    assert!(!out.error.contains(key), "{}", out.error);
}
