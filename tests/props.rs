//! Property tests of the whole pipeline (HTTP framing, SSE decoder, chunk parser, C ABI or
//! Rust API) against a loopback server.
//!
//! - Generated replies (any Unicode, escapes written every legal way, NUL, emoji) rendered
//!   as an OpenAI stream with random line endings, comments, extra fields and multi-line
//!   data, cut at random HTTP chunk boundaries: the tokens and events delivered are
//!   exactly the generated ones.
//! - Arbitrary bytes as a stream body: never a crash, never invalid UTF-8 handed to a
//!   callback, and the outcome does not depend on how the body was cut into pieces.
//!
//! src/sse.rs has the decoder-level properties; these look at the pipeline end to end.
//! Runs a fixed seed by default so results are reproducible; set `PROPTEST_RNG_SEED` (and
//! `PROPTEST_CASES`) to explore other cases.

mod common;

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use ylokh::ffi::*;
use ylokh::{ChatRequest, Client, Event, Settings};

use common::capi::*;
use common::*;

fn config() -> Config {
    // Reads PROPTEST_CASES and PROPTEST_RNG_SEED when set.
    let base = Config::default();
    let set = |name: &str| std::env::var_os(name).is_some();
    Config {
        cases: if set("PROPTEST_CASES") {
            base.cases
        } else {
            64
        },
        rng_seed: if set("PROPTEST_RNG_SEED") {
            base.rng_seed
        } else {
            RngSeed::Fixed(0x5EED_0F7E_57AB)
        },
        // A failure prints its minimal case; no files are written into the source tree.
        failure_persistence: None,
        ..base
    }
}

/// A loopback server whose reply is set per case.
struct Loopback {
    server: Server,
    reply: Arc<Mutex<Script>>,
}

impl Loopback {
    fn new() -> Loopback {
        let reply = Arc::new(Mutex::new(Script::close()));
        let server = Server::start({
            let reply = Arc::clone(&reply);
            move |_| reply.lock().unwrap().clone()
        });
        Loopback { server, reply }
    }

    fn set(&self, script: Script) {
        *self.reply.lock().unwrap() = script;
    }
}

/// splitmix64, for the rendering choices derived from one generated seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ---------------------------------------------------------------------------
// Generated replies
// ---------------------------------------------------------------------------

/// Characters with the interesting ones (JSON specials, controls, NUL, surrogate pairs in
/// UTF-16 escapes, line separators) much more likely than at random.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        2 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('\u{0}', '\u{1f}'),
        1 => prop::sample::select(vec![
            '"', '\\', '/', '\u{7f}', '\u{80}', '\u{2028}', '\u{2029}', '\u{FEFF}', 'é', '日',
            '\u{1F600}', '\u{10FFFF}', '\u{D7FF}', '\u{E000}', '\u{FFFD}',
        ]),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

/// One piece of a reply, as the server sends it and as the event API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Content(String),
    Reasoning(String),
    Tool {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => text().prop_map(Piece::Content),
        1 => text().prop_map(Piece::Reasoning),
        1 => (0u32..3, proptest::option::of(text()), proptest::option::of(text()), text())
            .prop_map(|(index, id, name, arguments)| Piece::Tool { index, id, name, arguments }),
    ]
}

/// An event as owned data, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Content(String),
    Reasoning(String),
    Tool {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish(String),
    Usage([u64; 3]),
}

impl Got {
    fn of(event: Event<'_>) -> Got {
        match event {
            Event::Content { choice: 0, text } => Got::Content(text.to_owned()),
            Event::Reasoning { choice: 0, text } => Got::Reasoning(text.to_owned()),
            Event::ToolCall {
                choice: 0,
                index,
                id,
                name,
                arguments,
                ..
            } => Got::Tool {
                index,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: arguments.to_owned(),
            },
            Event::Finish { choice: 0, reason } => Got::Finish(reason.to_owned()),
            Event::Usage(u) => Got::Usage([u.prompt_tokens, u.completion_tokens, u.total_tokens]),
            other => panic!("an event for a choice that was never sent: {other:?}"),
        }
    }
}

