//! The built-in prompt: what the official granite-3.3-2b-instruct chat template renders, byte
//! for byte (checked against transformers' renders in
//! `fixtures/reference-ibm-granite--granite-3.3-2b-instruct.jsonl`).
//!
//! Like the template it writes a default system message with today's date (`strftime_now`,
//! which the template variable `plugboard_now` pins) when the conversation has none, describes
//! the tools as an indented JSON list in an `available_tools` turn, and honours the template
//! variables `thinking`, `documents` and `controls`. Also like the template, earlier calls are
//! not written back (only the assistant's text is), and a message without text cannot be
//! rendered: the template fails on it, so this refuses it too, as transformers would.

use plugboard_sdk::prompt::{py_json, role_name, tool_json};
use plugboard_sdk::template::strftime_now;
use plugboard_sdk::types::{AdapterError, PromptRequest, Role};
use serde_json::Value;

const CUTOFF: &str = "Knowledge Cutoff Date: April 2024. Today's Date: ";
const IDENTITY: &str = ". You are Granite, developed by IBM.";
const WITH_TOOLS: &str = " You are a helpful assistant with access to the following tools. When a tool is required to answer the user's query, respond only with <|tool_call|> followed by a JSON list of tools used. If a tool does not exist in the provided list of tools, notify the user that you do not have the ability to fulfill the request.";
const WITH_DOCUMENTS: &str = " Write the response to the user's input by strictly aligning with the facts in the provided documents. If the information needed to answer the question is not available in the documents, inform the user that the question cannot be answered based on the available data.";
const THINKING: &str = " You are a helpful AI assistant.\nRespond to every user query in a comprehensive and detailed way. You can write down your thoughts and reasoning process before responding. In the thought process, engage in a comprehensive cycle of analysis, summarization, exploration, reassessment, reflection, backtracing, and iteration to develop well-considered thinking process. In the response section, based on various attempts, explorations, and reflections from the thoughts section, systematically present the final solution that you deem correct. The response should summarize the thought process. Write your thoughts between <think></think> and write your response between <response></response> for each user query.";
const PLAIN: &str = " You are a helpful AI assistant.";
const CITATIONS: &str = "\nUse the symbols <|start_of_cite|> and <|end_of_cite|> to indicate when a fact comes from a document in the search result, e.g <|start_of_cite|> {document_id: 1}my fact <|end_of_cite|> for a fact from document 1. Afterwards, list all the citations with their corresponding documents in an ordered list.";
const HALLUCINATIONS: &str = "\nFinally, after the response is written, include a numbered list of sentences from the response with a corresponding risk value that are hallucinated and not based in the documents.";

/// A template variable's value, if the request sets it.
fn variable(request: &PromptRequest, name: &str) -> Option<Value> {
    request
        .template_variables
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, text)| serde_json::from_str(text).ok())
}

/// Jinja's truth of a value (`{% if value %}`).
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// Jinja's `needle in value`.
fn contains(value: Option<&Value>, needle: &str) -> bool {
    match value {
        Some(Value::Object(o)) => o.contains_key(needle),
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(needle)),
        Some(Value::String(s)) => s.contains(needle),
        _ => false,
    }
}

/// What Python's `str()` prints for a JSON value (containers aside, which it prints in its own
/// syntax; JSON is close enough for a document id).
fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => py_json(other, None),
    }
}

fn cannot_render(what: &str) -> AdapterError {
    AdapterError::InvalidRequest(format!(
        "the chat template cannot render this request: {what} has no text (the official Granite template concatenates it: can only concatenate str (not \"NoneType\") to str)"
    ))
}

pub fn render(request: &PromptRequest) -> Result<String, AdapterError> {
    let tools = !request.tools.is_empty();
    let documents = variable(request, "documents");
    let has_documents = truthy(documents.as_ref());
    let controls = variable(request, "controls");
    let (system, messages) = match request.messages.split_first() {
        Some((first, rest)) if first.role == Role::System => (
            first
                .content
                .clone()
                .ok_or_else(|| cannot_render("the system message"))?,
            rest,
        ),
        _ => {
            // `plugboard_now` pins the date exactly as it pins a model's own template.
            let today = strftime_now(request, "%B %d, %Y")?;
            let mut system = format!("{CUTOFF}{today}{IDENTITY}");
            system.push_str(match (tools, has_documents) {
                (true, true) => "",
                (true, false) => WITH_TOOLS,
                (false, true) => WITH_DOCUMENTS,
                (false, false) if truthy(variable(request, "thinking").as_ref()) => THINKING,
                (false, false) => PLAIN,
            });
            if tools && has_documents {
                system.push_str(WITH_TOOLS);
                system.push_str(WITH_DOCUMENTS);
            }
            if has_documents && contains(controls.as_ref(), "citations") {
                system.push_str(CITATIONS);
            }
            if has_documents && contains(controls.as_ref(), "hallucinations") {
                system.push_str(HALLUCINATIONS);
            }
            (system, request.messages.as_slice())
        }
    };
    let mut out = format!("<|start_of_role|>system<|end_of_role|>{system}<|end_of_text|>\n");
    if tools {
        let list = Value::Array(request.tools.iter().map(tool_json).collect());
        out.push_str("<|start_of_role|>available_tools<|end_of_role|>");
        out.push_str(&py_json(&list, Some(4)));
        out.push_str("<|end_of_text|>\n");
    }
    if let Some(Value::Array(docs)) = documents.as_ref().filter(|_| has_documents) {
        for doc in docs {
            let id = doc.get("doc_id").map(py_str).unwrap_or_default();
            let text = doc.get("text").map(py_str).unwrap_or_default();
            out.push_str(&format!(
                "<|start_of_role|>document {{\"document_id\": \"{id}\"}}<|end_of_role|>\n{text}<|end_of_text|>\n"
            ));
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let role = role_name(m.role);
        let content = m
            .content
            .as_deref()
            .ok_or_else(|| cannot_render(&format!("the {role} message")))?;
        out.push_str(&format!(
            "<|start_of_role|>{role}<|end_of_role|>{content}<|end_of_text|>\n"
        ));
        if i + 1 == messages.len() && request.add_generation_prompt {
            out.push_str("<|start_of_role|>assistant");
            if let Some(controls) = controls.as_ref().filter(|c| truthy(Some(c))) {
                out.push(' ');
                out.push_str(&py_json(controls, None));
            }
            out.push_str("<|end_of_role|>");
        }
    }
    Ok(out)
}
