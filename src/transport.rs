//! A thin layer over ureq's connections that lets a call be cancelled from another thread
//! in every phase (connecting, TLS and proxy handshakes, sending, waiting, streaming) and
//! bounds the wait for the end of a body after `[DONE]`.
//!
//! ureq runs every step of a call on the calling thread but its transport API gives a
//! connector or transport no access to the call, so the call's cancel flag and drain state
//! live in thread-locals set by [`CallGuard`]; the TCP transport ([`tcp`]) consults them on
//! each wait. Without a cancel flag and outside a drain it adds nothing to a wait.

mod buffers;
mod socket;
mod socks;
mod tcp;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, RustlsConnector,
    Transport,
};
use ureq::{Agent, Error};

/// How often a waiting call looks at its cancel flag.
pub const CANCEL_POLL: Duration = Duration::from_millis(20);
/// How long a call with a before-wait hook looks for input before running the hook: a
/// stream's events are handed over at most this much later than they were read.
pub(crate) const FIRST_LOOK: Duration = Duration::from_micros(50);
/// The longest single wait of a call that cannot be cancelled. Its reads wait in such
/// slices too, so that the socket's timeout (a system call to set) stays the same from one
/// read to the next: waiting exactly what is left of the budget set a new one before every
/// read, 1,630 system calls in a reply of 200,000 tokens.
pub(crate) const QUIET_SLICE: Duration = Duration::from_secs(1);
/// After `[DONE]`, how long to wait for the end of the body so the connection can be reused.
/// A server or proxy that keeps the body open after `[DONE]` costs at most this much.
pub const DRAIN_WAIT: Duration = Duration::from_millis(10);
/// How many bytes after `[DONE]` are read looking for the end of the body.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The error a cancelled wait returns; the client turns it into `Aborted`.
#[derive(Debug)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

// Why thread-locals and not the call's own state: ureq 3.5.1's transport API hands a
// connector only the connection's details (URI, addresses, config, timeout) and a transport
// only the timeout of each wait; nothing of the call reaches them (no request extensions or
// user data), and a pooled transport outlives the call that opened it. ureq does every read
// and write of a call on the calling thread, so the thread carries the call's state, set
// and cleared by CallGuard.
thread_local! {
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    static DRAIN_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set when this thread opened a new connection (rather than reusing a pooled one).
    static OPENED: Cell<bool> = const { Cell::new(false) };
    /// Set when a byte of a reply arrived on this thread (after TLS, so a reply's byte).
    static RECEIVED: Cell<bool> = const { Cell::new(false) };
    /// Run when a call is about to wait for input that is not there yet: a stream's worker
    /// publishes the events it holds there, so none waits behind a silent socket. (Only
    /// calls with a cancel flag look for it; a stream always has one.)
    static BEFORE_WAIT: RefCell<Option<Box<dyn FnMut()>>> = const { RefCell::new(None) };
}

/// Sets (or removes) what this thread runs each time a call is about to wait for input
/// that has not arrived yet.
pub fn set_before_wait(hook: Option<Box<dyn FnMut()>>) {
    BEFORE_WAIT.with(|h| *h.borrow_mut() = hook);
}

pub(crate) fn has_before_wait() -> bool {
    BEFORE_WAIT.with(|h| h.try_borrow().is_ok_and(|h| h.is_some()))
}

pub(crate) fn before_wait() {
    BEFORE_WAIT.with(|h| {
        if let Ok(mut hook) = h.try_borrow_mut() {
            if let Some(hook) = hook.as_mut() {
                hook();
            }
        }
    });
}

/// Whether any byte of a reply arrived on this thread since the last call; clears it.
/// A connection reset before any reply byte is retried like a connect failure.
pub fn take_received() -> bool {
    RECEIVED.replace(false)
}

/// Whether a new connection was opened on this thread since the last call; clears it.
/// An attempt that fails on a reused connection before any reply byte most likely met a
/// connection the server had already closed, and may be sent again at once.
pub fn take_opened() -> bool {
    OPENED.replace(false)
}

