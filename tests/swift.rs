//! The Swift package (`swift/`), built and tested with Swift 6 in a Debian trixie root
//! (`scripts/swift-root.sh`: Debian 12 has no Swift; trixie's `swiftlang` needs trixie's
//! glibc). `swift test` runs `swift/Tests/YlokhTests` (Swift Testing) in Swift 6 language
//! mode (strict concurrency) with warnings as errors, against the library installed with
//! `make install` and found through pkg-config, as a Swift user would.
//!
//! The Swift tests talk to the scripted loopback servers of `tests/common/`, started here, one
//! per behaviour, their URLs passed in `YLOKH_SWIFT_TEST_*` variables (the root shares the
//! host's network, so 127.0.0.1 is the same inside). After the run this side checks what
//! the servers received.
//!
//! Needs root (debootstrap, chroot, mount namespaces) and Debian's `debootstrap`; the root is
//! made once (about 2.5 minutes, 2.6 GB) and cached in
//! `${YLOKH_CACHE:-$HOME/.cache/libylokh}/swift-root`. scripts/install-deps.sh prepares it.

mod common;

use common::process::{manifest_dir, profile_dir, run_bounded, Outcome, SCRUBBED_ENV};
use common::*;
use serde_json::json;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Bound on `make install` (a build of the library).
const INSTALL_LIMIT: Duration = Duration::from_secs(1200);
/// Bound on making the root when it is not cached yet, building the package and running
/// its tests.
const SWIFT_LIMIT: Duration = Duration::from_secs(1800);

/// Make's and cargo's jobserver settings of an outer `make test`.
const JOBSERVER_ENV: &[&str] = &["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CARGO_MAKEFLAGS"];

/// The Swift tests, each of which must be reported as passed.
const SWIFT_TESTS: &[&str] = &[
    "tokensArriveInOrderAndExact()",
    "wholeReplyAsOneString()",
    "httpErrorIsThrownAsYlokhError()",
    "unreachableServerIsAConnectError()",
    "breakingOutOfTheLoopStopsTheRequest()",
    "cancellingTheTaskStopsTheRequest()",
    "conversationKeepsTheHistory()",
    "versionOfTheLoadedLibrary()",
    "eventsArriveInOrderWithTheWholeMessage()",
    "eventsThrowTheHTTPErrorAsYlokhError()",
    "breakingOutOfTheEventsClosesTheStream()",
    "cancellingTheTaskStopsTheEvents()",
];

fn work_dir() -> PathBuf {
    profile_dir().join("swift")
}

/// `make install` into `target/<profile>/swift/prefix`, sharing the build directory of
/// tests/ecosystem.rs (`target/<profile>/ecosystem/cargo-target`), so the library is built
/// once per run.
fn install() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(make_install)
}

fn make_install() -> PathBuf {
    let prefix = work_dir().join("prefix");
    let profile = match profile_dir().file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("no profile directory"),
    };
    let mut cmd = Command::new("make");
    cmd.current_dir(manifest_dir())
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("INSTALL_PROFILE={profile}"))
        .arg(format!(
            "INSTALL_TARGET_DIR={}",
            profile_dir().join("ecosystem/cargo-target").display()
        ));
    if let Ok(cargo) = std::env::var("CARGO") {
        cmd.arg(format!("CARGO={cargo}"));
    }
    for var in JOBSERVER_ENV {
        cmd.env_remove(var);
    }
    let out = run_bounded(cmd, None, INSTALL_LIMIT);
    assert!(out.ok(), "make install failed:\n{}", out.show());
    prefix
}

/// A base URL where nothing listens.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/v1")
}

/// Three tokens, then silence on an open connection.
fn three_then_stall() -> Script {
    let mut body = role_event();
    for t in ["one", "two", "three"] {
        body.push_str(&chunk_event(t));
    }
    Script::sse(body.as_bytes(), Framing::CloseDelimited).then(Step::Stall)
}

