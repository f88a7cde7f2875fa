//! A reader for `include/ylokh.h` as cbindgen writes it: the opening comment (the
//! conventions), then `#define`s, types and functions, each after its documentation comment
//! (`//` lines or a `/* ... */` block).

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Function,
    Type,
    Define,
}

#[derive(Debug)]
pub struct Item {
    pub kind: Kind,
    pub name: String,
    /// The documentation comment right above the declaration, one entry per line, without
    /// the comment markers.
    pub doc: Vec<String>,
    /// The declaration as written (a `#define`'s value for defines).
    pub code: String,
}

pub struct Header {
    /// The opening comment: the conventions of every function.
    pub preamble: Vec<String>,
    pub items: Vec<Item>,
}

impl Header {
    pub fn define(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.kind == Kind::Define && i.name == name)
            .map(|i| i.code.as_str())
    }

    pub fn functions(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.kind == Kind::Function)
    }

    pub fn types(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.kind == Kind::Type)
    }

    /// The status codes: `YLOKH_OK` and `YLOKH_E_*`.
    pub fn statuses(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| {
            i.kind == Kind::Define && (i.name == "YLOKH_OK" || i.name.starts_with("YLOKH_E_"))
        })
    }

    /// The version macros: `YLOKH_VERSION*`.
    pub fn version_macros(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|i| i.kind == Kind::Define && i.name.starts_with("YLOKH_VERSION"))
    }

    /// The function-like macros (`YLOKH_HAS_FIELD(...)`), with their whole definition.
    pub fn function_macros(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|i| i.kind == Kind::Define && i.code.starts_with(&format!("{}(", i.name)))
    }

    /// The version string of `YLOKH_VERSION`, without quotes.
    pub fn version(&self) -> &str {
        self.define("YLOKH_VERSION")
            .unwrap_or_default()
            .trim_matches('"')
    }
}

/// The C identifiers in `text`.
pub fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// The first C identifier followed by `(` in `code`, or in `(*name)` form.
fn declared_name(code: &str) -> Option<String> {
    if let Some(start) = code.find("(*") {
        let rest = &code[start + 2..];
        return rest.find(')').map(|end| rest[..end].trim().to_owned());
    }
    let idx = code.find('(')?;
    identifiers(&code[..idx]).last().map(str::to_owned)
}

/// One line of a block comment without its markers: `/*`, `*/`, and a leading ` * `.
fn block_comment_line(line: &str) -> String {
    let t = line.trim();
    let t = t
        .strip_prefix("/**")
        .or_else(|| t.strip_prefix("/*"))
        .unwrap_or(t);
    let t = t.strip_suffix("*/").unwrap_or(t);
    let t = t.trim_end();
    let t = match t.trim_start().strip_prefix('*') {
        Some(rest) => rest,
        None => t.trim_start(),
    };
    t.strip_prefix(' ').unwrap_or(t).trim_end().to_owned()
}

