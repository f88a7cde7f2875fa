//! The cancel token handle: ylokh_cancel_*.

use super::{guard, guard_value, handle, ylokh_status};
use crate::cancel::CancelToken;

/// Stops calls from another thread. Opaque. Trigger it from any thread; every call given
/// this token returns `YLOKH_E_ABORTED` within about 50 ms, in every phase (connecting,
/// TLS or proxy handshake, sending, waiting, streaming). Triggered from inside the call's
/// own callback, the call returns `YLOKH_E_ABORTED` before its next callback.
pub struct ylokh_cancel {
    pub(crate) inner: CancelToken,
}

/// Creates a cancel token (not triggered). Release it with `ylokh_cancel_free`. Since 0.1.0.
///
/// # Returns
/// A new token, to release with `ylokh_cancel_free`; NULL only if the library failed
/// internally.
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
/// # Returns
/// - `YLOKH_OK`: the token is triggered (also when it already was).
/// - `YLOKH_E_INVALID_ARGUMENT`: `cancel` is NULL.
///
/// # Safety
/// `cancel` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_cancel_trigger(cancel: *const ylokh_cancel) -> ylokh_status {
    guard(|| {
        // SAFETY: `cancel` is NULL or a live token (this function's contract), as `handle`
        // requires; the token is only read through its atomic flag.
        unsafe { handle(cancel, "cancel") }?.inner.cancel();
        Ok(())
    })
}

/// Clears a triggered token so it can be used again. Since 0.1.0.
///
/// # Returns
/// - `YLOKH_OK`: the token is not triggered.
/// - `YLOKH_E_INVALID_ARGUMENT`: `cancel` is NULL.
///
/// # Safety
/// `cancel` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ylokh_cancel_reset(cancel: *const ylokh_cancel) -> ylokh_status {
    guard(|| {
        // SAFETY: `cancel` is NULL or a live token (this function's contract), as `handle`
        // requires; the token is only read through its atomic flag.
        unsafe { handle(cancel, "cancel") }?.inner.reset();
        Ok(())
    })
}

/// Releases the program's handle to a cancel token. NULL does nothing. Safe while calls
/// given the token are still running (for example sleeping between retries): each call
/// holds its own reference from the moment it starts, and the token itself is freed when
/// the last of them returns. Only the handle becomes invalid: do not trigger, reset or pass
/// it to a new call afterwards, and do not free it before a call given it has been entered
/// (the call reads the handle when it starts). Freeing it twice is undefined behaviour.
/// Since 0.1.0.
///
/// # Safety
/// `cancel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn ylokh_cancel_free(cancel: *mut ylokh_cancel) {
    guard_value((), || {
        if !cancel.is_null() {
            // SAFETY: not NULL (checked); by this function's contract a token from
            // ylokh_cancel_new (Box::into_raw) that no call uses any more, freed only once.
            drop(unsafe { Box::from_raw(cancel) });
        }
    })
}