/// A server that sends three tokens and then nothing, and a probe server that answers
/// "disconnected" once the first has seen its client hang up (waiting up to 2 s for it),
/// "still connected" otherwise: the Swift side asks the probe right after it stopped a
/// stream, while its own process (and so the connection) is still alive.
fn stall_and_probe() -> (Arc<Server>, Server) {
    let stall = Arc::new(Server::always(three_then_stall()));
    let watched = Arc::clone(&stall);
    let probe = Server::start(move |_| {
        let gone = watched.wait_until(Duration::from_secs(2), |s| s.client_disconnects() >= 1);
        let answer = if gone {
            "disconnected"
        } else {
            "still connected"
        };
        Script::sse(&sse_stream(&[answer]), Framing::ContentLength)
    });
    (stall, probe)
}

/// `args` run inside the Swift root (in the repository's directory), with `env` set there.
fn in_swift_root(args: &[&str], env: &[(String, String)]) -> Outcome {
    // Not root: chroot and mount namespaces are out of reach, so the test cannot run.
    assert!(
        is_root(),
        "the Swift tests need root (debootstrap, chroot): run make test as root"
    );
    let mut cmd = Command::new(manifest_dir().join("scripts/swift-root.sh"));
    cmd.current_dir(manifest_dir())
        .arg("run")
        .arg("env")
        .args(env.iter().map(|(k, v)| format!("{k}={v}")))
        .args(args)
        // The build tree may live outside the checkout (CARGO_TARGET_DIR).
        .env("YLOKH_SWIFT_BINDS", profile_dir())
        .env_remove("LD_LIBRARY_PATH");
    for var in SCRUBBED_ENV.iter().chain(JOBSERVER_ENV) {
        cmd.env_remove(var);
    }
    run_bounded(cmd, None, SWIFT_LIMIT)
}

/// PKG_CONFIG_PATH for the installed library, as a Swift user sets it.
fn pkg_config_env() -> (String, String) {
    (
        "PKG_CONFIG_PATH".to_owned(),
        install().join("lib/pkgconfig").display().to_string(),
    )
}

fn swift_test(servers: &[(&str, String)]) -> Outcome {
    let lib = install().join("lib").display().to_string();
    let mut env = vec![pkg_config_env(), ("LD_LIBRARY_PATH".to_owned(), lib)];
    for (name, url) in servers {
        env.push((format!("YLOKH_SWIFT_TEST_{name}"), url.clone()));
    }
    let scratch = work_dir().join("build").display().to_string();
    in_swift_root(
        &[
            "swift",
            "test",
            "--package-path",
            "swift",
            "--scratch-path",
            &scratch,
            // Swift 6 language mode (the package's tools version) and no warning at all.
            "-Xswiftc",
            "-warnings-as-errors",
        ],
        &env,
    )
}

