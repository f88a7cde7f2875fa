//! The ABI of the library does not change by accident.
//!
//! `abi/libylokh.so.<SONAME version>.abi` is the ABI of the library as libabigail's `abidw`
//! records it (exported functions, their parameter types, the structs they take), and
//! `abi/ylokh.h.<SONAME version>.abi` the ABI of the header as a C compiler sees it (every
//! function's exact C type, every struct's layout, callbacks included: Rust's debug info
//! hides what is reached only through an `Option<fn>`). These tests compare the library
//! built for this test run, and the header, with `abidiff`, and fail on any incompatible
//! change: a function removed or changed, a field removed, moved or retyped.
//! Compatible changes pass: new functions, and new fields at the end of a public struct
//! (each struct has a size field the library checks, see the header).
//!
//! `make abi-baseline` (`YLOKH_ABI_BLESS=1 cargo test --test abi`) records the ABI again,
//! after adding functions. It refuses to record an incompatible change over the baseline
//! of the same SONAME: raise the minor version (0.x) or the major version in Cargo.toml,
//! which changes the SONAME and starts a new baseline file. `ABI_FORCE=1` records it anyway
//! (only for a version never released).
//!
//! The library compared is the one `make install` installs, built as `make install-lib`
//! builds it (no `test-hooks` feature, the SONAME set) in the test's profile, in the target
//! directory tests/ecosystem.rs installs from: not the library `cargo test` builds for the
//! Rust tests, which exports the test hook `ylokh_test_panic`. Its exported functions must
//! be exactly those of ylokh.h (a test hook exported again fails), and exactly those the
//! baseline records (a function removed fails; one added asks for `make abi-baseline`):
//! abidiff alone reports neither an added function nor a changed SONAME as incompatible.
//!
//! The opaque handles (`typedef struct ylokh_client ylokh_client;` in the header) are
//! Rust structs inside the library whose layout C never sees: they are left out of the
//! comparison.
//!
//! Needs `abidw` and `abidiff` (Debian's abigail-tools; scripts/install-deps.sh installs
//! them), make, and a library with debug info (the dev profile of `cargo test`; the release
//! profile has line tables only, without the types abidw reads).

mod common;
#[allow(dead_code)]
#[path = "../tools/gen/src/header.rs"]
mod header;

use common::process::{
    cargo_profile, install_target_dir, manifest_dir, profile_dir, run_bounded, Outcome,
    JOBSERVER_ENV,
};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Bound on one abidw or abidiff run (each reads the library's debug info: ~20 s here).
const ABI_TOOL_LIMIT: Duration = Duration::from_secs(600);
/// Bound on `make install-lib`, which builds the library with cargo.
const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// "0.MINOR" while 0.x, "MAJOR" from 1.0 (build.rs and the Makefile agree).
fn soversion() -> String {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    if major == "0" {
        format!("0.{}", env!("CARGO_PKG_VERSION_MINOR"))
    } else {
        major.to_owned()
    }
}

/// The baseline of `what` ("libylokh.so" or "ylokh.h") for the current SONAME.
fn baseline_path(what: &str) -> PathBuf {
    manifest_dir()
        .join("abi")
        .join(format!("{what}.{}.abi", soversion()))
}

/// The library `make install` installs, unstripped: `make install-lib INSTALL_STRIP=0` in
/// this run's profile and the install target directory tests/ecosystem.rs uses (one build
/// for both). Without the `test-hooks` feature, with the SONAME.
fn library() -> PathBuf {
    let target_dir = install_target_dir();
    let mut cmd = Command::new("make");
    cmd.current_dir(manifest_dir())
        .args(["--no-print-directory", "install-lib", "INSTALL_STRIP=0"])
        .arg(format!("INSTALL_PROFILE={}", cargo_profile()))
        .arg(format!("INSTALL_TARGET_DIR={}", target_dir.display()));
    if let Ok(cargo) = std::env::var("CARGO") {
        cmd.arg(format!("CARGO={cargo}"));
    }
    for var in JOBSERVER_ENV {
        cmd.env_remove(var);
    }
    let out = run_bounded(cmd, None, BUILD_LIMIT);
    assert!(out.ok(), "make install-lib failed:\n{}", out.show());
    let dir = profile_dir();
    let lib = target_dir
        .join(dir.file_name().expect("profile directory name"))
        .join("libylokh.so");
    assert!(lib.exists(), "make install-lib built no {}", lib.display());
    lib
}

/// The functions ylokh.h declares.
fn header_functions() -> BTreeSet<String> {
    let text = fs::read_to_string(manifest_dir().join("include/ylokh.h")).unwrap();
    header::parse(&text)
        .functions()
        .map(|f| f.name.clone())
        .collect()
}

/// What a baseline is of: the library, or the header (through its probe).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Of {
    Library,
    Header,
}

