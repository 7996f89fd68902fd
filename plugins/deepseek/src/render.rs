//! The built-in prompt: what the official DeepSeek-V3 chat template renders, byte for byte
//! (checked against transformers' renders in `fixtures/reference-deepseek-ai--DeepSeek-V3.jsonl`).
//!
//! The template's ways are kept, odd ones included:
//! - every system message, wherever it stands, joins the prompt's head (`\n\n` between them);
//! - it describes no tools, and renders no generation prompt after tool results (the model
//!   goes on after `<｜tool▁outputs▁end｜>`);
//! - an assistant turn with text renders only the text, never its calls;
//! - its "first call" and "first output" flags are never reset, so every later call is written
//!   as a follow-up call closing a block, and every later result without the outputs opener;
//! - it pastes each call's arguments into the prompt as text, which fails on the decoded
//!   arguments object that transformers and vLLM hand it: a turn with calls and no text cannot
//!   be rendered, and is refused as transformers refuses it.

use plugboard_sdk::prompt::json_value;
use plugboard_sdk::types::{AdapterError, Message, PromptRequest, Role};

use crate::markers::*;

fn type_error(what: &str) -> AdapterError {
    AdapterError::InvalidRequest(format!(
        "the chat template cannot render this request: {what} (the official DeepSeek-V3 template concatenates it as text)"
    ))
}

fn text<'a>(m: &'a Message, what: &str) -> Result<&'a str, AdapterError> {
    m.content
        .as_deref()
        .ok_or_else(|| type_error(&format!("the {what} message has no text")))
}

/// The template's `state` namespace.
#[derive(Default)]
struct State {
    is_first: bool,
    is_tool: bool,
    output_seen: bool,
}

pub fn render(request: &PromptRequest) -> Result<String, AdapterError> {
    let bos = request
        .model
        .bos_token
        .as_deref()
        .unwrap_or(BEGIN_OF_SENTENCE);
    let mut systems = Vec::new();
    for m in request.messages.iter().filter(|m| m.role == Role::System) {
        systems.push(text(m, "system")?);
    }
    let mut out = format!("{bos}{}", systems.join("\n\n"));
    let mut state = State::default();
    for m in &request.messages {
        match m.role {
            Role::System => {}
            Role::User => {
                state.is_tool = false;
                out.push_str(USER);
                out.push_str(text(m, "user")?);
            }
            Role::Assistant => match &m.content {
                None => {
                    state.is_tool = false;
                    for call in &m.tool_calls {
                        // Decoded arguments are an object (or a number, a list…): text + object
                        // fails; only arguments that decode to a string, or are no JSON, paste.
                        let arguments = match json_value(&call.arguments) {
                            serde_json::Value::String(s) => s,
                            _ => return Err(type_error("a call's arguments are not text")),
                        };
                        let call = format!(
                            "{CALL_BEGIN}function{SEP}{}\n```json\n{arguments}\n```{CALL_END}",
                            call.name
                        );
                        if state.is_first {
                            out.push('\n');
                            out.push_str(&call);
                            out.push_str(CALLS_END);
                            out.push_str(END_OF_SENTENCE);
                        } else {
                            out.push_str(ASSISTANT);
                            out.push_str(CALLS_BEGIN);
                            out.push_str(&call);
                            state.is_first = true;
                        }
                    }
                }
                Some(content) => {
                    if state.is_tool {
                        out.push_str(OUTPUTS_END);
                        state.is_tool = false;
                    } else {
                        out.push_str(ASSISTANT);
                    }
                    out.push_str(content);
                    out.push_str(END_OF_SENTENCE);
                }
            },
            Role::Tool => {
                state.is_tool = true;
                if state.output_seen {
                    out.push('\n');
                } else {
                    out.push_str(OUTPUTS_BEGIN);
                    state.output_seen = true;
                }
                out.push_str(OUTPUT_BEGIN);
                out.push_str(text(m, "tool")?);
                out.push_str(OUTPUT_END);
            }
        }
    }
    if state.is_tool {
        out.push_str(OUTPUTS_END);
    } else if request.add_generation_prompt {
        out.push_str(ASSISTANT);
    }
    Ok(out)
}
