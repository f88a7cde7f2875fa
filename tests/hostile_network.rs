//! Hostile networks, through the C ABI against loopback servers and proxies (SECURITY.md,
//! "Connections"): peers that accept and stay silent during the TLS or SOCKS handshake,
//! servers that never read the request, connects that hang, resets before any reply byte,
//! early replies to a request still being sent, and a plain-HTTP server behind https://.
//!
//! Timing bounds are generous (a loaded 2-core machine) but each is far below what the
//! behaviour it guards against took: a cancel is asserted within 1 s of the trigger where
//! the failure mode waits out a 5 s timeout.

mod common;

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::capi::*;
use common::hostile::*;
use common::proxy::Proxy;
use common::raw::RawServer;
use common::*;
use ylokh::ffi::*;

/// The tests that count the process's threads and descriptors run alone; the others share.
static COUNTING: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    COUNTING.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    COUNTING.write().unwrap_or_else(|e| e.into_inner())
}

/// The timeout of the clients here: a cancel that is not seen returns only after it.
const TIMEOUT_MS: u64 = 5000;
/// When the cancel is triggered, after the call started.
const CANCEL_AT: Duration = Duration::from_millis(300);
/// How long after the trigger a cancelled call may take to return on a loaded machine
/// (the header promises about 50 ms).
const CANCEL_SLACK: Duration = Duration::from_millis(1000);

/// A server that accepts connections and never sends or reads anything.
fn silent_server() -> RawServer {
    RawServer::start(|conn| {
        conn.sleep(Duration::from_secs(20));
    })
}

fn client(url: &str) -> CClient {
    let c = CClient::new(url);
    set_timeout_ms(&c, TIMEOUT_MS);
    c
}

#[track_caller]
fn assert_cancelled_in_time(out: &Cancelled, phase: &str) {
    assert_eq!(
        out.status, YLOKH_E_ABORTED,
        "{phase}: {} after {:?}",
        out.error, out.total
    );
    assert!(
        out.after_cancel < CANCEL_SLACK,
        "{phase}: the call returned {:?} after the cancel",
        out.after_cancel
    );
}

#[test]
fn cancel_is_seen_during_a_tls_handshake_with_a_silent_server() {
    let _g = shared();
    let server = silent_server();
    let url = server.base_url().replace("http://", "https://");
    let c = client(&url);
    let out = chat_cancelled_after(&c, USER_HI, CANCEL_AT);
    assert_cancelled_in_time(&out, "TLS handshake");
}

#[test]
fn cancel_is_seen_during_a_socks5_handshake_with_a_silent_proxy() {
    let _g = shared();
    let proxy = silent_server();
    let target = Server::always(Script::sse(b"data: [DONE]\n\n", Framing::ContentLength));
    let c = client(&target.base_url());
    let proxy_url = format!("socks5://{}", &proxy.base_url()["http://".len()..]).replace("/v1", "");
    assert_eq!(
        set_str(&c, ylokh_client_set_proxy, Some(&proxy_url)),
        YLOKH_OK,
        "{}",
        last_error()
    );
    let out = chat_cancelled_after(&c, USER_HI, CANCEL_AT);
    assert_cancelled_in_time(&out, "SOCKS5 handshake");
    assert_eq!(target.requests().len(), 0);
}

#[test]
fn cancel_is_seen_during_an_http_connect_handshake_with_a_silent_proxy() {
    let _g = shared();
    let proxy = silent_server();
    let c = client("https://127.0.0.1:9/v1");
    let proxy_url = proxy.base_url().replace("/v1", "");
    assert_eq!(
        set_str(&c, ylokh_client_set_proxy, Some(&proxy_url)),
        YLOKH_OK
    );
    let out = chat_cancelled_after(&c, USER_HI, CANCEL_AT);
    assert_cancelled_in_time(&out, "CONNECT handshake");
}

