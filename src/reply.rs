//! Reading a reply: the whole JSON body or the SSE stream, event by event, and sorting
//! ureq's errors into the library's kinds.

use std::io::Read;
use std::ops::ControlFlow;

use crate::chunk::{self, Event};
use crate::error::{Error, ErrorKind};
use crate::stream::{EventStream, Progress};
use crate::transport;

/// Reads a non-streaming reply (or a JSON error sent in place of a stream).
pub(crate) fn read_whole_reply(
    reader: impl Read,
    limit: usize,
    on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut body = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| map_io_error(e, "reading the reply"))?;
    if body.len() > limit {
        return Err(Error::protocol(format!(
            "the reply is larger than the limit of {limit} bytes"
        )));
    }
    match chunk::parse(&body, on_event)? {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::aborted()),
    }
}
/// Bytes read from the socket at a time: a few events' worth without a large stack frame.
/// (4 KiB would save memory per reply, but then ureq-proto 0.7.1 reports a long stream of
/// 4 KiB events as "Peer disconnected": tests/faults.rs, the endless stream.)
const READ_BUFFER: usize = 16 * 1024;

/// Reads a streaming reply to its end (or to `[DONE]`, then drains what is left so the
/// connection can be reused).
pub(crate) fn read_stream(
    mut reader: impl Read,
    limit: usize,
    on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut stream = EventStream::new(limit);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return stream.end(on_event),
            Ok(n) => n,
            Err(e) => return Err(map_io_error(e, "reading the stream")),
        };
        if stream.feed(&buf[..n], on_event)? == Progress::Done {
            transport::drain(&mut reader, &mut buf);
            return Ok(());
        }
    }
}

pub(crate) fn map_io_error(e: std::io::Error, doing: &str) -> Error {
    map_ureq_error(ureq::Error::from(e), doing)
}

/// Sorts ureq's errors into the library's kinds, with a message saying what was being done.
pub(crate) fn map_ureq_error(e: ureq::Error, doing: &str) -> Error {
    use std::io::ErrorKind as Io;
    use ureq::Error as U;
    let kind = match &e {
        U::Timeout(_) => ErrorKind::Timeout,
        U::HostNotFound | U::ConnectionFailed | U::ConnectProxyFailed(_) => ErrorKind::Connect,
        U::Tls(_) | U::Pem(_) | U::Rustls(_) | U::TlsRequired => ErrorKind::Tls,
        U::BadUri(_) | U::InvalidProxyUrl | U::Http(_) => ErrorKind::InvalidArgument,
        U::Protocol(_)
        | U::BodyExceedsLimit(_)
        | U::TooManyRedirects
        | U::RedirectFailed
        | U::LargeResponseHeader(..) => ErrorKind::Protocol,
        U::Other(inner) if inner.is::<transport::Cancelled>() => return Error::cancelled(),
        U::Other(inner) if inner.is::<transport::TlsHandshakeFailed>() => ErrorKind::Tls,
        U::Other(inner) if inner.is::<transport::TooManyInformational>() => ErrorKind::Protocol,
        U::Io(io) => match io.kind() {
            Io::ConnectionRefused
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::AddrNotAvailable
            | Io::NotFound => ErrorKind::Connect,
            Io::TimedOut | Io::WouldBlock => ErrorKind::Timeout,
            _ if is_tls_error(io) => ErrorKind::Tls,
            _ => ErrorKind::Io,
        },
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("{} while {doing}: {e}", kind.describe()))
}

/// Whether an I/O error carries a TLS failure. rustls reports its errors (an untrusted
/// certificate, a peer that does not speak TLS, an alert) as I/O errors wrapping its own
/// error type, the one `ureq::Error::Rustls` holds: the type is taken from that variant,
/// so this library needs no dependency on rustls to recognise it.
fn is_tls_error(e: &std::io::Error) -> bool {
    fn wraps<T: std::error::Error + 'static>(
        _variant: fn(T) -> ureq::Error,
        e: &std::io::Error,
    ) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<T>())
    }
    wraps(ureq::Error::Rustls, e) || e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>())
}
