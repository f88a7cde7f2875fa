//! The parsing stages of a call on bytes in memory, without I/O, for the fuzz targets in
//! `fuzz/`. Not part of the API: it may change at any time.

use std::io::{self, Read};
use std::ops::ControlFlow;

use crate::{Error, Event};

/// What a stream or reply reports: each event, in order; `Break` stops the call.
pub type OnEvent<'a> = &'a mut dyn FnMut(Event<'_>) -> ControlFlow<()>;

/// A streaming reply's body as the client reads it (SSE decoder, chunk parser,
/// `[DONE]`, error events, end-of-stream rules), with the body arriving in pieces cut
/// at `cuts` (offsets into `body`, in any order; out-of-range ones are ignored).
pub fn stream(
    body: &[u8],
    cuts: &[usize],
    max_event_bytes: usize,
    on_event: OnEvent<'_>,
) -> Result<(), Error> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < body.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let reader = Pieces {
        body,
        cuts,
        at: 0,
        next: 0,
    };
    crate::reply::read_stream(reader, max_event_bytes, on_event)
}

/// A non-streaming reply's body as the client reads it.
pub fn whole_reply(
    body: &[u8],
    max_event_bytes: usize,
    on_event: OnEvent<'_>,
) -> Result<(), Error> {
    crate::reply::read_whole_reply(body, max_event_bytes, on_event)
}

/// One `data:` payload through the chunk parser (fast path, else serde).
pub fn chunk(data: &[u8], on_event: OnEvent<'_>) -> Result<ControlFlow<()>, Error> {
    crate::chunk::parse(data, on_event)
}

/// The chunk parser's fast path alone: `None` when it leaves the chunk to serde (having
/// reported nothing).
pub fn chunk_fast(data: &[u8], on_event: OnEvent<'_>) -> Option<ControlFlow<()>> {
    crate::chunk::fast::parse(data, on_event)
}

/// The chunk parser's serde path alone.
pub fn chunk_serde(data: &[u8], on_event: OnEvent<'_>) -> Result<ControlFlow<()>, Error> {
    crate::chunk::parse_with_serde(data, on_event)
}

/// Hands out `body` one piece at a time, as a socket would.
struct Pieces<'a> {
    body: &'a [u8],
    cuts: Vec<usize>,
    at: usize,
    next: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let end = self.cuts.get(self.next).copied().unwrap_or(self.body.len());
        let n = (end - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.body[self.at..self.at + n]);
        self.at += n;
        if self.at == end {
            self.next += 1;
        }
        Ok(n)
    }
}

/// The request a chat on `client` would send now, as the library builds it: the URL and
/// the headers the library sets (ureq adds `Host`, `User-Agent`, `Accept` and the
/// framing), passed through the http crate's own checks. `Err` says why it could not be
/// built: after setters that returned OK, that is a bug.
pub fn request_head(client: &crate::ffi::ylokh_client) -> Result<RequestHead, String> {
    let settings = client.client().settings();
    let url = format!("{}/chat/completions", settings.base_url);
    let mut builder = ureq::http::Request::post(&url);
    for (name, value) in crate::call::request_headers(&settings, &url, true) {
        builder = builder.header(name, value.as_ref());
    }
    let request = builder.body(()).map_err(|e| format!("{url:?}: {e}"))?;
    let uri = request.uri();
    Ok(RequestHead {
        url,
        scheme: uri.scheme_str().unwrap_or("").to_owned(),
        host: uri.host().unwrap_or("").to_owned(),
        port: uri.port().map(|p| p.as_str().to_owned()),
        headers: request
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
    })
}

/// What [`request_head`] built.
#[derive(Debug)]
pub struct RequestHead {
    pub url: String,
    pub scheme: String,
    pub host: String,
    /// The port as written in the URL, if one was.
    pub port: Option<String>,
    /// Names in lower case, values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}
