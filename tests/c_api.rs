//! The C API exercised from real C: the programs in `tests/c/` and the examples in
//! `examples-c/` are compiled with `cc -std=c99 -Wall -Wextra -Werror -pedantic` against the
//! library built for this very test run, and run against the scripted server of
//! `tests/common/` (one case per test, each with its own server).
//!
//! Each C test program takes `CASE BASE_URL [ARGS...]`, checks what only C can see (NUL
//! terminators, threads, pointers left untouched), prints `PASS <case>` and lines such as
//! `TOKENS [...]` for the assertions made here, and exits 1 after printing every failed
//! check to stderr.
//!
//! Run with `cargo test --test c_api`. Needs a C compiler (`cc`, or `$CC`).

mod common;
/// The pull API's C tests (tests/c/test_stream.c).
#[path = "c_api/stream.rs"]
mod pull_stream;

use common::hostile::blackhole;
use common::process::{manifest_dir, profile_dir, run_bounded, Outcome, SCRUBBED_ENV};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A C program that runs longer than this is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Bound on the fallback `cargo build` of the library (see [`library_dir`]).
const BUILD_LIMIT: Duration = Duration::from_secs(900);

const CFLAGS: &[&str] = &[
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-O1",
    "-g",
];

/// What `rustc --print native-static-libs` lists for a Rust staticlib on Linux.
const STATIC_SYSTEM_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

// ---------------------------------------------------------------------------
// Finding the library and compiling the C programs
// ---------------------------------------------------------------------------

/// Where this build's `libylokh.so` and `libylokh.a` are (computed once).
///
/// The crate-type is `cdylib + staticlib + rlib`, and cargo builds a library target with all
/// its crate types in one rustc run, also when the library is only a dependency of this
/// integration test. So `cargo test` writes `libylokh.so` and `libylokh.a` into
/// `target/<profile>/deps/`, next to the `libylokh.rlib` this test binary was linked with:
/// the C programs test exactly the code of this build. Cargo does *not* copy them up to
/// `target/<profile>/` (it does that only for `cargo build`), so the copies there may be
/// missing or stale and are never used.
///
/// Should `deps/` lack them, or hold copies older than the rlib (a changed crate-type, a
/// future cargo), the library is built with `cargo build` of the same profile into a target
/// directory of its own (`target/<profile>/c-tests/cargo-target`), bounded by
/// [`BUILD_LIMIT`]: a separate directory cannot deadlock on the build lock of the cargo
/// running this test, nor disturb its files.
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let deps = profile_dir().join("deps");
        if libraries_fresh(&deps) {
            return deps;
        }
        eprintln!(
            "c_api: no fresh libylokh.so/.a in {}; building them with cargo",
            deps.display()
        );
        build_library_with_cargo()
    })
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Both libraries exist and are not older than the rlib of the same rustc run.
fn libraries_fresh(dir: &Path) -> bool {
    let (so, a) = (
        modified(&dir.join("libylokh.so")),
        modified(&dir.join("libylokh.a")),
    );
    let (Some(so), Some(a)) = (so, a) else {
        return false;
    };
    match modified(&dir.join("libylokh.rlib")) {
        // Written by one rustc invocation: allow for the time it took.
        Some(rlib) => [so, a].iter().all(|t| {
            rlib.duration_since(*t)
                .map_or(true, |older| older < Duration::from_secs(120))
        }),
        None => true,
    }
}

