//! A connection's input and output buffers, in place of ureq's `LazyBuffers`: the same
//! contract (ureq's `Buffers` trait), with less resident memory per connection, which is
//! what a program holding a thousand replies at once pays for each of them.
//!
//! - The output buffer is only needed while a request is being sent: it is released when
//!   the reply starts to be read (and made again for the next request on the connection),
//!   so a streaming reply does not keep it.
//! - Both are allocated zeroed (`calloc`), so pages the allocator takes fresh from the
//!   system stay untouched, and not resident, until bytes are written there.
//! - The input buffer starts small (the client's setting, 16 KiB) and grows, up to
//!   [`MAX_INPUT`], only while the server keeps it full: a reply streamed faster than it is
//!   read then costs one read system call per 128 KiB instead of one per 16 KiB (3,329
//!   against about 400 for 200,000 tokens, 15 to 20% of the CPU of such a reply), while a
//!   reply that is read slowly, or one of a thousand held at once, keeps the small buffer.

use ureq::unversioned::transport::Buffers;

/// The room `tmp_and_output` promises for reading a request body (as ureq's own buffers do).
const MIN_TMP: usize = 10 * 1024;
/// The largest the input buffer grows to: ureq's own default size.
const MAX_INPUT: usize = 128 * 1024;
/// Reads in a row that filled all the room offered, after which the input buffer doubles.
const FULL_READS_TO_GROW: u32 = 3;

#[derive(Debug)]
pub struct ConnectionBuffers {
    /// The input buffer's size now (see `MAX_INPUT`).
    input_size: usize,
    output_size: usize,
    /// The room the last `input_append_buf` offered, and how many reads in a row filled
    /// all of it.
    offered: usize,
    full_reads: u32,
    /// Bytes read: `input[consumed..filled]` wait to be used.
    input: Vec<u8>,
    filled: usize,
    consumed: usize,
    /// The last consume took bytes (see `Buffers::can_use_input`).
    progress: bool,
    /// Made on demand; released when input is read after it was used.
    output: Vec<u8>,
}

impl ConnectionBuffers {
    pub fn new(input_size: usize, output_size: usize) -> ConnectionBuffers {
        assert!(input_size > 0 && output_size > 0);
        ConnectionBuffers {
            input_size,
            output_size,
            offered: 0,
            full_reads: 0,
            input: Vec::new(),
            filled: 0,
            consumed: 0,
            progress: false,
            output: Vec::new(),
        }
    }

    fn ensure_input(&mut self, size: usize) {
        if self.input.len() < size {
            if self.input.is_empty() {
                self.input = vec![0; size];
            } else {
                self.input.resize(size, 0);
            }
        }
    }

    fn ensure_output(&mut self) {
        if self.output.is_empty() {
            self.output = vec![0; self.output_size];
        }
    }

    /// Moves the unconsumed bytes to the front when that makes room worth having.
    fn compact(&mut self) {
        if self.consumed == 0 {
            return;
        }
        if self.consumed == self.filled {
            self.consumed = 0;
            self.filled = 0;
        } else if self.filled > self.input.len() / 2 {
            self.input.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
    }
}

impl Buffers for ConnectionBuffers {
    fn output(&mut self) -> &mut [u8] {
        self.ensure_output();
        &mut self.output
    }

    fn input(&self) -> &[u8] {
        &self.input[self.consumed..self.filled]
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        // Reading means what was written has been sent (a transport sends the output
        // before returning): the output buffer is not needed until the next request.
        self.output = Vec::new();
        self.ensure_input(self.input_size);
        self.compact();
        self.offered = self.input.len() - self.filled;
        &mut self.input[self.filled..]
    }

    fn input_appended(&mut self, amount: usize) {
        self.filled += amount;
        assert!(self.filled <= self.input.len());
        // A read that took all the room offered: the server had more ready.
        if amount > 0 && amount == self.offered {
            self.full_reads += 1;
            if self.full_reads >= FULL_READS_TO_GROW && self.input_size < MAX_INPUT {
                self.input_size = (self.input_size * 2).min(MAX_INPUT);
                self.full_reads = 0;
            }
        } else {
            self.full_reads = 0;
        }
    }

