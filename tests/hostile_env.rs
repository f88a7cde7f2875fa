//! The environment as an input surface (SECURITY.md, "Environment variables"): an API key
//! from `OPENAI_API_KEY` must not go to the original provider's host, a domain anyone may
//! register now that the service is gone. A key the program sets itself goes there.
//!
//! The host is impersonated on loopback: an HTTP CONNECT proxy on 127.0.0.1 sends every
//! tunnel to a local TLS server with a test certificate for `chatapi.ylokh.xyz`, trusted
//! through `ylokh_client_set_ca_file`. Nothing leaves the machine, not even a DNS query
//! (the proxy is given the host name). Its own binary: the environment is process-wide.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::capi::*;
use common::hostile::*;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ylokh::ffi::*;

const CA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tls/provider-ca.pem"
);
const CERT: &[u8] = include_bytes!("fixtures/tls/provider.pem");
const KEY: &[u8] = include_bytes!("fixtures/tls/provider.key");

/// What the impersonated host and the proxy saw.
#[derive(Default)]
struct Seen {
    connect_targets: Vec<String>,
    /// The head of each request that reached the impersonated host.
    heads: Vec<String>,
}

/// Starts the proxy and the impersonated host; returns the proxy's URL.
fn impersonate_provider(seen: Arc<Mutex<Seen>>) -> String {
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(CERT).unwrap()],
            PrivateKeyDer::from_pem_slice(KEY).unwrap(),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(stream) = stream else { continue };
            let (config, seen) = (config.clone(), seen.clone());
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = serve_tunnel(stream, config, &seen);
            });
        }
    });
    url
}

fn serve_tunnel(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    seen: &Mutex<Seen>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    seen.lock()
        .unwrap()
        .connect_targets
        .push(line.split_whitespace().nth(1).unwrap_or("").to_owned());
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let mut client = stream;
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, client);
    let mut reader = BufReader::new(&mut tls);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    seen.lock().unwrap().heads.push(head);
    let body = sse_stream(&["from the impersonated host"]);
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(reply.as_bytes())?;
    tls.write_all(&body)?;
    tls.flush()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

/// A client as `ylokh_client_new` makes it, trusting the test CA, through the proxy.
fn new_client(proxy: &str) -> CClient {
    let c = CClient(ylokh_client_new());
    assert!(!c.0.is_null());
    assert_eq!(set_str(&c, ylokh_client_set_ca_file, Some(CA)), YLOKH_OK);
    assert_eq!(set_str(&c, ylokh_client_set_proxy, Some(proxy)), YLOKH_OK);
    set_max_retries(&c, 0);
    c
}

fn authorization(head: &str) -> Option<String> {
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .map(|l| l["authorization:".len()..].trim().to_owned())
}

#[test]
fn an_api_key_from_the_environment_never_goes_to_the_original_providers_host() {
    for var in [
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "NO_PROXY",
        "all_proxy",
        "https_proxy",
        "http_proxy",
        "no_proxy",
        "YLOKH_BASE_URL",
        "OPENAI_BASE_URL",
        "YLOKH_API_KEY",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("OPENAI_API_KEY", "sk-from-the-environment");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let proxy = impersonate_provider(seen.clone());

    // The default base URL: the key from the environment stays home.
    let c = new_client(&proxy);
    assert_eq!(c.chat(None).ok().text(), "from the impersonated host");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.connect_targets, ["chatapi.ylokh.xyz:443"]);
        assert_eq!(authorization(&seen.heads[0]), None, "{}", seen.heads[0]);
        assert!(!seen.heads[0].contains("sk-from"), "{}", seen.heads[0]);
    }

    // Even with that host set as the base URL explicitly: a key meant for another service
    // is not the program's choice for this host.
    let c = new_client(&proxy);
    assert_eq!(c.set_base_url("https://chatapi.ylokh.xyz/v1"), YLOKH_OK);
    c.chat(None).ok();
    // A key the program set goes with the default base URL too.
    let c = new_client(&proxy);
    assert_eq!(c.set_api_key("sk-set-by-the-program"), YLOKH_OK);
    c.chat(None).ok();
    let seen = seen.lock().unwrap();
    assert_eq!(authorization(&seen.heads[1]), None, "{}", seen.heads[1]);
    assert_eq!(
        authorization(&seen.heads[2]).as_deref(),
        Some("Bearer sk-set-by-the-program")
    );
}
