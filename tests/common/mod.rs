#![allow(dead_code)]
//! Scripted loopback HTTP/1.1 server for integration tests.
//!
//! Each request is parsed, recorded, and handed to a handler that returns a
//! [`Script`]: the exact bytes, pauses and faults to play back on the socket.
//! This lets tests reproduce the framing quirks and failures of real chat
//! servers over real TCP, for Rust and C clients alike.

pub mod capi;
pub mod hostile;
pub mod openai;
pub mod process;
pub mod proxy;
pub mod raw;

// Not every test binary uses the body builders.
#[allow(unused_imports)]
pub use openai::*;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Upper bound on any single wait (idle keep-alive, stall, drain), so a
/// forgotten client can never hang a test binary.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Pause between the separately flushed pieces of a framed body: long enough
/// that the client sees them in separate reads, short enough to keep tests fast.
pub const PIECE_GAP: Duration = Duration::from_millis(2);

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Raw request target, query string included.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked request bodies are de-chunked).
    pub body: Vec<u8>,
    /// 0-based index of the TCP connection this request came on.
    pub connection: usize,
}

impl Request {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics (failing the test) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("request body is not UTF-8")
    }
}

// ---------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Step {
    /// Write and flush these raw bytes (sockets use TCP_NODELAY).
    Write(Vec<u8>),
    /// Pause; cut short when the server is dropped.
    Sleep(Duration),
    /// Graceful close (FIN) now; later steps are skipped.
    Close,
    /// Abortive close (RST) now; later steps are skipped.
    Reset,
    /// Write nothing more and hold the socket open until the client closes
    /// it, the server is dropped, or [`MAX_WAIT`] passes; then close.
    /// Later steps are skipped.
    Stall,
}

#[derive(Clone, Debug)]
pub enum Framing {
    /// `Content-Length`, body in one write.
    ContentLength,
    /// `Content-Length`, body written in pieces cut at these byte offsets.
    ContentLengthAt(Vec<usize>),
    /// `Transfer-Encoding: chunked`, one HTTP chunk per piece cut at these
    /// byte offsets (empty = the whole body as one chunk). Each chunk, and
    /// the terminating `0` chunk, is a separate flushed write.
    Chunked(Vec<usize>),
    /// `Transfer-Encoding: chunked` with chunks of at most n bytes.
    ChunkedEvery(usize),
    /// HTTP/1.1 status line, no length, no `Connection` header; the end of
    /// the body is signalled only by closing the connection.
    CloseDelimited,
    /// As `CloseDelimited`, body written in pieces cut at these offsets.
    CloseDelimitedAt(Vec<usize>),
    /// `HTTP/1.0` status line, no length, closed after the body.
    Http10,
}

#[derive(Clone, Debug)]
pub struct Script {
    pub steps: Vec<Step>,
    /// After the steps: if true (and the client did not ask to close), read
    /// the next request on the same connection; otherwise close gracefully.
    pub keep_alive: bool,
}

impl Script {
    /// Plays `steps`, then closes the connection.
    pub fn new(steps: Vec<Step>) -> Script {
        Script {
            steps,
            keep_alive: false,
        }
    }