fn build_library_with_cargo() -> PathBuf {
    let profile_dir = profile_dir();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name")
        .to_owned();
    let target_dir = profile_dir.join("c-tests").join("cargo-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(manifest_dir())
        .args(["build", "--lib", "--profile"])
        .arg(if profile == "debug" { "dev" } else { &profile })
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdin(Stdio::null());
    let out = run_bounded(cmd, None, BUILD_LIMIT);
    assert!(
        out.status.success(),
        "cargo build of the library failed:\n{}",
        out.stderr
    );
    let dir = target_dir.join(&profile);
    assert!(
        dir.join("libylokh.so").exists() && dir.join("libylokh.a").exists(),
        "cargo build did not produce libylokh.so and libylokh.a in {}",
        dir.display()
    );
    dir
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    /// `-lylokh` (the .so) with an rpath, as `make examples` does.
    Shared,
    /// `libylokh.a` and the system libraries Rust's std needs.
    Static,
    /// Like `Shared`, with the program built under AddressSanitizer and
    /// UndefinedBehaviorSanitizer (the Rust library is not instrumented, but its heap
    /// goes through the sanitizer's malloc, so leaks and misuse of what it hands out show).
    Sanitized,
}

/// Compiles a C program once per test run and returns its path. A compiler error fails
/// the test with the compiler's output.
fn program(name: &str) -> PathBuf {
    let (source, link) = match name {
        "test_basic" | "test_events" | "test_threads" | "test_soak" | "test_hostile" => {
            (format!("tests/c/{name}.c"), Link::Shared)
        }
        "test_soak_sanitized" => ("tests/c/test_soak.c".to_owned(), Link::Sanitized),
        "test_hostile_sanitized" => ("tests/c/test_hostile.c".to_owned(), Link::Sanitized),
        "test_stream" => ("tests/c/test_stream.c".to_owned(), Link::Shared),
        "test_stream_sanitized" => ("tests/c/test_stream.c".to_owned(), Link::Sanitized),
        "test_basic_static" => ("tests/c/test_basic.c".to_owned(), Link::Static),
        "chat" | "multiturn" | "cancel" | "poll" => (format!("examples-c/{name}.c"), Link::Shared),
        // The reference's examples (docs/examples/, one per group of functions).
        doc if doc.starts_with("doc_") => (format!("docs/examples/{}.c", &doc[4..]), Link::Shared),
        _ => panic!("unknown C program {name}"),
    };
    static BUILT: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    // Held while compiling: each program is compiled by one test, the others wait for it.
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let result = built
        .entry(name.to_owned())
        .or_insert_with(|| compile(name, &source, link))
        .clone();
    drop(built);
    result.unwrap_or_else(|e| panic!("{e}"))
}

fn compile(name: &str, source: &str, link: Link) -> Result<PathBuf, String> {
    let lib = library_dir();
    let out_dir = profile_dir().join("c-tests");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let exe = out_dir.join(name);
    // Written under a unique name, then renamed: another `cargo test` may compile the same
    // program at the same time, or still run the previous one.
    let tmp = out_dir.join(format!("{name}.tmp{}", std::process::id()));
    let root = manifest_dir();
    // $CC may carry arguments of its own ("ccache gcc", "gcc -m64").
    let cc = std::env::var("CC")
        .ok()
        .filter(|cc| !cc.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    let mut cc_words = cc.split_whitespace();
    let mut cmd = Command::new(cc_words.next().unwrap_or("cc"));
    cmd.args(cc_words)
        .args(CFLAGS)
        .arg(format!("-I{}", root.join("include").display()))
        .arg(root.join(source))
        .arg("-o")
        .arg(&tmp);
    if link == Link::Sanitized {
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
            "-g",
        ]);
    }
    match link {
        Link::Shared | Link::Sanitized => {
            cmd.arg(format!("-L{}", lib.display()))
                .arg("-lylokh")
                .arg("-lpthread")
                .arg("-ldl")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libylokh.a")).args(STATIC_SYSTEM_LIBS);
        }
    }
    cmd.stdin(Stdio::null());
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("could not run the C compiler {cc:?}: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "compiling {source} failed ({}):\n{shown}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, &exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    Ok(exe)
}

// ---------------------------------------------------------------------------
// Running them
// ---------------------------------------------------------------------------

/// Removes [`SCRUBBED_ENV`] and puts this build's library first on the search path.
///
/// `cargo test` runs tests with `LD_LIBRARY_PATH` including `target/<profile>`, where an
/// older `cargo build` may have left a stale `libylokh.so`; `LD_LIBRARY_PATH` wins over the
/// programs' RUNPATH, so without this the C programs could load that stale copy.
fn clean_env(cmd: &mut Command) {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let mut paths = vec![library_dir().to_path_buf()];
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    cmd.env(
        "LD_LIBRARY_PATH",
        std::env::join_paths(paths).expect("library paths"),
    );
}

/// A command for a C program with a clean environment (see [`clean_env`]).
fn command(name: &str) -> Command {
    let mut cmd = Command::new(program(name));
    clean_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `case` of a test program against `url`.
fn run_case(prog: &str, case: &str, url: &str, args: &[&str]) -> Outcome {
    let mut cmd = command(prog);
    cmd.arg(case).arg(url).args(args);
    run_bounded(cmd, None, RUN_LIMIT)
}

/// Runs `case` and requires it to pass.
fn pass(prog: &str, case: &str, url: &str, args: &[&str]) -> Outcome {
    let out = run_case(prog, case, url, args);
    assert!(
        out.code() == Some(0) && out.stdout.contains(&format!("PASS {case}")),
        "C case {prog} {case} failed:\n{}",
        out.show()
    );
    out
}

/// Runs an example with `args`, optionally `stdin`, and extra environment variables.
fn run_example(name: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Outcome {
    let mut cmd = command(name);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, stdin.map(|s| s.as_bytes().to_vec()), RUN_LIMIT)
}

// ---------------------------------------------------------------------------
// Server helpers
// ---------------------------------------------------------------------------

/// A base URL where nothing listens.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/v1")
}

/// A streamed reply of `tokens`, in HTTP chunks of 64 bytes.
fn stream_of(tokens: &[&str]) -> Script {
    Script::sse(&sse_stream(tokens), Framing::ChunkedEvery(64))
}

/// Sends `body` (an unfinished stream) and then holds the connection open, silent.
fn sse_then_stall(body: &[u8]) -> Script {
    Script::sse(body, Framing::CloseDelimited).then(Step::Stall)
}

fn body_messages(req: &Request) -> Value {
    req.json()["messages"].clone()
}

fn data_event(value: Value) -> String {
    format!("data: {value}\n\n")
}

fn delta_event(index: u32, delta: Value, finish: Value) -> String {
    data_event(
        json!({"id": "c1", "object": "chat.completion.chunk", "model": MODEL,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}),
    )
}

// ---------------------------------------------------------------------------
// Streaming and non-streaming replies
// ---------------------------------------------------------------------------

#[test]
fn streamed_tokens_arrive_in_order_and_exact() {
    let tokens = [
        "Hel",
        "lo",
        ", ",
        "w\u{f6}rld",
        " ",
        "\u{1f600}",
        " \u{bf}qu\u{e9} tal?",
        " \u{65e5}\u{672c}\u{8a9e}",
        "\"quoted\" \\ back\nslash",
    ];
    let server = Server::always(Script::sse(&sse_stream(&tokens), Framing::ChunkedEvery(7)));
    let out = pass("test_basic", "stream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), tokens, "{}", out.show());

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert!(req
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
    assert_eq!(
        req.json(),
        json!({"messages": [{"role": "user", "content": "Say hello"}], "model": "test-model",
               "temperature": 1, "presence_penalty": 0, "top_p": 1, "frequency_penalty": 0,
               "allow_fallback": true, "stream": true})
    );
    assert_eq!(req.header("origin"), Some("https://chat.ylokh.xyz"));
    assert_eq!(req.header("authorization"), None);
}

#[test]
fn multibyte_utf8_split_across_http_chunks_is_delivered_whole() {
    let tokens = ["caf\u{e9}", "\u{1f600}", "\u{20ac}5", "\u{65e5}"];
    let body = sse_stream(&tokens);
    // Cut the body inside every multi-byte character: each HTTP chunk ends mid-character.
    let mut cuts = Vec::new();
    for ch in ["\u{e9}", "\u{1f600}", "\u{20ac}", "\u{65e5}"] {
        let at = body
            .windows(ch.len())
            .position(|w| w == ch.as_bytes())
            .expect("character in body");
        cuts.extend((1..ch.len()).map(|i| at + i));
    }
    let server = Server::always(Script::sse(&body, Framing::Chunked(cuts)));
    let out = pass("test_basic", "stream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), tokens, "{}", out.show());

    // And with 3-byte chunks, which split nearly everything.
    let server = Server::always(Script::sse(&body, Framing::ChunkedEvery(3)));
    let out = pass("test_basic", "stream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), tokens, "{}", out.show());
}

#[test]
fn tokens_with_nul_bytes_are_delivered_with_their_length() {
    let tokens = ["a\u{0}b", "\u{0}", "c\u{0}"];
    let server = Server::always(stream_of(&tokens));
    let out = pass("test_basic", "stream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), tokens, "{}", out.show());
}

#[test]
fn non_streaming_reply_comes_in_one_callback() {
    let text = "Hello there, \u{1f30d}! \"Quotes\" and\nnewlines.";
    let server = Server::always(Script::json(200, &completion_json(text)));
    let out = pass("test_basic", "nostream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), [text], "{}", out.show());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].json()["stream"], json!(false));

    // An empty answer means no callback at all.
    let server = Server::always(Script::json(200, &completion_json("")));
    let out = pass("test_basic", "nostream", &server.base_url(), &[]);
    assert!(out.strings("TOKENS").is_empty(), "{}", out.show());
}

#[test]
fn options_are_merged_into_the_request() {
    let server = Server::always(stream_of(&["ok"]));
    // A trailing slash on the base URL does not double the one before "chat/completions".
    pass(
        "test_basic",
        "stream",
        &format!("{}/", server.base_url()),
        &[r#"{"temperature":0.25,"max_tokens":7,"user":"c-test"}"#],
    );
    assert_eq!(server.requests()[0].path, "/v1/chat/completions");
    let body = server.requests()[0].json();
    assert_eq!(body["temperature"], json!(0.25));
    assert_eq!(body["max_tokens"], json!(7));
    assert_eq!(body["user"], json!("c-test"));
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["top_p"], json!(1));
}

#[test]
fn chat_text_returns_the_whole_answer_with_its_length() {
    let server = Server::always(stream_of(&["Hel", "lo\u{0}wor", "ld \u{e9}"]));
    let out = pass("test_basic", "chat_text", &server.base_url(), &[]);
    let text: String = serde_json::from_value(out.json("TEXT")).unwrap();
    assert_eq!(text, "Hello\u{0}world \u{e9}");
    // strlen stops at the NUL; the length does not.
    assert_eq!(out.line("STRLEN"), "5 LEN 14", "{}", out.show());
    // Two successful calls; the refused ones never reached the server.
    assert_eq!(server.requests().len(), 2);

    let server = Server::always(Script::json(200, &completion_json("All at once.")));
    let out = pass(
        "test_basic",
        "chat_text",
        &server.base_url(),
        &[r#"{"stream":false}"#],
    );
    let text: String = serde_json::from_value(out.json("TEXT")).unwrap();
    assert_eq!(text, "All at once.");
    assert!(server
        .requests()
        .iter()
        .all(|r| r.json()["stream"] == json!(false)));
}

// ---------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------

#[test]
fn http_error_status_carries_the_status_and_the_servers_message() {
    let message = "The model `gpt-9` does not exist";
    let server = Server::always(Script::json(
        404,
        &error_json(message, "invalid_request_error"),
    ));
    let out = pass(
        "test_basic",
        "http_error",
        &server.base_url(),
        &["404", message],
    );
    assert_eq!(out.line("RESULT"), "YLOKH_E_HTTP_STATUS 404");
    let error = out.error();
    assert!(error.contains("404") && error.contains(message), "{error}");
    assert_eq!(server.requests().len(), 1);

    // A NUL in the server's message cannot be shown by a C string: it is written as \0.
    let server = Server::always(Script::json(
        400,
        &error_json("bad\u{0}thing", "invalid_request_error"),
    ));
    pass(
        "test_basic",
        "http_error",
        &server.base_url(),
        &["400", "bad\\0thing"],
    );

    // A body that is not JSON: its start is the message.
    let server = Server::always(Script::response(
        502,
        &[("Content-Type", "text/html")],
        b"<html><body>Bad Gateway from the proxy</body></html>",
        Framing::ContentLength,
    ));
    pass(
        "test_basic",
        "http_error",
        &server.base_url(),
        &["502", "Bad Gateway from the proxy"],
    );
}

#[test]
fn error_inside_the_stream_is_an_api_error_after_the_tokens_before_it() {
    let mut body = role_event();
    body.push_str(&chunk_event("Partial"));
    body.push_str(&error_event("The server is overloaded"));
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(64)));
    let out = pass(
        "test_basic",
        "api_error",
        &server.base_url(),
        &["The server is overloaded"],
    );
    assert_eq!(out.strings("TOKENS"), ["Partial"]);
    assert!(
        out.line("RESULT").starts_with("YLOKH_E_API "),
        "{}",
        out.show()
    );

    // The `event: error` form.
    let mut body = role_event();
    body.push_str("event: error\ndata: {\"error\":{\"message\":\"quota exceeded\"}}\n\n");
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(64)));
    let out = pass(
        "test_basic",
        "api_error",
        &server.base_url(),
        &["quota exceeded"],
    );
    assert!(out.strings("TOKENS").is_empty());
}

#[test]
fn callback_returning_non_zero_aborts_at_once() {
    let mut body = role_event();
    for t in ["one", "two", "three", "four"] {
        body.push_str(&chunk_event(t));
    }
    // No end of stream: a client that did not stop would wait for its timeout.
    let server = Server::sequence(vec![
        sse_then_stall(body.as_bytes()),
        stream_of(&["second", " call"]),
    ]);
    let out = pass("test_basic", "abort_cb", &server.base_url(), &["2"]);
    assert_eq!(out.strings("TOKENS"), ["one", "two"]);
    assert!(out.line("RESULT").starts_with("YLOKH_E_ABORTED"));
    assert!(out.number("ELAPSED_MS") < 2000.0, "{}", out.show());
    assert_eq!(out.strings("TOKENS2"), ["second", " call"]);
    // The aborted call's connection was dropped, not reused for the second call.
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.connections(), 2);
    assert_eq!(server.requests()[1].connection, 1);
}

#[test]
fn bad_arguments_are_refused_before_the_network() {
    let server = Server::always(stream_of(&["never"]));
    pass("test_basic", "invalid_args", &server.base_url(), &[]);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(server.connections(), 0);
}

#[test]
fn silent_server_times_out() {
    let server = Server::always(Script::stall());
    let out = pass("test_basic", "timeout", &server.base_url(), &[]);
    assert!(out.line("RESULT").starts_with("YLOKH_E_TIMEOUT"));
}

#[test]
fn unreachable_server_is_a_connect_error() {
    let out = pass("test_basic", "connect", &closed_url(), &[]);
    assert_eq!(out.line("RESULT"), "YLOKH_E_CONNECT 0");
}

#[test]
fn deadline_bounds_the_whole_call_and_keeps_the_tokens_so_far() {
    let mut body = role_event();
    body.push_str(&chunk_event("so"));
    body.push_str(&chunk_event(" far"));
    let server = Server::always(sse_then_stall(body.as_bytes()));
    let out = pass(
        "test_basic",
        "expect",
        &server.base_url(),
        &["YLOKH_E_TIMEOUT", "timed out", "deadline=500"],
    );
    assert_eq!(out.strings("TOKENS"), ["so", " far"]);
    let took = out.number("ELAPSED_MS");
    assert!((400.0..3000.0).contains(&took), "{}", out.show());
}

#[test]
fn broken_replies_are_protocol_errors() {
    let cut_short = [role_event(), chunk_event("abc")].concat().into_bytes();
    let bad_json = [role_event(), "data: {not json}\n\n".to_owned()]
        .concat()
        .into_bytes();
    let too_long = sse_stream(&[&"x".repeat(3000)]);
    let mut bad_utf8 = role_event().into_bytes();
    bad_utf8.extend_from_slice(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\xff\"}}]}\n\n",
    );
    bad_utf8.extend_from_slice(finish_event("stop").as_bytes());
    bad_utf8.extend_from_slice(DONE.as_bytes());
    for (name, body, needle, setting) in [
        ("cut short", cut_short, "incomplete", ""),
        ("invalid JSON", bad_json, "invalid JSON", ""),
        (
            "line over the limit",
            too_long,
            "limit",
            "max_event_bytes=1024",
        ),
        ("invalid UTF-8", bad_utf8, "invalid JSON", ""),
    ] {
        let server = Server::always(Script::sse(&body, Framing::ChunkedEvery(64)));
        let mut args = vec!["YLOKH_E_PROTOCOL", needle];
        if !setting.is_empty() {
            args.push(setting);
        }
        let out = run_case("test_basic", "expect", &server.base_url(), &args);
        assert!(
            out.code() == Some(0),
            "{name}: expected YLOKH_E_PROTOCOL\n{}",
            out.show()
        );
    }
}

#[test]
fn retries_after_5xx_then_succeeds_or_reports_the_last_status() {
    let busy = || Script::json(503, &error_json("busy, try again", "server_error"));
    let server = Server::sequence(vec![busy(), busy(), stream_of(&["third", " time"])]);
    let out = pass(
        "test_basic",
        "expect",
        &server.base_url(),
        &["YLOKH_OK", "", "retries=2", "retry_delay=10"],
    );
    assert_eq!(out.strings("TOKENS"), ["third", " time"]);
    assert_eq!(server.requests().len(), 3);

    let server = Server::always(busy());
    let out = pass(
        "test_basic",
        "expect",
        &server.base_url(),
        &[
            "YLOKH_E_HTTP_STATUS",
            "busy, try again",
            "retries=1",
            "retry_delay=10",
        ],
    );
    assert_eq!(out.line("RESULT"), "YLOKH_E_HTTP_STATUS 503");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn chat_from_inside_a_callback_is_refused_and_the_outer_chat_goes_on() {
    let server = Server::always(stream_of(&["a", "b", "c"]));
    let out = pass("test_basic", "nested", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), ["a", "b", "c"]);
    assert_eq!(server.requests().len(), 1);
}

// ---------------------------------------------------------------------------
// Small functions
// ---------------------------------------------------------------------------

#[test]
fn free_functions_accept_null() {
    pass("test_basic", "free_null", &closed_url(), &[]);
}

#[test]
fn every_status_has_a_description() {
    let out = pass("test_basic", "status_str", &closed_url(), &[]);
    assert_eq!(out.lines("STATUS").len(), 12, "{}", out.show());
}

#[test]
fn version_matches_the_header_and_the_crate() {
    let out = pass("test_basic", "version", &closed_url(), &[]);
    assert_eq!(out.line("VERSION"), env!("CARGO_PKG_VERSION"));
    let number: u32 = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap())
        .fold(0, |n, p| n * 100 + p);
    assert_eq!(out.line("VERSION_NUMBER"), number.to_string());
    // And the library loaded is the one built for this test run.
    let loaded = std::fs::canonicalize(out.line("LIBRARY")).expect("loaded library");
    let built = std::fs::canonicalize(library_dir().join("libylokh.so")).expect("built library");
    assert_eq!(loaded, built, "{}", out.show());
}

#[test]
fn provider_facts() {
    pass("test_basic", "provider", &closed_url(), &[]);
}

#[test]
fn setters_refuse_bad_values_and_apply_good_ones() {
    let server = Server::sequence(vec![
        stream_of(&["first"]),
        Script::json(
            401,
            &error_json(
                "Incorrect API key provided: sk-test-secret-42",
                "invalid_request_error",
            ),
        ),
        stream_of(&["third"]),
    ]);
    let out = pass("test_basic", "setters", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), ["first"]);
    assert!(!out.stdout.contains("sk-test-secret-42"), "{}", out.show());

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let first = &reqs[0];
    assert_eq!(first.header("x-test-header"), Some("replaced"));
    assert_eq!(first.header("x-removed"), None);
    assert_eq!(first.header("origin"), None);
    assert_eq!(first.header("referer"), Some("https://chat.ylokh.xyz/"));
    assert_eq!(
        first.header("authorization"),
        Some("Bearer sk-test-secret-42")
    );
    assert!(first
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("libylokh/")));
    assert_eq!(reqs[2].header("authorization"), None);
}

