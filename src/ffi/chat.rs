//! Chat calls and their callbacks.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ops::ControlFlow;

use super::client::ylokh_client;
use super::conversation::ylokh_conversation;
use super::event::ylokh_event;
use super::request::{read_request, ylokh_request, Messages};
use super::strings::hand_out_string;
use super::{guard, guard_value, handle, opt_str, req_str, ylokh_status};
use crate::cancel::CancelToken;
use crate::chunk::{Event, ANSWER_CHOICE};
use crate::client::Client;
use crate::error::Error;
use crate::request::{self, ChatRequest};

/// Receives the reply's text, one token at a time.
///
/// - `token` points to `len` bytes of valid UTF-8, followed by a NUL. The text itself may
///   hold NUL bytes, so `len` is authoritative. It is borrowed for the duration of the call:
///   copy what you keep.
/// - Called synchronously on the thread that called `ylokh_chat` (or another chat
///   function), in order, never after that function returned. Only text of the first choice
///   (index 0) is delivered; empty tokens are not.
/// - Return 0 to go on. Any other value stops the request at once, drops the connection,
///   and the chat function returns `YLOKH_E_ABORTED`.
/// - The callback may call any library function except another chat on the same thread
///   (that returns `YLOKH_E_INVALID_ARGUMENT`) and freeing the client in use. It must not
///   unwind (C++ exceptions, longjmp, Go panics must be caught on its side).
pub type ylokh_token_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, token: *const c_char, len: usize) -> c_int>;

/// Receives every event of a reply. Same contract as `ylokh_token_cb`: synchronous, on the
/// calling thread, `event` and its strings borrowed for the call, non-zero return aborts.
pub type ylokh_event_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const ylokh_event) -> c_int>;

/// The C callbacks of one call, with a reused buffer that NUL-terminates borrowed strings.
struct Callbacks {
    on_token: ylokh_token_cb,
    on_event: ylokh_event_cb,
    userdata: *mut c_void,
    scratch: Vec<u8>,
}

