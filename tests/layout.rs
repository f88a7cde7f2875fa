//! The shape of `src/` that the README's Layout section promises (issue 10): every file
//! listed there and nothing unlisted, no file over 600 lines of code before its tests,
//! `unsafe` only in `src/ffi/`, and no module using one listed above it.

use std::fs;
use std::path::Path;

const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_str().unwrap().to_owned());
        }
    }
}

fn sources() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    files.sort();
    assert!(files.len() > 20, "{files:?}");
    files
}

/// The README's Layout block for `src/`: each file in order, top layer first.
fn layout() -> Vec<String> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README has a Layout section");
    let block = section.split("```").nth(1).expect("a code block");
    let mut files = Vec::new();
    for line in block.lines() {
        // A file's line starts with its path; the rest of the line says what it is.
        if let Some(path) = line.split(' ').next().filter(|w| w.starts_with("src/")) {
            files.push(path.to_owned());
        }
    }
    files
}

/// The part of a file before its unit tests.
fn code_of(text: &str) -> &str {
    text.split("\n#[cfg(test)]\nmod tests").next().unwrap()
}

#[test]
fn the_readme_lists_every_source_file_and_only_those() {
    let mut listed = layout();
    listed.sort();
    listed.dedup();
    assert_eq!(listed, sources(), "README Layout vs src/");
}

#[test]
fn no_file_is_over_600_lines_before_its_tests() {
    for file in sources() {
        let text = fs::read_to_string(&file).unwrap();
        let lines = code_of(&text).lines().count();
        assert!(lines <= MAX_LINES, "{file}: {lines} lines before its tests");
    }
}

#[test]
fn unsafe_code_lives_only_in_ffi() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"));
    for file in sources().iter().filter(|f| !f.starts_with("src/ffi/")) {
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            let keyword = ["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"];
            assert!(
                !keyword.iter().any(|k| code.contains(k)) && !code.contains("allow(unsafe_code)"),
                "{file}:{}: {line}",
                n + 1
            );
        }
    }
}

#[test]
fn no_module_uses_one_listed_above_it() {
    // A top-level module's rank: where its first file appears in the Layout list.
    let listed = layout();
    let module = |file: &str| -> String {
        let rest = file.trim_start_matches("src/").trim_end_matches(".rs");
        rest.split('/').next().unwrap().to_owned()
    };
    let mut order: Vec<String> = Vec::new();
    for file in &listed {
        let m = module(file);
        if !order.contains(&m) {
            order.push(m);
        }
    }
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut violations = Vec::new();
    for file in &listed {
        let own = module(file);
        if ["ffi", "lib", "fuzzing"].contains(&own.as_str()) {
            continue; // the top: they see every layer
        }
        let text = fs::read_to_string(file).unwrap();
        let code = code_of(&text);
        for (at, _) in code.match_indices("crate::") {
            let used: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            match (rank(&own), rank(&used)) {
                (Some(me), Some(it)) if it < me => violations.push(format!("{file} uses {used}")),
                _ => {}
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Every test the README's Guarantees table names (`tests/x.rs` `some_test`, or a
/// `prefix_*`) exists in that file: a guarantee is only as good as the test behind it.
#[test]
fn every_test_the_guarantees_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let table = readme
        .split("\n## Guarantees\n")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    for row in table.lines().filter(|l| l.starts_with('|')) {
        let mut file: Option<String> = None;
        // The backticked words of the row, in order: a test file, then its tests.
        for word in row.split('`').skip(1).step_by(2) {
            if word.starts_with("tests/") && word.ends_with(".rs") {
                file = Some(fs::read_to_string(root.join(word)).unwrap());
                continue;
            }
            let is_test_name = word.len() > 12
                && word.contains('_')
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_*".contains(c));
            let (Some(text), true) = (&file, is_test_name) else {
                continue;
            };
            let found = match word.strip_suffix('*') {
                Some(prefix) => text.contains(&format!("fn {prefix}")),
                None => text.contains(&format!("fn {word}(")),
            };
            checked += 1;
            if !found {
                missing.push(word.to_owned());
            }
        }
    }
    assert!(checked > 20, "only {checked} test names found in the table");
    assert!(
        missing.is_empty(),
        "named in README, not found: {missing:?}"
    );
}
