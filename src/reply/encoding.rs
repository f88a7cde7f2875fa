//! The reply's `Content-Encoding`: gzip and deflate are decoded as the body streams in,
//! whatever the request asked (some proxies compress regardless); any other coding is a
//! clear error naming it.

use std::cell::Cell;
use std::io::{self, Chain, Cursor, Read};
use std::rc::Rc;

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use crate::error::Error;

/// A decoding failure (as opposed to the connection's own errors, passed on as they are).
#[derive(Debug)]
pub(crate) struct Undecodable(pub(crate) String);

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Undecodable {}

/// The connection's bytes after the first two, read to tell zlib from raw deflate.
type Peeked<R> = Chain<Cursor<Vec<u8>>, Marked<R>>;

/// The body of a reply, decoded.
pub(crate) enum Decoded<R: Read> {
    Plain(R),
    Gzip(Watched<MultiGzDecoder<Marked<R>>>),
    Zlib(Watched<ZlibDecoder<Peeked<R>>>),
    Deflate(Watched<DeflateDecoder<Peeked<R>>>),
}

impl<R: Read> Decoded<R> {
    /// Wraps `body` to undo `content_encoding` (the header's value, if any).
    pub(crate) fn new(body: R, content_encoding: Option<&str>) -> Result<Decoded<R>, Error> {
        let codings: Vec<String> = content_encoding
            .unwrap_or("")
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity")
            .collect();
        let failed = Rc::new(Cell::new(false));
        let marked = Marked {
            inner: body,
            failed: failed.clone(),
        };
        match codings.as_slice() {
            [] => Ok(Decoded::Plain(marked.inner)),
            [one] if one == "gzip" || one == "x-gzip" => Ok(Decoded::Gzip(Watched {
                decoder: MultiGzDecoder::new(marked),
                failed,
                what: "gzip",
            })),
            [one] if one == "deflate" => {
                // "deflate" is meant to be zlib-wrapped (RFC 9110); some servers send the
                // raw stream. The zlib header's first two bytes tell which.
                let mut marked = marked;
                let mut head = Vec::with_capacity(2);
                (&mut marked)
                    .take(2)
                    .read_to_end(&mut head)
                    .map_err(|e| super::map_io_error(e, "reading the reply"))?;
                let zlib = matches!(head[..], [cmf, flg] if cmf & 0x0F == 8
                    && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0);
                let body = Cursor::new(head).chain(marked);
                Ok(if zlib {
                    Decoded::Zlib(Watched {
                        decoder: ZlibDecoder::new(body),
                        failed,
                        what: "deflate",
                    })
                } else {
                    Decoded::Deflate(Watched {
                        decoder: DeflateDecoder::new(body),
                        failed,
                        what: "deflate",
                    })
                })
            }
            _ => Err(Error::protocol(format!(
                "the server sent the reply with Content-Encoding: {}, which libylokh cannot \
                 decode (it decodes gzip and deflate)",
                content_encoding.unwrap_or("").trim()
            ))),
        }
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zlib(r) => r.read(buf),
            Decoded::Deflate(r) => r.read(buf),
        }
    }
}

/// The connection under a decoder, noting when it failed, so the decoder's own errors can
/// be told from the connection's.
pub(crate) struct Marked<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for Marked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        self.failed.set(result.is_err());
        result
    }
}

/// A decoder whose own errors become [`Undecodable`].
pub(crate) struct Watched<D> {
    decoder: D,
    failed: Rc<Cell<bool>>,
    what: &'static str,
}

impl<D: Read> Read for Watched<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.failed.set(false);
        self.decoder.read(buf).map_err(|e| {
            if self.failed.get() {
                e
            } else {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    Undecodable(format!("the {} reply could not be decoded: {e}", self.what)),
                )
            }
        })
    }
}
