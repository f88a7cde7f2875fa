//! Server-Sent Events decoder: bytes in, events out, no I/O.
//!
//! Implements the WHATWG `EventSource` stream parsing rules on raw bytes (no
//! UTF-8 validation: the payload is handed on as bytes), with a hard memory
//! bound. Differences from the spec, all deliberate:
//! - an unterminated last event is handed to the caller at end of stream
//!   ([`Decoder::finish`]), which decides what it may mean (the chat stream
//!   drops it unless it is an error or `[DONE]`: see `stream.rs`);
//! - [`Event::id`] is the id seen in the event's own block, not the
//!   persistent "last event ID" (we never reconnect, so nobody needs it);
//! - `retry` is ignored for the same reason.
//!
//! It is built for the token-streaming hot path: line ends are found with
//! `memchr2`, internal buffers are reused (no allocation in steady state), and
//! an event that lies entirely inside one `feed` input is handed out borrowed
//! straight from that input, with no copy.

use core::fmt;
use core::mem;
use core::ops::ControlFlow;

use memchr::{memchr, memchr2};

/// UTF-8 byte order mark, skipped once at the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched event. The slices borrow either the caller's input or the
/// decoder's buffers, so they are only valid inside the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Value of the last `event:` field; empty if none (which means "message").
    pub event: &'a [u8],
    /// The `data:` lines joined with `b'\n'` (no trailing newline).
    pub data: &'a [u8],
    /// Value of the last valid `id:` field of this event block, if any.
    pub id: Option<&'a [u8]>,
}

/// A line, or an event's accumulated data, was longer than the decoder's
/// `max_event_bytes`: the stream is malformed or hostile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded {
    /// The configured `max_event_bytes`.
    pub limit: usize,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server-sent event larger than {} bytes", self.limit)
    }
}

impl std::error::Error for LimitExceeded {}

/// Where a field value of the event being built currently lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The field has not been seen in this event block.
    Unset,
    /// Borrowed: `start..end` of the input of the current `feed` call.
    Input(usize, usize),
    /// Copied into the field's own reusable buffer.
    Owned,
}

/// Incremental SSE decoder; see the module docs.
///
/// Memory bound: no line (excluding its terminator) and no event's joined data
/// may be longer than `max_event_bytes`; exceeding either is a
/// [`LimitExceeded`] error, whether or not the bytes arrive in one piece, so
/// the result never depends on how the stream was split. Each internal buffer
/// therefore stays within `max_event_bytes`.
///
/// After an error every call returns the same error until [`Decoder::reset`].
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    /// The incomplete last line of earlier inputs (never holds a terminator).
    carry: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    id: Vec<u8>,
    data_slot: Slot,
    event_slot: Slot,
    id_slot: Slot,
    /// Number of BOM bytes matched so far at stream start; 3 = start is over.
    bom: u8,
    /// The last input ended in CR: an LF opening the next input is part of
    /// the same line end (CRLF split across inputs).
    pending_cr: bool,
    failed: bool,
}

