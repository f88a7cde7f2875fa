//! What the fuzz targets share: collecting a run's events (as the crate's `OwnedEvent`)
//! and comparing runs.

#![allow(dead_code)] // each target uses part of it

use std::ops::ControlFlow;

use ylokh::{Error, ErrorKind, Event, OwnedEvent};

/// The events a run reported, and how it ended (the error's kind, not its message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub events: Vec<OwnedEvent>,
    pub end: Result<(), ErrorKind>,
}

/// Runs `f` with a callback that records events and stops after `stop_after` of them.
pub fn record(
    stop_after: Option<usize>,
    f: impl FnOnce(&mut dyn FnMut(Event<'_>) -> ControlFlow<()>) -> Result<(), Error>,
) -> Run {
    let mut events = Vec::new();
    let end = f(&mut |event| {
        events.push(OwnedEvent::from(event));
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
