//! A reply pulled event by event, from any thread or event loop (the pull API's core).
//!
//! [`Stream::open`] returns at once: a worker thread runs the ordinary blocking call (so
//! retries, redirects, timeouts, the deadline and cancellation are the callback path's
//! own), and its events go into a bounded queue that the caller drains with
//! [`Stream::pull`], or by iterating the stream.
//!
//! Events travel in batches: the worker collects events and publishes them together when
//! the socket has nothing more to read yet (the transport's before-wait hook, at most
//! 0.05 ms after they arrived) or the batch is full, so the queue's lock and the wake-up
//! are paid once per batch, not once per token. A consumer blocked in a pull gets large
//! batches ([`BATCH_EVENTS`], [`BATCH_BYTES`]) handed to it uncounted; otherwise batches
//! are small ([`SMALL_BATCH_EVENTS`], [`SMALL_BATCH_BYTES`]) and the queue is bounded
//! ([`QUEUE_BYTES`], [`QUEUE_EVENTS`]): when that much waits, the worker stops, and so
//! stops reading the socket, until the consumer catches up.
//!
//! Where each thing lives: the consumer's side is [`Stream`]; the worker's is `Producer`
//! and `worker`; between them `Shared` (the queue under a mutex, two condition variables,
//! and the wake-up descriptor `Wake`). Batches (`Batch`) store events compactly and are
//! recycled, so a steady stream allocates nothing per token on either side.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::chunk::{Event, Usage};
use crate::client::{Client, PreparedCall};
use crate::error::{Error, ErrorKind};
use crate::message::Message;
use crate::request::ChatRequest;
use crate::transport;

/// When this many bytes of events wait for a consumer that is not waiting for them, the
/// worker stops reading. (A batch handed to a consumer blocked in a pull does not count:
/// it is as good as taken.)
const QUEUE_BYTES: usize = 4 * 1024;
/// When this many events wait for a consumer that is not waiting for them, the worker
/// stops reading.
const QUEUE_EVENTS: usize = 256;
/// While the consumer is blocked in a pull, the worker gathers up to this many events or
/// bytes before it wakes the consumer (a wake-up costs a few microseconds: large batches
/// keep it rare), and hands them over uncounted.
const BATCH_EVENTS: usize = 4096;
const BATCH_BYTES: usize = 64 * 1024;
/// Otherwise it publishes every this many events or bytes, the queue's bound: one such
/// batch waiting stops the worker, so a stalled consumer holds little.
const SMALL_BATCH_EVENTS: usize = QUEUE_EVENTS;
const SMALL_BATCH_BYTES: usize = QUEUE_BYTES;
/// Emptied batches kept for reuse, so that a steady stream allocates nothing.
const SPARE_BATCHES: usize = 1;
/// How long a pull that must not wait spins for the queue's lock.
const LOCK_SPIN: Duration = Duration::from_micros(200);
/// The worker's stack: what a call needs (ureq, rustls, serde) with room to spare; small,
/// because a program may hold a thousand streams.
const WORKER_STACK: usize = 256 * 1024;

/// What [`Stream::pull`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled<'a> {
    /// The next event, borrowed until the next call on the stream.
    Event(Event<'a>),
    /// Nothing within the wait: try again later.
    Pending,
    /// The reply ended normally; every later pull says the same.
    End,
}

/// An event that owns its strings (what iterating a [`Stream`] yields).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnedEvent {
    Content {
        choice: u32,
        text: String,
    },
    Reasoning {
        choice: u32,
        text: String,
    },
    Refusal {
        choice: u32,
        text: String,
    },
    ToolCall {
        choice: u32,
        index: u32,
        id: Option<String>,
        kind: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish {
        choice: u32,
        reason: String,
    },
    Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
        json: String,
    },
}

