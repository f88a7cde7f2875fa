//! The conversation handle: ylokh_conversation_* (message history).

use std::ffi::c_char;

use super::strings::hand_out_string;
use super::{fail, guard, guard_value, handle, req_str, ylokh_status};
use crate::conversation::Conversation;
use crate::error::Error;

/// Message history: an ordered list of messages. Opaque.
///
/// Not thread-safe: use a conversation from one thread at a time (different conversations
/// may be used on different threads at once, sharing one client).
pub struct ylokh_conversation {
    pub(crate) inner: Conversation,
}

/// Creates an empty conversation; release it with `ylokh_conversation_free`. NULL only if
/// the library failed internally. Since 0.1.0.
///
/// # Returns
/// A new, empty conversation, to release with `ylokh_conversation_free`; NULL only if
/// the library failed internally.
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
/// # Returns
/// - `YLOKH_OK`: `*out` holds the new conversation.
/// - `YLOKH_E_INVALID_ARGUMENT`: `json` or `out` is NULL, or `json` is not UTF-8 or not a
///   JSON array of objects each with a non-empty string `role`.
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
        // SAFETY: `json` is NULL or NUL-terminated (this function's contract), as req_str
        // requires; it is read only during this call.
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
            // SAFETY: not NULL (checked); by this function's contract a handle from
            // ylokh_conversation_new or _from_json (Box::into_raw) that no thread uses any
            // more, freed only once.
            drop(unsafe { Box::from_raw(conversation) });
        }
    })
}

/// # Safety
/// `conversation` is NULL or a live handle used by this thread only.
unsafe fn conversation_mut<'a>(
    conversation: *mut ylokh_conversation,
) -> Result<&'a mut Conversation, Error> {
    // SAFETY: by this function's contract `conversation` is NULL (as_mut gives None) or a
    // live handle used by this thread only, so the exclusive borrow aliases nothing.
    unsafe { conversation.as_mut() }
        .map(|c| &mut c.inner)
        .ok_or_else(|| Error::invalid("conversation is NULL"))
}

/// Appends a message `{"role": role, "content": content}` (e.g. role "system", "user" or
/// "assistant"). Both strings are copied; neither may be NULL; role may not be empty.
/// Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the message is appended.
/// - `YLOKH_E_INVALID_ARGUMENT`: `conversation`, `role` or `content` is NULL, a string is not
///   UTF-8, or `role` is empty. The conversation is unchanged.
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
        // SAFETY: this function's contract gives `conversation` NULL or live and used by this
        // thread only, `role` and `content` NULL or NUL-terminated: what conversation_mut and
        // req_str require. The strings are copied before the call returns.
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
/// # Returns
/// - `YLOKH_OK`: the message is appended.
/// - `YLOKH_E_INVALID_ARGUMENT`: `conversation` or `message_json` is NULL, or `message_json`
///   is not UTF-8, not JSON, or not an object with a non-empty string `role`. The
///   conversation is unchanged.
///
/// # Safety
/// `conversation` is NULL or live; `message_json` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_add_json(
    conversation: *mut ylokh_conversation,
    message_json: *const c_char,
) -> ylokh_status {
    guard(|| {
        // SAFETY: this function's contract gives `conversation` NULL or live and used by this
        // thread only, `message_json` NULL or NUL-terminated: what conversation_mut and
        // req_str require. The string is parsed before the call returns.
        let (conversation, json) = unsafe {
            (
                conversation_mut(conversation)?,
                req_str(message_json, "message_json")?,
            )
        };
        conversation.push_message_json(json)
    })
}

/// The number of messages. NULL is refused like everywhere else, but this function returns
/// a count rather than a status: it returns 0 and, as a failing call does,
/// `ylokh_last_error()` then says "conversation is NULL". Since 0.1.0.
///
/// # Returns
/// The number of messages; 0 for NULL.
///
/// # Safety
/// `conversation` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_len(conversation: *const ylokh_conversation) -> usize {
    guard_value(0, || {
        // SAFETY: `conversation` is NULL or a live handle not being changed by another
        // thread (this function's contract), as `handle` requires; it is only read.
        match unsafe { handle(conversation, "conversation") } {
            Ok(conversation) => conversation.inner.len(),
            Err(e) => {
                fail(e);
                0
            }
        }
    })
}

/// Removes every message. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the conversation is empty.
/// - `YLOKH_E_INVALID_ARGUMENT`: `conversation` is NULL.
///
/// # Safety
/// `conversation` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_conversation_clear(
    conversation: *mut ylokh_conversation,
) -> ylokh_status {
    guard(|| {
        // SAFETY: `conversation` is NULL or live and used by this thread only (this function's
        // contract), as conversation_mut requires.
        unsafe { conversation_mut(conversation) }?.clear();
        Ok(())
    })
}

/// Writes the messages as a JSON array to `*out_json` (NUL-terminated, to be released with
/// `ylokh_string_free`) and its length to `*out_len` when `out_len` is not NULL.
/// Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: `*out_json` (and `*out_len`) hold the JSON.
/// - `YLOKH_E_INVALID_ARGUMENT`: `conversation` or `out_json` is NULL.
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
        // SAFETY: `conversation` is NULL or live (this function's contract), as `handle`
        // requires; it is only read.
        let conversation = unsafe { handle(conversation, "conversation") }?;
        // SAFETY: `out_json` and `out_len` are NULL or writable (this function's contract),
        // as hand_out_string requires.
        unsafe { hand_out_string(conversation.inner.to_json(), out_json, "out_json", out_len) }
    })
}
