//! The Windows build, tested under Wine: `make windows` cross-builds `ylokh.dll` with
//! MinGW-w64 into a package folder (DLL, import library, `.def`, headers); the C test
//! programs and examples are compiled for Windows against that package and run with Debian's
//! `wine64` against the scripted loopback server of `tests/common/` (Wine's sockets are the
//! host's, so 127.0.0.1 is the same on both sides).
//!
//! Covered: streaming (exact tokens, UTF-8 split across HTTP chunks), an HTTP error with the
//! server's message, cancellation from another thread (while the server is silent and
//! mid-stream), 8 threads on one client, the three examples, the DLL actually loaded, and an
//! import library made from the `.def` (the route MSVC users take with `lib /def`).
//!
//! The package is built once per run with `make windows` in this profile, into
//! `target/<profile>/windows/` (a target directory of its own cannot deadlock on the build
//! lock of the cargo running this test). Wine gets a prefix of its own there too.
//!
//! Needs `rustup target add x86_64-pc-windows-gnu`, Debian's `gcc-mingw-w64-x86-64-posix`
//! and `wine64` (scripts/install-deps.sh installs them). A missing tool fails the test, with
//! what to install.

mod common;

use common::process::{manifest_dir, profile_dir, run_bounded, Outcome, SCRUBBED_ENV};
use common::*;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
const MINGW_DLLTOOL: &str = "x86_64-w64-mingw32-dlltool";
const CFLAGS: &[&str] = &[
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-O1",
];

/// Bound on `make windows` (a cross build of the library and its dependencies).
const BUILD_LIMIT: Duration = Duration::from_secs(1200);
/// Bound on a MinGW compile, and on making the Wine prefix the first time.
const TOOL_LIMIT: Duration = Duration::from_secs(300);
/// A Windows program that runs longer than this is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Make's and cargo's jobserver settings of an outer `make test`: the nested make and cargo
/// must not try to use the outer one's file descriptors.
const JOBSERVER_ENV: &[&str] = &["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CARGO_MAKEFLAGS"];

fn work_dir() -> PathBuf {
    profile_dir().join("windows")
}

/// Where a tool is, or a failure that says which package provides it.
fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is missing: apt-get install {package} (scripts/install-deps.sh does it)")
    })
}

/// Debian's 64-bit Wine loader (package wine64); `wine` (package wine) is a script that
/// picks it.
fn wine() -> PathBuf {
    let direct = PathBuf::from("/usr/lib/wine/wine64");
    if direct.is_file() {
        return direct;
    }
    tool("wine64", "wine64")
}

// ---------------------------------------------------------------------------
// The package, and the programs built against it
// ---------------------------------------------------------------------------

/// `make windows` in this run's profile; returns the package folder.
fn package() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        tool(MINGW_GCC, "gcc-mingw-w64-x86-64-posix");
        let profile = match profile_dir().file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(other) => other.to_owned(),
            None => panic!("no profile directory"),
        };
        let dist = work_dir().join("package");
        let mut cmd = Command::new("make");
        cmd.current_dir(manifest_dir())
            .arg("--no-print-directory")
            .arg("windows")
            .arg(format!("WINDOWS_PROFILE={profile}"))
            .arg(format!(
                "WINDOWS_TARGET_DIR={}",
                work_dir().join("cargo-target").display()
            ))
            .arg(format!("WINDOWS_DIST={}", dist.display()));
        if let Ok(cargo) = std::env::var("CARGO") {
            cmd.arg(format!("CARGO={cargo}"));
        }
        for var in JOBSERVER_ENV {
            cmd.env_remove(var);
        }
        let out = run_bounded(cmd, None, BUILD_LIMIT);
        assert!(
            out.ok(),
            "make windows failed (is the Rust target installed? rustup target add \
             x86_64-pc-windows-gnu):\n{}",
            out.show()
        );
        dist
    })
}

