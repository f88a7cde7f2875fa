//! The C ABI. Only argument checks, conversions, the panic guard and the thread-local last
//! error live here; every behaviour is the safe Rust API's.
//!
//! Rules kept by every exported function: a NULL where a pointer is required returns
//! `YLOKH_E_INVALID_ARGUMENT`; strings are copied before the function returns; no panic
//! crosses into C (it becomes `YLOKH_E_INTERNAL`); output parameters are written only on
//! success.

#![allow(non_camel_case_types)]
// The one module that may use unsafe (the crate denies it elsewhere): raw pointers from C.
// Every unsafe block says why it is sound.
#![allow(unsafe_code)]

// In the order the header lists them (cbindgen follows the order of these lines).
mod chat;
mod client;
mod conversation;
mod event;
mod request;

mod strings;

mod cancel;

mod stream;

pub use cancel::*;
pub use chat::*;
pub use client::*;
pub use conversation::*;
pub use event::*;
pub use request::*;
pub use stream::*;
pub use strings::*;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use crate::error::{Error, ErrorKind};

/// A status code. `YLOKH_OK` (0) is success; every other value has a message in
/// `ylokh_last_error()`. The numbers are fixed and will not change.
pub type ylokh_status = c_int;

/// Success.
pub const YLOKH_OK: ylokh_status = 0;
/// A NULL pointer, a string that is not UTF-8, messages or options of the wrong shape, a bad
/// URL or header. Nothing was sent.
pub const YLOKH_E_INVALID_ARGUMENT: ylokh_status = 1;
/// The callback returned non-zero, or the call was cancelled with `ylokh_cancel_trigger`.
pub const YLOKH_E_ABORTED: ylokh_status = 2;
/// The server or the proxy could not be reached.
pub const YLOKH_E_CONNECT: ylokh_status = 3;
/// The TLS handshake failed (for example an untrusted certificate).
pub const YLOKH_E_TLS: ylokh_status = 4;
/// The server was silent longer than the timeout, or the deadline passed.
pub const YLOKH_E_TIMEOUT: ylokh_status = 5;
/// The server answered with a non-2xx status; `ylokh_last_http_status()` has it.
pub const YLOKH_E_HTTP_STATUS: ylokh_status = 6;
/// The server reported an error inside a 2xx reply (in the stream or as JSON).
pub const YLOKH_E_API: ylokh_status = 7;
/// The reply broke the protocol: invalid JSON, a line over the limit, a stream cut short.
pub const YLOKH_E_PROTOCOL: ylokh_status = 8;
/// Reading or writing the connection failed after it was established.
pub const YLOKH_E_IO: ylokh_status = 9;
/// A bug in the library, caught before it could reach the caller.
pub const YLOKH_E_INTERNAL: ylokh_status = 10;
/// Not a failure: `ylokh_stream_next` found no event within its wait; try again later.
/// `ylokh_last_error()` is left as it was.
pub const YLOKH_E_AGAIN: ylokh_status = 11;

/// The status a kind of error is reported with (the constants above are the only place
/// the numbers are written).
const fn status_of_kind(kind: ErrorKind) -> ylokh_status {
    match kind {
        ErrorKind::InvalidArgument => YLOKH_E_INVALID_ARGUMENT,
        ErrorKind::Aborted => YLOKH_E_ABORTED,
        ErrorKind::Connect => YLOKH_E_CONNECT,
        ErrorKind::Tls => YLOKH_E_TLS,
        ErrorKind::Timeout => YLOKH_E_TIMEOUT,
        ErrorKind::HttpStatus => YLOKH_E_HTTP_STATUS,
        ErrorKind::Api => YLOKH_E_API,
        ErrorKind::Protocol => YLOKH_E_PROTOCOL,
        ErrorKind::Io => YLOKH_E_IO,
        ErrorKind::Internal => YLOKH_E_INTERNAL,
    }
}

struct LastError {
    message: CString,
    http_status: c_int,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError {
        message: CString::default(),
        http_status: 0,
    });
}

/// Records `error` as this thread's last error and returns its status.
fn fail(error: Error) -> ylokh_status {
    let status = status_of_kind(error.kind());
    // Interior NULs cannot be shown by a C string; replace them rather than lose the text.
    let text = error.message().replace('\0', "\\0");
    let message = CString::new(text).unwrap_or_default();
    let http_status = error.http_status().map_or(0, c_int::from);
    LAST_ERROR.with(|last| {
        *last.borrow_mut() = LastError {
            message,
            http_status,
        }
    });
    status
}

/// The error a caught panic becomes. Out of line, so that the guarded functions' usual
/// way (the per-token `ylokh_stream_next` among them) does not pay for it.
#[cold]
#[inline(never)]
fn panicked(payload: Box<dyn std::any::Any + Send>) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!(
            "internal error (a bug in libylokh): {}",
            panic_message(&*payload)
        ),
    )
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Runs the body of an exported function that returns a status, turning a panic into
/// `YLOKH_E_INTERNAL` with a message.
fn guard(body: impl FnOnce() -> Result<(), Error>) -> ylokh_status {
    guard_status(|| body().map(|()| YLOKH_OK))
}