    /// Writes `bytes` verbatim, then closes: for hand-made malformed replies.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Script {
        Script::new(vec![Step::Write(bytes.into())])
    }

    /// Resets the connection without writing anything.
    pub fn reset() -> Script {
        Script::new(vec![Step::Reset])
    }

    /// Closes the connection without writing anything.
    pub fn close() -> Script {
        Script::new(vec![Step::Close])
    }

    /// Never answers; holds the connection open (see [`Step::Stall`]).
    pub fn stall() -> Script {
        Script::new(vec![Step::Stall])
    }

    /// A complete response. Framing headers (`Content-Length` /
    /// `Transfer-Encoding`) are added unless `headers` already has one, so a
    /// test can send a lying length. Keep-alive unless the framing is
    /// close-delimited.
    pub fn response(
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        framing: Framing,
    ) -> Script {
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut head_lines: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let mut version = "HTTP/1.1";
        let mut keep_alive = true;
        let pieces: Vec<Vec<u8>> = match &framing {
            Framing::ContentLength | Framing::ContentLengthAt(_) => {
                if !has("content-length") {
                    head_lines.push(("Content-Length".into(), body.len().to_string()));
                }
                match &framing {
                    Framing::ContentLengthAt(cuts) => split_at_offsets(body, cuts),
                    _ => vec![body.to_vec()],
                }
            }
            Framing::Chunked(_) | Framing::ChunkedEvery(_) => {
                if !has("transfer-encoding") {
                    head_lines.push(("Transfer-Encoding".into(), "chunked".into()));
                }
                let parts = match &framing {
                    Framing::Chunked(cuts) => split_at_offsets(body, cuts),
                    Framing::ChunkedEvery(n) => split_every(body, *n),
                    _ => unreachable!(),
                };
                let mut out: Vec<Vec<u8>> = parts.iter().map(|p| encode_chunk(p)).collect();
                out.push(b"0\r\n\r\n".to_vec());
                out
            }
            Framing::CloseDelimited | Framing::CloseDelimitedAt(_) | Framing::Http10 => {
                keep_alive = false;
                if matches!(framing, Framing::Http10) {
                    version = "HTTP/1.0";
                }
                match &framing {
                    Framing::CloseDelimitedAt(cuts) => split_at_offsets(body, cuts),
                    _ => vec![body.to_vec()],
                }
            }
        };

        let mut head = format!("{version} {status} {}\r\n", reason_phrase(status));
        for (n, v) in &head_lines {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");

        // The head goes out on its own, as streaming servers flush it before
        // the first token is ready.
        let mut steps = vec![Step::Write(head.into_bytes())];
        for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
            steps.push(Step::Sleep(PIECE_GAP));
            steps.push(Step::Write(piece));
        }
        Script { steps, keep_alive }
    }

    /// `200` with `Content-Type: text/event-stream`.
    pub fn sse(body: &[u8], framing: Framing) -> Script {
        Script::response(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
            ],
            body,
            framing,
        )
    }

    /// A content-length JSON reply.
    pub fn json(status: u16, body: &str) -> Script {
        Script::response(
            status,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
            Framing::ContentLength,
        )
    }

    /// Appends a step.
    pub fn then(mut self, step: Step) -> Script {
        self.steps.push(step);
        self
    }

    pub fn with_keep_alive(mut self, keep_alive: bool) -> Script {
        self.keep_alive = keep_alive;
        self
    }

    /// Keeps only the first `max_bytes` bytes of everything written (later
    /// writes and any Close/Reset/Stall are dropped) and ends with a close:
    /// "the server died after n bytes". Chain `.then(Step::Reset)` or
    /// `.then(Step::Stall)` for other endings.
    pub fn truncate(mut self, max_bytes: usize) -> Script {
        let mut left = max_bytes;
        let mut kept = Vec::new();
        for step in self.steps {
            match step {
                Step::Write(mut bytes) => {
                    if left == 0 {
                        break;
                    }
                    bytes.truncate(left);
                    left -= bytes.len();
                    kept.push(Step::Write(bytes));
                }
                Step::Sleep(d) => kept.push(Step::Sleep(d)),
                Step::Close | Step::Reset | Step::Stall => break,
            }
        }
        self.steps = kept;
        self.keep_alive = false;
        self
    }

    /// All bytes this script writes, concatenated (for assertions).
    pub fn written_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for step in &self.steps {
            if let Step::Write(b) = step {
                out.extend_from_slice(b);
            }
        }
        out
    }
}