/// Marks this thread as running a call, with the call's cancel flag, for as long as it
/// lives.
pub struct CallGuard(());

impl CallGuard {
    /// `None` when this thread already runs a call: a chat started from a callback.
    pub fn enter(cancel: Option<&Arc<AtomicBool>>) -> Option<CallGuard> {
        if IN_CALL.replace(true) {
            return None;
        }
        CANCEL.with(|c| *c.borrow_mut() = cancel.cloned());
        DRAIN_UNTIL.set(None);
        Some(CallGuard(()))
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        CANCEL.with(|c| *c.borrow_mut() = None);
        DRAIN_UNTIL.set(None);
        IN_CALL.set(false);
    }
}

/// Whether this thread's call has a cancel flag that is set.
fn cancel_requested() -> bool {
    CANCEL.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// Whether this thread's call can be cancelled (its waits are then sliced).
fn watching_cancel() -> bool {
    CANCEL.with(|c| c.borrow().is_some())
}

/// Until when a drain may wait, during one.
fn drain_until() -> Option<Instant> {
    DRAIN_UNTIL.get()
}

/// Reads what is left of a body after `[DONE]` for at most [`DRAIN_WAIT`], so that a body
/// that ends at once returns its connection to the pool and one that does not is dropped.
pub fn drain(reader: &mut impl Read, buf: &mut [u8]) {
    DRAIN_UNTIL.set(Some(Instant::now() + DRAIN_WAIT));
    let mut total = 0;
    while total < DRAIN_LIMIT {
        match reader.read(buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    DRAIN_UNTIL.set(None);
}

/// An agent whose connections go through [`CallTransport`]. The chain is ureq's default
/// one (SOCKS, CONNECT proxy, TCP, rustls) with the SOCKS and TCP steps replaced by ones
/// that wait in slices on the calling thread, so a cancel is seen in every phase.
pub fn agent(config: Config) -> Agent {
    let connector =
        ().chain(socks::SocksConnector)
            .chain(ConnectProxyConnector::default())
            .chain(tcp::TcpConnector)
            .chain(TlsConnector::default())
            .chain(CallConnector);
    Agent::with_parts(config, connector, HostResolver::default())
}

/// A TLS handshake that failed for any reason but a timeout or a cancel: a plain-HTTP
/// server behind an `https://` URL answers the handshake with text or hangs up, which
/// must read as a TLS failure, not as an I/O error.
#[derive(Debug)]
pub struct TlsHandshakeFailed(Error);

impl fmt::Display for TlsHandshakeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the TLS handshake failed: {}", self.0)
    }
}

impl std::error::Error for TlsHandshakeFailed {}

/// ureq's rustls step, with its failures marked as [`TlsHandshakeFailed`].
#[derive(Debug, Default)]
struct TlsConnector(RustlsConnector);

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        self.0.connect(details, chained).map_err(|e| match e {
            Error::Timeout(_) => e,
            Error::Other(ref inner) if inner.is::<Cancelled>() => e,
            e => Error::Other(Box::new(TlsHandshakeFailed(e))),
        })
    }
}

/// ureq's resolver, with lookup failures reported as `HostNotFound` (the system's I/O
/// error for them has no kind of its own) so they count as connect failures. An IP address
/// needs no lookup and gets none (ureq would start a thread for it when a deadline is set).
/// A host name needs the system's lookup, which nothing can interrupt: when the call can be
/// cancelled, the lookup runs on a helper thread that the call stops waiting for once
/// cancelled (the thread ends when the system's resolver answers or gives up).
#[derive(Debug, Default)]
struct HostResolver(DefaultResolver);

impl Resolver for HostResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let is_ip = uri.host().is_some_and(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok()
        });
        let result = if is_ip || !watching_cancel() {
            let timeout = if is_ip {
                NextTimeout::default()
            } else {
                timeout
            };
            self.0.resolve(uri, config, timeout)
        } else {
            resolve_cancellable(uri, config, timeout)
        };
        match result {
            Err(Error::Io(_)) => Err(Error::HostNotFound),
            other => other,
        }
    }
}