// ---------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------

#[test]
fn conversation_sends_the_history_and_keeps_only_successful_replies() {
    let server = Server::sequence(vec![
        stream_of(&["Hello", "!"]),
        stream_of(&["Fine", "."]),
        Script::json(
            400,
            &error_json("Bad request: too long", "invalid_request_error"),
        ),
        stream_of(&["x", "y", "z"]),
    ]);
    let out = pass("test_basic", "conversation", &server.base_url(), &[]);
    assert_eq!(out.strings("TURN1"), ["Hello", "!"]);
    assert_eq!(out.strings("TURN2"), ["Fine", "."]);

    let system = json!({"role": "system", "content": "You are terse."});
    let user1 = json!({"role": "user", "content": "Hi \"there\"\n\u{e9}"});
    let reply1 = json!({"role": "assistant", "content": "Hello!"});
    let user2 = json!({"role": "user", "content": "And now?"});
    let reply2 = json!({"role": "assistant", "content": "Fine."});
    let user3 = json!({"role": "user", "content": "Fail, please."});

    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(body_messages(&reqs[0]), json!([system, user1]));
    assert_eq!(
        body_messages(&reqs[1]),
        json!([system, user1, reply1, user2])
    );
    let six = json!([system, user1, reply1, user2, reply2, user3]);
    assert_eq!(body_messages(&reqs[2]), six);
    // After the failure the same history is sent again: nothing was appended.
    assert_eq!(body_messages(&reqs[3]), six);
    assert!(reqs
        .iter()
        .all(|r| r.json()["model"] == json!("test-model")));
    // ... nor after the abort: to_json shows the six messages.
    assert_eq!(out.json("JSON"), six);
}

