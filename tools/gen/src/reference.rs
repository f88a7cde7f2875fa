//! `docs/reference.md`: the header as a Markdown reference.

use super::header::{group, section, since, summary, Header, GROUPS};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// The example programs of `docs/examples/`, one per group (`None` where a group has none).
pub struct Examples(Vec<(&'static str, Option<String>)>);

impl Examples {
    pub fn read(root: &Path) -> Result<Examples, String> {
        let mut found = Vec::new();
        for (group, file) in GROUPS {
            let path = root.join("docs/examples").join(file);
            let text = match fs::read_to_string(&path) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            found.push((*group, text));
        }
        Ok(Examples(found))
    }

    /// The example of `group`, if it has one.
    pub fn of(&self, group: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(g, _)| *g == group)
            .and_then(|(_, t)| t.as_deref())
    }

    /// The file name of `group`'s example in `docs/examples/`.
    pub fn file(group: &str) -> &'static str {
        GROUPS
            .iter()
            .find(|(g, _)| *g == group)
            .map_or("", |(_, f)| f)
    }
}

/// Markdown prose from C comments: `<` and `>` outside code spans are escaped, so that
/// "Bearer <key>" is not taken for an HTML tag.
pub fn escape_prose(text: &str) -> String {
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

/// The doc comment as Markdown: a `# Title` line becomes a bold label.
fn doc_markdown(doc: &[String]) -> String {
    let mut out = String::new();
    for line in doc {
        if let Some(title) = line.strip_prefix("# ") {
            let _ = writeln!(out, "\n**{title}.**\n");
        } else {
            out.push_str(&escape_prose(line));
            out.push('\n');
        }
    }
    out
}

/// The groups that have at least one function, in order.
fn groups_in_use(h: &Header) -> Vec<&'static str> {
    GROUPS
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| h.functions().any(|f| group(&f.name) == *g))
        .collect()
}

pub fn markdown(h: &Header, examples: &Examples) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# libylokh C API reference (version {})\n", h.version());
    md.push_str(
        "<!-- Generated from include/ylokh.h and docs/examples/ by tools/gen; do not edit. \
         Regenerate with: make docs -->\n\n",
    );
    md.push_str(
        "Every declaration of [`include/ylokh.h`](../include/ylokh.h) with its documentation, \
         generated from the header; the same text is in the man pages (`man 3 ylokh` after \
         `make install`). For the C++ (`ylokh.hpp`), Go and Swift wrappers and for \
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

    let groups = groups_in_use(h);
    md.push_str("## Functions\n\n| Function | Summary | Since |\n| --- | --- | --- |\n");
    for g in &groups {
        for f in h.functions().filter(|f| group(&f.name) == *g) {
            let _ = writeln!(
                md,
                "| [`{n}`](#{n}) | {s} | {v} |",
                n = f.name,
                s = escape_prose(&summary(&f.doc)).replace('|', "\\|"),
                v = since(&f.doc).unwrap_or_default()
            );
        }
    }
    md.push('\n');
    for g in &groups {
        let _ = writeln!(md, "### {g}\n");
        if let Some(example) = examples.of(g) {
            let _ = writeln!(
                md,
                "Example ([`docs/examples/{}`](examples/{})):\n\n```c\n{}```\n",
                Examples::file(g),
                Examples::file(g),
                example
            );
        }
        for f in h.functions().filter(|f| group(&f.name) == *g) {
            let _ = writeln!(md, "#### `{}`\n\n```c\n{}\n```\n", f.name, f.code.trim());
            md.push_str(&doc_markdown(&f.doc));
            md.push('\n');
        }
    }

    md.push_str("## Types\n\n");
    for t in h.types() {
        let _ = writeln!(md, "### `{}`\n", t.name);
        md.push_str(&doc_markdown(&t.doc));
        let _ = writeln!(md, "\n```c\n{}\n```\n", t.code.trim());
    }

    md.push_str("## Status codes\n\n| Code | Value | Meaning |\n| --- | --- | --- |\n");
    for d in h.statuses() {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            d.name,
            d.code,
            escape_prose(&d.doc.join(" ")).replace('|', "\\|")
        );
    }
    md.push_str("\n## Version macros\n\n| Macro | Value | Meaning |\n| --- | --- | --- |\n");
    for d in h.version_macros() {
        let meaning = if d.doc.is_empty() {
            "from Cargo.toml".to_owned()
        } else {
            d.doc.join(" ")
        };
        let _ = writeln!(md, "| `{}` | `{}` | {} |", d.name, d.code, meaning);
    }
    md.push_str("\n## Macros\n\n");
    for m in h.function_macros() {
        let _ = writeln!(md, "### `{}`\n", m.name);
        md.push_str(&doc_markdown(&m.doc));
        let _ = writeln!(md, "\n```c\n#define {}\n```\n", m.code);
    }
    md
}

/// Problems with the documentation of the header's functions (no text, no "Since", no
/// "# Returns" listing `YLOKH_OK` and the error statuses) and groups without an example.
pub fn lint(h: &Header, examples: &Examples) -> Vec<String> {
    let mut problems = Vec::new();
    for f in h.functions() {
        if f.doc.iter().all(|l| l.trim().is_empty()) {
            problems.push(format!("{}: no documentation", f.name));
            continue;
        }
        if since(&f.doc).is_none() {
            problems.push(format!("{}: no \"Since X.Y.Z\"", f.name));
        }
        // What it returns, and for a status every status it can return: "# Returns" with
        // YLOKH_OK first. (Any status function may also return YLOKH_E_INTERNAL; the
        // conventions say so once.)
        let returns_something = !f.code.trim_start().starts_with("void ");
        match section(&f.doc, "Returns") {
            None if returns_something => {
                problems.push(format!("{}: no \"# Returns\" section", f.name))
            }
            Some(lines) if f.code.trim_start().starts_with("ylokh_status") => {
                let first = lines.iter().find(|l| !l.trim().is_empty());
                if !first.is_some_and(|l| l.starts_with("- `YLOKH_OK`")) {
                    problems.push(format!(
                        "{}: \"# Returns\" does not start with \"- `YLOKH_OK`: ...\"",
                        f.name
                    ));
                }
                if !lines.iter().any(|l| l.starts_with("- `YLOKH_E_")) {
                    problems.push(format!("{}: \"# Returns\" names no error status", f.name));
                }
            }
            _ => {}
        }
    }
    for g in groups_in_use(h) {
        if examples.of(g).is_none() {
            problems.push(format!(
                "group \"{g}\" has no example: write docs/examples/{}",
                Examples::file(g)
            ));
        }
    }
    problems
}
