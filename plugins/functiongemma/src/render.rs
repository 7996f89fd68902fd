//! The built-in prompt. No official FunctionGemma template was available to this project, so
//! this is written from the published description of the format and is NOT verified
//! byte for byte against Google's template (`google/functiongemma-270m-it`); a model's own
//! template, when the host passes one, is rendered instead and is exact.
//!
//! The shape, on Gemma 3's turns (`<start_of_turn>ROLE\n…<end_of_turn>\n`, text trimmed as
//! Gemma 3's template trims it):
//! - a `developer` turn first, holding the system message (or, when there is none but there
//!   are tools, the instruction FunctionGemma's documentation calls essential: "You are a model
//!   that can do function calling with the following functions"), then one
//!   `<start_function_declaration>declaration:NAME{description:…,parameters:{…}}<end_function_declaration>`
//!   per tool, the schema in FunctionGemma's syntax with keys sorted and type names upper-case;
//! - earlier calls as `<start_function_call>call:NAME{…}<end_function_call>` in the model's turn,
//!   which stays open: the results follow in it as
//!   `<start_function_response>response:NAME{…}<end_function_response>` (a result that is a
//!   JSON object is written field by field, any other as `{result:…}`), and the model's answer
//!   after them continues the same turn;
//! - `<start_of_turn>model\n` as the generation prompt, unless a model turn is still open.

use plugboard_sdk::prompt::{calls_allowed, json_value};
use plugboard_sdk::types::{AdapterError, Message, PromptRequest, Role, Tool};
use serde_json::{Map, Value};

use crate::syntax::{declared_schema, write};
use crate::{END_CALL, START_CALL};

const DEFAULT_BOS: &str = "<bos>";
/// The instruction that switches FunctionGemma to calling functions (its documentation).
pub const INSTRUCTION: &str =
    "You are a model that can do function calling with the following functions";

fn declaration(tool: &Tool) -> String {
    let mut fields = Map::new();
    if let Some(description) = &tool.description {
        fields.insert("description".into(), description.clone().into());
    }
    fields.insert(
        "parameters".into(),
        declared_schema(&json_value(&tool.parameters)),
    );
    format!(
        "<start_function_declaration>declaration:{}{}<end_function_declaration>",
        tool.name,
        write(&Value::Object(fields))
    )
}

/// The name of the tool whose result `message` is: its own, or that of the call it answers.
fn result_name(message: &Message, history: &[Message]) -> String {
    if let Some(name) = &message.name {
        return name.clone();
    }
    history
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter())
        .find(|c| c.id.is_some() && c.id == message.tool_call_id)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "tool".into())
}

fn turn(out: &mut String, role: &str, text: &str) {
    out.push_str(&format!(
        "<start_of_turn>{role}\n{}<end_of_turn>\n",
        text.trim()
    ));
}

pub fn render(request: &PromptRequest) -> Result<String, AdapterError> {
    let bos = request.model.bos_token.as_deref().unwrap_or(DEFAULT_BOS);
    let mut out = String::from(bos);
    let tools = calls_allowed(request);
    let (system, rest) = match request.messages.split_first() {
        Some((first, rest)) if first.role == Role::System => (first.content.as_deref(), rest),
        _ => (None, request.messages.as_slice()),
    };
    if system.is_some() || tools {
        let mut text = system
            .map(str::trim)
            .unwrap_or(if tools { INSTRUCTION } else { "" })
            .to_string();
        if tools {
            for tool in &request.tools {
                text.push_str(&declaration(tool));
            }
        }
        turn(&mut out, "developer", &text);
    }
    // A model turn left open for the results of its calls.
    let mut open = false;
    for (i, m) in rest.iter().enumerate() {
        let text = m.content.as_deref().unwrap_or_default();
        match m.role {
            Role::User | Role::System => {
                if open {
                    out.push_str("<end_of_turn>\n");
                    open = false;
                }
                let role = if m.role == Role::User {
                    "user"
                } else {
                    "developer"
                };
                turn(&mut out, role, text);
            }
            Role::Assistant => {
                if !open {
                    out.push_str("<start_of_turn>model\n");
                }
                out.push_str(text.trim());
                for call in &m.tool_calls {
                    let arguments = match json_value(&call.arguments) {
                        object @ Value::Object(_) => object,
                        _ => Value::Object(Map::new()),
                    };
                    out.push_str(&format!(
                        "{START_CALL}call:{}{}{END_CALL}",
                        call.name,
                        write(&arguments)
                    ));
                }
                open = !m.tool_calls.is_empty();
                if !open {
                    out.push_str("<end_of_turn>\n");
                }
            }
            Role::Tool => {
                if !open {
                    out.push_str("<start_of_turn>model\n");
                    open = true;
                }
                let value = match json_value(text) {
                    object @ Value::Object(_) => object,
                    _ => {
                        let mut wrapped = Map::new();
                        wrapped.insert("result".into(), text.into());
                        Value::Object(wrapped)
                    }
                };
                out.push_str(&format!(
                    "<start_function_response>response:{}{}<end_function_response>",
                    result_name(m, &rest[..i]),
                    write(&value)
                ));
            }
        }
    }
    if request.add_generation_prompt && !open {
        out.push_str("<start_of_turn>model\n");
    }
    Ok(out)
}
