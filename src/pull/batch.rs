//! Batches: a stream's events stored compactly, without borrowing, on their way from the
//! worker to the consumer.

use crate::chunk::{Event, Usage};

/// Events in order, compactly: for each, a kind byte and its numbers as varints in
/// `meta`, and its strings one after another in `text`, each followed by a NUL (so a
/// string handed out from a stream is always NUL-terminated in memory: the C API relies
/// on it). A content token costs its text plus about 4 bytes.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) meta: Vec<u8>,
    pub(super) text: String,
    pub(super) events: usize,
    /// Counted in the queue's bound (not when handed to a consumer waiting for it).
    pub(super) counted: bool,
}

/// Where the next event of a batch starts.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Cursor {
    pub(super) meta: usize,
    pub(super) text: usize,
}

pub(super) const CONTENT: u8 = 0;
pub(super) const REASONING: u8 = 1;
pub(super) const REFUSAL: u8 = 2;
pub(super) const TOOL_CALL: u8 = 3;
pub(super) const FINISH: u8 = 4;
pub(super) const USAGE: u8 = 5;
/// A meta byte with this bit set is a whole event: content of choice 0 whose length (under
/// 128 bytes) is the other seven bits. The usual token takes one byte of meta.
pub(super) const TOKEN: u8 = 0x80;

