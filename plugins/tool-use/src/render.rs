//! The prompt: the conversation in ChatML, with the tools and the call format taught in the
//! system message, earlier calls written back as `<tool_use>` blocks and tool results as
//! `<tool_result>` blocks in a user turn (a model without tool support knows no `tool` role).

use plugboard_sdk::prompt::{self, json_value};
use plugboard_sdk::types::*;

use crate::{CLOSE, MARKERS, OPEN};

/// The instruction that teaches the call format.
fn instruction(request: &PromptRequest) -> String {
    let mut text =
        String::from("You can call the following tools. Each is described by a JSON object:\n");
    text.push_str(&prompt::tools_json_lines(&request.tools));
    text.push_str(&format!(
        "\n\nWhen you need a tool, answer with a block in exactly this form and wait for its result:\n{OPEN}\ntool_name: NAME\narguments: {{JSON object with the arguments}}\n{CLOSE}\n"
    ));
    match &request.tool_choice {
        ToolChoice::Required => text.push_str("You must call at least one tool now.\n"),
        ToolChoice::Function(name) => {
            text.push_str(&format!("You must call the tool {name} now.\n"))
        }
        ToolChoice::Auto | ToolChoice::None => {
            text.push_str("If no tool is needed, answer normally without a block.\n")
        }
    }
    if request.parallel_tool_calls {
        text.push_str("To call several tools at once, write one block per call.");
    } else {
        text.push_str("Call at most one tool per answer.");
    }
    text
}

/// An assistant turn with its calls written as blocks.
fn assistant_text(message: &Message) -> String {
    let mut text = message.content.clone().unwrap_or_default();
    for call in &message.tool_calls {
        if !text.is_empty() {
            text.push('\n');
        }
        let arguments = json_value(&call.arguments);
        text.push_str(&format!(
            "{OPEN}\ntool_name: {}\narguments: {arguments}\n{CLOSE}",
            call.name
        ));
    }
    text
}

/// The name of the tool whose result `message` is: its own name, or the name of the call it
/// answers.
fn tool_name_of(message: &Message, history: &[Message]) -> String {
    if let Some(name) = &message.name {
        return name.clone();
    }
    let id = message.tool_call_id.as_deref();
    history
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter())
        .find(|c| id.is_some() && c.id.as_deref() == id)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "tool".to_string())
}

pub fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
    let with_tools = prompt::calls_allowed(&request);
    if let ToolChoice::Function(name) = &request.tool_choice
        && !request.tools.iter().any(|t| &t.name == name)
    {
        return Err(AdapterError::InvalidRequest(format!(
            "tool_choice names the function '{name}', which is not among the tools"
        )));
    }
    let mut messages: Vec<Message> = Vec::new();
    let (system, rest) = match request.messages.split_first() {
        Some((first, rest)) if first.role == Role::System => {
            (first.content.clone().unwrap_or_default(), rest)
        }
        _ => (String::new(), request.messages.as_slice()),
    };
    let system = match (system.is_empty(), with_tools) {
        (_, false) => system,
        (true, true) => instruction(&request),
        (false, true) => format!("{system}\n\n{}", instruction(&request)),
    };
    if !system.is_empty() {
        messages.push(text_message(Role::System, system));
    }
    for (i, message) in rest.iter().enumerate() {
        match message.role {
            Role::Assistant => {
                messages.push(text_message(Role::Assistant, assistant_text(message)))
            }
            Role::Tool => {
                let block = format!(
                    "<tool_result>\ntool_name: {}\nresult: {}\n</tool_result>",
                    tool_name_of(message, &rest[..i]),
                    message.content.as_deref().unwrap_or("")
                );
                // Consecutive results share one user turn.
                match messages.last_mut() {
                    Some(last) if i > 0 && rest[i - 1].role == Role::Tool => {
                        let content = last.content.get_or_insert_with(String::new);
                        content.push('\n');
                        content.push_str(&block);
                    }
                    _ => messages.push(text_message(Role::User, block)),
                }
            }
            Role::System | Role::User => messages.push(message.clone()),
        }
    }
    let text = prompt::chatml(&messages, None, request.add_generation_prompt);
    let mut rendered = MARKERS.prompt(text, &request);
    // The prompt never opens reasoning: a `<think>` left open in a message's text is not where
    // the output starts.
    rendered.reasoning_open = false;
    Ok(rendered)
}

fn text_message(role: Role, content: String) -> Message {
    Message {
        role,
        content: Some(content),
        reasoning: None,
        tool_calls: vec![],
        tool_call_id: None,
        name: None,
    }
}
