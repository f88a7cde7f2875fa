//! `ylokh_request`, the extensible description of a chat call (`ylokh_chat_ex`,
//! `ylokh_stream_open`), and how the library reads a caller's version of it.

use std::ffi::{c_char, c_void};

use super::cancel::ylokh_cancel;
use super::chat::{ylokh_event_cb, ylokh_token_cb};
use super::conversation::ylokh_conversation;
use super::{opt_str, req_str};
use crate::cancel::CancelToken;
use crate::error::Error;

/// Everything a chat call can take, for `ylokh_chat_ex`. Zero it, set `struct_size`, then
/// what you need (in C++, `ylokh_request req{};` zeroes it):
///
/// ```c
/// ylokh_request req = {0};
/// req.struct_size = sizeof req;
/// req.messages_json = "[{\"role\":\"user\",\"content\":\"Hi\"}]";
/// req.on_token = on_token;
/// ```
///
/// Extensible: later versions append fields, and the library reads only `struct_size`
/// bytes. A program built with an older header passes a smaller size, and the fields it
/// lacks count as zero; one built with a newer header than the library loaded may pass a
/// larger size as long as the fields this library does not know are zero (otherwise the
/// call returns `YLOKH_E_INVALID_ARGUMENT`: the program asked for something this library
/// cannot do).
#[repr(C)]
pub struct ylokh_request {
    /// `sizeof(ylokh_request)` as the program was compiled: required.
    pub struct_size: usize,
    /// NULL or "": "gpt-3.5-turbo".
    pub model: *const c_char,
    /// The messages as a JSON array. Exactly one of `messages_json` and `conversation`.
    pub messages_json: *const c_char,
    /// NULL or a JSON object merged over the defaults.
    pub options_json: *const c_char,
    /// Send this conversation's messages and append the reply on success.
    pub conversation: *mut ylokh_conversation,
    /// Called for each token of choice 0 (may be NULL if `on_event` is set).
    pub on_token: ylokh_token_cb,
    /// Called for each event (may be NULL if `on_token` is set). When both are set, for a
    /// content event `on_event` is called first, then `on_token`.
    pub on_event: ylokh_event_cb,
    /// Passed to the callbacks untouched.
    pub userdata: *mut c_void,
    /// NULL, or a token another thread may trigger to stop the call.
    pub cancel: *const ylokh_cancel,
}

impl Default for ylokh_request {
    /// All NULL with `struct_size` set, like `ylokh_request req = {0}; req.struct_size =
    /// sizeof req;` in C.
    fn default() -> Self {
        ylokh_request::EMPTY
    }
}

impl ylokh_request {
    pub(super) const EMPTY: ylokh_request = ylokh_request {
        struct_size: std::mem::size_of::<ylokh_request>(),
        model: std::ptr::null(),
        messages_json: std::ptr::null(),
        options_json: std::ptr::null(),
        conversation: std::ptr::null_mut(),
        on_token: None,
        on_event: None,
        userdata: std::ptr::null_mut(),
        cancel: std::ptr::null(),
    };
}

/// The size of the first `ylokh_request` (0.1.0), up to the end of its last field: the
/// smallest `struct_size` accepted. It stays when fields are appended.
const REQUEST_SIZE_0_1: usize =
    std::mem::offset_of!(ylokh_request, cancel) + std::mem::size_of::<*const ylokh_cancel>();

/// The caller's request as this library knows it: its first `struct_size` bytes, the fields
/// it lacks (an older program) zero, the fields it has and this library lacks (a newer
/// program) required to be zero.
///
/// # Safety
/// `request` is NULL or points to at least `request->struct_size` readable bytes.
pub(super) unsafe fn read_request(request: *const ylokh_request) -> Result<ylokh_request, Error> {
    let known = std::mem::size_of::<ylokh_request>();
    if request.is_null() {
        return Err(Error::invalid("request is NULL"));
    }
    // SAFETY: struct_size is the first field of every version; the caller's struct may
    // be of another version, so it is read on its own, unaligned.
    let size = unsafe { std::ptr::addr_of!((*request).struct_size).read_unaligned() };
    if size < REQUEST_SIZE_0_1 {
        return Err(Error::invalid(format!(
            "request->struct_size is {size}: set it to sizeof(ylokh_request) ({known} with \
             this library's header)"
        )));
    }
    let bytes = request.cast::<u8>();
    if size > known {
        // SAFETY: the caller vouches for `size` readable bytes.
        let newer = unsafe { std::slice::from_raw_parts(bytes.add(known), size - known) };
        if newer.iter().any(|&b| b != 0) {
            return Err(Error::invalid(format!(
                "request->struct_size is {size}: the program was built with a newer ylokh.h \
                 and sets fields this library ({}, {known}-byte ylokh_request) does not know; \
                 upgrade libylokh",
                crate::VERSION
            )));
        }
    }
    let mut copy = ylokh_request::EMPTY;
    // SAFETY: `size.min(known)` bytes are readable at `bytes` (the caller's word) and
    // writable in `copy`; the caller's bytes are a ylokh_request of a version whose fields
    // are a prefix of ours (fields are only appended), and every field is valid when zero.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes,
            std::ptr::addr_of_mut!(copy).cast::<u8>(),
            size.min(known),
        );
    }
    copy.struct_size = known;
    Ok(copy)
}

/// Where a call's messages come from.
pub(super) enum Messages<'a> {
    Json(&'a str),
    Conversation(&'a mut crate::Conversation),
}

/// A request's model, options, messages and cancel token, read and checked by the same
/// rules for every call that takes a `ylokh_request`.
pub(super) struct Parts<'a> {
    pub(super) model: Option<&'a str>,
    pub(super) options: Option<&'a str>,
    pub(super) messages: Messages<'a>,
    /// The call's own reference: the program may free the handle while the call runs
    /// (`ylokh_cancel_free`), and the call goes on unharmed.
    pub(super) cancel: Option<CancelToken>,
}

impl ylokh_request {
    /// # Safety
    /// The request's strings are NULL or NUL-terminated, `cancel` is NULL or a live token,
    /// and `conversation` is NULL or live and not used by another thread while the result
    /// is (the contract of every function taking a request).
    pub(super) unsafe fn parts(&self) -> Result<Parts<'_>, Error> {
        // SAFETY: this function's contract.
        let (model, options, cancel) = unsafe {
            (
                opt_str(self.model, "model")?,
                opt_str(self.options_json, "options_json")?,
                self.cancel.as_ref().map(|c| c.inner.clone()),
            )
        };
        // SAFETY: as above; the exclusive borrow aliases nothing.
        let messages = match unsafe { (self.conversation.as_mut(), self.messages_json) } {
            (Some(conversation), m) if m.is_null() => {
                Messages::Conversation(&mut conversation.inner)
            }
            // SAFETY: not NULL (this arm), and NUL-terminated by this function's contract.
            (None, m) if !m.is_null() => Messages::Json(unsafe { req_str(m, "messages_json") }?),
            (None, _) => {
                return Err(Error::invalid(
                    "messages_json is NULL and so is conversation: give one of them",
                ))
            }
            (Some(_), _) => {
                return Err(Error::invalid(
                    "give either messages_json or conversation, not both",
                ))
            }
        };
        Ok(Parts {
            model,
            options,
            messages,
            cancel,
        })
    }
}
