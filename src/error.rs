//! One error type for the whole library, with a kind that maps to a fixed C status code.

use std::fmt;

/// What went wrong, coarsely. Each kind has a fixed number in the C API (`ylokh_status`).
/// More kinds may be added: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A NULL pointer, a string that is not UTF-8, messages or options that are not valid JSON
    /// of the right shape, a bad URL or header. Nothing was sent.
    InvalidArgument,
    /// The callback asked to stop, or the call was cancelled from another thread.
    Aborted,
    /// The server (or the proxy) could not be reached.
    Connect,
    /// The TLS handshake failed, for example because the certificate is not trusted.
    Tls,
    /// The server was silent for longer than the timeout, or the overall deadline passed.
    Timeout,
    /// The server answered with a status other than 2xx.
    HttpStatus,
    /// The server answered 2xx but the reply carries an error (inside the stream or as JSON).
    Api,
    /// The reply does not follow the protocol: bad JSON, a line over the limit, a stream cut short.
    Protocol,
    /// Reading from or writing to the connection failed after it was established.
    Io,
    /// A bug in this library (a caught panic). The process keeps running.
    Internal,
}

impl ErrorKind {
    /// Every kind. Their numbers in the C API (`ylokh_status`) are given in `ffi` only.
    pub(crate) const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Aborted,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::HttpStatus,
        ErrorKind::Api,
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::Internal,
    ];

    /// A short, static description of the kind (what `ylokh_status_str` returns).
    pub const fn describe(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Connect => "could not connect",
            ErrorKind::Tls => "TLS error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::HttpStatus => "HTTP error status",
            ErrorKind::Api => "server reported an error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Io => "I/O error",
            ErrorKind::Internal => "internal error",
        }
    }
}

/// An error with its kind, a readable message (with the server's own message when there is
/// one) and the HTTP status of the reply when one was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    http_status: Option<u16>,
}

impl Error {
    /// An error with this message, control characters escaped (`\n`, `\x1b`, ...): a
    /// message often quotes the server, and printed as it came it could rewrite a terminal
    /// or forge log lines.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        let message = message.into();
        let message = match crate::escape::escape_controls(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(escaped) => escaped,
        };
        Error {
            kind,
            message,
            http_status: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message)
    }

    /// A call stopped by its cancel token.
    pub(crate) fn cancelled() -> Error {
        Error::new(ErrorKind::Aborted, "the call was cancelled")
    }

    /// A call stopped because its callback asked to.
    pub(crate) fn aborted() -> Error {
        Error::new(ErrorKind::Aborted, "the callback asked to stop")
    }

    pub(crate) fn with_http_status(mut self, status: u16) -> Error {
        self.http_status = Some(status);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status of the reply that failed, if a reply was received.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind), "{kind:?} twice");
            assert!(!kind.describe().is_empty());
        }
    }

    #[test]
    fn http_status_is_kept() {
        let e = Error::new(ErrorKind::HttpStatus, "nope").with_http_status(404);
        assert_eq!(e.http_status(), Some(404));
        assert_eq!(e.to_string(), "nope");
    }
}
