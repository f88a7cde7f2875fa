//! Helpers for the hostile tests (`tests/hostile_*.rs`, see SECURITY.md): a chat stopped by
//! a cancel token from another thread and timed, a connect that hangs on loopback, and the
//! process's thread and descriptor counts.

use std::ffi::c_int;
use std::net::{TcpListener, TcpStream};
use std::ptr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ylokh::ffi::*;

use super::capi::{cstring, last_error, CClient, Collector, Outcome};

/// What a cancelled call returned, and how long it took after the cancel and in all.
#[derive(Debug)]
pub struct Cancelled {
    pub status: c_int,
    pub error: String,
    /// From the trigger to the return.
    pub after_cancel: Duration,
    /// From the start of the call to its return.
    pub total: Duration,
}

/// Runs a chat with `messages` on this thread and triggers its cancel token from another
/// thread `cancel_after` after the call started.
pub fn chat_cancelled_after(client: &CClient, messages: &str, cancel_after: Duration) -> Cancelled {
    chat_cancelled_when(client, messages, || true, cancel_after)
}

/// Runs a chat with `messages` on this thread and triggers its cancel token from another
/// thread `delay` after `ready` first holds (looked at every 5 ms, for at most 30 s).
pub fn chat_cancelled_when(
    client: &CClient,
    messages: &str,
    ready: impl Fn() -> bool + Send + 'static,
    delay: Duration,
) -> Cancelled {
    let cancel = ylokh_cancel_new();
    assert!(!cancel.is_null());
    let cancel_addr = cancel as usize;
    let (sender, receiver) = mpsc::channel::<Instant>();
    let trigger = thread::spawn(move || {
        let give_up = Instant::now() + Duration::from_secs(30);
        while !ready() && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(delay);
        let at = Instant::now();
        // SAFETY: the token lives until this thread is joined.
        unsafe { ylokh_cancel_trigger(cancel_addr as *const ylokh_cancel) };
        let _ = sender.send(at);
    });
    let messages = cstring(messages);
    let mut collector = Collector {
        outcome: Outcome::default(),
        abort_after: None,
    };
    let request = ylokh_request {
        messages_json: messages.as_ptr(),
        on_token: Some(super::capi::collect_token),
        userdata: (&mut collector as *mut Collector).cast(),
        cancel,
        ..ylokh_request::default()
    };
    let started = Instant::now();
    // SAFETY: every pointer in the request lives until the call returns.
    let status = unsafe { ylokh_chat_ex(client.0, &request) };
    let returned = Instant::now();
    let error = if status == YLOKH_OK {
        String::new()
    } else {
        last_error()
    };
    trigger.join().expect("trigger thread");
    let triggered = receiver.recv().expect("trigger time");
    // SAFETY: no call uses the token any more.
    unsafe { ylokh_cancel_free(cancel) };
    Cancelled {
        status,
        error,
        after_cancel: returned.saturating_duration_since(triggered),
        total: returned - started,
    }
}

/// A base URL whose listener never accepts: its accept queue is full, so the kernel drops
/// new SYNs and a connect hangs. `None` if the queue could not be filled.
pub struct Blackhole {
    pub url: String,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

pub fn blackhole() -> Option<Blackhole> {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // SAFETY: a valid listening socket; listen() again only changes its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), 0) } != 0 {
        return None;
    }
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => {
                return Some(Blackhole {
                    url: format!("http://{addr}/v1"),
                    _listener: listener,
                    _fillers: fillers,
                })
            }
        }
    }
    None
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Sets a client setting through its C setter with a string argument.
pub fn set_str(
    client: &CClient,
    setter: unsafe extern "C" fn(*mut ylokh_client, *const std::ffi::c_char) -> c_int,
    value: Option<&str>,
) -> c_int {
    let value = value.map(cstring);
    // SAFETY: live client; NUL-terminated string or NULL.
    unsafe { setter(client.0, value.as_ref().map_or(ptr::null(), |v| v.as_ptr())) }
}

pub fn set_timeout_ms(client: &CClient, ms: u64) {
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_timeout_ms(client.0, ms) },
        YLOKH_OK
    );
}

pub fn set_max_retries(client: &CClient, n: u32) {
    // SAFETY: live client.
    assert_eq!(
        unsafe { ylokh_client_set_max_retries(client.0, n) },
        YLOKH_OK
    );
}

/// A messages array whose one message is `len` bytes of text.
pub fn big_message(len: usize) -> String {
    format!(r#"[{{"role":"user","content":"{}"}}]"#, "x".repeat(len))
}