#[test]
fn conversation_keeps_tool_calls_and_sends_tool_results() {
    let tool_stream = [
        delta_event(
            0,
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                "id": "call_abc", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        delta_event(
            0,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            Value::Null,
        ),
        delta_event(
            0,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            Value::Null,
        ),
        delta_event(0, json!({}), json!("tool_calls")),
        DONE.to_owned(),
    ]
    .concat();
    let server = Server::sequence(vec![
        Script::sse(tool_stream.as_bytes(), Framing::ChunkedEvery(50)),
        stream_of(&["It is 21\u{b0}C in Paris."]),
    ]);
    let out = pass("test_events", "conversation_tools", &server.base_url(), &[]);

    let user = json!({"role": "user", "content": "What is the weather in Paris?"});
    let call = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc",
        "type": "function", "function": {"name": "get_weather",
        "arguments": "{\"city\":\"Paris\"}"}}]});
    let result = json!({"role": "tool", "tool_call_id": "call_abc", "content": "{\"temp\":21}"});
    let answer = json!({"role": "assistant", "content": "It is 21\u{b0}C in Paris."});
    assert_eq!(out.json("JSON"), json!([user, call, result, answer]));

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(body_messages(&reqs[1]), json!([user, call, result]));
    assert_eq!(
        reqs[0].json()["tools"][0]["function"]["name"],
        json!("get_weather")
    );
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

