//! The prompt: the model's own chat template when the host passes one (Llama 3.2 and 3.3
//! bring theirs), else the official Llama 3.1 template (the SDK's [`Llama3Template`]).

use plugboard_sdk::template::llama3::Llama3Template;
use plugboard_sdk::template::render_own_or;
use plugboard_sdk::types::{AdapterError, Prompt, PromptRequest};

use crate::MARKERS;

pub fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
    let text = render_own_or(&request, |request| {
        Llama3Template::LLAMA_3_1.render(request)
    })?;
    Ok(MARKERS.prompt(text, &request))
}
