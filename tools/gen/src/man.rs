//! The man pages (section 3): one per function and type, and `ylokh.3`, the overview.

use super::header::{group, section, summary, Header, Item, Kind, GROUPS};
use super::reference::Examples;
use std::fmt::Write as _;

/// Text for roff: backslashes and hyphens escaped, a leading `.` or `'` made literal.
fn escape(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Prose: escaped, and `code` spans in bold.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        let part = escape(part).trim_start_matches("\\&").to_owned();
        if i % 2 == 1 {
            let _ = write!(out, "\\fB{part}\\fR");
        } else {
            out.push_str(&part);
        }
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// A block of code, kept as written.
fn code_block(out: &mut String, code: &str) {
    out.push_str(".PP\n.nf\n.RS 4\n");
    for line in code.trim_end().lines() {
        out.push_str(&escape(line));
        out.push('\n');
    }
    out.push_str(".RE\n.fi\n");
}

/// Doc comment lines (without `# ` headings) as paragraphs and bullet lists.
fn paragraphs(out: &mut String, lines: &[String]) {
    let mut open = false;
    for line in lines {
        let t = line.trim_end();
        if t.trim().is_empty() {
            open = false;
            continue;
        }
        if let Some(item) = t.strip_prefix("- ") {
            out.push_str(".IP \\(bu 2\n");
            out.push_str(&prose(item));
            out.push('\n');
            open = true;
            continue;
        }
        if !open {
            out.push_str(".PP\n");
            open = true;
        }
        out.push_str(&prose(t.trim_start()));
        out.push('\n');
    }
}

/// The section name a `# Title` of a doc comment becomes.
fn section_name(title: &str) -> String {
    match title {
        "Returns" => "RETURN VALUE".to_owned(),
        "Example" | "Examples" => "EXAMPLES".to_owned(),
        other => other.to_uppercase(),
    }
}

/// A doc comment: the text before the first heading under DESCRIPTION, then each `# Title`
/// section under its own heading.
fn doc_sections(out: &mut String, doc: &[String]) {
    let first = doc
        .iter()
        .position(|l| l.starts_with("# "))
        .unwrap_or(doc.len());
    out.push_str(".SH DESCRIPTION\n");
    paragraphs(out, &doc[..first]);
    let mut at = first;
    while at < doc.len() {
        let title = doc[at].trim_start_matches("# ").trim();
        let body = section(doc, title).unwrap_or_default();
        let _ = writeln!(out, ".SH {}", section_name(title));
        paragraphs(out, body);
        at += 1 + body.len();
    }
}

fn title(out: &mut String, name: &str, h: &Header) {
    let _ = writeln!(
        out,
        ".\\\" Generated from include/ylokh.h by tools/gen; do not edit. Regenerate with: make docs\n\
         .TH {} 3 \"\" \"libylokh {}\" \"libylokh manual\"\n.nh\n.ad l",
        name.to_uppercase(),
        h.version()
    );
}

fn see_also(out: &mut String, names: &[&str]) {
    out.push_str(".SH SEE ALSO\n");
    let last = names.len().saturating_sub(1);
    for (i, n) in names.iter().enumerate() {
        let _ = writeln!(
            out,
            ".BR {} (3){}",
            escape(n),
            if i < last { "," } else { "" }
        );
    }
}

fn item_page(h: &Header, item: &Item, examples: &Examples) -> String {
    let mut out = String::new();
    title(&mut out, &item.name, h);
    let _ = writeln!(
        out,
        ".SH NAME\n{} \\- {}",
        escape(&item.name),
        prose(&summary(&item.doc))
    );
    out.push_str(".SH SYNOPSIS\n.nf\n.B #include <ylokh.h>\n.fi\n");
    code_block(&mut out, item.code.trim());
    doc_sections(&mut out, &item.doc);
    let mut also: Vec<&str> = vec!["ylokh"];
    if item.kind == Kind::Function {
        let g = group(&item.name);
        if let Some(example) = examples.of(g) {
            if section(&item.doc, "Example").is_none() {
                let _ = writeln!(
                    out,
                    ".SH EXAMPLES\n.PP\n{} (docs/examples/{} in the source tree):",
                    prose(g),
                    Examples::file(g)
                );
                code_block(&mut out, example);
            }
        }
        also.extend(
            h.functions()
                .filter(|f| group(&f.name) == g && f.name != item.name)
                .map(|f| f.name.as_str()),
        );
    }
    see_also(&mut out, &also);
    out
}

fn overview(h: &Header) -> String {
    let mut out = String::new();
    title(&mut out, "ylokh", h);
    out.push_str(
        ".SH NAME\nylokh \\- streaming chat\\-completion client for OpenAI\\-compatible servers\n\
         .SH SYNOPSIS\n.nf\n.B #include <ylokh.h>\n.PP\n\
         .B cc app.c $(pkg\\-config \\-\\-cflags \\-\\-libs ylokh)\n.fi\n",
    );
    out.push_str(".SH DESCRIPTION\n");
    let preamble: Vec<String> = h
        .preamble
        .iter()
        .map(|l| {
            l.replace(
                "Conventions for every function below:",
                "Conventions for every function:",
            )
        })
        .collect();
    paragraphs(&mut out, &preamble);
    for (g, _) in GROUPS {
        let functions: Vec<&Item> = h.functions().filter(|f| group(&f.name) == *g).collect();
        if functions.is_empty() {
            continue;
        }
        let _ = writeln!(out, ".SS {}", prose(g));
        for f in functions {
            let _ = writeln!(
                out,
                ".TP\n.BR {} (3)\n{}",
                escape(&f.name),
                prose(&summary(&f.doc))
            );
        }
    }
    out.push_str(".SH STATUS CODES\n");
    for d in h.statuses() {
        let _ = writeln!(
            out,
            ".TP\n.B {} ({})\n{}",
            escape(&d.name),
            escape(&d.code),
            prose(&d.doc.join(" "))
        );
    }
    out.push_str(".SH MACROS\n");
    for m in h.function_macros() {
        let _ = writeln!(
            out,
            ".TP\n.B {}\n{}",
            escape(&m.code),
            prose(&m.doc.join(" "))
        );
    }
    for v in h.version_macros() {
        let _ = writeln!(
            out,
            ".TP\n.B {} {}\n{}",
            escape(&v.name),
            escape(&v.code),
            prose(&v.doc.join(" "))
        );
    }
    out.push_str(".SH TYPES\n");
    for t in h.types() {
        let _ = writeln!(
            out,
            ".TP\n.BR {} (3)\n{}",
            escape(&t.name),
            prose(&summary(&t.doc))
        );
    }
    out.push_str(
        ".SH SEE ALSO\nThe reference in HTML\\-friendly form: docs/reference.md in the source tree.\n",
    );
    out
}

/// Every page: (name without ".3", roff text).
pub fn pages(h: &Header, examples: &Examples) -> Vec<(String, String)> {
    let mut pages = vec![("ylokh".to_owned(), overview(h))];
    for item in h.items.iter().filter(|i| i.kind != Kind::Define) {
        pages.push((item.name.clone(), item_page(h, item, examples)));
    }
    pages
}