fn event_lines(out: &Outcome) -> Vec<Value> {
    out.lines("EVENT")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn events_report_reasoning_content_tool_calls_finish_and_usage() {
    let body = [
        delta_event(0, json!({"role": "assistant", "content": ""}), Value::Null),
        delta_event(
            0,
            json!({"reasoning_content": "Let me think."}),
            Value::Null,
        ),
        delta_event(0, json!({"reasoning": " Done."}), Value::Null),
        chunk_event("Hel"),
        chunk_event("lo \u{e9}"),
        delta_event(
            0,
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":"}}]}),
            Value::Null,
        ),
        delta_event(
            0,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"x\"}"}}]}),
            Value::Null,
        ),
        finish_event("tool_calls"),
        usage_event(12, 7),
        DONE.to_owned(),
    ]
    .concat();
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(40)));
    let out = pass("test_events", "events", &server.base_url(), &[]);
    // The usage object exactly as the server sent it.
    let usage = r#"{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}"#;
    assert_eq!(
        event_lines(&out),
        vec![
            json!({"kind": "reasoning", "choice": 0, "text": "Let me think."}),
            json!({"kind": "reasoning", "choice": 0, "text": " Done."}),
            json!({"kind": "content", "choice": 0, "text": "Hel"}),
            json!({"kind": "content", "choice": 0, "text": "lo \u{e9}"}),
            json!({"kind": "tool_call", "choice": 0, "text": "{\"q\":", "index": 0,
                   "id": "call_1", "name": "lookup"}),
            json!({"kind": "tool_call", "choice": 0, "text": "\"x\"}", "index": 0,
                   "id": null, "name": null}),
            json!({"kind": "finish", "choice": 0, "text": "tool_calls"}),
            json!({"kind": "usage", "choice": 0, "text": usage, "prompt": 12,
                   "completion": 7, "total": 19}),
        ],
        "{}",
        out.show()
    );
}

#[test]
fn events_of_a_non_streaming_reply() {
    let server = Server::always(Script::json(200, &completion_json("Just this.")));
    let out = pass(
        "test_events",
        "events",
        &server.base_url(),
        &[r#"{"stream":false}"#],
    );
    let events = event_lines(&out);
    assert_eq!(
        events[..2],
        [
            json!({"kind": "content", "choice": 0, "text": "Just this."}),
            json!({"kind": "finish", "choice": 0, "text": "stop"}),
        ],
        "{}",
        out.show()
    );
    assert_eq!(events.len(), 3, "{}", out.show());
    assert_eq!(events[2]["kind"], json!("usage"));
    assert_eq!(events[2]["prompt"], json!(9));
    assert_eq!(events[2]["total"], json!(11));
}

#[test]
fn event_callback_can_abort() {
    let server = Server::always(stream_of(&["a", "b", "c", "d"]));
    pass("test_events", "events_abort", &server.base_url(), &["2"]);
}

#[test]
fn with_both_callbacks_each_content_event_is_followed_by_its_token() {
    let body = [
        role_event(),
        chunk_event("One"),
        delta_event(0, json!({"reasoning_content": "hmm"}), Value::Null),
        // Two choices in one chunk: only choice 0 reaches on_token.
        data_event(json!({"choices": [
            {"index": 0, "delta": {"content": " two"}, "finish_reason": null},
            {"index": 1, "delta": {"content": "other"}, "finish_reason": null}]})),
        chunk_event(" three"),
        finish_event("stop"),
        DONE.to_owned(),
    ]
    .concat();
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(40)));
    let out = pass("test_events", "events_and_tokens", &server.base_url(), &[]);
    let tokens: Vec<String> = out
        .lines("TOKEN")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tokens, ["One", " two", " three"], "{}", out.show());
    let events = event_lines(&out);
    assert!(
        events.contains(&json!({"kind": "content", "choice": 1, "text": "other"})),
        "{}",
        out.show()
    );
}

// ---------------------------------------------------------------------------
// Threads and cancellation
// ---------------------------------------------------------------------------

#[test]
fn cancel_from_another_thread_while_the_server_is_silent() {
    let server = Server::always(Script::stall());
    let out = pass("test_threads", "cancel_stall", &server.base_url(), &[]);
    let took = out.number("CANCEL_MS");
    assert!(took < 1000.0, "cancel took {took} ms\n{}", out.show());
    assert!(
        server.wait_until(Duration::from_secs(5), |s| s.client_disconnects() >= 1),
        "the cancelled call did not close its connection"
    );
}

