//! The library as other build systems and languages consume it:
//!
//! - `make install` into a temporary prefix: the files, the SONAME and its symlinks, the
//!   pkg-config file, DESTDIR and `make uninstall`; only `ylokh_*` symbols exported;
//! - the C example built from outside the source tree with `pkg-config --cflags --libs
//!   ylokh`, linked dynamically and statically, run against the scripted server;
//! - the version macros of the header against Cargo.toml and `ylokh_version()`;
//! - the CMake consumer in `examples-cmake/` (pkg_check_modules);
//! - the C++ wrapper `include/ylokh.hpp` through `tests/cpp/test_ylokh.cpp`, built with
//!   `g++ -std=c++17 -Wall -Wextra -Werror` and more;
//! - the Go module in `go/`: gofmt, go vet, go test (its own loopback server);
//! - `docs/reference.md`, generated from the header (`YLOKH_BLESS=1 cargo test --test
//!   ecosystem reference` rewrites it), and the Swift wrapper's use of the header.
//!
//! The install builds the library once per run with `make install` (YLOKH_SONAME=1, the
//! test's profile) in a target directory of its own under `target/<profile>/ecosystem/`:
//! a separate directory cannot deadlock on the build lock of the cargo running this test.
//! The C++, Go and CMake programs link that installed library.
//!
//! Needs make, a C compiler, g++, pkg-config, cmake, Go (golang-go) and binutils (nm,
//! readelf). A missing tool fails the test that needs it, with the package to install.

mod common;

use common::process::{manifest_dir, profile_dir, run_bounded, Outcome, SCRUBBED_ENV};
use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// A program under test that runs longer than this is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Bound on a compiler, pkg-config or cmake run.
const TOOL_LIMIT: Duration = Duration::from_secs(300);
/// Bound on `make install`, which builds the library with cargo.
const INSTALL_LIMIT: Duration = Duration::from_secs(1200);
/// Bound on each of gofmt, go vet and go test (the first run compiles Go's std for cgo).
const GO_LIMIT: Duration = Duration::from_secs(600);

const VERSION: &str = env!("CARGO_PKG_VERSION");
const VERSION_MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");

/// Make's and cargo's jobserver settings of an outer `make test`: a nested make or cargo
/// must not try to use the outer one's file descriptors.
const JOBSERVER_ENV: &[&str] = &["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CARGO_MAKEFLAGS"];

/// The tools used here, each with the Debian package that provides it.
const TOOLS: &[(&str, &str)] = &[
    ("make", "make"),
    ("cc", "gcc"),
    ("g++", "g++"),
    ("pkg-config", "pkg-config"),
    ("cmake", "cmake"),
    ("go", "golang-go"),
    ("gofmt", "golang-go"),
    ("nm", "binutils"),
    ("readelf", "binutils"),
    ("sh", "dash"),
];

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

/// `target/<profile>/ecosystem`: the install build, Go's caches, one directory per run.
fn work_dir() -> PathBuf {
    profile_dir().join("ecosystem")
}

/// A directory of this process's own (`run-<pid>`), so that two `cargo test` runs at once
/// do not install over each other. Directories of processes that are gone are removed.
fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let work = work_dir();
        if let Ok(entries) = fs::read_dir(&work) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("run-") else {
                    continue;
                };
                if pid != std::process::id().to_string() && !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = work.join(format!("run-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        dir
    })
}

/// A directory outside the source tree (in the system's temporary directory), for builds
/// that must see nothing of the repository; removed when dropped.
struct Outside(PathBuf);

impl Outside {
    fn new(name: &str) -> Outside {
        let dir =
            std::env::temp_dir().join(format!("ylokh-ecosystem-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Outside(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory `name` inside [`run_dir`].
fn fresh_dir(name: &str) -> PathBuf {
    let dir = run_dir().join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------------------
// Running tools and programs
// ---------------------------------------------------------------------------

/// `name` if it is on PATH; otherwise the test fails, naming the package to install.
fn tool(name: &str) -> String {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    });
    if !found {
        let package = TOOLS
            .iter()
            .find(|(t, _)| *t == name)
            .map_or("?", |(_, p)| *p);
        panic!(
            "`{name}` is not installed, and this test needs it: install the Debian package \
             `{package}` (.ci/run does)"
        );
    }
    name.to_owned()
}

/// `$CC`, else `cc`.
fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| tool("cc"))
}

/// `$CXX`, else `g++`.
fn cxx_compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| tool("g++"))
}

/// Runs `cmd` and requires it to succeed.
fn run_ok(cmd: Command, limit: Duration) -> Outcome {
    let out = run_bounded(cmd, None, limit);
    assert!(out.ok(), "command failed:\n{}", out.show());
    out
}