/// Whether this process runs as root (the uid from /proc, without unsafe code).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn swift_package_builds_in_swift_6_mode_and_passes_its_tests() {
    let tokens = [
        "Hel",
        "lo",
        ", w\u{f6}rld",
        " \u{1f600}",
        " \u{65e5}\u{672c}\u{8a9e}",
    ];
    // 5-byte chunks split the multi-byte characters.
    let stream = Server::always(Script::sse(&sse_stream(&tokens), Framing::ChunkedEvery(5)));
    let error = Server::always(Script::json(
        404,
        &error_json("The model `gpt-9` does not exist", "invalid_request_error"),
    ));
    let (stall, probe) = stall_and_probe();
    let (stall_task, probe_task) = stall_and_probe();
    let echo = Server::echo();
    // The pull API's servers (swift/Tests/YlokhTests/EventsTests.swift).
    let events = Server::always(Script::sse(&sse_stream(&tokens), Framing::ChunkedEvery(5)));
    let events_error = Server::always(Script::json(404, &error_json("no such model", "x")));
    let events_stall = Server::always(three_then_stall());

    let out = swift_test(&[
        ("EVENTS", events.base_url()),
        ("EVENTS_ERROR", events_error.base_url()),
        ("EVENTS_STALL", events_stall.base_url()),
        ("STREAM", stream.base_url()),
        ("ERROR", error.base_url()),
        ("CLOSED", closed_url()),
        ("STALL", stall.base_url()),
        ("PROBE", probe.base_url()),
        ("STALL_TASK", stall_task.base_url()),
        ("PROBE_TASK", probe_task.base_url()),
        ("ECHO", echo.base_url()),
    ]);
    let report = format!("{}{}", out.stdout, out.stderr);
    assert!(out.ok(), "swift test failed:\n{}", out.show());
    for test in SWIFT_TESTS {
        assert!(
            report.contains(&format!("Test {test} passed")),
            "{test} was not reported as passed:\n{}",
            out.show()
        );
    }

    // What the servers saw (the Swift tests run in parallel: requests in any order).
    let bodies: Vec<_> = stream.requests().iter().map(|r| r.json()).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let with_options = bodies
        .iter()
        .find(|b| b["model"] == json!("swift-model"))
        .unwrap_or_else(|| panic!("no request with the model set: {bodies:?}"));
    assert_eq!(with_options["max_tokens"], json!(16));
    assert_eq!(
        with_options["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
    assert_eq!(error.requests().len(), 2, "no retry after a 404");
    assert!(stall.client_disconnects() >= 1);
    assert!(stall_task.client_disconnects() >= 1);
    // Breaking out of the events and cancelling their task both hung up.
    assert!(
        events_stall.wait_until(Duration::from_secs(5), |s| s.client_disconnects() >= 2),
        "the pull streams were not closed: {} hang-ups",
        events_stall.client_disconnects()
    );
    assert_eq!(events.requests().len(), 1);
    assert_eq!(events_error.requests().len(), 1, "no retry after a 404");
    let echoed: Vec<_> = echo
        .requests()
        .iter()
        .map(|r| r.json()["messages"].clone())
        .collect();
    assert_eq!(
        echoed,
        vec![
            json!([{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Hello"}]),
            json!([{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Hello"},
                   {"role": "assistant", "content": "echo: Hello"},
                   {"role": "user", "content": "How are \"you\"?"}]),
        ]
    );
}

/// The README's Swift program, as a package of its own outside `swift/` that depends on it
/// by path, built with the README's command and run against a loopback server.
#[test]
fn readme_swift_program_builds_and_streams() {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let program = readme
        .split("```swift\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a swift block in the README");
    const README_URL: &str = "http://127.0.0.1:8080/v1";
    assert!(program.contains(README_URL), "{program}");
    let server = Server::always(Script::sse(
        &sse_stream(&["blue", " and", " wide"]),
        Framing::ChunkedEvery(16),
    ));
    let dir = work_dir().join("readme-program");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("Sources/hello")).unwrap();
    std::fs::write(
        dir.join("Package.swift"),
        format!(
            "// swift-tools-version:6.0\n\
             import PackageDescription\n\
             let package = Package(name: \"hello\",\n\
             \x20   dependencies: [.package(path: \"{}\")],\n\
             \x20   targets: [.executableTarget(name: \"hello\",\n\
             \x20       dependencies: [.product(name: \"Ylokh\", package: \"swift\")])])\n",
            manifest_dir().join("swift").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("Sources/hello/main.swift"),
        program.replace(README_URL, &server.base_url()),
    )
    .unwrap();

    let lib = install().join("lib").display().to_string();
    let package = dir.display().to_string();
    let out = in_swift_root(
        &[
            "swift",
            "build",
            "--package-path",
            &package,
            "-Xlinker",
            "-rpath",
            "-Xlinker",
            &lib,
        ],
        &[pkg_config_env()],
    );
    assert!(
        out.ok(),
        "building the README's program failed:\n{}",
        out.show()
    );
    let exe = dir.join(".build/debug/hello").display().to_string();
    let out = in_swift_root(&[&exe], &[]);
    assert!(out.ok(), "{}", out.show());
    assert_eq!(out.stdout, "blue and wide\n", "{}", out.show());
    let body = server.requests()[0].json();
    assert_eq!(body["max_tokens"], json!(32));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "The sky is"}])
    );
}
