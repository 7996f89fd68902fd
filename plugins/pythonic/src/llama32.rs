//! The official Llama 3.2 chat template (Llama-3.2-3B-Instruct), written out in Rust: byte for
//! byte what transformers renders from it, including its quirks:
//!
//! - the system turn always comes, with the knowledge cutoff and today's date: the template
//!   variable `date_string` if given, else `strftime_now("%d %b %Y")` as transformers defines
//!   it (through the SDK's template engine, so the template variable `plugboard_now` pins it
//!   exactly as it pins a model's own template);
//! - tools go into the *first user message* by default (`tools_in_user_message`, default true),
//!   each as `tojson(indent=4)`, else into the system turn; `custom_tools` replaces them;
//! - message text is trimmed (Jinja's `trim`, Python's `str.strip`);
//! - an assistant turn with calls renders only its single call as JSON — the text is dropped,
//!   and several calls are refused, as the template refuses them;
//! - tool results go into an `ipython` turn as a JSON string (`tojson` of the text).

use plugboard_sdk::prompt::{json_value, py_json, role_name, tool_json};
use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::{AdapterError, Message, PromptRequest, Role};
use serde_json::Value;

const DEFAULT_BOS: &str = "<|begin_of_text|>";
const EOT: &str = "<|eot_id|>";

const FORMAT: &str = "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n";

/// Jinja's `trim`, which is Python's `str.strip()`: its whitespace is Unicode's plus the
/// four ASCII separators 0x1C–0x1F.
pub fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// A message's text as the template prints it: Python's `str(None)` when there is none.
fn text(message: &Message) -> &str {
    message.content.as_deref().unwrap_or("None")
}

/// A template variable, decoded from its JSON text.
pub fn variable(request: &PromptRequest, name: &str) -> Option<Value> {
    request
        .template_variables
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| json_value(v))
}

fn header(out: &mut String, role: &str) {
    out.push_str("<|start_header_id|>");
    out.push_str(role);
    out.push_str("<|end_header_id|>\n\n");
}

fn push_tools(out: &mut String, tools: &[Value]) {
    for tool in tools {
        out.push_str(&py_json(tool, Some(4)));
        out.push_str("\n\n");
    }
}

/// Renders `request` as the Llama 3.2 template does.
pub fn render(request: &PromptRequest) -> Result<String, AdapterError> {
    let date = match variable(request, "date_string") {
        Some(Value::String(date)) => date,
        _ => render_chat_template("{{ strftime_now('%d %b %Y') }}", request)?,
    };
    let tools_in_user_message = !matches!(
        variable(request, "tools_in_user_message"),
        Some(Value::Bool(false))
    );
    let tools: Option<Vec<Value>> = match variable(request, "custom_tools") {
        Some(Value::Array(custom)) => Some(custom),
        _ if request.tools.is_empty() => None,
        _ => Some(request.tools.iter().map(tool_json).collect()),
    };

    let mut out = String::new();
    out.push_str(request.model.bos_token.as_deref().unwrap_or(DEFAULT_BOS));
    let (system, mut messages) = match request.messages.split_first() {
        Some((first, rest)) if first.role == Role::System => (py_strip(text(first)), rest),
        _ => ("", request.messages.as_slice()),
    };

    header(&mut out, "system");
    if tools.is_some() {
        out.push_str("Environment: ipython\n");
    }
    out.push_str("Cutting Knowledge Date: December 2023\n");
    out.push_str("Today Date: ");
    out.push_str(&date);
    out.push_str("\n\n");
    if let Some(tools) = &tools
        && !tools_in_user_message
    {
        out.push_str("You have access to the following functions. To call a function, please respond with JSON for a function call.");
        out.push_str(FORMAT);
        push_tools(&mut out, tools);
    }
    out.push_str(system);
    out.push_str(EOT);

    if let Some(tools) = &tools
        && tools_in_user_message
    {
        let Some((first, rest)) = messages.split_first() else {
            return Err(AdapterError::InvalidRequest(
                "Cannot put tools in the first user message when there's no first user message!"
                    .into(),
            ));
        };
        messages = rest;
        header(&mut out, "user");
        out.push_str("Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n");
        out.push_str(FORMAT);
        push_tools(&mut out, tools);
        out.push_str(py_strip(text(first)));
        out.push_str(EOT);
    }

    for message in messages {
        if !message.tool_calls.is_empty() {
            let [call] = message.tool_calls.as_slice() else {
                return Err(AdapterError::InvalidRequest(
                    "This model only supports single tool-calls at once!".into(),
                ));
            };
            header(&mut out, "assistant");
            out.push_str("{\"name\": \"");
            out.push_str(&call.name);
            out.push_str("\", \"parameters\": ");
            out.push_str(&py_json(&json_value(&call.arguments), None));
            out.push('}');
            out.push_str(EOT);
        } else if message.role == Role::Tool {
            header(&mut out, "ipython");
            // Text is iterable in Jinja, so the template writes it with `tojson`.
            out.push_str(&py_json(&Value::String(text(message).to_string()), None));
            out.push_str(EOT);
        } else {
            header(&mut out, role_name(message.role));
            out.push_str(py_strip(text(message)));
            out.push_str(EOT);
        }
    }
    if request.add_generation_prompt {
        header(&mut out, "assistant");
    }
    Ok(out)
}
