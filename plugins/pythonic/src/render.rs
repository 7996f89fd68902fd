//! The prompt: the model's own chat template when the host passes one (Llama 4, or a pythonic
//! template such as vLLM's for Llama 3.2 / 4), else the official Llama 3.2 template (the SDK's
//! [`Llama3Template`]). Either way the prompt says whether it ends inside an open `<think>`.

use plugboard_sdk::template::llama3::Llama3Template;
use plugboard_sdk::template::render_own_or;
use plugboard_sdk::types::{AdapterError, Prompt, PromptRequest};

use crate::{END_OF_TURN, MARKERS, THINK};

pub fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
    let text = render_own_or(&request, |request| {
        Llama3Template::LLAMA_3_2.render(request)
    })?;
    let mut prompt = MARKERS.prompt(text, &request);
    // Stricter than the table's rule (any `<think>` left open): only one opened in the last
    // turn counts, not one in an earlier message.
    prompt.reasoning_open = ends_in_open_reasoning(&prompt.text);
    Ok(prompt)
}

/// Whether the prompt ends inside a `<think>` block opened in its last turn.
fn ends_in_open_reasoning(prompt: &str) -> bool {
    let Some(open) = prompt.rfind(THINK.0) else {
        return false;
    };
    let after = &prompt[open + THINK.0.len()..];
    !after.contains(THINK.1) && !END_OF_TURN.iter().any(|eot| after.contains(eot))
}
