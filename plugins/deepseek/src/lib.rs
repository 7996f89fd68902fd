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
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_own_or;
use plugboard_sdk::types::*;

pub use body::DeepSeekCalls;
pub use markers::*;

/// The family's markers, for its parser, info, prompts and grammar. Calls open a block
/// (`CALLS_BEGIN`) or, read but not prompted for, stand alone (`CALL_BEGIN`): the grammar and
/// so the prompt's triggers start at the block.
pub const MARKERS: MarkerTable = MarkerTable::new(&[CALLS_BEGIN, CALL_BEGIN], &[END_OF_SENTENCE])
    .with_reasoning(THINK)
    .with_prompt_triggers(&[CALLS_BEGIN]);

pub struct DeepSeek;

impl Format for DeepSeek {
    fn spec(_options: &ParseOptions) -> Spec {
        MARKERS.spec(vec![
            CallMarkup::new(CALLS_BEGIN, || Box::new(DeepSeekCalls::block())),
            CallMarkup::new(CALL_BEGIN, || Box::new(DeepSeekCalls::single())),
        ])
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
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
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

plugboard_sdk::export_adapter!(DeepSeek);
