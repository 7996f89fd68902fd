//! The prompt: the model's own chat template when the host passes one (Qwen3, Hermes 2 Pro / 3
//! and fine-tunes each bring theirs), else the official Qwen2.5 template ([`crate::qwen`]).
//! Either way the prompt says where generation stops, what starts a call, and whether the
//! output starts inside a `<think>` block the template opened.

use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::{AdapterError, Prompt, PromptRequest, ToolChoice};

use crate::{END_OF_TURN, OPEN, THINK};

pub fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
    let text = match &request.model.chat_template {
        Some(template) => render_chat_template(template, &request)?,
        None => crate::qwen::render(&request),
    };
    let calls_possible = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
    Ok(Prompt {
        reasoning_open: ends_in_open_reasoning(&text),
        text,
        stop: END_OF_TURN.iter().map(|s| s.to_string()).collect(),
        tool_call_triggers: if calls_possible {
            vec![OPEN.to_string()]
        } else {
            vec![]
        },
    })
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
