//! TLS verification and redirects through the C ABI. The HTTPS server uses the test-only
//! certificates in tests/fixtures/tls (a throwaway CA and a certificate for 127.0.0.1).

mod common;

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::capi::*;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ylokh::ffi::*;

const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
const CERT: &[u8] = include_bytes!("fixtures/tls/server.pem");
const KEY: &[u8] = include_bytes!("fixtures/tls/server.key");

/// A one-reply-per-connection HTTPS server that answers every request with `reply` (raw
/// HTTP response bytes). Returns its base URL; the thread ends with the test process.
fn https_server(reply: Vec<u8>) -> String {
    let config = server_config();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/v1",
        listener.local_addr().unwrap().port()
    );
    thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(stream) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let reply = reply.clone();
            thread::spawn(move || {
                let mut tls = rustls::StreamOwned::new(conn, stream);
                // Read the head and a Content-Length body; a failed handshake just ends here.
                let mut reader = BufReader::new(&mut tls);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = tls.write_all(&reply);
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    url
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(CERT).unwrap()],
            PrivateKeyDer::from_pem_slice(KEY).unwrap(),
        )
        .unwrap();
    Arc::new(config)
}

/// Reads an HTTP head (and a Content-Length body) from `reader`; returns the head's lines.
fn read_message(reader: &mut impl BufRead) -> Option<(Vec<String>, Vec<u8>)> {
    let mut lines = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        lines.push(line.trim_end().to_owned());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((lines, body))
}

type ProxyCounters = (Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>);

/// An HTTPS proxy: TLS to the proxy (the test certificate), then `CONNECT`, with optional
/// Basic credentials. It relays one exchange per tunnel (the request, then the origin's
/// reply until the origin closes), which is all a non-keep-alive chat needs. Returns its
/// port, the tunnels opened and the `Proxy-Authorization` values seen.
fn https_proxy(expected_auth: Option<&'static str>) -> (u16, ProxyCounters) {
    let config = server_config();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counters: ProxyCounters = Default::default();
    let shared = counters.clone();
    thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(stream) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let (tunnels, seen) = shared.clone();
            thread::spawn(move || {
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let Some((head, _)) = read_message(&mut BufReader::new(&mut tls)) else {
                    return;
                };
                let target = head[0].split_whitespace().nth(1).unwrap_or("").to_owned();
                let auth = head
                    .iter()
                    .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
                    .map(str::to_owned);
                seen.lock().unwrap().extend(auth.clone());
                if expected_auth.is_some() && auth.as_deref() != expected_auth {
                    let _ = tls.write_all(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                    );
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(&target) else {
                    return;
                };
                let _ = tls.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n");
                let _ = tls.flush();
                tunnels.fetch_add(1, Ordering::SeqCst);
                let Some((head, body)) = read_message(&mut BufReader::new(&mut tls)) else {
                    return;
                };
                let mut request = head.join("\r\n").into_bytes();
                request.extend_from_slice(b"\r\n\r\n");
                request.extend_from_slice(&body);
                let _ = upstream.write_all(&request);
                let _ = std::io::copy(&mut upstream, &mut tls);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (port, counters)
}

#[test]
fn an_https_proxy_with_credentials_is_reached_over_verified_tls() {
    // "Basic " + base64("dave:pa ss").
    let (port, (tunnels, seen)) = https_proxy(Some("Basic ZGF2ZTpwYSBzcw=="));
    let origin = Server::always(Script::sse(
        &sse_stream(&["through ", "tls"]),
        Framing::ContentLength,
    ));
    let client = CClient::new(&origin.base_url());
    let proxy = CString::new(format!("https://dave:pa%20ss@127.0.0.1:{port}")).unwrap();
    // SAFETY: live client; NUL-terminated string.
    assert_eq!(
        unsafe { ylokh_client_set_proxy(client.0, proxy.as_ptr()) },
        YLOKH_OK
    );
    // SAFETY: live client.
    unsafe { ylokh_client_set_max_retries(client.0, 0) };

    // The proxy's certificate is checked like a server's: untrusted until its CA is set.
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_TLS, "{}", out.error);
    assert!(
        !out.error.contains("pa ss") && !out.error.contains("pa%20ss"),
        "{}",
        out.error
    );
    assert_eq!(tunnels.load(Ordering::SeqCst), 0);

    assert_eq!(set_ca_file(&client, Some(CA)), YLOKH_OK);
    assert_eq!(client.chat(None).ok().text(), "through tls");
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    assert_eq!(seen.lock().unwrap().as_slice(), ["Basic ZGF2ZTpwYSBzcw=="]);
    assert_eq!(origin.requests()[0].header("Proxy-Authorization"), None);
}

fn sse_reply(tokens: &[&str]) -> Vec<u8> {
    let body = sse_stream(tokens);
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    reply
}

fn set_ca_file(client: &CClient, path: Option<&str>) -> i32 {
    let path = path.map(|p| CString::new(p).unwrap());
    // SAFETY: live client; NULL or a NUL-terminated path.
    unsafe {
        ylokh_client_set_ca_file(
            client.0,
            path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
        )
    }
}

#[test]
fn an_untrusted_certificate_is_refused_and_trusted_once_its_ca_is_set() {
    let url = https_server(sse_reply(&["se", "cure"]));
    let client = CClient::new(&url);
    // SAFETY: live client.
    unsafe { ylokh_client_set_max_retries(client.0, 0) };
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_TLS, "{}", out.error);
    assert!(
        out.error.to_lowercase().contains("certificate"),
        "{}",
        out.error
    );

    // The system store does not hold the test CA either.
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_use_system_roots(client.0, 1) },
        YLOKH_OK
    );
    assert_eq!(client.chat(None).status, YLOKH_E_TLS);

    assert_eq!(set_ca_file(&client, Some(CA)), YLOKH_OK, "{}", last_error());
    assert_eq!(client.chat(None).ok().text(), "secure");

    // Back to the bundled roots: refused again.
    assert_eq!(set_ca_file(&client, None), YLOKH_OK);
    assert_eq!(client.chat(None).status, YLOKH_E_TLS);
}

