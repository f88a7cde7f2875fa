//! Text made safe to print: messages quote servers and callers, and printed as they came
//! they could rewrite a terminal or forge log lines. The lowest layer: errors, checks and
//! the debug log all use it.

use std::borrow::Cow;

/// Whether a character could rewrite a terminal or a log when printed: C0 and C1 control
/// characters, DEL, and the bidirectional overrides and isolates.
fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character that could inject into a terminal or a log escaped:
/// `\n`, `\r`, `\t`, `\0`, `\xNN` for the other ASCII controls, `\u{NNNN}` for the rest.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_dangerous(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            escape_controls("a\nb\u{1b}[1m\u{7}\0"),
            "a\\nb\\x1b[1m\\x07\\0"
        );
        assert_eq!(escape_controls("x\u{202e}y\u{85}"), "x\\u{202e}y\\u{0085}");
        assert!(matches!(escape_controls("plain ünïcode"), Cow::Borrowed(_)));
    }
}
