//! The request body: the original provider's defaults, the caller's options merged on top,
//! and validation of messages and options before anything reaches the network.

use serde_json::{Map, Value};

use crate::error::Error;

/// The model asked for when the caller gives none (the original provider's default).
pub const DEFAULT_MODEL: &str = "gpt-3.5-turbo";

/// Checks that `json` is an array of message objects and returns it.
///
/// Each message must be an object with a non-empty string `role`; `content`, when present,
/// must be a string, an array (multimodal parts) or null (assistant messages with tool calls).
/// Other fields (`name`, `tool_calls`, `tool_call_id`, ...) pass through untouched.
pub fn parse_messages(json: &str) -> Result<Vec<Value>, Error> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("messages are not valid JSON: {e}")))?;
    let Value::Array(messages) = value else {
        return Err(Error::invalid(
            "messages must be a JSON array of message objects",
        ));
    };
    for (i, message) in messages.iter().enumerate() {
        validate_message(i, message)?;
    }
    Ok(messages)
}

pub(crate) fn validate_message(i: usize, message: &Value) -> Result<(), Error> {
    let Value::Object(fields) = message else {
        return Err(Error::invalid(format!(
            "messages[{i}] is not a JSON object"
        )));
    };
    match fields.get("role") {
        Some(Value::String(role)) if !role.is_empty() => {}
        Some(_) => {
            return Err(Error::invalid(format!(
                "messages[{i}].role must be a non-empty string"
            )))
        }
        None => return Err(Error::invalid(format!("messages[{i}] has no role"))),
    }
    match fields.get("content") {
        None | Some(Value::String(_)) | Some(Value::Array(_)) | Some(Value::Null) => Ok(()),
        Some(_) => Err(Error::invalid(format!(
            "messages[{i}].content must be a string, an array of parts, or null"
        ))),
    }
}

/// Parses the caller's options (the C form of the original's `**kwargs`): a JSON object
/// whose fields are merged over the defaults. `None`, an empty string and `null` mean none.
///
/// `messages` and `model` are refused here because they have their own arguments; `stream`
/// must be a boolean because it decides how the reply is read.
pub fn parse_options(json: Option<&str>) -> Result<Map<String, Value>, Error> {
    let json = match json {
        None => return Ok(Map::new()),
        Some(s) if s.trim().is_empty() => return Ok(Map::new()),
        Some(s) => s,
    };
    let value: Value = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("options are not valid JSON: {e}")))?;
    let options = match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => return Err(Error::invalid("options must be a JSON object")),
    };
    for key in ["messages", "model"] {
        if options.contains_key(key) {
            return Err(Error::invalid(format!(
                "options must not contain \"{key}\": it has its own argument"
            )));
        }
    }
    if let Some(stream) = options.get("stream") {
        if !stream.is_boolean() {
            return Err(Error::invalid("options.stream must be true or false"));
        }
    }
    Ok(options)
}

/// A validated request, ready to be serialized for each attempt.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    body: Vec<u8>,
    stream: bool,
}

impl ChatRequest {
    /// Builds the body `{"messages", "model", "temperature": 1, "presence_penalty": 0,
    /// "top_p": 1, "frequency_penalty": 0, "allow_fallback": true, "stream": true}` with
    /// `options` merged on top. A missing or empty model means [`DEFAULT_MODEL`].
    pub fn new(model: Option<&str>, messages: &[Value], options: &Map<String, Value>) -> Self {
        let model = match model {
            Some(m) if !m.is_empty() => m,
            _ => DEFAULT_MODEL,
        };
        let mut body = Map::new();
        body.insert("messages".into(), Value::Array(messages.to_vec()));
        body.insert("model".into(), Value::from(model));
        body.insert("temperature".into(), Value::from(1));
        body.insert("presence_penalty".into(), Value::from(0));
        body.insert("top_p".into(), Value::from(1));
        body.insert("frequency_penalty".into(), Value::from(0));
        body.insert("allow_fallback".into(), Value::from(true));
        body.insert("stream".into(), Value::from(true));
        for (key, value) in options {
            body.insert(key.clone(), value.clone());
        }
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
        let body = serde_json::to_vec(&Value::Object(body))
            .expect("a serde_json::Value always serializes");
        ChatRequest { body, stream }
    }

    /// Validates raw JSON strings (as they come from C) and builds the request.
    pub fn from_json(
        model: Option<&str>,
        messages_json: &str,
        options_json: Option<&str>,
    ) -> Result<Self, Error> {
        let messages = parse_messages(messages_json)?;
        let options = parse_options(options_json)?;
        Ok(ChatRequest::new(model, &messages, &options))
    }

    /// The JSON body sent to the server.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the server is asked for a stream of chunks.
    pub fn stream(&self) -> bool {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body_of(req: &ChatRequest) -> Value {
        serde_json::from_slice(req.body()).unwrap()
    }

    #[test]
    fn defaults_match_the_original_provider() {
        let req =
            ChatRequest::from_json(None, r#"[{"role":"user","content":"hi"}]"#, None).unwrap();
        assert_eq!(
            body_of(&req),
            json!({"messages":[{"role":"user","content":"hi"}],"model":"gpt-3.5-turbo",
                   "temperature":1,"presence_penalty":0,"top_p":1,"frequency_penalty":0,
                   "allow_fallback":true,"stream":true})
        );
        assert!(req.stream());
        let empty_model = ChatRequest::from_json(Some(""), "[]", None).unwrap();
        assert_eq!(body_of(&empty_model)["model"], "gpt-3.5-turbo");
    }

    #[test]
    fn options_override_and_add() {
        let req = ChatRequest::from_json(
            Some("m"),
            "[]",
            Some(r#"{"temperature":0.2,"max_tokens":50,"stream":false}"#),
        )
        .unwrap();
        let body = body_of(&req);
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["max_tokens"], 50);
        assert_eq!(body["stream"], false);
        assert_eq!(body["model"], "m");
        assert!(!req.stream());
    }

    #[test]
    fn bad_messages_are_named() {
        let cases = [
            ("{", "not valid JSON"),
            ("{}", "JSON array"),
            ("[1]", "messages[0] is not a JSON object"),
            (r#"[{"content":"x"}]"#, "messages[0] has no role"),
            (
                r#"[{"role":"user","content":"a"},{"role":5}]"#,
                "messages[1].role",
            ),
            (r#"[{"role":"user","content":5}]"#, "messages[0].content"),
        ];
        for (json, expected) in cases {
            let err = parse_messages(json).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
            assert!(
                err.message().contains(expected),
                "{json}: {}",
                err.message()
            );
        }
    }

    #[test]
    fn bad_options_are_named() {
        let cases = [
            ("[1]", "JSON object"),
            ("nope", "not valid JSON"),
            (r#"{"stream":"yes"}"#, "options.stream"),
            (r#"{"messages":[]}"#, "\"messages\""),
            (r#"{"model":"x"}"#, "\"model\""),
        ];
        for (json, expected) in cases {
            let err = parse_options(Some(json)).unwrap_err();
            assert!(
                err.message().contains(expected),
                "{json}: {}",
                err.message()
            );
        }
        assert!(parse_options(Some("null")).unwrap().is_empty());
        assert!(parse_options(Some("  ")).unwrap().is_empty());
    }
}
