//! One error type for the whole library, with a kind that maps to a fixed C status code.

use std::ffi::CStr;
use std::fmt;

/// What went wrong, coarsely. Each kind has a fixed number in the C API (`ylokh_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The fixed number of this kind in the C API.
    pub const fn code(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => 1,
            ErrorKind::Aborted => 2,
            ErrorKind::Connect => 3,
            ErrorKind::Tls => 4,
            ErrorKind::Timeout => 5,
            ErrorKind::HttpStatus => 6,
            ErrorKind::Api => 7,
            ErrorKind::Protocol => 8,
            ErrorKind::Io => 9,
            ErrorKind::Internal => 10,
        }
    }

    /// The kind with this C status number, if any.
    pub const fn from_code(code: i32) -> Option<ErrorKind> {
        use ErrorKind::*;
        Some(match code {
            1 => InvalidArgument,
            2 => Aborted,
            3 => Connect,
            4 => Tls,
            5 => Timeout,
            6 => HttpStatus,
            7 => Api,
            8 => Protocol,
            9 => Io,
            10 => Internal,
            _ => return None,
        })
    }

    /// A short, static description of the kind (what `ylokh_status_str` returns).
    pub fn describe(self) -> &'static str {
        self.describe_c().to_str().unwrap_or_default()
    }

    /// [`ErrorKind::describe`] as a C string.
    pub const fn describe_c(self) -> &'static CStr {
        match self {
            ErrorKind::InvalidArgument => c"invalid argument",
            ErrorKind::Aborted => c"aborted",
            ErrorKind::Connect => c"could not connect",
            ErrorKind::Tls => c"TLS error",
            ErrorKind::Timeout => c"timed out",
            ErrorKind::HttpStatus => c"HTTP error status",
            ErrorKind::Api => c"server reported an error",
            ErrorKind::Protocol => c"protocol error",
            ErrorKind::Io => c"I/O error",
            ErrorKind::Internal => c"internal error",
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
        let message = match crate::validate::escape_controls(&message) {
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
    fn codes_are_fixed_and_distinct() {
        use ErrorKind::*;
        let all = [
            InvalidArgument,
            Aborted,
            Connect,
            Tls,
            Timeout,
            HttpStatus,
            Api,
            Protocol,
            Io,
            Internal,
        ];
        let codes: Vec<i32> = all.iter().map(|k| k.code()).collect();
        assert_eq!(codes, (1..=10).collect::<Vec<_>>());
        for kind in all {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(11), None);
    }

    #[test]
    fn http_status_is_kept() {
        let e = Error::new(ErrorKind::HttpStatus, "nope").with_http_status(404);
        assert_eq!(e.http_status(), Some(404));
        assert_eq!(e.to_string(), "nope");
    }
}
