//! `granite`: IBM Granite 3.x instruct models.
//!
//! Output: calls are a JSON list after `<|tool_call|>` (Granite 3.0, and what the 3.x system
//! prompts ask for) or `<tool_call>` (what 3.1+ models also write), read by the SDK's [`CallList`], which
//! keeps the good calls around a broken one; a `</tool_call>` after the list is dropped.
//! Reasoning (3.2+ with `thinking`) sits in `<think>…</think>`, and the answer in
//! `<response>…</response>`, whose tags are dropped. `<|end_of_text|>` ends the turn.
//!
//! Prompt: the model's own chat template when the host passes one; otherwise what the official
//! granite-3.3-2b-instruct template renders, written natively ([`render`]).

mod render;

use plugboard_sdk::Adapter;
use plugboard_sdk::calls::CallList;
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::prompt::ends_inside;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::*;

/// The markers that start a call list: Granite 3.0's special token and 3.1+'s tag.
pub const TRIGGERS: [&str; 2] = ["<|tool_call|>", "<tool_call>"];
/// The end of a turn (Granite's EOS token).
pub const END_OF_TURN: &str = "<|end_of_text|>";
/// The closing tag some models add after the list, dropped there.
const CLOSE: &str = "</tool_call>";
/// The answer's tags in thinking mode, dropped from the content.
const DROPPED: [&str; 2] = ["<response>", "</response>"];
const THINK: (&str, &str) = ("<think>", "</think>");

/// Markers that end a call list from outside its JSON.
const STOPS: [&str; 3] = [TRIGGERS[0], TRIGGERS[1], END_OF_TURN];

pub struct Granite;

impl Format for Granite {
    fn spec(_options: &ParseOptions) -> Spec {
        Spec {
            reasoning: Some((THINK.0.into(), THINK.1.into())),
            // Dropped tags are removed from the content like end-of-turn markers.
            end_of_turn: std::iter::once(END_OF_TURN)
                .chain(DROPPED)
                .map(Into::into)
                .collect(),
            calls: TRIGGERS
                .iter()
                .map(|open| {
                    CallMarkup::new(*open, || Box::new(CallList::new(STOPS).dropping(CLOSE)))
                })
                .collect(),
            whole: vec![],
        }
    }
}

impl Adapter for Granite {
    type Parser = OutputParser<Granite>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "granite".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "IBM Granite 3.x: <|tool_call|> / <tool_call> JSON call lists, <think> reasoning"
                    .into(),
            families: vec![
                "granite-3.0".into(),
                "granite-3.1".into(),
                "granite-3.2".into(),
                "granite-3.3".into(),
            ],
            capabilities: Capabilities::TOOLS
                | Capabilities::PARALLEL_CALLS
                | Capabilities::REASONING,
            tool_call_triggers: TRIGGERS.iter().map(|t| t.to_string()).collect(),
            end_of_turn: vec![END_OF_TURN.into()],
        }
    }

    /// One JSON list after either opening marker.
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let call =
            |tool: &Tool, args: &str| Some(grammar::json_envelope(tool, args, "name", "arguments"));
        let openers: Vec<String> = TRIGGERS
            .iter()
            .map(|t| grammar::marker(&request, t))
            .collect();
        Ok(CallSyntax {
            call: &call,
            separator: "\", \"",
            list: Some((format!("({}) \"[\"", openers.join(" | ")), "\"]\"".into())),
            triggers: TRIGGERS.iter().map(|t| grammar::trigger(t)).collect(),
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
            stop: vec![END_OF_TURN.into()],
            tool_call_triggers: if calls_allowed {
                TRIGGERS.iter().map(|t| t.to_string()).collect()
            } else {
                vec![]
            },
        })
    }
}

plugboard_sdk::export_adapter!(Granite);

#[cfg(test)]
mod tests;
