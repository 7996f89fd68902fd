//! What one request may ask for: tokens to generate, messages, tools and the size of their
//! schemas. Each limit is checked before any work and refused with a 400 that names it.

use serde_json::Value;

use crate::chat::ChatRequest;

/// The limits of one server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The most tokens a request may ask to generate; `None`: as many as the context holds.
    pub max_tokens: Option<usize>,
    /// The most messages in one conversation.
    pub max_messages: usize,
    /// The most tools offered in one request.
    pub max_tools: usize,
    /// The most bytes of the tools' definitions (their JSON) in one request: each schema is
    /// compiled into a grammar, whose cost grows with it.
    pub max_tools_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_tokens: None,
            max_messages: 2048,
            max_tools: 256,
            max_tools_bytes: 512 << 10,
        }
    }
}

/// A limit a request went past.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitError {
    /// The error code clients see (`max_tokens_too_large`, …).
    pub code: &'static str,
    /// The request field at fault.
    pub param: &'static str,
    pub message: String,
}

impl Limits {
    /// Checks `max_tokens` (for chat and raw completions alike).
    pub fn check_max_tokens(&self, asked: Option<usize>) -> Result<(), LimitError> {
        match (asked, self.max_tokens) {
            (Some(asked), Some(most)) if asked > most => Err(refuse(
                "max_tokens_too_large",
                "max_tokens",
                format!(
                    "max_tokens is {asked}; this server generates at most {most} tokens a request"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Checks a chat request: messages, tools, and the size of the tools' definitions.
    pub fn check_chat(
        &self,
        chat: &ChatRequest,
        max_tokens: Option<usize>,
    ) -> Result<(), LimitError> {
        self.check_max_tokens(max_tokens)?;
        if chat.messages.len() > self.max_messages {
            return Err(refuse(
                "too_many_messages",
                "messages",
                format!(
                    "the conversation has {} messages; this server takes at most {}",
                    chat.messages.len(),
                    self.max_messages
                ),
            ));
        }
        let tools: &[Value] = chat.tools.as_deref().unwrap_or_default();
        if tools.len() > self.max_tools {
            return Err(refuse(
                "too_many_tools",
                "tools",
                format!(
                    "{} tools are offered; this server takes at most {}",
                    tools.len(),
                    self.max_tools
                ),
            ));
        }
        let bytes: usize = tools.iter().map(|t| t.to_string().len()).sum();
        if bytes > self.max_tools_bytes {
            return Err(refuse(
                "tools_too_large",
                "tools",
                format!(
                    "the tools' definitions take {bytes} bytes; this server takes at most {}",
                    self.max_tools_bytes
                ),
            ));
        }
        Ok(())
    }
}

fn refuse(code: &'static str, param: &'static str, message: String) -> LimitError {
    metrics::counter!("plugboard_limit_refusals_total", "limit" => code).increment(1);
    LimitError {
        code,
        param,
        message,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chat(messages: usize, tools: usize) -> ChatRequest {
        ChatRequest {
            messages: vec![json!({"role": "user", "content": "hi"}); messages],
            tools: Some(vec![
                json!({"type": "function", "function": {"name": "f", "parameters": {}}});
                tools
            ]),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn each_limit_is_refused_by_name_and_what_fits_passes() {
        let limits = Limits {
            max_tokens: Some(100),
            max_messages: 3,
            max_tools: 2,
            max_tools_bytes: 200,
        };
        assert_eq!(limits.check_chat(&chat(3, 2), Some(100)), Ok(()));
        let code = |r: Result<(), LimitError>| r.expect_err("refused").code;
        assert_eq!(
            code(limits.check_chat(&chat(3, 2), Some(101))),
            "max_tokens_too_large"
        );
        assert_eq!(
            code(limits.check_chat(&chat(4, 0), None)),
            "too_many_messages"
        );
        assert_eq!(code(limits.check_chat(&chat(1, 3), None)), "too_many_tools");
        let big = ChatRequest {
            tools: Some(vec![json!({"type": "function", "function": {"name": "f",
                "description": "x".repeat(300)}})]),
            ..chat(1, 0)
        };
        assert_eq!(code(limits.check_chat(&big, None)), "tools_too_large");
        assert_eq!(Limits::default().check_max_tokens(Some(1 << 30)), Ok(()));
    }
}
