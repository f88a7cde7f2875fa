//! The TCP step of every connection (direct, to an HTTP proxy, or to a SOCKS proxy) and
//! the transport over it. Every wait (connect, read, write) happens on the calling thread
//! in slices of at most [`CANCEL_POLL`] when the call can be cancelled, so a cancel is seen
//! in any phase: connecting, the TLS or proxy handshake, sending the request, waiting for
//! the reply, streaming it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, NextTimeout, Transport,
};
use ureq::{Error, Timeout};

use super::buffers::ConnectionBuffers;
use super::socket::{self, Connect};
use super::{
    before_wait, cancel_requested, drain_until, has_before_wait, watching_cancel, Cancelled,
    CANCEL_POLL, FIRST_LOOK, QUIET_SLICE,
};

/// Opens the TCP connection unless an earlier step (a SOCKS proxy) already did.
#[derive(Debug, Default)]
pub struct TcpConnector;

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if chained.is_some() {
            return Ok(chained.map(Either::A));
        }
        let addrs: Vec<SocketAddr> = details.addrs.iter().copied().collect();
        let transport = open(&addrs, details.timeout, details.config)?;
        Ok(Some(Either::B(transport)))
    }
}

/// Connects to the first of `addrs` that answers within the `timeout` budget, giving each
/// address but the last half of what is left, so one silent address does not use it all.
pub fn open(
    addrs: &[SocketAddr],
    timeout: NextTimeout,
    config: &ureq::config::Config,
) -> Result<TcpTransport, Error> {
    let started = Instant::now();
    let budget = timeout.not_zero().map(|d| *d);
    let deadline = budget.map(|b| started + b);
    let poll = if watching_cancel() {
        CANCEL_POLL
    } else {
        QUIET_SLICE
    };
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let attempt_deadline = match deadline {
            Some(d) if i + 1 < addrs.len() => {
                let left = d.saturating_duration_since(Instant::now());
                Some(Instant::now() + left / 2)
            }
            other => other,
        };
        match socket::connect(addr, attempt_deadline, poll, &cancel_requested) {
            Connect::Connected(stream) => {
                if config.no_delay() {
                    stream.set_nodelay(true)?;
                }
                let buffers =
                    ConnectionBuffers::new(config.input_buffer_size(), config.output_buffer_size());
                return Ok(TcpTransport::new(stream, buffers));
            }
            Connect::Cancelled => return Err(Error::Other(Box::new(Cancelled))),
            Connect::TimedOut => last = Some(Error::Timeout(timeout.reason)),
            Connect::Failed(e) => last = Some(Error::Io(e)),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    Err(last.unwrap_or(Error::HostNotFound))
}

/// A TCP connection. Reads and writes wait in slices when the call can be cancelled or a
/// drain bounds the wait; otherwise in one system call with the whole budget.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    buffers: ConnectionBuffers,
    /// The read and write timeouts last set on the socket, to skip setting them again.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// A write failed after the server had already sent something: the rest of the request
    /// is dropped so that the server's reply (often an early 413 or 401) can be read.
    discarding: bool,
}

impl TcpTransport {
    pub fn new(stream: TcpStream, buffers: ConnectionBuffers) -> TcpTransport {
        TcpTransport {
            stream,
            buffers,
            read_timeout: None,
            write_timeout: None,
            discarding: false,
        }
    }

    fn set_read_timeout(&mut self, limit: Duration) -> io::Result<()> {
        let limit = Some(limit.max(Duration::from_micros(1)));
        if self.read_timeout != limit {
            self.stream.set_read_timeout(limit)?;
            self.read_timeout = limit;
        }
        Ok(())
    }

    fn set_write_timeout(&mut self, limit: Duration) -> io::Result<()> {
        let limit = Some(limit.max(Duration::from_micros(1)));
        if self.write_timeout != limit {
            self.stream.set_write_timeout(limit)?;
            self.write_timeout = limit;
        }
        Ok(())
    }

