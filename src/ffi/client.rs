//! The client handle: ylokh_client_* (creation, every setter, the debugging log).

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

use super::{guard, guard_value, handle, opt_str, req_str, ylokh_status};
use crate::client::Client;
use crate::error::Error;
use crate::settings::{Logger, Trust};

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
/// `"https://chatapi.ylokh.xyz/v1"` (or `YLOKH_BASE_URL`, else `OPENAI_BASE_URL`), API key from
/// `YLOKH_API_KEY` (else `OPENAI_API_KEY`), `Origin`/`Referer` headers of chat.ylokh.xyz,
/// timeout 120 s, no deadline, 2 retries, proxy from `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY`
/// unless `NO_PROXY` matches.
///
/// Returns a handle to release with `ylokh_client_free`, or NULL only if the library failed
/// internally. Since 0.1.0.
///
/// # Returns
/// A new client, to release with `ylokh_client_free`; NULL only if the library failed
/// internally (`ylokh_last_error()` says why).
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
            // SAFETY: not NULL (checked); by this function's contract a handle from
            // ylokh_client_new (Box::into_raw) that no thread uses any more and that is
            // freed only once.
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
        // SAFETY: `client` is NULL or a live handle (this function's contract), as `handle`
        // requires; the borrow ends when `change` returns.
        let client = unsafe { handle(client, "client") }?;
        change(client.client())
    })
}

/// Sets the base URL, e.g. "http://127.0.0.1:8080/v1"; "/chat/completions" is appended to
/// it. Must start with http:// or https://, have an ASCII host (IDN hosts in their xn--
/// form), a port from 1 to 65535 if one is written, and no "user:password@" (set the API
/// key or an Authorization header instead); else `YLOKH_E_INVALID_ARGUMENT`, and the
/// setting is unchanged. A non-ASCII path is percent-encoded as UTF-8. The string is
/// copied. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the base URL is set.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` or `base_url` is NULL, or `base_url` is not UTF-8,
///   does not start with http:// or https://, has no host or a non-ASCII one, has a port
///   outside 1 to 65535 (or an empty one), or has a user name or password (not repeated in
///   the message). The setting is unchanged.
///
/// # Safety
/// `client` is NULL or live; `base_url` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_base_url(
    client: *mut ylokh_client,
    base_url: *const c_char,
) -> ylokh_status {
    // SAFETY: this function's contract gives `client` NULL or live and `base_url` NULL or
    // NUL-terminated, which is what with_client and the string readers require; nothing is kept
    // after return.
    unsafe {
        with_client(client, |c| {
            let url = req_str(base_url, "base_url")?;
            c.set_base_url(url)
        })
    }
}

/// Sets the API key, sent as `"Authorization: Bearer <key>"` unless an Authorization header
/// was set with `ylokh_client_set_header`. NULL or "" removes it. A key that cannot be sent
/// (non-ASCII, spaces around it, a line end such as a "\r" left from a file, control
/// characters) gives `YLOKH_E_INVALID_ARGUMENT` saying what is wrong, and the previous key
/// stays. The key never appears in error messages or the log. A key this function sets is
/// sent to whatever base URL the client uses; a key a new client took from the environment
/// is never sent to the original provider's host chatapi.ylokh.xyz. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the key is set (or removed).
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL, or `api_key` is not UTF-8, or cannot be
///   sent in a header (non-ASCII, a line end, spaces around it, control characters); the
///   message says which, without the key. The previous key stays.
///
/// # Safety
/// `client` is NULL or live; `api_key` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_api_key(
    client: *mut ylokh_client,
    api_key: *const c_char,
) -> ylokh_status {
    // SAFETY: this function's contract gives `client` NULL or live and `api_key` NULL or
    // NUL-terminated, which is what with_client and the string readers require; nothing is
    // kept after return.
    unsafe { with_client(client, |c| c.set_api_key(opt_str(api_key, "api_key")?)) }
}

