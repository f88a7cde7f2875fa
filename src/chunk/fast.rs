//! The single-pass parser for the usual chunk shapes; see the docs of the parent module.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;

use super::{Event, Said};

mod json;

/// Deepest nesting of skipped values followed; deeper input goes to serde (whose own
/// limit is 128).
const MAX_DEPTH: u32 = 64;
/// The most tool-call pieces in one chunk handled here.
const MAX_TOOL_CALLS: usize = 4;
/// Decoded-string scratch kept per thread between chunks, at most.
const KEEP_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where strings with escapes are decoded, reused so that they cost no allocation
    /// once it has grown to fit. Taken out while a chunk is parsed, so a nested parse
    /// (from a callback) simply gets a fresh one.
    static SCRATCH: Cell<String> = const { Cell::new(String::new()) };
    /// The prefix of the last chunk parsed on this thread. Borrowed while a chunk is
    /// parsed, so a nested parse (from a callback) goes without. It earns its place: on
    /// 100,000 OpenAI-shaped content chunks, 504 instructions per chunk with it and 4,359
    /// without (callgrind, issue 10), most of a token's whole cost.
    static TEMPLATE: RefCell<Option<Template>> = const { RefCell::new(None) };
}

/// A string value: a range of the input (no escapes) or of the scratch (decoded).
#[derive(Clone, Copy)]
enum Str {
    Input(usize, usize),
    Scratch(usize, usize),
}

#[derive(Clone, Copy, Default)]
struct Delta {
    content: Option<Str>,
    reasoning_content: Option<Str>,
    reasoning: Option<Str>,
    refusal: Option<Str>,
    /// Where its tool-call pieces are in [`Choice::tools`]: start and count.
    tool_calls: (usize, usize),
}

#[derive(Clone, Copy, Default)]
struct ToolCall {
    index: Option<u32>,
    id: Option<Str>,
    kind: Option<Str>,
    name: Option<Str>,
    arguments: Option<Str>,
}

#[derive(Default)]
struct Choice {
    index: Option<u32>,
    delta: Option<Delta>,
    message: Option<Delta>,
    finish_reason: Option<Str>,
    /// The tool-call pieces of `delta` and of `message`, in the order they came.
    tools: [ToolCall; MAX_TOOL_CALLS],
    tools_len: usize,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: u32,
    scratch: Option<String>,
    /// The chunk's known fields seen before `choices` (recorded for a [`Mark`]).
    top_seen: u32,
    /// Inside the first choice's `delta` with only `index` seen before it: that index
    /// and the choice's seen fields (recorded for a [`Mark`]).
    at_delta: Option<(Option<u32>, u32)>,
    /// Set on reaching the value of the first choice's `delta.content` in a state a
    /// later chunk can resume from.
    mark: Option<Mark>,
    /// Where that content string ended (after a mark was set, or when resumed).
    content_end: Option<usize>,
}

/// Where a chunk's bytes stop being the same as its neighbours': the value of
/// `choices[0].delta.content`, and everything the parser knows at that point.
///
/// A stream's chunks share everything before that value (id, object, created, model,
/// system fingerprint, `"choices":[{"index":0,"delta":{"content":`). The parser is a
/// pure function of the bytes, so a chunk that starts with the very bytes of an earlier
/// chunk's prefix reaches the same state at the same offset: it resumes from there, and
/// only its own last bytes are parsed (and checked as UTF-8).
#[derive(Clone, Copy)]
struct Mark {
    /// Offset of the value.
    at: usize,
    top_seen: u32,
    index: Option<u32>,
    choice_seen: u32,
}

/// The last prefix seen on this thread, and the state it leads to.
struct Template {
    prefix: Vec<u8>,
    mark: Option<Mark>,
    /// What followed the content string in a chunk that had this prefix, when the
    /// chunk held nothing else to report (`},"logprobs":null,"finish_reason":null}]}`),
    /// and the choice index it ended with. Empty: not known.
    suffix: Vec<u8>,
    suffix_index: Option<u32>,
}

/// Longest suffix kept.
const MAX_SUFFIX: usize = 256;

/// Longest prefix kept: real ones are about 200 bytes.
const MAX_PREFIX: usize = 1024;

/// Parses `data` and reports its events, or returns `None` (having reported nothing)
/// when the chunk is not one of the shapes handled here.
pub fn parse<B, F>(data: &[u8], on_event: &mut F) -> Option<ControlFlow<B>>
where
    F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
{
    TEMPLATE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut template) => parse_with(data, &mut template, on_event),
        // A parse from inside a callback of another: no template for it.
        Err(_) => parse_with(data, &mut None, on_event),
    })
}

