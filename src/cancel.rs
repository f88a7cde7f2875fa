//! The cancel token: how another thread stops a call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set by another thread to stop a call: the call returns [`ErrorKind::Aborted`](crate::ErrorKind::Aborted) within
/// about 50 ms, even while it waits for a silent server.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    /// Ask every call using this token to stop. Stays set until [`CancelToken::reset`].
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
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