/// Sends requests through a proxy: "http://host:port", "https://host:port" or
/// "socks5://host:port", with "user:password@" before the host when needed
/// (percent-encoded). NULL or "" clears it (the proxy environment variables apply again,
/// unless turned off with `ylokh_client_set_proxy_from_env`). Credentials never appear in
/// error messages. Idle connections are closed. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the proxy is set (or cleared).
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL, or `proxy_url` is not UTF-8, not a URL,
///   has a scheme other than http, https and socks5, has no host, or has a port outside 1
///   to 65535. The URL is never repeated in the message. The setting is unchanged.
///
/// # Safety
/// `client` is NULL or live; `proxy_url` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_proxy(
    client: *mut ylokh_client,
    proxy_url: *const c_char,
) -> ylokh_status {
    // SAFETY: this function's contract gives `client` NULL or live and `proxy_url` NULL or
    // NUL-terminated, which is what with_client and the string readers require; nothing is kept
    // after return.
    unsafe { with_client(client, |c| c.set_proxy(opt_str(proxy_url, "proxy_url")?)) }
}

/// Whether `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` are honoured when no
/// proxy is set (non-zero: yes, the default; 0: connect directly). Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the setting is applied.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_proxy_from_env(
    client: *mut ylokh_client,
    enabled: c_int,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
    unsafe {
        with_client(client, |c| {
            c.set_proxy_from_env(enabled != 0);
            Ok(())
        })
    }
}

/// Whether a 307 or 308 redirect to another origin (another scheme, host or port) is
/// followed. 0 (the default): such a redirect ends the call with `YLOKH_E_HTTP_STATUS`, the
/// redirect's status in `ylokh_last_http_status()` and its location in the message.
/// Non-zero: it is followed, sending the messages and options there but neither the API
/// key nor any header set with `ylokh_client_set_header` (any of them may carry a
/// credential). Redirects within the origin keep everything; https to http is always
/// refused. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the setting is applied.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_cross_origin_redirects(
    client: *mut ylokh_client,
    allow: c_int,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
    unsafe {
        with_client(client, |c| {
            c.set_cross_origin_redirects(allow != 0);
            Ok(())
        })
    }
}

/// Bounds connecting and every wait for the next bytes of the reply, in milliseconds
/// (default 120000). A reply that keeps streaming is never cut by it; a silent server is,
/// with `YLOKH_E_TIMEOUT`. 0 is refused: a call always has a bound on silence, or a dead
/// server would hang it forever (UINT64_MAX is accepted and means practically none). The
/// deadline, by contrast, is an extra bound that is off by default, so there 0 means none.
/// Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the timeout is set.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL, or `timeout_ms` is 0.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_timeout_ms(
    client: *mut ylokh_client,
    timeout_ms: u64,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
    unsafe {
        with_client(client, |c| {
            if timeout_ms == 0 {
                return Err(Error::invalid("timeout_ms must be greater than zero"));
            }
            c.set_timeout(Duration::from_millis(timeout_ms))
        })
    }
}

/// Bounds a whole call, retries included, in milliseconds; 0 (the default) means no
/// bound, as does UINT64_MAX in practice. A call that runs out returns `YLOKH_E_TIMEOUT`,
/// after the tokens delivered so far. (Unlike the timeout, which every call must have, the
/// deadline is optional: see `ylokh_client_set_timeout_ms`.) Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the deadline is set (or removed, for 0).
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_deadline_ms(
    client: *mut ylokh_client,
    deadline_ms: u64,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
    unsafe {
        with_client(client, |c| {
            c.set_deadline(Some(Duration::from_millis(deadline_ms)));
            Ok(())
        })
    }
}

/// Sets a request header, replacing any earlier value of the same name (case-insensitive);
/// a NULL value removes it. The defaults `"Origin: https://chat.ylokh.xyz"` and
/// `"Referer: https://chat.ylokh.xyz/"` can be removed this way. Invalid names or values
/// (e.g. containing CR or LF) give `YLOKH_E_INVALID_ARGUMENT`, and so do the headers that
/// define the message's framing or the connection, which the library writes itself:
/// Content-Length, Transfer-Encoding, Connection, Upgrade, TE, Trailer, Host, Keep-Alive
/// and Proxy-Connection (setting or removing them). A Content-Type set here replaces the
/// library's "application/json". Headers set here go only to the base URL's origin (see
/// `ylokh_client_set_cross_origin_redirects`). Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the header is set (or removed).
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` or `name` is NULL; `name` or `value` is not UTF-8,
///   or not a valid HTTP header name or value (for example with CR or LF); or `name` is one
///   of the framing and connection headers above. The setting is unchanged.
///
/// # Safety
/// `client` is NULL or live; `name` and `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_header(
    client: *mut ylokh_client,
    name: *const c_char,
    value: *const c_char,
) -> ylokh_status {
    // SAFETY: this function's contract gives `client` NULL or live and `name` and `value` NULL or
    // NUL-terminated, which is what with_client and the string readers require; nothing is kept
    // after return.
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
/// # Returns
/// - `YLOKH_OK`: the number of retries is set.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_max_retries(
    client: *mut ylokh_client,
    max_retries: u32,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
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
/// # Returns
/// - `YLOKH_OK`: the delay is set.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_retry_delay_ms(
    client: *mut ylokh_client,
    delay_ms: u64,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
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
/// # Returns
/// - `YLOKH_OK`: the limit is set.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL, or `max_bytes` is below 1024.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_max_event_bytes(
    client: *mut ylokh_client,
    max_bytes: usize,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
    unsafe { with_client(client, |c| c.set_max_event_bytes(max_bytes)) }
}