#[test]
fn cancel_in_the_middle_of_a_stream_keeps_the_tokens_delivered() {
    let mut body = role_event();
    body.push_str(&chunk_event("Once"));
    body.push_str(&chunk_event(" upon"));
    let server = Server::always(sse_then_stall(body.as_bytes()));
    let out = pass("test_threads", "cancel_midstream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), ["Once", " upon"]);
    assert!(out.number("CANCEL_MS") < 1000.0, "{}", out.show());
}

#[test]
fn cancel_before_the_call_stops_it_and_reset_rearms_the_token() {
    let server = Server::always(stream_of(&["after", " reset"]));
    let out = pass("test_threads", "cancel_before", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), ["after", " reset"]);
    assert!(out.number("ELAPSED_MS") < 1000.0, "{}", out.show());
    // The cancelled call sent nothing.
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn cancel_while_the_connection_is_being_made() {
    // A skipped check must not pass: failing to set up the hanging connect fails the test.
    let hole = blackhole().expect("could not make a TCP connect that hangs on loopback");
    // The client's timeout is 3 s: a cancel that waits for the connect takes that long.
    let out = run_case("test_threads", "cancel_stall", &hole.url, &["3000"]);
    assert!(
        out.code() == Some(0),
        "a call cancelled while connecting did not stop within 1 s (doc of ylokh_cancel: \
         every call given the token returns YLOKH_E_ABORTED within about 50 ms)\n{}",
        out.show()
    );
}

#[test]
fn triggered_token_stops_a_call_before_it_connects() {
    let out = run_case("test_threads", "cancel_before_offline", &closed_url(), &[]);
    assert!(
        out.code() == Some(0),
        "a call started with a triggered token did not return YLOKH_E_ABORTED (doc of \
         ylokh_cancel_trigger: calls started with it later stop at once)\n{}",
        out.show()
    );
}

#[test]
fn one_cancel_token_stops_calls_on_several_threads() {
    let server = Server::always(Script::stall());
    let out = pass("test_threads", "cancel_shared", &server.base_url(), &[]);
    assert_eq!(out.lines("CANCEL_MS").len(), 4);
}

#[test]
fn eight_threads_share_one_client() {
    let server = Server::echo();
    let out = pass("test_threads", "threads", &server.base_url(), &[]);
    assert_eq!(out.line("CHATS_OK"), "48", "{}", out.show());
    let reqs = server.requests();
    assert_eq!(
        reqs.len(),
        48,
        "the refused calls must not reach the server"
    );
    // Every prompt of every thread arrived exactly once.
    let mut prompts: Vec<String> = reqs
        .iter()
        .map(|r| {
            r.json()["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), 48);
}

// ---------------------------------------------------------------------------
// Static linking
// ---------------------------------------------------------------------------

#[test]
fn statically_linked_program_works() {
    let tokens = ["static", " \u{e9}", "\u{0}!"];
    let server = Server::always(stream_of(&tokens));
    let out = pass("test_basic_static", "stream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), tokens);
    let out = pass("test_basic_static", "version", &closed_url(), &[]);
    assert_eq!(out.line("VERSION"), env!("CARGO_PKG_VERSION"));
    // The library is inside the executable.
    assert!(
        out.line("LIBRARY").ends_with("/test_basic_static"),
        "{}",
        out.show()
    );
    pass("test_basic_static", "invalid_args", &closed_url(), &[]);
}

// ---------------------------------------------------------------------------
// The examples
// ---------------------------------------------------------------------------

#[test]
fn example_chat_streams_the_answer_and_escapes_the_prompt() {
    let tokens = ["Hello", ", ", "w\u{f6}rld", "!"];
    let server = Server::always(stream_of(&tokens));
    let prompt = "Quote \"this\", a back\\slash, a tab\t, a newline\n, a bell \u{7}, \
                  \u{1f}, DEL \u{7f}, caf\u{e9} \u{1f600} \u{65e5}\u{672c}";
    let url = server.base_url();
    let out = run_example(
        "chat",
        &[
            "--model",
            "my-model",
            "--system",
            "Be \"brief\".",
            "--max-tokens",
            "64",
            prompt,
        ],
        &[("YLOKH_BASE_URL", &url)],
        None,
    );
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert_eq!(out.stdout, "Hello, w\u{f6}rld!\n", "{}", out.show());
    assert!(
        out.stderr.contains("[waiting for the first token...]"),
        "{}",
        out.show()
    );

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "Be \"brief\"."},
               {"role": "user", "content": prompt}])
    );
    assert_eq!(body["model"], json!("my-model"));
    assert_eq!(body["max_tokens"], json!(64));
    assert_eq!(body["stream"], json!(true));
}

#[test]
fn example_chat_without_streaming_and_with_explicit_settings() {
    let server = Server::always(Script::json(200, &completion_json("One piece.")));
    let url = server.base_url();
    // No YLOKH_BASE_URL: --base-url is the only way to the test server.
    let out = run_example(
        "chat",
        &[
            "--no-stream",
            "--base-url",
            &url,
            "--api-key",
            "sk-example",
            "--",
            "-dash prompt",
        ],
        &[],
        None,
    );
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert_eq!(out.stdout, "One piece.\n");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    assert_eq!(body["stream"], json!(false));
    assert_eq!(body["model"], json!("gpt-3.5-turbo"));
    assert_eq!(body["messages"][0]["content"], json!("-dash prompt"));
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-example"));

    // YLOKH_API_KEY from the environment.
    let out = run_example(
        "chat",
        &["hi"],
        &[("YLOKH_BASE_URL", &url), ("YLOKH_API_KEY", "sk-env")],
        None,
    );
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert_eq!(
        server.requests()[1].header("authorization"),
        Some("Bearer sk-env")
    );
}

#[test]
fn example_chat_reports_a_failed_request() {
    let message = "The model `nope` does not exist";
    let server = Server::always(Script::json(
        404,
        &error_json(message, "invalid_request_error"),
    ));
    let url = server.base_url();
    let out = run_example(
        "chat",
        &["--model", "nope", "hi"],
        &[("YLOKH_BASE_URL", &url)],
        None,
    );
    assert_eq!(out.code(), Some(2), "{}", out.show());
    assert_eq!(out.stdout, "");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("chat: HTTP error status: ")
            && last.contains(message)
            && last.ends_with("(HTTP 404)"),
        "{}",
        out.show()
    );

    // Nothing listening.
    let url = closed_url();
    let out = run_example("chat", &["hi"], &[("YLOKH_BASE_URL", &url)], None);
    assert_eq!(out.code(), Some(2), "{}", out.show());
    assert!(
        out.stderr.contains("chat: could not connect: "),
        "{}",
        out.show()
    );
    assert!(!out.stderr.contains("(HTTP"), "{}", out.show());
}

#[test]
fn example_chat_usage_errors() {
    let server = Server::always(stream_of(&["never"]));
    let url = server.base_url();
    let env = [("YLOKH_BASE_URL", url.as_str())];
    for args in [
        &[][..],
        &["--max-tokens", "many", "hi"][..],
        &["--max-tokens", "0", "hi"][..],
        &["--bogus", "hi"][..],
        &["one", "two"][..],
        &["--model"][..],
        &["--base-url", "ftp://x", "hi"][..],
    ] {
        let out = run_example("chat", args, &env, None);
        assert_eq!(out.code(), Some(1), "{args:?}\n{}", out.show());
        assert!(out.stderr.contains("chat") || out.stderr.contains("usage"));
    }
    let out = run_example("chat", &["--base-url", "ftp://x", "hi"], &env, None);
    assert!(
        out.stderr.contains("bad --base-url") && out.stderr.contains("http:// or https://"),
        "{}",
        out.show()
    );
    assert!(server.requests().is_empty());
}

