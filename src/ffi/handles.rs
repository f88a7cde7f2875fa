//! Handles: client, conversation, cancel token, and strings handed out by the library.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

use super::{guard, guard_value, handle, opt_str, req_str, ylokh_status};
use crate::client::{CancelToken, Client, Logger, Trust};
use crate::conversation::Conversation;
use crate::error::Error;

/// A chat client: settings and a pool of keep-alive connections. Opaque.
///
/// Thread safety: one client may be used by any number of threads at once, for chats and
/// setters alike. A setter called while chats run affects only chats that start after it.
pub struct ylokh_client {
    inner: Client,
}

impl ylokh_client {
    pub(crate) fn client(&self) -> &Client {
        &self.inner
    }
}

/// Creates a client with the original provider's defaults: base URL
/// "https://chatapi.ylokh.xyz/v1" (or `YLOKH_BASE_URL`, else `OPENAI_BASE_URL`), API key from
/// `YLOKH_API_KEY` (else `OPENAI_API_KEY`), `Origin`/`Referer` headers of chat.ylokh.xyz,
/// timeout 120 s, no deadline, 2 retries, proxy from `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY`
/// unless `NO_PROXY` matches.
///
/// Returns a handle to release with `ylokh_client_free`, or NULL only if the library failed
/// internally. Since 0.1.0.
#[no_mangle]
pub extern "C" fn ylokh_client_new() -> *mut ylokh_client {
    guard_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(ylokh_client {
            inner: Client::new(),
        }))
    })
}

/// Releases a client and closes its idle connections. NULL does nothing. The client must
/// not be in use by any other thread, and must not be used afterwards (freeing it twice is
/// undefined behaviour). Since 0.1.0.
///
/// # Safety
/// `client` is NULL or a live handle from `ylokh_client_new`.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_free(client: *mut ylokh_client) {
    guard_value((), || {
        if !client.is_null() {
            // SAFETY: the caller gives up a handle made by Box::into_raw.
            drop(unsafe { Box::from_raw(client) });
        }
    })
}

/// Applies `change` to a live client; the shared shape of every setter.
///
/// # Safety
/// `client` is NULL or a live handle.
unsafe fn with_client(
    client: *const ylokh_client,
    change: impl FnOnce(&Client) -> Result<(), Error>,
) -> ylokh_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let client = unsafe { handle(client, "client") }?;
        change(client.client())
    })
}

/// Sets the base URL, e.g. "http://127.0.0.1:8080/v1"; "/chat/completions" is appended to
/// it. Must start with http:// or https:// and have a host (else
/// `YLOKH_E_INVALID_ARGUMENT`, and the setting is unchanged). The string is copied.
/// Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live; `base_url` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_base_url(
    client: *mut ylokh_client,
    base_url: *const c_char,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            let url = req_str(base_url, "base_url")?;
            c.set_base_url(url)
        })
    }
}

/// Sets the API key, sent as "Authorization: Bearer <key>" unless an Authorization header
/// was set with `ylokh_client_set_header`. NULL or "" removes it. The key never appears in
/// error messages. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live; `api_key` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_api_key(
    client: *mut ylokh_client,
    api_key: *const c_char,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            c.set_api_key(opt_str(api_key, "api_key")?);
            Ok(())
        })
    }
}

/// Sends requests through a proxy: "http://host:port", "https://host:port" or
/// "socks5://host:port", with "user:password@" before the host when needed
/// (percent-encoded). NULL or "" clears it (the proxy environment variables apply again,
/// unless turned off with `ylokh_client_set_proxy_from_env`). Credentials never appear in
/// error messages. Idle connections are closed. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live; `proxy_url` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_proxy(
    client: *mut ylokh_client,
    proxy_url: *const c_char,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe { with_client(client, |c| c.set_proxy(opt_str(proxy_url, "proxy_url")?)) }
}

/// Whether `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` are honoured when no
/// proxy is set (non-zero: yes, the default; 0: connect directly). Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_proxy_from_env(
    client: *mut ylokh_client,
    enabled: c_int,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            c.set_proxy_from_env(enabled != 0);
            Ok(())
        })
    }
}

/// Bounds connecting and every wait for the next bytes of the reply, in milliseconds
/// (default 120000). A reply that keeps streaming is never cut by it; a silent server is,
/// with `YLOKH_E_TIMEOUT`. 0 is refused. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_timeout_ms(
    client: *mut ylokh_client,
    timeout_ms: u64,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe { with_client(client, |c| c.set_timeout(Duration::from_millis(timeout_ms))) }
}

