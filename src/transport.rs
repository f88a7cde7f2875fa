//! A thin layer over ureq's connections that lets a call be cancelled from another thread
//! and bounds the wait for the end of a body after `[DONE]`.
//!
//! ureq runs every read of a call on the calling thread, so the call's cancel flag and
//! drain state live in thread-locals set by [`CallGuard`]; the transport consults them on
//! each wait for input. Without a cancel flag and outside a drain it adds nothing to a wait.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    time, Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers,
    NextTimeout, RustlsConnector, SocksConnector, TcpConnector, Transport,
};
use ureq::{Agent, Error};

/// How often a waiting call looks at its cancel flag.
pub const CANCEL_POLL: Duration = Duration::from_millis(20);
/// How long a call with a before-wait hook looks for input before running the hook: a
/// stream's events are handed over at most this much later than they were read.
const FIRST_LOOK: Duration = Duration::from_micros(50);
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

thread_local! {
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    static DRAIN_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set when this thread opened a new connection (rather than reusing a pooled one).
    static OPENED: Cell<bool> = const { Cell::new(false) };
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

fn has_before_wait() -> bool {
    BEFORE_WAIT.with(|h| h.try_borrow().is_ok_and(|h| h.is_some()))
}

fn before_wait() {
    BEFORE_WAIT.with(|h| {
        if let Ok(mut hook) = h.try_borrow_mut() {
            if let Some(hook) = hook.as_mut() {
                hook();
            }
        }
    });
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

fn cancelled() -> Option<bool> {
    CANCEL.with(|c| c.borrow().as_ref().map(|f| f.load(Ordering::Relaxed)))
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
/// one (SOCKS, CONNECT proxy, TCP, rustls) with the TCP step made cancellable.
pub fn agent(config: Config) -> Agent {
    let connector =
        ().chain(SocksConnector::default())
            .chain(ConnectProxyConnector::default())
            .chain(CancellableTcp::default())
            .chain(RustlsConnector::default())
            .chain(CallConnector);
    Agent::with_parts(config, connector, HostResolver::default())
}

/// ureq's TCP connector, except that a call with a cancel token connects on a helper
/// thread, so that it can return as soon as the token is triggered instead of waiting out
/// the connect timeout. The helper thread ends by itself within that timeout.
#[derive(Debug, Default)]
struct CancellableTcp(TcpConnector);

impl<In: Transport> Connector<In> for CancellableTcp {
    type Out = Either<Either<In, StreamTransport>, <TcpConnector as Connector<In>>::Out>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let flag = CANCEL.with(|c| c.borrow().clone());
        let (Some(flag), None) = (flag, &chained) else {
            return Ok(self.0.connect(details, chained)?.map(Either::B));
        };
        let addrs: Vec<SocketAddr> = details.addrs.iter().copied().collect();
        let budget = details.timeout.not_zero().map(|d| *d);
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("ylokh-connect".into())
            .spawn(move || {
                let mut result = Err(io::Error::new(io::ErrorKind::NotFound, "no address"));
                for addr in addrs {
                    result = match budget {
                        Some(budget) => TcpStream::connect_timeout(&addr, budget),
                        None => TcpStream::connect(addr),
                    };
                    if result.is_ok() {
                        break;
                    }
                }
                // The call may have been cancelled and gone: then the stream is just closed.
                let _ = sender.send(result);
            })
            .map_err(Error::Io)?;
        let stream = loop {
            if flag.load(Ordering::Relaxed) {
                return Err(Error::Other(Box::new(Cancelled)));
            }
            match receiver.recv_timeout(CANCEL_POLL) {
                Ok(Ok(stream)) => break stream,
                Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(Error::Timeout(ureq::Timeout::Connect))
                }
                Ok(Err(e)) => return Err(Error::Io(e)),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::ConnectionFailed),
            }
        };
        let config = details.config;
        if config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let buffers = LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size());
        Ok(Some(Either::A(Either::B(StreamTransport {
            stream,
            buffers,
        }))))
    }
}

/// A plain TCP transport for connections made by [`CancellableTcp`] (ureq's own TCP
/// transport cannot be built from outside ureq).
#[derive(Debug)]
struct StreamTransport {
    stream: TcpStream,
    buffers: LazyBuffers,
}

/// Maps an I/O result to ureq's error, with timeouts given their phase.
fn io_result<T>(result: io::Result<T>, reason: ureq::Timeout) -> Result<T, Error> {
    result.map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(reason),
        _ => Error::Io(e),
    })
}

impl Transport for StreamTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let limit = timeout.not_zero().map(|d| *d);
        io_result(self.stream.set_write_timeout(limit), timeout.reason)?;
        let output = &self.buffers.output()[..amount];
        io_result((&self.stream).write_all(output), timeout.reason)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        let limit = timeout.not_zero().map(|d| *d);
        io_result(self.stream.set_read_timeout(limit), timeout.reason)?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break io_result(other, timeout.reason)?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // Open when a non-blocking peek finds nothing to read yet: an idle pooled
        // connection that reads EOF (or stray bytes) must not be reused.
        let mut byte = [0u8; 1];
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open =
            matches!(self.stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).is_ok() && open
    }
}

/// ureq's resolver, with lookup failures reported as `HostNotFound` (the system's I/O
/// error for them has no kind of its own) so they count as connect failures.
#[derive(Debug, Default)]
struct HostResolver(DefaultResolver);

impl Resolver for HostResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        match self.0.resolve(uri, config, timeout) {
            Err(Error::Io(_)) => Err(Error::HostNotFound),
            other => other,
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
        }))
    }
}

#[derive(Debug)]
struct CallTransport {
    inner: Box<dyn Transport>,
}

impl Transport for CallTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        if cancelled() == Some(true) {
            return Err(Error::Other(Box::new(Cancelled)));
        }
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let drain_until = DRAIN_UNTIL.get();
        let watching = cancelled();
        if drain_until.is_none() && watching.is_none() {
            return self.inner.await_input(timeout);
        }
        // Wait in short slices so the cancel flag and the drain bound are looked at often;
        // the caller's own budget (idle timeout, deadline) is kept across the slices.
        let budget = timeout.for_read();
        let started = Instant::now();
        // With a before-wait hook, look for input briefly first: it runs only when the
        // input is really not there yet, not before every read of a busy stream.
        let mut hook_pending = has_before_wait();
        loop {
            if cancelled() == Some(true) {
                return Err(Error::Other(Box::new(Cancelled)));
            }
            let now = Instant::now();
            let mut left = budget.after.saturating_sub(now - started);
            if let Some(until) = drain_until {
                left = left.min(until.saturating_duration_since(now));
            }
            if left.is_zero() {
                return Err(Error::Timeout(budget.reason));
            }
            let slice_length = if hook_pending {
                FIRST_LOOK
            } else {
                CANCEL_POLL
            };
            let slice = NextTimeout {
                after: time::Duration::from(left.min(slice_length)),
                reason: budget.reason,
                per_read: None,
                per_write: timeout.per_write,
            };
            match self.inner.await_input(slice) {
                Err(Error::Timeout(_)) if hook_pending => {
                    hook_pending = false;
                    before_wait();
                }
                Err(Error::Timeout(_)) => continue,
                other => return other,
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
