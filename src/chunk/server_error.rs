//! The error shapes servers send: an `error` object (a string, `message`, or a nested
//! `error`, with `type` and `code`), a plain-text body, and what to show of a payload that
//! is none of these.

use serde_json::Value;

use crate::error::{Error, ErrorKind};

/// The message of an error object in any of the shapes servers use.
pub fn api_error(error: &Value) -> Error {
    Error::new(
        ErrorKind::Api,
        format!("server error: {}", error_text(error)),
    )
}

/// Finds the human-readable part of an error value: a string, `message`, or nested `error`.
pub fn error_text(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(fields) => {
            let mut text = match fields.get("message").or_else(|| fields.get("error")) {
                Some(inner) if !inner.is_null() => error_text(inner),
                _ => error.to_string(),
            };
            let kind = fields.get("type").and_then(Value::as_str);
            let code = fields.get("code").filter(|c| !c.is_null());
            match (kind, code) {
                (Some(kind), Some(code)) => text.push_str(&format!(" (type {kind}, code {code})")),
                (Some(kind), None) => text.push_str(&format!(" (type {kind})")),
                (None, Some(code)) => text.push_str(&format!(" (code {code})")),
                (None, None) => {}
            }
            text
        }
        Value::Null => "unknown error".to_owned(),
        other => other.to_string(),
    }
}

/// The server's message from an error body that may be JSON or plain text.
pub fn error_text_from_body(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => error_text(&value),
        Err(_) => snippet(body),
    }
}

/// The start of a payload, printable, for error messages.
pub fn snippet(data: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX)]);
    let mut out: String = text.trim().to_owned();
    if data.len() > MAX {
        out.push_str("...");
    }
    out
}
