//! `functiongemma`: Google's FunctionGemma (Gemma 3 270M tuned for function calling).
//!
//! Output: each call is `<start_function_call>call:NAME{…}<end_function_call>`, its arguments in
//! FunctionGemma's own syntax (strings between `<escape>` tokens, numbers, booleans and null
//! bare, nested objects and lists), read into JSON by [`args`] as they stream; several calls may
//! follow each other. `<end_of_turn>` ends the turn, and `<start_function_response>` hands it to
//! the tool (a stop string; anything generated after it is dropped).
//!
//! Prompt: the model's own chat template when the host passes one; otherwise [`render`], which
//! is written from the format's description and not verified against an official template.

mod args;
mod call;
mod grammar;
mod handover;
mod render;
mod syntax;

use plugboard_sdk::Adapter;
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_own_or;
use plugboard_sdk::types::*;

use call::GemmaCall;
use handover::Handover;

/// The marker that starts a call.
pub const START_CALL: &str = "<start_function_call>";
/// The marker that ends a call.
pub const END_CALL: &str = "<end_function_call>";
/// Where the model hands the turn to the tool.
pub const START_RESPONSE: &str = "<start_function_response>";
/// The end of a turn, and the EOS token.
pub const END_OF_TURN: [&str; 2] = ["<end_of_turn>", "<eos>"];
/// Markers that end a call's span from outside it.
pub const STOPS: [&str; 3] = [END_OF_TURN[0], END_OF_TURN[1], START_RESPONSE];
/// The family's markers, for its parser, info, prompts and grammar. Generation stops where the
/// model hands the turn to the tool, as at the end of a turn (the EOS token ends it anyway).
pub const MARKERS: MarkerTable =
    MarkerTable::new(&[START_CALL], &END_OF_TURN).with_stop(&[END_OF_TURN[0], START_RESPONSE]);

pub struct FunctionGemma;

impl Format for FunctionGemma {
    fn spec(_options: &ParseOptions) -> Spec {
        MARKERS.spec(vec![
            CallMarkup::new(START_CALL, || Box::new(GemmaCall::default())),
            CallMarkup::new(START_RESPONSE, || Box::new(Handover)),
        ])
    }
}

impl Adapter for FunctionGemma {
    type Parser = OutputParser<FunctionGemma>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "functiongemma".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Google FunctionGemma: <start_function_call>call:NAME{…} calls with <escape>-delimited strings".into(),
            families: vec!["functiongemma".into()],
            capabilities: Capabilities::TOOLS | Capabilities::PARALLEL_CALLS,
            tool_call_triggers: MARKERS.info_triggers(),
            // The handover ends the turn for the host too; the parser reads it as markup
            // (`Handover`), which drops what follows it, rather than as an end of turn.
            end_of_turn: MARKERS
                .end_of_turn
                .iter()
                .chain([&START_RESPONSE])
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let text = render_own_or(&request, render::render)?;
        Ok(MARKERS.prompt(text, &request))
    }

    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        Ok(grammar::call_grammar(&request))
    }
}

plugboard_sdk::export_adapter!(FunctionGemma);
