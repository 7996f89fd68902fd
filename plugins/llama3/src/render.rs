//! The prompt: the model's own chat template when the host passes one (Llama 3.2 and 3.3
//! bring theirs), else the official Llama 3.1 template ([`crate::llama31`]).

use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::{AdapterError, Prompt, PromptRequest, ToolChoice};

use crate::{END_OF_TURN, PYTHON_TAG};

pub fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
    let text = match &request.model.chat_template {
        Some(template) => render_chat_template(template, &request)?,
        None => crate::llama31::render(&request)?,
    };
    let calls_possible = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
    Ok(Prompt {
        text,
        stop: END_OF_TURN.iter().map(|s| s.to_string()).collect(),
        tool_call_triggers: if calls_possible {
            vec![PYTHON_TAG.to_string()]
        } else {
            vec![]
        },
        reasoning_open: false,
    })
}
