//! Pieces for building prompts: ChatML, tool descriptions in OpenAI's JSON shape, and the
//! arguments of earlier calls as JSON values.

use crate::types::{Message, Role, Tool};

/// The role's name as chat templates write it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// Renders messages in ChatML: `<|im_start|>ROLE\nTEXT<|im_end|>\n` each, then
/// `<|im_start|>assistant\n` when `add_generation_prompt`. `system`, when given, replaces the
/// conversation's system message (or comes first if there is none).
///
/// Messages are rendered as text only: a family that writes calls or tool results in its own
/// way converts those messages to text first (see the `tool-use` adapter).
pub fn chatml(messages: &[Message], system: Option<&str>, add_generation_prompt: bool) -> String {
    let mut out = String::new();
    let mut rest = messages;
    if let Some(first) = messages.first()
        && first.role == Role::System
        && system.is_some()
    {
        rest = &messages[1..];
    }
    if let Some(system) = system {
        push_chatml(&mut out, "system", system);
    }
    for m in rest {
        push_chatml(
            &mut out,
            role_name(m.role),
            m.content.as_deref().unwrap_or(""),
        );
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

fn push_chatml(out: &mut String, role: &str, text: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(text);
    out.push_str("<|im_end|>\n");
}

/// A JSON value from text, or the text as a JSON string when it is not JSON.
pub fn json_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// A tool in OpenAI's shape, `{"type": "function", "function": {"name", "description",
/// "parameters"}}`, keys in that order and the schema's keys as the client wrote them: the
/// shape chat templates expect.
pub fn tool_json(tool: &Tool) -> serde_json::Value {
    let mut function = serde_json::Map::new();
    function.insert("name".into(), tool.name.clone().into());
    if let Some(description) = &tool.description {
        function.insert("description".into(), description.clone().into());
    }
    function.insert("parameters".into(), json_value(&tool.parameters));
    let mut outer = serde_json::Map::new();
    outer.insert("type".into(), "function".into());
    outer.insert("function".into(), function.into());
    outer.into()
}

/// Tools as JSON text in OpenAI's shape, one per line.
pub fn tools_json_lines(tools: &[Tool]) -> String {
    tools
        .iter()
        .map(|t| tool_json(t).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