/// A command for a program under test, with the request-redirecting variables removed.
fn program(path: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(path);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// `sh -c script` in `dir`: the README's build lines are shell.
fn shell(script: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(tool("sh"));
    cmd.arg("-c").arg(script).current_dir(dir);
    cmd
}

// ---------------------------------------------------------------------------
// make install
// ---------------------------------------------------------------------------

/// The cargo profile of this run, as `make install INSTALL_PROFILE=` takes it.
fn cargo_profile() -> String {
    let dir = profile_dir();
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    if name == "debug" {
        "dev".to_owned()
    } else {
        name.to_owned()
    }
}

/// `make <target>` in the repository with the install variables of these tests.
fn make(target: &str, prefix: &Path, destdir: Option<&Path>) -> Outcome {
    let mut cmd = Command::new(tool("make"));
    cmd.current_dir(manifest_dir())
        .arg("--no-print-directory")
        .arg(target)
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("INSTALL_PROFILE={}", cargo_profile()))
        .arg(format!(
            "INSTALL_TARGET_DIR={}",
            work_dir().join("cargo-target").display()
        ));
    if let Some(destdir) = destdir {
        cmd.arg(format!("DESTDIR={}", destdir.display()));
    }
    if let Ok(cargo) = std::env::var("CARGO") {
        cmd.arg(format!("CARGO={cargo}"));
    }
    for var in JOBSERVER_ENV {
        cmd.env_remove(var);
    }
    run_bounded(cmd, None, INSTALL_LIMIT)
}

struct Installed {
    prefix: PathBuf,
}

impl Installed {
    fn lib(&self) -> PathBuf {
        self.prefix.join("lib")
    }

    fn pkgconfig_dir(&self) -> PathBuf {
        self.lib().join("pkgconfig")
    }

    /// The installed shared library itself (not a symlink).
    fn shared_library(&self) -> PathBuf {
        self.lib().join(format!("libylokh.so.{VERSION}"))
    }

    /// `pkg-config ARGS` against this prefix only.
    fn pkg_config(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(tool("pkg-config"));
        cmd.args(args)
            .env("PKG_CONFIG_PATH", self.pkgconfig_dir())
            .env("PKG_CONFIG_LIBDIR", self.pkgconfig_dir());
        run_ok(cmd, TOOL_LIMIT).stdout.trim().to_owned()
    }
}

/// The library installed with `make install` into `run-<pid>/prefix` (once per run).
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Result<Installed, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let prefix = run_dir().join("prefix");
            let out = make("install", &prefix, None);
            if !out.ok() {
                return Err(format!("make install failed:\n{}", out.show()));
            }
            Ok(Installed { prefix })
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn readelf_dynamic(file: &Path) -> String {
    let mut cmd = Command::new(tool("readelf"));
    cmd.arg("-d").arg(file);
    run_ok(cmd, TOOL_LIMIT).stdout
}

/// The `NEEDED` entries of an ELF file.
fn needed(file: &Path) -> Vec<String> {
    readelf_dynamic(file)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l.rfind(']')?;
            Some(l[start..end].to_owned())
        })
        .collect()
}

#[test]
fn install_puts_the_library_headers_and_pkg_config_file_in_place() {
    let inst = installed();
    let lib = inst.lib();

    let real = inst.shared_library();
    let meta = fs::symlink_metadata(&real).unwrap_or_else(|e| panic!("{}: {e}", real.display()));
    assert!(meta.is_file(), "{} is not a regular file", real.display());
    assert_eq!(
        fs::read_link(lib.join(format!("libylokh.so.{VERSION_MAJOR}"))).unwrap(),
        PathBuf::from(format!("libylokh.so.{VERSION}"))
    );
    assert_eq!(
        fs::read_link(lib.join("libylokh.so")).unwrap(),
        PathBuf::from(format!("libylokh.so.{VERSION_MAJOR}"))
    );
    let dynamic = readelf_dynamic(&real);
    assert!(
        dynamic.contains(&format!("Library soname: [libylokh.so.{VERSION_MAJOR}]")),
        "no SONAME libylokh.so.{VERSION_MAJOR} in {}:\n{dynamic}",
        real.display()
    );

    let archive = fs::read(lib.join("libylokh.a")).expect("lib/libylokh.a");
    assert!(
        archive.starts_with(b"!<arch>\n"),
        "libylokh.a is not an archive"
    );

    // One header: the committed one, byte for byte; and the C++ wrapper next to it.
    for header in ["ylokh.h", "ylokh.hpp"] {
        let installed = fs::read(inst.prefix.join("include").join(header))
            .unwrap_or_else(|e| panic!("include/{header}: {e}"));
        let committed = fs::read(manifest_dir().join("include").join(header)).unwrap();
        assert!(
            installed == committed,
            "installed {header} differs from include/{header}"
        );
    }

    // ylokh.pc: version from Cargo.toml, the static link flags in Libs.private.
    let pc = fs::read_to_string(inst.pkgconfig_dir().join("ylokh.pc")).expect("ylokh.pc");
    let field = |name: &str| {
        pc.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in ylokh.pc:\n{pc}"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Version"), VERSION);
    let private = field("Libs.private");
    assert!(
        !private.is_empty()
            && private.split_whitespace().all(|f| f.starts_with("-l"))
            && private.contains("-lpthread"),
        "Libs.private is not the system libraries of a Rust staticlib: {private:?}"
    );
    assert_eq!(inst.pkg_config(&["--modversion", "ylokh"]), VERSION);
    assert_eq!(
        inst.pkg_config(&["--cflags", "ylokh"]),
        format!("-I{}", inst.prefix.join("include").display())
    );
    assert_eq!(
        inst.pkg_config(&["--libs", "ylokh"]),
        format!("-L{} -lylokh", lib.display())
    );
    assert_eq!(
        inst.pkg_config(&["--static", "--libs", "ylokh"]),
        format!("-L{} -lylokh {private}", lib.display())
    );
    inst.pkg_config(&["--validate", "ylokh"]);
}

