//! The prompt: the model's own chat template when the host passes one (Llama 4, or a pythonic
//! template such as vLLM's for Llama 3.2 / 4), else the official Llama 3.2 template
//! ([`crate::llama32`]). Either way the prompt says whether it ends inside an open `<think>`.

use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::{AdapterError, Prompt, PromptRequest, ToolChoice};

use crate::{END_OF_TURN, PYTHON_START, THINK};

pub fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
    let text = match &request.model.chat_template {
        Some(template) => render_chat_template(template, &request)?,
        None => crate::llama32::render(&request)?,
    };
    let calls_possible = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
    Ok(Prompt {
        reasoning_open: ends_in_open_reasoning(&text),
        text,
        stop: END_OF_TURN.iter().map(|s| s.to_string()).collect(),
        tool_call_triggers: if calls_possible {
            vec![PYTHON_START.to_string()]
        } else {
            vec![]
        },
    })
}

/// Whether the prompt ends inside a `<think>` block opened in its last turn.
fn ends_in_open_reasoning(prompt: &str) -> bool {
    let Some(open) = prompt.rfind(THINK.0) else {
        return false;
    };
    let after = &prompt[open + THINK.0.len()..];
    !after.contains(THINK.1) && !END_OF_TURN.iter().any(|eot| after.contains(eot))
}