/// Cuts `body` at the given offsets; offsets out of range, zero, or
/// duplicated are ignored so no empty piece is produced (an empty HTTP chunk
/// would end the body early).
pub fn split_at_offsets(body: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < body.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        out.push(body[start..c].to_vec());
        start = c;
    }
    if start < body.len() {
        out.push(body[start..].to_vec());
    }
    out
}

pub fn split_every(body: &[u8], n: usize) -> Vec<Vec<u8>> {
    assert!(n > 0, "chunk size must be positive");
    body.chunks(n).map(<[u8]>::to_vec).collect()
}

/// One HTTP/1.1 chunk: hex size line, data, CRLF.
pub fn encode_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

type Handler = dyn Fn(&Request) -> Script + Send + Sync + 'static;

struct State {
    stopped: bool,
    /// Clones of live connection sockets, so Drop can shut them down and
    /// unblock any thread waiting in read/write.
    live: HashMap<usize, TcpStream>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the server stops, to cut `Step::Sleep` short.
    stop_cv: Condvar,
    requests: Mutex<Vec<Request>>,
    connections: AtomicUsize,
    disconnects: AtomicUsize,
    handler_panics: AtomicUsize,
    handler: Box<Handler>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking handler must not poison the server for the rest of the test.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.state().stopped
    }

    /// Sleeps for `d` unless the server stops first; returns false if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut st = self.state();
        loop {
            if st.stopped {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            st = self
                .stop_cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds 127.0.0.1:0 and spawns an accept thread; one thread per
    /// connection. `handler` is called for each parsed request.
    pub fn start<F>(handler: F) -> Server
    where
        F: Fn(&Request) -> Script + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                stopped: false,
                live: HashMap::new(),
                workers: Vec::new(),
            }),
            stop_cv: Condvar::new(),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            disconnects: AtomicUsize::new(0),
            handler_panics: AtomicUsize::new(0),
            handler: Box::new(handler),
        });
        let acc_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("testsrv-accept".into())
            .spawn(move || accept_loop(listener, acc_shared))
            .expect("spawn accept thread");
        Server {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Replies with the same script to every request.
    pub fn always(script: Script) -> Server {
        Server::start(move |_| script.clone())
    }

    /// Replies to the n-th request (over all connections) with `scripts[n]`;
    /// requests beyond the list get a 500 so the test notices.
    pub fn sequence(scripts: Vec<Script>) -> Server {
        let next = AtomicUsize::new(0);
        Server::start(move |_| {
            let i = next.fetch_add(1, Ordering::SeqCst);
            scripts.get(i).cloned().unwrap_or_else(|| {
                Script::json(
                    500,
                    r#"{"error":{"message":"test server: unexpected extra request"}}"#,
                )
            })
        })
    }

    /// Replies "echo: " and the last message's content, in small tokens (for conversations
    /// and many threads: each reply says which request it answers).
    pub fn echo() -> Server {
        Server::start(|req| {
            let body = req.json();
            let content = body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or("")
                .to_owned();
            let chars: Vec<char> = content.chars().collect();
            let mut tokens = vec!["echo".to_owned(), ": ".to_owned()];
            tokens.extend(chars.chunks(4).map(|c| c.iter().collect::<String>()));
            let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
            Script::sse(&sse_stream(&refs), Framing::ChunkedEvery(64))
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "http://127.0.0.1:PORT/v1"
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many times the server saw the client go away first: EOF or error
    /// while waiting for a request or during a `Stall`, or a failed write.
    /// Lets cancellation tests check that the client really hung up.
    pub fn client_disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Connections whose thread is still running.
    pub fn live_connections(&self) -> usize {
        self.shared.state().live.len()
    }

    /// Polls `cond` every few ms until it holds or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&Server) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let workers = {
            let mut st = self.shared.state();
            st.stopped = true;
            for s in st.live.values() {
                // Wakes threads blocked in read (EOF) or write (EPIPE).
                let _ = s.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut st.workers)
        };
        self.shared.stop_cv.notify_all();

        // std cannot interrupt a blocking accept(); a throwaway connection
        // wakes it so it sees `stopped`.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(acceptor) = self.acceptor.take() {
            if woke {
                let _ = acceptor.join();
            }
        }
        // The acceptor may have pushed a worker after we took the list.
        let late = std::mem::take(&mut self.shared.state().workers);
        for w in workers.into_iter().chain(late) {
            let _ = w.join();
        }

        let panics = self.shared.handler_panics.load(Ordering::SeqCst);
        if panics > 0 && !thread::panicking() {
            panic!("test server: {panics} handler call(s) panicked (see output above)");
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                if shared.stopped() {
                    return;
                }
                // Transient (e.g. EMFILE); avoid a hot loop.
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let mut st = shared.state();
        // Checked under the lock Drop takes, so no connection slips past the
        // shutdown sweep.
        if st.stopped {
            return;
        }
        let index = shared.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        if let Ok(clone) = stream.try_clone() {
            st.live.insert(index, clone);
        }
        let worker_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("testsrv-conn-{index}"))
            .spawn(move || {
                serve_connection(&stream, index, &worker_shared);
                // Drop our clone before `stream` closes, so Reset's RST is
                // not delayed by a second descriptor.
                worker_shared.state().live.remove(&index);
                drop(stream);
            });
        match spawned {
            Ok(h) => st.workers.push(h),
            Err(_) => {
                st.live.remove(&index);
            }
        }
    }
}