impl Batch {
    /// Makes room for a small batch of the usual tokens in a batch that has none, so that
    /// filling it does not leave a trail of outgrown buffers in the worker's allocator
    /// cache (resident memory per stream). Not before the first event: a worker stopped by
    /// back-pressure holds an empty batch.
    #[inline]
    pub(super) fn make_room(&mut self, events: usize) {
        if self.meta.capacity() == 0 {
            self.meta.reserve(events);
            self.text.reserve(events * 8);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.events
    }

    pub(super) fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// What the batch holds, for the queue's bound.
    pub(super) fn bytes(&self) -> usize {
        self.meta.len() + self.text.len()
    }

    /// Whether `cursor` is past the last event.
    pub(super) fn at_end(&self, cursor: Cursor) -> bool {
        cursor.meta >= self.meta.len()
    }

    pub(super) fn clear(&mut self) {
        self.meta.clear();
        self.text.clear();
        self.events = 0;
        self.counted = false;
    }

    pub(super) fn number(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.meta.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.meta.push(n as u8);
    }

    pub(super) fn string(&mut self, s: &str) {
        self.number(s.len() as u64);
        self.text.push_str(s);
        self.text.push('\0');
    }

    pub(super) fn push(&mut self, event: &Event<'_>) {
        match *event {
            Event::Content { choice, text } => self.simple(CONTENT, choice, text),
            Event::Reasoning { choice, text } => self.simple(REASONING, choice, text),
            Event::Refusal { choice, text } => self.simple(REFUSAL, choice, text),
            Event::Finish { choice, reason } => self.simple(FINISH, choice, reason),
            Event::ToolCall {
                choice,
                index,
                id,
                kind,
                name,
                arguments,
            } => {
                self.meta.push(TOOL_CALL);
                self.number(choice.into());
                self.number(index.into());
                let present = [id, kind, name];
                let flags = present
                    .iter()
                    .enumerate()
                    .fold(0u8, |f, (i, s)| f | (u8::from(s.is_some()) << i));
                self.meta.push(flags);
                for s in present.into_iter().flatten() {
                    self.string(s);
                }
                self.string(arguments);
            }
            Event::Usage(usage) => {
                self.meta.push(USAGE);
                self.number(usage.prompt_tokens);
                self.number(usage.completion_tokens);
                self.number(usage.total_tokens);
                self.string(usage.json);
            }
        }
        self.events += 1;
    }

    pub(super) fn simple(&mut self, kind: u8, choice: u32, text: &str) {
        if choice < 0x80 && text.len() < 0x80 {
            self.short(kind, choice as u8, text);
        } else {
            self.meta.push(kind);
            self.number(choice.into());
            self.string(text);
        }
    }

    /// An event of one of the simple kinds whose choice and length are under 0x80 (so
    /// that its varints are one byte each), without counting it.
    #[inline]
    pub(super) fn short(&mut self, kind: u8, choice: u8, text: &str) {
        if kind == CONTENT && choice == 0 {
            self.meta.push(TOKEN | text.len() as u8);
        } else {
            self.meta
                .extend_from_slice(&[kind, choice, text.len() as u8]);
        }
        self.text.reserve(text.len() + 1);
        self.text.push_str(text);
        self.text.push('\0');
    }

    /// `push` for the usual token: content of choice 0 under 128 bytes (see `TOKEN`), with
    /// room made for `room_for` of them first in a batch that has none (see `make_room`).
    #[inline]
    pub(super) fn push_token(&mut self, text: &str, room_for: usize) {
        self.make_room(room_for);
        self.push_short(CONTENT, 0, text);
    }

    /// `push` for one of the simple kinds whose choice and length are under 0x80 (see
    /// `short`).
    #[inline]
    pub(super) fn push_short(&mut self, kind: u8, choice: u8, text: &str) {
        self.short(kind, choice, text);
        self.events += 1;
    }

    /// The event at `cursor`, which is moved past it. Reads only what `push` wrote.
    pub(super) fn read(&self, cursor: &mut Cursor) -> Event<'_> {
        // The usual token: one byte (see `TOKEN`).
        let first = self.meta[cursor.meta];
        if first & TOKEN != 0 {
            let (start, len) = (cursor.text, usize::from(first & !TOKEN));
            cursor.meta += 1;
            cursor.text = start + len + 1;
            return Event::Content {
                choice: 0,
                text: &self.text[start..start + len],
            };
        }
        // Other short ones (see `simple`): kind, choice and length one byte each.
        if let Some(&[kind @ (CONTENT | REASONING | REFUSAL | FINISH), choice, len]) =
            self.meta.get(cursor.meta..cursor.meta + 3)
        {
            if choice < 0x80 && len < 0x80 {
                let (start, len) = (cursor.text, usize::from(len));
                let text = &self.text[start..start + len];
                cursor.meta += 3;
                cursor.text = start + len + 1;
                let choice = u32::from(choice);
                return match kind {
                    CONTENT => Event::Content { choice, text },
                    REASONING => Event::Reasoning { choice, text },
                    REFUSAL => Event::Refusal { choice, text },
                    _ => Event::Finish {
                        choice,
                        reason: text,
                    },
                };
            }
        }
        let byte = |c: &mut Cursor| {
            let b = self.meta[c.meta];
            c.meta += 1;
            b
        };
        let number = |c: &mut Cursor| {
            let (mut n, mut shift) = (0u64, 0);
            loop {
                let b = byte(c);
                n |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return n;
                }
                shift += 7;
            }
        };
        // Choices and indices were u32 when written.
        let small = |c: &mut Cursor| number(c) as u32;
        let string = |c: &mut Cursor| {
            let len = number(c) as usize;
            let s = &self.text[c.text..c.text + len];
            c.text += len + 1;
            s
        };
        match byte(cursor) {
            CONTENT => Event::Content {
                choice: small(cursor),
                text: string(cursor),
            },
            REASONING => Event::Reasoning {
                choice: small(cursor),
                text: string(cursor),
            },
            REFUSAL => Event::Refusal {
                choice: small(cursor),
                text: string(cursor),
            },
            FINISH => Event::Finish {
                choice: small(cursor),
                reason: string(cursor),
            },
            TOOL_CALL => {
                let choice = small(cursor);
                let index = small(cursor);
                let flags = byte(cursor);
                let mut optional = |bit: u8| (flags & (1 << bit) != 0).then(|| string(cursor));
                let (id, kind, name) = (optional(0), optional(1), optional(2));
                Event::ToolCall {
                    choice,
                    index,
                    id,
                    kind,
                    name,
                    arguments: string(cursor),
                }
            }
            _ => Event::Usage(Usage {
                prompt_tokens: number(cursor),
                completion_tokens: number(cursor),
                total_tokens: number(cursor),
                json: string(cursor),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::OwnedEvent;

    #[test]
    fn batches_give_back_what_was_pushed_with_nuls_after_strings() {
        let long = "y".repeat(300);
        let events = [
            Event::Content {
                choice: 0,
                text: "héllo",
            },
            Event::Reasoning {
                choice: 1,
                text: "",
            },
            Event::Refusal {
                choice: 0,
                text: "no",
            },
            Event::ToolCall {
                choice: 0,
                index: 2,
                id: Some("call_1"),
                kind: Some("function"),
                name: None,
                arguments: "{\"a\":",
            },
            Event::Finish {
                choice: 0,
                reason: "stop",
            },
            Event::Usage(Usage {
                prompt_tokens: 1,
                completion_tokens: u64::MAX,
                total_tokens: 300,
                json: "{}",
            }),
            Event::Content {
                choice: u32::MAX,
                text: "x",
            },
            // Lengths and choices around the one-byte varints' edge.
            Event::Content {
                choice: 127,
                text: &long[..127],
            },
            Event::Content {
                choice: 0,
                text: &long[..127],
            },
            Event::Content {
                choice: 0,
                text: &long[..128],
            },
            Event::Reasoning {
                choice: 128,
                text: &long[..128],
            },
            Event::Finish {
                choice: 0,
                reason: &long[..300],
            },
        ];
        let mut batch = Batch::default();
        for e in &events {
            batch.push(e);
        }
        assert_eq!(batch.len(), events.len());
        let mut cursor = Cursor::default();
        for e in &events {
            assert!(!batch.at_end(cursor));
            let got = batch.read(&mut cursor);
            assert_eq!(&got, e);
            assert_eq!(OwnedEvent::from(*e).as_event(), *e);
            // Every string is followed by a NUL in the batch's memory.
            let strings: Vec<&str> = match got {
                Event::Content { text, .. }
                | Event::Reasoning { text, .. }
                | Event::Refusal { text, .. }
                | Event::Finish { reason: text, .. } => vec![text],
                Event::ToolCall {
                    id,
                    kind,
                    name,
                    arguments,
                    ..
                } => [id, kind, name, Some(arguments)]
                    .into_iter()
                    .flatten()
                    .collect(),
                Event::Usage(u) => vec![u.json],
            };
            for s in strings {
                let end = s.as_ptr() as usize - batch.text.as_ptr() as usize + s.len();
                assert_eq!(batch.text.as_bytes()[end], 0);
            }
        }
        assert!(batch.at_end(cursor));
    }
}
