//! The prompt: the model's own chat template when the host passes one (Qwen3, Hermes 2 Pro / 3
//! and fine-tunes each bring theirs), else the official Qwen2.5 template ([`crate::qwen`]).
//! Either way the prompt says where generation stops, what starts a call, and whether the
//! output starts inside a `<think>` block the template opened.

use plugboard_sdk::prompt::calls_allowed;
use plugboard_sdk::template::render_own_or;
use plugboard_sdk::types::{AdapterError, Message, Prompt, PromptRequest, Role};

use crate::{MARKERS, THINK};

/// How to write several calls, in the system prompt when a turn may make several: without it,
/// small models make one call where the request needs two (BFCL's `parallel` categories; see
/// the README). A list in one block is what they write when told; the parser reads it as the
/// template's one-block-per-call form.
pub const SEVERAL_CALLS: &str = "If the request needs several function calls (the same function with different arguments, or different functions), write them all in one <tool_call> block as a JSON list:\n<tool_call>\n[{\"name\": <function-name>, \"arguments\": <args-json-object>}, {\"name\": <function-name>, \"arguments\": <args-json-object>}]\n</tool_call>";

/// The template variable that turns plugboard's additions to the family's prompt off
/// (`"chat_template_kwargs": {"plugboard_call_hints": false}`): the prompt is then the
/// template's own, byte for byte, as the reference fixtures check.
pub const HINTS_VARIABLE: &str = "plugboard_call_hints";

/// The request with [`SEVERAL_CALLS`] at the end of its system message (or as one) when the
/// turn may make several calls.
fn with_several_calls(mut request: PromptRequest) -> PromptRequest {
    let hints_off = request
        .template_variables
        .iter()
        .any(|(name, value)| name == HINTS_VARIABLE && value.trim() == "false");
    let several = request.parallel_tool_calls && calls_allowed(&request) && !hints_off;
    if !several {
        return request;
    }
    match request.messages.first_mut() {
        Some(system) if system.role == Role::System => {
            let content = system.content.get_or_insert_with(String::new);
            content.push_str("\n\n");
            content.push_str(SEVERAL_CALLS);
        }
        _ => request.messages.insert(
            0,
            Message {
                role: Role::System,
                content: Some(SEVERAL_CALLS.into()),
                reasoning: None,
                tool_calls: vec![],
                tool_call_id: None,
                name: None,
            },
        ),
    }
    request
}

pub fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
    let request = with_several_calls(request);
    let text = render_own_or(&request, |request| Ok(crate::qwen::render(request)))?;
    let mut prompt = MARKERS.prompt(text, &request);
    // Stricter than the table's rule (any `<think>` left open): only one opened in the last
    // turn counts, not one in an earlier message.
    prompt.reasoning_open = ends_in_open_reasoning(&prompt.text);
    Ok(prompt)
}

/// Whether the prompt ends inside a `<think>` block opened in the last turn (thinking models'
/// templates end the generation prompt with `<think>\n`), so the output starts as reasoning.
pub fn ends_in_open_reasoning(prompt: &str) -> bool {
    let Some(open) = prompt.rfind(THINK.0) else {
        return false;
    };
    let after = &prompt[open + THINK.0.len()..];
    !after.contains(THINK.1) && !after.contains("<|im_start|>") && !after.contains("<|im_end|>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::types::ToolChoice;

    fn request(
        messages: Vec<Message>,
        parallel: bool,
        variables: Vec<(String, String)>,
    ) -> PromptRequest {
        PromptRequest {
            messages,
            tools: vec![plugboard_sdk::types::Tool {
                name: "f".into(),
                description: None,
                parameters: "{}".into(),
            }],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: parallel,
            add_generation_prompt: true,
            model: plugboard_sdk::types::ModelConfig {
                chat_template: None,
                bos_token: None,
                eos_token: None,
            },
            template_variables: variables,
        }
    }

    fn message(role: Role, text: &str) -> Message {
        Message {
            role,
            content: Some(text.into()),
            reasoning: None,
            tool_calls: vec![],
            tool_call_id: None,
            name: None,
        }
    }

    #[test]
    fn several_calls_are_explained_only_where_a_turn_may_make_them() {
        let user = message(Role::User, "hi");
        let with = with_several_calls(request(vec![user.clone()], true, vec![]));
        assert_eq!(with.messages[0].role, Role::System);
        assert_eq!(with.messages[0].content.as_deref(), Some(SEVERAL_CALLS));
        // The user's own system message keeps its text, the hint after it.
        let system = message(Role::System, "Be brief.");
        let with = with_several_calls(request(vec![system, user.clone()], true, vec![]));
        assert_eq!(with.messages.len(), 2);
        assert_eq!(
            with.messages[0].content.as_deref(),
            Some(format!("Be brief.\n\n{SEVERAL_CALLS}").as_str())
        );
        // One call allowed, or hints turned off: the request as it came.
        let without = with_several_calls(request(vec![user.clone()], false, vec![]));
        assert_eq!(without.messages.len(), 1);
        let off = vec![(HINTS_VARIABLE.to_string(), "false".to_string())];
        let without = with_several_calls(request(vec![user], true, off));
        assert_eq!(without.messages.len(), 1);
    }

    #[test]
    fn open_reasoning_is_only_at_the_end() {
        assert!(ends_in_open_reasoning("<|im_start|>assistant\n<think>\n"));
        assert!(!ends_in_open_reasoning(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!ends_in_open_reasoning(
            "<think>x<|im_end|>\n<|im_start|>assistant\n"
        ));
        assert!(!ends_in_open_reasoning("<|im_start|>assistant\n"));
    }
}
