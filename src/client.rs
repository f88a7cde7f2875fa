//! Settings, the ureq Agent, retries and the streaming loop.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::{HeaderName, HeaderValue, Uri};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::chunk::{self, Event};
use crate::error::{Error, ErrorKind};
use crate::request::ChatRequest;
use crate::sse;
use crate::transport::{self, CallGuard};

/// The original provider's endpoint; `/chat/completions` is appended.
pub const DEFAULT_BASE_URL: &str = "https://chatapi.ylokh.xyz/v1";
/// The original provider's site, sent as `Origin` and (with a slash) `Referer`.
pub const PROVIDER_URL: &str = "https://chat.ylokh.xyz";
/// The original provider's timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries after the first attempt, by default.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The first retry waits about this long; each later one twice as long (with jitter).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest single line, event or non-streaming reply accepted (16 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error reply's body is read for its message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;
/// A `Retry-After` longer than this is ignored in favour of the usual backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest backoff between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);

/// Everything a client is configured with. Cheap to clone; a chat works on a snapshot.
#[derive(Clone)]
pub struct Settings {
    /// Base URL ending in the API version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` unless an `Authorization` header is set.
    pub api_key: Option<String>,
    /// `http://`, `https://`, `socks5://` proxy URL, with credentials if needed.
    pub proxy: Option<String>,
    /// Use `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` when no proxy is set.
    pub proxy_from_env: bool,
    /// Bounds connecting and every wait for the next bytes (not the whole reply).
    pub timeout: Duration,
    /// Bounds the whole call, retries included. `None`: no limit.
    pub deadline: Option<Duration>,
    /// Extra headers, in order. Starts with the original provider's `Origin` and `Referer`.
    pub headers: Vec<(String, String)>,
    /// Retries after the first attempt for connect failures, 408, 429 and 5xx.
    pub max_retries: u32,
    /// The first backoff; doubled for each later retry, with jitter.
    pub retry_delay: Duration,
    /// Largest line, event or non-streaming reply accepted; larger is a protocol error.
    pub max_event_bytes: usize,
    /// Which certificate authorities HTTPS servers are checked against.
    pub trust: Trust,
    /// Receives a line for each step of a call (request, status, timings, retries),
    /// on the calling thread. Secrets are removed before it sees them.
    pub log: Option<Logger>,
}

/// A debugging sink for [`Settings::log`].
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// Where trusted certificate authorities come from. Verification is always on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// Mozilla's root certificates, built into the library (the default).
    #[default]
    Bundled,
    /// The operating system's trust store.
    System,
    /// Only the certificates in this PEM file (for a private CA or a self-signed server).
    CaFile(PathBuf),
}

impl std::fmt::Debug for Settings {
    // Written out so that the API key and proxy credentials never reach debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("proxy", &self.proxy.as_ref().map(|_| "<redacted>"))
            .field("proxy_from_env", &self.proxy_from_env)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("max_retries", &self.max_retries)
            .field("retry_delay", &self.retry_delay)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("trust", &self.trust)
            .field("log", &self.log.as_ref().map(|_| "set"))
            .finish()
    }
}

impl Default for Settings {
    /// The original provider's settings, without reading the environment.
    fn default() -> Self {
        Settings {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            proxy: None,
            proxy_from_env: true,
            timeout: DEFAULT_TIMEOUT,
            deadline: None,
            headers: vec![
                ("Origin".to_owned(), PROVIDER_URL.to_owned()),
                ("Referer".to_owned(), format!("{PROVIDER_URL}/")),
            ],
            max_retries: DEFAULT_MAX_RETRIES,
            retry_delay: DEFAULT_RETRY_DELAY,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            trust: Trust::Bundled,
            log: None,
        }
    }
}