impl OwnedEvent {
    /// The borrowed form, as the callback API reports it.
    pub fn as_event(&self) -> Event<'_> {
        match self {
            OwnedEvent::Content { choice, text } => Event::Content {
                choice: *choice,
                text,
            },
            OwnedEvent::Reasoning { choice, text } => Event::Reasoning {
                choice: *choice,
                text,
            },
            OwnedEvent::Refusal { choice, text } => Event::Refusal {
                choice: *choice,
                text,
            },
            OwnedEvent::ToolCall {
                choice,
                index,
                id,
                kind,
                name,
                arguments,
            } => Event::ToolCall {
                choice: *choice,
                index: *index,
                id: id.as_deref(),
                kind: kind.as_deref(),
                name: name.as_deref(),
                arguments,
            },
            OwnedEvent::Finish { choice, reason } => Event::Finish {
                choice: *choice,
                reason,
            },
            OwnedEvent::Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens,
                json,
            } => Event::Usage(Usage {
                prompt_tokens: *prompt_tokens,
                completion_tokens: *completion_tokens,
                total_tokens: *total_tokens,
                json,
            }),
        }
    }
}

impl From<Event<'_>> for OwnedEvent {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Content { choice, text } => OwnedEvent::Content {
                choice,
                text: text.to_owned(),
            },
            Event::Reasoning { choice, text } => OwnedEvent::Reasoning {
                choice,
                text: text.to_owned(),
            },
            Event::Refusal { choice, text } => OwnedEvent::Refusal {
                choice,
                text: text.to_owned(),
            },
            Event::ToolCall {
                choice,
                index,
                id,
                kind,
                name,
                arguments,
            } => OwnedEvent::ToolCall {
                choice,
                index,
                id: id.map(str::to_owned),
                kind: kind.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: arguments.to_owned(),
            },
            Event::Finish { choice, reason } => OwnedEvent::Finish {
                choice,
                reason: reason.to_owned(),
            },
            Event::Usage(usage) => OwnedEvent::Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
                json: usage.json.to_owned(),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Batches: events stored without borrowing
// ---------------------------------------------------------------------------------------

/// Events in order, compactly: for each, a kind byte and its numbers as varints in
/// `meta`, and its strings one after another in `text`, each followed by a NUL (so a
/// string handed out from a stream is always NUL-terminated in memory: the C API relies
/// on it). A content token costs its text plus about 4 bytes.
#[derive(Debug, Default)]
struct Batch {
    meta: Vec<u8>,
    text: String,
    events: usize,
    /// Counted in the queue's bound (not when handed to a consumer waiting for it).
    counted: bool,
}

/// Where the next event of a batch starts.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    meta: usize,
    text: usize,
}

const CONTENT: u8 = 0;
const REASONING: u8 = 1;
const REFUSAL: u8 = 2;
const TOOL_CALL: u8 = 3;
const FINISH: u8 = 4;
const USAGE: u8 = 5;
/// A meta byte with this bit set is a whole event: content of choice 0 whose length (under
/// 128 bytes) is the other seven bits. The usual token takes one byte of meta.
const TOKEN: u8 = 0x80;

impl Batch {
    /// Makes room for a small batch of the usual tokens in a batch that has none, so that
    /// filling it does not leave a trail of outgrown buffers in the worker's allocator
    /// cache (resident memory per stream). Not before the first event: a worker stopped by
    /// back-pressure holds an empty batch.
    #[inline]
    fn make_room(&mut self) {
        if self.meta.capacity() == 0 {
            self.meta.reserve(SMALL_BATCH_EVENTS);
            self.text.reserve(SMALL_BATCH_EVENTS * 8);
        }
    }

    fn len(&self) -> usize {
        self.events
    }

    fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// What the batch holds, for the queue's bound.
    fn bytes(&self) -> usize {
        self.meta.len() + self.text.len()
    }

    /// Whether `cursor` is past the last event.
    fn at_end(&self, cursor: Cursor) -> bool {
        cursor.meta >= self.meta.len()
    }

    fn clear(&mut self) {
        self.meta.clear();
        self.text.clear();
        self.events = 0;
        self.counted = false;
    }

    fn number(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.meta.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.meta.push(n as u8);
    }

    fn string(&mut self, s: &str) {
        self.number(s.len() as u64);
        self.text.push_str(s);
        self.text.push('\0');
    }