#[test]
fn a_bad_ca_file_is_refused_when_set() {
    let client = CClient::new("https://127.0.0.1:1/v1");
    assert_eq!(
        set_ca_file(&client, Some("/nonexistent/ca.pem")),
        YLOKH_E_INVALID_ARGUMENT
    );
    assert!(last_error().contains("cannot read"), "{}", last_error());
    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    assert_eq!(
        set_ca_file(&client, Some(not_pem)),
        YLOKH_E_INVALID_ARGUMENT
    );
    assert!(last_error().contains("no certificate"), "{}", last_error());
}

fn redirect(status: u16, location: &str) -> Script {
    Script::response(
        status,
        &[("Location", location)],
        b"",
        Framing::ContentLength,
    )
}

#[test]
fn redirect_307_same_origin_keeps_the_body_and_credentials() {
    let server = Server::start(|req| {
        if req.path == "/v1/chat/completions" {
            redirect(307, "/v2/chat/completions")
        } else {
            Script::sse(&sse_stream(&["moved"]), Framing::ContentLength)
        }
    });
    let client = CClient::new(&server.base_url());
    assert_eq!(client.set_api_key("sk-same-origin"), YLOKH_OK);
    assert_eq!(client.chat(None).ok().text(), "moved");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].method, "POST");
    assert_eq!(requests[1].path, "/v2/chat/completions");
    assert_eq!(requests[1].body, requests[0].body);
    assert_eq!(
        requests[1].header("Authorization"),
        Some("Bearer sk-same-origin")
    );
}

