//! A thin layer over ureq's connections that lets a call be cancelled from another thread
//! and bounds the wait for the end of a body after `[DONE]`.
//!
//! ureq runs every read of a call on the calling thread, so the call's cancel flag and
//! drain state live in thread-locals set by [`CallGuard`]; the transport consults them on
//! each wait for input. Without a cancel flag and outside a drain it adds nothing to a wait.

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
    time, Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};
use ureq::{Agent, Error};

/// How often a waiting call looks at its cancel flag.
pub const CANCEL_POLL: Duration = Duration::from_millis(20);
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
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    static DRAIN_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set when this thread opened a new connection (rather than reusing a pooled one).
    static OPENED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a new connection was opened on this thread since the last call; clears it.
/// An attempt that fails on a reused connection before any reply byte most likely met a
/// connection the server had already closed, and may be sent again at once.
pub fn take_opened() -> bool {
    OPENED.replace(false)
}

/// Installs a call's cancel flag on this thread for as long as it lives.
pub struct CallGuard(());

impl CallGuard {
    pub fn enter(cancel: Option<&Arc<AtomicBool>>) -> CallGuard {
        CANCEL.with(|c| *c.borrow_mut() = cancel.cloned());
        DRAIN_UNTIL.set(None);
        CallGuard(())
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        CANCEL.with(|c| *c.borrow_mut() = None);
        DRAIN_UNTIL.set(None);
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

/// An agent whose connections go through [`CallTransport`].
pub fn agent(config: Config) -> Agent {
    let connector = DefaultConnector::new().chain(CallConnector);
    Agent::with_parts(config, connector, HostResolver::default())
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

impl Connector<Box<dyn Transport>> for CallConnector {
    type Out = CallTransport;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, Error> {
        if chained.is_some() {
            OPENED.set(true);
        }
        Ok(chained.map(|inner| CallTransport { inner }))
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
            let slice = NextTimeout {
                after: time::Duration::from(left.min(CANCEL_POLL)),
                reason: budget.reason,
                per_read: None,
                per_write: timeout.per_write,
            };
            match self.inner.await_input(slice) {
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
