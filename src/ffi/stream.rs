//! The pull API: `ylokh_stream_*`, a reply pulled event by event from any event loop.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use super::chat::set_last_finish_reason;
use super::client::ylokh_client;
use super::conversation::ylokh_conversation;
use super::event::{ylokh_event, ylokh_event_kind};
use super::request::{read_request, ylokh_request, Messages};
use super::strings::hand_out_string;
use super::{
    fail, guard, guard_status, guard_value, handle, ylokh_status, YLOKH_E_AGAIN, YLOKH_OK,
};
use crate::chunk::Event;
use crate::error::Error;
use crate::pull::{Pulled, Stream};
use crate::request::{self, ChatRequest};

/// A reply being received in the background, pulled event by event with
/// `ylokh_stream_next`. Opaque.
///
/// Use a stream from one thread at a time (any thread; different streams on different
/// threads at once are fine). The request's cancel token may be triggered from any thread.
pub struct ylokh_stream {
    stream: Stream,
    /// Gets the reply appended when the stream ends normally.
    conversation: *mut ylokh_conversation,
    /// The event last handed out; its strings point into `stream`.
    event: ylokh_event,
    /// `event` has no tool call or usage fields set (it is a content, reasoning, refusal or
    /// finish event, or none yet): the next such event need only set kind, choice and text.
    /// Derivable from `event.kind`, but kept as a flag: reading it costs the per-token path
    /// 4.5 instructions less (callgrind, 3,187.6 against 3,192.1 per token).
    event_simple: bool,
}