impl Callbacks {
    fn deliver(&mut self, event: Event<'_>) -> ControlFlow<()> {
        if let Some(on_event) = self.on_event {
            let c_event = ylokh_event::new(&event, |strings| self.terminated(&strings));
            // SAFETY: the chat function's contract makes `on_event` safe to call with
            // `userdata` on this thread during the call; `c_event` and the scratch buffer
            // its strings point into are not touched until the callback returns.
            if unsafe { on_event(self.userdata, &c_event) } != 0 {
                return ControlFlow::Break(());
            }
        }
        if let (Some(on_token), Some(text)) = (self.on_token, event.token()) {
            let token = self.terminated(&[text])[0];
            // SAFETY: as above for `on_token`; `token` points at text.len() bytes and a NUL
            // in the scratch buffer, untouched until the callback returns.
            if unsafe { on_token(self.userdata, token, text.len()) } != 0 {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Copies the strings, each followed by a NUL, into the scratch buffer and returns
    /// pointers to them (valid until the next use of the scratch buffer).
    fn terminated<const N: usize>(&mut self, parts: &[&str; N]) -> [*const c_char; N] {
        self.scratch.clear();
        let mut offsets = [0; N];
        for (offset, part) in offsets.iter_mut().zip(parts) {
            *offset = self.scratch.len();
            self.scratch.extend_from_slice(part.as_bytes());
            self.scratch.push(0);
        }
        // Pointers are taken only after the last push, so no reallocation moves them.
        offsets.map(|o| self.scratch[o..].as_ptr().cast())
    }
}

fn run_chat(
    client: &Client,
    model: Option<&str>,
    messages: Messages<'_>,
    options_json: Option<&str>,
    cancel: Option<&CancelToken>,
    mut callbacks: Callbacks,
) -> Result<(), Error> {
    set_last_finish_reason(None);
    let mut finish = None;
    let mut deliver = |event: Event<'_>| {
        if let Event::Finish {
            choice: ANSWER_CHOICE,
            reason,
        } = event
        {
            finish = Some(reason.to_owned());
        }
        callbacks.deliver(event)
    };
    let result = match messages {
        Messages::Json(json) => {
            let request = ChatRequest::from_json(model, json, options_json)?;
            client.chat_with_cancel(&request, cancel, &mut deliver)
        }
        Messages::Conversation(conversation) => {
            let options = request::parse_options(options_json)?;
            conversation.chat(client, model, &options, cancel, &mut deliver)
        }
    };
    if result.is_ok() {
        set_last_finish_reason(finish.as_deref());
    }
    result
}

thread_local! {
    static LAST_FINISH_REASON: RefCell<CString> = RefCell::new(CString::default());
}

pub(super) fn set_last_finish_reason(reason: Option<&str>) {
    // A reason with a NUL cannot be a C string; it is no reason a caller could compare.
    let reason = reason
        .and_then(|r| CString::new(r).ok())
        .unwrap_or_default();
    LAST_FINISH_REASON.with(|last| *last.borrow_mut() = reason);
}

/// Why the reply of the last chat call on the calling thread ended: the `finish_reason` of
/// its choice 0 ("stop", "length", "tool_calls", "content_filter", ...), or "" when that
/// call failed or the server sent no finish reason. Some servers end a reply with `[DONE]`
/// and no reason (llama-cpp-python, for requests it cut short): the call still returns
/// `YLOKH_OK`, and only this tells such a reply from one that stopped normally.
///
/// Set by every chat function, `ylokh_chat_text` included, and by `ylokh_stream_next` when
/// it reports a stream's end or failure. Thread-local. Since 0.1.0.
///
/// # Returns
/// A NUL-terminated string owned by the library, valid until the next chat call on the same
/// thread; never NULL.
#[no_mangle]
pub extern "C" fn ylokh_last_finish_reason() -> *const c_char {
    guard_value(c"".as_ptr(), || {
        LAST_FINISH_REASON.with(|last| last.borrow().as_ptr())
    })
}

/// Sends a chat request and streams the reply's text to `on_token` as it arrives.
///
/// - `model`: NULL or "" means "gpt-3.5-turbo".
/// - `messages_json`: a JSON array of message objects, e.g.
///   `[{"role":"user","content":"Hello"}]`; each needs a string `role`.
/// - `options_json`: NULL or a JSON object merged over the defaults (`temperature` 1,
///   `presence_penalty` 0, `top_p` 1, `frequency_penalty` 0, `allow_fallback` true,
///   `stream` true); e.g. `{"max_tokens":50,"stream":false}`. With `"stream":false` the
///   whole reply comes in one callback call (none if it has no content).
/// - `on_token`: required; see `ylokh_token_cb`. `userdata` is passed to it untouched.
///
/// Blocks until the reply is complete, the callback aborts, or an error occurs. Tokens
/// delivered before an error stay delivered. All strings are copied before the request
/// starts. Bad arguments return `YLOKH_E_INVALID_ARGUMENT` without touching the network.
/// Safe to call from many threads at once on one client. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the reply is complete; every token was delivered.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client`, `messages_json` or `on_token` is NULL; one of the
///   strings is not UTF-8; `messages_json` is not a JSON array of objects each with a
///   non-empty string `role`; `options_json` is not a JSON object, or sets `messages` or
///   `model`, or a non-boolean `stream`; or the call was made from inside a callback of
///   another chat on the same thread. Nothing was sent.
/// - `YLOKH_E_ABORTED`: `on_token` returned non-zero.
/// - `YLOKH_E_CONNECT`: the server or the proxy could not be reached (after the retries).
/// - `YLOKH_E_TLS`: the TLS handshake failed (an untrusted or invalid certificate).
/// - `YLOKH_E_TIMEOUT`: the server was silent longer than the timeout, or the deadline
///   passed.
/// - `YLOKH_E_HTTP_STATUS`: the server answered with a non-2xx status (after the retries for
///   408, 429 and 5xx); `ylokh_last_http_status()` has it, `ylokh_last_error()` the server's
///   message.
/// - `YLOKH_E_API`: the server reported an error inside a 2xx reply (in the stream or as
///   JSON), with its message in `ylokh_last_error()`.
/// - `YLOKH_E_PROTOCOL`: the reply broke the protocol: not SSE or JSON, invalid UTF-8 in the
///   content, a line, event or reply over the size limit, or a stream that ended without a
///   finish reason or `[DONE]`.
/// - `YLOKH_E_IO`: reading or writing the connection failed after it was established.
///
/// # Safety
/// `client` is NULL or live; the strings are NULL or NUL-terminated; `on_token` is safe to
/// call with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn ylokh_chat(
    client: *mut ylokh_client,
    model: *const c_char,
    messages_json: *const c_char,
    options_json: *const c_char,
    on_token: ylokh_token_cb,
    userdata: *mut c_void,
) -> ylokh_status {
    let request = ylokh_request {
        model,
        messages_json,
        options_json,
        on_token,
        userdata,
        ..ylokh_request::EMPTY
    };
    if on_token.is_none() {
        return guard(|| Err(Error::invalid("on_token is NULL")));
    }
    // SAFETY: `request` lives on this stack for the whole call and holds this function's
    // arguments, whose contract is the one ylokh_chat_ex asks of a request's fields.
    unsafe { ylokh_chat_ex(client, &request) }
}

/// Like `ylokh_chat`, but reports every event of the reply (content, reasoning, tool
/// calls, finish reasons, usage) to `on_event`; see `ylokh_event`. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the reply is complete; every event was delivered.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client`, `messages_json` or `on_event` is NULL; one of the
///   strings is not UTF-8; `messages_json` is not a JSON array of objects each with a
///   non-empty string `role`; `options_json` is not a JSON object, or sets `messages` or
///   `model`, or a non-boolean `stream`; or the call was made from inside a callback of
///   another chat on the same thread. Nothing was sent.
/// - `YLOKH_E_ABORTED`: `on_event` returned non-zero.
/// - `YLOKH_E_CONNECT`: the server or the proxy could not be reached (after the retries).
/// - `YLOKH_E_TLS`: the TLS handshake failed (an untrusted or invalid certificate).
/// - `YLOKH_E_TIMEOUT`: the server was silent longer than the timeout, or the deadline
///   passed.
/// - `YLOKH_E_HTTP_STATUS`: the server answered with a non-2xx status (after the retries for
///   408, 429 and 5xx); `ylokh_last_http_status()` has it, `ylokh_last_error()` the server's
///   message.
/// - `YLOKH_E_API`: the server reported an error inside a 2xx reply (in the stream or as
///   JSON), with its message in `ylokh_last_error()`.
/// - `YLOKH_E_PROTOCOL`: the reply broke the protocol: not SSE or JSON, invalid UTF-8 in the
///   content, a line, event or reply over the size limit, or a stream that ended without a
///   finish reason or `[DONE]`.
/// - `YLOKH_E_IO`: reading or writing the connection failed after it was established.
///
/// # Safety
/// As `ylokh_chat`.
#[no_mangle]
pub unsafe extern "C" fn ylokh_chat_events(
    client: *mut ylokh_client,
    model: *const c_char,
    messages_json: *const c_char,
    options_json: *const c_char,
    on_event: ylokh_event_cb,
    userdata: *mut c_void,
) -> ylokh_status {
    let request = ylokh_request {
        model,
        messages_json,
        options_json,
        on_event,
        userdata,
        ..ylokh_request::EMPTY
    };
    if on_event.is_none() {
        return guard(|| Err(Error::invalid("on_event is NULL")));
    }
    // SAFETY: `request` lives on this stack for the whole call and holds this function's
    // arguments, whose contract is the one ylokh_chat_ex asks of a request's fields.
    unsafe { ylokh_chat_ex(client, &request) }
}

/// Like `ylokh_chat`, but returns the whole answer: on success `*out_text` receives a
/// NUL-terminated string to release with `ylokh_string_free` (the text may hold NULs;
/// `*out_len`, when `out_len` is not NULL, is its length). On failure the outputs are
/// untouched. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: `*out_text` (and `*out_len`) hold the whole answer.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client`, `messages_json` or `out_text` is NULL; one of the
///   strings is not UTF-8; `messages_json` is not a JSON array of objects each with a
///   non-empty string `role`; `options_json` is not a JSON object, or sets `messages` or
///   `model`, or a non-boolean `stream`; or the call was made from inside a callback of
///   another chat on the same thread. Nothing was sent.
/// - `YLOKH_E_CONNECT`: the server or the proxy could not be reached (after the retries).
/// - `YLOKH_E_TLS`: the TLS handshake failed (an untrusted or invalid certificate).
/// - `YLOKH_E_TIMEOUT`: the server was silent longer than the timeout, or the deadline
///   passed.
/// - `YLOKH_E_HTTP_STATUS`: the server answered with a non-2xx status (after the retries for
///   408, 429 and 5xx); `ylokh_last_http_status()` has it, `ylokh_last_error()` the server's
///   message.
/// - `YLOKH_E_API`: the server reported an error inside a 2xx reply (in the stream or as
///   JSON), with its message in `ylokh_last_error()`.
/// - `YLOKH_E_PROTOCOL`: the reply broke the protocol: not SSE or JSON, invalid UTF-8 in the
///   content, a line, event or reply over the size limit, or a stream that ended without a
///   finish reason or `[DONE]`.
/// - `YLOKH_E_IO`: reading or writing the connection failed after it was established.
///
/// # Safety
/// As `ylokh_chat`; `out_text` and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ylokh_chat_text(
    client: *mut ylokh_client,
    model: *const c_char,
    messages_json: *const c_char,
    options_json: *const c_char,
    out_text: *mut *mut c_char,
    out_len: *mut usize,
) -> ylokh_status {
    guard(|| {
        if out_text.is_null() {
            return Err(Error::invalid("out_text is NULL"));
        }
        // SAFETY: this function's contract gives `client` NULL or live and the strings NULL
        // or NUL-terminated, as `handle`, opt_str and req_str require; the strings are only
        // read before the request starts.
        let (client, model, messages, options) = unsafe {
            (
                handle(client, "client")?,
                opt_str(model, "model")?,
                req_str(messages_json, "messages_json")?,
                opt_str(options_json, "options_json")?,
            )
        };
        let request = ChatRequest::from_json(model, messages, options)?;
        set_last_finish_reason(None);
        let message = client.client().chat_message(&request, None)?;
        set_last_finish_reason(message.finish_reason());
        // SAFETY: `out_text` is not NULL (checked above) and, like `out_len` (NULL or not),
        // writable by this function's contract, as hand_out_string requires.
        unsafe { hand_out_string(message.content().to_owned(), out_text, "out_text", out_len) }
    })
}

