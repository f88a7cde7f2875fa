//! End-to-end tests against a live llama.cpp server with a real model, through the C ABI.
//!
//! They need a server, so they are ignored by a plain `cargo test`; `make test` runs them
//! with `scripts/with-model-server.sh cargo test --test e2e -- --ignored`, which starts the
//! local model (Gemma 3 270M, a base model: prompts are text to continue) and sets
//! `YLOKH_BASE_URL`. Run that way without a server, they fail rather than pass.
//!
//! `make test` runs them a second time through the LiteLLM proxy
//! (`scripts/with-litellm.sh`, in front of the same server): then `YLOKH_BASE_URL` is the
//! proxy, `YLOKH_API_KEY` its key, and `YLOKH_UPSTREAM_URL` the llama.cpp server behind it,
//! whose `/slots` tell whether an abort reached it. Every test holds through the proxy:
//! streaming equals non-streaming, usage with `stream_options.include_usage`, an abort
//! frees the upstream slot, the upstream's context error arrives with LiteLLM's status and
//! message, a two-turn conversation.

mod common;

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::capi::*;
use serde_json::json;
use ylokh::ffi::*;

fn client() -> CClient {
    let url = std::env::var("YLOKH_BASE_URL")
        .expect("YLOKH_BASE_URL must point at a live server (make test starts one)");
    CClient::new(&url)
}

fn user(text: &str) -> String {
    json!([{"role": "user", "content": text}]).to_string()
}

/// Deterministic sampling so streamed and whole replies can be compared byte for byte.
fn options(max_tokens: u32, stream: bool) -> String {
    json!({"temperature": 0, "seed": 42, "max_tokens": max_tokens, "stream": stream}).to_string()
}

#[test]
#[ignore = "needs a live model server: run `make test`"]
fn streaming_equals_non_streaming_byte_for_byte() {
    let client = client();
    for prompt in [
        "The three primary colors are",
        "Once upon a time, in a small village by the sea,",
        "def fibonacci(n):",
    ] {
        let streamed = client.chat_full(None, &user(prompt), Some(&options(32, true)), None);
        streamed.ok();
        let whole = client.chat_full(None, &user(prompt), Some(&options(32, false)), None);
        whole.ok();
        assert!(
            streamed.tokens.len() > 1,
            "{prompt}: expected several tokens"
        );
        assert_eq!(whole.tokens.len(), 1);
        assert_eq!(streamed.tokens.concat(), whole.tokens[0], "{prompt}");
    }
}

#[test]
#[ignore = "needs a live model server: run `make test`"]
fn finish_reason_and_usage_match_the_non_streaming_reply() {
    let client = client();
    let prompt = user("The three primary colors are");
    let with_usage = json!({"temperature": 0, "seed": 42, "max_tokens": 12, "stream": true,
                            "stream_options": {"include_usage": true}})
    .to_string();
    let (status, streamed, error) = client.events_with(&prompt, Some(&with_usage));
    assert_eq!(status, YLOKH_OK, "{error}");
    let (status, whole, error) = client.events_with(&prompt, Some(&options(12, false)));
    assert_eq!(status, YLOKH_OK, "{error}");
    for events in [&streamed, &whole] {
        let finish: Vec<_> = events
            .iter()
            .filter(|e| e.kind == ylokh_event_kind::YLOKH_EVENT_FINISH)
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(finish, ["length"]);
    }
    let usage = |events: &[OwnedEvent]| {
        events
            .iter()
            .find(|e| e.kind == ylokh_event_kind::YLOKH_EVENT_USAGE)
            .map(|e| e.counts)
            .expect("a usage event")
    };
    assert_eq!(usage(&streamed), usage(&whole));
    assert_eq!(usage(&streamed)[1], 12, "completion_tokens = max_tokens");
}

/// Token callback that stops after `limit` tokens and notes when it did.
struct Stopper {
    tokens: usize,
    limit: usize,
    stopped_at: Option<Instant>,
}

extern "C" fn stop_after(userdata: *mut c_void, _token: *const c_char, _len: usize) -> c_int {
    // SAFETY: userdata is the Stopper of the test below, alive for the call.
    let stopper = unsafe { &mut *(userdata as *mut Stopper) };
    stopper.tokens += 1;
    if stopper.tokens < stopper.limit {
        return 0;
    }
    stopper.stopped_at = Some(Instant::now());
    1
}

/// Whether any slot of the llama.cpp server is still generating (its `/slots` endpoint).
fn slots_busy(base_url: &str) -> bool {
    let root = base_url.trim_end_matches('/').trim_end_matches("/v1");
    let mut reply = ureq::get(format!("{root}/slots"))
        .call()
        .expect("GET /slots");
    let text = reply.body_mut().read_to_string().expect("/slots body");
    let slots: serde_json::Value = serde_json::from_str(&text).expect("/slots is JSON");
    slots
        .as_array()
        .expect("/slots is an array")
        .iter()
        .any(|slot| slot["is_processing"].as_bool().unwrap_or(false))
}

