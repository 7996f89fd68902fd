//! The built-in prompt: what the official Mistral-7B-Instruct-v0.3 chat template renders, byte
//! for byte (checked against references rendered by transformers, see
//! `fixtures/reference-mistralai--Mistral-7B-Instruct-v0.3.jsonl`), including its quirks:
//!
//! - the system message goes in front of the *last* user message only when that message is
//!   the conversation's last one (otherwise the template drops it);
//! - the tools are described before every user message equal to the last one;
//! - tool results are written unquoted into `{"content": …}`;
//! - an assistant turn with calls renders only the calls, not its text.
//!
//! Where the template would fail on what an OpenAI client sends, it does something sensible
//! instead: ids are mapped to 9 characters beforehand (see `ids`), and an assistant turn with no
//! text renders as empty rather than as "None".

use plugboard_sdk::prompt::{json_value, py_json};
use plugboard_sdk::types::{AdapterError, Message, PromptRequest, Role, Tool};

const DEFAULT_BOS: &str = "<s>";

fn refuse(message: &str) -> AdapterError {
    AdapterError::InvalidRequest(message.to_string())
}

/// `[AVAILABLE_TOOLS] [{…}, …][/AVAILABLE_TOOLS]`, each tool written the template's way: string
/// fields pasted in quotes as they are, other fields as JSON.
fn available_tools(tools: &[Tool]) -> String {
    let described: Vec<String> = tools
        .iter()
        .map(|tool| {
            let mut fields = vec![format!("\"name\": \"{}\"", tool.name)];
            if let Some(description) = &tool.description {
                fields.push(format!("\"description\": \"{description}\""));
            }
            let parameters = match json_value(&tool.parameters) {
                serde_json::Value::String(text) => format!("\"{text}\""),
                schema => py_json(&schema, None),
            };
            fields.push(format!("\"parameters\": {parameters}"));
            format!(
                "{{\"type\": \"function\", \"function\": {{{}}}}}",
                fields.join(", ")
            )
        })
        .collect();
    format!(
        "[AVAILABLE_TOOLS] [{}][/AVAILABLE_TOOLS]",
        described.join(", ")
    )
}

/// `[TOOL_CALLS] [{"name": …, "arguments": {…}, "id": "…"}, …]`.
fn tool_calls(message: &Message, eos: &str) -> String {
    let calls: Vec<String> = message
        .tool_calls
        .iter()
        .map(|call| {
            let mut function = serde_json::Map::new();
            function.insert("name".into(), call.name.clone().into());
            function.insert("arguments".into(), json_value(&call.arguments));
            let function = py_json(&function.into(), None);
            // The template cuts the closing brace off the function's JSON to add the id.
            let open = function.strip_suffix('}').unwrap_or(&function);
            format!(
                "{open}, \"id\": \"{}\"}}",
                call.id.as_deref().unwrap_or_default()
            )
        })
        .collect();
    format!("[TOOL_CALLS] [{}]{eos}", calls.join(", "))
}

/// Mirrors the template's check: after the optional system message, the messages that are
/// neither tool results nor calls alternate user, assistant, user, …
fn check_alternation(messages: &[Message]) -> Result<(), AdapterError> {
    let mut index = 0usize;
    for m in messages {
        if m.role == Role::Tool || !m.tool_calls.is_empty() {
            continue;
        }
        if (m.role == Role::User) != index.is_multiple_of(2) {
            return Err(refuse(
                "After the optional system message, conversation roles must alternate user/assistant/user/assistant/...",
            ));
        }
        index += 1;
    }
    Ok(())
}

/// Renders the request as the v0.3 template does. Ids must already be in Mistral's form.
pub fn render(request: &PromptRequest) -> Result<String, AdapterError> {
    let bos = request.model.bos_token.as_deref().unwrap_or(DEFAULT_BOS);
    let eos = request
        .model
        .eos_token
        .as_deref()
        .unwrap_or(crate::END_OF_TURN);
    let (system, messages) = match request.messages.split_first() {
        Some((first, rest)) if first.role == Role::System => {
            (Some(first.content.as_deref().unwrap_or_default()), rest)
        }
        _ => (None, request.messages.as_slice()),
    };
    check_alternation(messages)?;
    let last_user = messages.iter().rfind(|m| m.role == Role::User);
    let mut out = String::from(bos);
    for (i, m) in messages.iter().enumerate() {
        let content = m.content.as_deref().unwrap_or_default();
        match m.role {
            Role::User => {
                if !request.tools.is_empty() && Some(m) == last_user {
                    out.push_str(&available_tools(&request.tools));
                }
                match system {
                    Some(system) if i + 1 == messages.len() => {
                        out.push_str(&format!("[INST] {system}\n\n{content}[/INST]"))
                    }
                    _ => out.push_str(&format!("[INST] {content}[/INST]")),
                }
            }
            _ if !m.tool_calls.is_empty() => out.push_str(&tool_calls(m, eos)),
            Role::Assistant => out.push_str(&format!(" {}{eos}", content.trim())),
            Role::Tool => out.push_str(&format!(
                "[TOOL_RESULTS] {{\"content\": {content}, \"call_id\": \"{}\"}}[/TOOL_RESULTS]",
                m.tool_call_id.as_deref().unwrap_or_default()
            )),
            Role::System => {
                return Err(refuse(
                    "Only user and assistant roles are supported, with the exception of an initial optional system message!",
                ));
            }
        }
    }
    Ok(out)
}
