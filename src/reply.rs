//! Reading a 2xx reply: undo its `Content-Encoding`, tell what the body is, then read it
//! whole (JSON) or as an event stream; and sorting ureq's errors into the library's kinds.
//!
//! What the body is decides how it is read, not only its label, because servers mislabel
//! both ways: go-openai's test server sends a JSON error labelled `text/event-stream`, and
//! some proxies label a stream `application/json`. The start of the body (after a BOM and
//! white space) decides: `{` or `[` is JSON, an SSE field (`data:`, `event:`, `id:`,
//! `retry:`) or comment (`:`) is a stream. Anything else (a captive portal's or a proxy's
//! HTML page) is an error that says what arrived, with the start of the body escaped;
//! except under the `text/event-stream` label, where it is read as a stream as before
//! (unknown SSE fields are ignored by the rules). An empty body goes by its label.

use std::io::{Cursor, Read};
use std::ops::ControlFlow;

use ureq::http::Response;
use ureq::Body;

use crate::chunk::{self, Event};
use crate::error::{Error, ErrorKind};
use crate::stream::{EventStream, Progress};
use crate::transport;

mod encoding;

use encoding::{Decoded, Undecodable};

/// Reads a 2xx reply to its end; see the module docs.
///
/// Never inlined: its locals would otherwise enlarge the frame of the caller that also
/// sends the request, and so deepen the stack under ureq's connect, the deepest point of a
/// call (each touched page of a thread's stack is resident memory, per concurrent call).
#[inline(never)]
pub(crate) fn read_reply(
    response: Response<Body>,
    max_event_bytes: usize,
    on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<(), Error> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let content_encoding = header("content-encoding");
    let body = Decoded::new(
        response.into_body().into_reader(),
        content_encoding.as_deref(),
    )?;
    let (looks, head, body) = sniff(body)?;
    let label = content_type.as_deref().unwrap_or("").to_ascii_lowercase();
    let body = Cursor::new(head).chain(body);
    match looks {
        Looks::Json => read_whole_reply(body, max_event_bytes, on_event),
        Looks::Stream => read_stream(body, max_event_bytes, on_event),
        Looks::Empty if label.contains("json") => read_whole_reply(body, max_event_bytes, on_event),
        Looks::Empty => read_stream(body, max_event_bytes, on_event),
        Looks::Other if label.starts_with("text/event-stream") => {
            read_stream(body, max_event_bytes, on_event)
        }
        Looks::Other => {
            let mut start = Vec::new();
            let _ = body.take(SHOWN as u64).read_to_end(&mut start);
            let what = match content_type {
                Some(ct) => format!("the server replied {}", ct.trim()),
                None => "the server replied without a Content-Type".to_owned(),
            };
            Err(Error::protocol(format!(
                "{what}, not an event stream or JSON: {}",
                escaped(&start)
            )))
        }
    }
}

/// What the start of a body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Looks {
    Json,
    Stream,
    Other,
    /// Nothing but white space before the end.
    Empty,
}

/// Bytes read at most to tell what a body is.
const SNIFF_LIMIT: usize = 256;
/// Bytes of an unexpected body shown in the error.
const SHOWN: usize = 200;

/// Reads the start of `body` until it is clear what the body is: returns that, the bytes
/// read (to be read again), and the rest.
fn sniff<R: Read>(mut body: R) -> Result<(Looks, Vec<u8>, R), Error> {
    let mut head = Vec::new();
    let mut buf = [0u8; SNIFF_LIMIT];
    loop {
        if let Some(looks) = looks(&head, false) {
            return Ok((looks, head, body));
        }
        let room = SNIFF_LIMIT.saturating_sub(head.len()).max(1);
        let n = body
            .read(&mut buf[..room])
            .map_err(|e| map_io_error(e, "reading the reply"))?;
        if n == 0 {
            let looks = looks(&head, true).unwrap_or(Looks::Other);
            return Ok((looks, head, body));
        }
        head.extend_from_slice(&buf[..n]);
    }
}

/// What `head` looks like, or `None` when more bytes are needed (`ended`: there are none).
fn looks(head: &[u8], ended: bool) -> Option<Looks> {
    let start = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let Some(first) = start.iter().position(|b| !b.is_ascii_whitespace()) else {
        // Only white space so far (a partial BOM is not white space: it is decided below).
        return (ended || head.len() >= SNIFF_LIMIT).then_some(Looks::Empty);
    };
    let rest = &start[first..];
    match rest[0] {
        b'{' | b'[' => return Some(Looks::Json),
        b':' => return Some(Looks::Stream),
        _ => {}
    }
    // An SSE field name ends at a colon or the line's end.
    match rest.iter().position(|&b| matches!(b, b':' | b'\n' | b'\r')) {
        Some(end) => Some(match &rest[..end] {
            b"data" | b"event" | b"id" | b"retry" => Looks::Stream,
            _ => Looks::Other,
        }),
        None if ended || rest.len() > 8 => Some(Looks::Other),
        None => None,
    }
}

/// The start of a body, readable in an error message: UTF-8 (lossy), control characters
/// and quotes escaped, at most [`SHOWN`] bytes.
fn escaped(start: &[u8]) -> String {
    let text = String::from_utf8_lossy(&start[..start.len().min(SHOWN)]);
    let mut out: String = text.escape_debug().collect();
    if start.len() >= SHOWN {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

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
/// Bytes of the body taken from the connection at a time: a few dozen events' worth, on
/// the heap rather than in a large stack frame. The size of the connection's output buffer
/// (`client::OUTPUT_BUFFER`), which is released when the reply starts to be read, so that
/// this buffer takes its place in the allocator: a reply keeps one of the two resident, not
/// both. (16 KiB cost 8 KiB more per concurrent reply; 4 KiB reads cost about 1% more
/// instructions per token.)
const READ_BUFFER: usize = 8 * 1024;

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
        U::Io(io) if io.get_ref().is_some_and(|e| e.is::<Undecodable>()) => {
            return Error::protocol(format!("{io} while {doing}"));
        }
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