/// `guard` for a body that chooses its status when it succeeds (`YLOKH_E_AGAIN`, say).
fn guard_status(body: impl FnOnce() -> Result<ylokh_status, Error>) -> ylokh_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => fail(e),
        Err(payload) => fail(panicked(payload)),
    }
}

/// Runs the body of an exported function that returns a value, giving `fallback` on a panic.
fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            fail(panicked(payload));
            fallback
        }
    }
}

/// A C string argument that may be NULL.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that lives for `'a`.
unsafe fn opt_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL (checked above); by this function's contract a NUL-terminated string
    // that lives for 'a, and CStr::from_ptr reads no further than its NUL.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// A C string argument that must not be NULL.
///
/// # Safety
/// As [`opt_str`].
unsafe fn req_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    // SAFETY: this function's contract is opt_str's, word for word.
    unsafe { opt_str(ptr, what) }?.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// A handle argument that must not be NULL.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` made by this library.
unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: by this function's contract `ptr` is NULL (as_ref gives None) or a live handle
    // of type T made by this library (so aligned and initialised) that nothing frees for 'a.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// The message of the last failure on the calling thread.
///
/// Returns a NUL-terminated string owned by the library; never NULL (empty when nothing has
/// failed yet). The pointer stays valid, with the same text, until the next call that
/// fails on the same thread, or until that thread exits, whichever comes first: copy the
/// text to keep it longer or to hand it to another thread. Never free it. It includes the
/// server's own message when the server sent one, with control characters escaped (`\n`,
/// `\x1b`, ...) so that printing it cannot rewrite a terminal or forge log lines. Only
/// meaningful right after a call returned a status other than `YLOKH_OK`: successful calls
/// do not clear it.
///
/// Thread-local: a failure on one thread is not seen from another. Since 0.1.0.
///
/// # Returns
/// A string owned by the library, never NULL (see above).
#[no_mangle]
pub extern "C" fn ylokh_last_error() -> *const c_char {
    guard_value(c"".as_ptr(), || {
        LAST_ERROR.with(|last| last.borrow().message.as_ptr())
    })
}

/// The HTTP status of the reply behind the last failure on the calling thread, or 0 when that
/// failure had no reply (connect errors, bad arguments, ...). Same lifetime rules as
/// `ylokh_last_error()`. Since 0.1.0.
///
/// # Returns
/// An HTTP status (100 to 599), or 0.
#[no_mangle]
pub extern "C" fn ylokh_last_http_status() -> c_int {
    guard_value(0, || LAST_ERROR.with(|last| last.borrow().http_status))
}

/// A static, NUL-terminated English description of `status` ("ok", "timed out", ...).
/// Any integer is accepted; unknown values give "unknown status". Never NULL; never free it.
/// Since 0.1.0.
///
/// # Returns
/// A static string, never NULL.
#[no_mangle]
pub extern "C" fn ylokh_status_str(status: ylokh_status) -> *const c_char {
    // The descriptions of the kinds as C strings, made once, in the order of ErrorKind::ALL.
    static TEXTS: OnceLock<Vec<CString>> = OnceLock::new();
    guard_value(c"internal error".as_ptr(), || {
        let texts = TEXTS.get_or_init(|| {
            ErrorKind::ALL
                .iter()
                .map(|kind| CString::new(kind.describe()).unwrap_or_default())
                .collect()
        });
        match ErrorKind::ALL
            .iter()
            .position(|&k| status_of_kind(k) == status)
        {
            Some(i) => texts[i].as_ptr(),
            None if status == YLOKH_OK => c"ok".as_ptr(),
            None if status == YLOKH_E_AGAIN => c"nothing yet, try again".as_ptr(),
            None => c"unknown status".as_ptr(),
        }
    })
}

/// The library's version as a static NUL-terminated string such as "0.1.0" (compare with
/// the `YLOKH_VERSION` macro to detect a header/library mismatch). Never free it. Since 0.1.0.
///
/// # Returns
/// A static string, never NULL.
#[no_mangle]
pub extern "C" fn ylokh_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The version of the library loaded, as a number: MAJOR * 10000 + MINOR * 100 + PATCH,
/// the same formula as the `YLOKH_VERSION_NUMBER` macro of the header a program was
/// compiled with. A program that needs features of version X checks
/// `ylokh_version_number() >= X` at start-up; the macro says only which header it was
/// built with. Since 0.1.0.
///
/// # Returns
/// `MAJOR * 10000 + MINOR * 100 + PATCH` of the library loaded (100 for 0.1.0).
#[no_mangle]
pub extern "C" fn ylokh_version_number() -> u32 {
    VERSION_NUMBER
}