impl Settings {
    /// Defaults, then `YLOKH_BASE_URL` / `OPENAI_BASE_URL` and `YLOKH_API_KEY` /
    /// `OPENAI_API_KEY` from the environment (empty values are ignored).
    pub fn from_env() -> Settings {
        let mut settings = Settings::default();
        // An unusable URL in a variable is skipped rather than breaking every call.
        let base_url = ["YLOKH_BASE_URL", "OPENAI_BASE_URL"]
            .iter()
            .filter_map(|name| env_var(name))
            .find(|url| validate_base_url(url).is_ok());
        if let Some(url) = base_url {
            settings.base_url = url.trim_end_matches('/').to_owned();
        }
        settings.api_key = env_var("YLOKH_API_KEY").or_else(|| env_var("OPENAI_API_KEY"));
        settings
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(key) = &self.api_key {
            secrets.push(key.clone());
        }
        if let Some(proxy) = self.proxy.as_deref().and_then(proxy_password) {
            secrets.push(proxy);
        }
        secrets
    }
}

/// A variable's value, if set and not blank.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn validate_base_url(url: &str) -> Result<(), Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::invalid(format!("base URL {url:?} is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(Error::invalid(format!(
                "base URL {url:?} must start with http:// or https://"
            )))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!("base URL {url:?} has no host")));
    }
    Ok(())
}

/// The password part of a proxy URL, so it can be kept out of messages.
fn proxy_password(proxy: &str) -> Option<String> {
    let p = ureq::Proxy::new(proxy).ok()?;
    let mut secrets = p.password().map(str::to_owned);
    if secrets.as_deref() == Some("") {
        secrets = None;
    }
    secrets
}

/// `text` with every secret replaced.
fn redact_text(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "<redacted>");
        }
    }
    text
}

/// Remove every secret from an error's message before anyone sees it.
fn redact(error: Error, secrets: &[String]) -> Error {
    if !secrets.iter().any(|s| error.message().contains(s.as_str())) {
        return error;
    }
    let message = redact_text(error.message().to_owned(), secrets);
    let redacted = Error::new(error.kind(), message);
    match error.http_status() {
        Some(status) => redacted.with_http_status(status),
        None => redacted,
    }
}

/// Set by another thread to stop a call: the call returns [`ErrorKind::Aborted`] within
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

struct State {
    settings: Arc<Settings>,
    /// Built from the settings on first use and after a setting it depends on changes.
    agent: Option<Agent>,
}

/// A chat client: settings plus a pool of keep-alive connections.
///
/// Shareable between threads (`&Client` is enough to chat); a setter called while chats
/// run affects only the calls that start after it.
pub struct Client {
    state: Mutex<State>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &*self.settings())
            .finish()
    }
}

impl Client {
    /// A client with the default settings and the environment's base URL and API key.
    pub fn new() -> Client {
        Client::with_settings(Settings::from_env())
    }

