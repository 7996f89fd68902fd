//! The official Llama 3.x chat templates, written out in Rust so that a prompt renders without
//! a template engine: byte for byte what transformers renders from them, quirks included
//! (checked against transformers' renders in the `llama3` and `pythonic` adapters' fixtures).
//!
//! Llama 3.1's template (Llama 3.3's is the same text) and Llama 3.2's are one template but for
//! what [`Llama3Template`] names: the date a prompt shows by default, and whether built-in tools
//! exist. What they share:
//!
//! - the system turn always comes, with the knowledge cutoff and today's date (the template
//!   variable `date_string` changes it);
//! - tools go into the *first user message* by default (`tools_in_user_message`, default true),
//!   each as `tojson(indent=4)`, else into the system turn; `custom_tools` replaces the
//!   request's tools;
//! - message text is trimmed (Jinja's `trim`, Python's `str.strip`);
//! - an assistant turn with calls renders only its single call as JSON — the text is dropped,
//!   and several calls are refused, as the template refuses them;
//! - tool results go into an `ipython` turn as a JSON string (`tojson` of the text).

use serde_json::Value;

use super::strftime_now;
use crate::prompt::{json_value, py_json, role_name, tool_json};
use crate::types::{AdapterError, Message, PromptRequest, Role};

const DEFAULT_BOS: &str = "<|begin_of_text|>";
const EOT: &str = "<|eot_id|>";
const EOM: &str = "<|eom_id|>";

const FORMAT: &str = "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n";

/// What differs between the official Llama 3.x templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Llama3Template {
    /// The date the system turn shows when the request gives no `date_string`.
    pub default_date: DefaultDate,
    /// Whether the template knows built-in tools: then `builtin_tools` (e.g. `["brave_search",
    /// "wolfram_alpha"]`) adds the `Tools:` line and renders calls of those tools as
    /// `<|python_tag|>name.call(…)`, each call turn then ending in `<|eom_id|>`.
    pub builtin_tools: bool,
}

/// The date a Llama 3.x prompt shows by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultDate {
    /// Always this date: the template reads no clock.
    Fixed(&'static str),
    /// Today's, `strftime_now("%d %b %Y")` as transformers defines it, which the template
    /// variable `plugboard_now` pins exactly as it pins a model's own template
    /// ([`strftime_now`]).
    Today,
}

impl Llama3Template {
    /// Llama 3.1's template (Llama-3.1-8B-Instruct; Llama 3.3's is the same text).
    pub const LLAMA_3_1: Llama3Template = Llama3Template {
        default_date: DefaultDate::Fixed("26 Jul 2024"),
        builtin_tools: true,
    };

    /// Llama 3.2's template (Llama-3.2-3B-Instruct).
    pub const LLAMA_3_2: Llama3Template = Llama3Template {
        default_date: DefaultDate::Today,
        builtin_tools: false,
    };

    /// Renders `request` as the template does.
    pub fn render(&self, request: &PromptRequest) -> Result<String, AdapterError> {
        let date = match (variable(request, "date_string"), self.default_date) {
            (Some(Value::String(date)), _) => date,
            (_, DefaultDate::Fixed(date)) => date.to_string(),
            (_, DefaultDate::Today) => strftime_now(request, "%d %b %Y")?,
        };
        let tools_in_user_message = !matches!(
            variable(request, "tools_in_user_message"),
            Some(Value::Bool(false))
        );
        let builtin_tools = if self.builtin_tools {
            string_list(variable(request, "builtin_tools"))
        } else {
            None
        };
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
        if builtin_tools.is_some() || tools.is_some() {
            out.push_str("Environment: ipython\n");
        }
        if let Some(builtin) = &builtin_tools {
            let listed: Vec<&str> = builtin
                .iter()
                .map(String::as_str)
                .filter(|t| *t != "code_interpreter")
                .collect();
            out.push_str("Tools: ");
            out.push_str(&listed.join(", "));
            out.push_str("\n\n");
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
                let arguments = json_value(&call.arguments);
                match &builtin_tools {
                    Some(builtin) if builtin.contains(&call.name) => {
                        out.push_str("<|python_tag|>");
                        out.push_str(&call.name);
                        out.push_str(".call(");
                        let pairs = arguments.as_object().into_iter().flatten();
                        let mut written = Vec::new();
                        for (name, value) in pairs {
                            // The template concatenates the value as a string.
                            let Value::String(value) = value else {
                                return Err(AdapterError::InvalidRequest(format!(
                                    "the built-in tool call {}: argument '{name}' is not a string",
                                    call.name
                                )));
                            };
                            written.push(format!("{name}=\"{value}\""));
                        }
                        out.push_str(&written.join(", "));
                        out.push(')');
                    }
                    _ => {
                        out.push_str("{\"name\": \"");
                        out.push_str(&call.name);
                        out.push_str("\", \"parameters\": ");
                        out.push_str(&py_json(&arguments, None));
                        out.push('}');
                    }
                }
                out.push_str(if builtin_tools.is_some() { EOM } else { EOT });
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
}

/// Jinja's `trim`, which is Python's `str.strip()`: its whitespace is Unicode's plus the
/// four ASCII separators 0x1C–0x1F.
fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// A message's text as the template prints it: Python's `str(None)` when there is none.
fn text(message: &Message) -> &str {
    message.content.as_deref().unwrap_or("None")
}

/// A template variable, decoded from its JSON text.
fn variable(request: &PromptRequest, name: &str) -> Option<Value> {
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

fn string_list(value: Option<Value>) -> Option<Vec<String>> {
    match value? {
        Value::Array(items) => Some(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        _ => None,
    }
}
