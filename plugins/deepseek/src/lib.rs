//! `deepseek`: DeepSeek V3, R1 and V3.1.
//!
//! Output: call blocks open with `<｜tool▁calls▁begin｜>` and hold one
//! `<｜tool▁call▁begin｜>…<｜tool▁call▁end｜>` per call, in V3/R1's or V3.1's shape (see
//! [`body`]); reasoning sits in `<think>…</think>` (R1's prompt ends inside `<think>\n`, so
//! its output starts as reasoning: `reasoning_open`); `<｜end▁of▁sentence｜>` ends the turn.
//!
//! Prompt: the model's own chat template when the host passes one (R1's and V3.1's, whose
//! prompts may end inside `<think>`: `reasoning_open` says so). Otherwise what the official
//! DeepSeek-V3 template renders, written natively ([`render`]) — note that that template
//! describes no tools: V3 calls tools only when the prompt describes them another way.

mod body;
mod markers;
mod render;

use plugboard_sdk::Adapter;
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::prompt::ends_inside;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::*;

pub use body::DeepSeekCalls;
pub use markers::*;

/// Strings that start calls.
pub const TRIGGERS: [&str; 2] = [CALLS_BEGIN, CALL_BEGIN];

pub struct DeepSeek;

impl Format for DeepSeek {
    fn spec(_options: &ParseOptions) -> Spec {
        Spec {
            reasoning: Some((THINK.0.into(), THINK.1.into())),
            end_of_turn: vec![END_OF_SENTENCE.into()],
            calls: vec![
                CallMarkup::new(CALLS_BEGIN, || Box::new(DeepSeekCalls::block())),
                CallMarkup::new(CALL_BEGIN, || Box::new(DeepSeekCalls::single())),
            ],
            whole: vec![],
        }
    }
}

impl Adapter for DeepSeek {
    type Parser = OutputParser<DeepSeek>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "deepseek".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "DeepSeek V3, R1 and V3.1: <｜tool▁calls▁begin｜> call blocks in both shapes, <think> reasoning".into(),
            families: vec![
                "deepseek-v3".into(),
                "deepseek-r1".into(),
                "deepseek-v3.1".into(),
            ],
            capabilities: Capabilities::TOOLS | Capabilities::PARALLEL_CALLS | Capabilities::REASONING,
            tool_call_triggers: TRIGGERS.iter().map(|t| t.to_string()).collect(),
            end_of_turn: vec![END_OF_SENTENCE.into()],
        }
    }

    /// V3 and R1's block: the arguments of each call in a JSON fence after its name.
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let m = |text: &str| grammar::marker(&request, text);
        let (call_begin, sep, call_end) = (m(CALL_BEGIN), m(SEP), m(CALL_END));
        let call = |tool: &Tool, args: &str| {
            // Only a name the parser reads as one can be written.
            (!tool.name.is_empty() && tool.name.chars().all(plugboard_sdk::calls::is_name_char))
                .then(|| {
                    format!(
                        "{call_begin} \"function\" {sep} {} {args} \"\\n```\" {call_end}",
                        grammar::literal(&format!("{}\n```json\n", tool.name))
                    )
                })
        };
        Ok(CallSyntax {
            call: &call,
            separator: "\"\\n\"",
            list: Some((m(CALLS_BEGIN), m(CALLS_END))),
            triggers: vec![grammar::trigger(CALLS_BEGIN)],
            reasoning: Some(THINK),
        }
        .grammar(&request))
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let text = match &request.model.chat_template {
            Some(template) => render_chat_template(template, &request)?,
            None => render::render(&request)?,
        };
        let calls_allowed = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
        Ok(Prompt {
            reasoning_open: ends_inside(&text, THINK.0, THINK.1),
            text,
            stop: vec![END_OF_SENTENCE.into()],
            tool_call_triggers: if calls_allowed {
                vec![CALLS_BEGIN.into()]
            } else {
                vec![]
            },
        })
    }
}

plugboard_sdk::export_adapter!(DeepSeek);

#[cfg(test)]
mod tests;