#[test]
fn install_honours_destdir_and_uninstall_removes_every_file() {
    // After the first install, so that the build is up to date and not run twice at once.
    installed();
    let stage = fresh_dir("stage");
    let prefix = Path::new("/opt/ylokh-test");
    let out = make("install", prefix, Some(&stage));
    assert!(out.ok(), "make install DESTDIR=... failed:\n{}", out.show());

    let root = stage.join("opt/ylokh-test");
    let mut files = Vec::new();
    walk(&stage, &mut files);
    let mut names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "include/ylokh.h".to_owned(),
            "include/ylokh.hpp".to_owned(),
            "lib/libylokh.a".to_owned(),
            "lib/libylokh.so".to_owned(),
            format!("lib/libylokh.so.{VERSION_MAJOR}"),
            format!("lib/libylokh.so.{VERSION}"),
            "lib/pkgconfig/ylokh.pc".to_owned(),
        ]
    );
    // The pkg-config file names the final prefix, not the staging directory.
    let pc = fs::read_to_string(root.join("lib/pkgconfig/ylokh.pc")).unwrap();
    assert!(pc.contains("prefix=/opt/ylokh-test\n"), "{pc}");
    assert!(!pc.contains(&stage.display().to_string()), "{pc}");

    let out = make("uninstall", prefix, Some(&stage));
    assert!(out.ok(), "make uninstall failed:\n{}", out.show());
    let mut left = Vec::new();
    walk(&stage, &mut left);
    assert!(left.is_empty(), "make uninstall left {left:?}");
}

/// Every file and symlink under `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn shared_library_exports_only_the_functions_of_the_header() {
    let inst = installed();
    let mut cmd = Command::new(tool("nm"));
    cmd.args(["-D", "--defined-only", "--format=posix"])
        .arg(inst.shared_library());
    let out = run_ok(cmd, TOOL_LIMIT);
    let exported: BTreeSet<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let stray: Vec<&String> = exported
        .iter()
        .filter(|s| !s.starts_with("ylokh_"))
        .collect();
    assert!(
        stray.is_empty(),
        "exported symbols besides ylokh_*: {stray:?}"
    );

    let declared: BTreeSet<String> = header()
        .items
        .iter()
        .filter(|i| i.kind == Kind::Function)
        .map(|i| i.name.clone())
        .collect();
    // The test hook `ylokh_test_panic` is built only with the `test-hooks` feature, which
    // an install never has: it must not be exported.
    assert_eq!(
        exported, declared,
        "the exported functions and those declared in ylokh.h differ"
    );
}

// ---------------------------------------------------------------------------
// Version macros
// ---------------------------------------------------------------------------