    /// Whether the server has sent bytes that wait to be read (without consuming them).
    fn reply_waiting(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(socket::peek_without_waiting(&self.stream, &mut byte), Ok(n) if n > 0)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl Transport for TcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    /// Sends `amount` bytes of the output buffer. The budget bounds each wait for progress
    /// (it starts again whenever the peer accepts bytes, unless it is the whole call's);
    /// a cancel is seen within a slice.
    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        if self.discarding {
            return Ok(());
        }
        let budget = timeout.for_write();
        let limit = budget.not_zero().map(|d| *d);
        let renews = budget.reason == Timeout::PerWrite;
        let mut progress_at = Instant::now();
        let mut sent = 0;
        while sent < amount {
            if cancel_requested() {
                return Err(Error::Other(Box::new(Cancelled)));
            }
            // Always in slices: a blocking write that times out returns what the kernel took
            // at its start, which must not count as progress at its end.
            let mut slice = CANCEL_POLL;
            if let Some(limit) = limit {
                let left = limit.saturating_sub(progress_at.elapsed());
                if left.is_zero() {
                    return Err(Error::Timeout(budget.reason));
                }
                slice = slice.min(left);
            }
            self.set_write_timeout(slice)?;
            let output = &self.buffers.output()[sent..amount];
            let write_started = Instant::now();
            match (&self.stream).write(output) {
                Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    sent += n;
                    if renews {
                        progress_at = if write_started.elapsed() >= slice {
                            write_started
                        } else {
                            Instant::now()
                        };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
                Err(e) => {
                    // The server answered and hung up before reading the whole request: its
                    // reply says why, so keep it readable instead of reporting the write.
                    if self.reply_waiting() {
                        self.discarding = true;
                        return Ok(());
                    }
                    return Err(Error::Io(e));
                }
            }
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let budget = timeout.for_read();
        let started = Instant::now();
        let mut limit = budget.not_zero().map(|d| *d);
        let drain = drain_until();
        if let Some(until) = drain {
            let left = until.saturating_duration_since(started);
            limit = Some(limit.map_or(left, |l| l.min(left)));
        }
        let sliced = watching_cancel() || drain.is_some();
        // With a before-wait hook (a pulled stream), look for input briefly first: the hook
        // runs only when the input is really not there yet, not before every read.
        let mut hook_pending = sliced && has_before_wait();
        loop {
            if cancel_requested() {
                return Err(Error::Other(Box::new(Cancelled)));
            }
            let left = match limit {
                Some(limit) => {
                    let left = limit.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(Error::Timeout(budget.reason));
                    }
                    left
                }
                None => Duration::from_secs(3600),
            };
            let slice = left.min(match (sliced, hook_pending) {
                (true, true) => FIRST_LOOK,
                (true, false) => CANCEL_POLL,
                (false, _) => QUIET_SLICE,
            });
            self.set_read_timeout(slice)?;
            let input = self.buffers.input_append_buf();
            match (&self.stream).read(input) {
                Ok(amount) => {
                    self.buffers.input_appended(amount);
                    return Ok(amount > 0);
                }
                Err(e) if is_timeout(&e) && hook_pending => {
                    hook_pending = false;
                    before_wait();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    fn is_open(&mut self) -> bool {
        // Open when a non-blocking peek finds nothing to read yet: an idle pooled
        // connection that reads EOF (or stray bytes) must not be reused.
        if self.discarding {
            return false;
        }
        let mut byte = [0u8; 1];
        matches!(
            socket::peek_without_waiting(&self.stream, &mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use ureq::unversioned::transport::time::Duration as Budget;

    #[test]
    fn reads_of_an_uncancellable_call_set_the_socket_timeout_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut transport = TcpTransport::new(client, ConnectionBuffers::new(1024, 1024));
        // What ureq gives each read: what is left of the call's budget, less every time.
        for left_ms in [30_000, 29_999, 29_500, 12_345] {
            server.write_all(b"x").unwrap();
            let timeout = NextTimeout {
                after: Budget::Exact(Duration::from_millis(left_ms)),
                reason: Timeout::Global,
                per_read: None,
                per_write: None,
            };
            assert!(transport.await_input(timeout).unwrap());
            // The timeout last set on the socket (set only when it differs).
            assert_eq!(transport.read_timeout, Some(QUIET_SLICE));
        }
        // Near the end of the budget, the socket waits only what is left.
        server.write_all(b"x").unwrap();
        let timeout = NextTimeout {
            after: Budget::Exact(Duration::from_millis(300)),
            reason: Timeout::Global,
            per_read: None,
            per_write: None,
        };
        assert!(transport.await_input(timeout).unwrap());
        assert!(transport.read_timeout.unwrap() <= Duration::from_millis(300));
    }
}