#[test]
fn redirect_308_to_another_origin_drops_credentials_when_allowed() {
    let other = Server::always(Script::sse(
        &sse_stream(&["elsewhere"]),
        Framing::ContentLength,
    ));
    let target = format!("{}/chat/completions", other.base_url());
    let server = Server::always(redirect(308, &target));
    let client = CClient::new(&server.base_url());
    assert_eq!(client.set_api_key("sk-must-not-leak"), YLOKH_OK);
    assert_eq!(
        client.set_header("Authorization", Some("Token also-secret")),
        YLOKH_OK
    );
    // Refused unless allowed (SECURITY.md, "Redirects").
    assert_eq!(client.chat(None).status, YLOKH_E_HTTP_STATUS);
    assert!(other.requests().is_empty());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_cross_origin_redirects(client.0, 1) },
        YLOKH_OK
    );
    assert_eq!(client.chat(None).ok().text(), "elsewhere");
    let sent = &other.requests()[0];
    assert_eq!(sent.header("Authorization"), None);
    assert!(!format!("{:?}", sent.headers).contains("secret"));
    assert_eq!(sent.json(), server.requests()[0].json());
}

#[test]
fn redirects_that_would_lose_the_request_or_loop_are_not_followed() {
    let server = Server::always(redirect(301, "http://127.0.0.1:1/v9/chat/completions"));
    let out = CClient::new(&server.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_HTTP_STATUS);
    assert_eq!(out.http_status, 301);
    assert!(out.error.contains("not followed"), "{}", out.error);
    assert_eq!(server.requests().len(), 1);

    let looping = Server::always(redirect(307, "/v1/chat/completions"));
    let out = CClient::new(&looping.base_url()).chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL);
    assert!(out.error.contains("redirects"), "{}", out.error);
    assert_eq!(looping.requests().len(), 6);
}

#[test]
fn a_redirect_from_https_to_http_is_refused() {
    let plain = Server::always(Script::sse(&sse_stream(&["clear"]), Framing::ContentLength));
    let reply = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {}/chat/completions\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        plain.base_url()
    );
    let url = https_server(reply.into_bytes());
    let client = CClient::new(&url);
    assert_eq!(set_ca_file(&client, Some(CA)), YLOKH_OK);
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_PROTOCOL, "{}", out.error);
    assert!(out.error.contains("https to"), "{}", out.error);
    assert!(plain.requests().is_empty());
}

#[test]
fn turning_the_system_store_off_keeps_a_ca_file() {
    let url = https_server(sse_reply(&["se", "cure"]));
    let client = CClient::new(&url);
    // SAFETY: live client.
    unsafe { ylokh_client_set_max_retries(client.0, 0) };
    assert_eq!(set_ca_file(&client, Some(CA)), YLOKH_OK, "{}", last_error());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_use_system_roots(client.0, 0) },
        YLOKH_OK
    );
    assert_eq!(client.chat(None).ok().text(), "secure");

    // From the system store, 0 goes back to the bundled roots, which lack the test CA.
    // SAFETY: live client.
    unsafe {
        assert_eq!(ylokh_client_use_system_roots(client.0, 1), YLOKH_OK);
        assert_eq!(ylokh_client_use_system_roots(client.0, 0), YLOKH_OK);
    }
    assert_eq!(client.chat(None).status, YLOKH_E_TLS);
}

#[test]
fn https_to_a_server_that_speaks_plain_http_is_a_tls_error() {
    // The server answers the TLS ClientHello with a plain HTTP reply, as a plain-HTTP
    // server (or a misconfigured proxy port) does.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/v1",
        listener.local_addr().unwrap().port()
    );
    thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad request",
            );
            let _ = stream.flush();
        }
    });
    let client = CClient::new(&url);
    // SAFETY: live client.
    unsafe { ylokh_client_set_max_retries(client.0, 0) };
    let out = client.chat(None);
    assert_eq!(out.status, YLOKH_E_TLS, "{}", out.error);
}