fn parse_with<B, F>(
    data: &[u8],
    template: &mut Option<Template>,
    on_event: &mut F,
) -> Option<ControlFlow<B>>
where
    F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
{
    let resume = template.as_ref().and_then(|t| match t.mark {
        Some(m) if data.starts_with(&t.prefix) => Some(m),
        _ => None,
    });
    if let (Some(m), Some(t)) = (resume, &*template) {
        if !t.suffix.is_empty() {
            let flow = shortcut(data, m.at, t, on_event);
            if flow.is_some() {
                return flow;
            }
        }
    }
    // Valid UTF-8 as a whole makes every string between quotes valid UTF-8 too. A
    // resumed chunk's prefix was checked when it was recorded; the prefix ends at an
    // ASCII byte, so checking the rest is enough.
    let base = resume.map_or(0, |m| m.at);
    let text = std::str::from_utf8(data.get(base..)?);
    let mut p = Parser {
        s: data,
        pos: base,
        depth: 0,
        scratch: None,
        top_seen: 0,
        at_delta: None,
        mark: None,
        content_end: None,
    };
    let parsed = match text {
        Ok(_) => p.chunk(resume),
        Err(_) => None,
    };
    // Whether `template` describes this chunk's prefix (a suffix may be learnt for it).
    let mut own = resume.is_some();
    if let (Some(mark), Ok(_)) = (p.mark, text) {
        own = mark.at <= MAX_PREFIX;
        if own {
            let t = template.get_or_insert_with(|| Template {
                prefix: Vec::with_capacity(256),
                mark: None,
                suffix: Vec::with_capacity(64),
                suffix_index: None,
            });
            t.prefix.clear();
            t.prefix
                .extend_from_slice(data.get(..mark.at).unwrap_or(&[]));
            t.mark = Some(mark);
            t.suffix.clear();
        }
    }
    // A chunk that held only its content teaches the suffix of this prefix.
    if let (Some(Some(choice)), Some(end), Some(t), true) =
        (&parsed, p.content_end, template.as_mut(), own)
    {
        if content_only(choice) && data.len() - end <= MAX_SUFFIX {
            t.suffix.clear();
            t.suffix.extend_from_slice(data.get(end..).unwrap_or(&[]));
            t.suffix_index = choice.index;
        }
    }
    let scratch = p.scratch.take();
    let flow = match (parsed, text) {
        (Some(Some(choice)), Ok(text)) => {
            let scratch_text = scratch.as_deref().unwrap_or("");
            Some(report(&choice, text, base, scratch_text, on_event))
        }
        (Some(None), _) => Some(ControlFlow::Continue(())),
        _ => None,
    };
    give_back(scratch);
    flow
}

/// A chunk with a known prefix and a known suffix: only the content string between
/// them is new. `None` (nothing reported) when the suffix differs.
fn shortcut<B, F>(data: &[u8], at: usize, t: &Template, on_event: &mut F) -> Option<ControlFlow<B>>
where
    F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
{
    let mut p = Parser {
        s: data,
        pos: at,
        depth: 0,
        scratch: None,
        top_seen: 0,
        at_delta: None,
        mark: None,
        content_end: None,
    };
    let content = p.string();
    let scratch = p.scratch.take();
    let text = match content {
        Some(_) if data.get(p.pos..) != Some(&t.suffix[..]) => None,
        Some(Str::Input(a, b)) => data.get(a..b).and_then(|s| std::str::from_utf8(s).ok()),
        Some(Str::Scratch(a, b)) => scratch.as_deref().and_then(|s| s.get(a..b)),
        None => None,
    };
    let flow = text.map(|text| {
        if text.is_empty() {
            ControlFlow::Continue(())
        } else {
            on_event(Event::Content {
                choice: t.suffix_index.unwrap_or(0),
                text,
            })
        }
    });
    give_back(scratch);
    flow
}

/// Whether a parsed choice reports nothing but its content.
fn content_only(c: &Choice) -> bool {
    c.message.is_none()
        && c.finish_reason.is_none()
        && c.tools_len == 0
        && c.delta.is_some_and(|d| {
            d.content.is_some()
                && d.reasoning_content.is_none()
                && d.reasoning.is_none()
                && d.refusal.is_none()
        })
}

/// Returns a decoding scratch to this thread, unless it grew too large to keep.
fn give_back(scratch: Option<String>) {
    if let Some(mut s) = scratch {
        if s.capacity() <= KEEP_SCRATCH {
            s.clear();
            SCRATCH.set(s);
        }
    }
}