    pub fn with_settings(settings: Settings) -> Client {
        Client {
            state: Mutex::new(State {
                settings: Arc::new(settings),
                agent: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock is held cannot leave State half-written (every update
        // replaces whole fields), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.lock().settings.clone()
    }

    /// Changes settings. `rebuild_agent` drops the connection pool (proxy, timeouts).
    fn update(&self, rebuild_agent: bool, change: impl FnOnce(&mut Settings)) {
        let mut state = self.lock();
        change(Arc::make_mut(&mut state.settings));
        if rebuild_agent {
            state.agent = None;
        }
    }

    pub fn set_base_url(&self, base_url: &str) -> Result<(), Error> {
        validate_base_url(base_url)?;
        let url = base_url.trim_end_matches('/').to_owned();
        self.update(false, |s| s.base_url = url);
        Ok(())
    }

    /// `None` or an empty key removes it.
    pub fn set_api_key(&self, api_key: Option<&str>) {
        let key = api_key.filter(|k| !k.is_empty()).map(str::to_owned);
        self.update(false, |s| s.api_key = key);
    }

    /// `None` (or an empty string) goes back to the environment's proxy variables.
    pub fn set_proxy(&self, proxy: Option<&str>) -> Result<(), Error> {
        let proxy = proxy.filter(|p| !p.is_empty());
        if let Some(p) = proxy {
            let parsed = ureq::Proxy::new(p).map_err(|_| {
                // The URL may hold credentials: never echo it.
                Error::invalid(
                    "proxy URL is not valid (expected http://, https:// or socks5://host:port)",
                )
            })?;
            if parsed.host().is_empty() {
                return Err(Error::invalid("proxy URL has no host"));
            }
        }
        let proxy = proxy.map(str::to_owned);
        self.update(true, |s| s.proxy = proxy);
        Ok(())
    }

    /// Whether the proxy environment variables are used when no proxy is set.
    pub fn set_proxy_from_env(&self, enabled: bool) {
        self.update(true, |s| s.proxy_from_env = enabled);
    }

    /// Bounds connecting and each wait for more bytes. Zero is refused.
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), Error> {
        if timeout.is_zero() {
            return Err(Error::invalid("timeout must be greater than zero"));
        }
        self.update(true, |s| s.timeout = timeout);
        Ok(())
    }

    /// Bounds a whole call, retries included. `None` (or zero) removes the bound.
    pub fn set_deadline(&self, deadline: Option<Duration>) {
        let deadline = deadline.filter(|d| !d.is_zero());
        self.update(false, |s| s.deadline = deadline);
    }

    /// Sets (replacing any earlier value, case-insensitively) or with `None` removes a header.
    pub fn set_header(&self, name: &str, value: Option<&str>) -> Result<(), Error> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::invalid(format!("{name:?} is not a valid header name")))?;
        if let Some(v) = value {
            HeaderValue::from_str(v).map_err(|_| {
                Error::invalid(format!("the value for header {name:?} is not valid"))
            })?;
        }
        let (name, value) = (name.to_owned(), value.map(str::to_owned));
        self.update(false, |s| {
            s.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            if let Some(value) = value {
                s.headers.push((name, value));
            }
        });
        Ok(())
    }

    pub fn set_max_retries(&self, retries: u32) {
        self.update(false, |s| s.max_retries = retries);
    }

    pub fn set_retry_delay(&self, delay: Duration) {
        self.update(false, |s| s.retry_delay = delay);
    }

    /// At least 1 KiB.
    pub fn set_max_event_bytes(&self, bytes: usize) -> Result<(), Error> {
        if bytes < 1024 {
            return Err(Error::invalid(
                "the event size limit must be at least 1024 bytes",
            ));
        }
        self.update(false, |s| s.max_event_bytes = bytes);
        Ok(())
    }

    /// Which certificate authorities to trust. A CA file is read now, so a missing or
    /// empty file is refused here rather than at the next chat.
    pub fn set_trust(&self, trust: Trust) -> Result<(), Error> {
        if let Trust::CaFile(path) = &trust {
            read_ca_file(path)?;
        }
        self.update(true, |s| s.trust = trust);
        Ok(())
    }

    /// Sets or (with `None`) removes the debugging log.
    pub fn set_log(&self, log: Option<Logger>) {
        self.update(false, |s| s.log = log);
    }

    fn snapshot(&self) -> Result<(Arc<Settings>, Agent), Error> {
        let mut state = self.lock();
        let agent = match &state.agent {
            Some(agent) => agent.clone(),
            None => {
                let agent = build_agent(&state.settings)?;
                state.agent = Some(agent.clone());
                agent
            }
        };
        Ok((state.settings.clone(), agent))
    }

    /// Sends a chat request and reports every event of the reply to `on_event`, in order,
    /// on this thread, before returning. `on_event` returning `Break` stops the call at once
    /// (the connection is dropped) and the call returns [`ErrorKind::Aborted`].
    pub fn chat<F>(&self, request: &ChatRequest, mut on_event: F) -> Result<(), Error>
    where
        F: FnMut(Event<'_>) -> ControlFlow<()>,
    {
        self.chat_with_cancel(request, None, &mut on_event)
    }

    /// [`Client::chat`] that can also be stopped from another thread with `cancel`.
    pub fn chat_with_cancel(
        &self,
        request: &ChatRequest,
        cancel: Option<&CancelToken>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let Some(_guard) = CallGuard::enter(cancel.map(CancelToken::flag)) else {
            return Err(Error::invalid(
                "a chat cannot be started from inside a callback of another chat on the same thread",
            ));
        };
        let (settings, agent) = self.snapshot()?;
        let call = Call {
            secrets: settings.secrets(),
            settings: &settings,
            agent: &agent,
            started: Instant::now(),
        };
        let result = call.run(request, cancel, on_event);
        if let Err(e) = &result {
            call.log(|| format!("failed after {}: {e}", call.elapsed()));
        }
        result.map_err(|e| redact(e, &call.secrets))
    }

    /// Only the answer's text (choice 0), one piece at a time.
    pub fn chat_tokens<F>(&self, request: &ChatRequest, mut on_token: F) -> Result<(), Error>
    where
        F: FnMut(&str) -> ControlFlow<()>,
    {
        self.chat(request, |event| match event {
            Event::Content { choice: 0, text } => on_token(text),
            _ => ControlFlow::Continue(()),
        })
    }

    /// The whole answer (choice 0) as one string.
    pub fn chat_text(&self, request: &ChatRequest) -> Result<String, Error> {
        let mut text = String::new();
        self.chat_tokens(request, |token| {
            text.push_str(token);
            ControlFlow::Continue(())
        })?;
        Ok(text)
    }
}

fn build_agent(settings: &Settings) -> Result<Agent, Error> {
    let proxy = match &settings.proxy {
        Some(url) => {
            Some(ureq::Proxy::new(url).map_err(|_| Error::invalid("proxy URL is not valid"))?)
        }
        None if settings.proxy_from_env => ureq::Proxy::try_from_env(),
        None => None,
    };
    let roots = match &settings.trust {
        Trust::Bundled => RootCerts::WebPki,
        Trust::System => RootCerts::PlatformVerifier,
        Trust::CaFile(path) => RootCerts::Specific(Arc::new(read_ca_file(path)?)),
    };
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        // Redirects are followed by the client itself (see `redirect_target`).
        .max_redirects(0)
        .proxy(proxy)
        .timeout_connect(Some(settings.timeout))
        .timeout_per_read(Some(settings.timeout))
        .timeout_per_write(Some(settings.timeout))
        // Several threads streaming at once each keep a connection to the same host.
        .max_idle_connections(64)
        .max_idle_connections_per_host(32)
        .user_agent(concat!("libylokh/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(transport::agent(config))
}

fn read_ca_file(path: &PathBuf) -> Result<Vec<Certificate<'static>>, Error> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| Error::invalid(format!("cannot read the CA file {shown}: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::invalid(format!(
                    "the CA file {shown} is not valid PEM: {e}"
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "the CA file {shown} holds no certificate"
        )));
    }
    Ok(certs)
}

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
struct Call<'a> {
    settings: &'a Settings,
    agent: &'a Agent,
    secrets: Vec<String>,
    started: Instant,
}

