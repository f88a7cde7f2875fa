//! A non-streaming reply's body (`"stream": false`) through the client's reply path.
//! Checked: no panic; it reports what the chunk parser's serde path reports for it.

#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;
use common::*;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|body: &[u8]| {
    let reply = record(None, |f| ylokh::fuzzing::whole_reply(body, LIMIT, f));
    if body.len() <= LIMIT {
        let serde = record(None, |f| {
            ylokh::fuzzing::chunk_serde(body, f).map(|_: ControlFlow<()>| ())
        });
        assert_eq!(reply, serde);
    }
});
