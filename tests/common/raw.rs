//! A raw loopback server for the tests the scripted [`super::Server`] cannot express:
//! servers that write endlessly until the client hangs up, that must see *when* the client
//! hung up, or that serve thousands of requests without keeping anything per request (so
//! the test process's memory can be measured). Each connection is served by the test's
//! closure, given a [`Conn`], on a worker thread; the closure reads requests and writes
//! whatever it likes. Worker threads are reused from one connection to the next (a new one
//! is started only when all are busy), so thousands of connections do not mean thousands
//! of thread stacks coming and going while memory is measured.
//!
//! Everything is bounded: each connection has a time limit ([`CONN_LIMIT`]) after which
//! every write and wait fails, and dropping the server shuts every socket down and waits
//! (bounded) for the worker threads to end. Also here: reading the process's memory
//! figures from `/proc/self/status`, for the tests that check memory stays bounded.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest a connection may live: a client that never hangs up cannot hang a test.
pub const CONN_LIMIT: Duration = Duration::from_secs(60);

/// How many connection reports are kept (later ones are only counted), so a stress test
/// with thousands of connections does not grow the heap it is measuring.
const MAX_REPORTS: usize = 256;

/// What happened on one connection, recorded when its closure returns.
#[derive(Debug, Clone)]
pub struct Report {
    /// 0-based order of acceptance.
    pub index: usize,
    /// Bytes the closure wrote successfully (they may still sit in socket buffers).
    pub written: u64,
    /// A write failed or a read saw EOF/reset: the client went away first.
    pub client_closed: bool,
    /// From accept to the closure's return.
    pub elapsed: Duration,
}

/// One request as read by [`Conn::read_request`]: the head as text and the body.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub head: String,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// `messages[0].content` of a chat request: where tests encode what the server does.
    pub fn first_message(&self) -> String {
        self.json()["messages"][0]["content"]
            .as_str()
            .expect("messages[0].content is a string")
            .to_owned()
    }
}

type Handler = dyn Fn(&mut Conn) + Send + Sync + 'static;

struct Shared {
    stopped: AtomicBool,
    /// Clones of open sockets, so Drop can shut them down and unblock their threads.
    live: Mutex<HashMap<usize, TcpStream>>,
    /// Accepted connections and the workers that serve them.
    pool: Mutex<Pool>,
    /// Signalled when a connection is queued or the server stops (wakes idle workers).
    work: Condvar,
    /// Signalled when a connection ends or a worker exits.
    ended: Condvar,
    connections: AtomicUsize,
    client_closes: AtomicUsize,
    panics: AtomicUsize,
    reports: Mutex<Vec<Report>>,
    handler: Box<Handler>,
}