/// Reads a block comment that starts on `first` (up to its `*/`), as lines.
fn block_comment<'a>(first: &str, lines: &mut impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = first.to_owned();
    loop {
        let closed = line.contains("*/");
        let text = block_comment_line(&line);
        let marker_only = matches!(line.trim(), "/*" | "/**" | "*/");
        if !marker_only {
            out.push(text);
        }
        if closed {
            break;
        }
        match lines.next() {
            Some(next) => line = next.to_owned(),
            None => break,
        }
    }
    // Leading and trailing empty lines carry nothing.
    while out.first().is_some_and(|l| l.is_empty()) {
        out.remove(0);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

pub fn parse(text: &str) -> Header {
    let mut lines = text.lines().peekable();
    let mut preamble = Vec::new();
    if let Some(first) = lines.peek().copied() {
        if first.trim_start().starts_with("/*") {
            lines.next();
            preamble = block_comment(first, &mut lines);
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
        if t.starts_with("/*") {
            let comment = block_comment(line, &mut lines);
            if !comment
                .first()
                .is_some_and(|l| l.starts_with("Generated by"))
            {
                doc.extend(comment);
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("#define ") {
            // A function-like macro: the name ends at its '('; the body may continue on
            // lines ending in a backslash. Defined twice (C and C++): the first is kept.
            let mut definition = rest.trim_end().to_owned();
            while definition.ends_with('\\') {
                definition.pop();
                let Some(next) = lines.next() else { break };
                definition.push_str(next.trim());
            }
            let (name, value) = match definition.find(['(', ' ', '\t']) {
                Some(at) if definition[at..].starts_with('(') => {
                    (definition[..at].to_owned(), definition.trim().to_owned())
                }
                Some(at) => (
                    definition[..at].to_owned(),
                    definition[at..].trim().to_owned(),
                ),
                None => (definition.clone(), String::new()),
            };
            let seen = items
                .iter()
                .any(|i: &Item| i.kind == Kind::Define && i.name == name);
            if name.starts_with("YLOKH_") && !value.is_empty() && !seen {
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
        // A comment before `#ifdef __cplusplus` documents the macro defined inside.
        if t.starts_with("#if") || t.starts_with("#else") || t.starts_with("#endif") {
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
        let Some(name) = name else { continue };
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
pub fn since(doc: &[String]) -> Option<String> {
    let text = doc.join(" ");
    let at = text.find("Since ")? + "Since ".len();
    let version: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version = version.trim_end_matches('.').to_owned();
    (version.split('.').count() == 3).then_some(version)
}

/// The first sentence of a doc comment (its first paragraph, up to the first ". ").
pub fn summary(doc: &[String]) -> String {
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
    text[..end].to_owned()
}

/// The lines of the `# title` section of a doc comment (up to the next `# ` heading), or
/// None when there is no such section.
pub fn section<'a>(doc: &'a [String], title: &str) -> Option<&'a [String]> {
    let start = doc.iter().position(|l| l.trim() == format!("# {title}"))? + 1;
    let len = doc[start..]
        .iter()
        .position(|l| l.starts_with("# "))
        .unwrap_or(doc.len() - start);
    Some(&doc[start..start + len])
}

/// Which group of the reference a function belongs to.
pub fn group(name: &str) -> &'static str {
    if name == "ylokh_conversation_chat" || name.starts_with("ylokh_chat") {
        "Chatting"
    } else if name.starts_with("ylokh_client_") {
        "Clients and settings"
    } else if name.starts_with("ylokh_conversation_") {
        "Conversations"
    } else if name.starts_with("ylokh_cancel_") {
        "Cancelling"
    } else if name.starts_with("ylokh_stream_") {
        "Pulling a reply"
    } else if name == "ylokh_string_free" {
        "Memory"
    } else {
        "Errors, versions, provider"
    }
}

/// The groups, in the order of the reference, each with the file name of its example in
/// `docs/examples/`.
pub const GROUPS: &[(&str, &str)] = &[
    ("Clients and settings", "client.c"),
    ("Chatting", "chat.c"),
    ("Pulling a reply", "stream.c"),
    ("Conversations", "conversation.c"),
    ("Cancelling", "cancel.c"),
    ("Memory", "memory.c"),
    ("Errors, versions, provider", "errors.c"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_functions_types_and_defines_with_either_comment_style() {
        let h = parse(
            "/*\n * Intro.\n */\n\n#define YLOKH_OK 0\n\n// A callback.\ntypedef int (*cb)(void *u,\n    size_t n);\n\n\
             /*\n * Doc.\n *\n * Since 1.2.3.\n */\nint f(int a,\n      int b);\n/* One line. */\ntypedef struct s {\n  /* x */\n  int x;\n} s;\n",
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
        assert_eq!(h.items[2].doc, ["Doc.", "", "Since 1.2.3."]);
        assert_eq!(h.items[3].doc, ["One line."]);
        assert_eq!(since(&h.items[2].doc).as_deref(), Some("1.2.3"));
        assert_eq!(
            summary(&["Sets x (e.g. 1). More.".to_owned()]),
            "Sets x (e.g. 1)."
        );
    }

    #[test]
    fn sections_end_at_the_next_heading() {
        let doc: Vec<String> = ["A.", "# Returns", "- x", "# Safety", "s"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(section(&doc, "Returns").unwrap(), ["- x"]);
        assert_eq!(section(&doc, "Safety").unwrap(), ["s"]);
        assert!(section(&doc, "Example").is_none());
    }
}
