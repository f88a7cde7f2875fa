//! What a client is configured with: its settings and their defaults, the environment
//! variables it reads, and keeping secrets (API key, proxy password) out of every text.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::validate;

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

/// Everything a client is configured with. Cheap to clone; a chat works on a snapshot.
#[derive(Clone)]
pub struct Settings {
    /// Base URL ending in the API version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` unless an `Authorization` header is set.
    pub api_key: Option<String>,
    /// Whether `api_key` came from the environment (`YLOKH_API_KEY`, `OPENAI_API_KEY`).
    /// Such a key is never sent to the original provider's host ([`DEFAULT_BASE_URL`]),
    /// a domain anyone may register now that the service is gone; a key the program set is.
    pub api_key_from_env: bool,
    /// Follow 307/308 redirects to another origin (scheme, host or port). Off by default:
    /// such a redirect fails the call. When on, the request goes there without the API key
    /// and without any header the program set.
    pub cross_origin_redirects: bool,
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
            api_key_from_env: false,
            cross_origin_redirects: false,
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
        // An unusable URL or key in a variable is skipped rather than breaking every call.
        let base_url = ["YLOKH_BASE_URL", "OPENAI_BASE_URL"]
            .iter()
            .filter_map(|name| env_var(name))
            .find_map(|url| validate::base_url(&url).ok());
        if let Some(url) = base_url {
            settings.base_url = url;
        }
        settings.api_key = ["YLOKH_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .filter_map(|name| env_var(name))
            .find(|key| validate::api_key(key).is_ok());
        settings.api_key_from_env = settings.api_key.is_some();
        settings
    }

    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(key) = &self.api_key {
            secrets.push(key.clone());
        }
        if let Some(proxy) = self.proxy.as_deref().and_then(proxy_password) {
            // Messages escape control characters: a password holding one shows escaped.
            let escaped = crate::escape::escape_controls(&proxy).into_owned();
            if escaped != proxy {
                secrets.push(escaped);
            }
            secrets.push(proxy);
        }
        secrets
    }
}

/// A variable's value, if set and not blank.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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
pub(crate) fn redact_text(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "<redacted>");
        }
    }
    text
}

/// Remove every secret from an error's message before anyone sees it.
pub(crate) fn redact(error: Error, secrets: &[String]) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn base_urls_are_checked() {
        use crate::validate::base_url as validate_base_url;
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