    fn push(&mut self, event: &Event<'_>) {
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

    fn simple(&mut self, kind: u8, choice: u32, text: &str) {
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
    fn short(&mut self, kind: u8, choice: u8, text: &str) {
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

    /// `push` for the usual token (see `short`).
    #[inline]
    fn push_short(&mut self, kind: u8, choice: u8, text: &str) {
        self.short(kind, choice, text);
        self.events += 1;
    }

    /// The event at `cursor`, which is moved past it. Reads only what `push` wrote.
    fn read(&self, cursor: &mut Cursor) -> Event<'_> {
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

// ---------------------------------------------------------------------------------------
// The wake-up descriptor
// ---------------------------------------------------------------------------------------

/// A descriptor that is readable while the consumer would not wait: one end of a socket
/// pair holding a byte while signalled. Made on first request only, so streams read
/// without poll() cost no descriptors.
///
/// The worker writes its byte after releasing the queue's lock (so that the consumer it
/// wakes does not find the lock taken), having marked the queue signalled under the lock;
/// the consumer clears under the lock, reading whatever is there. A byte written just
/// after a clear leaves the descriptor readable with nothing to pull once; a wake-up is
/// never lost, because the consumer looks at the queue under the lock before it waits.
#[derive(Debug, Default)]
struct Wake {
    #[cfg(unix)]
    pair: std::sync::OnceLock<(
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    )>,
}

impl Wake {
    /// The readable end, made now if needed (then `true`: it starts unsignalled).
    /// -1 where there is none.
    fn fd(&self) -> std::io::Result<(i32, bool)> {
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            let mut made = false;
            if self.pair.get().is_none() {
                let (read, write) = std::os::unix::net::UnixStream::pair()?;
                read.set_nonblocking(true)?;
                write.set_nonblocking(true)?;
                // Called under the queue's lock, so no other thread makes one meanwhile.
                made = self.pair.set((read, write)).is_ok();
            }
            Ok((
                self.pair.get().map_or(-1, |(read, _)| read.as_raw_fd()),
                made,
            ))
        }
        #[cfg(not(unix))]
        {
            Ok((-1, false))
        }
    }

    fn exists(&self) -> bool {
        #[cfg(unix)]
        return self.pair.get().is_some();
        #[cfg(not(unix))]
        return false;
    }

    fn set(&self) {
        #[cfg(unix)]
        if let Some((_, write)) = self.pair.get() {
            use std::io::Write;
            // A few bytes at most wait in the socket, so this cannot block; should it
            // fail, the consumer's next pull still finds the events.
            let _ = (&*write).write(&[1]);
        }
    }

    fn clear(&self) {
        #[cfg(unix)]
        if let Some((read, _)) = self.pair.get() {
            use std::io::Read;
            let mut bytes = [0u8; 16];
            while matches!((&*read).read(&mut bytes), Ok(n) if n > 0) {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The queue between the worker and the consumer
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Queue {
    /// Published batches, oldest first.
    full: VecDeque<Batch>,
    /// Emptied batches for reuse.
    spare: Vec<Batch>,
    bytes: usize,
    events: usize,
    /// How the call ended, once it has.
    end: Option<Result<(), Error>>,
    /// The consumer closed the stream.
    closed: bool,
    /// The consumer is blocked in a pull, waiting for `arrived` (mirrored in
    /// `Shared::consumer_waiting`).
    consumer_waiting: bool,
    worker_waiting: bool,
    /// The wake-up descriptor holds (or is about to hold) a byte.
    signalled: bool,
}

impl Queue {
    /// Marks the queue signalled; true when the caller must write the byte (after
    /// releasing the lock).
    fn signal(&mut self, wake: &Wake) -> bool {
        let write = !self.signalled && wake.exists();
        self.signalled |= write;
        write
    }

    /// Empties the wake-up descriptor: nothing is there to pull. Reads even when not
    /// signalled, to take a byte written late.
    fn unsignal(&mut self, wake: &Wake) {
        wake.clear();
        self.signalled = false;
    }
}

impl Queue {
    fn over_limit(&self) -> bool {
        self.bytes >= QUEUE_BYTES || self.events >= QUEUE_EVENTS
    }

    fn set_consumer_waiting(&mut self, shared: &AtomicBool, waiting: bool) {
        self.consumer_waiting = waiting;
        shared.store(waiting, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// The consumer waits here for events or the end.
    arrived: Condvar,
    /// The worker waits here for room.
    room: Condvar,
    /// The queue is at its bound (read without the lock on every event).
    full: AtomicBool,
    /// `Queue::consumer_waiting`, read without the lock on every event.
    consumer_waiting: AtomicBool,
    wake: Wake,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every update under the lock leaves the queue consistent, so a poisoned lock (a
        // panic elsewhere) is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock for a pull that must not wait: the worker holds it for a few instructions,
    /// so spinning briefly nearly always gets it; if the worker was preempted while holding
    /// it, give up rather than sleep (the pull then reports nothing yet).
    fn lock_without_waiting(&self) -> Option<MutexGuard<'_, Queue>> {
        let started = Instant::now();
        loop {
            match self.queue.try_lock() {
                Ok(queue) => return Some(queue),
                Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if started.elapsed() < LOCK_SPIN => {
                    std::hint::spin_loop()
                }
                Err(std::sync::TryLockError::WouldBlock) => return None,
            }
        }
    }
}

/// The worker's side: the batch being filled, published before each wait for input.
struct Producer {
    shared: Arc<Shared>,
    stop: CancelToken,
    batch: Batch,
    /// Why the producer stopped the call itself.
    failure: Option<Error>,
    /// The first event has been published.
    published_any: bool,
}

/// Batches index their text with 32-bit offsets; a larger event (possible only with a
/// client limit raised past it) ends the reply with a protocol error.
const MAX_EVENT_TEXT: usize = 1 << 30;

impl Producer {
    fn push(&mut self, event: Event<'_>) -> ControlFlow<()> {
        if self.shared.full.load(Ordering::Relaxed) {
            self.publish(true)?;
        }
        match event {
            // The usual token, without the general path's checks.
            Event::Content { choice, text } if choice < 0x80 && text.len() < 0x80 => {
                // (The first event goes alone: no room made for it.)
                if self.published_any {
                    self.batch.make_room();
                }
                self.batch.push_short(CONTENT, choice as u8, text)
            }
            _ if text_len(&event) > MAX_EVENT_TEXT => {
                self.failure = Some(Error::protocol(
                    "the server sent an event of over 1 GiB, more than a stream can hold",
                ));
                return ControlFlow::Break(());
            }
            _ => self.batch.push(&event),
        }
        // The first event goes at once: the time to the first token is what a waiting user
        // sees; later ones gather into batches, large for a consumer blocked in a pull,
        // small otherwise.
        let (events, bytes) = if self.shared.consumer_waiting.load(Ordering::Relaxed) {
            (BATCH_EVENTS, BATCH_BYTES)
        } else {
            (SMALL_BATCH_EVENTS, SMALL_BATCH_BYTES)
        };
        if !self.published_any || self.batch.len() >= events || self.batch.bytes() >= bytes {
            self.published_any = true;
            self.publish(true)?;
        }
        ControlFlow::Continue(())
    }

    /// Hands the batch to the consumer; with `wait_for_room`, first waits while the queue
    /// is at its bound. `Break` when the stream was closed or stopped.
    fn publish(&mut self, wait_for_room: bool) -> ControlFlow<()> {
        if self.batch.is_empty() && !wait_for_room {
            return ControlFlow::Continue(());
        }
        let mut queue = self.shared.lock();
        if wait_for_room {
            while queue.over_limit() && !queue.closed && !self.stop.is_cancelled() {
                queue.worker_waiting = true;
                // Timed, so that a cancel token triggered meanwhile is seen.
                queue = self
                    .shared
                    .room
                    .wait_timeout(queue, transport::CANCEL_POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            queue.worker_waiting = false;
        }
        if queue.closed || self.stop.is_cancelled() {
            return ControlFlow::Break(());
        }
        if !self.batch.is_empty() {
            let fresh = queue.spare.pop().unwrap_or_default();
            let mut batch = std::mem::replace(&mut self.batch, fresh);
            // A consumer blocked in a pull takes this batch as soon as it wakes: it does not
            // count against the bound (once per wait: the consumer is not waiting any more).
            let handed = queue.consumer_waiting;
            if handed {
                queue.set_consumer_waiting(&self.shared.consumer_waiting, false);
            } else {
                batch.counted = true;
                queue.bytes += batch.bytes();
                queue.events += batch.len();
            }
            queue.full.push_back(batch);
            self.shared
                .full
                .store(queue.over_limit(), Ordering::Relaxed);
            self.announce(queue, handed);
        }
        ControlFlow::Continue(())
    }

    fn finish(&mut self, result: Result<(), Error>) {
        let mut queue = self.shared.lock();
        if !self.batch.is_empty() {
            let mut batch = std::mem::take(&mut self.batch);
            batch.counted = true;
            queue.bytes += batch.bytes();
            queue.events += batch.len();
            queue.full.push_back(batch);
        }
        queue.end = Some(result);
        let waiting = queue.consumer_waiting;
        self.announce(queue, waiting);
    }

    /// Tells the consumer (waking it when `waiting`), after releasing the lock (so that the
    /// consumer woken does not find it taken).
    fn announce(&self, mut queue: MutexGuard<'_, Queue>, waiting: bool) {
        let write = queue.signal(&self.shared.wake);
        drop(queue);
        if write {
            self.shared.wake.set();
        }
        if waiting {
            self.shared.arrived.notify_one();
        }
    }
}

/// The bytes of an event's strings.
fn text_len(event: &Event<'_>) -> usize {
    match *event {
        Event::Content { text, .. }
        | Event::Reasoning { text, .. }
        | Event::Refusal { text, .. }
        | Event::Finish { reason: text, .. } => text.len(),
        Event::ToolCall {
            id,
            kind,
            name,
            arguments,
            ..
        } => {
            [id, kind, name]
                .iter()
                .flatten()
                .map(|s| s.len())
                .sum::<usize>()
                + arguments.len()
        }
        Event::Usage(usage) => usage.json.len(),
    }
}

fn worker(shared: Arc<Shared>, call: PreparedCall, request: ChatRequest, stop: CancelToken) {
    let producer = Rc::new(RefCell::new(Producer {
        shared: shared.clone(),
        stop: stop.clone(),
        batch: Batch::default(),
        failure: None,
        published_any: false,
    }));
    let before_wait = producer.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        transport::set_before_wait(Some(Box::new(move || {
            if let Ok(mut producer) = before_wait.try_borrow_mut() {
                // A closed stream is noticed by the next event or the cancel flag.
                let _ = producer.publish(false);
            }
        })));
        let result = call.chat(&request, Some(&stop), &mut |event| {
            producer.borrow_mut().push(event)
        });
        transport::set_before_wait(None);
        if let Some(failure) = producer.borrow_mut().failure.take() {
            return Err(failure);
        }
        match result {
            // Stopped by the consumer closing the stream or by the request's cancel token:
            // say so, rather than "the callback asked to stop".
            Err(e) if e.kind() == ErrorKind::Aborted && stop.is_cancelled() => {
                Err(Error::new(ErrorKind::Aborted, "the call was cancelled"))
            }
            other => other,
        }
    }));
    let result = result.unwrap_or_else(|_| {
        transport::set_before_wait(None);
        Err(Error::new(
            ErrorKind::Internal,
            "internal error (a bug in libylokh): the stream's worker panicked",
        ))
    });
    producer.borrow_mut().finish(result);
}

// ---------------------------------------------------------------------------------------
// The consumer's side
// ---------------------------------------------------------------------------------------

/// A reply being received in the background, pulled event by event.
///
/// Made by [`Stream::open`]. Pull with [`Stream::pull`] (with a wait, or none from an
/// event loop, with [`Stream::wake_fd`] to know when), or iterate: the iterator blocks for
/// each event and ends after the last one, or after yielding the error. Dropping the
/// stream stops the reply at once (the connection is dropped unless the reply was read to
/// its end, when it goes back to the client's pool) and waits for the worker to finish,
/// which takes at most about 20 ms.
pub struct Stream {
    shared: Arc<Shared>,
    stop: CancelToken,
    worker: Option<JoinHandle<()>>,
    /// The batch events are handed out from, and where its next event is.
    current: Batch,
    next: Cursor,
    /// How the reply ended, once the consumer has seen every event.
    end: Option<Result<(), Error>>,
    /// The events pulled so far, put together.
    message: Message,
    /// The iterator has yielded the end or the error.
    iterated_to_end: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Starts `request` on a worker thread with a snapshot of `client`'s settings, and
    /// returns at once: connecting and sending happen in the background. `cancel`, when
    /// given, stops the stream from any thread (its next pull reports
    /// [`ErrorKind::Aborted`]); the stream keeps its own reference to it.
    ///
    /// Fails only if the client's settings cannot make a connection (an unreadable CA file)
    /// or no thread can be started.
    pub fn open(
        client: &Client,
        request: ChatRequest,
        cancel: Option<&CancelToken>,
    ) -> Result<Stream, Error> {
        let call = client.prepare()?;
        let stop = CancelToken::new();
        if let Some(cancel) = cancel {
            cancel.link(&stop);
        }
        let shared = Arc::new(Shared::default());
        let worker = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("ylokh-stream".into())
                .stack_size(WORKER_STACK)
                .spawn(move || worker(shared, call, request, stop))
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        format!("could not start the stream's thread: {e}"),
                    )
                })?
        };
        Ok(Stream {
            shared,
            stop,
            worker: Some(worker),
            current: Batch::default(),
            next: Cursor::default(),
            end: None,
            message: Message::new(),
            iterated_to_end: false,
        })
    }

    /// The next event, waiting at most `wait` for it (`Duration::ZERO`: not at all, and
    /// never sleeping, see [`Stream::wake_fd`]; `Duration::MAX`: as long as it takes). An error means the reply failed; every later
    /// pull returns it again. The event is borrowed until the next call on the stream.
    pub fn pull(&mut self, wait: Duration) -> Result<Pulled<'_>, Error> {
        if self.current.at_end(self.next) && !self.refill(wait) {
            return match &self.end {
                Some(Ok(())) => Ok(Pulled::End),
                Some(Err(e)) => Err(e.clone()),
                None => Ok(Pulled::Pending),
            };
        }
        let mut next = self.next;
        let event = self.current.read(&mut next);
        self.next = next;
        if self.current.at_end(self.next) {
            // The last event held here: the descriptor must go quiet now if nothing else
            // waits, so that it never reports an event that is not there. (Should the lock
            // be busy, it stays readable and the next pull finds out.)
            let queue = if wait.is_zero() {
                self.shared.lock_without_waiting()
            } else {
                Some(self.shared.lock())
            };
            if let Some(mut queue) = queue {
                if queue.full.is_empty() && queue.end.is_none() {
                    queue.unsignal(&self.shared.wake);
                }
            }
        }
        self.message.apply(&event);
        Ok(Pulled::Event(event))
    }

    /// [`Stream::pull`] for the usual token, when it is here already and is not the last
    /// event of its batch: a content event (see `Batch::short`). Its choice and text, after
    /// adding it to the message; `None` otherwise (then `pull` does the rest). It spares the
    /// C API's loop the general path, which is most of its cost per token.
    #[inline]
    pub(crate) fn next_token(&mut self) -> Option<(u32, &str)> {
        let Cursor { meta, text } = self.next;
        // The batch's last event goes through `pull`, which quiets the descriptor.
        let &[first, _] = self.current.meta.get(meta..meta + 2)? else {
            return None;
        };
        if first & TOKEN == 0 {
            return None;
        }
        let len = usize::from(first & !TOKEN);
        let token = self.current.text.get(text..text + len)?;
        self.next = Cursor {
            meta: meta + 1,
            text: text + len + 1,
        };
        self.message.apply(&Event::Content {
            choice: 0,
            text: token,
        });
        Some((0, token))
    }

    /// The assistant message put together from the events pulled so far (all of them once
    /// the stream has reported its end): what openai-python's `get_final_completion()`
    /// gives.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Takes the next published batch into `current`, waiting at most `wait`. False when
    /// there is none (then `end` may have been set).
    fn refill(&mut self, wait: Duration) -> bool {
        if self.end.is_some() {
            return false;
        }
        let deadline = Instant::now().checked_add(wait);
        let mut queue = if wait.is_zero() {
            match self.shared.lock_without_waiting() {
                Some(queue) => queue,
                None => return false,
            }
        } else {
            self.shared.lock()
        };
        let mut done = std::mem::take(&mut self.current);
        if done.meta.capacity() > 0 && queue.spare.len() < SPARE_BATCHES {
            done.clear();
            queue.spare.push(done);
        }
        self.next = Cursor::default();
        loop {
            if let Some(batch) = queue.full.pop_front() {
                if batch.counted {
                    queue.bytes -= batch.bytes();
                    queue.events -= batch.len();
                }
                let over = queue.over_limit();
                self.shared.full.store(over, Ordering::Relaxed);
                if queue.worker_waiting && !over {
                    self.shared.room.notify_one();
                }
                self.current = batch;
                return true;
            }
            if let Some(end) = &queue.end {
                self.end = Some(end.clone());
                return false;
            }
            queue.unsignal(&self.shared.wake);
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return false;
            }
            queue.set_consumer_waiting(&self.shared.consumer_waiting, true);
            queue = match deadline {
                Some(_) => {
                    self.shared
                        .arrived
                        .wait_timeout(queue, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .shared
                    .arrived
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner()),
            };
            queue.set_consumer_waiting(&self.shared.consumer_waiting, false);
        }
    }

    /// A descriptor that is readable exactly when [`Stream::pull`] would not wait (an
    /// event, the end or an error is there), for poll/epoll/select or a GUI's fd watch.
    /// Made on the first call and owned by the stream; -1 where the platform has none
    /// (Windows), or when it could not be made (the error says why).
    pub fn wake_fd(&self) -> Result<i32, Error> {
        let mut queue = self.shared.lock();
        let ready = !self.current.at_end(self.next)
            || self.end.is_some()
            || !queue.full.is_empty()
            || queue.end.is_some();
        let (fd, made) = self.shared.wake.fd().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("could not make the stream's wake-up descriptor: {e}"),
            )
        })?;
        if made && ready && queue.signal(&self.shared.wake) {
            self.shared.wake.set();
        }
        Ok(fd)
    }