/// Like `ylokh_chat_text`, but returns the whole assistant message as one JSON object
/// (what `ylokh_stream_message_json` gives at the end of a stream): `role`, `content`,
/// `reasoning`, `refusal`, `tool_calls` (assembled: `id`, `type`, `function` `name` and
/// `arguments`), `finish_reason` and `usage` (null when unknown). On success `*out_json`
/// receives it, to release with `ylokh_string_free`, and `*out_len` (when not NULL) its
/// length. On failure the outputs are untouched. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: `*out_json` (and `*out_len`) hold the whole message.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client`, `messages_json` or `out_json` is NULL; one of the
///   strings is not UTF-8; the messages or the options have the wrong shape (see
///   `ylokh_chat`). Nothing was sent.
/// - `YLOKH_E_CONNECT`, `YLOKH_E_TLS`, `YLOKH_E_TIMEOUT`, `YLOKH_E_HTTP_STATUS`,
///   `YLOKH_E_API`, `YLOKH_E_PROTOCOL`, `YLOKH_E_IO`: the call failed, as for
///   `ylokh_chat_text`.
///
/// # Safety
/// As `ylokh_chat_text`.
#[no_mangle]
pub unsafe extern "C" fn ylokh_chat_message_json(
    client: *mut ylokh_client,
    model: *const c_char,
    messages_json: *const c_char,
    options_json: *const c_char,
    out_json: *mut *mut c_char,
    out_len: *mut usize,
) -> ylokh_status {
    guard(|| {
        if out_json.is_null() {
            return Err(Error::invalid("out_json is NULL"));
        }
        // SAFETY: the client is NULL or live, the strings NULL or NUL-terminated, as the
        // caller promises; they are read before the call starts and not kept.
        let (client, model, messages, options) = unsafe {
            (
                handle(client, "client")?,
                opt_str(model, "model")?,
                req_str(messages_json, "messages_json")?,
                opt_str(options_json, "options_json")?,
            )
        };
        let request = ChatRequest::from_json(model, messages, options)?;
        set_last_finish_reason(None);
        let message = client.client().chat_message(&request, None)?;
        set_last_finish_reason(message.finish_reason());
        // SAFETY: out_json checked non-NULL; both outputs writable as the caller promises.
        unsafe { hand_out_string(message.to_json(), out_json, "out_json", out_len) }
    })
}

