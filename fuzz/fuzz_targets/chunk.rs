//! The chunk parser: its fast path against its serde path, which is the reference.
//!
//! Input: payloads separated by `\n`, parsed one after another on the same thread (the
//! fast path remembers the previous chunk's prefix, so the sequence matters); byte 0 is a
//! callback stop (0: none). Checked for every payload: no panic; when the fast path takes
//! it, it reports exactly serde's events (and serde accepts it); when it steps aside it
//! has reported nothing; `parse` (fast, else serde) ends as serde does; a stop after n
//! events gives the first n events.

#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::*;

fuzz_target!(|input: &[u8]| {
    let [stop, rest @ ..] = input else {
        return;
    };
    for data in rest.split(|&b| b == b'\n') {
        let serde = record(None, |f| {
            ylokh::fuzzing::chunk_serde(data, f).map(|_: ControlFlow<()>| ())
        });
        let mut taken = false;
        let fast = record(None, |f| {
            taken = ylokh::fuzzing::chunk_fast(data, f).is_some();
            Ok(())
        });
        if taken {
            assert_eq!(
                serde.end,
                Ok(()),
                "fast path took what serde refuses: {data:?}"
            );
            assert_eq!(
                fast.events, serde.events,
                "fast and serde differ on {data:?}"
            );
        } else {
            assert!(
                fast.events.is_empty(),
                "fast path reported, then stepped aside"
            );
        }
        let both = record(None, |f| ylokh::fuzzing::chunk(data, f).map(|_| ()));
        assert_eq!(both, serde, "parse differs from serde on {data:?}");
        if *stop > 0 {
            let n = usize::from(*stop);
            let stopped = record(Some(n), |f| {
                ylokh::fuzzing::chunk(data, f).and_then(|flow| match flow {
                    ControlFlow::Continue(()) => Ok(()),
                    ControlFlow::Break(()) => {
                        Err(ylokh::Error::new(ylokh::ErrorKind::Aborted, "stopped"))
                    }
                })
            });
            check_abort(&serde, &stopped, n);
        }
    }
});
