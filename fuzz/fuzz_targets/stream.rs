//! A streaming reply's body through the client's stream path (SSE decoder, chunk parser,
//! `[DONE]`, error events, end-of-stream rules) with no I/O.
//!
//! Input: byte 0 picks the event size limit, byte 1 a callback stop (0: none), byte 2 the
//! number of cuts, then two bytes per cut (an offset into the body); the rest is the body.
//! Checked: no panic; the same events and the same outcome however the body is cut into
//! reads; a callback stop after n events gives exactly the first n events and Aborted.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::*;

fuzz_target!(|input: &[u8]| {
    let [limit, stop, ncuts, rest @ ..] = input else {
        return;
    };
    // 1 KiB to 17 KiB: small enough that the limit is reached by fuzzed lines.
    let limit = 1024 + usize::from(*limit) * 64;
    let ncuts = usize::from(*ncuts % 16);
    if rest.len() < ncuts * 2 {
        return;
    }
    let (cuts, body) = rest.split_at(ncuts * 2);
    let cuts: Vec<usize> = cuts
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();

    let whole = record(None, |f| ylokh::fuzzing::stream(body, &[], limit, f));
    let cut = record(None, |f| ylokh::fuzzing::stream(body, &cuts, limit, f));
    assert_eq!(whole, cut, "the outcome depends on how the body was cut");
    // Byte by byte: the most cuts there are.
    if body.len() <= 512 {
        let every: Vec<usize> = (1..body.len()).collect();
        let bytewise = record(None, |f| ylokh::fuzzing::stream(body, &every, limit, f));
        assert_eq!(
            whole, bytewise,
            "the outcome differs when read byte by byte"
        );
    }
    if *stop > 0 {
        let n = usize::from(*stop);
        let stopped = record(Some(n), |f| ylokh::fuzzing::stream(body, &cuts, limit, f));
        check_abort(&whole, &stopped, n);
    }
});
