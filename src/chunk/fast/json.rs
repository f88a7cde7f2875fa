//! JSON lexing for the fast parser: white space, literals, keys, strings (borrowed from the
//! input, or decoded into the scratch when they have escapes), numbers and skipped values,
//! each accepted only where serde_json accepts it too.

use super::{Parser, Str, MAX_DEPTH, SCRATCH};

/// The offset of the first byte in `s` that ends a run of plain string bytes: a quote,
/// a backslash or a control character. Eight bytes at a time.
fn special(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set where it is zero (for the XORs) or below 0x20; a
        // false positive can only sit above a true one, so the lowest is exact.
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let found = found & HIGH;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = s.get(i..)?;
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|p| i + p)
}

impl<'a> Parser<'a> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then expects `byte`.
    pub(super) fn eat(&mut self, byte: u8) -> Option<()> {
        self.ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    pub(super) fn accept(&mut self, byte: u8) -> bool {
        self.ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        if self.s.get(self.pos..end) == Some(word) {
            self.pos = end;
            Some(())
        } else {
            None
        }
    }

    /// Consumes `null` if it comes next (after whitespace).
    pub(super) fn null(&mut self) -> bool {
        self.ws();
        if self.s.get(self.pos..self.pos + 4) == Some(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// An object key without escapes, and the colon after it.
    pub(super) fn key(&mut self) -> Option<&'a [u8]> {
        let key = self.string_raw()?;
        self.eat(b':')?;
        Some(key)
    }

    /// A string without escapes, as its raw bytes.
    pub(super) fn string_raw(&mut self) -> Option<&'a [u8]> {
        match self.string()? {
            Str::Input(a, b) => self.s.get(a..b),
            Str::Scratch(..) => None,
        }
    }

    /// `null` or a string.
    pub(super) fn opt_string(&mut self) -> Option<Option<Str>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A string: borrowed when it has no escapes, decoded into the scratch otherwise.
    pub(super) fn string(&mut self) -> Option<Str> {
        self.eat(b'"')?;
        let start = self.pos;
        self.pos = start + special(self.s.get(start..)?)?;
        match *self.s.get(self.pos)? {
            b'"' => {
                self.pos += 1;
                Some(Str::Input(start, self.pos - 1))
            }
            b'\\' => self.decode(start),
            _ => None,
        }
    }

    /// The rest of a string that has an escape at `self.pos`; it began at `start`.
    pub(super) fn decode(&mut self, start: usize) -> Option<Str> {
        let mut out = match self.scratch.take() {
            Some(s) => s,
            None => SCRATCH.take(),
        };
        let from = out.len();
        let result = self.decode_into(start, &mut out);
        let end = out.len();
        self.scratch = Some(out);
        result.map(|()| Str::Scratch(from, end))
    }

    pub(super) fn decode_into(&mut self, mut run: usize, out: &mut String) -> Option<()> {
        loop {
            let b = *self.s.get(self.pos)?;
            match b {
                b'"' | b'\\' => {
                    // The run is whole characters: it ends at an ASCII byte.
                    let bytes = self.s.get(run..self.pos)?;
                    out.push_str(std::str::from_utf8(bytes).ok()?);
                    self.pos += 1;
                    if b == b'"' {
                        return Some(());
                    }
                    let c = match *self.s.get(self.pos)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.pos += 1;
                            let unit = self.hex4()?;
                            let code = match unit {
                                0xD800..=0xDBFF => {
                                    self.literal(b"\\u")?;
                                    let low = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return None;
                                    }
                                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => unit,
                            };
                            out.push(char::from_u32(code)?);
                            run = self.pos;
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(c);
                    self.pos += 1;
                    run = self.pos;
                }
                0..=0x1F => return None,
                _ => self.pos += 1,
            }
        }
    }

    pub(super) fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.pos..self.pos + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16)?;
        }
        self.pos += 4;
        Some(v)
    }

    /// A non-negative integer that fits in `u32`, as serde takes it for `Option<u32>`.
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.ws();
        let start = self.pos;
        let mut v: u32 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
            self.pos += 1;
        }
        let len = self.pos - start;
        if len == 0 || (len > 1 && self.s.get(start) == Some(&b'0')) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        Some(v)
    }

    /// Any JSON value, checked as strictly as serde would and thrown away.
    pub(super) fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => self.number(),
            open @ (b'{' | b'[') => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                self.pos += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                if !self.accept(close) {
                    loop {
                        if open == b'{' {
                            self.skip_key()?;
                            self.eat(b':')?;
                        }
                        self.skip_value()?;
                        if !self.accept(b',') {
                            self.eat(close)?;
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Some(())
            }
            _ => None,
        }
    }

    pub(super) fn skip_key(&mut self) -> Option<()> {
        self.ws();
        if self.peek() != Some(b'"') {
            return None;
        }
        self.string().map(drop)
    }

    /// A number in JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    pub(super) fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    pub(super) fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    pub(super) fn some_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }
}
