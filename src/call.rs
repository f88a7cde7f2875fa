//! One chat call: attempts, retries and redirects, until a reply is read to its end or
//! the call fails for good.

use std::io::Read;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::http::Uri;
use ureq::{Agent, Body};

use crate::backoff::{backoff, retry_after, sleep_unless_cancelled};
use crate::cancel::CancelToken;
use crate::chunk::{self, Event};
use crate::error::{Error, ErrorKind};
use crate::escape::escape_controls;
use crate::reply::{map_ureq_error, read_reply};
use crate::request::ChatRequest;
use crate::settings::{redact_text, Settings};
use crate::transport;

/// How much of an error reply's body is read for its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Why an attempt failed, and whether another attempt may help.
struct Failure {
    error: Error,
    retryable: bool,
    retry_after: Option<Duration>,
    /// The connection ended before any reply byte, as a stale pooled one does.
    stale: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retryable: false,
            retry_after: None,
            stale: false,
        }
    }
}

/// What one chat call works with.
pub(crate) struct Call<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) agent: &'a Agent,
    pub(crate) secrets: Vec<String>,
    pub(crate) started: Instant,
}

impl Call<'_> {
    /// Hands a line to the log, if there is one; `message` is only built then.
    ///
    /// Never inlined, so that building messages takes no room in its callers' frames: the
    /// frames of a call that stay on the stack under ureq's connect are the deepest stack
    /// a call touches, and each page of it is resident memory per concurrent call.
    #[inline(never)]
    pub(crate) fn log(&self, message: impl FnOnce() -> String) {
        if let Some(log) = &self.settings.log {
            let line = redact_text(message(), &self.secrets);
            log(&escape_controls(&line));
        }
    }

    pub(crate) fn elapsed(&self) -> String {
        format!("{:.1} ms", self.started.elapsed().as_secs_f64() * 1000.0)
    }

    /// Sends the request, following 307/308 redirects and retrying what may be retried,
    /// until a reply has been read to its end or the call fails for good.
    pub(crate) fn run(
        &self,
        request: &ChatRequest,
        cancel: Option<&CancelToken>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let settings = self.settings;
        let deadline = settings.deadline.map(|d| self.started + d);
        let mut url = format!("{}/chat/completions", settings.base_url);
        let mut same_origin = true;
        let mut redirects = 0;
        let mut attempt = 0;
        let mut resent_stale = false;
        let mut events = 0u64;
        let cancelled = || cancel.is_some_and(CancelToken::is_cancelled);
        let mut counting = |event: Event<'_>| {
            // A cancel seen between two callbacks (triggered from another thread, or by the
            // callback itself) stops the call before the next one, buffered events or not.
            if cancelled() {
                return ControlFlow::Break(());
            }
            if events == 0 {
                self.log(|| format!("first event after {}", self.elapsed()));
            }
            events += 1;
            match on_event(event) {
                ControlFlow::Continue(()) if cancelled() => ControlFlow::Break(()),
                flow => flow,
            }
        };
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(Error::cancelled());
            }
            transport::take_opened();
            transport::take_received();
            self.log(|| format!("POST {url} (attempt {})", attempt + 1));
            let failure = match self.attempt(&url, same_origin, request, deadline, &mut counting) {
                Ok(Attempt::Done) => {
                    self.log(|| format!("done after {}: {events} events", self.elapsed()));
                    return Ok(());
                }
                Ok(Attempt::Redirect { status, location }) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(Error::protocol(format!(
                            "more than {MAX_REDIRECTS} redirects, the last to {location}"
                        )));
                    }
                    let next = redirect_target(&url, &location)?;
                    // Every credential (the API key, any header the program set) is meant for
                    // the base URL's origin: another origin gets none, and only when allowed.
                    if !is_same_origin(&settings.base_url, &next) {
                        if !settings.cross_origin_redirects {
                            return Err(cross_origin_refused(status, &next));
                        }
                        same_origin = false;
                    }
                    self.log(|| format!("redirected to {next} (credentials kept: {same_origin})"));
                    url = next;
                    continue;
                }
                Err(failure) if failure.error.kind() == ErrorKind::Aborted && cancelled() => {
                    return Err(Error::cancelled())
                }
                Err(failure) => failure,
            };
            // A pooled connection the server closed meanwhile (llama.cpp closes after every
            // stream) fails before any reply byte: send once more at once, as curl does.
            if failure.stale && !resent_stale && !transport::take_opened() {
                self.log(|| "the server had closed the pooled connection; sending again".into());
                resent_stale = true;
                continue;
            }
            if !failure.retryable || attempt >= settings.max_retries {
                return Err(failure.error);
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| backoff(settings.retry_delay, attempt));
            if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                return Err(failure.error);
            }
            self.log(|| format!("retrying in {} ms: {}", delay.as_millis(), failure.error));
            sleep_unless_cancelled(delay, cancel)?;
            attempt += 1;
        }
    }

    /// One request and its reply: send it, turn away what is not a 2xx reply, read the rest.
    fn attempt(
        &self,
        url: &str,
        credentials: bool,
        request: &ChatRequest,
        deadline: Option<Instant>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<Attempt, Failure> {
        let response = self.send(url, credentials, request, deadline)?;
        let status = response.status().as_u16();
        self.log(|| format!("HTTP {status} after {}", self.elapsed()));
        if let Some(location) = followed_redirect(&response) {
            return Ok(Attempt::Redirect { status, location });
        }
        if !response.status().is_success() {
            return Err(rejection(response));
        }
        read_reply(response, self.settings.max_event_bytes, on_event)
            .map(|()| Attempt::Done)
            .map_err(|e| Failure::from(e.with_http_status(status)))
    }

    /// Sends the request to `url`: with the headers the program set and the API key when
    /// `credentials` (the base URL's origin), with only the library's own headers
    /// otherwise; and with what is left of the deadline as the bound of this attempt.
    /// Never inlined, like `read_reply`: the frames between the caller and ureq's connect
    /// are the deepest stack a call touches, so they hold only what sending needs.
    #[inline(never)]
    fn send(
        &self,
        url: &str,
        credentials: bool,
        request: &ChatRequest,
        deadline: Option<Instant>,
    ) -> Result<Response<Body>, Failure> {
        // The request is built on the heap: only a pointer to it waits in this frame.
        let builder = self.request(url, credentials, request, deadline)?;
        (*builder)
            .send(request.body())
            .map_err(|e| send_failure(e, url))
    }

    /// The request to `url` with its headers (see `send`), ready to send. Not inlined, like
    /// `send`, so that its temporaries are off the stack while ureq connects.
    #[inline(never)]
    fn request(
        &self,
        url: &str,
        credentials: bool,
        request: &ChatRequest,
        deadline: Option<Instant>,
    ) -> Result<Box<ureq::RequestBuilder<ureq::typestate::WithBody>>, Failure> {
        let mut builder = self.agent.post(url);
        for (name, value) in request_headers(self.settings, url, credentials) {
            builder = builder.header(name, value.as_ref());
        }
        if credentials && self.settings.api_key_from_env && is_provider_host(url) {
            self.log(|| {
                "not sending the API key from the environment to the original provider's \
                 host: set the key in the program to send it there"
                    .into()
            });
        }
        // Compression is asked for only for a whole reply: a compressing proxy may hold back
        // a stream until its buffer fills. Either way, gzip and deflate are decoded when a
        // server sends them regardless (reply/encoding.rs). A header set by the caller wins.
        let sets_encoding = |(n, _): &(String, String)| n.eq_ignore_ascii_case("accept-encoding");
        if !(credentials && self.settings.headers.iter().any(sets_encoding)) {
            let accept = if request.stream() {
                "identity"
            } else {
                "gzip, deflate"
            };
            builder = builder.header("Accept-Encoding", accept);
        }
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(ErrorKind::Timeout, "the call's deadline passed").into());
            }
            builder = builder.config().timeout_global(Some(left)).build();
        }
        Ok(Box::new(builder))
    }
}

