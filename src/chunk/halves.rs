//! Surrogate halves split across chunks.
//!
//! Servers that cut text by UTF-16 units can end one chunk's string with the first half of
//! a surrogate pair (`"Hiya\ud83d"`) and start the next chunk's string of the same field
//! with the second (`"\ude00 ok"`). Each chunk alone is not valid Unicode; together they
//! are "Hiya😀 ok". The rule:
//! - a high half at the very end of a piece waits for the next piece of the same choice
//!   and field; when that piece starts with a low half they become one character;
//! - a half that finds no partner (a high half followed by anything else, a low half
//!   without a high one before it, a high half still waiting when the reply ends or when
//!   the choice moves on to another field) becomes U+FFFD, the replacement character.
//!
//! So text is never lost and callbacks still only see valid UTF-8.
//!
//! The input is what serde_json makes of a string when asked for bytes: UTF-8, except
//! that lone surrogates from `\u` escapes are encoded as three bytes (WTF-8). The caller
//! makes sure the raw chunk was valid UTF-8, so such sequences can only come from escapes.

use std::borrow::Cow;

/// Which text of a choice a piece belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Reasoning,
    Content,
    Refusal,
    /// The arguments of the tool call with this index.
    Arguments(u32),
}

/// Most halves waiting at once (one per choice and field); a further one becomes U+FFFD at
/// once, so a hostile stream cannot grow this list.
const MAX_WAITING: usize = 64;

const REPLACEMENT: char = '\u{FFFD}';

/// The high halves waiting for their partner, by choice and field.
#[derive(Debug, Default)]
pub(crate) struct Halves {
    waiting: Vec<(u32, Field, u32)>,
}

/// Bytes that are neither UTF-8 nor surrogates from escapes.
#[derive(Debug)]
pub(crate) struct NotUtf8;

impl Halves {
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The text of one piece of `field` of `choice`, with a waiting half joined or replaced
    /// and a high half at its end kept for the next piece. Borrowed when nothing needed
    /// doing (the usual case).
    pub(crate) fn text<'p>(
        &mut self,
        choice: u32,
        field: Field,
        bytes: &'p [u8],
    ) -> Result<Cow<'p, str>, NotUtf8> {
        let waiting = self
            .waiting
            .iter()
            .position(|&(c, f, _)| c == choice && f == field)
            .map(|at| self.waiting.remove(at).2);
        if waiting.is_none() {
            if let Ok(text) = std::str::from_utf8(bytes) {
                return Ok(Cow::Borrowed(text));
            }
        }
        let mut out = String::with_capacity(bytes.len() + 3);
        let mut rest = bytes;
        if let Some(high) = waiting {
            match surrogate(rest) {
                Some(low @ 0xDC00..=0xDFFF) => {
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    out.push(char::from_u32(code).unwrap_or(REPLACEMENT));
                    rest = rest.get(3..).unwrap_or(&[]);
                }
                _ => out.push(REPLACEMENT),
            }
        }
        while let Some(at) = next_surrogate(rest) {
            let before = rest.get(..at).unwrap_or(&[]);
            out.push_str(std::str::from_utf8(before).map_err(|_| NotUtf8)?);
            let unit = surrogate(rest.get(at..).unwrap_or(&[])).unwrap_or(0);
            rest = rest.get(at + 3..).unwrap_or(&[]);
            if rest.is_empty() && (0xD800..=0xDBFF).contains(&unit) {
                if self.waiting.len() < MAX_WAITING {
                    self.waiting.push((choice, field, unit));
                } else {
                    out.push(REPLACEMENT);
                }
            } else {
                out.push(REPLACEMENT);
            }
        }
        out.push_str(std::str::from_utf8(rest).map_err(|_| NotUtf8)?);
        Ok(Cow::Owned(out))
    }

    /// Takes the halves of `choice` waiting in fields that `continues` says the coming
    /// pieces do not continue: they will find no partner.
    pub(crate) fn orphans(&mut self, choice: u32, continues: impl Fn(Field) -> bool) -> Vec<Field> {
        let mut orphans = Vec::new();
        self.waiting.retain(|&(c, field, _)| {
            let orphan = c == choice && !continues(field);
            if orphan {
                orphans.push(field);
            }
            !orphan
        });
        orphans
    }

    /// Takes every waiting half: the reply ended.
    pub(crate) fn take_all(&mut self) -> Vec<(u32, Field)> {
        self.waiting.drain(..).map(|(c, f, _)| (c, f)).collect()
    }
}