/// How a connection's request loop ends.
enum End {
    /// Read the next request.
    Continue,
    /// Close gracefully.
    Close,
    /// Socket already dealt with (reset, stall over, client gone).
    Done,
}

fn serve_connection(stream: &TcpStream, index: usize, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(MAX_WAIT));
    let _ = stream.set_write_timeout(Some(MAX_WAIT));
    let mut reader = BufReader::new(stream);
    loop {
        let req = match read_request(&mut reader, stream, index) {
            Ok(Some(r)) => r,
            // EOF, error or garbage where a request should be: the client is
            // gone (or Drop shut the socket down).
            Ok(None) | Err(_) => {
                if !shared.stopped() {
                    shared.disconnects.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
        };
        shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req.clone());

        let script = match panic::catch_unwind(AssertUnwindSafe(|| (shared.handler)(&req))) {
            Ok(s) => s,
            Err(_) => {
                // Reported again when the Server is dropped, so the test fails.
                shared.handler_panics.fetch_add(1, Ordering::SeqCst);
                Script::json(
                    500,
                    r#"{"error":{"message":"test server: handler panicked"}}"#,
                )
            }
        };

        let client_wants_close = wants_close(&req);
        match play(&script, stream, &mut reader, index, shared) {
            End::Done => return,
            End::Close => {
                graceful_close(stream, &mut reader, shared);
                return;
            }
            End::Continue => {
                if !script.keep_alive || client_wants_close {
                    graceful_close(stream, &mut reader, shared);
                    return;
                }
            }
        }
    }
}

fn wants_close(req: &Request) -> bool {
    let conn = req.header("connection").unwrap_or("").to_ascii_lowercase();
    conn.split(',').any(|t| t.trim() == "close")
}

fn play(
    script: &Script,
    stream: &TcpStream,
    reader: &mut BufReader<&TcpStream>,
    index: usize,
    shared: &Shared,
) -> End {
    let mut w = stream;
    for step in &script.steps {
        match step {
            Step::Write(bytes) => {
                if w.write_all(bytes).and_then(|_| w.flush()).is_err() {
                    if !shared.stopped() {
                        shared.disconnects.fetch_add(1, Ordering::SeqCst);
                    }
                    return End::Done;
                }
            }
            Step::Sleep(d) => {
                if !shared.sleep(*d) {
                    return End::Done;
                }
            }
            Step::Close => return End::Close,
            Step::Reset => {
                // The live clone is a second descriptor for the same socket;
                // the RST only goes out when the last one closes.
                shared.state().live.remove(&index);
                abortive_close(stream);
                return End::Done;
            }
            Step::Stall => {
                stall(stream, reader, shared);
                return End::Done;
            }
        }
    }
    End::Continue
}