/// Starts the request described by `request` and returns at once: connecting, sending
/// and reading happen on a thread of the library's, never blocking this call. Its events
/// are then pulled with `ylokh_stream_next`.
///
/// - `request`: `model`, `messages_json` or `conversation` (exactly one), `options_json`
///   and `cancel` as for `ylokh_chat_ex`; `on_token`, `on_event` and `userdata` must be
///   NULL. The request and its strings are copied: free them whenever you like.
/// - With `conversation`, its messages are sent, and the assistant's reply is appended to
///   it when `ylokh_stream_next` reports the normal end (never on failure or an early
///   close). The conversation must stay alive, and not be used elsewhere, until then or
///   until the stream is closed.
/// - `cancel`: triggering it from any thread stops the stream within 100 ms; the next
///   `ylokh_stream_next` then returns `YLOKH_E_ABORTED`. The stream keeps what it needs of
///   the token, which may be freed after this call.
/// - On success `*out_stream` receives the stream, to be released with
///   `ylokh_stream_close`. The stream keeps a snapshot of the client's settings and a
///   share of its connection pool, so it may outlive the client.
///
/// Timeouts, the deadline and retries are as for `ylokh_chat` (retries happen only before
/// the first event is delivered). The client's log callback, if set, runs on the stream's
/// thread. Failures found here (bad arguments, an unreadable CA file) are returned now;
/// everything else is reported by `ylokh_stream_next`. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: `*out_stream` holds the new stream.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client`, `request` or `out_stream` is NULL;
///   `request->struct_size` is not the size of a `ylokh_request` of this or an older
///   version; `on_token` or `on_event` is set; not exactly one of `messages_json` and
///   `conversation` is set; a string is not UTF-8; the messages or the options have the
///   wrong shape (see `ylokh_chat`); or the client's CA file cannot be used. Nothing was
///   sent.
/// - `YLOKH_E_IO`: the stream's thread could not be started.
///
/// # Safety
/// `client` is NULL or live; `request` is NULL or points to a readable `ylokh_request`
/// (`struct_size` bytes) whose pointers obey the rules of `ylokh_chat_ex`; `out_stream` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ylokh_stream_open(
    client: *mut ylokh_client,
    request: *const ylokh_request,
    out_stream: *mut *mut ylokh_stream,
) -> ylokh_status {
    guard(|| {
        if out_stream.is_null() {
            return Err(Error::invalid("out_stream is NULL"));
        }
        // SAFETY: the caller passes NULL or a live client; `handle` checks for NULL.
        let client = unsafe { handle(client, "client") }?;
        // SAFETY: the caller passes NULL or `struct_size` readable bytes; read_request checks
        // both and copies what this library knows.
        let request = &unsafe { read_request(request) }?;
        if request.on_token.is_some() || request.on_event.is_some() {
            return Err(Error::invalid(
                "a stream's request must have no callbacks (on_token and on_event NULL)",
            ));
        }
        // SAFETY: the request's pointers obey ylokh_chat_ex's rules (this function's
        // contract), which are `parts`'; what they point to is read now and not kept.
        let parts = unsafe { request.parts() }?;
        let chat = match parts.messages {
            Messages::Conversation(conversation) => {
                let options = request::parse_options(parts.options)?;
                ChatRequest::new(parts.model, conversation.messages(), &options)
            }
            Messages::Json(messages) => {
                ChatRequest::from_json(parts.model, messages, parts.options)?
            }
        };
        let stream = Stream::open(client.client(), chat, parts.cancel.as_ref())?;
        let handle = Box::new(ylokh_stream {
            stream,
            conversation: request.conversation,
            event: ylokh_event::EMPTY,
            event_simple: true,
        });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out_stream.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Waits at most `wait_ms` milliseconds (0: does not wait at all; `UINT64_MAX`: as long as
/// it takes) for the next event of the reply.
///
/// - `YLOKH_OK` with `*out_event` set: the next event (see `ylokh_event`). It and its
///   strings are owned by the stream and stay valid until the next call on this stream
///   (`ylokh_stream_next`, `ylokh_stream_close`).
/// - `YLOKH_OK` with `*out_event` NULL: the reply ended normally (with a conversation, the
///   reply has now been appended to it; `ylokh_last_finish_reason()` says why it ended).
///   Later calls say the same.
/// - `YLOKH_E_AGAIN`: no event within `wait_ms`; `ylokh_last_error()` is untouched.
/// - Any other status: the reply failed, after the events already pulled;
///   `ylokh_last_error()` and `ylokh_last_http_status()` say why. Later calls return the
///   same status and message.
///
/// With `wait_ms` 0 it never sleeps, so it may be called from a GUI or game loop;
/// `ylokh_stream_fd` says when to call it. (It takes a lock the stream's thread holds for a
/// few instructions at a time; in the rare case that thread was preempted while holding
/// it, the call gives up after 0.2 ms with `YLOKH_E_AGAIN` and the descriptor stays
/// readable.) Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: `*out_event` is the next event, or NULL at the normal end.
/// - `YLOKH_E_AGAIN`: nothing within `wait_ms`; not a failure.
/// - `YLOKH_E_INVALID_ARGUMENT`: `stream` or `out_event` is NULL.
/// - Any status of `ylokh_chat_ex` from `YLOKH_E_ABORTED` on: the reply failed that way
///   (`YLOKH_E_ABORTED`: the request's cancel token was triggered).
///
/// # Safety
/// `stream` is NULL or live and not used by another thread meanwhile; `out_event` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn ylokh_stream_next(
    stream: *mut ylokh_stream,
    wait_ms: u64,
    out_event: *mut *const ylokh_event,
) -> ylokh_status {
    guard_status(|| {
        // SAFETY: the caller passes NULL or a live stream used by this thread only.
        let handle = unsafe { stream.as_mut() }.ok_or_else(|| Error::invalid("stream is NULL"))?;
        if out_event.is_null() {
            return Err(Error::invalid("out_event is NULL"));
        }
        let event = if let Some(event) = handle.next_token() {
            event
        } else {
            match handle.next_other(wait_ms)? {
                Some(event) => event,
                None => return Ok(YLOKH_E_AGAIN),
            }
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out_event.write(event) };
        Ok(YLOKH_OK)
    })
}

impl ylokh_stream {
    /// The usual token, when it is here already (see `Stream::next_token`): the event
    /// handed out before was as simple, so only kind, choice and text change. This is the
    /// pull API's way per token: kept short, and apart from the rest.
    #[inline]
    fn next_token(&mut self) -> Option<*const ylokh_event> {
        if !self.event_simple {
            return None;
        }
        let (choice, text) = self.stream.next_token()?;
        set_simple(&mut self.event, choice, text);
        Some(&self.event)
    }

    /// Every other case of `ylokh_stream_next`: the event (NULL at the normal end), or
    /// `None` when nothing came within `wait_ms`.
    #[inline(never)]
    fn next_other(&mut self, wait_ms: u64) -> Result<Option<*const ylokh_event>, Error> {
        let pulled = self.stream.pull(Duration::from_millis(wait_ms));
        if pulled.is_err() {
            set_last_finish_reason(None);
        }
        match pulled? {
            Pulled::Event(event) => {
                match event {
                    Event::Content { choice, text } if self.event_simple => {
                        set_simple(&mut self.event, choice, text)
                    }
                    _ => {
                        self.event = c_event(&event);
                        self.event_simple = matches!(
                            event,
                            Event::Content { .. }
                                | Event::Reasoning { .. }
                                | Event::Refusal { .. }
                                | Event::Finish { .. }
                        );
                    }
                }
                Ok(Some(&self.event))
            }
            Pulled::End => {
                set_last_finish_reason(self.stream.message().finish_reason());
                // SAFETY: the caller keeps the conversation alive and to this stream until
                // the end is reported (see ylokh_stream_open); it is appended to once.
                if let Some(conversation) = unsafe { self.conversation.as_mut() } {
                    conversation.inner.push_reply(self.stream.message());
                    self.conversation = std::ptr::null_mut();
                }
                Ok(Some(std::ptr::null()))
            }
            Pulled::Pending => Ok(None),
        }
    }
}

/// Makes `event`, whose other fields are already unset (see `ylokh_stream::event_simple`),
/// a content event.
#[inline]
fn set_simple(event: &mut ylokh_event, choice: u32, text: &str) {
    event.kind = ylokh_event_kind::YLOKH_EVENT_CONTENT;
    event.choice = choice;
    event.text = text.as_ptr().cast::<c_char>();
    event.text_len = text.len();
}

/// A file descriptor that is readable exactly when `ylokh_stream_next` would not wait
/// (an event, the end or a failure is there), for poll/epoll/select or a GUI toolkit's
/// fd watch. Watch it for reading only, and never read, write or close it: it belongs to
/// the stream and is closed by `ylokh_stream_close`. Made on the first call, so streams
/// read without it cost no descriptor.
///
/// Returns -1 for NULL, where the platform has no such descriptor (Windows: call
/// `ylokh_stream_next` with a wait instead, or with 0 from a timer), or when it could not
/// be made (then `ylokh_last_error()` says why, e.g. too many open files). Since 0.1.0.
///
/// # Returns
/// The descriptor, the same for the stream's whole life; or -1 as above.
///
/// # Safety
/// `stream` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_stream_fd(stream: *const ylokh_stream) -> c_int {
    guard_value(-1, || {
        // SAFETY: the caller passes NULL or a live stream.
        match unsafe { stream.as_ref() }.map(|s| s.stream.wake_fd()) {
            Some(Ok(fd)) => fd,
            Some(Err(e)) => {
                fail(e);
                -1
            }
            None => -1,
        }
    })
}

/// The assistant message put together from the events pulled so far, as one JSON object:
/// `role` ("assistant"), `content`, `reasoning`, `refusal`, `tool_calls` (assembled from
/// their pieces: `id`, `type`, `function` `name` and `arguments`; of id, type and name the
/// first non-empty value is kept), `finish_reason` and `usage` (the server's object), each
/// null when unknown so far. After `ylokh_stream_next` reported the end it is the whole
/// reply, what openai-python's `get_final_completion()` gives. Only choice 0 is put
/// together. On success `*out_json` receives it, to release with `ylokh_string_free`, and
/// `*out_len` (when not NULL) its length. Never waits. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: `*out_json` (and `*out_len`) hold the message.
/// - `YLOKH_E_INVALID_ARGUMENT`: `stream` or `out_json` is NULL.
/// - `YLOKH_E_INTERNAL`: out of memory.
///
/// # Safety
/// `stream` is NULL or live; `out_json` and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ylokh_stream_message_json(
    stream: *const ylokh_stream,
    out_json: *mut *mut c_char,
    out_len: *mut usize,
) -> ylokh_status {
    guard(|| {
        // SAFETY: the caller passes NULL or a live stream.
        let handle = unsafe { handle(stream, "stream") }?;
        // SAFETY: both outputs are NULL (refused by hand_out_string) or writable.
        unsafe {
            hand_out_string(
                handle.stream.message().to_json(),
                out_json,
                "out_json",
                out_len,
            )
        }
    })
}

/// Ends a stream: if its reply is still running it is stopped and its connection dropped
/// (a reply read to its end has already returned its connection to the client's pool);
/// then everything the stream holds is released, its events and descriptor included.
/// Returns within about 20 ms whatever the stream was doing. NULL does nothing; closing
/// twice is undefined behaviour. Since 0.1.0.
///
/// # Safety
/// `stream` is NULL or a live stream not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn ylokh_stream_close(stream: *mut ylokh_stream) {
    guard_value((), || {
        if !stream.is_null() {
            // SAFETY: the caller gives up a handle made by Box::into_raw in ylokh_stream_open.
            drop(unsafe { Box::from_raw(stream) });
        }
    })
}

/// The C view of an event pulled from a stream. Every string of such an event is followed
/// by a NUL in the stream's memory (see `pull::Batch`), so it is handed out in place.
fn c_event(event: &Event<'_>) -> ylokh_event {
    ylokh_event::new(event, |strings| {
        strings.map(|s| s.as_ptr().cast::<c_char>())
    })
}
