//! The wake-up descriptor a stream offers to poll(), epoll, select or a GUI's fd watch.

/// A descriptor that is readable while the consumer would not wait: one end of a socket
/// pair holding a byte while signalled. Made on first request only, so streams read
/// without poll() cost no descriptors.
///
/// The worker writes its byte after releasing the queue's lock (so that the consumer it
/// wakes does not find the lock taken), having marked the queue signalled under the lock;
/// the consumer clears under the lock, reading whatever is there. A byte written just
/// after a clear leaves the descriptor readable with nothing to pull once; a wake-up is
/// never lost, because the consumer looks at the queue under the lock before it waits.
#[derive(Debug, Default)]
pub(super) struct Wake {
    #[cfg(unix)]
    pub(super) pair: std::sync::OnceLock<(
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    )>,
}

impl Wake {
    /// The readable end, made now if needed (then `true`: it starts unsignalled).
    /// -1 where there is none.
    pub(super) fn fd(&self) -> std::io::Result<(i32, bool)> {
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            let mut made = false;
            if self.pair.get().is_none() {
                let (read, write) = std::os::unix::net::UnixStream::pair()?;
                read.set_nonblocking(true)?;
                write.set_nonblocking(true)?;
                // Called under the queue's lock, so no other thread makes one meanwhile.
                made = self.pair.set((read, write)).is_ok();
            }
            Ok((
                self.pair.get().map_or(-1, |(read, _)| read.as_raw_fd()),
                made,
            ))
        }
        #[cfg(not(unix))]
        {
            Ok((-1, false))
        }
    }

    pub(super) fn exists(&self) -> bool {
        #[cfg(unix)]
        return self.pair.get().is_some();
        #[cfg(not(unix))]
        return false;
    }

    pub(super) fn set(&self) {
        #[cfg(unix)]
        if let Some((_, write)) = self.pair.get() {
            use std::io::Write;
            // A few bytes at most wait in the socket, so this cannot block; should it
            // fail, the consumer's next pull still finds the events.
            let _ = (&*write).write(&[1]);
        }
    }

    pub(super) fn clear(&self) {
        #[cfg(unix)]
        if let Some((read, _)) = self.pair.get() {
            use std::io::Read;
            let mut bytes = [0u8; 16];
            while matches!((&*read).read(&mut bytes), Ok(n) if n > 0) {}
        }
    }
}