impl Call<'_> {
    /// Hands a line to the log, if there is one; `message` is only built then.
    fn log(&self, message: impl FnOnce() -> String) {
        if let Some(log) = &self.settings.log {
            log(&redact_text(message(), &self.secrets));
        }
    }

    fn elapsed(&self) -> String {
        format!("{:.1} ms", self.started.elapsed().as_secs_f64() * 1000.0)
    }

    fn run(
        &self,
        request: &ChatRequest,
        cancel: Option<&CancelToken>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let settings = self.settings;
        let deadline = settings.deadline.map(|d| self.started + d);
        let mut url = format!("{}/chat/completions", settings.base_url);
        let mut send_auth = true;
        let mut redirects = 0;
        let mut attempt = 0;
        let mut resent_stale = false;
        let mut events = 0u64;
        let mut counting = |event: Event<'_>| {
            if events == 0 {
                self.log(|| format!("first event after {}", self.elapsed()));
            }
            events += 1;
            on_event(event)
        };
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(cancelled());
            }
            transport::take_opened();
            transport::take_received();
            self.log(|| format!("POST {url} (attempt {})", attempt + 1));
            let failure = match self.attempt(&url, send_auth, request, deadline, &mut counting) {
                Ok(Attempt::Done) => {
                    self.log(|| format!("done after {}: {events} events", self.elapsed()));
                    return Ok(());
                }
                Ok(Attempt::Redirect(location)) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(Error::protocol(format!(
                            "more than {MAX_REDIRECTS} redirects, the last to {location}"
                        )));
                    }
                    let next = redirect_target(&url, &location)?;
                    // Credentials go only to the origin they were meant for (or its https form).
                    send_auth &= same_origin_or_upgrade(&url, &next);
                    self.log(|| format!("redirected to {next} (credentials kept: {send_auth})"));
                    url = next;
                    continue;
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

    fn attempt(
        &self,
        url: &str,
        send_auth: bool,
        request: &ChatRequest,
        deadline: Option<Instant>,
        on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<Attempt, Failure> {
        let settings = self.settings;
        let mut builder = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        let is_authorization = |name: &str| name.eq_ignore_ascii_case("authorization");
        let has_authorization = settings.headers.iter().any(|(n, _)| is_authorization(n));
        for (name, value) in &settings.headers {
            if send_auth || !is_authorization(name) {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        if let (Some(key), false, true) = (&settings.api_key, has_authorization, send_auth) {
            builder = builder.header("Authorization", format!("Bearer {key}"));
        }
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(ErrorKind::Timeout, "the call's deadline passed").into());
            }
            builder = builder.config().timeout_global(Some(left)).build();
        }
        let response = builder.send(request.body()).map_err(|e| {
            use std::io::ErrorKind as Io;
            // Before any byte of a reply, a reset or a close says nothing about the request:
            // a pooled connection the server had closed, or a server too busy to take it.
            let kind = match &e {
                ureq::Error::Io(io) if !transport::take_received() => Some(io.kind()),
                _ => None,
            };
            let stale = matches!(
                kind,
                Some(
                    Io::UnexpectedEof
                        | Io::ConnectionReset
                        | Io::ConnectionAborted
                        | Io::BrokenPipe
                )
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
        })?;

        let status = response.status().as_u16();
        self.log(|| format!("HTTP {status} after {}", self.elapsed()));
        let headers = response.headers();
        let location = headers.get("location").and_then(|v| v.to_str().ok());
        if let (307 | 308, Some(location)) = (status, location) {
            return Ok(Attempt::Redirect(location.to_owned()));
        }
        if !(200..300).contains(&status) {
            // 301, 302 and 303 would turn the POST into a GET without the conversation.
            let moved = match location {
                Some(to) if response.status().is_redirection() => {
                    format!(
                        " (redirect to {to} not followed: point the base URL at the new address)"
                    )
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
            return Err(Failure {
                error: Error::new(
                    ErrorKind::HttpStatus,
                    format!("HTTP {status} {reason}: {detail}{moved}"),
                )
                .with_http_status(status),
                retryable: matches!(status, 408 | 429) || status >= 500,
                retry_after,
                stale: false,
            });
        }
        let is_json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        let reader = response.into_body().into_reader();
        let result = if is_json {
            read_whole_reply(reader, settings.max_event_bytes, on_event)
        } else {
            read_stream(reader, settings.max_event_bytes, on_event)
        };
        result
            .map(|()| Attempt::Done)
            .map_err(|e| Failure::from(e.with_http_status(status)))
    }
}

/// How many 307/308 redirects one call follows.
const MAX_REDIRECTS: u32 = 5;

/// What a successful attempt came to.
enum Attempt {
    Done,
    /// A 307 or 308 to this `Location`: send the same request there.
    Redirect(String),
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
    if base.scheme_str() == Some("https") && parsed.scheme_str() != Some("https") {
        return Err(Error::protocol(format!(
            "refusing to follow a redirect from https to {target}"
        )));
    }
    Ok(target)
}

/// Same scheme, host and port, or the same host moving from http to https.
fn same_origin_or_upgrade(from: &str, to: &str) -> bool {
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
    let same_host =
        from.host().map(str::to_ascii_lowercase) == to.host().map(str::to_ascii_lowercase);
    let same_origin = from.scheme_str() == to.scheme_str() && port(&from) == port(&to);
    same_host
        && (same_origin || (from.scheme_str() == Some("http") && to.scheme_str() == Some("https")))
}

/// `base * 2^attempt`, capped, minus up to a quarter at random so that many clients
/// retrying together spread out.
fn backoff(base: Duration, attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let full = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_RETRY_DELAY);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let jitter = (hasher.finish() % 1000) as f64 / 4000.0;
    full.mul_f64(1.0 - jitter)
}

fn sleep_unless_cancelled(delay: Duration, cancel: Option<&CancelToken>) -> Result<(), Error> {
    let until = Instant::now() + delay;
    loop {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(cancelled());
        }
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(transport::CANCEL_POLL));
    }
}

