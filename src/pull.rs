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
//! are small and the queue is bounded (from [`FIRST_BOUND_EVENTS`] up to [`QUEUE_BYTES`],
//! [`QUEUE_EVENTS`], as the consumer shows it keeps up): when that much waits, the worker stops, and so
//! stops reading the socket, until the consumer catches up.
//!
//! Where each thing lives: the consumer's side is [`Stream`]; the worker's is `Producer`
//! and `worker`; between them `Shared` (the queue under a mutex, two condition variables,
//! and the wake-up descriptor `Wake`). Batches (`Batch`) store events compactly and are
//! recycled, so a steady stream allocates nothing per token on either side.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::chunk::Event;
use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::message::Message;
use crate::request::ChatRequest;

mod batch;
mod owned;
mod wake;
mod worker;

use batch::{Batch, Cursor, TOKEN};
pub use owned::OwnedEvent;
use worker::{worker, Shared};

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
/// Otherwise it publishes a batch every `Bound` events or bytes, the queue's bound at the
/// time: one such batch waiting stops the worker. The bound starts at this many events
/// (and 16 bytes each) and doubles each time the worker publishes into an empty queue
/// (the consumer keeps up), up to [`QUEUE_EVENTS`] and [`QUEUE_BYTES`]: a consumer that
/// stops pulling early holds little, one that keeps pulling gets batches large enough
/// that the lock and the wake-up cost little per event.
const FIRST_BOUND_EVENTS: usize = 16;
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