/// The folder the Windows programs run from: the DLL beside them, as Windows finds it.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = work_dir().join("bin");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        fs::copy(package().join("bin/ylokh.dll"), dir.join("ylokh.dll")).expect("copy ylokh.dll");
        // Test-only: Wine 8.0 lacks ProcessPrng (see tests/windows/processprng_shim.c).
        let mut cmd = Command::new(tool(MINGW_GCC, "gcc-mingw-w64-x86-64-posix"));
        cmd.args(CFLAGS)
            .arg("-shared")
            .arg(manifest_dir().join("tests/windows/processprng_shim.c"))
            .arg("-o")
            .arg(dir.join("bcryptprimitives.dll"))
            .arg("-lbcrypt");
        let out = run_bounded(cmd, None, TOOL_LIMIT);
        assert!(
            out.ok(),
            "building the ProcessPrng shim failed:\n{}",
            out.show()
        );
        dir
    })
}

/// How a program is linked to the DLL.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Import {
    /// `-lylokh`: the package's `libylokh.dll.a`, as a MinGW user links.
    Library,
    /// An import library made from the package's `ylokh.def` with dlltool, as MSVC users
    /// make one with `lib /def`.
    FromDef,
}

/// Compiles a C program for Windows once per run and returns the `.exe`.
fn program(name: &str, import: Import) -> PathBuf {
    type Built = HashMap<(String, Import), Result<PathBuf, String>>;
    static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
    let source = match name {
        "test_basic" | "test_events" | "test_threads" => format!("tests/c/{name}.c"),
        "chat" | "multiturn" | "cancel" => format!("examples-c/{name}.c"),
        _ => panic!("unknown C program {name}"),
    };
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let result = built
        .entry((name.to_owned(), import))
        .or_insert_with(|| compile(name, &source, import))
        .clone();
    drop(built);
    result.unwrap_or_else(|e| panic!("{e}"))
}

fn compile(name: &str, source: &str, import: Import) -> Result<PathBuf, String> {
    let dist = package();
    let exe = bin_dir().join(match import {
        Import::Library => format!("{name}.exe"),
        Import::FromDef => format!("{name}_def.exe"),
    });
    let mut cmd = Command::new(tool(MINGW_GCC, "gcc-mingw-w64-x86-64-posix"));
    cmd.args(CFLAGS)
        .arg(format!("-I{}", dist.join("include").display()))
        .arg(manifest_dir().join(source))
        .arg("-o")
        .arg(&exe);
    match import {
        Import::Library => {
            cmd.arg(format!("-L{}", dist.join("lib").display()))
                .arg("-lylokh");
        }
        Import::FromDef => {
            let lib = work_dir().join("libylokh_from_def.a");
            let mut dlltool = Command::new(tool(MINGW_DLLTOOL, "binutils-mingw-w64-x86-64"));
            dlltool
                .arg("--input-def")
                .arg(dist.join("lib/ylokh.def"))
                .arg("--dllname")
                .arg("ylokh.dll")
                .arg("--output-lib")
                .arg(&lib);
            let out = run_bounded(dlltool, None, TOOL_LIMIT);
            if !out.ok() {
                return Err(format!("dlltool failed:\n{}", out.show()));
            }
            cmd.arg(&lib);
        }
    }
    let out = run_bounded(cmd, None, TOOL_LIMIT);
    if out.ok() {
        Ok(exe)
    } else {
        Err(format!(
            "compiling {source} for Windows failed:\n{}",
            out.show()
        ))
    }
}

// ---------------------------------------------------------------------------
// Running them under Wine
// ---------------------------------------------------------------------------

/// Wine's environment: a prefix of this run's own, no GUI, no Mono/Gecko installers.
fn wine_env(cmd: &mut Command) {
    cmd.env("WINEPREFIX", work_dir().join("wineprefix"))
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env("WINELOADER", wine())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
}

/// Makes the Wine prefix once (about 15 s the first time), before programs run in parallel.
fn wine_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let mut cmd = Command::new(wine());
        cmd.arg("wineboot").arg("--init");
        wine_env(&mut cmd);
        let out = run_with_files(cmd, None, TOOL_LIMIT);
        assert!(out.ok(), "wineboot failed:\n{}", out.show());
    });
}

