//! A chat reply's event stream: body bytes in, chat events out, with the rules that say
//! what each server-sent event means and when a reply is complete. No I/O: the reply
//! reader feeds it what it reads (and the pull API can feed it from its own loop).
//!
//! The rules, with the peers' behaviour in mind:
//! - Data `[DONE]` (surrounding whitespace ignored) ends the reply whatever the event's
//!   name: go-openai's fixtures send it as `event: done`, and the SDK peers (openai-python,
//!   go-openai, async-openai) all stop on it regardless of the name.
//! - An event named `error` is the server's error: [`ErrorKind::Api`] with its message.
//! - An unnamed event, or one named `message`, carries a chunk (invalid JSON fails).
//! - An event with another name carries a chunk too when its data is a JSON object, as
//!   openai-python reads every named event outside its Assistants API: so content and
//!   error objects under a name are not lost, and what other protocols send under names
//!   (`ping`, Anthropic's `message_start`) has no `choices` and reports nothing. Data that
//!   is not a JSON object under a name (sse-starlette's `event: ping` with a timestamp) is
//!   skipped instead of failing the reply.
//! - An event still unterminated when the body ends (no blank line after it) is dropped,
//!   as the WHATWG rules and every SSE decoder peer do, with two exceptions that lose no
//!   content: an error in it is still reported (servers end streams that way with their
//!   error object, and that message is what the caller needs), and an unterminated
//!   `[DONE]` still counts as the end.
//! - A body that ends without `[DONE]` is complete when a `finish_reason` came; otherwise
//!   the reply is incomplete: [`ErrorKind::Protocol`], after delivering what came.
//! - `[DONE]` alone, with no finish reason before it, is a complete reply (the peers accept
//!   it too; llama-cpp-python ends overlapping requests that way): callers that must tell a
//!   `stop` from a missing reason read the finish reason (the `Finish` event, or the
//!   reply's [`crate::Message`]).

use std::ops::ControlFlow;

use crate::chunk::{self, Event};
use crate::error::{Error, ErrorKind};
use crate::sse;

/// What the stream says after a piece of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Feed more.
    More,
    /// `[DONE]` came: the reply is complete; the rest of the body is not needed.
    Done,
}

/// The state of one reply's event stream; see the module docs.
#[derive(Debug)]
pub(crate) struct EventStream {
    decoder: sse::Decoder,
    chunks: chunk::Parser,
    finished: bool,
}

/// How one server-sent event ended the handling of a piece.
enum Stop {
    Done,
    Aborted,
    Failed(Error),
}

impl EventStream {
    /// A stream allowing lines and events of up to `max_event_bytes`.
    pub(crate) fn new(max_event_bytes: usize) -> EventStream {
        EventStream {
            decoder: sse::Decoder::new(max_event_bytes),
            chunks: chunk::Parser::new(),
            finished: false,
        }
    }

    /// Feeds the next bytes of the body and reports the events they complete.
    ///
    /// Errors: the server's error ([`ErrorKind::Api`]), a broken stream
    /// ([`ErrorKind::Protocol`]), or `on_event` asking to stop ([`ErrorKind::Aborted`]).
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<Progress, Error> {
        let (chunks, finished) = (&mut self.chunks, &mut self.finished);
        let flow = self
            .decoder
            .feed(bytes, |event| handle(event, chunks, finished, on_event))
            .map_err(too_long)?;
        self.settle(flow, on_event)
    }

    /// The body ended: applies the end-of-stream rules.
    pub(crate) fn end(
        &mut self,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let flow = self.decoder.finish(unterminated).map_err(too_long)?;
        if self.settle(flow, on_event)? == Progress::Done {
            return Ok(());
        }
        if let ControlFlow::Break(()) = self.chunks.finish(on_event) {
            return Err(Error::aborted());
        }
        if self.finished {
            Ok(())
        } else {
            Err(Error::protocol(
                "the stream ended before [DONE] and before a finish_reason: the reply is incomplete",
            ))
        }
    }

    fn settle(
        &mut self,
        flow: ControlFlow<Stop>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<Progress, Error> {
        match flow {
            ControlFlow::Continue(()) => Ok(Progress::More),
            ControlFlow::Break(Stop::Done) => match self.chunks.finish(on_event) {
                ControlFlow::Continue(()) => Ok(Progress::Done),
                ControlFlow::Break(()) => Err(Error::aborted()),
            },
            ControlFlow::Break(Stop::Aborted) => Err(Error::aborted()),
            ControlFlow::Break(Stop::Failed(e)) => Err(e),
        }
    }
}

fn is_done(data: &[u8]) -> bool {
    data.trim_ascii() == b"[DONE]"
}

/// What one complete server-sent event means.
fn handle(
    event: &sse::Event<'_>,
    chunks: &mut chunk::Parser,
    finished: &mut bool,
    on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> ControlFlow<Stop> {
    if is_done(event.data) {
        return ControlFlow::Break(Stop::Done);
    }
    if event.event == b"error" {
        return ControlFlow::Break(Stop::Failed(error_event(event.data)));
    }
    let data = event.data.trim_ascii();
    let named = !(event.event.is_empty() || event.event == b"message");
    if data.is_empty() || (named && !data.starts_with(b"{")) {
        return ControlFlow::Continue(());
    }
    let mut watch = |e: Event<'_>| {
        if matches!(e, Event::Finish { .. }) {
            *finished = true;
        }
        on_event(e)
    };
    match chunks.parse(data, &mut watch) {
        Ok(ControlFlow::Continue(())) => ControlFlow::Continue(()),
        Ok(ControlFlow::Break(())) => ControlFlow::Break(Stop::Aborted),
        Err(e) => ControlFlow::Break(Stop::Failed(e)),
    }
}

/// The event left unterminated at the end of the body: only an error or `[DONE]` counts.
fn unterminated(event: &sse::Event<'_>) -> ControlFlow<Stop> {
    if is_done(event.data) {
        return ControlFlow::Break(Stop::Done);
    }
    if event.event == b"error" {
        return ControlFlow::Break(Stop::Failed(error_event(event.data)));
    }
    // Parsed only to find an error object; its content is dropped.
    match chunk::parse::<(), _>(event.data.trim_ascii(), &mut |_| ControlFlow::Continue(())) {
        Err(e) if e.kind() == ErrorKind::Api => ControlFlow::Break(Stop::Failed(e)),
        _ => ControlFlow::Continue(()),
    }
}

fn error_event(data: &[u8]) -> Error {
    Error::new(
        ErrorKind::Api,
        format!("server error: {}", chunk::error_text_from_body(data)),
    )
}

fn too_long(e: sse::LimitExceeded) -> Error {
    Error::protocol(format!(
        "the server sent a line or event longer than the limit of {} bytes",
        e.limit
    ))
}
