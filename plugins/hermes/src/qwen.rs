//! The official Qwen2.5 chat template (Qwen2.5-7B-Instruct; Qwen2.5-Coder's is the same text),
//! written out in Rust so that a prompt renders without a template engine, byte for byte what
//! transformers renders from the template:
//!
//! - the system turn comes first, always: the conversation's own system message or Qwen's
//!   default one, followed by the tools block when tools are offered;
//! - tools are `tojson` of the OpenAI tool object (Python's `json.dumps` spacing);
//! - an assistant turn with calls writes each as `\n<tool_call>\n{"name": …, "arguments": …}\n
//!   </tool_call>` after its text, if any;
//! - consecutive tool results share one `user` turn, each in `<tool_response>` tags.

use plugboard_sdk::prompt::{json_value, py_json, role_name, tool_json};
use plugboard_sdk::types::{Message, PromptRequest, Role};

const DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

const TOOLS_INTRO: &str = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>";

const TOOLS_OUTRO: &str = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";

fn content(message: &Message) -> &str {
    message.content.as_deref().unwrap_or("")
}

/// Renders `request` as the Qwen2.5 template does.
pub fn render(request: &PromptRequest) -> String {
    let messages = &request.messages;
    let system = messages
        .first()
        .filter(|m| m.role == Role::System)
        .map(content);
    let mut out = String::new();
    if request.tools.is_empty() {
        out.push_str("<|im_start|>system\n");
        out.push_str(system.unwrap_or(DEFAULT_SYSTEM));
        out.push_str("<|im_end|>\n");
    } else {
        out.push_str("<|im_start|>system\n");
        out.push_str(system.unwrap_or(DEFAULT_SYSTEM));
        out.push_str(TOOLS_INTRO);
        for tool in &request.tools {
            out.push('\n');
            out.push_str(&py_json(&tool_json(tool), None));
        }
        out.push_str(TOOLS_OUTRO);
    }
    for (i, message) in messages.iter().enumerate() {
        match message.role {
            // The first system message went into the system turn above.
            Role::System if i == 0 => {}
            Role::Assistant if !message.tool_calls.is_empty() => {
                out.push_str("<|im_start|>assistant");
                if !content(message).is_empty() {
                    out.push('\n');
                    out.push_str(content(message));
                }
                for call in &message.tool_calls {
                    out.push_str("\n<tool_call>\n{\"name\": \"");
                    out.push_str(&call.name);
                    out.push_str("\", \"arguments\": ");
                    out.push_str(&py_json(&json_value(&call.arguments), None));
                    out.push_str("}\n</tool_call>");
                }
                out.push_str("<|im_end|>\n");
            }
            Role::Tool => {
                if i == 0 || messages[i - 1].role != Role::Tool {
                    out.push_str("<|im_start|>user");
                }
                out.push_str("\n<tool_response>\n");
                out.push_str(content(message));
                out.push_str("\n</tool_response>");
                if messages
                    .get(i + 1)
                    .is_none_or(|next| next.role != Role::Tool)
                {
                    out.push_str("<|im_end|>\n");
                }
            }
            Role::System | Role::User | Role::Assistant => {
                out.push_str("<|im_start|>");
                out.push_str(role_name(message.role));
                out.push('\n');
                out.push_str(content(message));
                out.push_str("<|im_end|>\n");
            }
        }
    }
    if request.add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}
