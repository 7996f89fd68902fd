//! `tool-use`: tool calling for models that have no tool format of their own (Phi-3, DeepSeek
//! Coder, base models). The system prompt lists the tools and asks for calls written as
//!
//! ```text
//! <tool_use>
//! tool_name: get_weather
//! arguments: {"city": "Paris"}
//! </tool_use>
//! ```
//!
//! and the parser reads those blocks back, streaming the arguments as they are generated.

mod body;
mod render;

use plugboard_sdk::Adapter;
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::types::*;

pub use body::ToolUseBody;

/// The marker that opens a call.
pub const OPEN: &str = "<tool_use>";
/// The marker that closes a call.
pub const CLOSE: &str = "</tool_use>";
/// ChatML's end of turn, and the end-of-text token many ChatML models also emit.
pub const END_OF_TURN: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];
/// The markers, for the parser, info, prompts and grammar: reasoning models keep their
/// `<think>`; generation stops at ChatML's end of turn.
pub const MARKERS: MarkerTable = MarkerTable::new(&[OPEN], &END_OF_TURN)
    .with_reasoning(("<think>", "</think>"))
    .with_stop(&[END_OF_TURN[0]]);

pub struct ToolUse;

impl Format for ToolUse {
    fn spec(_options: &ParseOptions) -> Spec {
        MARKERS.spec(vec![CallMarkup::new(OPEN, || {
            Box::new(ToolUseBody::default())
        })])
    }
}

impl Adapter for ToolUse {
    type Parser = OutputParser<ToolUse>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "tool-use".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Tool calls as <tool_use> blocks, taught in the system prompt, for models without a native tool format".into(),
            families: vec!["phi-3".into(), "deepseek-coder".into(), "chatml".into()],
            capabilities: Capabilities::TOOLS | Capabilities::PARALLEL_CALLS,
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
        }
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        render::format_prompt(request)
    }

    /// Each call in its own block, as the system prompt teaches it. A name is written bare on
    /// its line, so a tool whose name the parser would read otherwise (quotes or spaces around
    /// it, a line break, a `{`) cannot be called in this format and is left out.
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let call = |tool: &Tool, args: &str| {
            let name = tool.name.as_str();
            let bare = !name.is_empty()
                && name.trim().trim_matches(['"', '`', '\'']) == name
                && !name.contains(['\n', '\r', '{'])
                && !name.contains(body::ARGS_LABEL)
                && !name.contains(CLOSE);
            bare.then(|| {
                format!(
                    "{} {args} {}",
                    grammar::literal(&format!("{OPEN}\ntool_name: {name}\narguments: ")),
                    grammar::literal(&format!("\n{CLOSE}"))
                )
            })
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

plugboard_sdk::export_adapter!(ToolUse);
