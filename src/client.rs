//! The client: its settings behind a lock, its setters, and the ureq agent (connection
//! pool, proxy, trust roots) built from them. A chat takes a snapshot of both and hands it
//! to [`crate::call`].

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::call::Call;
use crate::cancel::CancelToken;
use crate::chunk::Event;
use crate::error::Error;
use crate::message::Message;
use crate::request::ChatRequest;
use crate::settings::{redact, Logger, Settings, Trust};
use crate::transport::{self, CallGuard};
use crate::validate;

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

    /// An `http://` or `https://` URL with a host, a port from 1 to 65535 if any, and no
    /// user name or password. A non-ASCII path is percent-encoded.
    pub fn set_base_url(&self, base_url: &str) -> Result<(), Error> {
        let url = validate::base_url(base_url)?;
        self.update(false, |s| s.base_url = url);
        Ok(())
    }

    /// `None` or an empty key removes it. A key that cannot be sent in a header (not
    /// visible ASCII, surrounding spaces, a line end) is refused.
    pub fn set_api_key(&self, api_key: Option<&str>) -> Result<(), Error> {
        let key = api_key.filter(|k| !k.is_empty());
        if let Some(key) = key {
            validate::api_key(key)?;
        }
        let key = key.map(str::to_owned);
        self.update(false, |s| {
            s.api_key = key;
            s.api_key_from_env = false;
        });
        Ok(())
    }

    /// Whether 307/308 redirects to another origin are followed (see
    /// [`Settings::cross_origin_redirects`]).
    pub fn set_cross_origin_redirects(&self, allow: bool) {
        self.update(false, |s| s.cross_origin_redirects = allow);
    }

    /// `None` (or an empty string) goes back to the environment's proxy variables.
    pub fn set_proxy(&self, proxy: Option<&str>) -> Result<(), Error> {
        let proxy = proxy.filter(|p| !p.is_empty());
        if let Some(p) = proxy {
            validate::proxy_url(p)?;
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
    /// Headers that define the message's framing or the connection (`Content-Length`,
    /// `Transfer-Encoding`, `Connection`, `Upgrade`, `TE`, `Trailer`, `Host`, `Keep-Alive`,
    /// `Proxy-Connection`) are refused; a `Content-Type` replaces the library's.
    pub fn set_header(&self, name: &str, value: Option<&str>) -> Result<(), Error> {
        validate::header(name, value)?;
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

    /// Back to the bundled roots if the system store is in use; with the bundled roots or
    /// a CA file, nothing changes (checked and changed in one step, so a concurrent setter
    /// is not undone).
    pub fn stop_using_system_roots(&self) {
        let mut state = self.lock();
        if state.settings.trust == Trust::System {
            Arc::make_mut(&mut state.settings).trust = Trust::Bundled;
            state.agent = None;
        }
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
    /// (the connection is dropped) and the call returns [`ErrorKind::Aborted`](crate::ErrorKind::Aborted).
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
        self.prepare()?.chat(request, cancel, on_event)
    }

    /// What a call needs from the client, taken now: the pull API runs it on a worker
    /// thread that must not depend on the client staying alive.
    pub(crate) fn prepare(&self) -> Result<PreparedCall, Error> {
        let (settings, agent) = self.snapshot()?;
        Ok(PreparedCall { settings, agent })
    }

    /// Only the answer's text (choice 0), one piece at a time.
    pub fn chat_tokens<F>(&self, request: &ChatRequest, mut on_token: F) -> Result<(), Error>
    where
        F: FnMut(&str) -> ControlFlow<()>,
    {
        self.chat(request, |event| match event.token() {
            Some(text) => on_token(text),
            None => ControlFlow::Continue(()),
        })
    }

    /// The whole answer (choice 0) as one string.
    pub fn chat_text(&self, request: &ChatRequest) -> Result<String, Error> {
        Ok(self.chat_message(request, None)?.content().to_owned())
    }

    /// The whole reply as the assistant [`Message`] of choice 0: text, reasoning, refusal,
    /// tool calls, finish reason (`None` when the server sent none) and usage.
    pub fn chat_message(
        &self,
        request: &ChatRequest,
        cancel: Option<&CancelToken>,
    ) -> Result<Message, Error> {
        let mut message = Message::new();
        self.chat_with_cancel(request, cancel, &mut |event| {
            message.apply(&event);
            ControlFlow::Continue(())
        })?;
        Ok(message)
    }
}

/// A snapshot of a client's settings and connection pool, ready to run calls.
pub(crate) struct PreparedCall {
    settings: Arc<Settings>,
    agent: Agent,
}

impl PreparedCall {
    /// [`Client::chat_with_cancel`] on this snapshot.
    pub(crate) fn chat(
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
        let call = Call {
            secrets: self.settings.secrets(),
            settings: &self.settings,
            agent: &self.agent,
            started: Instant::now(),
        };
        let result = call.run(request, cancel, on_event);
        if let Err(e) = &result {
            call.log(|| format!("failed after {}: {e}", call.elapsed()));
        }
        result.map_err(|e| redact(e, &call.secrets))
    }
}

/// The input buffer of each connection (ureq's default is 128 KiB): a read fills it, so
/// it holds about 60 events. The response head must fit in it: it is also the limit of
/// the head's size (nginx's own default for an upstream's head is 4 or 8 KiB).
const INPUT_BUFFER: usize = 16 * 1024;
/// The output buffer of each connection (ureq's default is 128 KiB): the request head
/// must fit in it; the body goes through it in pieces. It exists only while a request is
/// sent (`transport/buffers.rs`); `reply::READ_BUFFER` is the same size, to reuse its memory.
const OUTPUT_BUFFER: usize = 8 * 1024;

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
        // ureq's 128 KiB per direction would be most of the memory of a reply.
        .input_buffer_size(INPUT_BUFFER)
        // Below the buffer, so that a head filling it is reported as too large (ureq
        // compares with "greater than").
        .max_response_header_size(INPUT_BUFFER - 1)
        .output_buffer_size(OUTPUT_BUFFER)
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
