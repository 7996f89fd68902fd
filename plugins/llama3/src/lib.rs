//! `llama3`: tool calls of Llama 3.1, 3.2 and 3.3, which write JSON call objects
//!
//! ```text
//! {"name": "get_weather", "parameters": {"city": "Paris"}}
//! <|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": …}<|eom_id|>
//! <function=get_weather>{"city": "Paris"}</function>
//! ```
//!
//! either bare — then the whole output must have the call's shape ([`bare`]) — or after
//! `<|python_tag|>`, or in Meta's `<function=…>` tags. Built-in tools are called after
//! `<|python_tag|>` as `brave_search.call(query="…")`. `"arguments"` works as well as
//! `"parameters"`, several calls may follow each other (`;`, line breaks, a list), and one broken
//! call does not lose the others ([`sequence`]). JSON mode answers such as
//! `{"name": "Ada", "age": 36}` stay content.
//!
//! Prompts: without a model template, the official Llama 3.1 template, byte for byte (the
//! SDK's `Llama3Template::LLAMA_3_1`); with one, that template ([`render`]).

mod bare;
mod builtin;
mod function_tag;
mod parser;
mod render;
mod sequence;

use plugboard_sdk::Adapter;
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, Spec};
use plugboard_sdk::types::*;

pub use parser::Llama3Parser;

/// The token before calls (and before code for the built-in code interpreter).
pub const PYTHON_TAG: &str = "<|python_tag|>";
/// End of a turn (`<|eot_id|>`), end of a message that waits for a tool result
/// (`<|eom_id|>`), and end of text.
pub const END_OF_TURN: [&str; 3] = ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"];
/// The family's markers, for its parser, info, prompts and grammar. The template asks for JSON
/// calls (bare, or after `<|python_tag|>`, which the grammar generates); Meta's `<function=…>`
/// tags are read, not asked for.
pub const MARKERS: MarkerTable = MarkerTable::new(&[PYTHON_TAG, function_tag::OPEN], &END_OF_TURN)
    .with_prompt_triggers(&[PYTHON_TAG]);

pub struct Llama3;

impl Format for Llama3 {
    fn spec(_options: &ParseOptions) -> Spec {
        // Bare calls are recognised in front of this parser (`Llama3Parser`), which can
        // report per-call problems; `lenient` adds the SDK's fenced-JSON rule by itself.
        MARKERS.spec(vec![
            CallMarkup::new(PYTHON_TAG, || {
                Box::new(sequence::CallSequence::new(&END_OF_TURN))
            }),
            CallMarkup::new(function_tag::OPEN, || {
                Box::new(function_tag::FunctionTag::default())
            }),
        ])
    }
}

impl Adapter for Llama3 {
    type Parser = Llama3Parser;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "llama3".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Llama 3.1 / 3.2 / 3.3 JSON tool calls, bare or after <|python_tag|> (Llama 3.1 template by default)".into(),
            families: ["llama3.1", "llama3.2", "llama3.3"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            capabilities: Capabilities::TOOLS | Capabilities::PARALLEL_CALLS,
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
        }
    }

    /// JSON calls as the Llama 3.1 template asks for them, `{"name": …, "parameters": …}`,
    /// several separated by `; `: bare at the start of the output, or after `<|python_tag|>`
    /// anywhere. (Built-in tools' `brave_search.call(…)` form is read, not generated.)
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let call = |tool: &Tool, args: &str| {
            Some(grammar::json_envelope(tool, args, "name", "parameters"))
        };
        let tag = format!("({})?", grammar::marker(&request, PYTHON_TAG));
        Ok(CallSyntax {
            call: &call,
            separator: "\"; \"",
            list: Some((tag, "\"\"".into())),
            triggers: std::iter::once(grammar::trigger_at_start("{\"name\""))
                .chain(MARKERS.grammar_triggers())
                .collect(),
            reasoning: MARKERS.reasoning,
        }
        .grammar(&request))
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        render::format_prompt(request)
    }
}

plugboard_sdk::export_adapter!(Llama3);
