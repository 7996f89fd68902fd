//! `phi4-mini`: Microsoft Phi-4-mini-instruct.
//!
//! Output: calls are a JSON list after `functools` (`functools[{"name": …, "arguments": …}]`),
//! read by the SDK's [`CallList`], which keeps the good calls around a broken one. The `<|tool_call|>[…]
//! <|/tool_call|>` form that llama.cpp's rewritten template teaches is read too. `<|end|>` ends
//! the turn (`<|endoftext|>` is the EOS token); Phi-4 reasoning models think in
//! `<think>…</think>`.
//!
//! Prompt: the official template takes the tools from the system message (`message["tools"]`,
//! a JSON text), as the model card shows. [`render`] puts them there and renders what that
//! template then renders, byte for byte.

mod render;

use plugboard_sdk::Adapter;
use plugboard_sdk::calls::CallList;
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::prompt::calls_allowed;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::*;

/// What starts Phi-4-mini's calls. The `[` belongs to the JSON; the marker needs it so that
/// prose about Python's `functools` module stays prose.
pub const FUNCTOOLS: &str = "functools[";
/// The call markers of llama.cpp's rewritten template.
const TOOL_CALL: (&str, &str) = ("<|tool_call|>", "<|/tool_call|>");
/// The end of a turn, and the EOS token.
pub const END_OF_TURN: [&str; 2] = ["<|end|>", "<|endoftext|>"];
const THINK: (&str, &str) = ("<think>", "</think>");
/// The family's markers, for its parser, info, prompts and grammar. Prompts ask for
/// `functools[`, which the grammar generates (`<|tool_call|>` is read, not asked for), and stop
/// at the end of the turn (the EOS token ends generation anyway).
pub const MARKERS: MarkerTable = MarkerTable::new(&[FUNCTOOLS, TOOL_CALL.0], &END_OF_TURN)
    .with_reasoning(THINK)
    .with_prompt_triggers(&[FUNCTOOLS])
    .with_stop(&[END_OF_TURN[0]]);

/// Markers that end a call list from outside its JSON.
const STOPS: [&str; 4] = [FUNCTOOLS, TOOL_CALL.0, END_OF_TURN[0], END_OF_TURN[1]];

pub struct Phi4Mini;

impl Format for Phi4Mini {
    fn spec(_options: &ParseOptions) -> Spec {
        MARKERS.spec(vec![
            CallMarkup::new(FUNCTOOLS, || {
                Box::new(CallList::new(STOPS).opened_with("["))
            }),
            CallMarkup::new(TOOL_CALL.0, || {
                Box::new(CallList::new(STOPS).dropping(TOOL_CALL.1))
            }),
        ])
    }
}

/// Whether a chat template reads the tools from the system message, as Phi-4-mini's does.
fn reads_tools_from_messages(template: &str) -> bool {
    ["message['tools']", "message[\"tools\"]", "message.tools"]
        .iter()
        .any(|form| template.contains(form))
}

impl Adapter for Phi4Mini {
    type Parser = OutputParser<Phi4Mini>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "phi4-mini".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Microsoft Phi-4-mini: functools[…] call lists, tools on the system message".into(),
            families: vec!["phi-4-mini".into()],
            capabilities: Capabilities::TOOLS
                | Capabilities::PARALLEL_CALLS
                | Capabilities::REASONING,
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
        }
    }

    /// `functools[` and a JSON list of calls, as the official template asks.
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let call =
            |tool: &Tool, args: &str| Some(grammar::json_envelope(tool, args, "name", "arguments"));
        Ok(CallSyntax {
            call: &call,
            separator: "\", \"",
            list: Some((grammar::literal(FUNCTOOLS), "\"]\"".into())),
            triggers: MARKERS.grammar_triggers(),
            reasoning: MARKERS.reasoning,
        }
        .grammar(&request))
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let text = match &request.model.chat_template {
            // A template that takes the tools from the system message cannot get them from a
            // generic renderer, which passes messages as clients send them: render natively,
            // which is what the official template renders with the tools in place.
            Some(template) if !(calls_allowed(&request) && reads_tools_from_messages(template)) => {
                render_chat_template(template, &request)?
            }
            _ => render::render(&request)?,
        };
        Ok(MARKERS.prompt(text, &request))
    }
}

plugboard_sdk::export_adapter!(Phi4Mini);