/// The symbols of one `<elf-…-symbols>` section of an abidw record (`section` is
/// "function" or "variable"); empty when the record has no such section.
fn elf_symbols(record: &str, section: &str) -> BTreeSet<String> {
    let open = format!("<elf-{section}-symbols>");
    let close = format!("</elf-{section}-symbols>");
    let Some(start) = record.find(&open) else {
        return BTreeSet::new();
    };
    let end = record[start..]
        .find(&close)
        .map(|e| start + e)
        .unwrap_or_else(|| panic!("no {close} in the ABI record"));
    record[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("<elf-symbol name='"))
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_owned)
        .collect()
}

/// The library functions an abidw record is about: the library's exported functions, or,
/// in the header probe, the functions it takes a pointer of (`ylokh_abi_fn_<name>`).
fn recorded_functions(record: &str, of: Of) -> BTreeSet<String> {
    match of {
        Of::Library => elf_symbols(record, "function"),
        Of::Header => elf_symbols(record, "variable")
            .iter()
            .filter_map(|s| s.strip_prefix("ylokh_abi_fn_"))
            .map(str::to_owned)
            .collect(),
    }
}

/// `a` minus `b`, for messages.
fn missing_from(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b).cloned().collect()
}

/// The library exports exactly the functions of the header (the header probe covers every
/// one), and, unless recording, exactly those of the baseline: abidiff, run with
/// --no-added-syms, does not report a function added.
fn check_functions(of: Of, record: &str, baseline: Option<&str>, bless: bool) {
    let exported = recorded_functions(record, of);
    let declared = header_functions();
    assert!(
        declared.len() > 40,
        "too few functions parsed from ylokh.h: {declared:?}"
    );
    assert!(
        exported == declared,
        "the functions of the ABI record and ylokh.h differ: exported but not declared (a test \
         hook?) {:?}; declared but not exported {:?}",
        missing_from(&exported, &declared),
        missing_from(&declared, &exported)
    );
    if let (Some(baseline), false) = (baseline, bless) {
        let recorded = recorded_functions(baseline, of);
        assert!(
            exported == recorded,
            "the functions of the ABI record and of its baseline differ: removed {:?} \
             (incompatible: a new SONAME); added {:?} (record them: `make abi-baseline`, and \
             commit abi/)",
            missing_from(&recorded, &exported),
            missing_from(&exported, &recorded)
        );
    }
}

/// The opaque types of the header: `typedef struct X X;`.
fn opaque_types() -> Vec<String> {
    let text = fs::read_to_string(manifest_dir().join("include/ylokh.h")).unwrap();
    let h = header::parse(&text);
    h.types()
        .filter(|t| {
            let code = t.code.trim();
            code.starts_with("typedef struct ") && !code.contains('{')
        })
        .map(|t| t.name.clone())
        .collect()
}

