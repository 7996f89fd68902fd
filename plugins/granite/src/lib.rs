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
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_own_or;
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
/// The family's markers, for its parser, info, prompts and grammar.
pub const MARKERS: MarkerTable = MarkerTable::new(&TRIGGERS, &[END_OF_TURN]).with_reasoning(THINK);

/// Markers that end a call list from outside its JSON.
const STOPS: [&str; 3] = [TRIGGERS[0], TRIGGERS[1], END_OF_TURN];

pub struct Granite;

impl Format for Granite {
    fn spec(_options: &ParseOptions) -> Spec {
        let mut spec = MARKERS.spec(
            TRIGGERS
                .iter()
                .map(|open| {
                    CallMarkup::new(*open, || Box::new(CallList::new(STOPS).dropping(CLOSE)))
                })
                .collect(),
        );
        // Dropped tags are removed from the content like end-of-turn markers.
        spec.end_of_turn.extend(DROPPED.map(Into::into));
        spec
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
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
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
            triggers: MARKERS.grammar_triggers(),
            reasoning: MARKERS.reasoning,
        }
        .grammar(&request))
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let text = render_own_or(&request, render::render)?;
        Ok(MARKERS.prompt(text, &request))
    }
}

plugboard_sdk::export_adapter!(Granite);
