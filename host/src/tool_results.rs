//! A conversation that ends with tool results, rendered so that a small model answers from them.
//!
//! Shown the family's own rendering — its tool section, its call, the results in the family's
//! tags — a small model writes the same call again instead of answering (Qwen2.5-Coder 0.5B: 8
//! conversations of 8, whatever instruction is added to the system prompt or the results'
//! turn). Shown the question with the calls and their results written under it as facts, and
//! no tool section, it answers (8 of 8; `tests/clients/after_results_client.py`, figures in the
//! README). Only the prompt changes: the request's tools still go to the parser and the
//! checks, so a call the model writes anyway is still read as one.

use crate::adapter::{PromptRequest, Role, ToolChoice};

/// The request to render instead of `request`, or `None` when the conversation does not end
/// with tool results or the caller asks for a call (`tool_choice` other than `auto`).
///
/// The exchange since the last user message (the assistant's calls and the tools' results, in
/// one round or several) becomes lines under that message, `name(arguments) returned: result`;
/// the tools are not rendered.
pub fn answer_prompt(request: &PromptRequest) -> Option<PromptRequest> {
    if request.tool_choice != ToolChoice::Auto
        || request.messages.last().map(|m| m.role) != Some(Role::Tool)
    {
        return None;
    }
    let question = request
        .messages
        .iter()
        .rposition(|m| m.role == Role::User)?;
    let exchange = &request.messages[question + 1..];
    // Only calls and their results: prose from the assistant in between is kept by the normal
    // rendering, which this one would lose.
    if exchange.iter().any(|m| {
        m.role != Role::Tool
            && !(m.role == Role::Assistant
                && !m.tool_calls.is_empty()
                && m.content.as_deref().unwrap_or("").trim().is_empty())
    }) {
        return None;
    }
    let mut facts = Vec::new();
    let mut calls = Vec::new();
    for message in exchange {
        match message.role {
            Role::Assistant => calls.extend(message.tool_calls.iter()),
            _ => {
                // A result names its call by id, or else follows the calls in order.
                let call = match &message.tool_call_id {
                    Some(id) => calls
                        .iter()
                        .position(|c| c.id.as_deref() == Some(id.as_str())),
                    None => (!calls.is_empty()).then_some(0),
                }
                .map(|i| calls.remove(i));
                let name = call
                    .map(|c| format!("{}({})", c.name, c.arguments.trim()))
                    .or_else(|| message.name.clone())
                    .unwrap_or_else(|| "A tool".into());
                let result = message.content.as_deref().unwrap_or("").trim();
                facts.push(format!("{name} returned: {result}"));
            }
        }
    }
    let mut messages = request.messages[..=question].to_vec();
    let asked = messages.last_mut().expect("the question");
    let content = asked.content.get_or_insert_with(String::new);
    content.push_str("\n\nTool results:\n");
    content.push_str(&facts.join("\n"));
    Some(PromptRequest {
        messages,
        tools: Vec::new(),
        tool_choice: ToolChoice::None,
        ..request.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{Message, ModelConfig, Tool, ToolCall};

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: Some(id.into()),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn calls(calls: Vec<ToolCall>) -> Message {
        Message {
            tool_calls: calls,
            ..Message::text(Role::Assistant, "")
        }
    }

    fn result(id: Option<&str>, content: &str) -> Message {
        Message {
            tool_call_id: id.map(str::to_string),
            ..Message::text(Role::Tool, content)
        }
    }

    fn request(messages: Vec<Message>) -> PromptRequest {
        PromptRequest {
            messages,
            tools: vec![Tool {
                name: "get_weather".into(),
                description: None,
                parameters: "{}".into(),
            }],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            add_generation_prompt: true,
            model: ModelConfig::default(),
            template_variables: Vec::new(),
        }
    }

    #[test]
    fn results_become_facts_under_the_question_and_the_tools_go() {
        let r = request(vec![
            Message::text(Role::System, "Be brief."),
            Message::text(Role::User, "Weather in Oslo and Rome?"),
            calls(vec![
                call("a", "get_weather", r#"{"city": "Oslo"}"#),
                call("b", "get_weather", r#"{"city": "Rome"}"#),
            ]),
            // Out of order, matched by id.
            result(Some("b"), "15 C"),
            result(Some("a"), " -2 C\n"),
        ]);
        let folded = answer_prompt(&r).expect("folded");
        assert!(folded.tools.is_empty());
        assert_eq!(folded.tool_choice, ToolChoice::None);
        assert_eq!(folded.messages.len(), 2);
        assert_eq!(folded.messages[0], r.messages[0]);
        assert_eq!(
            folded.messages[1].content.as_deref(),
            Some(
                "Weather in Oslo and Rome?\n\nTool results:\n\
                 get_weather({\"city\": \"Rome\"}) returned: 15 C\n\
                 get_weather({\"city\": \"Oslo\"}) returned: -2 C"
            )
        );
    }

    #[test]
    fn rounds_of_calls_and_results_without_ids_fold_in_order() {
        let r = request(vec![
            Message::text(Role::User, "Plan my day"),
            calls(vec![ToolCall {
                id: None,
                ..call("", "get_time", "{}")
            }]),
            result(None, "08:00"),
            calls(vec![call("w", "get_weather", "{}")]),
            result(Some("w"), "sunny"),
        ]);
        let folded = answer_prompt(&r).expect("folded");
        assert_eq!(
            folded.messages[0].content.as_deref(),
            Some(
                "Plan my day\n\nTool results:\nget_time({}) returned: 08:00\n\
                 get_weather({}) returned: sunny"
            )
        );
    }

    #[test]
    fn other_conversations_are_rendered_as_they_are() {
        let asked = Message::text(Role::User, "Weather?");
        let called = calls(vec![call("a", "get_weather", "{}")]);
        // Not ending with a result.
        assert_eq!(answer_prompt(&request(vec![asked.clone()])), None);
        assert_eq!(
            answer_prompt(&request(vec![asked.clone(), called.clone()])),
            None
        );
        // A call asked for.
        let mut required = request(vec![asked.clone(), called.clone(), result(Some("a"), "x")]);
        required.tool_choice = ToolChoice::Required;
        assert_eq!(answer_prompt(&required), None);
        // Prose from the assistant in the exchange.
        let mut said = called.clone();
        said.content = Some("Let me look.".into());
        assert_eq!(
            answer_prompt(&request(vec![asked, said, result(Some("a"), "x")])),
            None
        );
        // No user message to answer.
        assert_eq!(
            answer_prompt(&request(vec![called, result(Some("a"), "x")])),
            None
        );
    }
}
