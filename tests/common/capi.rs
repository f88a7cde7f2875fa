//! Calls the library through its C ABI (the exported `extern "C"` functions), so Rust
//! tests check exactly what C callers get.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;

use ylokh::ffi::*;

/// A client handle, freed on drop.
pub struct CClient(pub *mut ylokh_client);

// SAFETY: the library documents a client as usable from any number of threads at once.
unsafe impl Send for CClient {}
unsafe impl Sync for CClient {}

impl Drop for CClient {
    fn drop(&mut self) {
        // SAFETY: made by ylokh_client_new, freed once.
        unsafe { ylokh_client_free(self.0) }
    }
}

/// What a call returned and what its callback saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: c_int,
    pub tokens: Vec<Vec<u8>>,
    pub error: String,
    pub http_status: c_int,
    /// Anything the callback found wrong with what it was given (not NUL-terminated, not
    /// UTF-8). A panic cannot leave an `extern "C"` callback, so it is recorded instead.
    pub violations: Vec<String>,
}

impl Outcome {
    pub fn text(&self) -> String {
        String::from_utf8(self.tokens.concat()).expect("tokens are UTF-8")
    }

    /// Panics with the details unless the call succeeded.
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.status, YLOKH_OK,
            "call failed: {} (HTTP {})",
            self.error, self.http_status
        );
        assert!(self.violations.is_empty(), "{:?}", self.violations);
        self
    }
}

pub fn cstring(s: &str) -> CString {
    CString::new(s).expect("no NUL in test strings")
}

pub fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid until the next failure.
    unsafe { CStr::from_ptr(ylokh_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Collects tokens; aborts (returns 1) after `abort_after` tokens when set.
pub struct Collector {
    pub outcome: Outcome,
    pub abort_after: Option<usize>,
}

pub extern "C" fn collect_token(userdata: *mut c_void, token: *const c_char, len: usize) -> c_int {
    // SAFETY: userdata is the &mut Collector passed to the chat call.
    let collector = unsafe { &mut *(userdata as *mut Collector) };
    // SAFETY: the library promises len bytes plus a NUL at token.
    let bytes = unsafe { std::slice::from_raw_parts(token.cast::<u8>(), len + 1) };
    if bytes[len] != 0 {
        collector
            .outcome
            .violations
            .push("token not NUL-terminated".into());
    }
    if std::str::from_utf8(&bytes[..len]).is_err() {
        collector
            .outcome
            .violations
            .push(format!("token not UTF-8: {:?}", &bytes[..len]));
    }
    if len == 0 {
        collector.outcome.violations.push("empty token".into());
    }
    collector.outcome.tokens.push(bytes[..len].to_vec());
    match collector.abort_after {
        Some(n) if collector.outcome.tokens.len() >= n => 1,
        _ => 0,
    }
}

/// An event as owned Rust data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEvent {
    pub kind: ylokh_event_kind,
    pub choice: u32,
    pub text: String,
    pub tool_index: u32,
    pub tool_id: Option<String>,
    pub tool_name: Option<String>,
    pub counts: [u64; 3],
}

pub extern "C" fn collect_event(userdata: *mut c_void, event: *const ylokh_event) -> c_int {
    // SAFETY: userdata is the &mut Vec<OwnedEvent> passed to the chat call; the event and
    // its strings are valid for this call.
    unsafe {
        let events = &mut *(userdata as *mut Vec<OwnedEvent>);
        let e = &*event;
        let text = |p: *const c_char, len: usize| {
            (!p.is_null()).then(|| {
                let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len + 1);
                assert_eq!(bytes[len], 0, "event string not NUL-terminated");
                String::from_utf8(bytes[..len].to_vec()).expect("event string is UTF-8")
            })
        };
        events.push(OwnedEvent {
            kind: e.kind,
            choice: e.choice,
            text: text(e.text, e.text_len).expect("event text is never NULL"),
            tool_index: e.tool_index,
            tool_id: text(e.tool_id, e.tool_id_len),
            tool_name: text(e.tool_name, e.tool_name_len),
            counts: [e.prompt_tokens, e.completion_tokens, e.total_tokens],
        });
    }
    0
}

pub const USER_HI: &str = r#"[{"role":"user","content":"hi"}]"#;

impl CClient {
    /// A client for `base_url` with fast retries (so retry tests do not sleep long).
    pub fn new(base_url: &str) -> CClient {
        let client = CClient(ylokh_client_new());
        assert!(!client.0.is_null());
        assert_eq!(client.set_base_url(base_url), YLOKH_OK, "{}", last_error());
        // SAFETY: live client.
        unsafe {
            assert_eq!(ylokh_client_set_retry_delay_ms(client.0, 10), YLOKH_OK);
            assert_eq!(ylokh_client_set_proxy_from_env(client.0, 0), YLOKH_OK);
        }
        client
    }

    pub fn set_base_url(&self, url: &str) -> c_int {
        let url = cstring(url);
        // SAFETY: live client, NUL-terminated string.
        unsafe { ylokh_client_set_base_url(self.0, url.as_ptr()) }
    }