/// The UTF-16 unit of a WTF-8 surrogate (ED A0..BF 80..BF) at the start of `bytes`.
fn surrogate(bytes: &[u8]) -> Option<u32> {
    match *bytes.get(..3)? {
        [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF] => {
            Some(0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F))
        }
        _ => None,
    }
}

fn next_surrogate(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(0xED, bytes.get(from..)?) {
        if surrogate(bytes.get(from + at..)?).is_some() {
            return Some(from + at);
        }
        from += at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json makes of a JSON string literal when asked for bytes.
    fn wtf8(json: &str) -> Vec<u8> {
        serde_json::from_str::<serde_bytes_like::Bytes>(json)
            .unwrap()
            .0
    }

    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl<'de> serde::Deserialize<'de> for Bytes {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Bytes;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                        Ok(Bytes(v.to_vec()))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }

    #[test]
    fn a_pair_split_across_pieces_is_joined() {
        let mut h = Halves::default();
        let first = wtf8(r#""Hiya\ud83d""#);
        assert_eq!(h.text(0, Field::Content, &first).unwrap(), "Hiya");
        assert!(!h.is_empty());
        let second = wtf8(r#""\ude00 ok""#);
        assert_eq!(h.text(0, Field::Content, &second).unwrap(), "\u{1F600} ok");
        assert!(h.is_empty());
    }

    #[test]
    fn halves_without_partners_become_replacement_characters() {
        let mut h = Halves::default();
        let lone = wtf8(r#""a\udc00b\ud800c""#);
        assert_eq!(
            h.text(0, Field::Content, &lone).unwrap(),
            "a\u{FFFD}b\u{FFFD}c"
        );
        let high = wtf8(r#""x\ud83d""#);
        assert_eq!(h.text(0, Field::Content, &high).unwrap(), "x");
        assert_eq!(
            h.text(0, Field::Content, b"no low half").unwrap(),
            "\u{FFFD}no low half"
        );
        assert_eq!(h.text(1, Field::Reasoning, &high).unwrap(), "x");
        assert!(h.orphans(0, |_| false).is_empty(), "choice 0 has none");
        assert_eq!(h.orphans(1, |f| f == Field::Content), [Field::Reasoning]);
        assert_eq!(h.text(2, Field::Arguments(3), &high).unwrap(), "x");
        assert_eq!(h.take_all(), [(2, Field::Arguments(3))]);
    }

    #[test]
    fn fields_and_choices_wait_separately_and_the_list_is_bounded() {
        let mut h = Halves::default();
        let high = wtf8(r#""\ud83d""#);
        let low = wtf8(r#""\ude00""#);
        assert_eq!(h.text(0, Field::Content, &high).unwrap(), "");
        assert_eq!(h.text(1, Field::Content, &high).unwrap(), "");
        assert_eq!(h.text(1, Field::Content, &low).unwrap(), "\u{1F600}");
        assert_eq!(h.text(0, Field::Content, &low).unwrap(), "\u{1F600}");
        for i in 0..MAX_WAITING as u32 + 5 {
            let _ = h.text(0, Field::Arguments(i), &high);
        }
        assert_eq!(h.take_all().len(), MAX_WAITING);
    }

    #[test]
    fn raw_invalid_utf8_is_refused() {
        let mut h = Halves::default();
        assert!(h.text(0, Field::Content, b"a\xffb").is_err());
        let mut bytes = wtf8(r#""\ud800""#);
        bytes.extend_from_slice(b"\xc3");
        assert!(h.text(0, Field::Content, &bytes).is_err());
    }
}
