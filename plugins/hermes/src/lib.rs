//! `hermes`: the Hermes tool-call format that Qwen2.5, Qwen2.5-Coder, Qwen3 and NousResearch's
//! Hermes 2 Pro / Hermes 3 share:
//!
//! ```text
//! <think>reasoning (Qwen3)</think>
//! Some prose.
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! <tool_call>
//! {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}
//! </tool_call><|im_end|>
//! ```
//!
//! Several blocks are parallel calls. Where the popular parsers give up, this one keeps going:
//! a broken block does not lose the others, a block whose closing tag is missing ends at the
//! next `<tool_call>`, a block may hold a list of calls or a markdown-fenced call, arguments
//! written as a JSON string are decoded once, and a call inside `<think>` stays reasoning.
//! With `lenient`, an output that is nothing but a JSON call (bare or in a ```` ```json ````
//! fence) naming an offered tool is a call: that is how small Qwen2.5-Coder models answer.
//!
//! Prompts: without a model template, the official Qwen2.5 template, byte for byte
//! ([`qwen`]); with one, that template ([`render`]).

mod body;
mod qwen;
mod render;

use plugboard_sdk::Adapter;
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::types::*;

pub use body::HermesBody;

/// The marker that opens a call.
pub const OPEN: &str = "<tool_call>";
/// The marker that closes a call.
pub const CLOSE: &str = "</tool_call>";
/// The markers around reasoning (Qwen3, QwQ, DeepSeek-R1 distills on Qwen).
pub const THINK: (&str, &str) = ("<think>", "</think>");
/// ChatML's end of turn, and the end-of-text token Qwen models also emit.
pub const END_OF_TURN: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];
/// The family's markers, for its parser, info, prompts and grammar.
pub const MARKERS: MarkerTable = MarkerTable::new(&[OPEN], &END_OF_TURN).with_reasoning(THINK);

pub struct Hermes;

impl Format for Hermes {
    fn spec(_options: &ParseOptions) -> Spec {
        // `lenient` adds the SDK's bare/fenced JSON rule by itself.
        MARKERS.spec(vec![CallMarkup::new(OPEN, || Box::new(HermesBody::new()))])
    }
}

impl Adapter for Hermes {
    type Parser = OutputParser<Hermes>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "hermes".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Hermes <tool_call> JSON calls with <think> reasoning, ChatML prompts (Qwen2.5 template by default)".into(),
            families: [
                "qwen2.5",
                "qwen2.5-coder",
                "qwen3",
                "qwq",
                "hermes-2-pro",
                "hermes-3",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            capabilities: Capabilities::TOOLS
                | Capabilities::PARALLEL_CALLS
                | Capabilities::REASONING,
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
        }
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        render::format_prompt(request)
    }

    /// Each call in its own block, one JSON object as the Qwen template shows it; blocks on
    /// lines of their own.
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let call = |tool: &Tool, args: &str| {
            Some(format!(
                "{} {} {}",
                grammar::literal(&format!("{OPEN}\n")),
                grammar::json_envelope(tool, args, "name", "arguments"),
                grammar::literal(&format!("\n{CLOSE}"))
            ))
        };
        Ok(CallSyntax {
            call: &call,
            separator: "\"\\n\"",
            list: None,
            triggers: MARKERS.grammar_triggers(),
            reasoning: MARKERS.reasoning,
        }
        .grammar(&request))
    }
}

plugboard_sdk::export_adapter!(Hermes);