/// A JSON string literal for `s`, each character written one of the legal ways at
/// random: as itself, as a short escape, or as `\uXXXX` (a surrogate pair above the BMP),
/// in either case of hex digits.
fn json_string(s: &str, rng: &mut Rng) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let must_escape = c == '"' || c == '\\' || c < ' ';
        match rng.below(3) {
            0 if !must_escape => out.push(c),
            1 if short.is_some() => out.push_str(short.unwrap()),
            _ if !must_escape && rng.chance(50) => out.push(c),
            _ => {
                let upper = rng.chance(50);
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if upper {
                        out.push_str(&format!("\\u{unit:04X}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
    }
    out.push('"');
    out
}

/// Optional JSON whitespace.
fn ws(rng: &mut Rng) -> &'static str {
    match rng.below(8) {
        0 => " ",
        1 => "\t",
        2 => " \t ",
        _ => "",
    }
}

/// The `data:` payload of one chunk carrying `piece`, with random extra fields,
/// whitespace and key order around the parts that matter.
fn chunk_json(piece: &Piece, rng: &mut Rng) -> String {
    let delta = match piece {
        Piece::Content(t) => format!("{{\"content\":{}{}}}", ws(rng), json_string(t, rng)),
        Piece::Reasoning(t) => {
            let key = if rng.chance(50) {
                "reasoning_content"
            } else {
                "reasoning"
            };
            let content = if rng.chance(30) {
                ",\"content\":null"
            } else {
                ""
            };
            format!("{{\"{key}\":{}{content}}}", json_string(t, rng))
        }
        Piece::Tool {
            index,
            id,
            name,
            arguments,
        } => {
            let mut call = format!("{{\"index\":{index}");
            if let Some(id) = id {
                call.push_str(&format!(
                    ",\"id\":{},\"type\":\"function\"",
                    json_string(id, rng)
                ));
            }
            call.push_str(",\"function\":{");
            if let Some(name) = name {
                call.push_str(&format!("\"name\":{},", json_string(name, rng)));
            }
            call.push_str(&format!(
                "\"arguments\":{}}}}}",
                json_string(arguments, rng)
            ));
            format!("{{\"tool_calls\":[{call}]}}")
        }
    };
    let mut fields = vec![format!(
        "\"choices\":{}[{{\"index\":0,{}\"delta\":{delta},\"logprobs\":null,\"finish_reason\":null}}]",
        ws(rng),
        ws(rng)
    )];
    if rng.chance(70) {
        fields.insert(
            0,
            "\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\"".into(),
        );
    }
    if rng.chance(40) {
        fields.push("\"model\":\"m\",\"system_fingerprint\":null,\"usage\":null".into());
    }
    if rng.chance(15) {
        fields.push("\"x\":{\"nested\":[1,2.5e3,-0,true,false,null,\"\\u0041\"]}".into());
    }
    format!("{{{}{}}}", ws(rng), fields.join(","))
}

/// The whole SSE body: a role event, one event per piece, a finish reason and [DONE],
/// with comments, ids, `event: message`, multi-line data and a random line ending per
/// line. Returns the body and the events the API must report for it.
fn render(pieces: &[Piece], seed: u64) -> (Vec<u8>, Vec<Got>) {
    let mut rng = Rng(seed);
    let mut lines: Vec<String> = Vec::new();
    let mut want = Vec::new();
    let event = |lines: &mut Vec<String>, json: String, rng: &mut Rng| {
        if rng.chance(15) {
            lines.push(": keep-alive".into());
        }
        if rng.chance(10) {
            lines.push(format!("id: {}", rng.below(1000)));
        }
        if rng.chance(10) {
            lines.push("event: message".into());
        }
        let colon = if rng.chance(80) { "data: " } else { "data:" };
        // A data field may span lines (joined with \n, which JSON takes as whitespace):
        // cut after a comma outside strings would need a parser, so cut only between the
        // payload's first `{` and the rest.
        if rng.chance(10) {
            lines.push(format!("{colon}{{"));
            lines.push(format!("data:{}", &json[1..]));
        } else {
            lines.push(format!("{colon}{json}"));
        }
        lines.push(String::new());
    };
    event(
        &mut lines,
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}".into(),
        &mut rng,
    );
    for piece in pieces {
        let json = chunk_json(piece, &mut rng);
        event(&mut lines, json, &mut rng);
        // Empty text is not reported; a tool-call piece always is.
        match piece {
            Piece::Content(t) if !t.is_empty() => want.push(Got::Content(t.clone())),
            Piece::Reasoning(t) if !t.is_empty() => want.push(Got::Reasoning(t.clone())),
            Piece::Tool {
                index,
                id,
                name,
                arguments,
            } => want.push(Got::Tool {
                index: *index,
                id: id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
            }),
            _ => {}
        }
    }
    event(
        &mut lines,
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}".into(),
        &mut rng,
    );
    want.push(Got::Finish("stop".into()));
    if rng.chance(30) {
        event(
            &mut lines,
            "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}"
                .into(),
            &mut rng,
        );
        want.push(Got::Usage([3, 4, 7]));
    }
    lines.push("data: [DONE]".into());
    lines.push(String::new());
    let mut body = String::new();
    if rng.chance(10) {
        body.push('\u{FEFF}');
    }
    let mut last = "";
    for line in lines {
        body.push_str(&line);
        // A CR then an empty line's LF would read as one CRLF: pick again.
        let end = loop {
            let end = ["\n", "\r", "\r\n"][rng.below(3) as usize];
            if !(last == "\r" && line.is_empty() && end == "\n") {
                break end;
            }
        };
        body.push_str(end);
        last = end;
    }
    (body.into_bytes(), want)
}

