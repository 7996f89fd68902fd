//! An adapter of contract 0.1, as adapters were built before call grammars: ChatML prompts,
//! the output as content (no calls). A host that speaks 0.2 must keep loading and serving it,
//! unconstrained.

wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "model-adapter" });

use exports::plugboard::adapter::adapter::*;

struct Legacy;

impl Guest for Legacy {
    type StreamParser = Content;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "legacy".into(),
            version: "0.1.0".into(),
            description: "contract 0.1 test adapter".into(),
            families: vec!["test".into()],
            capabilities: Capabilities::empty(),
            tool_call_triggers: vec![],
            end_of_turn: vec!["<|im_end|>".into()],
        }
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let mut text = String::new();
        for m in &request.messages {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            text.push_str(&format!(
                "<|im_start|>{role}\n{}<|im_end|>\n",
                m.content.as_deref().unwrap_or("")
            ));
        }
        if request.add_generation_prompt {
            text.push_str("<|im_start|>assistant\n");
        }
        Ok(Prompt {
            text,
            stop: vec!["<|im_end|>".into()],
            tool_call_triggers: vec![],
            reasoning_open: false,
        })
    }

    fn parse_response(text: String, _: ParseOptions) -> Result<ParsedResponse, AdapterError> {
        let content = text.trim().to_string();
        Ok(ParsedResponse {
            content: (!content.is_empty()).then_some(content),
            reasoning: None,
            tool_calls: vec![],
            problems: vec![],
        })
    }

    fn extract_tool_calls(_: String, _: ParseOptions) -> Result<Vec<ToolCall>, AdapterError> {
        Ok(vec![])
    }
}

/// Content as it comes (this adapter reads no calls).
struct Content;

impl GuestStreamParser for Content {
    fn new(_: ParseOptions) -> Self {
        Content
    }

    fn push(&self, delta: String) -> Result<Vec<StreamEvent>, AdapterError> {
        Ok(vec![StreamEvent::Content(delta)])
    }

    fn finish(&self) -> Result<Vec<StreamEvent>, AdapterError> {
        Ok(vec![])
    }
}

#[cfg(target_family = "wasm")]
export!(Legacy);