#[test]
fn example_multiturn_keeps_the_history() {
    let server = Server::echo();
    let url = server.base_url();
    let out = run_example(
        "multiturn",
        &["--system", "Be kind."],
        &[("YLOKH_BASE_URL", &url)],
        Some("Hello\n\nHow are \"you\"?\n"),
    );
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert!(
        out.stdout.contains("assistant> echo: Hello\n"),
        "{}",
        out.show()
    );
    assert!(
        out.stdout.contains("assistant> echo: How are \"you\"?\n"),
        "{}",
        out.show()
    );

    let system = json!({"role": "system", "content": "Be kind."});
    let user1 = json!({"role": "user", "content": "Hello"});
    let reply1 = json!({"role": "assistant", "content": "echo: Hello"});
    let user2 = json!({"role": "user", "content": "How are \"you\"?"});
    let reply2 = json!({"role": "assistant", "content": "echo: How are \"you\"?"});
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        body_messages(&reqs[1]),
        json!([system, user1, reply1, user2])
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    let history: Value = serde_json::from_str(last).expect("the last line is the JSON");
    assert_eq!(history, json!([system, user1, reply1, user2, reply2]));

    // Turns from argv.
    let server = Server::echo();
    let url = server.base_url();
    let out = run_example(
        "multiturn",
        &["first", "second"],
        &[("YLOKH_BASE_URL", &url)],
        None,
    );
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert!(out.stdout.contains("--- conversation (4 messages) ---"));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn example_multiturn_stops_on_a_failure() {
    let server = Server::sequence(vec![
        stream_of(&["ok"]),
        Script::json(
            400,
            &error_json("context too long", "invalid_request_error"),
        ),
    ]);
    let url = server.base_url();
    let out = run_example(
        "multiturn",
        &["one", "two", "three"],
        &[("YLOKH_BASE_URL", &url)],
        None,
    );
    assert_eq!(out.code(), Some(2), "{}", out.show());
    assert!(out.stderr.contains("context too long"), "{}", out.show());
    // The failed turn left the conversation as it was: user, reply, user.
    assert!(
        out.stdout.contains("--- conversation (3 messages) ---"),
        "{}",
        out.show()
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn example_cancel_stops_a_call_from_the_main_thread() {
    let server = Server::always(Script::stall());
    let url = server.base_url();
    let out = run_example("cancel", &["200", "hi"], &[("YLOKH_BASE_URL", &url)], None);
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert!(out.stdout.contains("status: aborted (2)"), "{}", out.show());
    assert!(out.stdout.contains("messages in the conversation: 1"));
    let took: f64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("cancel took effect after "))
        .and_then(|l| l.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cancel time\n{}", out.show()));
    assert!(took < 1000.0, "{}", out.show());

    let out = run_example("cancel", &["soon"], &[("YLOKH_BASE_URL", &url)], None);
    assert_eq!(out.code(), Some(1), "{}", out.show());
}

// ---------------------------------------------------------------------------
// Memory errors in the C-facing code (only where valgrind is installed)
// ---------------------------------------------------------------------------

/// valgrind with `options` after `-q --error-exitcode=99`, ready for the program and its
/// arguments. Not installed is a failure, not a skip: `make test` installs valgrind.
fn valgrind(options: &[&str]) -> Command {
    let installed = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        installed.is_ok(),
        "valgrind is not installed (apt-get install valgrind)"
    );
    let mut cmd = Command::new("valgrind");
    cmd.args(["-q", "--error-exitcode=99"])
        .args(options)
        .stdin(Stdio::null());
    clean_env(&mut cmd);
    cmd
}

#[test]
fn valgrind_finds_no_memory_errors() {
    let exe = program("test_basic");
    let server = Server::sequence(vec![
        stream_of(&["Hello", "!"]),
        stream_of(&["Fine", "."]),
        Script::json(400, &error_json("Bad request", "invalid_request_error")),
        stream_of(&["x", "y", "z"]),
    ]);
    for (case, url) in [
        ("conversation", server.base_url()),
        ("invalid_args", closed_url()),
    ] {
        let mut cmd = valgrind(&["--leak-check=no"]);
        cmd.arg(&exe).arg(case).arg(&url);
        let out = run_bounded(cmd, None, RUN_LIMIT);
        assert_eq!(out.code(), Some(0), "{}", out.show());
    }
}

/// What the soak server does for "scenario:K" (see tests/c/test_soak.c).
fn soak_server() -> Server {
    Server::start(|req| {
        let messages = req.json()["messages"].to_string();
        let scenario = messages
            .split("scenario:")
            .nth(1)
            .and_then(|rest| rest.chars().next())
            .and_then(|c| c.to_digit(10))
            .unwrap_or(0);
        match scenario {
            0 | 4 => stream_of(&["Hello,", " world", "!"]).with_keep_alive(true),
            1 => Script::json(500, &error_json("overloaded", "server_error")).with_keep_alive(true),
            2 => Script::sse(
                format!(
                    "{}{}",
                    chunk_event("partial"),
                    error_event("the model broke")
                )
                .as_bytes(),
                Framing::ChunkedEvery(64),
            ),
            3 => Script::stall(),
            _ => Script::json(200, &completion_json("Whole reply.")).with_keep_alive(true),
        }
    })
}

fn soak_calls() -> String {
    std::env::var("YLOKH_SOAK_CALLS").unwrap_or_else(|_| "1000".into())
}

#[test]
fn thousand_mixed_calls_under_valgrind_leak_nothing_and_misuse_nothing() {
    let exe = program("test_soak");
    let server = soak_server();
    let calls = soak_calls();
    let mut cmd = valgrind(&[
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
    ]);
    cmd.arg(&exe).args(["soak", &server.base_url(), &calls]);
    let out = run_bounded(cmd, None, Duration::from_secs(600));
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert!(
        out.stdout.contains(&format!("CALLS {calls}")),
        "{}",
        out.show()
    );
    assert!(!out.stderr.contains("definitely lost"), "{}", out.show());
}

#[test]
fn thousand_mixed_calls_under_address_and_undefined_sanitizers() {
    let exe = program("test_soak_sanitized");
    let server = soak_server();
    let calls = soak_calls();
    let mut cmd = Command::new(&exe);
    cmd.args(["soak", &server.base_url(), &calls])
        .stdin(Stdio::null());
    clean_env(&mut cmd);
    cmd.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:abort_on_error=0:exitcode=98",
    )
    .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    let out = run_bounded(cmd, None, Duration::from_secs(300));
    assert_eq!(out.code(), Some(0), "{}", out.show());
    assert!(
        out.stdout.contains(&format!("CALLS {calls}")),
        "{}",
        out.show()
    );
}

// ---------------------------------------------------------------------------
// Lifetimes C programmers get wrong (tests/c/test_hostile.c), plainly, under valgrind and
// under the sanitizers
// ---------------------------------------------------------------------------

/// Each case of test_hostile.c with the server it needs.
fn hostile_cases() -> Vec<(&'static str, Server)> {
    let busy = Script::response(
        503,
        &[("Content-Type", "application/json"), ("Retry-After", "1")],
        error_json("busy", "server_error").as_bytes(),
        Framing::ContentLength,
    );
    vec![
        (
            "free_cancel_while_waiting",
            Server::sequence(vec![busy, stream_of(&["ok"])]),
        ),
        ("trigger_then_free", Server::always(Script::stall())),
        (
            "cancel_in_callback",
            Server::always(Script::sse(
                &sse_stream(&["one", "two", "three"]),
                Framing::ContentLength,
            )),
        ),
        (
            "last_error_after_success",
            Server::always(stream_of(&["x"])),
        ),
    ]
}

/// Runs every case of test_hostile.c through `wrap` (a command for the program and its
/// arguments) and requires each to pass.
fn run_hostile_cases(exe: &Path, wrap: impl Fn(&Path, &[&str]) -> Command) {
    for (case, server) in hostile_cases() {
        let url = server.base_url();
        let cmd = wrap(exe, &[case, &url]);
        let out = run_bounded(cmd, None, RUN_LIMIT);
        assert!(
            out.code() == Some(0) && out.stdout.contains(&format!("PASS {case}")),
            "test_hostile {case} failed:\n{}",
            out.show()
        );
        if case == "trigger_then_free" {
            assert!(out.number("CANCEL_MS") < 1000.0, "{}", out.show());
        }
    }
}

#[test]
fn lifetimes_c_programmers_get_wrong_are_safe() {
    run_hostile_cases(&program("test_hostile"), |exe, args| {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdin(Stdio::null());
        clean_env(&mut cmd);
        cmd
    });
}

#[test]
fn lifetimes_c_programmers_get_wrong_under_valgrind() {
    run_hostile_cases(&program("test_hostile"), |exe, args| {
        let mut cmd = valgrind(&["--leak-check=full", "--errors-for-leak-kinds=definite"]);
        cmd.arg(exe).args(args);
        cmd
    });
}

#[test]
fn lifetimes_c_programmers_get_wrong_under_address_and_undefined_sanitizers() {
    run_hostile_cases(&program("test_hostile_sanitized"), |exe, args| {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdin(Stdio::null());
        clean_env(&mut cmd);
        cmd.env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=98",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
        cmd
    });
}

// ---------------------------------------------------------------------------
// The reference's examples (docs/examples/): they compile and do what they say
// ---------------------------------------------------------------------------

/// Runs `docs/examples/<name>.c` with the server's base URL as its argument.
fn run_doc_example(name: &str, server: &Server) -> Outcome {
    let mut cmd = command(&format!("doc_{name}"));
    cmd.arg(server.base_url());
    run_bounded(cmd, None, RUN_LIMIT)
}

#[test]
fn doc_example_client_sets_up_a_client_and_chats() {
    let server = Server::always(stream_of(&["Hel", "lo"]));
    let out = run_doc_example("client", &server);
    assert!(out.ok() && out.stdout == "Hello\n", "{}", out.show());
    assert_eq!(
        server.requests()[0].header("x-request-source"),
        Some("docs-example")
    );
}

#[test]
fn doc_example_chat_streams_then_gets_the_whole_text() {
    let server = Server::always(stream_of(&["Hel", "lo"]));
    let out = run_doc_example("chat", &server);
    assert!(out.ok(), "{}", out.show());
    assert_eq!(
        out.stdout,
        "Hello\n(2 tokens)\nwhole: Hello\n",
        "{}",
        out.show()
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn doc_example_conversation_appends_the_reply() {
    let server = Server::always(stream_of(&["Hel", "lo"]));
    let out = run_doc_example("conversation", &server);
    assert!(out.ok(), "{}", out.show());
    let json = out
        .stdout
        .strip_prefix("Hello\n3 messages: ")
        .unwrap_or_else(|| panic!("{}", out.show()));
    assert_eq!(
        serde_json::from_str::<Value>(json).unwrap(),
        json!([
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Say hello"},
            {"role": "assistant", "content": "Hello"}
        ])
    );
}

#[test]
fn doc_example_cancel_stops_a_silent_server() {
    let server = Server::always(Script::stall());
    let out = run_doc_example("cancel", &server);
    assert!(out.ok() && out.stdout == "\naborted\n", "{}", out.show());
    assert!(out.elapsed < Duration::from_secs(10), "{}", out.show());
}

#[test]
fn doc_example_memory_hands_out_and_frees_a_string() {
    let out = run_bounded(command("doc_memory"), None, RUN_LIMIT);
    assert!(out.ok(), "{}", out.show());
    let (len, json) = out
        .stdout
        .trim_end()
        .split_once(" bytes: ")
        .unwrap_or_else(|| panic!("{}", out.show()));
    assert_eq!(len.parse::<usize>().unwrap(), json.len());
    assert_eq!(
        serde_json::from_str::<Value>(json).unwrap(),
        json!([{"role": "user", "content": "Hi"}])
    );
}

#[test]
fn doc_example_errors_reports_the_http_status_and_message() {
    let server = Server::always(Script::json(
        404,
        &error_json(
            "The model `no-such-model` does not exist",
            "invalid_request_error",
        ),
    ));
    let out = run_doc_example("errors", &server);
    assert!(out.ok(), "{}", out.show());
    assert!(
        out.stdout.starts_with("HTTP 404: ") && out.stdout.contains("does not exist"),
        "{}",
        out.show()
    );
}

// ---------------------------------------------------------------------------
// Extensible structs
// ---------------------------------------------------------------------------

#[test]
fn request_struct_size_is_checked_and_a_newer_larger_request_is_accepted() {
    let server = Server::always(stream_of(&["Hel", "lo"]));
    let out = pass("test_basic", "request_size", &server.base_url(), &[]);
    assert_eq!(out.line("TOKENS"), r#"["Hel","lo"]"#);
    // Two calls reached the server: the larger request and the event call; the refused
    // ones sent nothing.
    assert_eq!(server.requests().len(), 2);
    let events = out.line("EVENTS");
    assert!(!events.starts_with("0 "), "{}", out.show());
}
