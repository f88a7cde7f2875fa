//! The C API's rules where a caller could be surprised, through the C ABI: what NULL means
//! for each kind of function, 0 and the largest value for durations, trust settings that
//! do not undo each other, and error messages that name the argument the caller passed.

mod common;

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use common::capi::*;
use common::*;
use ylokh::ffi::*;

fn ok_stream() -> Script {
    Script::sse(&sse_stream(&["o", "k"]), Framing::ContentLength).with_keep_alive(true)
}

unsafe extern "C" fn ignore_token(_: *mut c_void, _: *const c_char, _: usize) -> c_int {
    0
}

/// Leaves a known message in `ylokh_last_error()`, so a test can see whether a call set it.
fn set_other_last_error() {
    // SAFETY: NULL is a valid argument.
    assert_eq!(
        unsafe { ylokh_cancel_trigger(ptr::null()) },
        YLOKH_E_INVALID_ARGUMENT
    );
    assert!(last_error().contains("cancel is NULL"));
}

#[test]
fn a_null_conversation_is_reported_the_same_way_by_len_and_clear() {
    // len returns a count, not a status: 0 for NULL, with the same message as clear's.
    set_other_last_error();
    // SAFETY: NULL is a valid argument.
    assert_eq!(unsafe { ylokh_conversation_len(ptr::null()) }, 0);
    assert_eq!(last_error(), "conversation is NULL");
    set_other_last_error();
    // SAFETY: NULL is a valid argument.
    assert_eq!(
        unsafe { ylokh_conversation_clear(ptr::null_mut()) },
        YLOKH_E_INVALID_ARGUMENT
    );
    assert_eq!(last_error(), "conversation is NULL");
}

#[test]
fn the_largest_timeout_and_deadline_mean_practically_none() {
    let server = Server::always(ok_stream());
    let client = CClient::new(&server.base_url());
    // SAFETY: live client.
    unsafe {
        assert_eq!(
            ylokh_client_set_timeout_ms(client.0, u64::MAX),
            YLOKH_OK,
            "{}",
            last_error()
        );
        assert_eq!(
            ylokh_client_set_deadline_ms(client.0, u64::MAX),
            YLOKH_OK,
            "{}",
            last_error()
        );
    }
    assert_eq!(client.chat(None).ok().text(), "ok");
    // 0: refused for the timeout (a call always has a bound on silence), "none" for the
    // deadline (off by default); both messages name the argument.
    // SAFETY: live client.
    unsafe {
        assert_eq!(
            ylokh_client_set_timeout_ms(client.0, 0),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert!(last_error().contains("timeout_ms"), "{}", last_error());
        assert_eq!(ylokh_client_set_deadline_ms(client.0, 0), YLOKH_OK);
    }
    assert_eq!(client.chat(None).ok().text(), "ok");
}

#[test]
fn conversation_chat_names_its_own_arguments() {
    let client = CClient::new("http://127.0.0.1:1/v1");
    let conversation = ylokh_conversation_new();
    // SAFETY: live client and conversation, NULL where a test wants NULL.
    unsafe {
        assert_eq!(
            ylokh_conversation_chat(
                client.0,
                ptr::null_mut(),
                ptr::null(),
                ptr::null(),
                Some(ignore_token),
                ptr::null_mut()
            ),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "conversation is NULL");
        assert_eq!(
            ylokh_conversation_chat(
                client.0,
                conversation,
                ptr::null(),
                ptr::null(),
                None,
                ptr::null_mut()
            ),
            YLOKH_E_INVALID_ARGUMENT
        );
        assert_eq!(last_error(), "on_token is NULL");
        ylokh_conversation_free(conversation);
    }
}

#[test]
fn chat_ex_names_the_request_fields() {
    let client = CClient::new("http://127.0.0.1:1/v1");
    let request = ylokh_request {
        on_token: Some(ignore_token),
        ..ylokh_request::default()
    };
    // SAFETY: live client; the request lives on this stack.
    assert_eq!(
        unsafe { ylokh_chat_ex(client.0, &request) },
        YLOKH_E_INVALID_ARGUMENT
    );
    let error = last_error();
    assert!(
        error.contains("messages_json is NULL") && error.contains("conversation"),
        "{error}"
    );
}

#[test]
fn output_pointers_are_named_in_errors() {
    let conversation = ylokh_conversation_new();
    let mut len = 0usize;
    // SAFETY: live conversation; NULL output on purpose.
    assert_eq!(
        unsafe { ylokh_conversation_to_json(conversation, ptr::null_mut(), &mut len) },
        YLOKH_E_INVALID_ARGUMENT
    );
    assert_eq!(last_error(), "out_json is NULL");
    // SAFETY: from ylokh_conversation_new.
    unsafe { ylokh_conversation_free(conversation) };
}
