//! Per-token work allocates nothing: a counting global allocator counts the heap
//! allocations made on the calling thread during a chat, and a reply ten times longer must
//! not cost more of them. The loopback server's own threads are not counted.
//!
//! The replies mix ASCII, Cyrillic and CJK tokens with tokens that JSON must escape
//! (newlines, quotes, `\u` escapes): those are decoded into a reused buffer, not a new
//! string each. Events are cut across HTTP chunks and reads, so the decoder's carry-over
//! path is covered too.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ops::ControlFlow;

use common::*;

struct Counting;

thread_local! {
    /// Whether this thread's allocations are being counted, and how many there were.
    /// Per thread: the tests of this file run at the same time on their own threads.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.get();
    COUNTING.set(true);
    f();
    COUNTING.set(false);
    ALLOCATIONS.get() - before
}

const SHORT: usize = 2_000;
const LONG: usize = 20_000;

/// Tokens as a model streams them, some needing JSON escapes.
const TOKENS: &[&str] = &[
    " The",
    " quick",
    " brown",
    " fox",
    ",",
    " Привет",
    " мир",
    "你好",
    "世界",
    "。",
    "\n\n",
    " \"quoted\"",
    "日本語",
    "\u{1F600}",
    "\t",
    " back\\slash",
    "é",
];

fn reply(tokens: usize) -> Vec<u8> {
    let list: Vec<&str> = (0..tokens).map(|i| TOKENS[i % TOKENS.len()]).collect();
    sse_stream(&list)
}

/// A server answering with as many tokens as the request's `max_tokens`, in HTTP chunks
/// of 16 KiB that cut events anywhere.
fn server() -> Server {
    let short = reply(SHORT);
    let long = reply(LONG);
    Server::start(move |req| {
        let body = match req.json()["max_tokens"].as_u64() {
            Some(n) if n as usize == LONG => &long,
            _ => &short,
        };
        Script::sse(body, Framing::ChunkedEvery(16 * 1024)).with_keep_alive(true)
    })
}

fn request(tokens: usize) -> ylokh::ChatRequest {
    ylokh::ChatRequest::from_json(
        None,
        r#"[{"role":"user","content":"Tell me a long story"}]"#,
        Some(&format!(r#"{{"max_tokens":{tokens}}}"#)),
    )
    .unwrap()
}

#[test]
fn rust_api_allocations_do_not_grow_with_the_reply() {
    let server = server();
    let client = ylokh::Client::new();
    client.set_base_url(&server.base_url()).unwrap();
    client.set_proxy_from_env(false);
    let (short, long) = (request(SHORT), request(LONG));

    let run = |request: &ylokh::ChatRequest, want: usize| {
        let mut tokens = 0;
        let mut bytes = 0;
        let n = allocations_in(|| {
            client
                .chat_tokens(request, |t| {
                    tokens += 1;
                    bytes += t.len();
                    ControlFlow::Continue(())
                })
                .unwrap();
        });
        assert_eq!(tokens, want);
        (n, bytes)
    };
    // The first calls build the agent, open the connection and grow the reused buffers.
    run(&short, SHORT);
    run(&long, LONG);
    run(&short, SHORT);
    let (mut shorts, mut longs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        shorts.push(run(&short, SHORT).0);
        let (n, bytes) = run(&long, LONG);
        let expected: usize = (0..LONG).map(|i| TOKENS[i % TOKENS.len()].len()).sum();
        assert_eq!(bytes, expected);
        longs.push(n);
    }
    println!("allocations per call: {SHORT} tokens: {shorts:?}, {LONG} tokens: {longs:?}");
    // 9 calls: the pooled connection is reused by most. Not by every one: after [DONE] a
    // call waits only 10 ms for the body's end before it gives the connection up, and on a
    // machine whose cores are busy with other tests the server's last write can miss that.
    let connections = server.connections();
    assert!(connections <= 4, "{connections} connections for 9 calls");
    assert_no_growth(&shorts, &longs);
}

/// The fewest allocations of a long call are no more than those of a short one. (A call
/// may allocate a little more now and then, for reasons of its own: a buffer grown at a
/// different split, a pool entry; never for each token.)
fn assert_no_growth(shorts: &[usize], longs: &[usize]) {
    let short = shorts.iter().min().unwrap();
    let long = longs.iter().min().unwrap();
    assert!(
        long <= short,
        "{LONG} tokens cost {long} allocations, {SHORT} tokens {short}: per-token work allocates"
    );
}

struct Count {
    tokens: usize,
    bytes: usize,
}

unsafe extern "C" fn on_token(userdata: *mut c_void, _token: *const c_char, len: usize) -> c_int {
    // SAFETY: userdata is the &mut Count passed below, used by this thread only.
    let count = unsafe { &mut *userdata.cast::<Count>() };
    count.tokens += 1;
    count.bytes += len;
    0
}

#[test]
fn c_abi_allocations_do_not_grow_with_the_reply() {
    use ylokh::ffi::*;
    let server = server();
    let url = CString::new(server.base_url()).unwrap();
    let messages = CString::new(r#"[{"role":"user","content":"Tell me a long story"}]"#).unwrap();
    let options = |n: usize| CString::new(format!(r#"{{"max_tokens":{n}}}"#)).unwrap();
    let (short, long) = (options(SHORT), options(LONG));
    // SAFETY: plain use of the C API with live, NUL-terminated strings.
    unsafe {
        let client = ylokh_client_new();
        assert_eq!(ylokh_client_set_base_url(client, url.as_ptr()), YLOKH_OK);
        assert_eq!(ylokh_client_set_proxy_from_env(client, 0), YLOKH_OK);
        let run = |opts: &CString, want: usize| {
            let mut count = Count {
                tokens: 0,
                bytes: 0,
            };
            let n = allocations_in(|| {
                let st = ylokh_chat(
                    client,
                    std::ptr::null(),
                    messages.as_ptr(),
                    opts.as_ptr(),
                    Some(on_token),
                    (&mut count as *mut Count).cast(),
                );
                assert_eq!(st, YLOKH_OK);
            });
            assert_eq!(count.tokens, want);
            n
        };
        run(&short, SHORT);
        run(&long, LONG);
        run(&short, SHORT);
        let (mut shorts, mut longs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            shorts.push(run(&short, SHORT));
            longs.push(run(&long, LONG));
        }
        println!(
            "C ABI allocations per call: {SHORT} tokens: {shorts:?}, {LONG} tokens: {longs:?}"
        );
        assert_no_growth(&shorts, &longs);
        ylokh_client_free(client);
    }
}
