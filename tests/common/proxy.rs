//! Small real proxies on loopback for the proxy tests: an HTTP CONNECT proxy and a SOCKS5
//! proxy, each with optional username/password, counting the tunnels they opened.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub struct Proxy {
    pub port: u16,
    tunnels: Arc<AtomicUsize>,
    /// What clients sent to authenticate, in order (raw header value or "user:pass").
    pub credentials_seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Tunnels opened so far (a refused authentication opens none).
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }

    /// An HTTP proxy answering `CONNECT host:port`. With `auth`, it demands
    /// `Proxy-Authorization: Basic base64(user:pass)` and answers 407 otherwise.
    pub fn http_connect(auth: Option<(&str, &str)>) -> Proxy {
        let expected =
            auth.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        Proxy::start(move |stream, proxy| http_connect(stream, expected.as_deref(), proxy))
    }

    /// A SOCKS5 proxy (RFC 1928) with optional username/password (RFC 1929).
    pub fn socks5(auth: Option<(&str, &str)>) -> Proxy {
        let expected = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        Proxy::start(move |stream, proxy| socks5(stream, expected.as_ref(), proxy))
    }

    fn start<F>(handle: F) -> Proxy
    where
        F: Fn(TcpStream, &Shared) -> io::Result<()> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            tunnels: Arc::new(AtomicUsize::new(0)),
            credentials_seen: Arc::new(Mutex::new(Vec::new())),
        };
        let proxy = Proxy {
            port,
            tunnels: shared.tunnels.clone(),
            credentials_seen: shared.credentials_seen.clone(),
        };
        let handle = Arc::new(handle);
        // Bounded: a test opens a handful of connections; the thread ends with the process.
        thread::spawn(move || {
            for stream in listener.incoming().take(256) {
                let Ok(stream) = stream else { continue };
                let (handle, shared) = (handle.clone(), shared.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = handle(stream, &shared);
                });
            }
        });
        proxy
    }
}

#[derive(Clone)]
struct Shared {
    tunnels: Arc<AtomicUsize>,
    credentials_seen: Arc<Mutex<Vec<String>>>,
}

fn http_connect(stream: TcpStream, expected: Option<&str>, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                auth = Some(value.trim().to_owned());
            }
        }
    }
    if let Some(a) = &auth {
        shared.credentials_seen.lock().unwrap().push(a.clone());
    }
    let mut client = stream;
    let mut parts = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    if expected.is_some() && auth.as_deref() != expected {
        client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        )?;
        return Ok(());
    }
    let upstream = TcpStream::connect(target)?;
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    shared.tunnels.fetch_add(1, Ordering::SeqCst);
    // Bytes the client sent after the CONNECT head are still in the reader's buffer.
    let buffered = reader.buffer().to_vec();
    pipe(client, upstream, &buffered)
}

fn socks5(
    mut client: TcpStream,
    expected: Option<&(String, String)>,
    shared: &Shared,
) -> io::Result<()> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head)?;
    let mut methods = vec![0u8; head[1] as usize];
    client.read_exact(&mut methods)?;
    let wanted = if expected.is_some() { 0x02 } else { 0x00 };
    if head[0] != 5 || !methods.contains(&wanted) {
        client.write_all(&[5, 0xff])?;
        return Ok(());
    }
    client.write_all(&[5, wanted])?;
    if let Some((user, pass)) = expected {
        let mut version_len = [0u8; 2];
        client.read_exact(&mut version_len)?;
        let mut got_user = vec![0u8; version_len[1] as usize];
        client.read_exact(&mut got_user)?;
        let mut pass_len = [0u8; 1];
        client.read_exact(&mut pass_len)?;
        let mut got_pass = vec![0u8; pass_len[0] as usize];
        client.read_exact(&mut got_pass)?;
        let seen = format!(
            "{}:{}",
            String::from_utf8_lossy(&got_user),
            String::from_utf8_lossy(&got_pass)
        );
        shared.credentials_seen.lock().unwrap().push(seen);
        let ok = got_user == user.as_bytes() && got_pass == pass.as_bytes();
        client.write_all(&[1, if ok { 0 } else { 1 }])?;
        if !ok {
            return Ok(());
        }
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request)?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip)?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len)?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0])?;
            return Ok(());
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    let upstream = match TcpStream::connect(&target) {
        Ok(s) => s,
        Err(_) => {
            client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
            return Ok(());
        }
    };
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    shared.tunnels.fetch_add(1, Ordering::SeqCst);
    pipe(client, upstream, &[])
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, upstream: TcpStream, already_read: &[u8]) -> io::Result<()> {
    let mut up_writer = upstream.try_clone()?;
    up_writer.write_all(already_read)?;
    let mut client_reader = client.try_clone()?;
    let forward = thread::spawn(move || {
        let _ = io::copy(&mut client_reader, &mut up_writer);
        let _ = up_writer.shutdown(Shutdown::Write);
    });
    let mut up_reader = upstream;
    let mut client_writer = client;
    let _ = io::copy(&mut up_reader, &mut client_writer);
    let _ = client_writer.shutdown(Shutdown::Both);
    let _ = forward.join();
    Ok(())
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