/// Bounds a whole call, retries included, in milliseconds; 0 (the default) means no
/// bound. A call that runs out returns `YLOKH_E_TIMEOUT`, after the tokens delivered so far.
/// Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_deadline_ms(
    client: *mut ylokh_client,
    deadline_ms: u64,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            c.set_deadline(Some(Duration::from_millis(deadline_ms)));
            Ok(())
        })
    }
}

/// Sets a request header, replacing any earlier value of the same name (case-insensitive);
/// a NULL value removes it. The defaults "Origin: https://chat.ylokh.xyz" and
/// "Referer: https://chat.ylokh.xyz/" can be removed this way. Invalid names or values
/// (e.g. containing CR or LF) give `YLOKH_E_INVALID_ARGUMENT`. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live; `name` and `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_header(
    client: *mut ylokh_client,
    name: *const c_char,
    value: *const c_char,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            c.set_header(req_str(name, "name")?, opt_str(value, "value")?)
        })
    }
}

/// How many times a failed attempt is retried (default 2). Retries happen only before the
/// first token is delivered, on connect failures and on HTTP 408, 429 and 5xx, with
/// exponential backoff and jitter, honouring the server's Retry-After (up to 60 s).
/// Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_max_retries(
    client: *mut ylokh_client,
    max_retries: u32,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            c.set_max_retries(max_retries);
            Ok(())
        })
    }
}

/// The first retry's backoff in milliseconds (default 500); each later retry waits twice as
/// long (at most 8 s), less up to a quarter at random. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_retry_delay_ms(
    client: *mut ylokh_client,
    delay_ms: u64,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            c.set_retry_delay(Duration::from_millis(delay_ms));
            Ok(())
        })
    }
}

/// The longest line, event or non-streaming reply accepted, in bytes (default 16 MiB,
/// at least 1024). Anything longer ends the call with `YLOKH_E_PROTOCOL`, so memory stays
/// bounded whatever the server sends. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_max_event_bytes(
    client: *mut ylokh_client,
    max_bytes: usize,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe { with_client(client, |c| c.set_max_event_bytes(max_bytes)) }
}

/// Trusts only the certificate authorities in a PEM file (a private CA, or a self-signed
/// server's own certificate) instead of the bundled Mozilla roots. The file is read now: a
/// missing, unreadable or certificate-less file gives `YLOKH_E_INVALID_ARGUMENT` and leaves
/// the setting unchanged. NULL goes back to the bundled roots. Certificate verification is
/// always on; there is no way to turn it off. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live; `pem_path` is NULL or a NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_ca_file(
    client: *mut ylokh_client,
    pem_path: *const c_char,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            let trust = match opt_str(pem_path, "pem_path")? {
                Some(path) => Trust::CaFile(path.into()),
                None => Trust::Bundled,
            };
            c.set_trust(trust)
        })
    }
}

/// Non-zero: trust the operating system's certificate store instead of the bundled Mozilla
/// roots (for corporate CAs installed system-wide). 0: back to the bundled roots. Replaces
/// any CA file set with `ylokh_client_set_ca_file`. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_use_system_roots(
    client: *mut ylokh_client,
    enabled: c_int,
) -> ylokh_status {
    let trust = if enabled != 0 {
        Trust::System
    } else {
        Trust::Bundled
    };
    // SAFETY: forwarded from the caller.
    unsafe { with_client(client, |c| c.set_trust(trust)) }
}

/// Receives one line of the debugging log: `message` is `len` bytes of UTF-8 followed by a
/// NUL, borrowed for the call. Lines say what a call does: the request line, the HTTP
/// status and when it came, the first event, retries and why, redirects, the end. API keys
/// and proxy passwords are replaced by `<redacted>`. Called on the thread running the chat.
pub type ylokh_log_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, message: *const c_char, len: usize)>;

/// The C log callback with its userdata, kept by the client.
struct CLogger {
    callback: unsafe extern "C" fn(*mut c_void, *const c_char, usize),
    userdata: *mut c_void,
}

// SAFETY: the caller of ylokh_client_set_log promises that the callback may be called with
// this userdata from any thread that chats on the client.
unsafe impl Send for CLogger {}
unsafe impl Sync for CLogger {}