    fn input_consume(&mut self, amount: usize) {
        self.progress = amount > 0;
        self.consumed += amount;
        assert!(self.consumed <= self.filled);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        self.ensure_input(self.input_size);
        self.compact();
        let free = self.input.len() - self.filled;
        if free < MIN_TMP {
            let size = self.input.len() + MIN_TMP - free;
            self.ensure_input(size);
        }
        self.ensure_output();
        (&mut self.input[self.filled..], &mut self.output)
    }

    fn can_use_input(&self) -> bool {
        self.filled > self.consumed && self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_consumed_compacted_and_kept_in_order() {
        let mut b = ConnectionBuffers::new(16, 8);
        assert!(b.input().is_empty() && !b.can_use_input());
        let buf = b.input_append_buf();
        assert_eq!(buf.len(), 16);
        buf[..10].copy_from_slice(b"0123456789");
        b.input_appended(10);
        assert_eq!(b.input(), b"0123456789");
        b.input_consume(0);
        assert!(
            !b.can_use_input(),
            "no progress: more input is needed first"
        );
        b.input_consume(9);
        assert!(b.can_use_input());
        assert_eq!(b.input(), b"9");
        // 10 of 16 filled (over half): the rest moves to the front.
        let buf = b.input_append_buf();
        assert_eq!(buf.len(), 15);
        buf[..3].copy_from_slice(b"abc");
        b.input_appended(3);
        assert_eq!(b.input(), b"9abc");
        b.input_consume(4);
        assert!(b.input().is_empty());
        assert_eq!(
            b.input_append_buf().len(),
            16,
            "all consumed: the buffer starts over"
        );
    }

    #[test]
    fn input_grows_only_while_reads_fill_it_and_never_past_the_largest_size() {
        let mut b = ConnectionBuffers::new(1024, 8);
        let read = |b: &mut ConnectionBuffers, fill: bool| {
            let room = b.input_append_buf().len();
            let amount = if fill { room } else { room - 1 };
            b.input_appended(amount);
            b.input_consume(amount);
            room
        };
        // Reads that leave room (a server no faster than the reader): no growth.
        for _ in 0..10 {
            assert_eq!(read(&mut b, false), 1024);
        }
        // Two full reads, then one that is not: the count starts over.
        read(&mut b, true);
        read(&mut b, true);
        read(&mut b, false);
        assert_eq!(read(&mut b, true), 1024);
        read(&mut b, true);
        read(&mut b, true);
        // Three in a row: twice the room.
        assert_eq!(read(&mut b, true), 2048);
        for _ in 0..100 {
            read(&mut b, true);
        }
        assert_eq!(read(&mut b, true), MAX_INPUT, "at most MAX_INPUT");
        assert!(b.input.len() <= MAX_INPUT);
    }

    #[test]
    fn output_is_released_when_reading_starts_and_made_again_zeroed() {
        let mut b = ConnectionBuffers::new(16, 8);
        b.output().copy_from_slice(b"POST / H");
        assert_eq!(b.output(), b"POST / H", "kept while sending");
        b.input_append_buf();
        assert!(b.output.is_empty(), "released once the reply is read");
        assert_eq!(b.output(), &[0u8; 8][..]);
    }

    #[test]
    fn tmp_and_output_give_at_least_the_promised_room() {
        let mut b = ConnectionBuffers::new(16, 8);
        let buf = b.input_append_buf();
        buf[..4].copy_from_slice(b"HTTP");
        b.input_appended(4);
        let (tmp, output) = b.tmp_and_output();
        assert!(tmp.len() >= MIN_TMP);
        assert_eq!(output.len(), 8);
        assert_eq!(b.input(), b"HTTP", "unconsumed input is kept");
    }
}