fn resolve_cancellable(
    uri: &Uri,
    config: &Config,
    timeout: NextTimeout,
) -> Result<ResolvedSocketAddrs, Error> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let (uri, config) = (uri.clone(), config.clone());
    std::thread::Builder::new()
        .name("ylokh-resolve".into())
        .spawn(move || {
            let found = DefaultResolver::default().resolve(&uri, &config, NextTimeout::default());
            let _ = sender.send(found);
        })
        .map_err(Error::Io)?;
    let started = Instant::now();
    let limit = timeout.not_zero().map(|d| *d);
    loop {
        if cancel_requested() {
            return Err(Error::Other(Box::new(Cancelled)));
        }
        let mut slice = CANCEL_POLL;
        if let Some(limit) = limit {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout(timeout.reason));
            }
            slice = slice.min(left);
        }
        match receiver.recv_timeout(slice) {
            Ok(found) => return found,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::HostNotFound)
            }
        }
    }
}

#[derive(Debug)]
struct CallConnector;

impl<In: Transport> Connector<In> for CallConnector {
    type Out = CallTransport;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if chained.is_some() {
            OPENED.set(true);
        }
        Ok(chained.map(|inner| CallTransport {
            inner: Box::new(inner),
            heads: Heads::default(),
        }))
    }
}

/// How many informational (1xx) responses may come before a reply. Each one restarts the
/// wait for the reply, so without a bound a server could keep a call waiting forever.
pub(crate) const MAX_INFORMATIONAL: u32 = 16;

/// The error a reply preceded by too many informational responses gives.
#[derive(Debug)]
pub struct TooManyInformational;

impl fmt::Display for TooManyInformational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server sent more than {MAX_INFORMATIONAL} informational (1xx) responses \
             without a reply"
        )
    }
}

impl std::error::Error for TooManyInformational {}

/// Counts the informational responses in front of a reply: watches the bytes of each
/// response head (after TLS) until the first head that is not a 1xx one, then nothing
/// until the next request is sent.
#[derive(Debug, Default)]
struct Heads {
    /// Past the reply's head: bytes are body, not looked at.
    in_body: bool,
    /// The first bytes of the head being read ("HTTP/1.1 103").
    start: [u8; 12],
    start_len: usize,
    /// The last two bytes seen, to find the blank line that ends a head.
    last: [u8; 2],
    informational: u32,
}

impl Heads {
    fn request_sent(&mut self) {
        *self = Heads::default();
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        for &b in bytes {
            if self.in_body {
                return Ok(());
            }
            if self.start_len < self.start.len() {
                self.start[self.start_len] = b;
                self.start_len += 1;
            }
            // A head ends at an empty line: "\n\n" or "\n\r\n".
            let ends = b == b'\n' && (self.last[1] == b'\n' || self.last == *b"\n\r");
            self.last = [self.last[1], b];
            if ends {
                // 101 Switching Protocols is a final answer (refused as a failed reply).
                let informational = self.start_len == self.start.len()
                    && self.start[9] == b'1'
                    && &self.start[10..] != b"01";
                if informational {
                    self.informational += 1;
                    if self.informational > MAX_INFORMATIONAL {
                        return Err(Error::Other(Box::new(TooManyInformational)));
                    }
                    self.start_len = 0;
                    self.last = [0; 2];
                } else {
                    self.in_body = true;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct CallTransport {
    inner: Box<dyn Transport>,
    heads: Heads,
}

impl Transport for CallTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.heads.request_sent();
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let before = self.inner.buffers().input().len();
        let result = self.inner.await_input(timeout);
        let input = self.inner.buffers().input();
        if input.len() > before {
            RECEIVED.set(true);
            if !self.heads.in_body {
                self.heads.feed(&input[before..])?;
            }
        }
        result
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