/// Holds the socket until the client closes it, the server stops (Drop shuts
/// the socket down, which ends the read), or MAX_WAIT passes.
fn stall(stream: &TcpStream, reader: &mut BufReader<&TcpStream>, shared: &Shared) {
    let deadline = Instant::now() + MAX_WAIT;
    let mut sink = [0u8; 4096];
    // Discard whatever was buffered already; it is not a request we answer.
    let buffered = reader.buffer().len();
    reader.consume(buffered);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let _ = stream.set_read_timeout(Some(deadline - now));
        match reader.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return,
            Err(_) => break,
        }
    }
    if !shared.stopped() {
        shared.disconnects.fetch_add(1, Ordering::SeqCst);
    }
}

/// FIN, then briefly drain what the client still sends: closing with unread
/// data would make the kernel send RST instead, turning a clean close into a
/// reset the test did not ask for.
fn graceful_close(stream: &TcpStream, reader: &mut BufReader<&TcpStream>, shared: &Shared) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    while !shared.stopped() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let _ = stream.set_read_timeout(Some(deadline - now));
        match reader.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sets SO_LINGER to {on, 0 s} so the close that follows sends RST.
/// `TcpStream::set_linger` is unstable and socket2/libc are not available,
/// so this declares setsockopt from the C library std already links.
#[cfg(unix)]
fn abortive_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;

    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const SOL_SOCKET: i32 = 1;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const SO_LINGER: i32 = 13;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const SOL_SOCKET: i32 = 0xffff; // macOS and the BSDs
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const SO_LINGER: i32 = 0x0080;

    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is valid for the lifetime of `stream`, and `linger` is a
    // properly sized, initialised `struct linger`.
    let rc = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            std::mem::size_of::<Linger>() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER) failed: {}",
        io::Error::last_os_error()
    );
    // The RST is sent when the caller drops the last descriptor.
}

/// Without setsockopt, fall back to an immediate two-way shutdown.
#[cfg(not(unix))]
fn abortive_close(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one CRLF- (or LF-) terminated line without the terminator.
/// Ok(None) on EOF before any byte.
fn read_line(reader: &mut impl BufRead, limit: &mut usize) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = reader.take(*limit as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *limit {
        return Err(bad("request head too large"));
    }
    *limit -= n;
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad("non-UTF-8 request head"))
}

/// Ok(None) when the client closed cleanly before a new request.
fn read_request(
    reader: &mut BufReader<&TcpStream>,
    stream: &TcpStream,
    connection: usize,
) -> io::Result<Option<Request>> {
    // Idle keep-alive wait is bounded too.
    let _ = stream.set_read_timeout(Some(MAX_WAIT));
    let mut limit = MAX_HEAD;
    // Tolerate stray CRLFs between requests (RFC 9112 §2.2).
    let request_line = loop {
        match read_line(reader, &mut limit)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = request_line.split_whitespace();
    let (method, path) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/") => (m.to_string(), p.to_string()),
        _ => return Err(bad(format!("bad request line {request_line:?}"))),
    };

    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut limit)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in head"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }

    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
        connection,
    };

    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let mut w = stream;
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked_body(reader)?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(bad("request body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(Some(req))
}

fn read_chunked_body(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut limit = MAX_HEAD;
    loop {
        let line = read_line(reader, &mut limit)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailer section, up to the empty line.
            loop {
                let t = read_line(reader, &mut limit)?.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in trailers")
                })?;
                if t.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("request body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        // The limit guards each size line, not the body as a whole.
        limit = MAX_HEAD;
    }
}
