//! The generated files are current: `docs/reference.md` and the man pages (from
//! `include/ylokh.h` and `docs/examples/`) and `THIRD-PARTY-NOTICES` (from the dependency
//! tree). The generator is tools/gen (`make docs`); this test compiles the same code and
//! only compares. Also: the header's documentation is complete, and the man pages render
//! without warnings.
//!
//! The examples of `docs/examples/` are compiled and run in `tests/c_api.rs`.
//!
//! Needs `man` (Debian's man-db; scripts/install-deps.sh installs it).

mod common;
#[path = "../tools/gen/src/lib.rs"]
mod gen;

use common::process::{manifest_dir, run_bounded};
use std::process::Command;
use std::time::Duration;

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

#[test]
fn generated_files_are_current() {
    let root = manifest_dir();
    let outputs = gen::generate(&root, &cargo()).unwrap_or_else(|e| panic!("{e}"));
    let stale = gen::stale(&root, &outputs);
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}\nrun `make docs` and commit the result"
    );
    // Every function and type has its page, and the overview is there.
    let h = gen::read_header(&root).unwrap();
    for item in h.functions().chain(h.types()) {
        let page = format!("{}/{}.3", gen::MAN_DIR, item.name);
        assert!(outputs.iter().any(|o| o.path == page), "no {page}");
    }
    assert!(outputs
        .iter()
        .any(|o| o.path == format!("{}/ylokh.3", gen::MAN_DIR)));
}

#[test]
fn every_function_is_documented_and_every_group_has_an_example() {
    let root = manifest_dir();
    let h = gen::read_header(&root).unwrap();
    assert!(
        h.functions().count() >= 30,
        "only {} functions parsed",
        h.functions().count()
    );
    let examples = gen::reference::Examples::read(&root).unwrap();
    let problems = gen::reference::lint(&h, &examples);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_stale_file_is_reported_and_rewritten() {
    // The comparison itself: a file that differs, and a man page nothing generates.
    let dir = std::env::temp_dir().join(format!("ylokh-generated-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(gen::MAN_DIR)).unwrap();
    std::fs::write(dir.join("a.md"), "old").unwrap();
    std::fs::write(dir.join(gen::MAN_DIR).join("gone.3"), "x").unwrap();
    std::fs::write(dir.join(gen::MAN_DIR).join("kept.3"), "same").unwrap();
    let outputs = [
        gen::Output {
            path: "a.md".to_owned(),
            text: "new".to_owned(),
        },
        gen::Output {
            path: format!("{}/kept.3", gen::MAN_DIR),
            text: "same".to_owned(),
        },
    ];
    let stale = gen::stale(&dir, &outputs);
    // And `make docs` (write) brings the directory up to date.
    let written = gen::write(&dir, &outputs);
    let after = gen::stale(&dir, &outputs);
    let a = std::fs::read_to_string(dir.join("a.md"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        stale,
        [
            "a.md".to_owned(),
            format!("{}/gone.3 (no longer generated)", gen::MAN_DIR)
        ]
    );
    assert_eq!(
        written.unwrap(),
        [
            format!("{}/gone.3 (removed)", gen::MAN_DIR),
            "a.md".to_owned()
        ]
    );
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(a.unwrap(), "new");
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = manifest_dir().join(gen::MAN_DIR);
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    pages.sort();
    assert!(pages.len() > 30, "{} man pages", pages.len());
    for page in pages {
        let mut cmd = Command::new("man");
        cmd.args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&page)
            .env("MANWIDTH", "80")
            .env_remove("MAN_KEEP_FORMATTING")
            .env_remove("MANPAGER")
            .env("PAGER", "cat");
        let out = run_bounded(cmd, None, Duration::from_secs(60));
        assert!(
            out.ok() && out.stderr.trim().is_empty() && out.stdout.contains("NAME"),
            "`man -l {}` complains (install Debian's man-db if man is missing):\n{}",
            page.display(),
            out.show()
        );
    }
}