/// Parses `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`, when the wait
/// it asks for is reasonable.
fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let wait = if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::try_from_secs_f64(ms / 1000.0).ok()?
    } else {
        let value = text("retry-after")?;
        match value.parse::<f64>() {
            Ok(secs) => Duration::try_from_secs_f64(secs).ok()?,
            Err(_) => {
                let at = parse_http_date(value)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                Duration::from_secs(at.checked_sub(now)?)
            }
        }
    };
    (wait <= MAX_RETRY_AFTER).then_some(wait)
}

/// Seconds since 1970 of an IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT`.
fn parse_http_date(text: &str) -> Option<u64> {
    let mut parts = text.split_whitespace().skip(1);
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}

/// Reads a non-streaming reply (or a JSON error sent in place of a stream).
pub(crate) fn read_whole_reply(
    reader: impl Read,
    limit: usize,
    on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut body = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| map_io_error(e, "reading the reply"))?;
    if body.len() > limit {
        return Err(Error::protocol(format!(
            "the reply is larger than the limit of {limit} bytes"
        )));
    }
    match chunk::parse(&body, on_event)? {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(aborted()),
    }
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Aborted, "the call was cancelled")
}

fn aborted() -> Error {
    Error::new(ErrorKind::Aborted, "the callback asked to stop")
}