/// The body framed one of the ways servers do, cut into pieces at `cuts` (offsets into
/// the body; each piece is flushed separately).
fn framed(body: &[u8], cuts: &[usize], how: u8) -> Script {
    let cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    let framing = match how % 3 {
        0 => Framing::Chunked(cuts),
        1 => Framing::ContentLengthAt(cuts),
        _ => Framing::CloseDelimitedAt(cuts),
    };
    Script::sse(body, framing)
}

fn content_tokens(events: &[Got]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            Got::Content(t) => Some(t.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

fn rust_client(url: &str) -> Client {
    let client = Client::with_settings(Settings {
        proxy_from_env: false,
        ..Settings::default()
    });
    client.set_base_url(url).unwrap();
    client
}

#[test]
fn generated_replies_reach_the_c_token_callback_exactly() {
    let lo = Loopback::new();
    let client = CClient::new(&lo.server.base_url());
    proptest!(config(), |(
        pieces in prop::collection::vec(piece(), 0..10),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        how in any::<u8>(),
        abort in proptest::option::of(1usize..8),
    )| {
        let (body, want) = render(&pieces, seed);
        let want = content_tokens(&want);
        lo.set(framed(&body, &cuts, how));
        let abort = abort.filter(|&n| n <= want.len());
        let out = client.chat_full(None, USER_HI, None, abort);
        prop_assert!(out.violations.is_empty(), "{:?}", out.violations);
        match abort {
            Some(n) => {
                prop_assert_eq!(out.status, YLOKH_E_ABORTED, "{}", out.error);
                prop_assert_eq!(&out.tokens[..], &want[..n]);
            }
            None => {
                prop_assert_eq!(out.status, YLOKH_OK, "{}", out.error);
                prop_assert_eq!(out.tokens, want);
            }
        }
    });
}

#[test]
fn generated_replies_reach_the_rust_event_api_exactly() {
    let lo = Loopback::new();
    let client = rust_client(&lo.server.base_url());
    let request = ChatRequest::from_json(None, USER_HI, None).unwrap();
    proptest!(config(), |(
        pieces in prop::collection::vec(piece(), 0..10),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        how in any::<u8>(),
    )| {
        let (body, want) = render(&pieces, seed);
        lo.set(framed(&body, &cuts, how));
        let mut got = Vec::new();
        let result = client.chat(&request, |event| {
            got.push(Got::of(event));
            ControlFlow::Continue(())
        });
        prop_assert!(result.is_ok(), "{:?}", result);
        prop_assert_eq!(got, want);
    });
}

// ---------------------------------------------------------------------------
// Arbitrary bytes
// ---------------------------------------------------------------------------

/// Bytes that are mostly stream-shaped: valid events, broken JSON, invalid UTF-8, random
/// bytes, comments and `[DONE]`, joined with random line ends; or fully random bytes.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        3 => text().prop_map(|t| chunk_event(&t).into_bytes()),
        1 => text().prop_map(|t| format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}").into_bytes()),
        2 => prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| [&b"data: {\"choices\":[{\"delta\":{\"content\":\""[..], &b, b"\"}}]}"].concat()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| [&b"data: "[..], &b].concat()),
        1 => Just(b": comment".to_vec()),
        1 => Just(b"event: error".to_vec()),
        1 => Just(b"data: [DONE]".to_vec()),
        1 => Just(finish_event("stop").into_bytes()),
        1 => Just(b"data: {\"error\":{\"message\":\"x\"}}".to_vec()),
    ];
    let eol = prop::sample::select(vec![&b"\n"[..], b"\r", b"\r\n", b"\n\n", b""]);
    prop_oneof![
        4 => prop::collection::vec((line, eol), 0..12)
            .prop_map(|parts| parts.into_iter().flat_map(|(l, e)| [l, e.to_vec()]).flatten().collect()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

#[test]
fn arbitrary_bodies_never_crash_nor_deliver_invalid_utf8_whatever_the_split() {
    let lo = Loopback::new();
    let client = CClient::new(&lo.server.base_url());
    // SAFETY: live client.
    unsafe {
        // A silent or cut server must cost little; nothing here needs a retry.
        assert_eq!(ylokh_client_set_timeout_ms(client.0, 2000), YLOKH_OK);
        assert_eq!(ylokh_client_set_max_retries(client.0, 0), YLOKH_OK);
    }
    proptest!(config(), |(
        body in hostile_body(),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
        chunked in any::<bool>(),
    )| {
        // Whole, in one write.
        lo.set(Script::sse(&body, Framing::ContentLength));
        let whole = client.chat(None);
        // Cut into pieces.
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        lo.set(Script::sse(
            &body,
            if chunked { Framing::Chunked(cuts) } else { Framing::ContentLengthAt(cuts) },
        ));
        let split = client.chat(None);
        for out in [&whole, &split] {
            prop_assert!(out.violations.is_empty(), "{:?}", out.violations);
            prop_assert!(
                [YLOKH_OK, YLOKH_E_API, YLOKH_E_PROTOCOL].contains(&out.status),
                "status {}: {}", out.status, out.error
            );
        }
        prop_assert_eq!(whole.status, split.status, "{} / {}", whole.error, split.error);
        prop_assert_eq!(&whole.tokens, &split.tokens);
    });
}

#[test]
fn arbitrary_non_streaming_bodies_never_crash_nor_deliver_invalid_utf8() {
    let lo = Loopback::new();
    let client = CClient::new(&lo.server.base_url());
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_retries(client.0, 0) },
        YLOKH_OK
    );
    let json_like = prop_oneof![
        text().prop_map(|t| completion_json(&t).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            [
                &br#"{"choices":[{"message":{"content":""#[..],
                &b,
                br#""}}]}"#,
            ]
            .concat()
        }),
        prop::collection::vec(any::<u8>(), 0..200),
    ];
    proptest!(config(), |(body in json_like)| {
        lo.set(Script::response(
            200,
            &[("Content-Type", "application/json")],
            &body,
            Framing::ContentLength,
        ));
        let out = client.chat(Some(r#"{"stream":false}"#));
        prop_assert!(out.violations.is_empty(), "{:?}", out.violations);
        prop_assert!(
            [YLOKH_OK, YLOKH_E_API, YLOKH_E_PROTOCOL].contains(&out.status),
            "status {}: {}", out.status, out.error
        );
        if out.status != YLOKH_OK {
            prop_assert!(out.tokens.is_empty(), "a failed whole reply delivers nothing");
        }
    });
}
