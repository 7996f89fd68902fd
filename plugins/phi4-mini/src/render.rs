//! The built-in prompt: the official Phi-4-mini-instruct chat template's output, with the tools
//! on the system message where that template reads them (`message["tools"]`), as the model card
//! shows: a JSON list of the functions (`{"name", "description", "parameters"}`), written by
//! Python's `json.dumps` (ASCII only, its default). A conversation without a system message gets an empty one to carry
//! them. With `tool_choice: none` the tools are left out.
//!
//! Otherwise byte for byte what the template renders (checked against transformers' renders in
//! `fixtures/reference-microsoft--Phi-4-mini-instruct.jsonl`): `<|role|>text<|end|>` per message,
//! then `<|assistant|>`, or the EOS token without a generation prompt. Like the template, it
//! writes only an assistant's text, not its earlier calls, and refuses a message without text
//! (the template fails on it).

use plugboard_sdk::prompt::{calls_allowed, json_value, py_json, role_name};
use plugboard_sdk::types::{AdapterError, PromptRequest, Role, Tool};
use serde_json::Value;

/// The tools as the model card writes them into the system message.
fn tools_text(tools: &[Tool]) -> String {
    let list = tools
        .iter()
        .map(|tool| {
            let mut function = serde_json::Map::new();
            function.insert("name".into(), tool.name.clone().into());
            if let Some(description) = &tool.description {
                function.insert("description".into(), description.clone().into());
            }
            function.insert("parameters".into(), json_value(&tool.parameters));
            Value::Object(function)
        })
        .collect();
    ascii_only(&py_json(&Value::Array(list), None))
}

/// JSON text with every character beyond ASCII written as `\uXXXX` (UTF-16, as Python's
/// `json.dumps` does by default). Such characters only occur inside strings, so this is safe.
fn ascii_only(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

pub fn render(request: &PromptRequest) -> Result<String, AdapterError> {
    let tools = calls_allowed(request).then(|| tools_text(&request.tools));
    let mut out = String::new();
    let starts_with_system = request
        .messages
        .first()
        .is_some_and(|m| m.role == Role::System);
    if let Some(tools) = &tools
        && !starts_with_system
    {
        out.push_str(&format!("<|system|><|tool|>{tools}<|/tool|><|end|>"));
    }
    for (i, m) in request.messages.iter().enumerate() {
        let role = role_name(m.role);
        let content = m.content.as_deref().ok_or_else(|| {
            AdapterError::InvalidRequest(format!(
                "the chat template cannot render this request: the {role} message has no text (the official Phi-4-mini template concatenates it: can only concatenate str (not \"NoneType\") to str)"
            ))
        })?;
        match &tools {
            Some(tools) if i == 0 && m.role == Role::System => out.push_str(&format!(
                "<|system|>{content}<|tool|>{tools}<|/tool|><|end|>"
            )),
            _ => out.push_str(&format!("<|{role}|>{content}<|end|>")),
        }
    }
    if request.add_generation_prompt {
        out.push_str("<|assistant|>");
    } else {
        out.push_str(
            request
                .model
                .eos_token
                .as_deref()
                .unwrap_or(crate::END_OF_TURN[1]),
        );
    }
    Ok(out)
}