/// [`ylokh_version_number`], computed from Cargo.toml like the header's macro.
const VERSION_NUMBER: u32 = {
    const fn parse(s: &str) -> u32 {
        let bytes = s.as_bytes();
        let mut n = 0;
        let mut i = 0;
        while i < bytes.len() {
            n = n * 10 + (bytes[i] - b'0') as u32;
            i += 1;
        }
        n
    }
    parse(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + parse(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + parse(env!("CARGO_PKG_VERSION_PATCH"))
};

/// Facts about the original Ylokh provider of gpt4free. Strings are static and
/// NUL-terminated.
///
/// Extensible like `ylokh_event`: check `YLOKH_HAS_FIELD(info, ylokh_provider_info, field)`
/// before reading a field newer than the oldest library you support.
#[repr(C)]
pub struct ylokh_provider_info {
    /// `sizeof(ylokh_provider_info)` of the library's version.
    pub struct_size: usize,
    /// "Ylokh".
    pub name: *const c_char,
    /// The provider's site, `"https://chat.ylokh.xyz"`.
    pub url: *const c_char,
    /// The default base URL, `"https://chatapi.ylokh.xyz/v1"`.
    pub api_base: *const c_char,
    /// The model used when none is given, "gpt-3.5-turbo".
    pub default_model: *const c_char,
    /// 0: the original service is gone; point the client at another server.
    pub working: c_int,
    /// 1: conversations (message history) are supported.
    pub supports_message_history: c_int,
    /// 1.
    pub supports_gpt_35_turbo: c_int,
}

struct StaticInfo(ylokh_provider_info);
// SAFETY: the pointers point to static, immutable C string literals, which every thread
// may read at any time; nothing can write through them.
unsafe impl Sync for StaticInfo {}

static PROVIDER_INFO: StaticInfo = StaticInfo(ylokh_provider_info {
    struct_size: std::mem::size_of::<ylokh_provider_info>(),
    name: c"Ylokh".as_ptr(),
    url: c"https://chat.ylokh.xyz".as_ptr(),
    api_base: c"https://chatapi.ylokh.xyz/v1".as_ptr(),
    default_model: c"gpt-3.5-turbo".as_ptr(),
    working: crate::provider::WORKING as c_int,
    supports_message_history: crate::provider::SUPPORTS_MESSAGE_HISTORY as c_int,
    supports_gpt_35_turbo: crate::provider::SUPPORTS_GPT_35_TURBO as c_int,
});

/// The provider's facts: a pointer to static data, never NULL, never freed. Since 0.1.0.
///
/// # Returns
/// A pointer to static data, never NULL.
#[no_mangle]
pub extern "C" fn ylokh_provider() -> *const ylokh_provider_info {
    &PROVIDER_INFO.0
}

/// Test hook, not part of the API (left out of the header, and only built with the
/// `test-hooks` feature): panics inside the library so tests can see the panic come back as
/// `YLOKH_E_INTERNAL` with the process alive.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[no_mangle]
pub extern "C" fn ylokh_test_panic() -> ylokh_status {
    guard(|| panic!("test panic requested through ylokh_test_panic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_strings_match_the_rust_constants() {
        // SAFETY: static NUL-terminated strings.
        let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap();
        let info = &PROVIDER_INFO.0;
        assert_eq!(s(info.url), crate::provider::URL);
        assert_eq!(s(info.api_base), crate::DEFAULT_BASE_URL);
        assert_eq!(s(info.default_model), crate::DEFAULT_MODEL);
        assert_eq!(s(ylokh_version()), crate::VERSION);
        let parts: Vec<u32> = crate::VERSION
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            ylokh_version_number(),
            parts[0] * 10000 + parts[1] * 100 + parts[2]
        );
        assert_eq!(info.struct_size, std::mem::size_of::<ylokh_provider_info>());
        assert_eq!(info.working, 0);
        assert_eq!(info.supports_message_history, 1);
    }

    #[test]
    fn status_numbers_are_fixed_and_distinct() {
        let codes: Vec<ylokh_status> = ErrorKind::ALL.iter().map(|&k| status_of_kind(k)).collect();
        assert_eq!(codes, (1..=10).collect::<Vec<_>>());
        assert_eq!(YLOKH_OK, 0);
    }

    #[test]
    fn every_status_has_a_string() {
        // SAFETY: static NUL-terminated strings.
        let text = |s| {
            unsafe { CStr::from_ptr(ylokh_status_str(s)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(text(YLOKH_OK), "ok");
        assert_eq!(text(YLOKH_E_TIMEOUT), "timed out");
        assert_eq!(text(YLOKH_E_INTERNAL), "internal error");
        assert_eq!(text(YLOKH_E_AGAIN), "nothing yet, try again");
        assert_eq!(text(12), "unknown status");
        assert_eq!(text(-1), "unknown status");
    }

    #[test]
    fn panics_become_internal_errors() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, YLOKH_E_INTERNAL);
        // SAFETY: the library's own NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(ylokh_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"));
    }
}