#[test]
fn a_silent_socks5_proxy_is_bounded_by_the_timeout() {
    let _g = shared();
    let proxy = silent_server();
    let c = CClient::new("http://127.0.0.1:9/v1");
    set_timeout_ms(&c, 500);
    set_max_retries(&c, 0);
    let proxy_url =
        format!("socks5h://{}", &proxy.base_url()["http://".len()..]).replace("/v1", "");
    assert_eq!(
        set_str(&c, ylokh_client_set_proxy, Some(&proxy_url)),
        YLOKH_OK
    );
    let started = Instant::now();
    let out = c.chat(None);
    assert_eq!(out.status, YLOKH_E_TIMEOUT, "{}", out.error);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn socks5_proxies_still_tunnel_with_and_without_credentials_and_refuse_bad_ones() {
    let _g = shared();
    let target = Server::always(Script::sse(
        format!("{}data: [DONE]\n\n", chunk_event("ok")).as_bytes(),
        Framing::ContentLength,
    ));
    for (proxy, url_auth, expect) in [
        (Proxy::socks5(None), "", YLOKH_OK),
        (Proxy::socks5(Some(("u", "p w"))), "u:p%20w@", YLOKH_OK),
        (
            Proxy::socks5(Some(("u", "right"))),
            "u:wrong@",
            YLOKH_E_CONNECT,
        ),
        (Proxy::socks5(Some(("u", "right"))), "", YLOKH_E_CONNECT),
    ] {
        let c = client(&target.base_url());
        set_max_retries(&c, 0);
        let proxy_url = format!("socks5://{url_auth}127.0.0.1:{}", proxy.port);
        assert_eq!(
            set_str(&c, ylokh_client_set_proxy, Some(&proxy_url)),
            YLOKH_OK
        );
        let out = c.chat(None);
        assert_eq!(out.status, expect, "{proxy_url}: {}", out.error);
        assert!(!out.error.contains("wrong"), "{}", out.error);
        if expect == YLOKH_OK {
            assert_eq!(out.text(), "ok");
        }
    }
}

/// A server that reads nothing of the request and never answers, and when it accepted
/// the connection.
fn never_reading_server() -> (RawServer, Arc<Mutex<Option<Instant>>>) {
    let accepted = Arc::new(Mutex::new(None));
    let seen = accepted.clone();
    let server = RawServer::start(move |conn| {
        seen.lock().unwrap().get_or_insert_with(Instant::now);
        conn.sleep(Duration::from_secs(20));
    });
    (server, accepted)
}

/// More than the loopback socket buffers hold when nobody reads (4 MiB of send buffer at
/// most here, and a receive window that grows only when the server reads).
const STALLING_UPLOAD: usize = 8 * 1024 * 1024;

#[test]
fn a_stalled_upload_is_bounded_by_the_timeout() {
    let _g = shared();
    let (server, accepted) = never_reading_server();
    let c = CClient::new(&server.base_url());
    set_timeout_ms(&c, 1000);
    set_max_retries(&c, 0);
    let out = c.chat_full(None, &big_message(STALLING_UPLOAD), None, None);
    let returned = Instant::now();
    assert_eq!(out.status, YLOKH_E_TIMEOUT, "{}", out.error);
    let accepted = accepted
        .lock()
        .unwrap()
        .expect("the server saw the connection");
    // The socket buffers fill within milliseconds; then one timeout without progress.
    let took = returned - accepted;
    assert!(
        took < Duration::from_millis(2000),
        "took {took:?} after connecting"
    );
}

#[test]
fn cancel_is_seen_during_a_stalled_upload() {
    let _g = shared();
    let (server, accepted) = never_reading_server();
    let c = client(&server.base_url());
    let ready = move || accepted.lock().unwrap().is_some();
    let out = chat_cancelled_when(&c, &big_message(STALLING_UPLOAD), ready, CANCEL_AT);
    assert_cancelled_in_time(&out, "upload");
    assert!(
        out.after_cancel < Duration::from_millis(500),
        "{:?}",
        out.after_cancel
    );
}

#[test]
fn a_cancelled_connect_leaves_no_thread_and_no_socket_behind() {
    let _g = exclusive();
    let hole = blackhole().expect("could not make a TCP connect that hangs on loopback");
    let c = client(&hole.url);
    // Warm up: the first call builds the agent (and anything else made once).
    let out = chat_cancelled_after(&c, USER_HI, Duration::from_millis(30));
    assert_eq!(out.status, YLOKH_E_ABORTED, "{}", out.error);
    let (threads, fds) = (thread_count(), fd_count());
    for _ in 0..40 {
        let out = chat_cancelled_after(&c, USER_HI, Duration::from_millis(30));
        assert_eq!(out.status, YLOKH_E_ABORTED, "{}", out.error);
    }
    // Well within the 5 s connect timeout: a helper left per call would still be there.
    let (threads_after, fds_after) = (thread_count(), fd_count());
    assert!(
        threads_after <= threads + 2,
        "threads: {threads} before, {threads_after} after 40 cancelled connects"
    );
    assert!(
        fds_after <= fds + 2,
        "descriptors: {fds} before, {fds_after} after 40 cancelled connects"
    );
}

#[test]
fn an_early_reply_sent_before_the_request_was_read_is_reported() {
    let _g = shared();
    // Answers 413 after the head, without reading the body, and hangs up.
    let server = RawServer::start(|conn| {
        let body = r#"{"error":{"message":"request too large for this server"}}"#;
        if conn.read_head().is_none() {
            return;
        }
        conn.write(
            format!(
                "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        conn.sleep(Duration::from_millis(50));
        conn.reset();
    });
    let c = client(&server.base_url());
    set_max_retries(&c, 0);
    let out = c.chat_full(None, &big_message(8 * 1024 * 1024), None, None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS, "{}", out.error);
    assert_eq!(out.http_status, 413, "{}", out.error);
    assert!(out.error.contains("request too large"), "{}", out.error);
}

#[test]
fn https_to_a_plain_http_server_is_a_tls_error() {
    let _g = shared();
    let server = Server::always(Script::json(400, r#"{"error":"plain http"}"#));
    let c = client(&server.base_url().replace("http://", "https://"));
    set_max_retries(&c, 0);
    let out = c.chat(None);
    assert_eq!(out.status, YLOKH_E_TLS, "{}", out.error);
}

#[test]
fn a_reset_before_any_reply_byte_is_retried_like_a_connect_failure() {
    let _g = shared();
    let server = Server::sequence(vec![
        Script::reset(),
        Script::reset(),
        Script::sse(
            format!("{}data: [DONE]\n\n", chunk_event("third time")).as_bytes(),
            Framing::ContentLength,
        ),
    ]);
    let c = client(&server.base_url());
    let out = c.chat(None);
    out.ok();
    assert_eq!(out.text(), "third time");
    assert_eq!(server.requests().len(), 3);
    // Once a reply byte arrived, a reset is final: the request is not sent again.
    let partial = Server::always(Script::raw(&b"HTTP/1.1 200 OK\r\n"[..]).then(Step::Reset));
    let out = client(&partial.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_IO, "{}", out.error);
    assert_eq!(partial.requests().len(), 1);
}