impl CLogger {
    fn emit(&self, line: &str) {
        // Log lines come from the library's own messages; a NUL would end the C string early.
        let text = CString::new(line.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: promised by the caller of ylokh_client_set_log; the string lives until the
        // callback returns.
        unsafe { (self.callback)(self.userdata, text.as_ptr(), text.as_bytes().len()) }
    }
}

/// Sets (or with a NULL `on_log` removes) the debugging log of a client. Unlike a chat's
/// userdata, this `userdata` is kept by the client: it must stay valid, and the callback
/// safe to call from any thread that chats on the client, until the client is freed (chats
/// already running when the log is replaced keep using the old one until they return). From
/// Go, pass C-allocated memory, not a Go pointer. Since 0.1.0.
///
/// # Safety
/// `client` is NULL or live; `on_log` is NULL or safe to call with `userdata` as above.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_log(
    client: *mut ylokh_client,
    on_log: ylokh_log_cb,
    userdata: *mut c_void,
) -> ylokh_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_client(client, |c| {
            let logger = on_log.map(|callback| {
                let sink = CLogger { callback, userdata };
                Arc::new(move |line: &str| sink.emit(line)) as Logger
            });
            c.set_log(logger);
            Ok(())
        })
    }
}

/// Message history: an ordered list of messages. Opaque.
///
/// Not thread-safe: use a conversation from one thread at a time (different conversations
/// may be used on different threads at once, sharing one client).
pub struct ylokh_conversation {
    pub(crate) inner: Conversation,
}

/// Creates an empty conversation; release it with `ylokh_conversation_free`. NULL only if
/// the library failed internally. Since 0.1.0.
#[no_mangle]
pub extern "C" fn ylokh_conversation_new() -> *mut ylokh_conversation {
    guard_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(ylokh_conversation {
            inner: Conversation::new(),
        }))
    })
}

/// Creates a conversation from a JSON array of message objects (as written by
/// `ylokh_conversation_to_json`). On success `*out` receives the new handle; on failure
/// `*out` is untouched and the status says why. Since 0.1.0.
///
/// # Safety
/// `json` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_from_json(
    json: *const c_char,
    out: *mut *mut ylokh_conversation,
) -> ylokh_status {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: forwarded from the caller.
        let json = unsafe { req_str(json, "json") }?;
        let inner = Conversation::from_json(json)?;
        let conversation = Box::into_raw(Box::new(ylokh_conversation { inner }));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(conversation) };
        Ok(())
    })
}

/// Releases a conversation. NULL does nothing; freeing twice is undefined behaviour.
/// Since 0.1.0.
///
/// # Safety
/// `conversation` is NULL or a live handle not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_free(conversation: *mut ylokh_conversation) {
    guard_value((), || {
        if !conversation.is_null() {
            // SAFETY: the caller gives up a handle made by Box::into_raw.
            drop(unsafe { Box::from_raw(conversation) });
        }
    })
}

/// # Safety
/// `conversation` is NULL or a live handle used by this thread only.
unsafe fn conversation_mut<'a>(
    conversation: *mut ylokh_conversation,
) -> Result<&'a mut Conversation, Error> {
    // SAFETY: forwarded from the caller.
    unsafe { conversation.as_mut() }
        .map(|c| &mut c.inner)
        .ok_or_else(|| Error::invalid("conversation is NULL"))
}

/// Appends a message `{"role": role, "content": content}` (e.g. role "system", "user" or
/// "assistant"). Both strings are copied; neither may be NULL; role may not be empty.
/// Since 0.1.0.
///
/// # Safety
/// `conversation` is NULL or live; `role` and `content` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_add(
    conversation: *mut ylokh_conversation,
    role: *const c_char,
    content: *const c_char,
) -> ylokh_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let (conversation, role, content) = unsafe {
            (
                conversation_mut(conversation)?,
                req_str(role, "role")?,
                req_str(content, "content")?,
            )
        };
        conversation.push(role, content)
    })
}

/// Appends one message given as a JSON object, for messages with more than role and
/// content (tool results, names, content parts). Since 0.1.0.
///
/// # Safety
/// `conversation` is NULL or live; `message_json` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_add_json(
    conversation: *mut ylokh_conversation,
    message_json: *const c_char,
) -> ylokh_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let (conversation, json) = unsafe {
            (
                conversation_mut(conversation)?,
                req_str(message_json, "message_json")?,
            )
        };
        conversation.push_message_json(json)
    })
}

/// The number of messages; 0 for NULL. Since 0.1.0.
///
/// # Safety
/// `conversation` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_len(conversation: *const ylokh_conversation) -> usize {
    // SAFETY: forwarded from the caller.
    guard_value(0, || {
        unsafe { conversation.as_ref() }.map_or(0, |c| c.inner.len())
    })
}