/// Sends every message of `conversation` and streams the reply to `on_token`. On success
/// the assistant's reply is appended to the conversation (with its tool calls, if any); on
/// any failure, abort included, the conversation is unchanged. Add the user's message with
/// `ylokh_conversation_add` first. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the reply is complete and appended to the conversation.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client`, `conversation` or `on_token` is NULL; `model` or
///   `options_json` is not UTF-8; `options_json` is not a JSON object, or sets `messages` or
///   `model`, or a non-boolean `stream`; or the call was made from inside a callback of
///   another chat on the same thread. Nothing was sent.
/// - `YLOKH_E_ABORTED`: `on_token` returned non-zero.
/// - `YLOKH_E_CONNECT`: the server or the proxy could not be reached (after the retries).
/// - `YLOKH_E_TLS`: the TLS handshake failed (an untrusted or invalid certificate).
/// - `YLOKH_E_TIMEOUT`: the server was silent longer than the timeout, or the deadline
///   passed.
/// - `YLOKH_E_HTTP_STATUS`: the server answered with a non-2xx status (after the retries for
///   408, 429 and 5xx); `ylokh_last_http_status()` has it, `ylokh_last_error()` the server's
///   message.
/// - `YLOKH_E_API`: the server reported an error inside a 2xx reply (in the stream or as
///   JSON), with its message in `ylokh_last_error()`.
/// - `YLOKH_E_PROTOCOL`: the reply broke the protocol: not SSE or JSON, invalid UTF-8 in the
///   content, a line, event or reply over the size limit, or a stream that ended without a
///   finish reason or `[DONE]`.
/// - `YLOKH_E_IO`: reading or writing the connection failed after it was established.
///
/// On every status but `YLOKH_OK` the conversation is unchanged.
///
/// # Safety
/// As `ylokh_chat`; `conversation` is NULL or live and not used by another thread meanwhile.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_chat(
    client: *mut ylokh_client,
    conversation: *mut ylokh_conversation,
    model: *const c_char,
    options_json: *const c_char,
    on_token: ylokh_token_cb,
    userdata: *mut c_void,
) -> ylokh_status {
    let request = ylokh_request {
        model,
        options_json,
        conversation,
        on_token,
        userdata,
        ..ylokh_request::EMPTY
    };
    // Checked here so that the errors name this function's arguments, not the request's.
    if conversation.is_null() {
        return guard(|| Err(Error::invalid("conversation is NULL")));
    }
    if on_token.is_none() {
        return guard(|| Err(Error::invalid("on_token is NULL")));
    }
    // SAFETY: `request` lives on this stack for the whole call and holds this function's
    // arguments, whose contract is the one ylokh_chat_ex asks of a request's fields.
    unsafe { ylokh_chat_ex(client, &request) }
}