impl Decoder {
    /// A decoder allowing lines and event data of up to `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Decoder {
        Decoder {
            max: max_event_bytes,
            carry: Vec::new(),
            data: Vec::new(),
            event: Vec::new(),
            id: Vec::new(),
            data_slot: Slot::Unset,
            event_slot: Slot::Unset,
            id_slot: Slot::Unset,
            bom: 0,
            pending_cr: false,
            failed: false,
        }
    }

    /// Forget all stream state (including an error) to decode a new stream,
    /// keeping the buffers' capacity.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.clear_event();
        self.bom = 0;
        self.pending_cr = false;
        self.failed = false;
    }

    /// Feed the next bytes of the stream.
    ///
    /// Calls `on_event` for each complete event, in order. If it returns
    /// `ControlFlow::Break(b)`, decoding stops at once, the rest of `input` is
    /// dropped, and `Ok(ControlFlow::Break(b))` is returned; a later `feed`
    /// continues as if at the start of a line.
    ///
    /// On `Err`, the events before the offending line were still delivered.
    pub fn feed<B>(
        &mut self,
        input: &[u8],
        mut on_event: impl FnMut(&Event<'_>) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, LimitExceeded> {
        if self.failed {
            return Err(self.error());
        }
        let result = self.feed_inner(input, &mut on_event);
        if result.is_err() {
            self.fail();
        }
        result
    }

    /// End of stream: decode an unterminated last line, then hand the pending
    /// event, if it has data, to `on_event`.
    ///
    /// WHATWG discards an event not closed by a blank line; this decoder hands
    /// it over so the caller can still find an error in it (real servers end
    /// streams with an error JSON without the final blank line, or even the
    /// final line end). The caller must not treat it as a complete event.
    ///
    /// On success the decoder is left reset, ready for a new stream.
    pub fn finish<B>(
        &mut self,
        mut on_event: impl FnMut(&Event<'_>) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, LimitExceeded> {
        if self.failed {
            return Err(self.error());
        }
        match self.finish_inner(&mut on_event) {
            Ok(flow) => {
                self.reset();
                Ok(flow)
            }
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    fn error(&self) -> LimitExceeded {
        LimitExceeded { limit: self.max }
    }

    fn fail(&mut self) {
        self.failed = true;
        // Drop borrowed ranges: they point into an input that is gone.
        self.clear_event();
        self.carry.clear();
    }

    fn feed_inner<B>(
        &mut self,
        input: &[u8],
        on_event: &mut impl FnMut(&Event<'_>) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, LimitExceeded> {
        let mut pos = 0;

        // Skip a BOM at stream start, byte by byte since it may be split.
        while self.bom < 3 {
            let Some(&b) = input.get(pos) else {
                return Ok(ControlFlow::Continue(()));
            };
            let matched = usize::from(self.bom);
            if BOM.get(matched) == Some(&b) {
                self.bom += 1;
                pos += 1;
            } else {
                // Not a BOM after all: the bytes matched so far are content.
                self.carry
                    .extend_from_slice(BOM.get(..matched).unwrap_or(&[]));
                self.bom = 3;
            }
        }

        if self.pending_cr {
            if let Some(&b) = input.get(pos) {
                self.pending_cr = false;
                if b == b'\n' {
                    pos += 1;
                }
            }
        }

        // Complete the line left over from earlier inputs. It is non-empty,
        // so it never dispatches.
        if !self.carry.is_empty() {
            let rest = input.get(pos..).unwrap_or(&[]);
            let Some(i) = memchr2(b'\n', b'\r', rest) else {
                extend_bounded(&mut self.carry, rest, self.max)?;
                return Ok(ControlFlow::Continue(()));
            };
            extend_bounded(&mut self.carry, rest.get(..i).unwrap_or(&[]), self.max)?;
            pos = self.skip_line_end(input, pos + i);
            let line = mem::take(&mut self.carry);
            let result = self.field_line(&line, None, input);
            self.carry = line;
            self.carry.clear();
            result?;
        }

        // Lines wholly inside `input`: fields are recorded as borrowed ranges.
        loop {
            let rest = input.get(pos..).unwrap_or(&[]);
            let Some(i) = memchr2(b'\n', b'\r', rest) else {
                extend_bounded(&mut self.carry, rest, self.max)?;
                break;
            };
            if i > self.max {
                return Err(self.error());
            }
            let start = pos;
            pos = self.skip_line_end(input, pos + i);
            if i == 0 {
                if let ControlFlow::Break(b) = self.dispatch(input, on_event) {
                    return Ok(ControlFlow::Break(b));
                }
            } else {
                let line = rest.get(..i).unwrap_or(&[]);
                self.field_line(line, Some(start), input)?;
            }
        }

        // `input` is going away: copy what the pending event borrows from it.
        self.own_fields(input)
    }

    fn finish_inner<B>(
        &mut self,
        on_event: &mut impl FnMut(&Event<'_>) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, LimitExceeded> {
        if self.bom < 3 {
            // The stream was a strict prefix of a BOM: those bytes are content.
            let matched = BOM.get(..usize::from(self.bom)).unwrap_or(&[]);
            extend_bounded(&mut self.carry, matched, self.max)?;
            self.bom = 3;
        }
        if !self.carry.is_empty() {
            let line = mem::take(&mut self.carry);
            let result = self.field_line(&line, None, &[]);
            self.carry = line;
            result?;
        }
        Ok(self.dispatch(&[], on_event))
    }

    /// Consume the line terminator at `input[at]` (CR, LF or CRLF) and return
    /// the position after it.
    fn skip_line_end(&mut self, input: &[u8], at: usize) -> usize {
        let next = at + 1;
        if input.get(at) == Some(&b'\r') {
            match input.get(next) {
                Some(b'\n') => return next + 1,
                Some(_) => {}
                None => self.pending_cr = true,
            }
        }
        next
    }

    /// Process a non-empty line. `at` is its offset in `input` if the line
    /// lies there (so values can be borrowed), `None` if it is a copy.
    fn field_line(
        &mut self,
        line: &[u8],
        at: Option<usize>,
        input: &[u8],
    ) -> Result<(), LimitExceeded> {
        let (name, value_at) = match memchr(b':', line) {
            Some(0) => return Ok(()), // comment / keep-alive
            Some(colon) => {
                let v = colon + 1;
                let v = if line.get(v) == Some(&b' ') { v + 1 } else { v };
                (line.get(..colon).unwrap_or(&[]), v)
            }
            None => (line, line.len()),
        };
        let value = line.get(value_at..).unwrap_or(&[]);
        let at = at.map(|a| a + value_at);
        match name {
            b"data" => self.push_data(value, at, input),
            b"event" => set_field(&mut self.event_slot, &mut self.event, value, at, self.max),
            b"id" if memchr(0, value).is_none() => {
                set_field(&mut self.id_slot, &mut self.id, value, at, self.max)
            }
            // `retry` only matters to reconnecting clients, which we are not;
            // unknown fields are ignored per spec.
            _ => Ok(()),
        }
    }

    fn push_data(
        &mut self,
        value: &[u8],
        at: Option<usize>,
        input: &[u8],
    ) -> Result<(), LimitExceeded> {
        match (self.data_slot, at) {
            (Slot::Unset, Some(a)) => {
                // Fast path: borrow, copy only if the event outlives `input`.
                self.data_slot = Slot::Input(a, a + value.len());
                Ok(())
            }
            (Slot::Unset, None) => {
                self.data.clear();
                self.data_slot = Slot::Owned;
                extend_bounded(&mut self.data, value, self.max)
            }
            (Slot::Input(..), _) | (Slot::Owned, _) => {
                own_field(&mut self.data_slot, &mut self.data, input, self.max)?;
                extend_bounded(&mut self.data, b"\n", self.max)?;
                extend_bounded(&mut self.data, value, self.max)
            }
        }
    }

    /// Copy every field the pending event borrows from `input`.
    fn own_fields<B>(&mut self, input: &[u8]) -> Result<ControlFlow<B>, LimitExceeded> {
        own_field(&mut self.data_slot, &mut self.data, input, self.max)?;
        own_field(&mut self.event_slot, &mut self.event, input, self.max)?;
        own_field(&mut self.id_slot, &mut self.id, input, self.max)?;
        Ok(ControlFlow::Continue(()))
    }

    /// Blank line (or end of stream): hand out the event if it has data, then
    /// start a new event block.
    fn dispatch<B>(
        &mut self,
        input: &[u8],
        on_event: &mut impl FnMut(&Event<'_>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let flow = match resolve(self.data_slot, &self.data, input) {
            Some(data) => on_event(&Event {
                event: resolve(self.event_slot, &self.event, input).unwrap_or(&[]),
                data,
                id: resolve(self.id_slot, &self.id, input),
            }),
            None => ControlFlow::Continue(()),
        };
        self.clear_event();
        flow
    }

    fn clear_event(&mut self) {
        self.data.clear();
        self.event.clear();
        self.id.clear();
        self.data_slot = Slot::Unset;
        self.event_slot = Slot::Unset;
        self.id_slot = Slot::Unset;
    }
}

/// Record the latest value of a single-valued field.
fn set_field(
    slot: &mut Slot,
    buf: &mut Vec<u8>,
    value: &[u8],
    at: Option<usize>,
    max: usize,
) -> Result<(), LimitExceeded> {
    match at {
        Some(a) => {
            *slot = Slot::Input(a, a + value.len());
            Ok(())
        }
        None => {
            buf.clear();
            *slot = Slot::Owned;
            extend_bounded(buf, value, max)
        }
    }
}

/// Make a borrowed field an owned copy.
fn own_field(
    slot: &mut Slot,
    buf: &mut Vec<u8>,
    input: &[u8],
    max: usize,
) -> Result<(), LimitExceeded> {
    if let Slot::Input(start, end) = *slot {
        buf.clear();
        *slot = Slot::Owned;
        extend_bounded(buf, input.get(start..end).unwrap_or(&[]), max)?;
    }
    Ok(())
}

fn resolve<'a>(slot: Slot, buf: &'a [u8], input: &'a [u8]) -> Option<&'a [u8]> {
    match slot {
        Slot::Unset => None,
        Slot::Input(start, end) => Some(input.get(start..end).unwrap_or(&[])),
        Slot::Owned => Some(buf),
    }
}

/// Append `bytes` unless the result would exceed `limit`. Grows capacity
/// geometrically (amortized O(1) per byte) but never beyond `limit`.
fn extend_bounded(buf: &mut Vec<u8>, bytes: &[u8], limit: usize) -> Result<(), LimitExceeded> {
    let need = match buf.len().checked_add(bytes.len()) {
        Some(n) if n <= limit => n,
        _ => return Err(LimitExceeded { limit }),
    };
    if need > buf.capacity() {
        let target = buf
            .capacity()
            .saturating_mul(2)
            .max(64)
            .min(limit)
            .min(isize::MAX as usize)
            .max(need);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An owned copy of an [`Event`], for comparisons.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Ev {
        event: Vec<u8>,
        data: Vec<u8>,
        id: Option<Vec<u8>>,
    }

    impl Ev {
        fn of(e: &Event<'_>) -> Ev {
            Ev {
                event: e.event.to_vec(),
                data: e.data.to_vec(),
                id: e.id.map(<[u8]>::to_vec),
            }
        }
    }

    fn msg(data: &str) -> Ev {
        Ev {
            event: Vec::new(),
            data: data.as_bytes().to_vec(),
            id: None,
        }
    }

    /// Feed `chunks` in order, then finish; stop at the first error.
    fn run_with(max: usize, chunks: &[&[u8]]) -> (Vec<Ev>, Result<(), LimitExceeded>) {
        let mut dec = Decoder::new(max);
        let mut out = Vec::new();
        let mut sink = |e: &Event<'_>| -> ControlFlow<()> {
            out.push(Ev::of(e));
            ControlFlow::Continue(())
        };
        for c in chunks {
            if let Err(e) = dec.feed(c, &mut sink) {
                return (out, Err(e));
            }
        }
        let r = dec.finish(&mut sink).map(|_| ());
        (out, r)
    }

    fn run(chunks: &[&[u8]]) -> Vec<Ev> {
        let (evs, r) = run_with(1 << 20, chunks);
        assert_eq!(r, Ok(()));
        evs
    }

    /// Feed the stream one byte at a time.
    fn run_bytewise(s: &[u8]) -> Vec<Ev> {
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        run(&chunks)
    }

    /// Events from feeding `s` whole, checked against every two-way split and
    /// a byte-by-byte feed.
    fn run_all_ways(s: &[u8]) -> Vec<Ev> {
        let whole = run(&[s]);
        for cut in 0..=s.len() {
            let (a, b) = s.split_at(cut);
            assert_eq!(run(&[a, b]), whole, "split at {cut}");
        }
        assert_eq!(run_bytewise(s), whole);
        whole
    }

    #[test]
    fn single_event_lf() {
        assert_eq!(run_all_ways(b"data: hello\n\n"), vec![msg("hello")]);
    }

    #[test]
    fn fast_path_borrows_input() {
        let input = b"data: {\"a\":1}\n\n";
        let mut dec = Decoder::new(1024);
        let mut seen = false;
        let r = dec.feed(input, |e| {
            let range = input.as_ptr_range();
            assert!(range.contains(&e.data.as_ptr()), "data must borrow input");
            assert_eq!(e.data, b"{\"a\":1}");
            seen = true;
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(r, Ok(ControlFlow::Continue(())));
        assert!(seen);
        // Nothing was buffered for that event.
        assert_eq!(dec.data.capacity(), 0);
        assert_eq!(dec.carry.capacity(), 0);
    }

    #[test]
    fn no_allocation_in_steady_state() {
        let mut dec = Decoder::new(1 << 16);
        let ev = b"event: delta\nid: 7\ndata: {\"x\":\"0123456789\"}\n\n";
        let mut n = 0;
        // Warm up with every split so all buffers have been used.
        for cut in 0..ev.len() {
            let (a, b) = ev.split_at(cut);
            for part in [a, b] {
                let r = dec.feed(part, |_| {
                    n += 1;
                    ControlFlow::<()>::Continue(())
                });
                assert!(r.is_ok());
            }
        }
        let caps = |d: &Decoder| {
            [
                d.carry.capacity(),
                d.data.capacity(),
                d.event.capacity(),
                d.id.capacity(),
            ]
        };
        let before = caps(&dec);
        for cut in 0..ev.len() {
            let (a, b) = ev.split_at(cut);
            for part in [a, b] {
                let r = dec.feed(part, |_| ControlFlow::<()>::Continue(()));
                assert!(r.is_ok());
            }
        }
        assert_eq!(caps(&dec), before);
        assert_eq!(n, ev.len());
    }

    const OPENAI: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\u{2028}lo\"}}]}\n\n",
        ":\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );

    fn openai_expected() -> Vec<Ev> {
        OPENAI
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(msg)
            .collect()
    }

    #[test]
    fn openai_stream_lf_crlf_cr() {
        let expected = openai_expected();
        assert_eq!(expected.len(), 4);
        assert!(expected[1].data.ends_with("Hel\u{2028}lo\"}}]}".as_bytes()));
        for ending in ["\n", "\r\n", "\r"] {
            let s = OPENAI.replace('\n', ending);
            assert_eq!(run_all_ways(s.as_bytes()), expected, "ending {ending:?}");
        }
    }

    #[test]
    fn keep_alive_comments_between_events() {
        let s = b": ping\n\ndata: a\n\n: ping\n: ping\n\n\n\ndata: b\n: inside\ndata: c\n\n";
        assert_eq!(run_all_ways(s), vec![msg("a"), msg("b\nc")]);
    }

    #[test]
    fn bom_skipped_even_split() {
        let s = b"\xEF\xBB\xBFdata: x\n\n";
        assert_eq!(run_all_ways(s), vec![msg("x")]);
        let mut dec = Decoder::new(100);
        let mut out = Vec::new();
        for part in [&b"\xEF"[..], b"", b"\xBB", b"\xBF", b"data: y\n", b"\n"] {
            let r = dec.feed(part, |e| {
                out.push(Ev::of(e));
                ControlFlow::<()>::Continue(())
            });
            assert!(r.is_ok());
        }
        assert_eq!(out, vec![msg("y")]);
    }

    #[test]
    fn bom_only_at_stream_start() {
        // A second BOM is content: it makes the field name unknown.
        assert_eq!(run_all_ways(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), vec![]);
        assert_eq!(
            run_all_ways(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"),
            vec![msg("a")]
        );
        // A partial BOM is content too, and the rest is still parsed.
        assert_eq!(run_all_ways(b"\xEFdata: x\n\ndata: y\n\n"), vec![msg("y")]);
        assert_eq!(
            run_all_ways(b"\xEF\xBBdata: x\n\ndata: y\n\n"),
            vec![msg("y")]
        );
        assert_eq!(run_all_ways(b"\xEF\xBB\ndata: x\n\n"), vec![msg("x")]);
        assert_eq!(
            run_all_ways(b"\xEF\xBB\xBEdata: x\n\ndata: y\n\n"),
            vec![msg("y")]
        );
        // A stream that is only part of a BOM.
        assert_eq!(run_all_ways(b"\xEF\xBB"), vec![]);
        // The BOM's bytes inside data are kept.
        assert_eq!(
            run_all_ways("data: \u{FEFF}x\n\n".as_bytes()),
            vec![msg("\u{FEFF}x")]
        );
    }

    #[test]
    fn crlf_split_across_feeds_is_one_line_end() {
        // "\r" + "\n" must not produce the blank line that would dispatch.
        let evs = run(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(evs, vec![msg("a\nb")]);
        // A CR alone at the end of an input, followed by a non-LF.
        let evs = run(&[b"data: a\r", b"data: b\r", b"\r"]);
        assert_eq!(evs, vec![msg("a\nb")]);
        // Empty inputs between CR and LF do not break the pairing.
        let evs = run(&[b"data: a\r", b"", b"", b"\n", b"\n"]);
        assert_eq!(evs, vec![msg("a")]);
    }

    #[test]
    fn line_end_variants() {
        assert_eq!(
            run_all_ways(b"data: a\r\rdata: b\n\n"),
            vec![msg("a"), msg("b")]
        );
        assert_eq!(
            run_all_ways(b"data: a\r\n\r\ndata: b\r\r"),
            vec![msg("a"), msg("b")]
        );
        // LF CR is two line ends.
        assert_eq!(
            run_all_ways(b"data: a\n\rdata: b\n\n"),
            vec![msg("a"), msg("b")]
        );
        // Only CR and LF end lines; other Unicode line breaks are content.
        let s = "data: a\u{2028}b\u{2029}c\u{85}d\x0Be\x0Cf\n\n";
        assert_eq!(
            run_all_ways(s.as_bytes()),
            vec![msg("a\u{2028}b\u{2029}c\u{85}d\x0Be\x0Cf")]
        );
    }

    #[test]
    fn multi_line_data() {
        assert_eq!(
            run_all_ways(b"data: {\ndata:  \"a\": 1\ndata: }\n\n"),
            vec![msg("{\n \"a\": 1\n}")]
        );
        assert_eq!(run_all_ways(b"data\ndata\n\n"), vec![msg("\n")]);
        assert_eq!(
            run_all_ways(b"data:\ndata: x\ndata:\n\n"),
            vec![msg("\nx\n")]
        );
    }

    #[test]
    fn leading_space_rules() {
        assert_eq!(run_all_ways(b"data:x\n\n"), vec![msg("x")]);
        assert_eq!(run_all_ways(b"data: x\n\n"), vec![msg("x")]);
        assert_eq!(run_all_ways(b"data:  x\n\n"), vec![msg(" x")]);
        assert_eq!(run_all_ways(b"data:\tx\n\n"), vec![msg("\tx")]);
        assert_eq!(run_all_ways(b"data: x \n\n"), vec![msg("x ")]);
        // Only the first colon separates; the value may contain more.
        assert_eq!(run_all_ways(b"data: a: b:c\n\n"), vec![msg("a: b:c")]);
        // Field names are exact and case-sensitive, no spaces allowed.
        assert_eq!(run_all_ways(b"Data: x\ndata : y\n data: z\n\n"), vec![]);
    }

    #[test]
    fn empty_data_dispatches() {
        assert_eq!(run_all_ways(b"data\n\n"), vec![msg("")]);
        assert_eq!(run_all_ways(b"data:\n\n"), vec![msg("")]);
        assert_eq!(run_all_ways(b"data: \n\n"), vec![msg("")]);
    }

    #[test]
    fn event_and_id_fields() {
        let s = b"event: first\nevent: delta\nid: 1\nid: 42\ndata: x\n\ndata: y\n\n";
        assert_eq!(
            run_all_ways(s),
            vec![
                Ev {
                    event: b"delta".to_vec(),
                    data: b"x".to_vec(),
                    id: Some(b"42".to_vec()),
                },
                msg("y"),
            ]
        );
        // `event` alone sets an empty type; `id` alone sets an empty id.
        assert_eq!(
            run_all_ways(b"event\nid\ndata: x\n\n"),
            vec![Ev {
                event: vec![],
                data: b"x".to_vec(),
                id: Some(vec![]),
            }]
        );
        // An id containing NUL is ignored; the earlier one stays.
        assert_eq!(
            run_all_ways(b"id: 1\nid: 2\x003\ndata: x\n\n"),
            vec![Ev {
                event: vec![],
                data: b"x".to_vec(),
                id: Some(b"1".to_vec()),
            }]
        );
        // Fields may come after the data.
        assert_eq!(
            run_all_ways(b"data: x\nevent: e\nid: 9\n\n"),
            vec![Ev {
                event: b"e".to_vec(),
                data: b"x".to_vec(),
                id: Some(b"9".to_vec()),
            }]
        );
    }

    #[test]
    fn events_without_data_not_dispatched() {
        let s = b"id: 1\n\nretry: 1000\n\nevent: ping\n\nretry: abc\nfoo: bar\n\nid: 2\nretry: 5\nevent: x\n\ndata: real\n\n";
        assert_eq!(run_all_ways(s), vec![msg("real")]);
        // Event type and id do not leak into the next block.
        assert_eq!(
            run_all_ways(b"event: e\nid: 1\n\ndata: x\n\n"),
            vec![msg("x")]
        );
    }

    #[test]
    fn unknown_fields_and_invalid_utf8_ignored() {
        let s = b"foo: bar\n\xFF\xFE: x\nretry\ndata: \xFF\xC0\x80\n\n";
        assert_eq!(
            run_all_ways(s),
            vec![Ev {
                event: vec![],
                data: b"\xFF\xC0\x80".to_vec(),
                id: None,
            }]
        );
    }

    #[test]
    fn break_stops_and_drops_rest() {
        let mut dec = Decoder::new(100);
        let mut seen = Vec::new();
        let r = dec.feed(b"data: a\n\ndata: b\n\ndata: c\n\n", |e| {
            seen.push(Ev::of(e));
            if e.data == b"b" {
                ControlFlow::Break(7)
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(r, Ok(ControlFlow::Break(7)));
        assert_eq!(seen, vec![msg("a"), msg("b")]);
        // The decoder stays usable: the dropped "c" is gone, later input works.
        let r = dec.feed(b"data: d\n\n", |e| {
            seen.push(Ev::of(e));
            ControlFlow::<i32>::Continue(())
        });
        assert_eq!(r, Ok(ControlFlow::Continue(())));
        assert_eq!(seen.last(), Some(&msg("d")));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn break_from_finish() {
        let mut dec = Decoder::new(100);
        let r = dec.feed(b"data: a", |_| ControlFlow::Break(1));
        assert_eq!(r, Ok(ControlFlow::Continue(())));
        let r = dec.finish(|e| {
            assert_eq!(e.data, b"a");
            ControlFlow::Break(2)
        });
        assert_eq!(r, Ok(ControlFlow::Break(2)));
    }

    #[test]
    fn finish_dispatches_pending_data() {
        let err = "data: {\"error\":{\"message\":\"overloaded\"}}";
        let expected = vec![msg("a"), msg("{\"error\":{\"message\":\"overloaded\"}}")];
        // Without the blank line, without the last line end, with a lone CR.
        for tail in ["\n", "", "\r", "\r\n"] {
            let s = format!("data: a\n\n{err}{tail}");
            assert_eq!(run_all_ways(s.as_bytes()), expected, "tail {tail:?}");
        }
        // Multi-line data and fields in the unterminated event.
        assert_eq!(
            run_all_ways(b"event: error\ndata: x\ndata: y"),
            vec![Ev {
                event: b"error".to_vec(),
                data: b"x\ny".to_vec(),
                id: None,
            }]
        );
        // Nothing pending, or pending without data: nothing dispatched.
        assert_eq!(run_all_ways(b"data: a\n\n"), vec![msg("a")]);
        assert_eq!(run_all_ways(b"data: a\n\nevent: x\nid: 3"), vec![msg("a")]);
        assert_eq!(run_all_ways(b": comment"), vec![]);
        assert_eq!(run_all_ways(b""), vec![]);
    }

    #[test]
    fn finish_resets_for_reuse() {
        let mut dec = Decoder::new(100);
        let mut out = Vec::new();
        let mut sink = |e: &Event<'_>| {
            out.push(Ev::of(e));
            ControlFlow::<()>::Continue(())
        };
        assert!(dec
            .feed(b"\xEF\xBB\xBFevent: e\ndata: a", &mut sink)
            .is_ok());
        assert!(dec.finish(&mut sink).is_ok());
        // New stream: its BOM is skipped again, no state leaks.
        assert!(dec.feed(b"\xEF\xBB\xBFdata: b\r", &mut sink).is_ok());
        assert!(dec.finish(&mut sink).is_ok());
        assert!(dec.feed(b"\ndata: c\n\n", &mut sink).is_ok());
        let e = |t: &str, d: &str| Ev {
            event: t.as_bytes().to_vec(),
            data: d.as_bytes().to_vec(),
            id: None,
        };
        assert_eq!(out, vec![e("e", "a"), e("", "b"), e("", "c")]);
    }

    #[test]
    fn limit_never_ending_line() {
        let mut dec = Decoder::new(64);
        let mut r = Ok(ControlFlow::Continue(()));
        for _ in 0..100 {
            r = dec.feed(b"data: xxxxxxxxxxxxxxxxxxxx", |_| {
                ControlFlow::<()>::Continue(())
            });
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(LimitExceeded { limit: 64 }));
        assert!(dec.carry.capacity() <= 64);
        // The error is sticky until reset.
        let again = dec.feed(b"\n\n", |_| ControlFlow::<()>::Continue(()));
        assert_eq!(again, Err(LimitExceeded { limit: 64 }));
        assert_eq!(dec.finish(|_| ControlFlow::<()>::Continue(())), again);
    }

    #[test]
    fn limit_long_line_in_one_input() {
        let mut line = b"data: ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 100));
        line.extend_from_slice(b"\n\n");
        let (evs, r) = run_with(64, &[&line]);
        assert_eq!((evs, r), (vec![], Err(LimitExceeded { limit: 64 })));
        // Also for a comment line: the outcome must not depend on splitting.
        let mut comment = vec![b':'; 100];
        comment.extend_from_slice(b"\ndata: ok\n\n");
        assert_eq!(
            run_with(64, &[&comment]).1,
            Err(LimitExceeded { limit: 64 })
        );
        let (a, b) = comment.split_at(50);
        assert_eq!(run_with(64, &[a, b]).1, Err(LimitExceeded { limit: 64 }));
        // Exactly at the limit is fine.
        let exact = b"data: 0123456789\n\n";
        assert_eq!(run_with(16, &[exact]), (vec![msg("0123456789")], Ok(())));
        assert_eq!(run_with(15, &[exact]).1, Err(LimitExceeded { limit: 15 }));
    }

    #[test]
    fn limit_many_data_lines() {
        let mut dec = Decoder::new(100);
        let mut r = Ok(ControlFlow::Continue(()));
        let mut lines = 0;
        for _ in 0..1000 {
            r = dec.feed(b"data: 0123456789\n", |_| ControlFlow::<()>::Continue(()));
            if r.is_err() {
                break;
            }
            lines += 1;
        }
        assert_eq!(r, Err(LimitExceeded { limit: 100 }));
        // 9 lines give 9*10 + 8 = 98 bytes; the 10th would give 109.
        assert_eq!(lines, 9);
        assert!(dec.data.capacity() <= 100);
        // Same when all lines come in a single input.
        let many = b"data: 0123456789\n".repeat(20);
        assert_eq!(run_with(100, &[&many]).1, Err(LimitExceeded { limit: 100 }));
    }

    #[test]
    fn events_before_limit_error_are_delivered() {
        let s = b"data: a\n\ndata: 0123456789012345678901234567890123456789\n\ndata: c\n\n";
        let (evs, r) = run_with(32, &[s]);
        assert_eq!(evs, vec![msg("a")]);
        assert_eq!(r, Err(LimitExceeded { limit: 32 }));
    }

    #[test]
    fn zero_limit() {
        assert_eq!(run_with(0, &[b"\n\n\r\n"]), (vec![], Ok(())));
        assert_eq!(run_with(0, &[b"d"]).1, Err(LimitExceeded { limit: 0 }));
    }

    #[test]
    fn reset_clears_state_and_error() {
        let mut dec = Decoder::new(16);
        let mut out = Vec::new();
        let mut sink = |e: &Event<'_>| {
            out.push(Ev::of(e));
            ControlFlow::<()>::Continue(())
        };
        // Half an event, half a CRLF, then reset: nothing leaks.
        assert!(dec
            .feed(b"\xEF\xBB\xBFevent: e\ndata: a\r", &mut sink)
            .is_ok());
        dec.reset();
        assert!(dec.feed(b"\xEF\xBB\xBF\ndata: b\n\n", &mut sink).is_ok());
        // An error is cleared by reset too.
        assert!(dec.feed(b"data: 0123456789abcdef", &mut sink).is_err());
        assert!(dec.feed(b"data: c\n\n", &mut sink).is_err());
        dec.reset();
        assert!(dec.feed(b"data: d\n\n", &mut sink).is_ok());
        assert!(dec.finish(&mut sink).is_ok());
        assert_eq!(out, vec![msg("b"), msg("d")]);
    }

    #[test]
    fn limit_exceeded_displays() {
        let e = LimitExceeded { limit: 5 };
        assert_eq!(e.to_string(), "server-sent event larger than 5 bytes");
    }

    // ---- property tests ----

    /// A line ending: LF, CR or CRLF.
    fn ending() -> impl Strategy<Value = &'static [u8]> {
        prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..])]
    }

    /// Bytes for a field value: anything but CR and LF (NUL excluded so ids
    /// stay valid), biased to the interesting ones.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => proptest::char::range('a', 'e').prop_map(|c| c as u8),
            1 => Just(b' '),
            1 => Just(b':'),
            1 => Just(0xEFu8),
            1 => (1u8..=255).prop_filter("no line ends", |b| *b != b'\r' && *b != b'\n'),
        ];
        proptest::collection::vec(byte, 0..12)
    }

    #[derive(Debug, Clone)]
    struct Block {
        event: Option<Vec<u8>>,
        id: Option<Vec<u8>>,
        data: Vec<Vec<u8>>,
        comment: Option<Vec<u8>>,
    }

    fn block() -> impl Strategy<Value = Block> {
        (
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::collection::vec(value(), 0..4),
            proptest::option::weighted(0.3, value()),
        )
            .prop_map(|(event, id, data, comment)| Block {
                event,
                id,
                data,
                comment,
            })
    }

    /// Renders lines with random endings, never letting a CR be followed by
    /// an LF that was meant as a separate (empty) line.
    struct Writer<'a> {
        out: Vec<u8>,
        endings: &'a [&'static [u8]],
        spaces: &'a [bool],
        n: usize,
    }

    impl Writer<'_> {
        fn line(&mut self, bytes: &[u8]) {
            let mut end = self.endings[self.n % self.endings.len()];
            if bytes.is_empty() && end == b"\n" && self.out.last() == Some(&b'\r') {
                end = b"\r\n";
            }
            self.out.extend_from_slice(bytes);
            self.out.extend_from_slice(end);
            self.n += 1;
        }

        fn field(&mut self, name: &[u8], value: &[u8]) {
            let space = self.spaces[self.n % self.spaces.len()] || value.first() == Some(&b' ');
            let mut l = name.to_vec();
            if value.is_empty() && !space {
                // Sometimes the bare field name form.
                if self.n & 1 == 0 {
                    l.push(b':');
                }
            } else {
                l.push(b':');
                if space {
                    l.push(b' ');
                }
                l.extend_from_slice(value);
            }
            self.line(&l);
        }
    }

    fn render(
        blocks: &[Block],
        endings: &[&'static [u8]],
        spaces: &[bool],
        bom: bool,
        unterminated: u8,
    ) -> (Vec<u8>, Vec<Ev>) {
        let mut w = Writer {
            out: Vec::new(),
            endings,
            spaces,
            n: 0,
        };
        if bom {
            w.out.extend_from_slice(&BOM);
        }
        let mut expected = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            if let Some(c) = &b.comment {
                let mut l = vec![b':'];
                l.extend_from_slice(c);
                w.line(&l);
            }
            if let Some(e) = &b.event {
                w.field(b"event", e);
            }
            for d in &b.data {
                w.field(b"data", d);
            }
            if let Some(id) = &b.id {
                w.field(b"id", id);
            }
            if !b.data.is_empty() {
                expected.push(Ev {
                    event: b.event.clone().unwrap_or_default(),
                    data: b.data.join(&b'\n'),
                    id: b.id.clone(),
                });
            }
            let last = i + 1 == blocks.len();
            if last && unterminated > 0 {
                // Drop the blank line, and maybe the last line end too.
                if unterminated == 2 && !w.out.is_empty() {
                    while matches!(w.out.last(), Some(b'\r' | b'\n')) {
                        w.out.pop();
                    }
                }
            } else {
                w.line(b"");
            }
        }
        (w.out, expected)
    }

    /// Cut `s` at the given (sorted, deduplicated) positions.
    fn split_at_cuts<'a>(s: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (s.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut prev = 0;
        for c in cuts {
            out.push(&s[prev..c]);
            prev = c;
        }
        out.push(&s[prev..]);
        out
    }

    proptest! {
        #[test]
        fn prop_split_equals_whole_and_model(
            blocks in proptest::collection::vec(block(), 1..6),
            endings in proptest::collection::vec(ending(), 1..5),
            spaces in proptest::collection::vec(any::<bool>(), 1..4),
            bom in any::<bool>(),
            unterminated in 0u8..3,
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let (stream, expected) = render(&blocks, &endings, &spaces, bom, unterminated);
            let whole = run(&[&stream]);
            prop_assert_eq!(&whole, &expected);
            let chunks = split_at_cuts(&stream, &cuts);
            prop_assert_eq!(&run(&chunks), &expected);
            prop_assert_eq!(&run_bytewise(&stream), &expected);
        }

        #[test]
        fn prop_arbitrary_bytes_split_invariant(
            bytes in proptest::collection::vec(
                prop_oneof![
                    3 => proptest::sample::select(
                        &b"\r\n\r\n:  data:event:id:retry:\x00\xEF\xBB\xBFxyz"[..]
                    ),
                    1 => any::<u8>(),
                ],
                0..300,
            ),
            max in prop_oneof![0usize..40, Just(1usize << 20)],
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let whole = run_with(max, &[&bytes]);
            let chunks = split_at_cuts(&bytes, &cuts);
            prop_assert_eq!(&run_with(max, &chunks), &whole);
            let ones: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(&run_with(max, &ones), &whole);
        }
    }
}