/// Removes every message. Since 0.1.0.
///
/// # Safety
/// `conversation` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_clear(
    conversation: *mut ylokh_conversation,
) -> ylokh_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { conversation_mut(conversation) }?.clear();
        Ok(())
    })
}

/// Writes the messages as a JSON array to `*out_json` (NUL-terminated, to be released with
/// `ylokh_string_free`) and its length to `*out_len` when `out_len` is not NULL.
/// Since 0.1.0.
///
/// # Safety
/// `conversation` is NULL or live; `out_json` is NULL or writable; `out_len` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_to_json(
    conversation: *const ylokh_conversation,
    out_json: *mut *mut c_char,
    out_len: *mut usize,
) -> ylokh_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let conversation = unsafe { handle(conversation, "conversation") }?;
        // SAFETY: forwarded from the caller.
        unsafe { hand_out_string(conversation.inner.to_json(), out_json, out_len) }
    })
}

/// Gives a string to C: `*out` receives it (NUL-terminated; interior NULs are possible, the
/// length is authoritative) and `*out_len` its length.
///
/// # Safety
/// `out` is NULL or writable; `out_len` is NULL or writable.
pub(crate) unsafe fn hand_out_string(
    text: String,
    out: *mut *mut c_char,
    out_len: *mut usize,
) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::invalid("the output pointer is NULL"));
    }
    // malloc, not CString: the text may hold NULs, and CString::from_raw would then free
    // with a wrong size. The length is authoritative; the NUL is for convenience.
    let len = text.len();
    // SAFETY: plain allocation; checked for NULL below.
    let raw = unsafe { libc::malloc(len + 1) }.cast::<c_char>();
    if raw.is_null() {
        return Err(Error::new(crate::ErrorKind::Internal, "out of memory"));
    }
    // SAFETY: raw has len + 1 bytes; the caller promises out and out_len are writable.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), raw, len);
        raw.add(len).write(0);
        out.write(raw);
        if !out_len.is_null() {
            out_len.write(len);
        }
    }
    Ok(())
}

/// Releases a string handed out by the library (`ylokh_chat_text`,
/// `ylokh_conversation_to_json`). NULL does nothing. Never pass it to `free()`.
/// Since 0.1.0.
///
/// # Safety
/// `s` is NULL or a string from this library not yet released.
#[no_mangle]
pub unsafe extern "C" fn ylokh_string_free(s: *mut c_char) {
    guard_value((), || {
        // SAFETY: NULL or a string from hand_out_string, made with malloc.
        unsafe { libc::free(s.cast()) }
    })
}

/// Stops calls from another thread. Opaque. Trigger it from any thread; every call given
/// this token returns `YLOKH_E_ABORTED` within about 50 ms, even while it waits for a silent
/// server.
pub struct ylokh_cancel {
    pub(crate) inner: CancelToken,
}

/// Creates a cancel token (not triggered). Release it with `ylokh_cancel_free` once no call
/// uses it. Since 0.1.0.
#[no_mangle]
pub extern "C" fn ylokh_cancel_new() -> *mut ylokh_cancel {
    guard_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(ylokh_cancel {
            inner: CancelToken::new(),
        }))
    })
}

/// Triggers the token: calls using it stop, and calls started with it later stop at once,
/// until `ylokh_cancel_reset`. Safe to call from any thread, any number of times.
/// Since 0.1.0.
///
/// # Safety
/// `cancel` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_cancel_trigger(cancel: *const ylokh_cancel) -> ylokh_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { handle(cancel, "cancel") }?.inner.cancel();
        Ok(())
    })
}

/// Clears a triggered token so it can be used again. Since 0.1.0.
///
/// # Safety
/// `cancel` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_cancel_reset(cancel: *const ylokh_cancel) -> ylokh_status {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { handle(cancel, "cancel") }?.inner.reset();
        Ok(())
    })
}

/// Releases a cancel token. NULL does nothing. No call may still be using it.
/// Since 0.1.0.
///
/// # Safety
/// `cancel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn ylokh_cancel_free(cancel: *mut ylokh_cancel) {
    guard_value((), || {
        if !cancel.is_null() {
            // SAFETY: the caller gives up a handle made by Box::into_raw.
            drop(unsafe { Box::from_raw(cancel) });
        }
    })
}