/// Why the stream loop stopped before the end of the body.
enum Stop {
    Done,
    Aborted,
    Failed(Error),
}

/// Bytes read from the socket at a time: a few events' worth without a large stack frame.
const READ_BUFFER: usize = 16 * 1024;

pub(crate) fn read_stream(
    mut reader: impl Read,
    limit: usize,
    on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut decoder = sse::Decoder::new(limit);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut finished = false;
    let mut handle = |event: &sse::Event<'_>| -> ControlFlow<Stop> {
        if event.event == b"error" {
            let text = chunk::error_text_from_body(event.data);
            return ControlFlow::Break(Stop::Failed(Error::new(
                ErrorKind::Api,
                format!("server error: {text}"),
            )));
        }
        if !(event.event.is_empty() || event.event == b"message") {
            return ControlFlow::Continue(());
        }
        let data = event.data.trim_ascii();
        if data == b"[DONE]" {
            return ControlFlow::Break(Stop::Done);
        }
        if data.is_empty() {
            return ControlFlow::Continue(());
        }
        let mut watch = |e: Event<'_>| {
            if matches!(e, Event::Finish { .. }) {
                finished = true;
            }
            on_event(e)
        };
        match chunk::parse(data, &mut watch) {
            Ok(ControlFlow::Continue(())) => ControlFlow::Continue(()),
            Ok(ControlFlow::Break(())) => ControlFlow::Break(Stop::Aborted),
            Err(e) => ControlFlow::Break(Stop::Failed(e)),
        }
    };
    let too_long = |e: sse::LimitExceeded| {
        Error::protocol(format!(
            "the server sent a line or event longer than the limit of {} bytes",
            e.limit
        ))
    };
    let stop = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => match decoder.finish(&mut handle).map_err(too_long)? {
                ControlFlow::Break(stop) => break stop,
                ControlFlow::Continue(()) => {
                    if finished {
                        return Ok(());
                    }
                    return Err(Error::protocol(
                        "the stream ended before [DONE] and before a finish_reason: the reply is incomplete",
                    ));
                }
            },
            Ok(n) => n,
            Err(e) => return Err(map_io_error(e, "reading the stream")),
        };
        if let ControlFlow::Break(stop) = decoder.feed(&buf[..n], &mut handle).map_err(too_long)? {
            break stop;
        }
    };
    match stop {
        Stop::Done => {
            transport::drain(&mut reader, &mut buf);
            Ok(())
        }
        Stop::Aborted => Err(aborted()),
        Stop::Failed(e) => Err(e),
    }
}

