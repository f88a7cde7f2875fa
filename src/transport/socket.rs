//! Opening a TCP connection on the calling thread in a way another thread can stop: the
//! connect runs non-blocking and is waited for in short slices, each followed by a look at
//! the call's cancel flag. A cancelled connect closes its socket before the call returns,
//! so nothing (no thread, no socket) outlives the call.
//!
//! The standard library has no non-blocking connect, so on Unix the socket is made with
//! libc; this is the only unsafe code outside `ffi/`. Elsewhere (Windows) the connect runs
//! on a helper thread that the call stops waiting for when cancelled; that thread ends by
//! itself within the connect timeout.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a connect attempt to one address ended.
pub enum Connect {
    Connected(TcpStream),
    /// The cancel flag was seen set.
    Cancelled,
    /// No answer before `deadline`.
    TimedOut,
    Failed(io::Error),
}

/// Connects to `addr` before `deadline` (none: wait as long as the system does), looking
/// at `cancelled` every `poll` at most.
pub fn connect(
    addr: &SocketAddr,
    deadline: Option<Instant>,
    poll: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Connect {
    imp::connect(addr, deadline, poll, cancelled)
}

#[cfg(unix)]
#[allow(unsafe_code)]
mod imp {
    use super::Connect;
    use std::io;
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    pub fn connect(
        addr: &SocketAddr,
        deadline: Option<Instant>,
        poll: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Connect {
        let socket = match start(addr) {
            Ok(s) => s,
            Err(e) => return Connect::Failed(e),
        };
        loop {
            if cancelled() {
                return Connect::Cancelled;
            }
            let mut wait = poll;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Connect::TimedOut;
                }
                wait = wait.min(left);
            }
            match writable(&socket, wait) {
                Ok(false) => continue,
                Ok(true) => break,
                Err(e) => return Connect::Failed(e),
            }
        }
        let stream = TcpStream::from(socket);
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Connect::Failed(e),
        }
        // Writable without a pending error, yet not connected (a reset raced the check).
        if let Err(e) = stream.peer_addr() {
            return Connect::Failed(e);
        }
        match stream.set_nonblocking(false) {
            Ok(()) => Connect::Connected(stream),
            Err(e) => Connect::Failed(e),
        }
    }

    /// A non-blocking, close-on-exec socket with a connect to `addr` under way (or done).
    fn start(addr: &SocketAddr) -> io::Result<OwnedFd> {
        let family = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        // SAFETY: plain system call; the result is checked before use.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fcntl on a descriptor we own; results checked.
        unsafe {
            if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        {
            // A write to a socket the peer closed raises SIGPIPE there unless told not to.
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a valid int option on a descriptor we own.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_NOSIGPIPE,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        // SAFETY: sockaddr_storage is plain old data for which all zeroes is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        // SAFETY: `storage` holds a valid address of `len` bytes for the socket's family.
        let rc = unsafe {
            libc::connect(
                socket.as_raw_fd(),
                (&storage as *const libc::sockaddr_storage).cast(),
                len as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
        }
        Ok(socket)
    }

    /// Waits at most `wait` for the socket to become writable (its connect to end).
    fn writable(socket: &OwnedFd, wait: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: one valid pollfd, its count, a finite timeout.
        let rc = unsafe { libc::poll(&mut poll, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(rc > 0)
    }
}

#[cfg(not(unix))]
mod imp {
    use super::Connect;
    use std::io;
    use std::net::{SocketAddr, TcpStream};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    pub fn connect(
        addr: &SocketAddr,
        deadline: Option<Instant>,
        poll: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Connect {
        let addr = *addr;
        let budget = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (sender, receiver) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("ylokh-connect".into())
            .spawn(move || {
                let result = match budget {
                    Some(b) => TcpStream::connect_timeout(&addr, b.max(Duration::from_millis(1))),
                    None => TcpStream::connect(addr),
                };
                // The call may have been cancelled and gone: then the stream is just closed.
                let _ = sender.send(result);
            });
        if let Err(e) = spawned {
            return Connect::Failed(e);
        }
        loop {
            if cancelled() {
                return Connect::Cancelled;
            }
            match receiver.recv_timeout(poll) {
                Ok(Ok(stream)) => return Connect::Connected(stream),
                Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => return Connect::TimedOut,
                Ok(Err(e)) => return Connect::Failed(e),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Connect::Failed(io::Error::other("the connect thread ended"))
                }
            }
        }
    }
}