#[test]
fn header_version_macros_come_from_cargo_toml() {
    let h = header();
    let num = |name: &str| -> u32 {
        h.define(name)
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let cargo = |v: &str| -> u32 { v.parse().unwrap() };
    let (major, minor, patch) = (
        cargo(env!("CARGO_PKG_VERSION_MAJOR")),
        cargo(env!("CARGO_PKG_VERSION_MINOR")),
        cargo(env!("CARGO_PKG_VERSION_PATCH")),
    );
    assert_eq!(h.define("YLOKH_VERSION"), format!("\"{VERSION}\""));
    assert_eq!(num("YLOKH_VERSION_MAJOR"), major);
    assert_eq!(num("YLOKH_VERSION_MINOR"), minor);
    assert_eq!(num("YLOKH_VERSION_PATCH"), patch);
    assert_eq!(
        num("YLOKH_VERSION_NUMBER"),
        major * 10000 + minor * 100 + patch
    );
}

/// Prints the header's macros and the library's version; exits 1 if they disagree.
const VERSION_PROGRAM: &str = r#"
#include <stdio.h>
#include <string.h>
#include <ylokh.h>

#if YLOKH_VERSION_NUMBER != YLOKH_VERSION_MAJOR * 10000 + YLOKH_VERSION_MINOR * 100 + YLOKH_VERSION_PATCH
#error "YLOKH_VERSION_NUMBER does not match MAJOR, MINOR and PATCH"
#endif

int main(void) {
    char parts[64];
    snprintf(parts, sizeof parts, "%d.%d.%d", YLOKH_VERSION_MAJOR, YLOKH_VERSION_MINOR,
             YLOKH_VERSION_PATCH);
    printf("HEADER %s %s %d\n", YLOKH_VERSION, parts, YLOKH_VERSION_NUMBER);
    printf("LIBRARY %s\n", ylokh_version());
    return strcmp(YLOKH_VERSION, ylokh_version()) == 0 && strcmp(YLOKH_VERSION, parts) == 0 ? 0 : 1;
}
"#;

#[test]
fn version_macros_match_ylokh_version() {
    let inst = installed();
    let outside = Outside::new("version");
    let dir = outside.path();
    fs::write(dir.join("version.c"), VERSION_PROGRAM).unwrap();
    let script = format!(
        "{cc} -std=c99 -Wall -Wextra -Werror -pedantic version.c $(pkg-config --cflags --libs ylokh) \
         -Wl,-rpath,\"$(pkg-config --variable=libdir ylokh)\" -o version",
        cc = c_compiler()
    );
    let mut cmd = shell(&script, dir);
    cmd.env("PKG_CONFIG_PATH", inst.pkgconfig_dir());
    run_ok(cmd, TOOL_LIMIT);
    let out = run_ok(program(dir.join("version")), RUN_LIMIT);
    let number = {
        let v: Vec<u32> = VERSION.split('.').map(|p| p.parse().unwrap()).collect();
        v[0] * 10000 + v[1] * 100 + v[2]
    };
    assert_eq!(out.line("HEADER"), format!("{VERSION} {VERSION} {number}"));
    assert_eq!(out.line("LIBRARY"), VERSION);
}

// ---------------------------------------------------------------------------
// The C example, from outside the source tree, through pkg-config
// ---------------------------------------------------------------------------

/// The README's build lines, with `app.c` as `chat.c`.
const SHARED_BUILD: &str = "$CC -std=c99 -Wall -Wextra -Werror -pedantic chat.c \
     $(pkg-config --cflags --libs ylokh) -Wl,-rpath,\"$(pkg-config --variable=libdir ylokh)\" -o chat";
const STATIC_BUILD: &str = "$CC -std=c99 -Wall -Wextra -Werror -pedantic chat.c $(pkg-config --cflags ylokh) \
     $(pkg-config --static --libs ylokh | sed 's/-lylokh/-Wl,-Bstatic -lylokh -Wl,-Bdynamic/') -o chat";

/// Copies examples-c/chat.c into a directory outside the source tree, builds it there with
/// `script` (nothing but pkg-config tells the compiler where libylokh is), runs it against a
/// server streaming "Hel", "lo", and returns the `NEEDED` entries of the program.
fn build_and_run_chat_example(name: &str, script: &str) -> Vec<String> {
    let inst = installed();
    let outside = Outside::new(name);
    let dir = outside.path();
    fs::copy(manifest_dir().join("examples-c/chat.c"), dir.join("chat.c")).unwrap();
    let mut cmd = shell(script, dir);
    cmd.env("CC", c_compiler())
        .env("PKG_CONFIG_PATH", inst.pkgconfig_dir())
        .env_remove("C_INCLUDE_PATH")
        .env_remove("CPATH")
        .env_remove("LIBRARY_PATH");
    run_ok(cmd, TOOL_LIMIT);

    let server = Server::always(Script::sse(
        &sse_stream(&["Hel", "lo"]),
        Framing::ChunkedEvery(40),
    ));
    let exe = dir.join("chat");
    let mut cmd = program(&exe);
    cmd.env("YLOKH_BASE_URL", server.base_url())
        .env_remove("LD_LIBRARY_PATH")
        .arg("Say hello")
        .current_dir(dir);
    let out = run_ok(cmd, RUN_LIMIT);
    assert!(out.stdout.contains("Hello"), "no reply:\n{}", out.show());
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].json()["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
    needed(&exe)
}

#[test]
fn c_example_builds_with_pkg_config_and_links_the_shared_library() {
    let needed = build_and_run_chat_example("shared", SHARED_BUILD);
    assert!(
        needed.contains(&format!("libylokh.so.{VERSION_MAJOR}")),
        "the program does not load libylokh.so.{VERSION_MAJOR} by its SONAME: {needed:?}"
    );
}

#[test]
fn c_example_builds_with_pkg_config_and_links_the_static_library() {
    let needed = build_and_run_chat_example("static", STATIC_BUILD);
    assert!(
        !needed.iter().any(|n| n.starts_with("libylokh")),
        "a statically linked program loads libylokh: {needed:?}"
    );
}

// ---------------------------------------------------------------------------
// CMake
// ---------------------------------------------------------------------------

#[test]
fn cmake_consumer_finds_the_installed_library_and_runs() {
    let inst = installed();
    let build = fresh_dir("cmake");
    let mut cmd = Command::new(tool("cmake"));
    cmd.arg("-S")
        .arg(manifest_dir().join("examples-cmake"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", inst.prefix.display()))
        .arg(format!("-DCMAKE_C_COMPILER={}", c_compiler()))
        .arg(format!("-DCMAKE_CXX_COMPILER={}", cxx_compiler()))
        .arg("-DCMAKE_C_FLAGS=-Wall -Wextra -Werror -pedantic")
        .arg("-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror -pedantic")
        .env_remove("PKG_CONFIG_PATH");
    for var in JOBSERVER_ENV {
        cmd.env_remove(var);
    }
    run_ok(cmd, TOOL_LIMIT);
    let mut cmd = Command::new(tool("cmake"));
    cmd.arg("--build").arg(&build);
    for var in JOBSERVER_ENV {
        cmd.env_remove(var);
    }
    run_ok(cmd, TOOL_LIMIT);

    for exe in ["stream_c", "stream_cpp"] {
        let server = Server::always(Script::sse(
            &sse_stream(&["Hel", "lo"]),
            Framing::ChunkedEvery(40),
        ));
        let path = build.join(exe);
        let mut cmd = program(&path);
        cmd.arg(server.base_url()).arg("Say hello");
        let out = run_ok(cmd, RUN_LIMIT);
        assert_eq!(out.stdout, "Hello\n", "{}", out.show());
        let body = server.requests()[0].json();
        assert_eq!(body["max_tokens"], json!(48));
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": "Say hello"}])
        );
        // Linked against the installed library, found through its rpath.
        let dynamic = readelf_dynamic(&path);
        assert!(
            dynamic.contains(&format!("[libylokh.so.{VERSION_MAJOR}]"))
                && dynamic.contains(&inst.lib().display().to_string()),
            "{exe} does not load the installed library:\n{dynamic}"
        );
    }

    // A failure reaches the caller with the server's message.
    let server = Server::always(Script::json(
        401,
        &error_json("Invalid API key provided", "invalid_request_error"),
    ));
    let mut cmd = program(build.join("stream_cpp"));
    cmd.arg(server.base_url()).arg("Say hello");
    let out = run_bounded(cmd, None, RUN_LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", out.show());
    assert!(
        out.stderr.contains("(HTTP 401)") && out.stderr.contains("Invalid API key provided"),
        "{}",
        out.show()
    );
}

// ---------------------------------------------------------------------------
// C++
// ---------------------------------------------------------------------------

const CXXFLAGS: &[&str] = &[
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wpedantic",
    "-Wshadow",
    "-Wconversion",
    "-Wsign-conversion",
    "-Wold-style-cast",
    "-Wnon-virtual-dtor",
    "-Wcast-qual",
    "-O1",
    "-g",
];

/// tests/cpp/test_ylokh.cpp, compiled once per run against the repository's headers and
/// the installed library.
fn cpp_test_program() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let inst = installed();
            let dir = fresh_dir("cpp");
            let exe = dir.join("test_ylokh");
            let mut cmd = Command::new(cxx_compiler());
            cmd.args(CXXFLAGS)
                .arg(format!("-I{}", manifest_dir().join("include").display()))
                .arg(manifest_dir().join("tests/cpp/test_ylokh.cpp"))
                .arg("-o")
                .arg(&exe)
                .arg(format!("-L{}", inst.lib().display()))
                .arg("-lylokh")
                .arg("-pthread")
                .arg(format!("-Wl,-rpath,{}", inst.lib().display()));
            let out = run_bounded(cmd, None, TOOL_LIMIT);
            if out.ok() {
                Ok(exe)
            } else {
                Err(format!("compiling the C++ test failed:\n{}", out.show()))
            }
        })
        .as_deref()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs one case of the C++ test against `url` and requires it to pass.
fn cpp_case(case: &str, url: &str) -> Outcome {
    let mut cmd = program(cpp_test_program());
    cmd.arg(case).arg(url);
    let out = run_bounded(cmd, None, RUN_LIMIT);
    assert!(
        out.ok() && out.stdout.contains(&format!("PASS {case}")),
        "C++ case {case} failed:\n{}",
        out.show()
    );
    out
}

fn hello_server() -> Server {
    Server::always(Script::sse(
        &sse_stream(&["Hel", "lo"]),
        Framing::ChunkedEvery(40),
    ))
}

#[test]
fn cpp_streams_tokens_to_lambdas_function_objects_and_std_function() {
    let server = hello_server();
    let out = cpp_case("stream", &server.base_url());
    assert_eq!(out.line("TOKENS"), r#"["Hel","lo"]"#);
    let requests = server.requests();
    assert_eq!(requests.len(), 4, "one request per chat");
    let first = requests[0].json();
    assert_eq!(
        first["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
    assert_eq!(first["model"], json!("gpt-3.5-turbo"));
    let second = requests[1].json();
    assert_eq!(second["model"], json!("my-model"));
    assert_eq!(second["max_tokens"], json!(5));
    assert_eq!(
        second["messages"],
        json!([{"role": "user", "content": "hi"}])
    );
}

#[test]
fn cpp_callback_returning_false_stops_the_reply() {
    let server = hello_server();
    cpp_case("stop", &server.base_url());
}

#[test]
fn cpp_exception_in_a_callback_is_rethrown_after_the_call() {
    let server = hello_server();
    cpp_case("exception", &server.base_url());
}

#[test]
fn cpp_event_callback_sees_content_and_finish() {
    let server = hello_server();
    cpp_case("events", &server.base_url());
}

#[test]
fn cpp_error_carries_status_http_status_and_message() {
    let server = Server::always(Script::json(
        401,
        &error_json("Invalid API key provided", "invalid_request_error"),
    ));
    let out = cpp_case("http_error", &server.base_url());
    assert!(out.line("ERROR").starts_with("6 401 "), "{}", out.show());
}

#[test]
fn cpp_bad_arguments_throw_invalid_argument() {
    let server = hello_server();
    cpp_case("invalid", &server.base_url());
    assert!(server.requests().is_empty());
}

#[test]
fn cpp_conversation_is_raii_and_gets_the_reply() {
    let server = hello_server();
    cpp_case("conversation", &server.base_url());
    let requests = server.requests();
    assert_eq!(
        requests[0].json()["messages"],
        json!([
            {"role": "system", "content": "Be \"brief\".\n"},
            {"role": "user", "content": "Say hello"}
        ])
    );
    // The copy with the reply and the extra message.
    assert_eq!(requests[1].json()["messages"].as_array().unwrap().len(), 4);
}

#[test]
fn cpp_cancel_token_stops_a_silent_server() {
    let server = Server::always(Script::stall());
    let out = cpp_case("cancel", &server.base_url());
    let ms: u64 = out.line("ELAPSED_MS").parse().unwrap();
    assert!(ms < 5000, "cancel took {ms} ms");
}

#[test]
fn cpp_one_client_shared_by_threads() {
    let server = hello_server();
    cpp_case("threads", &server.base_url());
    assert_eq!(server.requests().len(), 20);
}

#[test]
fn cpp_log_function_and_tls_settings() {
    let server = hello_server();
    cpp_case("log", &server.base_url());
}

#[test]
fn cpp_version_matches_cargo_toml() {
    let out = cpp_case("version", "http://127.0.0.1:9/v1");
    let number = header().define("YLOKH_VERSION_NUMBER").to_owned();
    assert_eq!(out.line("VERSION"), format!("{VERSION} {number}"));
}

// ---------------------------------------------------------------------------
// Go
// ---------------------------------------------------------------------------

/// A `go`/`gofmt` command in go/ with caches under target/ and no network.
fn go_command(name: &str) -> Command {
    let inst = installed();
    let go_dir = work_dir().join("go");
    let mut cmd = Command::new(tool(name));
    cmd.current_dir(manifest_dir().join("go"))
        .env("GOPATH", go_dir.join("path"))
        .env("GOCACHE", go_dir.join("cache"))
        .env("GOMODCACHE", go_dir.join("path/pkg/mod"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "1")
        .env(
            "CGO_LDFLAGS",
            format!("-L{lib} -Wl,-rpath,{lib}", lib = inst.lib().display()),
        );
    if std::env::var_os("CC").is_some() {
        cmd.env("CC", c_compiler());
    }
    for var in SCRUBBED_ENV.iter().chain(JOBSERVER_ENV) {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn go_module_is_gofmt_clean_vets_and_passes_its_tests() {
    let mut cmd = go_command("gofmt");
    cmd.args(["-l", "."]);
    let out = run_ok(cmd, GO_LIMIT);
    assert!(
        out.stdout.trim().is_empty(),
        "files need gofmt:\n{}",
        out.stdout
    );

    let mut cmd = go_command("go");
    cmd.args(["vet", "./..."]);
    run_ok(cmd, GO_LIMIT);

    let mut cmd = go_command("go");
    cmd.args(["test", "-count=1", "-v", "./..."]);
    let out = run_ok(cmd, GO_LIMIT);
    assert!(
        out.stdout.contains("--- PASS: TestErrorsBelongToTheirCall"),
        "{}",
        out.show()
    );
}

// ---------------------------------------------------------------------------
// Swift (not built here: no toolchain; check its use of the C API at least)
// ---------------------------------------------------------------------------

#[test]
fn swift_wrapper_uses_only_names_of_the_header() {
    let h = header();
    let known: BTreeSet<&str> = h.items.iter().map(|i| i.name.as_str()).collect();
    let mut unknown = BTreeSet::new();
    for file in [
        "swift/Sources/Ylokh/Ylokh.swift",
        "swift/Sources/CYlokh/module.modulemap",
    ] {
        let text = fs::read_to_string(manifest_dir().join(file)).unwrap();
        // Code only: comments may name environment variables and the like.
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for word in identifiers(&code) {
            let lower = word.to_ascii_lowercase();
            if lower.starts_with("ylokh_") && !known.contains(word) {
                unknown.insert(word.to_owned());
            }
        }
    }
    assert!(unknown.is_empty(), "not in ylokh.h: {unknown:?}");
    let map =
        fs::read_to_string(manifest_dir().join("swift/Sources/CYlokh/module.modulemap")).unwrap();
    assert!(map.contains("link \"ylokh\""), "{map}");
}

fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

// ---------------------------------------------------------------------------
// The header, and docs/reference.md generated from it
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Function,
    Type,
    Define,
}

#[derive(Debug)]
struct Item {
    kind: Kind,
    name: String,
    /// The comment lines right above the declaration, without the `//`.
    doc: Vec<String>,
    /// The declaration as written (a `#define`'s value for defines).
    code: String,
}

struct Header {
    /// The opening comment: the conventions of every function.
    preamble: Vec<String>,
    items: Vec<Item>,
}

impl Header {
    fn define(&self, name: &str) -> &str {
        self.items
            .iter()
            .find(|i| i.kind == Kind::Define && i.name == name)
            .map(|i| i.code.as_str())
            .unwrap_or_else(|| panic!("no #define {name} in ylokh.h"))
    }
}

fn header() -> &'static Header {
    static HEADER: OnceLock<Header> = OnceLock::new();
    HEADER.get_or_init(|| {
        let text =
            fs::read_to_string(manifest_dir().join("include/ylokh.h")).expect("include/ylokh.h");
        parse_header(&text)
    })
}

/// The first C identifier followed by `(` in `code`, or in `(*name)` form.
fn declared_name(code: &str) -> Option<String> {
    let before_paren = |s: &str| -> Option<String> {
        let idx = s.find('(')?;
        identifiers(&s[..idx]).last().map(str::to_owned)
    };
    if let Some(start) = code.find("(*") {
        let rest = &code[start + 2..];
        return rest.find(')').map(|end| rest[..end].trim().to_owned());
    }
    before_paren(code)
}

fn parse_header(text: &str) -> Header {
    let mut lines = text.lines().peekable();
    let mut preamble = Vec::new();
    if lines
        .peek()
        .is_some_and(|l| l.trim_start().starts_with("/*"))
    {
        for line in lines.by_ref() {
            let t = line.trim();
            if t == "*/" {
                break;
            }
            let t = t.trim_start_matches("/*").trim_start_matches('*');
            let t = t.strip_prefix(' ').unwrap_or(t);
            if !t.is_empty() || !preamble.is_empty() {
                preamble.push(t.trim_end().to_owned());
            }
        }
    }
    let mut items = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix("//") {
            doc.push(c.strip_prefix(' ').unwrap_or(c).to_owned());
            continue;
        }
        if t.starts_with("/*") && t.ends_with("*/") {
            let c = t.trim_start_matches("/*").trim_end_matches("*/").trim();
            if !c.starts_with("Generated by") {
                doc.push(c.to_owned());
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("#define ") {
            let mut parts = rest.splitn(2, char::is_whitespace);
            let name = parts.next().unwrap_or_default().to_owned();
            let value = parts.next().unwrap_or_default().trim().to_owned();
            if name.starts_with("YLOKH_") && !value.is_empty() {
                items.push(Item {
                    kind: Kind::Define,
                    name,
                    doc: std::mem::take(&mut doc),
                    code: value,
                });
            }
            doc.clear();
            continue;
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with("extern \"C\"") || t.starts_with('}')
        {
            doc.clear();
            continue;
        }
        // A declaration: up to the `;` that closes it (outside braces).
        let mut code = line.to_owned();
        let mut depth = t.matches('{').count() as i64 - t.matches('}').count() as i64;
        while !(depth == 0 && code.trim_end().ends_with(';')) {
            let Some(next) = lines.next() else { break };
            depth += next.matches('{').count() as i64 - next.matches('}').count() as i64;
            code.push('\n');
            code.push_str(next);
        }
        let (kind, name) = if t.starts_with("typedef") {
            let name = if code.contains("(*") {
                declared_name(&code)
            } else {
                identifiers(code.trim_end().trim_end_matches(';'))
                    .last()
                    .map(str::to_owned)
            };
            (Kind::Type, name)
        } else {
            (Kind::Function, declared_name(&code))
        };
        let name = name.unwrap_or_else(|| panic!("cannot name the declaration:\n{code}"));
        items.push(Item {
            kind,
            name,
            doc: std::mem::take(&mut doc),
            code,
        });
    }
    Header { preamble, items }
}

/// "Since X.Y.Z" in a doc comment.
fn since(doc: &[String]) -> Option<String> {
    let text = doc.join(" ");
    let at = text.find("Since ")? + "Since ".len();
    let version: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version = version.trim_end_matches('.').to_owned();
    (version.split('.').count() == 3).then_some(version)
}

/// The first sentence of a doc comment, for the index.
fn summary(doc: &[String]) -> String {
    let mut text = String::new();
    for line in doc {
        if line.trim().is_empty() {
            break;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(line.trim());
    }
    let mut end = text.len();
    let mut search = 0;
    while let Some(pos) = text[search..].find(". ") {
        let at = search + pos;
        let word = text[..at].rsplit(' ').next().unwrap_or_default();
        if !matches!(word.trim_start_matches('('), "e.g" | "i.e" | "etc") {
            end = at + 1;
            break;
        }
        search = at + 2;
    }
    escape_prose(&text[..end]).replace('|', "\\|")
}

/// Markdown prose from C comments: `<` and `>` outside code spans are escaped, so that
/// "Bearer <key>" is not taken for an HTML tag.
fn escape_prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push_str(&part.replace('<', "&lt;").replace('>', "&gt;"));
        }
    }
    out
}

/// The doc comment as Markdown: `# Safety` becomes a bold label.
fn doc_markdown(doc: &[String]) -> String {
    let mut out = String::new();
    for line in doc {
        if let Some(title) = line.strip_prefix("# ") {
            let _ = writeln!(out, "**{title}.**");
        } else {
            out.push_str(&escape_prose(line));
            out.push('\n');
        }
    }
    out
}

/// Which section of the reference a function belongs to.
fn group(name: &str) -> &'static str {
    if name == "ylokh_conversation_chat" || name.starts_with("ylokh_chat") {
        "Chatting"
    } else if name.starts_with("ylokh_client_") {
        "Clients and settings"
    } else if name.starts_with("ylokh_conversation_") {
        "Conversations"
    } else if name.starts_with("ylokh_cancel_") {
        "Cancelling"
    } else if name == "ylokh_string_free" {
        "Memory"
    } else {
        "Errors, versions, provider"
    }
}

const GROUPS: &[&str] = &[
    "Clients and settings",
    "Chatting",
    "Conversations",
    "Cancelling",
    "Memory",
    "Errors, versions, provider",
];

fn reference_markdown(h: &Header) -> String {
    let mut md = String::new();
    let version = h.define("YLOKH_VERSION").trim_matches('"');
    let _ = writeln!(md, "# libylokh C API reference (version {version})\n");
    md.push_str(
        "<!-- Generated from include/ylokh.h by tests/ecosystem.rs; do not edit. \
         Regenerate with: YLOKH_BLESS=1 cargo test --test ecosystem reference -->\n\n",
    );
    md.push_str(
        "Every declaration of [`include/ylokh.h`](../include/ylokh.h) with its documentation, \
         generated from the header. For the C++ (`ylokh.hpp`), Go and Swift wrappers and for \
         installing, see the [README](../README.md).\n\n",
    );
    md.push_str("## Conventions\n\nThese hold for every function below.\n\n");
    for line in &h.preamble {
        if line.starts_with("Conventions for every function") {
            continue;
        }
        md.push_str(line);
        md.push('\n');
    }
    md.push('\n');

    let functions: Vec<&Item> = h
        .items
        .iter()
        .filter(|i| i.kind == Kind::Function)
        .collect();
    md.push_str("## Functions\n\n| Function | Summary | Since |\n| --- | --- | --- |\n");
    for g in GROUPS {
        for f in functions.iter().filter(|f| group(&f.name) == *g) {
            let _ = writeln!(
                md,
                "| [`{n}`](#{n}) | {s} | {v} |",
                n = f.name,
                s = summary(&f.doc),
                v = since(&f.doc).unwrap_or_default()
            );
        }
    }
    md.push('\n');
    for g in GROUPS {
        let _ = writeln!(md, "### {g}\n");
        for f in functions.iter().filter(|f| group(&f.name) == *g) {
            let _ = writeln!(md, "#### `{}`\n\n```c\n{}\n```\n", f.name, f.code.trim());
            md.push_str(&doc_markdown(&f.doc));
            md.push('\n');
        }
    }

    md.push_str("## Types\n\n");
    for t in h.items.iter().filter(|i| i.kind == Kind::Type) {
        let _ = writeln!(md, "### `{}`\n", t.name);
        md.push_str(&doc_markdown(&t.doc));
        let _ = writeln!(md, "\n```c\n{}\n```\n", t.code.trim());
    }

    md.push_str("## Status codes\n\n| Code | Value | Meaning |\n| --- | --- | --- |\n");
    for d in h
        .items
        .iter()
        .filter(|i| i.kind == Kind::Define && !i.name.starts_with("YLOKH_VERSION"))
    {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            d.name,
            d.code,
            escape_prose(&d.doc.join(" ")).replace('|', "\\|")
        );
    }
    md.push_str("\n## Version macros\n\n| Macro | Value | Meaning |\n| --- | --- | --- |\n");
    for d in h
        .items
        .iter()
        .filter(|i| i.kind == Kind::Define && i.name.starts_with("YLOKH_VERSION"))
    {
        let meaning = if d.doc.is_empty() {
            "from Cargo.toml".to_owned()
        } else {
            d.doc.join(" ")
        };
        let _ = writeln!(md, "| `{}` | `{}` | {} |", d.name, d.code, meaning);
    }
    md
}

#[test]
fn every_function_in_the_header_is_documented_with_its_version() {
    let h = header();
    let functions: Vec<&Item> = h
        .items
        .iter()
        .filter(|i| i.kind == Kind::Function)
        .collect();
    assert!(
        functions.len() >= 30,
        "only {} functions parsed",
        functions.len()
    );
    let mut problems = Vec::new();
    for f in &functions {
        if f.doc.iter().all(|l| l.trim().is_empty()) {
            problems.push(format!("{}: no documentation", f.name));
        } else if since(&f.doc).is_none() {
            problems.push(format!("{}: no \"Since X.Y.Z\"", f.name));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn reference_page_is_generated_from_the_current_header() {
    let generated = reference_markdown(header());
    let path = manifest_dir().join("docs/reference.md");
    if std::env::var_os("YLOKH_BLESS").is_some() {
        fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/reference.md is not what include/ylokh.h generates; run \
         `YLOKH_BLESS=1 cargo test --test ecosystem reference` and commit it"
    );
    // Each function has its section.
    for f in header().items.iter().filter(|i| i.kind == Kind::Function) {
        assert!(
            committed.contains(&format!("#### `{}`", f.name)),
            "{}",
            f.name
        );
    }
}

#[test]
fn header_parser_finds_functions_types_and_defines() {
    let h = parse_header(
        "/*\n * Intro.\n */\n\n#define YLOKH_OK 0\n\n// A callback.\ntypedef int (*cb)(void *u,\n    size_t n);\n\n\
         // Doc.\n// Since 1.2.3.\nint f(int a,\n      int b);\ntypedef struct s {\n  int x;\n} s;\n",
    );
    assert_eq!(h.preamble, ["Intro."]);
    let got: Vec<(Kind, &str)> = h.items.iter().map(|i| (i.kind, i.name.as_str())).collect();
    assert_eq!(
        got,
        [
            (Kind::Define, "YLOKH_OK"),
            (Kind::Type, "cb"),
            (Kind::Function, "f"),
            (Kind::Type, "s")
        ]
    );
    assert_eq!(since(&h.items[2].doc).as_deref(), Some("1.2.3"));
    assert_eq!(
        summary(&["Sets x (e.g. 1). More.".to_owned()]),
        "Sets x (e.g. 1)."
    );
    assert_eq!(escape_prose("a <b> `<c>`"), "a &lt;b&gt; `<c>`");
}

#[test]
#[should_panic(expected = "`no-such-tool-ylokh` is not installed, and this test needs it")]
fn a_missing_tool_fails_the_test_with_what_to_install() {
    tool("no-such-tool-ylokh");
}
