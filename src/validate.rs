//! Checks of what a program (or the environment) hands the client, made when a value is
//! set so that a bad one is refused with a message saying what is wrong, instead of failing
//! every later call or reaching the wire in a dangerous form. Messages never repeat a
//! secret: an API key, or a URL that carries a password.

use ureq::http::{HeaderName, HeaderValue, Uri};

use crate::error::Error;
use crate::escape::escape_controls;

/// Headers that define the message's framing or the connection. The library sets them
/// from the request it sends; a program's value would hang the call (a `Content-Length`
/// longer than the body), cut the body, or put two framings on the wire (the shape of
/// request smuggling). `Host` follows the base URL: point the base URL at the host.
pub(crate) const FORBIDDEN_HEADERS: &[&str] = &[
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Upgrade",
    "TE",
    "Trailer",
    "Host",
    "Keep-Alive",
    "Proxy-Connection",
];

/// The parts of a `scheme://authority/rest` URL, split without decoding.
struct Parts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    /// The text after the host's `:`, when there is a colon.
    port: Option<&'a str>,
    rest: &'a str,
}

fn split(url: &str) -> Option<Parts<'_>> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = &hostport[..close + 2];
        match &v6[close + 1..] {
            "" => (host, None),
            tail => (host, Some(tail.strip_prefix(':')?)),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    Some(Parts {
        scheme,
        userinfo,
        host,
        port,
        rest,
    })
}

/// A port written in a URL: 1 to 65535, digits only.
fn check_port(port: Option<&str>, what: &str) -> Result<(), Error> {
    let Some(port) = port else { return Ok(()) };
    let valid = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && matches!(port.parse::<u32>(), Ok(1..=65535));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} has an invalid port {port:?} (expected 1 to 65535)"
        )))
    }
}

/// Checks a base URL and returns the form the client keeps: without a trailing slash,
/// with a non-ASCII path percent-encoded as UTF-8.
pub fn base_url(url: &str) -> Result<String, Error> {
    let shown = || format!("base URL {url:?}");
    let Some(parts) = split(url) else {
        return Err(Error::invalid(format!(
            "{} must start with http:// or https:// and name a host",
            shown()
        )));
    };
    if parts.userinfo.is_some() {
        // Never repeat the URL: it holds a password.
        return Err(Error::invalid(
            "the base URL must not contain a user name or password: set the API key \
             (ylokh_client_set_api_key) or an Authorization header instead",
        ));
    }
    if !matches!(parts.scheme, "http" | "https") {
        return Err(Error::invalid(format!(
            "{} must start with http:// or https://",
            shown()
        )));
    }
    if parts.host.is_empty() {
        return Err(Error::invalid(format!("{} has no host", shown())));
    }
    if !parts.host.is_ascii() {
        return Err(Error::invalid(format!(
            "{} has a non-ASCII host name: use its ASCII (punycode, xn--) form",
            shown()
        )));
    }
    check_port(parts.port, &shown())?;
    let encoded = percent_encode_non_ascii(url);
    let uri: Uri = encoded
        .parse()
        .map_err(|e| Error::invalid(format!("{} is not a valid URL: {e}", shown())))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!("{} has no host", shown())));
    }
    let _ = parts.rest;
    Ok(encoded.trim_end_matches('/').to_owned())
}

/// `text` with every byte outside ASCII written as `%XX`.
fn percent_encode_non_ascii(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks the port of a proxy URL (ureq would turn an invalid one into the default port).
/// The URL may hold credentials: it is never repeated.
pub fn proxy_url(url: &str) -> Result<(), Error> {
    if let Some(parts) = split(url) {
        check_port(parts.port, "the proxy URL")?;
        if parts.host.is_empty() {
            return Err(Error::invalid("the proxy URL has no host"));
        }
    }
    Ok(())
}

/// Checks a header a program sets (or removes, with `None`).
pub fn header(name: &str, value: Option<&str>) -> Result<(), Error> {
    if FORBIDDEN_HEADERS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
    {
        return Err(Error::invalid(format!(
            "the header {name} cannot be set or removed: it defines the request's framing \
             or connection, which the library writes itself"
        )));
    }
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        Error::invalid(format!(
            "{:?} is not a valid header name",
            escape_controls(name)
        ))
    })?;
    if let Some(v) = value {
        HeaderValue::from_str(v).map_err(|_| {
            Error::invalid(format!(
                "the value for header {name:?} is not valid: only visible ASCII, spaces \
                 and tabs, no line breaks"
            ))
        })?;
    }
    Ok(())
}

/// Checks an API key: it is sent as `Authorization: Bearer <key>`, so it must be visible
/// ASCII. Says what is wrong without repeating the key.
pub fn api_key(key: &str) -> Result<(), Error> {
    let problem = if key.ends_with('\r') || key.ends_with("\r\n") {
        Some("ends with a carriage return (was it read from a file with CRLF line ends?)")
    } else if key.contains('\n') {
        Some("contains a line feed")
    } else if key.contains('\r') {
        Some("contains a carriage return")
    } else if !key.is_ascii() {
        Some("contains non-ASCII characters")
    } else if key.starts_with([' ', '\t']) || key.ends_with([' ', '\t']) {
        Some("starts or ends with a space or tab")
    } else if key.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        Some("contains a space or a control character")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::invalid(format!(
            "the API key {problem}; it was not set"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn ports_are_checked() {
        for good in [
            "http://127.0.0.1:1/v1",
            "http://127.0.0.1:65535/v1",
            "http://h/v1",
            "https://[::1]:8080/v1",
            "https://[::1]/v1",
        ] {
            assert!(base_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://h:0/v1",
            "http://h:65536/v1",
            "http://h:-1/v1",
            "http://h:/v1",
            "http://h:99999999999/v1",
            "http://h:+80/v1",
            "http://[::1]:70000/v1",
        ] {
            let e = base_url(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains("port"), "{bad}: {}", e.message());
        }
    }

    #[test]
    fn userinfo_is_refused_without_echo() {
        let e = base_url("http://u:hunter2@h/v1").unwrap_err();
        assert!(!e.message().contains("hunter2"), "{}", e.message());
    }

    #[test]
    fn non_ascii_paths_are_encoded() {
        assert_eq!(base_url("http://h/é/v1/").unwrap(), "http://h/%C3%A9/v1");
        assert!(base_url("http://é.test/v1").is_err());
    }

    #[test]
    fn api_keys_are_checked() {
        assert!(api_key("sk-proj-abc_DEF-123").is_ok());
        for bad in ["k\r", "k\n", "kä", " k", "k ", "k\u{1}", "a b"] {
            assert!(api_key(bad).is_err(), "{bad:?}");
        }
    }
}