/// Reports a parsed choice's events; `text` is the input from offset `base` on.
fn report<B, F>(
    choice: &Choice,
    text: &str,
    base: usize,
    scratch: &str,
    on_event: &mut F,
) -> ControlFlow<B>
where
    F: FnMut(Event<'_>) -> ControlFlow<B> + ?Sized,
{
    let get = |s: Str| match s {
        Str::Input(a, b) => text
            .get(a.saturating_sub(base)..b.saturating_sub(base))
            .unwrap_or(""),
        Str::Scratch(a, b) => scratch.get(a..b).unwrap_or(""),
    };
    let index = choice.index.unwrap_or(0);
    // As in serde's path: `delta`, or else `message`.
    let delta = choice.delta.as_ref().or(choice.message.as_ref());
    let (start, count) = delta.map_or((0, 0), |d| d.tool_calls);
    let tools = choice.tools.get(start..start + count).unwrap_or(&[]);
    Said {
        index,
        reasoning: delta.and_then(|d| d.reasoning_content.or(d.reasoning).map(get)),
        content: delta.and_then(|d| d.content.map(get)),
        refusal: delta.and_then(|d| d.refusal.map(get)),
        tools: tools
            .iter()
            .enumerate()
            .map(|(position, call)| Event::ToolCall {
                choice: index,
                index: call.index.unwrap_or(position as u32),
                id: call.id.map(get),
                kind: call.kind.map(get),
                name: call.name.map(get),
                arguments: call.arguments.map_or("", get),
            }),
        finish: choice.finish_reason.map(get),
    }
    .report(on_event)
}

/// Marks a known field as seen; a second one is serde's error to report.
fn first(seen: &mut u32, bit: u32) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

impl<'a> Parser<'a> {
    /// The whole chunk: `Some(None)` when it has no choice. With `resume`, parsing
    /// starts at the value of the first choice's `delta.content`, in the state `resume`
    /// describes (see [`Mark`]).
    fn chunk(&mut self, mut resume: Option<Mark>) -> Option<Option<Choice>> {
        let mut choice = None;
        let mut seen = 0;
        let members = match resume {
            Some(m) => {
                seen = m.top_seen;
                true
            }
            None => {
                self.eat(b'{')?;
                !self.accept(b'}')
            }
        };
        if members {
            loop {
                let key = match resume {
                    Some(_) => &b"choices"[..],
                    None => self.key()?,
                };
                match key {
                    b"choices" => {
                        let before = seen;
                        first(&mut seen, 1)?;
                        if let Some(m) = resume.take() {
                            choice = Some(self.choice(Some(m))?);
                            self.eat(b']')?;
                        } else if !self.null() {
                            self.eat(b'[')?;
                            if !self.accept(b']') {
                                self.top_seen = before;
                                choice = Some(self.choice(None)?);
                                // Several choices are left to serde.
                                self.eat(b']')?;
                            }
                        }
                    }
                    // Usage and the error shapes are left to serde, unless null.
                    b"usage" | b"error" => {
                        first(&mut seen, if key == b"usage" { 2 } else { 4 })?;
                        if !self.null() {
                            return None;
                        }
                    }
                    b"object" => {
                        first(&mut seen, 8)?;
                        if !self.null() {
                            let object = self.string_raw()?;
                            if object == b"error" {
                                return None;
                            }
                        }
                    }
                    b"message" => return None,
                    _ => self.skip_value()?,
                }
                if !self.accept(b',') {
                    self.eat(b'}')?;
                    break;
                }
            }
        }
        self.ws();
        if self.pos != self.s.len() {
            return None;
        }
        Some(choice)
    }

    fn choice(&mut self, mut resume: Option<Mark>) -> Option<Choice> {
        let mut c = Choice::default();
        let mut seen = 0;
        match resume {
            Some(m) => {
                c.index = m.index;
                seen = m.choice_seen;
            }
            None => {
                self.eat(b'{')?;
                if self.accept(b'}') {
                    return Some(c);
                }
            }
        }
        loop {
            let key = match resume {
                Some(_) => &b"delta"[..],
                None => self.key()?,
            };
            match key {
                b"index" => {
                    first(&mut seen, 1)?;
                    if !self.null() {
                        c.index = Some(self.u32()?);
                    }
                }
                b"delta" => {
                    let before = seen;
                    first(&mut seen, 2)?;
                    if resume.take().is_some() {
                        c.delta = Some(self.delta(&mut c, true)?);
                    } else if !self.null() {
                        // Only `index` so far: the state here can be a template's.
                        if before & !1 == 0 {
                            self.at_delta = Some((c.index, before));
                        }
                        c.delta = Some(self.delta(&mut c, false)?);
                        self.at_delta = None;
                    }
                }
                b"message" => {
                    first(&mut seen, 4)?;
                    if !self.null() {
                        c.message = Some(self.delta(&mut c, false)?);
                    }
                }
                b"finish_reason" => {
                    first(&mut seen, 8)?;
                    c.finish_reason = self.opt_string()?;
                }
                _ => self.skip_value()?,
            }
            if !self.accept(b',') {
                self.eat(b'}')?;
                return Some(c);
            }
        }
    }

    /// A delta (or message) object; its tool-call pieces are appended to `c.tools`.
    /// `resume`: start at the value of its `content`, nothing else seen.
    fn delta(&mut self, c: &mut Choice, mut resume: bool) -> Option<Delta> {
        let mut d = Delta::default();
        let mut seen = 0;
        if !resume {
            self.eat(b'{')?;
            if self.accept(b'}') {
                return Some(d);
            }
        }
        loop {
            let key = if resume { &b"content"[..] } else { self.key()? };
            match key {
                b"content" => {
                    // Resumed here, or the place a later chunk may resume from.
                    let mut marked = resume;
                    if !resume && seen == 0 && self.scratch.is_none() {
                        if let Some((index, choice_seen)) = self.at_delta {
                            self.ws();
                            self.mark = Some(Mark {
                                at: self.pos,
                                top_seen: self.top_seen,
                                index,
                                choice_seen,
                            });
                            marked = true;
                        }
                    }
                    resume = false;
                    first(&mut seen, 1)?;
                    d.content = self.opt_string()?;
                    if marked && d.content.is_some() {
                        self.content_end = Some(self.pos);
                    }
                }
                b"reasoning_content" => {
                    first(&mut seen, 2)?;
                    d.reasoning_content = self.opt_string()?;
                }
                b"reasoning" => {
                    first(&mut seen, 4)?;
                    d.reasoning = self.opt_string()?;
                }
                b"refusal" => {
                    first(&mut seen, 16)?;
                    d.refusal = self.opt_string()?;
                }
                b"tool_calls" => {
                    first(&mut seen, 8)?;
                    if !self.null() {
                        d.tool_calls = (c.tools_len, self.tool_calls(c)?);
                    }
                }
                _ => self.skip_value()?,
            }
            if !self.accept(b',') {
                self.eat(b'}')?;
                return Some(d);
            }
        }
    }

    /// A `tool_calls` array, appended to `c.tools`; returns how many it had.
    fn tool_calls(&mut self, c: &mut Choice) -> Option<usize> {
        self.eat(b'[')?;
        let start = c.tools_len;
        if self.accept(b']') {
            return Some(0);
        }
        loop {
            let call = self.tool_call()?;
            let slot = c.tools.get_mut(c.tools_len)?;
            *slot = call;
            c.tools_len += 1;
            if !self.accept(b',') {
                self.eat(b']')?;
                return Some(c.tools_len - start);
            }
        }
    }

    fn tool_call(&mut self) -> Option<ToolCall> {
        self.eat(b'{')?;
        let mut t = ToolCall::default();
        let mut seen = 0;
        if self.accept(b'}') {
            return Some(t);
        }
        loop {
            match self.key()? {
                b"index" => {
                    first(&mut seen, 1)?;
                    if !self.null() {
                        t.index = Some(self.u32()?);
                    }
                }
                b"id" => {
                    first(&mut seen, 2)?;
                    t.id = self.opt_string()?;
                }
                b"type" => {
                    first(&mut seen, 8)?;
                    t.kind = self.opt_string()?;
                }
                b"function" => {
                    first(&mut seen, 4)?;
                    if !self.null() {
                        self.function(&mut t)?;
                    }
                }
                _ => self.skip_value()?,
            }
            if !self.accept(b',') {
                self.eat(b'}')?;
                return Some(t);
            }
        }
    }

    fn function(&mut self, t: &mut ToolCall) -> Option<()> {
        self.eat(b'{')?;
        let mut seen = 0;
        if self.accept(b'}') {
            return Some(());
        }
        loop {
            match self.key()? {
                b"name" => {
                    first(&mut seen, 1)?;
                    t.name = self.opt_string()?;
                }
                b"arguments" => {
                    first(&mut seen, 2)?;
                    t.arguments = self.opt_string()?;
                }
                _ => self.skip_value()?,
            }
            if !self.accept(b',') {
                return self.eat(b'}');
            }
        }
    }
}
