//! The worker's side of a stream and the bounded queue between it and the consumer: the
//! worker runs the ordinary blocking call and publishes its events in batches.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::cancel::CancelToken;
use crate::chunk::Event;
use crate::client::PreparedCall;
use crate::error::{Error, ErrorKind};
use crate::request::ChatRequest;
use crate::transport;

use super::batch::{Batch, CONTENT};
use super::wake::Wake;
use super::{BATCH_BYTES, BATCH_EVENTS, FIRST_BOUND_EVENTS, LOCK_SPIN, QUEUE_BYTES, QUEUE_EVENTS};

#[derive(Default)]
pub(super) struct Queue {
    /// Published batches, oldest first.
    pub(super) full: VecDeque<Batch>,
    /// Emptied batches for reuse.
    pub(super) spare: Vec<Batch>,
    pub(super) bytes: usize,
    pub(super) events: usize,
    /// How the call ended, once it has.
    pub(super) end: Option<Result<(), Error>>,
    /// The consumer closed the stream.
    pub(super) closed: bool,
    /// The consumer is blocked in a pull, waiting for `arrived` (mirrored in
    /// `Shared::consumer_waiting`).
    pub(super) consumer_waiting: bool,
    pub(super) worker_waiting: bool,
    /// The wake-up descriptor holds (or is about to hold) a byte.
    pub(super) signalled: bool,
    /// The bound now in force (see `FIRST_BOUND_EVENTS`).
    pub(super) bound: Bound,
}

/// The queue's bound, which is also the size of the batches the worker publishes while
/// the consumer is not blocked in a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bound {
    pub(super) events: usize,
    pub(super) bytes: usize,
}

impl Default for Bound {
    fn default() -> Bound {
        let events = FIRST_BOUND_EVENTS;
        Bound {
            events,
            bytes: events * (QUEUE_BYTES / QUEUE_EVENTS),
        }
    }
}

impl Bound {
    /// Twice as large, up to the largest bound.
    fn doubled(self) -> Bound {
        Bound {
            events: (self.events * 2).min(QUEUE_EVENTS),
            bytes: (self.bytes * 2).min(QUEUE_BYTES),
        }
    }
}

impl Queue {
    /// Marks the queue signalled; true when the caller must write the byte (after
    /// releasing the lock).
    pub(super) fn signal(&mut self, wake: &Wake) -> bool {
        let write = !self.signalled && wake.exists();
        self.signalled |= write;
        write
    }

    /// Empties the wake-up descriptor: nothing is there to pull. Reads even when not
    /// signalled, to take a byte written late.
    pub(super) fn unsignal(&mut self, wake: &Wake) {
        wake.clear();
        self.signalled = false;
    }
}

impl Queue {
    pub(super) fn over_limit(&self) -> bool {
        self.bytes >= self.bound.bytes || self.events >= self.bound.events
    }