#[derive(Default)]
struct Pool {
    /// Accepted, not yet picked up by a worker.
    queue: VecDeque<(TcpStream, usize)>,
    /// Workers waiting for a connection (each takes one from the queue when it wakes).
    waiting: usize,
    /// Worker threads alive.
    workers: usize,
    /// Connections queued or being served.
    active: usize,
    /// Set by [`RawServer::retire_idle_workers`]: idle workers exit.
    retire: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking closure must not poison the server for the rest of the test.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct RawServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl RawServer {
    /// Binds 127.0.0.1:0; every accepted connection runs `handler` on a worker thread.
    pub fn start<F>(handler: F) -> RawServer
    where
        F: Fn(&mut Conn) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            stopped: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
            pool: Mutex::new(Pool::default()),
            work: Condvar::new(),
            ended: Condvar::new(),
            connections: AtomicUsize::new(0),
            client_closes: AtomicUsize::new(0),
            panics: AtomicUsize::new(0),
            reports: Mutex::new(Vec::new()),
            handler: Box::new(handler),
        });
        let acc = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("rawsrv-accept".into())
            .spawn(move || accept_loop(listener, acc))
            .expect("spawn accept thread");
        RawServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// "http://127.0.0.1:PORT/v1"
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections on which the client went away before the closure was done with it.
    pub fn client_closes(&self) -> usize {
        self.shared.client_closes.load(Ordering::SeqCst)
    }

    /// Worker threads alive (busy or waiting for a connection).
    pub fn workers(&self) -> usize {
        lock(&self.shared.pool).workers
    }

    /// Ends the worker threads that wait for a connection (busy ones go on), waiting up to
    /// `timeout` for them; whether no worker is left. A thread's allocator caches go back
    /// to the allocator when it ends, so memory measured afterwards is memory in use.
    /// Later connections start new workers.
    pub fn retire_idle_workers(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pool = lock(&self.shared.pool);
        pool.retire = true;
        self.shared.work.notify_all();
        while pool.workers > pool.active {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            pool = self
                .shared
                .ended
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        pool.retire = false;
        pool.workers == 0
    }

    /// Connections queued or being served.
    pub fn active(&self) -> usize {
        lock(&self.shared.pool).active
    }

    /// Waits until no connection is open (or `timeout` passes); whether none is.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pool = lock(&self.shared.pool);
        while pool.active > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            pool = self
                .shared
                .ended
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Reports of the connections finished so far (the first [`MAX_REPORTS`]).
    pub fn reports(&self) -> Vec<Report> {
        lock(&self.shared.reports).clone()
    }

    /// Waits until `n` connections have finished (or `timeout` passes); their reports.
    pub fn wait_reports(&self, n: usize, timeout: Duration) -> Vec<Report> {
        let deadline = Instant::now() + timeout;
        loop {
            let reports = self.reports();
            if reports.len() >= n || Instant::now() >= deadline {
                return reports;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        for s in lock(&self.shared.live).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the blocking accept() so it sees `stopped`.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(acceptor) = self.acceptor.take() {
            if woke {
                let _ = acceptor.join();
            }
        }
        // Queued sockets are shut down by the worker that picks them up (it checks
        // `stopped` first); wait (bounded) for every worker to exit.
        self.shared.work.notify_all();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pool = lock(&self.shared.pool);
        while pool.workers > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            drop(pool);
            for s in lock(&self.shared.live).values() {
                let _ = s.shutdown(Shutdown::Both);
            }
            self.shared.work.notify_all();
            pool = lock(&self.shared.pool);
            pool = self
                .shared
                .ended
                .wait_timeout(pool, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let still = pool.workers;
        drop(pool);
        let panics = self.shared.panics.load(Ordering::SeqCst);
        if !thread::panicking() {
            assert_eq!(panics, 0, "raw server: a connection closure panicked");
            assert_eq!(still, 0, "raw server: worker threads did not end");
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else {
            // Transient (e.g. EMFILE): avoid a hot loop.
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let index = shared.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.live).insert(index, clone);
        }
        let mut pool = lock(&shared.pool);
        pool.queue.push_back((stream, index));
        pool.active += 1;
        if pool.queue.len() <= pool.waiting {
            // A waiting worker will take it when it wakes (even if it is already waking up
            // for another reason: it looks at the queue under this lock).
            shared.work.notify_one();
            continue;
        }
        let worker = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("rawsrv-worker".into())
            // Small stacks: the closures do little.
            .stack_size(256 * 1024)
            .spawn(move || work(&worker));
        match spawned {
            Ok(_) => pool.workers += 1,
            Err(_) => {
                // No thread for it: drop the connection.
                if let Some((_, index)) = pool.queue.pop_back() {
                    pool.active -= 1;
                    lock(&shared.live).remove(&index);
                }
            }
        }
    }
}

/// A worker: serves queued connections one after another until the server stops.
fn work(shared: &Arc<Shared>) {
    loop {
        let next = {
            let mut pool = lock(&shared.pool);
            loop {
                if let Some(next) = pool.queue.pop_front() {
                    break Some(next);
                }
                if shared.stopped.load(Ordering::SeqCst) || pool.retire {
                    break None;
                }
                pool.waiting += 1;
                pool = shared
                    .work
                    .wait_timeout(pool, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                pool.waiting -= 1;
            }
        };
        let Some((stream, index)) = next else {
            break;
        };
        serve(stream, index, shared);
        lock(&shared.pool).active -= 1;
        shared.ended.notify_all();
    }
    lock(&shared.pool).workers -= 1;
    shared.ended.notify_all();
}

fn serve(stream: TcpStream, index: usize, shared: &Arc<Shared>) {
    let mut conn = Conn {
        stream,
        index,
        started: Instant::now(),
        pending: Vec::new(),
        written: 0,
        client_closed: false,
        shared: Arc::clone(shared),
    };
    if shared.stopped.load(Ordering::SeqCst) {
        let _ = conn.stream.shutdown(Shutdown::Both);
    } else if panic::catch_unwind(AssertUnwindSafe(|| (shared.handler)(&mut conn))).is_err() {
        shared.panics.fetch_add(1, Ordering::SeqCst);
    }
    if conn.client_closed {
        shared.client_closes.fetch_add(1, Ordering::SeqCst);
    }
    {
        let mut reports = lock(&shared.reports);
        if reports.len() < MAX_REPORTS {
            reports.push(Report {
                index,
                written: conn.written,
                client_closed: conn.client_closed,
                elapsed: conn.started.elapsed(),
            });
        }
    }
    // Drop the clone before the socket closes, so that an abortive close is not delayed by
    // a second descriptor.
    lock(&shared.live).remove(&index);
    drop(conn);
}

/// One accepted connection, handed to the test's closure.
pub struct Conn {
    stream: TcpStream,
    pub index: usize,
    started: Instant,
    /// Bytes read past the end of the last request.
    pending: Vec<u8>,
    written: u64,
    client_closed: bool,
    shared: Arc<Shared>,
}

impl Conn {
    fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Time left before [`CONN_LIMIT`]; `None` once it has passed or the server stops.
    fn left(&self) -> Option<Duration> {
        let left = CONN_LIMIT.checked_sub(self.started.elapsed())?;
        (!left.is_zero() && !self.stopped()).then_some(left)
    }

    fn saw_client_go(&mut self) {
        if !self.stopped() {
            self.client_closed = true;
        }
    }

    /// Whether the client went away (a write failed, or a read saw EOF or an error).
    pub fn client_closed(&self) -> bool {
        self.client_closed
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Reads one request (head up to the blank line, then a `Content-Length` body).
    /// `None` when the client closed the connection (or the time is up) first.
    pub fn read_request(&mut self) -> Option<RawRequest> {
        let head_end = self.head_end()?;
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        let mut request = RawRequest {
            head,
            body: Vec::new(),
        };
        let len: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.pending.len() < head_end + len {
            if !self.fill() {
                return None;
            }
        }
        request.body = self.pending[head_end..head_end + len].to_vec();
        self.pending.drain(..head_end + len);
        Some(request)
    }

    /// Reads a request's head only (up to the blank line), leaving its body unread: a
    /// server that answers before reading what the client sends. `None` as for
    /// [`Conn::read_request`].
    pub fn read_head(&mut self) -> Option<String> {
        let head_end = self.head_end()?;
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        self.pending.drain(..head_end);
        Some(head)
    }

    /// Reads until a whole request head is pending (at most 64 KiB): where it ends.
    fn head_end(&mut self) -> Option<usize> {
        loop {
            if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                return Some(at + 4);
            }
            if self.pending.len() > 64 * 1024 || !self.fill() {
                return None;
            }
        }
    }

    /// Reads more into `pending`; false on EOF, error or time up.
    fn fill(&mut self) -> bool {
        let Some(left) = self.left() else {
            return false;
        };
        let _ = self.stream.set_read_timeout(Some(left));
        let mut buf = [0u8; 8192];
        loop {
            match (&self.stream).read(&mut buf) {
                Ok(0) => {
                    self.saw_client_go();
                    return false;
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return false,
                Err(_) => {
                    self.saw_client_go();
                    return false;
                }
            }
        }
    }

    /// Writes and flushes `bytes`; false if the client is gone (or the time is up).
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        let Some(left) = self.left() else {
            return false;
        };
        let _ = self.stream.set_write_timeout(Some(left));
        match (&self.stream).write_all(bytes) {
            Ok(()) => {
                self.written += bytes.len() as u64;
                true
            }
            Err(e) if is_timeout(&e) => false,
            Err(_) => {
                self.saw_client_go();
                false
            }
        }
    }

    /// Writes the pieces `next` produces, one after another, until the client goes away,
    /// `next` returns false, or `max_bytes` were written. Returns the bytes written by
    /// this call. `next` gets the piece number and a buffer to fill (cleared each time).
    pub fn write_while(
        &mut self,
        max_bytes: u64,
        mut next: impl FnMut(u64, &mut Vec<u8>) -> bool,
    ) -> u64 {
        let start = self.written;
        let mut piece = Vec::new();
        let mut n = 0;
        while self.written - start < max_bytes {
            piece.clear();
            if !next(n, &mut piece) || !self.write(&piece) {
                break;
            }
            n += 1;
        }
        self.written - start
    }

    /// Pauses; cut short (returning false) when the server stops.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            thread::sleep((until - Instant::now()).min(Duration::from_millis(10)));
        }
        true
    }

    /// Sends nothing and reads (discarding) until the client closes the connection or
    /// `max` passes; true if the client closed it.
    pub fn wait_for_close(&mut self, max: Duration) -> bool {
        let until = Instant::now() + max;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            let Some(left) = self.left() else {
                return false;
            };
            if now >= until {
                return false;
            }
            let _ = self
                .stream
                .set_read_timeout(Some((until - now).min(left).min(Duration::from_millis(50))));
            match (&self.stream).read(&mut buf) {
                Ok(0) => {
                    self.saw_client_go();
                    return self.client_closed;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
                Err(_) => {
                    self.saw_client_go();
                    return self.client_closed;
                }
            }
        }
    }

    /// FIN: no more bytes from the server. Then reads what the client still sends, for a
    /// moment, so that closing with unread data does not turn into a reset.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 4096];
        while let Ok(n) = (&self.stream).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    /// RST: an abortive close (SO_LINGER 0), sent when the connection's thread drops the
    /// socket right after the closure returns.
    pub fn reset(&mut self) {
        lock(&self.shared.live).remove(&self.index);
        set_linger_zero(&self.stream);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// SO_LINGER {on, 0 s}: the close that follows sends RST instead of FIN.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open for the lifetime of `stream`; `linger` is a valid,
    // initialised `struct linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------
// Memory figures
// ---------------------------------------------------------------------------

/// A `kB` field of `/proc/self/status` ("VmRSS", "VmHWM") in bytes; `None` off Linux.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident memory now, in bytes.
pub fn rss() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// Resident memory after handing free heap memory back to the system (glibc's
/// `malloc_trim`), so that what is measured is memory in use rather than how fragmented
/// the allocator's arenas happen to be at that moment.
pub fn settled_rss() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    rss()
}

/// Peak resident memory (high-water mark) in bytes.
pub fn peak_rss() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

/// Resets the high-water mark to the current resident size (Linux: `5` to
/// `/proc/self/clear_refs`), so a later [`peak_rss`] measures one test, not the process's
/// history. Returns false where that is not possible (the peak then only grows, and a
/// growth measured from it is an underestimate).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub const MIB: u64 = 1024 * 1024;