/// What a failure to send a request (or to get a reply's head) means for the call.
#[inline(never)]
fn send_failure(e: ureq::Error, url: &str) -> Failure {
    use std::io::ErrorKind as Io;
    // Before any byte of a reply, a reset or a close says nothing about the request:
    // a pooled connection the server had closed, or a server too busy to take it.
    let kind = match &e {
        ureq::Error::Io(io) if !transport::take_received() => Some(io.kind()),
        _ => None,
    };
    let stale = matches!(
        kind,
        Some(Io::UnexpectedEof | Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe)
    );
    let reset = matches!(
        kind,
        Some(Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe)
    );
    let error = map_ureq_error(e, &format!("requesting {url}"));
    Failure {
        retryable: error.kind() == ErrorKind::Connect || reset,
        error,
        retry_after: None,
        stale,
    }
}

/// The headers the library sends to `url`, in order (ureq adds `Host`, `User-Agent`,
/// `Accept` and the framing): `Content-Type` unless the program set one, the program's
/// headers and the API key when `credentials` (the base URL's origin). A key from the
/// environment never goes to the original provider's host.
pub(crate) fn request_headers<'a>(
    settings: &'a Settings,
    url: &str,
    credentials: bool,
) -> Vec<(&'a str, std::borrow::Cow<'a, str>)> {
    let own: &[(String, String)] = if credentials { &settings.headers } else { &[] };
    let has = |wanted: &str| own.iter().any(|(n, _)| n.eq_ignore_ascii_case(wanted));
    let mut headers = Vec::with_capacity(own.len() + 2);
    // A Content-Type the program set replaces the library's (two would be ambiguous).
    if !has("content-type") {
        headers.push(("Content-Type", "application/json".into()));
    }
    for (name, value) in own {
        headers.push((name.as_str(), value.as_str().into()));
    }
    if let (Some(key), false, true) = (&settings.api_key, has("authorization"), credentials) {
        if !(settings.api_key_from_env && is_provider_host(url)) {
            headers.push(("Authorization", format!("Bearer {key}").into()));
        }
    }
    headers
}

