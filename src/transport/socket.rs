//! Opening a TCP connection on the calling thread in a way another thread can stop: the
//! connect runs non-blocking and is waited for in short slices, each followed by a look at
//! the call's cancel flag. A cancelled connect closes its socket before the call returns,
//! so nothing (no thread, no socket) outlives the call.
//!
//! The standard library has no non-blocking connect, so on Unix the socket is made and
//! waited for with rustix's safe system calls (no unsafe code here). Elsewhere (Windows) the connect runs
//! on a helper thread that the call stops waiting for when cancelled; that thread ends by
//! itself within the connect timeout.
//!
//! Also here, for the same reason: a peek that does not wait, which tells whether a pooled
//! connection is still open (ureq asks twice per call) in one system call on Unix instead
//! of three.

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

/// Looks at what waits to be read on `stream` without taking it and without waiting:
/// `Ok(0)` at the end of the stream, `Err` of kind `WouldBlock` when nothing is there yet.
/// On Unix one system call (`MSG_PEEK | MSG_DONTWAIT`), leaving the socket blocking;
/// elsewhere the socket is made non-blocking for the peek and blocking again (three).
pub fn peek_without_waiting(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    imp::peek_without_waiting(stream, buf)
}

#[cfg(unix)]
mod imp {
    use super::Connect;
    use rustix::event::{PollFd, PollFlags, Timespec};
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    use std::io;
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::OwnedFd;
    use std::time::{Duration, Instant};

    pub fn peek_without_waiting(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        use rustix::net::RecvFlags;
        let (peeked, _) = rustix::net::recv(stream, buf, RecvFlags::PEEK | RecvFlags::DONTWAIT)?;
        Ok(peeked)
    }

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
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let socket = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
        // A write to a socket the peer closed raises SIGPIPE there unless told not to.
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        rustix::net::sockopt::set_socket_nosigpipe(&socket, true)?;
        match rustix::net::connect(&socket, addr) {
            Ok(()) | Err(rustix::io::Errno::INPROGRESS | rustix::io::Errno::INTR) => Ok(socket),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits at most `wait` for the socket to become writable (its connect to end).
    fn writable(socket: &OwnedFd, wait: Duration) -> io::Result<bool> {
        let mut fds = [PollFd::new(socket, PollFlags::OUT)];
        let wait = wait.clamp(Duration::from_millis(1), Duration::from_secs(1));
        let timeout = Timespec::try_from(wait).map_err(io::Error::other)?;
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(ready) => Ok(ready > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::Connect;
    use std::io;
    use std::net::{SocketAddr, TcpStream};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    pub fn peek_without_waiting(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        stream.set_nonblocking(true)?;
        let peeked = stream.peek(buf);
        stream.set_nonblocking(false)?;
        peeked
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn a_peek_without_waiting_takes_nothing_and_tells_nothing_data_and_the_end_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut byte = [0u8; 1];
        let nothing = peek_without_waiting(&client, &mut byte).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        server.write_all(b"x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let peeked = loop {
            match peek_without_waiting(&client, &mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!((peeked, byte[0]), (1, b'x'));
        // Still there to read, and the socket still blocks (a read waits for its timeout).
        client.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], b'x');
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let started = Instant::now();
        assert!(client.read(&mut byte).is_err());
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "the read waited"
        );
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match peek_without_waiting(&client, &mut byte) {
                Ok(0) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                other => panic!("expected the end of the stream, got {other:?}"),
            }
        }
    }
}
