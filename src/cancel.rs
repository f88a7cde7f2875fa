//! The cancel token: how another thread stops a call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Set by another thread to stop a call: the call returns [`ErrorKind::Aborted`](crate::ErrorKind::Aborted) within
/// about 50 ms, even while it waits for a silent server.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>, Arc<Mutex<Vec<Weak<AtomicBool>>>>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    /// Ask every call using this token to stop. Stays set until [`CancelToken::reset`].
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
        let linked = self.1.lock().unwrap_or_else(|e| e.into_inner());
        for token in linked.iter().filter_map(Weak::upgrade) {
            token.store(true, Ordering::SeqCst);
        }
    }
    /// Makes [`CancelToken::cancel`] of this token cancel `other` too (now, if this one is
    /// cancelled already). Resetting this token does not reset `other`. A stream watches its
    /// own token this way, so that closing it stops only it.
    pub(crate) fn link(&self, other: &CancelToken) {
        {
            let mut linked = self.1.lock().unwrap_or_else(|e| e.into_inner());
            // Tokens of finished calls are dropped on the way, so the list stays short.
            linked.retain(|w| w.strong_count() > 0);
            linked.push(Arc::downgrade(&other.0));
        }
        if self.is_cancelled() {
            other.0.store(true, Ordering::SeqCst);
        }
    }
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub(crate) fn flag(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}
