//! Strings handed out to C, and ylokh_string_free to give them back.

use std::ffi::c_char;

use super::guard_value;
use crate::error::Error;

/// Gives a string to C: `*out` receives it (NUL-terminated; interior NULs are possible, the
/// length is authoritative) and `*out_len` its length. `out_name` is the caller's name for
/// `out`, for the error when it is NULL.
///
/// # Safety
/// `out` is NULL or writable; `out_len` is NULL or writable.
pub(crate) unsafe fn hand_out_string(
    text: String,
    out: *mut *mut c_char,
    out_name: &str,
    out_len: *mut usize,
) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::invalid(format!("{out_name} is NULL")));
    }
    // malloc, not CString: the text may hold NULs, and CString::from_raw would then free
    // with a wrong size. The length is authoritative; the NUL is for convenience.
    let len = text.len();
    // SAFETY: malloc has no precondition; its result is checked for NULL below.
    let raw = unsafe { libc::malloc(len + 1) }.cast::<c_char>();
    if raw.is_null() {
        return Err(Error::new(crate::ErrorKind::Internal, "out of memory"));
    }
    // SAFETY: `raw` holds len + 1 bytes and cannot overlap `text`; `out` is not NULL
    // (checked) and, like `out_len` when not NULL, writable by this function's contract.
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
        // SAFETY: by this function's contract `s` is NULL (free does nothing) or a string
        // from hand_out_string, allocated with malloc and not yet freed.
        unsafe { libc::free(s.cast()) }
    })
}