/// The `Location` of a 307 or 308 reply: the same request goes there.
fn followed_redirect(response: &Response<Body>) -> Option<String> {
    let location = response.headers().get("location")?.to_str().ok()?;
    matches!(response.status().as_u16(), 307 | 308).then(|| location.to_owned())
}

/// A reply other than 2xx (or a followed redirect) as a failure: its status, the server's
/// message from the start of its body, and whether another attempt may help. Never inlined,
/// like `read_reply`: it keeps the frame that sends the request small (see there).
#[inline(never)]
fn rejection(response: Response<Body>) -> Failure {
    let status = response.status().as_u16();
    let headers = response.headers();
    let location = headers.get("location").and_then(|v| v.to_str().ok());
    // 301, 302 and 303 would turn the POST into a GET without the conversation.
    let moved = match location {
        Some(to) if response.status().is_redirection() => {
            format!(" (redirect to {to} not followed: point the base URL at the new address)")
        }
        _ => String::new(),
    };
    let retry_after = retry_after(headers);
    let reason = response.status().canonical_reason().unwrap_or("");
    let mut body = Vec::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(ERROR_BODY_LIMIT)
        .read_to_end(&mut body);
    let detail = if body.iter().all(u8::is_ascii_whitespace) {
        "no message".to_owned()
    } else {
        chunk::error_text_from_body(&body)
    };
    Failure {
        error: Error::new(
            ErrorKind::HttpStatus,
            format!("HTTP {status} {reason}: {detail}{moved}"),
        )
        .with_http_status(status),
        retryable: matches!(status, 408 | 429) || status >= 500,
        retry_after,
        stale: false,
    }
}

/// How many 307/308 redirects one call follows.
const MAX_REDIRECTS: u32 = 5;

/// What a successful attempt came to.
enum Attempt {
    Done,
    /// A 307 or 308 to this `Location`: send the same request there.
    Redirect {
        status: u16,
        location: String,
    },
}

/// The absolute URL a `Location` points to, seen from `current`. A redirect from https
/// to http is refused: it would send the conversation in clear text.
fn redirect_target(current: &str, location: &str) -> Result<String, Error> {
    let bad = || {
        Error::protocol(format!(
            "the server redirected to an unusable location {location:?}"
        ))
    };
    let base: Uri = current.parse().map_err(|_| bad())?;
    let target = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if location.starts_with('/') && !location.starts_with("//") {
        let scheme = base.scheme_str().ok_or_else(bad)?;
        let authority = base.authority().ok_or_else(bad)?;
        format!("{scheme}://{authority}{location}")
    } else {
        return Err(bad());
    };
    let parsed: Uri = target.parse().map_err(|_| bad())?;
    if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
        // Never repeated: the location holds a password.
        return Err(Error::protocol(
            "the server redirected to a URL with a user name or password; not followed",
        ));
    }
    if parsed.port().is_some() && parsed.port_u16().is_none_or(|p| p == 0) {
        return Err(bad());
    }
    if base.scheme_str() == Some("https") && parsed.scheme_str() != Some("https") {
        return Err(Error::protocol(format!(
            "refusing to follow a redirect from https to {target}"
        )));
    }
    Ok(target)
}

/// Same scheme, host and port: the web's origin. Another port, or http moving to https,
/// is another origin, as for curl since 7.83.
fn is_same_origin(from: &str, to: &str) -> bool {
    let (Ok(from), Ok(to)) = (from.parse::<Uri>(), to.parse::<Uri>()) else {
        return false;
    };
    let port = |u: &Uri| {
        u.port_u16().unwrap_or(if u.scheme_str() == Some("https") {
            443
        } else {
            80
        })
    };
    from.host().map(str::to_ascii_lowercase) == to.host().map(str::to_ascii_lowercase)
        && from.scheme_str() == to.scheme_str()
        && port(&from) == port(&to)
}

/// The error of a redirect to another origin that the settings do not allow.
fn cross_origin_refused(status: u16, location: &str) -> Error {
    Error::new(
        ErrorKind::HttpStatus,
        format!(
            "HTTP {status}: the server redirected to another origin, {location}; not followed, \
             so that no credential goes there: point the base URL at it, or allow such \
             redirects (without credentials) with ylokh_client_set_cross_origin_redirects"
        ),
    )
    .with_http_status(status)
}

/// Whether `url` is on the original provider's host, which no longer exists: anyone may
/// register its domain.
fn is_provider_host(url: &str) -> bool {
    let provider = crate::settings::DEFAULT_BASE_URL.parse::<Uri>().ok();
    let target = url.parse::<Uri>().ok();
    match (provider, target) {
        (Some(p), Some(t)) => p
            .host()
            .zip(t.host())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b.trim_end_matches('.'))),
        _ => false,
    }
}
