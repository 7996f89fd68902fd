//! The variables a chat template sees: the request in the shape transformers hands to templates
//! when it serves an OpenAI-style request.

use minijinja::value::Value;

use super::python;
use crate::prompt::{json_value, role_name, tool_json};
use crate::types::{Message, PromptRequest, ToolCall};

/// A JSON value as a template value; objects keep their key order.
pub fn value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => python::none(),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(value).collect(),
        serde_json::Value::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), value(v))))
        }
    }
}

/// `{"id"?, "type": "function", "function": {"name", "arguments": {…}}}`: arguments as an
/// object, decoded from their JSON text, since that is what chat templates expect (transformers'
/// documentation; vLLM decodes them too). Text that is not JSON stays a string.
fn tool_call(call: &ToolCall) -> Value {
    let function = Value::from_pairs([
        ("name", Value::from(call.name.as_str())),
        ("arguments", value(&json_value(&call.arguments))),
    ]);
    let mut entries = Vec::new();
    if let Some(id) = &call.id {
        entries.push(("id", Value::from(id.as_str())));
    }
    entries.push(("type", Value::from("function")));
    entries.push(("function", function));
    Value::from_pairs(entries)
}

/// An OpenAI-shaped message. `content` is always there (`None` for an assistant turn that only
/// calls tools, as clients send it); the other keys only when set, so that a template's
/// `message.tool_calls is defined` or `'tool_calls' in message` sees what a client sent.
fn message(m: &Message) -> Value {
    let mut entries = vec![
        ("role", Value::from(role_name(m.role))),
        (
            "content",
            m.content.as_deref().map_or_else(python::none, Value::from),
        ),
    ];
    if let Some(reasoning) = &m.reasoning {
        entries.push(("reasoning_content", Value::from(reasoning.as_str())));
    }
    if !m.tool_calls.is_empty() {
        entries.push(("tool_calls", m.tool_calls.iter().map(tool_call).collect()));
    }
    if let Some(id) = &m.tool_call_id {
        entries.push(("tool_call_id", Value::from(id.as_str())));
    }
    if let Some(name) = &m.name {
        entries.push(("name", Value::from(name.as_str())));
    }
    Value::from_pairs(entries)
}

/// Every variable of the render, in transformers' order: `messages`, `tools` (none without
/// tools), `documents` (none), `add_generation_prompt`, the special tokens the model has, then
/// the request's template variables, which override any of these.
pub fn variables(request: &PromptRequest) -> Vec<(String, Value)> {
    let tools = if request.tools.is_empty() {
        python::none()
    } else {
        request.tools.iter().map(|t| value(&tool_json(t))).collect()
    };
    let mut vars = vec![
        (
            "messages".to_string(),
            request.messages.iter().map(message).collect(),
        ),
        ("tools".to_string(), tools),
        ("documents".to_string(), python::none()),
        (
            "add_generation_prompt".to_string(),
            Value::from(request.add_generation_prompt),
        ),
    ];
    // A token the tokenizer lacks is not defined at all, as in transformers'
    // `special_tokens_map`, so `bos_token is defined` tells.
    if let Some(bos) = &request.model.bos_token {
        vars.push(("bos_token".to_string(), Value::from(bos.as_str())));
    }
    if let Some(eos) = &request.model.eos_token {
        vars.push(("eos_token".to_string(), Value::from(eos.as_str())));
    }
    for (name, text) in &request.template_variables {
        let v = value(&json_value(text));
        match vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => vars.push((name.clone(), v)),
        }
    }
    vars
}