/// The header's ABI as C compilers see it, in a shared object libabigail can read: for each
/// function of ylokh.h an exported pointer of its exact type, for each type a function
/// taking a pointer to it. (The library's own debug info is Rust's: it does not show a
/// struct reached only through a callback's `Option<fn>`, such as `ylokh_event`.)
fn header_probe(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(manifest_dir().join("include/ylokh.h")).unwrap();
    let h = header::parse(&text);
    let mut c = String::from(
        "/* Generated by tests/abi.rs: the ABI of ylokh.h, for abidw. */\n#include <ylokh.h>\n\n",
    );
    for t in h.types() {
        c.push_str(&format!(
            "void ylokh_abi_type_{n}(const {n} *p);\nvoid ylokh_abi_type_{n}(const {n} *p) {{ (void)p; }}\n",
            n = t.name
        ));
    }
    for f in h.functions() {
        c.push_str(&format!(
            "extern __typeof__({n}) *const ylokh_abi_fn_{n};\n__typeof__({n}) *const ylokh_abi_fn_{n} = {n};\n",
            n = f.name
        ));
    }
    let source = dir.join("ylokh_abi_probe.c");
    fs::write(&source, c).unwrap();
    let probe = dir.join("libylokh_abi_probe.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(cc);
    cmd.args([
        "-std=gnu99",
        "-g",
        "-O0",
        "-shared",
        "-fPIC",
        "-Wall",
        "-Werror",
    ])
    .arg(format!("-I{}", manifest_dir().join("include").display()))
    // Compiled from its directory by its bare name, so that the record names no
    // directory of this machine or run (abidw --no-comp-dir-path drops the rest).
    .current_dir(dir)
    .arg("ylokh_abi_probe.c")
    .arg("-o")
    .arg(&probe);
    let out = run_bounded(cmd, None, ABI_TOOL_LIMIT);
    assert!(
        out.ok(),
        "compiling the header probe failed:\n{}",
        out.show()
    );
    probe
}

/// libabigail suppressions: the opaque handles are not compared, nor the Rust names of the
/// callback types (the header's ABI compares their C types).
fn suppressions(dir: &Path) -> PathBuf {
    let opaque = opaque_types();
    assert!(
        opaque.iter().any(|t| t == "ylokh_client"),
        "no opaque types found in ylokh.h: {opaque:?}"
    );
    let text = format!(
        "# Opaque in C: their Rust layout is not part of the ABI.\n\
         [suppress_type]\n  name_regexp = (^|::)({})$\n  drop = yes\n\n\
         # The callbacks' Option<fn(...)> types: Rust names them with the module path of\n\
         # the types they take (moving ylokh_event to another module renames them), and the\n\
         # C types of the callbacks are compared in the header's ABI (ylokh.h.*.abi).\n\
         [suppress_type]\n  name_regexp = ^core::option::Option<\n",
        opaque.join("|")
    );
    let path = dir.join("abi.suppr");
    fs::write(&path, text).unwrap();
    path
}

fn work_dir(name: &str) -> PathBuf {
    let dir = profile_dir()
        .join("abi-test")
        .join(format!("{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        found,
        "`{name}` is not installed, and this test needs it: install the Debian package \
         `abigail-tools` (scripts/install-deps.sh does)"
    );
    Command::new(name)
}

/// `abidw` of `lib`, as the baseline is written: no paths or line numbers, type ids by hash
/// (so that a re-recording changes only what changed).
fn abidw(lib: &Path, suppr: &Path) -> String {
    let mut cmd = tool("abidw");
    cmd.args([
        "--no-corpus-path",
        "--no-comp-dir-path",
        "--no-show-locs",
        "--type-id-style",
        "hash",
        "--suppressions",
    ])
    .arg(suppr)
    .arg(lib);
    let out = run_bounded(cmd, None, ABI_TOOL_LIMIT);
    assert!(out.ok(), "abidw failed:\n{}", out.show());
    out.stdout
}

/// `abidiff` of the baseline against `lib` (added functions left out), as a leaf report.
fn abidiff(baseline: &Path, lib: &Path, suppr: &Path) -> Outcome {
    let mut cmd = tool("abidiff");
    cmd.args([
        "--no-added-syms",
        "--leaf-changes-only",
        "--impacted-interfaces",
        "--suppressions",
    ])
    .arg(suppr)
    .arg(baseline)
    .arg(lib);
    let out = run_bounded(cmd, None, ABI_TOOL_LIMIT);
    // Bit 1: error, bit 2: usage error; 4 and 8 are changes, judged from the report.
    let code = out.code().unwrap_or(1);
    assert!(code & 3 == 0, "abidiff failed:\n{}", out.show());
    out
}

/// The incompatible changes in an `abidiff --leaf-changes-only --impacted-interfaces`
/// report: everything but a struct growing by fields appended at its end.
fn incompatible_changes(report: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let count = |line: &str, word: &str| -> u64 {
        // "... summary: 1 Removed, 0 Changed, 0 Added function"
        line.split(',')
            .find(|part| part.trim_end().ends_with(word) || part.contains(&format!(" {word}")))
            .and_then(|part| {
                part.rsplit(':')
                    .next()
                    .unwrap_or(part)
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    let mut lines = report.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.is_empty()
            || t.starts_with("Leaf changes summary")
            || t.starts_with("Changed leaf types summary")
        {
            continue;
        }
        if t.contains("summary:") {
            if count(t, "Removed") > 0 || count(t, "Changed") > 0 {
                problems.push(t.to_owned());
            }
            continue;
        }
        // A leaf type change: "'struct ylokh_event' changed:" and its indented details.
        if line.starts_with('\'') && t.ends_with("changed:") {
            let what = t.trim_end_matches(" changed:").to_owned();
            let mut old_size: Option<u64> = None;
            let mut grew = false;
            let mut in_insertions = false;
            while let Some(next) = lines.peek() {
                if !next.starts_with(' ') && !next.trim().is_empty() {
                    break;
                }
                let d = lines.next().unwrap().trim();
                if d.is_empty() {
                    continue;
                }
                if let Some(rest) = d.strip_prefix("type size changed from ") {
                    let nums: Vec<u64> = rest
                        .split_whitespace()
                        .filter_map(|w| w.parse().ok())
                        .collect();
                    if nums.len() == 2 && nums[1] > nums[0] {
                        old_size = Some(nums[0]);
                        grew = true;
                    } else {
                        problems.push(format!("{what}: {d}"));
                    }
                    in_insertions = false;
                } else if d == "type size hasn't changed" {
                    in_insertions = false;
                } else if d.ends_with("data member insertion:")
                    || d.ends_with("data member insertions:")
                {
                    in_insertions = true;
                } else if d.ends_with("impacted interface:") || d.ends_with("impacted interfaces:")
                {
                    // The functions listed after it are consequences, not changes.
                    while lines.peek().is_some_and(|l| l.starts_with("    ")) {
                        lines.next();
                    }
                    in_insertions = false;
                } else if in_insertions && d.starts_with('\'') && d.contains(", at offset ") {
                    let offset: Option<u64> = d
                        .split(", at offset ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|n| n.parse().ok());
                    match (offset, old_size) {
                        (Some(o), Some(old)) if grew && o >= old => {}
                        _ => problems.push(format!("{what}: a field inserted before the end: {d}")),
                    }
                } else {
                    problems.push(format!("{what}: {d}"));
                    in_insertions = false;
                }
            }
            continue;
        }
        problems.push(t.to_owned());
    }
    problems
}

/// Compares `binary` with the baseline of `of` (or records it when blessing), and the
/// functions it records (see [`check_functions`]).
fn check_against_baseline(of: Of, binary: &Path, suppr: &Path, expect_in_record: &str) {
    let what = match of {
        Of::Library => "libylokh.so",
        Of::Header => "ylokh.h",
    };
    let baseline = baseline_path(what);
    let bless = std::env::var_os("YLOKH_ABI_BLESS").is_some();
    let force = std::env::var("ABI_FORCE").is_ok_and(|v| v == "1");
    if !baseline.exists() {
        assert!(
            bless,
            "no ABI baseline {}: run `make abi-baseline` and commit it",
            baseline.display()
        );
    } else {
        let out = abidiff(&baseline, binary, suppr);
        let problems = incompatible_changes(&out.stdout);
        let accepted = problems.is_empty() || (bless && force);
        if !accepted {
            panic!(
                "incompatible ABI changes against {}:\n  {}\n\nabidiff's report:\n{}\n\
                 An incompatible change needs a new SONAME: raise the version in Cargo.toml \
                 (the minor while 0.x), then `make abi-baseline`. See the README, \"ABI policy\".",
                baseline.display(),
                problems.join("\n  "),
                out.stdout
            );
        }
    }
    let recorded = abidw(binary, suppr);
    assert!(
        recorded.contains(expect_in_record),
        "abidw of {} does not mention {expect_in_record}: no debug info?",
        binary.display()
    );
    let old = fs::read_to_string(&baseline).ok();
    check_functions(of, &recorded, old.as_deref(), bless);
    if bless {
        fs::create_dir_all(baseline.parent().unwrap()).unwrap();
        fs::write(&baseline, &recorded).unwrap();
        eprintln!("recorded {}", baseline.display());
    }
}

#[test]
fn the_library_abi_has_no_incompatible_change_from_the_baseline() {
    let dir = work_dir("library");
    let suppr = suppressions(&dir);
    check_against_baseline(Of::Library, &library(), &suppr, "'ylokh_request'");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_header_abi_has_no_incompatible_change_from_the_baseline() {
    let dir = work_dir("header");
    let suppr = suppressions(&dir);
    let probe = header_probe(&dir);
    check_against_baseline(Of::Header, &probe, &suppr, "'ylokh_event'");
    let _ = fs::remove_dir_all(&dir);
}

/// The committed library baseline with `edit` applied to its `<elf-symbol>` lines.
fn edited_baseline(edit: impl Fn(&str) -> Option<String>) -> String {
    let text = fs::read_to_string(baseline_path("libylokh.so")).unwrap();
    let mut out = String::new();
    let mut in_symbols = false;
    for line in text.lines() {
        in_symbols |= line.trim() == "<elf-function-symbols>";
        if line.trim() == "</elf-function-symbols>" {
            in_symbols = false;
        }
        let edited = if in_symbols && line.trim().starts_with("<elf-symbol ") {
            edit(line)
        } else {
            Some(line.to_owned())
        };
        if let Some(l) = edited {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Whether [`check_functions`] rejects a library whose record is `record`.
fn rejected(record: &str, baseline: &str) -> bool {
    std::panic::catch_unwind(|| check_functions(Of::Library, record, Some(baseline), false))
        .is_err()
}

#[test]
fn a_test_hook_exported_or_a_function_removed_or_added_is_caught() {
    let baseline = fs::read_to_string(baseline_path("libylokh.so")).unwrap();
    let functions = recorded_functions(&baseline, Of::Library);
    assert_eq!(
        functions,
        header_functions(),
        "the baseline does not record exactly the functions of ylokh.h: `make abi-baseline`"
    );
    assert!(functions.contains("ylokh_chat") && !functions.contains("ylokh_test_panic"));
    check_functions(Of::Library, &baseline, Some(&baseline), false);

    // A test hook exported again: not in the header.
    let hooked = edited_baseline(|l| {
        if l.contains("name='ylokh_chat'") {
            Some(format!(
                "{l}\n{}",
                l.replace("ylokh_chat", "ylokh_test_panic")
            ))
        } else {
            Some(l.to_owned())
        }
    });
    assert!(recorded_functions(&hooked, Of::Library).contains("ylokh_test_panic"));
    assert!(rejected(&hooked, &baseline));
    // A function removed from the library (and the header unchanged).
    let removed = edited_baseline(|l| (!l.contains("name='ylokh_chat'")).then(|| l.to_owned()));
    assert_eq!(
        recorded_functions(&removed, Of::Library).len() + 1,
        functions.len()
    );
    assert!(rejected(&removed, &baseline));
    // A function the baseline does not record yet (added without `make abi-baseline`).
    assert!(rejected(&baseline, &removed));
}

#[test]
fn a_report_is_judged_by_what_changed() {
    let grown = "Leaf changes summary: 1 artifact changed\n\
        Changed leaf types summary: 1 leaf type changed\n\
        Removed/Changed/Added functions summary: 0 Removed, 0 Changed, 0 Added function\n\
        Removed/Changed/Added variables summary: 0 Removed, 0 Changed, 0 Added variable\n\n\
        'struct req' changed:\n  type size changed from 192 to 256 (in bits)\n  2 data member insertions:\n    \
        'int c', at offset 192 (in bits)\n    'long int d', at offset 224 (in bits)\n  one impacted interface:\n    \
        function int f(const req*)\n";
    assert_eq!(incompatible_changes(grown), Vec::<String>::new());

    let inserted = "'struct req' changed:\n  type size changed from 192 to 256 (in bits)\n  1 data member insertion:\n    \
        'int z', at offset 64 (in bits)\n  there are data member changes:\n    'const char* a' offset changed from 64 to 128 (in bits) (by +64 bits)\n";
    assert_eq!(
        incompatible_changes(inserted).len(),
        3,
        "{:?}",
        incompatible_changes(inserted)
    );

    let retyped =
        "'struct req' changed:\n  type size hasn't changed\n  there are data member changes:\n    \
        type 'int' of 'req::b' changed:\n      type name changed from 'int' to 'long int'\n";
    assert!(!incompatible_changes(retyped).is_empty());

    let removed =
        "Removed/Changed/Added functions summary: 1 Removed, 0 Changed, 0 Added function\n\n\
        1 Removed function:\n\n  [D] 'function int g(opaque*)'    {g}\n";
    assert!(!incompatible_changes(removed).is_empty());

    let shrunk = "'struct req' changed:\n  type size changed from 256 to 192 (in bits)\n";
    assert!(!incompatible_changes(shrunk).is_empty());
}