/// Trusts only the certificate authorities in a PEM file (a private CA, or a self-signed
/// server's own certificate) instead of the bundled Mozilla roots. The file is read now: a
/// missing, unreadable or certificate-less file gives `YLOKH_E_INVALID_ARGUMENT` and leaves
/// the setting unchanged. NULL goes back to the bundled roots. Certificate verification is
/// always on; there is no way to turn it off. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the CA file is read and used from now on (or, for NULL, the bundled roots).
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL; `pem_path` is not UTF-8; or the file is
///   missing, unreadable or holds no certificate. The setting is unchanged.
///
/// # Safety
/// `client` is NULL or live; `pem_path` is NULL or a NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_ca_file(
    client: *mut ylokh_client,
    pem_path: *const c_char,
) -> ylokh_status {
    // SAFETY: this function's contract gives `client` NULL or live and `pem_path` NULL or
    // NUL-terminated, which is what with_client and the string readers require; nothing is kept
    // after return.
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
/// roots (for corporate CAs installed system-wide); this replaces any CA file set with
/// `ylokh_client_set_ca_file`. 0: stop using the system store, back to the bundled roots;
/// when the system store is not in use (the bundled roots or a CA file are), 0 changes
/// nothing, so a CA file stays in force (`ylokh_client_set_ca_file(client, NULL)` drops it).
/// Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the trust setting is applied.
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_use_system_roots(
    client: *mut ylokh_client,
    enabled: c_int,
) -> ylokh_status {
    // SAFETY: `client` is NULL or live (this function's contract), as with_client requires.
    unsafe {
        with_client(client, |c| {
            if enabled != 0 {
                c.set_trust(Trust::System)
            } else {
                c.stop_using_system_roots();
                Ok(())
            }
        })
    }
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

// SAFETY: CLogger only holds the pointers and calls the callback. The caller of
// ylokh_client_set_log promises (its documented contract) that the callback may be called
// with this userdata from any thread that chats on the client, at the same time too.
unsafe impl Send for CLogger {}
unsafe impl Sync for CLogger {}

impl CLogger {
    fn emit(&self, line: &str) {
        // Log lines come from the library's own messages; a NUL would end the C string early.
        let text = CString::new(line.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: the callback and userdata are valid to call from this thread until the
        // client is freed (ylokh_client_set_log's contract), and the client is in use here;
        // `text` is NUL-terminated after len bytes and lives until the callback returns.
        unsafe { (self.callback)(self.userdata, text.as_ptr(), text.as_bytes().len()) }
    }
}

/// Sets (or with a NULL `on_log` removes) the debugging log of a client. Unlike a chat's
/// userdata, this `userdata` is kept by the client: it must stay valid, and the callback
/// safe to call from any thread that chats on the client, until the client is freed (chats
/// already running when the log is replaced keep using the old one until they return). From
/// Go, pass C-allocated memory, not a Go pointer. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the log is set (or removed).
/// - `YLOKH_E_INVALID_ARGUMENT`: `client` is NULL.
///
/// # Safety
/// `client` is NULL or live; `on_log` is NULL or safe to call with `userdata` as above.
#[no_mangle]
pub unsafe extern "C" fn ylokh_client_set_log(
    client: *mut ylokh_client,
    on_log: ylokh_log_cb,
    userdata: *mut c_void,
) -> ylokh_status {
    // SAFETY: this function's contract gives `client` NULL or live, which is what
    // with_client requires; `on_log` and `userdata` are only stored here (see CLogger).
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