/// Runs `cmd` with stdout and stderr sent to files rather than pipes: the wineserver that
/// Wine starts in the background inherits the program's descriptors and outlives it, so
/// reading pipes to their end would wait for it. Kills the program after `limit`.
fn run_with_files(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Outcome {
    static NEXT: Mutex<u64> = Mutex::new(0);
    let n = {
        let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    };
    let logs = work_dir().join("logs");
    fs::create_dir_all(&logs).expect("logs directory");
    let base = logs.join(format!("{}-{n}", std::process::id()));
    let (out_path, err_path, in_path) = (
        base.with_extension("out"),
        base.with_extension("err"),
        base.with_extension("in"),
    );
    let what = format!("{cmd:?}");
    cmd.stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"));
    match stdin {
        Some(text) => {
            fs::write(&in_path, text).expect("stdin file");
            cmd.stdin(File::open(&in_path).expect("stdin file"));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {limit:?}: killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                read_text(&out_path),
                read_text(&err_path)
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    let outcome = Outcome {
        status,
        stdout: read_text(&out_path),
        stderr: read_text(&err_path),
        elapsed: started.elapsed(),
        what,
    };
    for path in [out_path, err_path, in_path] {
        let _ = fs::remove_file(path);
    }
    outcome
}

/// A file's text, with Windows' CRLF line ends (the C runtime's text mode) made LF.
fn read_text(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).replace("\r\n", "\n")
}

/// Runs a Windows program under Wine from the folder holding it and the DLL.
fn run_exe(exe: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Outcome {
    wine_ready();
    let mut cmd = Command::new(wine());
    cmd.arg(exe).args(args).current_dir(bin_dir());
    wine_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_files(cmd, stdin, RUN_LIMIT)
}

/// Runs `case` of a C test program against `url` and requires it to pass.
fn pass(prog: &str, case: &str, url: &str, args: &[&str]) -> Outcome {
    pass_with(prog, Import::Library, case, url, args)
}

fn pass_with(prog: &str, import: Import, case: &str, url: &str, args: &[&str]) -> Outcome {
    let mut all = vec![case, url];
    all.extend_from_slice(args);
    let out = run_exe(&program(prog, import), &all, &[], None);
    assert!(
        out.code() == Some(0) && out.stdout.contains(&format!("PASS {case}")),
        "Windows C case {prog} {case} failed under Wine:\n{}",
        out.show()
    );
    out
}

// ---------------------------------------------------------------------------
// The package
// ---------------------------------------------------------------------------

/// Every `ylokh_*` name the header declares as a function (a name followed by `(`).
fn header_functions() -> BTreeSet<String> {
    let header = fs::read_to_string(manifest_dir().join("include/ylokh.h")).expect("ylokh.h");
    let mut names = BTreeSet::new();
    let mut rest = header.as_str();
    while let Some(at) = rest.find("ylokh_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_ident && tail[end..].starts_with('(') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn package_has_the_dll_import_libraries_def_and_headers() {
    let dist = package();
    for file in [
        "bin/ylokh.dll",
        "lib/libylokh.dll.a",
        "lib/ylokh.def",
        "include/ylokh.h",
        "include/ylokh.hpp",
    ] {
        assert!(
            dist.join(file).is_file(),
            "{file} missing from {}",
            dist.display()
        );
    }
    // The repository's license and notice files travel with the package.
    for entry in fs::read_dir(manifest_dir()).expect("repository") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("LICENSE")
            || name.starts_with("NOTICE")
            || name.starts_with("THIRD-PARTY")
        {
            assert!(
                dist.join(&name).is_file(),
                "{name} missing from the package"
            );
        }
    }
    assert_eq!(
        fs::read(dist.join("include/ylokh.h")).unwrap(),
        fs::read(manifest_dir().join("include/ylokh.h")).unwrap()
    );

    let def = fs::read_to_string(dist.join("lib/ylokh.def")).expect("ylokh.def");
    let mut lines = def.lines();
    assert_eq!(lines.next(), Some("LIBRARY ylokh.dll"), "{def}");
    assert_eq!(lines.next(), Some("EXPORTS"), "{def}");
    let exported: BTreeSet<String> = lines.map(|l| l.trim().to_owned()).collect();
    let stray: Vec<&String> = exported
        .iter()
        .filter(|n| !n.starts_with("ylokh_"))
        .collect();
    assert!(
        stray.is_empty(),
        "the DLL exports more than ylokh_*: {stray:?}"
    );
    let missing: Vec<String> = header_functions().difference(&exported).cloned().collect();
    assert!(
        missing.is_empty(),
        "declared in ylokh.h, not exported by ylokh.dll: {missing:?}"
    );
}

#[test]
fn program_loads_the_packaged_dll() {
    let out = pass("test_basic", "version", "http://127.0.0.1:9/v1", &[]);
    assert_eq!(out.line("VERSION"), env!("CARGO_PKG_VERSION"));
    let loaded = out.line("LIBRARY").to_ascii_lowercase();
    assert!(loaded.ends_with("\\ylokh.dll"), "{}", out.show());
}

#[test]
fn import_library_made_from_the_def_file_links_and_runs() {
    let server = Server::always(Script::sse(
        &sse_stream(&["via", " .def"]),
        Framing::ChunkedEvery(16),
    ));
    let out = pass_with(
        "test_basic",
        Import::FromDef,
        "stream",
        &server.base_url(),
        &[],
    );
    assert_eq!(out.strings("TOKENS"), ["via", " .def"]);
}

// ---------------------------------------------------------------------------
// The library under Wine
// ---------------------------------------------------------------------------

#[test]
fn streamed_tokens_arrive_exact() {
    let tokens = [
        "Hel",
        "lo",
        ", w\u{f6}rld",
        " \u{1f600}",
        " \u{65e5}\u{672c}\u{8a9e}",
        "\"quoted\" \\ back\nslash",
    ];
    // 7-byte chunks split the multi-byte characters.
    let server = Server::always(Script::sse(&sse_stream(&tokens), Framing::ChunkedEvery(7)));
    let out = pass("test_basic", "stream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), tokens, "{}", out.show());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(
        reqs[0].json()["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );

    let server = Server::always(Script::json(200, &completion_json("All at once.")));
    let out = pass("test_basic", "nostream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), ["All at once."]);
}

#[test]
fn http_error_carries_the_status_and_the_servers_message() {
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
    assert!(out.error().contains(message), "{}", out.show());
}

#[test]
fn cancel_from_another_thread_while_the_server_is_silent_and_mid_stream() {
    let server = Server::always(Script::stall());
    let out = pass("test_threads", "cancel_stall", &server.base_url(), &[]);
    let took = out.number("CANCEL_MS");
    assert!(took < 1000.0, "cancel took {took} ms\n{}", out.show());
    eprintln!("Wine: cancel of a silent call took {took:.1} ms");

    let mut body = role_event();
    for t in ["one", "two", "three"] {
        body.push_str(&chunk_event(t));
    }
    let server =
        Server::always(Script::sse(body.as_bytes(), Framing::CloseDelimited).then(Step::Stall));
    let out = pass("test_threads", "cancel_midstream", &server.base_url(), &[]);
    assert_eq!(out.strings("TOKENS"), ["one", "two", "three"]);
    let took = out.number("CANCEL_MS");
    assert!(took < 1000.0, "cancel took {took} ms\n{}", out.show());
    eprintln!("Wine: cancel mid-stream took {took:.1} ms");

    // One token stops the calls of four threads.
    let server = Server::always(Script::stall());
    pass("test_threads", "cancel_shared", &server.base_url(), &[]);
}

#[test]
fn eight_threads_share_one_client() {
    let server = Server::echo();
    let out = pass("test_threads", "threads", &server.base_url(), &[]);
    assert_eq!(out.line("CHATS_OK"), "48", "{}", out.show());
    assert_eq!(server.requests().len(), 48);
}

#[test]
fn events_report_content_tool_calls_finish_and_usage() {
    let tool_call = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
        "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        "finish_reason": null}]});
    let body = [
        role_event(),
        chunk_event("Hi \u{e9}"),
        format!("data: {tool_call}\n\n"),
        finish_event("tool_calls"),
        usage_event(3, 1),
        DONE.to_owned(),
    ]
    .concat();
    let server = Server::always(Script::sse(body.as_bytes(), Framing::ChunkedEvery(32)));
    let out = pass("test_events", "events", &server.base_url(), &[]);
    let events: Vec<serde_json::Value> = out
        .lines("EVENT")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let usage = r#"{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}"#;
    assert_eq!(
        events,
        vec![
            json!({"kind": "content", "choice": 0, "text": "Hi \u{e9}"}),
            json!({"kind": "tool_call", "choice": 0, "text": "{}", "index": 0,
                   "id": "call_1", "name": "lookup"}),
            json!({"kind": "finish", "choice": 0, "text": "tool_calls"}),
            json!({"kind": "usage", "choice": 0, "text": usage, "prompt": 3,
                   "completion": 1, "total": 4}),
        ],
        "{}",
        out.show()
    );
}

// ---------------------------------------------------------------------------
// The examples
// ---------------------------------------------------------------------------

fn stream_of(tokens: &[&str]) -> Script {
    Script::sse(&sse_stream(tokens), Framing::ChunkedEvery(64))
}

#[test]
fn example_chat_streams_the_answer() {
    let server = Server::always(stream_of(&["The", " primary", " colors"]));
    let url = server.base_url();
    let out = run_exe(
        &program("chat", Import::Library),
        &["--max-tokens", "8", "The three primary colors are"],
        &[("YLOKH_BASE_URL", &url)],
        None,
    );
    assert!(out.ok(), "{}", out.show());
    assert_eq!(out.stdout, "The primary colors\n", "{}", out.show());
    assert_eq!(server.requests()[0].json()["max_tokens"], json!(8));

    let server = Server::always(Script::json(401, &error_json("bad key", "auth")));
    let url = server.base_url();
    let out = run_exe(
        &program("chat", Import::Library),
        &["hi"],
        &[("YLOKH_BASE_URL", &url)],
        None,
    );
    assert_eq!(out.code(), Some(2), "{}", out.show());
    assert!(out.stderr.contains("bad key"), "{}", out.show());
}

#[test]
fn example_multiturn_keeps_the_history() {
    let server = Server::echo();
    let url = server.base_url();
    let out = run_exe(
        &program("multiturn", Import::Library),
        &[],
        &[("YLOKH_BASE_URL", &url)],
        Some("Hello\nHow are you?\n"),
    );
    assert!(out.ok(), "{}", out.show());
    assert!(out.stdout.contains("echo: Hello"), "{}", out.show());
    assert!(out.stdout.contains("echo: How are you?"), "{}", out.show());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].json()["messages"],
        json!([
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "echo: Hello"},
            {"role": "user", "content": "How are you?"}
        ])
    );
}

#[test]
fn example_cancel_stops_a_call_from_the_main_thread() {
    let body = format!("{}{}", role_event(), chunk_event("Once upon"));
    let server =
        Server::always(Script::sse(body.as_bytes(), Framing::CloseDelimited).then(Step::Stall));
    let url = server.base_url();
    let out = run_exe(
        &program("cancel", Import::Library),
        &["500", "hi"],
        &[("YLOKH_BASE_URL", &url)],
        None,
    );
    assert!(out.ok(), "{}", out.show());
    assert!(out.stdout.contains("Once upon"), "{}", out.show());
    assert!(out.stdout.contains("status: aborted (2)"), "{}", out.show());
    assert!(
        out.stdout.contains("messages in the conversation: 1"),
        "{}",
        out.show()
    );
}