fn map_io_error(e: std::io::Error, doing: &str) -> Error {
    map_ureq_error(ureq::Error::from(e), doing)
}

/// Sorts ureq's errors into the library's kinds, with a message saying what was being done.
fn map_ureq_error(e: ureq::Error, doing: &str) -> Error {
    use std::io::ErrorKind as Io;
    use ureq::Error as U;
    let kind = match &e {
        U::Timeout(_) => ErrorKind::Timeout,
        U::HostNotFound | U::ConnectionFailed | U::ConnectProxyFailed(_) => ErrorKind::Connect,
        U::Tls(_) | U::Pem(_) | U::Rustls(_) | U::TlsRequired => ErrorKind::Tls,
        U::BadUri(_) | U::InvalidProxyUrl | U::Http(_) => ErrorKind::InvalidArgument,
        U::Protocol(_)
        | U::BodyExceedsLimit(_)
        | U::TooManyRedirects
        | U::RedirectFailed
        | U::LargeResponseHeader(..) => ErrorKind::Protocol,
        U::Other(inner) if inner.is::<transport::Cancelled>() => return cancelled(),
        U::Other(inner) if inner.is::<transport::TlsHandshakeFailed>() => ErrorKind::Tls,
        U::Other(inner) if inner.is::<transport::TooManyInformational>() => ErrorKind::Protocol,
        U::Io(io) => match io.kind() {
            Io::ConnectionRefused
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::AddrNotAvailable
            | Io::NotFound => ErrorKind::Connect,
            Io::TimedOut | Io::WouldBlock => ErrorKind::Timeout,
            _ if is_tls_error(io) => ErrorKind::Tls,
            _ => ErrorKind::Io,
        },
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("{} while {doing}: {e}", kind.describe()))
}

/// rustls reports certificate problems as `InvalidData` I/O errors wrapping its own error.
fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| {
        inner.is::<ureq::Error>()
            || inner.is::<rustls::Error>()
            || format!("{inner:?}").contains("Certificate")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        let base = Duration::from_millis(100);
        for attempt in 0..6 {
            let full = (base * (1 << attempt)).min(MAX_RETRY_DELAY);
            let d = backoff(base, attempt);
            assert!(d <= full && d >= full.mul_f64(0.75), "{attempt}: {d:?}");
        }
        assert!(backoff(base, 40) <= MAX_RETRY_DELAY);
    }

    #[test]
    fn base_urls_are_checked() {
        assert!(validate_base_url("http://127.0.0.1:8080/v1").is_ok());
        assert!(validate_base_url("https://example.com/v1").is_ok());
        for bad in ["", "ftp://x/v1", "127.0.0.1:80", "http://", "not a url"] {
            assert_eq!(
                validate_base_url(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let e = Error::new(ErrorKind::Connect, "proxy sk-123 said pw").with_http_status(407);
        let e = redact(e, &["sk-123".into(), "pw".into()]);
        assert_eq!(e.message(), "proxy <redacted> said <redacted>");
        assert_eq!(e.http_status(), Some(407));
    }

    #[test]
    fn defaults_are_the_original_providers() {
        let s = Settings::default();
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert_eq!(s.base_url, "https://chatapi.ylokh.xyz/v1");
        assert_eq!(s.max_retries, 2);
        assert!(s.deadline.is_none());
        assert_eq!(s.trust, Trust::Bundled);
    }

    #[test]
    fn settings_debug_hides_secrets() {
        let s = Settings {
            api_key: Some("sk-secret".into()),
            proxy: Some("http://user:hunter2@127.0.0.1:1".into()),
            ..Settings::default()
        };
        let text = format!("{s:?}");
        assert!(
            !text.contains("sk-secret") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