    pub fn set_header(&self, name: &str, value: Option<&str>) -> c_int {
        let name = cstring(name);
        let value = value.map(cstring);
        // SAFETY: live client, NUL-terminated strings or NULL.
        unsafe {
            ylokh_client_set_header(
                self.0,
                name.as_ptr(),
                value.as_ref().map_or(ptr::null(), |v| v.as_ptr()),
            )
        }
    }

    pub fn set_api_key(&self, key: &str) -> c_int {
        let key = cstring(key);
        // SAFETY: live client, NUL-terminated string.
        unsafe { ylokh_client_set_api_key(self.0, key.as_ptr()) }
    }

    pub fn chat(&self, options: Option<&str>) -> Outcome {
        self.chat_full(None, USER_HI, options, None)
    }

    pub fn chat_full(
        &self,
        model: Option<&str>,
        messages: &str,
        options: Option<&str>,
        abort_after: Option<usize>,
    ) -> Outcome {
        let model = model.map(cstring);
        let messages = cstring(messages);
        let options = options.map(cstring);
        let mut collector = Collector {
            outcome: Outcome::default(),
            abort_after,
        };
        // SAFETY: live client; strings NUL-terminated or NULL; the collector outlives the
        // call.
        let status = unsafe {
            ylokh_chat(
                self.0,
                model.as_ref().map_or(ptr::null(), |m| m.as_ptr()),
                messages.as_ptr(),
                options.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
                Some(collect_token),
                (&mut collector as *mut Collector).cast(),
            )
        };
        let mut outcome = collector.outcome;
        outcome.status = status;
        if status != YLOKH_OK {
            outcome.error = last_error();
            outcome.http_status = ylokh_last_http_status();
        }
        outcome
    }

    pub fn events(&self, options: Option<&str>) -> (c_int, Vec<OwnedEvent>, String) {
        self.events_with(USER_HI, options)
    }

    pub fn events_with(
        &self,
        messages: &str,
        options: Option<&str>,
    ) -> (c_int, Vec<OwnedEvent>, String) {
        let messages = cstring(messages);
        let options = options.map(cstring);
        let mut events: Vec<OwnedEvent> = Vec::new();
        // SAFETY: as in chat_full.
        let status = unsafe {
            ylokh_chat_events(
                self.0,
                ptr::null(),
                messages.as_ptr(),
                options.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
                Some(collect_event),
                (&mut events as *mut Vec<OwnedEvent>).cast(),
            )
        };
        let error = if status == YLOKH_OK {
            String::new()
        } else {
            last_error()
        };
        (status, events, error)
    }
}

/// Takes a string the library handed out, and frees it.
pub fn take_string(ptr: *mut c_char, len: usize) -> String {
    assert!(!ptr.is_null());
    // SAFETY: the library handed out len bytes and a NUL at ptr.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec();
    // SAFETY: handed out by the library, freed once.
    unsafe { ylokh_string_free(ptr) };
    String::from_utf8(bytes).expect("library strings are UTF-8")
}

/// A conversation handle, freed on drop.
pub struct CConversation(pub *mut ylokh_conversation);

impl Drop for CConversation {
    fn drop(&mut self) {
        // SAFETY: made by ylokh_conversation_new, freed once.
        unsafe { ylokh_conversation_free(self.0) }
    }
}

impl CConversation {
    pub fn new() -> CConversation {
        let c = CConversation(ylokh_conversation_new());
        assert!(!c.0.is_null());
        c
    }

    pub fn add(&self, role: &str, content: &str) {
        let (role, content) = (cstring(role), cstring(content));
        // SAFETY: live conversation, NUL-terminated strings.
        let status = unsafe { ylokh_conversation_add(self.0, role.as_ptr(), content.as_ptr()) };
        assert_eq!(status, YLOKH_OK, "{}", last_error());
    }

    /// The messages, parsed.
    pub fn messages(&self) -> serde_json::Value {
        let (mut out, mut len) = (ptr::null_mut(), 0);
        // SAFETY: live conversation, writable outputs.
        let status = unsafe { ylokh_conversation_to_json(self.0, &mut out, &mut len) };
        assert_eq!(status, YLOKH_OK, "{}", last_error());
        serde_json::from_str(&take_string(out, len)).expect("conversation JSON")
    }

    /// One turn with `ylokh_chat_ex`, every event collected.
    pub fn chat(
        &self,
        client: &CClient,
        options: Option<&str>,
    ) -> (c_int, Vec<OwnedEvent>, String) {
        let options = options.map(cstring);
        let mut events: Vec<OwnedEvent> = Vec::new();
        let request = ylokh_request {
            options_json: options.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
            conversation: self.0,
            on_event: Some(collect_event),
            userdata: (&mut events as *mut Vec<OwnedEvent>).cast(),
            ..ylokh_request::default()
        };
        // SAFETY: live client and conversation; the request's pointers outlive the call.
        let status = unsafe { ylokh_chat_ex(client.0, &request) };
        let error = if status == YLOKH_OK {
            String::new()
        } else {
            last_error()
        };
        (status, events, error)
    }
}