#[test]
#[ignore = "needs a live model server: run `make test`"]
fn abort_mid_generation_returns_promptly_and_the_next_request_succeeds() {
    let client = client();
    // The llama.cpp server, also when the client talks to it through a proxy.
    let base_url = std::env::var("YLOKH_UPSTREAM_URL")
        .or_else(|_| std::env::var("YLOKH_BASE_URL"))
        .unwrap();
    let messages = cstring(&user(
        "Write a long story about a dragon who learns to paint.",
    ));
    let opts = cstring(&options(400, true));
    let mut stopper = Stopper {
        tokens: 0,
        limit: 3,
        stopped_at: None,
    };
    // SAFETY: live client; strings and the stopper outlive the call.
    let status = unsafe {
        ylokh_chat(
            client.0,
            std::ptr::null(),
            messages.as_ptr(),
            opts.as_ptr(),
            Some(stop_after),
            (&mut stopper as *mut Stopper).cast(),
        )
    };
    let returned = Instant::now();
    assert_eq!(status, YLOKH_E_ABORTED, "{}", last_error());
    assert_eq!(stopper.tokens, 3, "no token after the abort");
    // The call returns as soon as the callback says stop, whatever the model's speed.
    let took = returned - stopper.stopped_at.unwrap();
    assert!(
        took < Duration::from_millis(500),
        "return after the abort took {took:?}"
    );
    // The dropped connection makes the server cancel the generation and free its slot
    // (it notices when it next writes a token, so allow for a slow, loaded machine).
    let freed = Instant::now();
    while slots_busy(&base_url) {
        assert!(
            freed.elapsed() < Duration::from_secs(30),
            "the server slot stayed busy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let next = client.chat_full(None, &user("The sky is"), Some(&options(8, true)), None);
    next.ok();
    assert!(!next.tokens.is_empty());
}

#[test]
#[ignore = "needs a live model server: run `make test`"]
fn a_two_turn_conversation_sends_the_whole_history() {
    let client = client();
    // SAFETY: live handles used by this thread only.
    unsafe {
        let conv = ylokh_conversation_new();
        let add = |text: &str| {
            let (r, t) = (cstring("user"), cstring(text));
            assert_eq!(
                ylokh_conversation_add(conv, r.as_ptr(), t.as_ptr()),
                YLOKH_OK
            );
        };
        let mut prompt_tokens = Vec::new();
        for turn in ["The capital of France is", " The capital of Italy is"] {
            add(turn);
            let mut events: Vec<OwnedEvent> = Vec::new();
            let opts = cstring(
                &json!({"temperature": 0, "seed": 1, "max_tokens": 8,
                        "stream_options": {"include_usage": true}})
                .to_string(),
            );
            let request = ylokh_request {
                options_json: opts.as_ptr(),
                conversation: conv,
                on_event: Some(collect_event),
                userdata: (&mut events as *mut Vec<OwnedEvent>).cast(),
                ..Default::default()
            };
            assert_eq!(
                ylokh_chat_ex(client.0, &request),
                YLOKH_OK,
                "{}",
                last_error()
            );
            let usage = events
                .iter()
                .find(|e| e.kind == ylokh_event_kind::YLOKH_EVENT_USAGE)
                .expect("usage");
            prompt_tokens.push(usage.counts[0]);
        }
        assert_eq!(ylokh_conversation_len(conv), 4);
        // The second prompt holds the first turn, its reply and the new turn.
        assert!(
            prompt_tokens[1] > prompt_tokens[0] + 8,
            "prompt tokens {prompt_tokens:?}"
        );
        ylokh_conversation_free(conv);
    }
}

#[test]
#[ignore = "needs a live model server: run `make test`"]
fn a_prompt_longer_than_the_context_returns_the_servers_error() {
    let client = client();
    let long = "hello ".repeat(3000);
    for stream in [true, false] {
        let out = client.chat_full(None, &user(&long), Some(&options(8, stream)), None);
        assert_eq!(
            out.status, YLOKH_E_HTTP_STATUS,
            "stream={stream}: {}",
            out.error
        );
        assert_eq!(out.http_status, 400);
        assert!(
            out.error.contains("exceeds the available context size"),
            "{}",
            out.error
        );
        assert!(out.tokens.is_empty());
    }
}

#[test]
#[ignore = "needs a live model server: run `make test`"]
fn four_concurrent_streams_on_one_client_each_equal_their_own_reply() {
    // llama.cpp's batched decoding is not bit-identical to decoding one sequence alone, so
    // open-ended prompts can drift apart under concurrency (measured: 2 to 4 of 4 differ).
    // These prompts have continuations with wide margins (counting, weekdays, months,
    // letters) that batching numerics do not flip within 12 tokens (measured: 20 of 20
    // runs equal), and they are distinct, so streams mixed between threads would show.
    let client = Arc::new(client());
    let prompts = [
        "1, 2, 3, 4, 5, 6,",
        "Monday, Tuesday, Wednesday,",
        "January, February, March, April,",
        "a, b, c, d, e, f,",
    ];
    let workers: Vec<_> = prompts
        .iter()
        .map(|prompt| {
            let client = client.clone();
            let prompt = prompt.to_string();
            thread::spawn(move || {
                let out = client.chat_full(None, &user(&prompt), Some(&options(12, true)), None);
                out.ok();
                (prompt, out.tokens.concat())
            })
        })
        .collect();
    let streamed: Vec<(String, Vec<u8>)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    for (prompt, text) in streamed {
        let whole = client.chat_full(None, &user(&prompt), Some(&options(12, false)), None);
        whole.ok();
        assert_eq!(
            String::from_utf8_lossy(&text),
            String::from_utf8_lossy(&whole.tokens[0]),
            "{prompt}"
        );
    }
}