    pub(super) fn set_consumer_waiting(&mut self, shared: &AtomicBool, waiting: bool) {
        self.consumer_waiting = waiting;
        shared.store(waiting, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// The consumer waits here for events or the end.
    pub(super) arrived: Condvar,
    /// The worker waits here for room.
    pub(super) room: Condvar,
    /// The queue is at its bound (read without the lock on every event).
    pub(super) full: AtomicBool,
    /// `Queue::consumer_waiting`, read without the lock on every event.
    pub(super) consumer_waiting: AtomicBool,
    pub(super) wake: Wake,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every update under the lock leaves the queue consistent, so a poisoned lock (a
        // panic elsewhere) is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock for a pull that must not wait: the worker holds it for a few instructions,
    /// so spinning briefly nearly always gets it; if the worker was preempted while holding
    /// it, give up rather than sleep (the pull then reports nothing yet).
    pub(super) fn lock_without_waiting(&self) -> Option<MutexGuard<'_, Queue>> {
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
pub(super) struct Producer {
    pub(super) shared: Arc<Shared>,
    pub(super) stop: CancelToken,
    pub(super) batch: Batch,
    /// Why the producer stopped the call itself.
    pub(super) failure: Option<Error>,
    /// The first event has been published.
    pub(super) published_any: bool,
    /// `Queue::bound`, kept here so that no event needs the lock to read it.
    pub(super) bound: Bound,
    /// When the batch being filled is due (see `batch_due`): `bound`, or more while the
    /// consumer is blocked in a pull.
    pub(super) due: Bound,
}

/// Batches index their text with 32-bit offsets; a larger event (possible only with a
/// client limit raised past it) ends the reply with a protocol error.
const MAX_EVENT_TEXT: usize = 1 << 30;

impl Producer {
    pub(super) fn new(shared: Arc<Shared>, stop: CancelToken) -> Producer {
        Producer {
            shared,
            stop,
            batch: Batch::default(),
            failure: None,
            published_any: false,
            bound: Bound::default(),
            due: Bound::default(),
        }
    }

    /// Takes the call's next event. The usual token (content of choice 0, under 128
    /// bytes, after the first event, while the queue has room) takes the short way: this
    /// runs once per token on the worker, beside the work the callback API does too.
    #[inline]
    pub(super) fn push(&mut self, event: Event<'_>) -> ControlFlow<()> {
        if let Event::Content { choice: 0, text } = event {
            if text.len() < 0x80 && self.published_any && !self.shared.full.load(Ordering::Relaxed)
            {
                self.batch.push_token(text, self.bound.events);
                if self.batch.len() < self.due.events && self.batch.bytes() < self.due.bytes {
                    return ControlFlow::Continue(());
                }
                return self.batch_due();
            }
        }
        self.push_other(event)
    }

    /// `push` for every other event.
    fn push_other(&mut self, event: Event<'_>) -> ControlFlow<()> {
        if self.shared.full.load(Ordering::Relaxed) {
            self.publish(true)?;
        }
        match event {
            Event::Content { choice, text } if choice < 0x80 && text.len() < 0x80 => {
                // (The first event goes alone: no room made for it.)
                if self.published_any {
                    self.batch.make_room(self.bound.events);
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
        // sees.
        if !self.published_any {
            self.published_any = true;
            return self.publish(true);
        }
        if self.batch.len() >= self.due.events || self.batch.bytes() >= self.due.bytes {
            return self.batch_due();
        }
        ControlFlow::Continue(())
    }

    /// The batch has reached `due`: publish it, or, while the consumer is blocked in a
    /// pull, gather another bound's worth (up to [`BATCH_EVENTS`], [`BATCH_BYTES`]), so
    /// that a waiting consumer is woken rarely, for large batches. Asking here rather than
    /// on every event keeps the token's way short; a consumer that stops waiting is noticed
    /// within one bound of events.
    fn batch_due(&mut self) -> ControlFlow<()> {
        let (events, bytes) = (self.batch.len(), self.batch.bytes());
        if self.shared.consumer_waiting.load(Ordering::Relaxed)
            && events < BATCH_EVENTS
            && bytes < BATCH_BYTES
        {
            self.due = Bound {
                events: (events + self.bound.events).min(BATCH_EVENTS),
                bytes: (bytes + self.bound.bytes).min(BATCH_BYTES),
            };
            return ControlFlow::Continue(());
        }
        self.publish(true)
    }

    /// Hands the batch to the consumer; with `wait_for_room`, first waits while the queue
    /// is at its bound. `Break` when the stream was closed or stopped.
    pub(super) fn publish(&mut self, wait_for_room: bool) -> ControlFlow<()> {
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
                // Nothing waiting: the consumer took every batch so far, so the next ones
                // may be larger.
                if queue.events == 0 && queue.bound.events < QUEUE_EVENTS {
                    queue.bound = queue.bound.doubled();
                    self.bound = queue.bound;
                }
                batch.counted = true;
                queue.bytes += batch.bytes();
                queue.events += batch.len();
            }
            self.due = self.bound;
            queue.full.push_back(batch);
            self.shared
                .full
                .store(queue.over_limit(), Ordering::Relaxed);
            self.announce(queue, handed);
        }
        ControlFlow::Continue(())
    }

    pub(super) fn finish(&mut self, result: Result<(), Error>) {
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
    pub(super) fn announce(&self, mut queue: MutexGuard<'_, Queue>, waiting: bool) {
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

pub(super) fn worker(
    shared: Arc<Shared>,
    call: PreparedCall,
    request: ChatRequest,
    stop: CancelToken,
) {
    let producer = Rc::new(RefCell::new(Producer::new(shared.clone(), stop.clone())));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer whose first event has gone (so later ones gather into batches), and the
    /// queue it publishes to.
    fn producer_past_its_first_event() -> (Arc<Shared>, Producer) {
        let shared = Arc::new(Shared::default());
        let producer = Producer {
            published_any: true,
            ..Producer::new(shared.clone(), CancelToken::new())
        };
        (shared, producer)
    }

    #[test]
    fn the_bound_starts_small_and_grows_only_while_the_consumer_keeps_up() {
        let (shared, mut producer) = producer_past_its_first_event();
        let mut publish = |events: usize| {
            for _ in 0..events {
                producer.batch.push(&Event::Content {
                    choice: 0,
                    text: "tok",
                });
            }
            assert!(producer.publish(false).is_continue());
            assert_eq!(producer.bound, shared.lock().bound);
            producer.bound.events
        };
        let take_all = || {
            let mut queue = shared.lock();
            queue.full.clear();
            (queue.events, queue.bytes) = (0, 0);
        };
        assert_eq!(Bound::default().events, FIRST_BOUND_EVENTS);
        // Published into an empty queue: the consumer keeps up, the bound doubles.
        assert_eq!(publish(16), 32);
        // Not taken yet: no growth, and the queue is now at its bound (the worker would
        // wait for room): a consumer that stopped early holds 48 events, not 256.
        assert_eq!(publish(32), 32);
        assert!(shared.lock().over_limit());
        take_all();
        assert_eq!(publish(32), 64);
        for _ in 0..8 {
            take_all();
            publish(1);
        }
        assert_eq!(
            shared.lock().bound,
            Bound {
                events: QUEUE_EVENTS,
                bytes: QUEUE_BYTES
            },
            "at most the largest bound"
        );
    }

    #[test]
    fn a_waiting_consumer_gets_one_large_batch_and_a_busy_one_bounded_ones() {
        let (shared, mut producer) = producer_past_its_first_event();
        let token = Event::Content {
            choice: 0,
            text: "tok",
        };
        let published = || {
            let queue = shared.lock();
            let sizes: Vec<(usize, bool)> =
                queue.full.iter().map(|b| (b.len(), b.counted)).collect();
            sizes
        };
        let set_waiting = |waiting: bool| {
            shared
                .lock()
                .set_consumer_waiting(&shared.consumer_waiting, waiting)
        };

        // Blocked in a pull: far past the bound, nothing is published until BATCH_EVENTS,
        // and then that batch is handed over uncounted, once.
        set_waiting(true);
        for _ in 0..BATCH_EVENTS - 1 {
            assert!(producer.push(token).is_continue());
        }
        assert_eq!(published(), vec![]);
        assert!(producer.push(token).is_continue());
        assert_eq!(published(), vec![(BATCH_EVENTS, false)]);
        assert!(
            !shared.consumer_waiting.load(Ordering::Relaxed),
            "one batch per wait"
        );
        shared.lock().full.clear();

        // Not waiting: batches of the bound, counted.
        for _ in 0..FIRST_BOUND_EVENTS {
            assert!(producer.push(token).is_continue());
        }
        assert_eq!(published(), vec![(FIRST_BOUND_EVENTS, true)]);
        let bound = producer.bound.events;
        assert_eq!(
            bound,
            2 * FIRST_BOUND_EVENTS,
            "taken at once: the bound grew"
        );
        {
            let mut queue = shared.lock();
            queue.full.clear();
            (queue.events, queue.bytes) = (0, 0);
        }

        // A consumer that stops waiting while a large batch gathers is noticed within one
        // bound of events: the batch is then published, counted.
        set_waiting(true);
        for _ in 0..bound + 1 {
            assert!(producer.push(token).is_continue());
        }
        set_waiting(false);
        for _ in bound + 1..2 * bound {
            assert!(producer.push(token).is_continue());
        }
        assert_eq!(published(), vec![(2 * bound, true)]);
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
