//! What the fuzz targets share: events as owned data, and collecting them.

#![allow(dead_code)] // each target uses part of it

use std::ops::ControlFlow;

use ylokh::{Error, ErrorKind, Event};

/// An event as owned data, to compare two runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Content(u32, String),
    Reasoning(u32, String),
    Refusal(u32, String),
    Tool(u32, u32, Option<String>, Option<String>, Option<String>, String),
    Finish(u32, String),
    Usage(u64, u64, u64, String),
    Other(String),
}

impl Owned {
    pub fn of(event: Event<'_>) -> Owned {
        // The texts are &str, so UTF-8 by type; checking again catches a parser that built
        // one without validation (there is no `unsafe` in it today; this keeps it honest).
        let own = |s: &str| {
            assert!(std::str::from_utf8(s.as_bytes()).is_ok());
            s.to_owned()
        };
        match event {
            Event::Content { choice, text } => Owned::Content(choice, own(text)),
            Event::Reasoning { choice, text } => Owned::Reasoning(choice, own(text)),
            Event::Refusal { choice, text } => Owned::Refusal(choice, own(text)),
            Event::ToolCall {
                choice,
                index,
                id,
                kind,
                name,
                arguments,
            } => Owned::Tool(
                choice,
                index,
                id.map(own),
                kind.map(own),
                name.map(own),
                own(arguments),
            ),
            Event::Finish { choice, reason } => Owned::Finish(choice, own(reason)),
            Event::Usage(u) => Owned::Usage(
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                own(u.json),
            ),
            // Event is non_exhaustive: a kind added later is still recorded and compared.
            other => Owned::Other(format!("{other:?}")),
        }
    }
}

/// The events a run reported, and how it ended (the error's kind, not its message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub events: Vec<Owned>,
    pub end: Result<(), ErrorKind>,
}

/// Runs `f` with a callback that records events and stops after `stop_after` of them.
pub fn record(
    stop_after: Option<usize>,
    f: impl FnOnce(&mut dyn FnMut(Event<'_>) -> ControlFlow<()>) -> Result<(), Error>,
) -> Run {
    let mut events = Vec::new();
    let end = f(&mut |event| {
        events.push(Owned::of(event));
        match stop_after {
            Some(n) if events.len() >= n => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    });
    Run {
        events,
        end: end.map_err(|e| e.kind()),
    }
}

/// Checks that a run stopped after `n` events is the first `n` events of the full run
/// (or the full run itself, when that had fewer).
pub fn check_abort(full: &Run, stopped: &Run, n: usize) {
    if full.events.len() >= n {
        assert_eq!(
            stopped.events[..],
            full.events[..n],
            "events before the stop"
        );
        assert_eq!(stopped.end, Err(ErrorKind::Aborted), "a stop is Aborted");
    } else {
        assert_eq!(stopped, full, "a stop that never came changes nothing");
    }
}