/// The general form of every chat call: messages from JSON or a conversation, a token
/// callback, an event callback or both, and an optional cancel token. The request struct
/// is read before the call starts and not kept. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the reply is complete (and appended to `conversation`, if one was given).
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` or `request` is NULL; `request->struct_size` is
///   not the size of a `ylokh_request` of this or an older version (or sets fields this
///   library does not know); neither `on_token` nor `on_event` is set; not exactly one of
///   `messages_json` and `conversation` is set; a string is not UTF-8; the messages or the
///   options have the wrong shape (see `ylokh_chat`); or the call was made from inside a
///   callback of another chat on the same thread. Nothing was sent.
/// - `YLOKH_E_ABORTED`: a callback returned non-zero, or `cancel` was triggered.
/// - `YLOKH_E_CONNECT`: the server or the proxy could not be reached (after the retries).
/// - `YLOKH_E_TLS`: the TLS handshake failed (an untrusted or invalid certificate).
/// - `YLOKH_E_TIMEOUT`: the server was silent longer than the timeout, or the deadline
///   passed.
/// - `YLOKH_E_HTTP_STATUS`: the server answered with a non-2xx status (after the retries for
///   408, 429 and 5xx); `ylokh_last_http_status()` has it, `ylokh_last_error()` the server's
///   message.
/// - `YLOKH_E_API`: the server reported an error inside a 2xx reply (in the stream or as
///   JSON), with its message in `ylokh_last_error()`.
/// - `YLOKH_E_PROTOCOL`: the reply broke the protocol: not SSE or JSON, invalid UTF-8 in the
///   content, a line, event or reply over the size limit, or a stream that ended without a
///   finish reason or `[DONE]`.
/// - `YLOKH_E_IO`: reading or writing the connection failed after it was established.
///
/// # Safety
/// `client` is NULL or live; `request` is NULL or points to a readable `ylokh_request`
/// (`struct_size` bytes) whose pointers obey the rules of `ylokh_chat` and
/// `ylokh_conversation_chat`.
#[no_mangle]
pub unsafe extern "C" fn ylokh_chat_ex(
    client: *mut ylokh_client,
    request: *const ylokh_request,
) -> ylokh_status {
    guard(|| {
        // SAFETY: `client` is NULL or live (this function's contract), as `handle` requires;
        // it is borrowed for this call only.
        let client = unsafe { handle(client, "client") }?;
        // SAFETY: `request` is NULL or points to a readable ylokh_request whose struct_size
        // says how much of it the caller wrote (this function's contract), as read_request
        // requires; it is copied before use.
        let request = &unsafe { read_request(request) }?;
        if request.on_token.is_none() && request.on_event.is_none() {
            return Err(Error::invalid(
                "the request has neither on_token nor on_event",
            ));
        }
        // SAFETY: the request's pointers obey this function's contract, which is `parts`'.
        let parts = unsafe { request.parts() }?;
        let callbacks = Callbacks {
            on_token: request.on_token,
            on_event: request.on_event,
            userdata: request.userdata,
            scratch: Vec::new(),
        };
        run_chat(
            client.client(),
            parts.model,
            parts.messages,
            parts.options,
            parts.cancel.as_ref(),
            callbacks,
        )
    })
}