    /// Whether the reply has ended (normally or not) and every event has been pulled.
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
    }
}

impl Iterator for Stream {
    type Item = Result<OwnedEvent, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.iterated_to_end {
            return None;
        }
        loop {
            match self.pull(Duration::MAX) {
                Ok(Pulled::Event(event)) => return Some(Ok(event.into())),
                Ok(Pulled::Pending) => continue,
                Ok(Pulled::End) => {
                    self.iterated_to_end = true;
                    return None;
                }
                Err(e) => {
                    self.iterated_to_end = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.cancel();
        {
            let mut queue = self.shared.lock();
            queue.closed = true;
            self.shared.room.notify_all();
        }
        if let Some(worker) = self.worker.take() {
            // The worker notices within the cancel poll interval; a panic in it was
            // already turned into the stream's error.
            let _ = worker.join();
        }
    }
}

impl Client {
    /// Starts `request` and returns at once; see [`Stream`].
    pub fn stream(&self, request: ChatRequest) -> Result<Stream, Error> {
        Stream::open(self, request, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[cfg(unix)]
    #[test]
    fn wake_descriptor_follows_set_and_clear() {
        let wake = Wake::default();
        assert!(!wake.exists());
        let (fd, made) = wake.fd().unwrap();
        assert!(fd >= 0 && made);
        assert_eq!(wake.fd().unwrap(), (fd, false), "made once");
        // Readable: a byte can be read (and is put back).
        let readable = |wake: &Wake| {
            use std::io::{Read, Write};
            let (read, write) = wake.pair.get().unwrap();
            let mut b = [0u8; 1];
            let got = matches!((&*read).read(&mut b), Ok(1));
            if got {
                (&*write).write_all(&b).unwrap();
            }
            got
        };
        let mut queue = Queue::default();
        assert!(!readable(&wake));
        assert!(queue.signal(&wake));
        assert!(!queue.signal(&wake), "one byte per signal");
        wake.set();
        assert!(readable(&wake));
        queue.unsignal(&wake);
        assert!(!readable(&wake));
        // A byte written late (after a clear) is read by the next clear.
        assert!(queue.signal(&wake));
        queue.unsignal(&wake);
        wake.set();
        assert!(readable(&wake));
        queue.unsignal(&wake);
        assert!(!readable(&wake));
    }
}
