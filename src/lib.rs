//! libylokh: a small, synchronous client for OpenAI-compatible chat servers that delivers
//! the reply token by token, usable from Rust directly and from C through [`ffi`].
//!
//! Data flows one way: request ([`ChatRequest`]) -> [`Client`] (HTTP, retries) ->
//! SSE decoder -> chunk parser -> your callback ([`Event`]).
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! let client = ylokh::Client::new();
//! client.set_base_url("http://127.0.0.1:8080/v1").unwrap();
//! let request = ylokh::ChatRequest::from_json(
//!     None, r#"[{"role":"user","content":"The three primary colors are"}]"#, None).unwrap();
//! client.chat_tokens(&request, |token| { print!("{token}"); ControlFlow::Continue(()) }).unwrap();
//! ```

// Only the C ABI (ffi/) may use unsafe; it allows it for itself, everything else is safe Rust.
#![deny(unsafe_code)]

mod backoff;
mod call;
mod cancel;
mod chunk;
mod client;
mod conversation;
mod error;
mod escape;
pub mod ffi;
mod message;
mod pull;
mod reply;
mod request;
mod settings;
mod sse;
mod stream;
mod transport;
mod validate;

pub use cancel::CancelToken;
pub use chunk::{Event, Usage};
pub use client::Client;
pub use conversation::Conversation;
pub use error::{Error, ErrorKind};
pub use message::{Message, ToolCall};
pub use pull::{OwnedEvent, Pulled, Stream};
pub use request::{parse_messages, parse_options, ChatRequest, DEFAULT_MODEL};
pub use settings::{
    Logger, Settings, Trust, DEFAULT_BASE_URL, DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_DELAY, DEFAULT_TIMEOUT, PROVIDER_URL,
};

/// Facts about the original `Ylokh` provider of gpt4free, kept for callers that list providers.
pub mod provider {
    /// The provider's site.
    pub const URL: &str = crate::settings::PROVIDER_URL;
    /// The service is gone; this library talks to any OpenAI-compatible server instead.
    pub const WORKING: bool = false;
    pub const SUPPORTS_MESSAGE_HISTORY: bool = true;
    pub const SUPPORTS_GPT_35_TURBO: bool = true;
}

/// This library's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Not part of the API, and only built with the `test-hooks` feature: the parsing stages
/// of a call on bytes in memory, without I/O, for the fuzz targets in `fuzz/`.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod fuzzing;
