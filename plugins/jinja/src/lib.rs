//! `jinja`: any model, through its own chat template.
//!
//! The prompt is the model's Hugging Face chat template (`model.chat_template`, from its GGUF or
//! `tokenizer_config.json`), rendered byte for byte as transformers' `apply_chat_template`
//! renders it (see `plugboard_sdk::template`). A model without a template cannot be served by
//! this adapter: pick its family's adapter instead.
//!
//! The output is read by a generic parser, for models whose family is unknown: the tool-call
//! markups open-weight models are trained on, each holding JSON call objects
//! (`{"name": …, "arguments": {…}}`, or a list of them):
//!
//! ```text
//! <think>reasoning</think>
//! Prose.
//! <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>   Hermes, Qwen
//! <|tool_call|>[{"name": …, "arguments": …}]                                       Granite
//! [TOOL_CALLS] [{"name": …, "arguments": …}]                                       Mistral
//! <|python_tag|>{"name": …, "parameters": …}                                       Llama 3.1
//! ```
//!
//! With `lenient`, an output that is nothing but a JSON call naming an offered tool (bare or in
//! a markdown fence) is a call too: the SDK adds that rule.

use plugboard_sdk::Adapter;
use plugboard_sdk::calls::JsonCalls;
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::*;

/// The markers around reasoning.
pub const THINK: (&str, &str) = ("<think>", "</think>");

/// Hermes' call block, which many fine-tunes of unknown family use.
pub const TOOL_CALL: &str = "<tool_call>";
const TOOL_CALL_CLOSE: &str = "</tool_call>";
/// Markups whose JSON ends the call (no closing marker).
const UNCLOSED_CALLS: [&str; 3] = ["<|tool_call|>", "[TOOL_CALLS]", "<|python_tag|>"];

/// Every string that starts a call.
pub const TRIGGERS: [&str; 4] = [TOOL_CALL, "<|tool_call|>", "[TOOL_CALLS]", "<|python_tag|>"];

/// End-of-turn tokens of the common families, removed when a backend leaves them in the text.
/// Only tokens that cannot be ordinary prose (so not `</s>`).
pub const END_OF_TURN: [&str; 10] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|eot|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
    "<|EOT|>",
];

/// The markers, for the parser, info and prompts. A prompt stops at its model's own EOS token
/// (added per request), not at every family's end of turn; reasoning is open when the
/// template's generation prompt opens it (DeepSeek-R1's ends with `<think>\n`).
pub const MARKERS: MarkerTable = MarkerTable::new(&TRIGGERS, &END_OF_TURN)
    .with_reasoning(THINK)
    .with_stop(&[]);

pub struct Jinja;

impl Format for Jinja {
    fn spec(_options: &ParseOptions) -> Spec {
        let mut calls = vec![CallMarkup::new(TOOL_CALL, || {
            Box::new(JsonCalls::new(Some(TOOL_CALL_CLOSE), true))
        })];
        for open in UNCLOSED_CALLS {
            // Llama 3.1 separates several calls with `;`, which `many` accepts.
            calls.push(CallMarkup::new(open, || {
                Box::new(JsonCalls::new(None, true))
            }));
        }
        // `lenient` adds the SDK's bare/fenced JSON rule by itself.
        MARKERS.spec(calls)
    }
}

impl Adapter for Jinja {
    type Parser = OutputParser<Jinja>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "jinja".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Any model through its own chat template (rendered as transformers does), with a generic parser for <tool_call>-style JSON calls and <think> reasoning".into(),
            families: vec!["any".into()],
            capabilities: Capabilities::TOOLS
                | Capabilities::PARALLEL_CALLS
                | Capabilities::REASONING,
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
        }
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let Some(template) = request.model.chat_template.as_deref() else {
            return Err(AdapterError::Unsupported(
                "the jinja adapter renders the model's own chat template, and this model has \
                 none: give the model a chat_template (GGUF metadata or tokenizer_config.json) \
                 or use the adapter of its family"
                    .into(),
            ));
        };
        let text = render_chat_template(template, &request)?;
        let mut prompt = MARKERS.prompt(text, &request);
        // The table has no stop strings of its own: the model's EOS token is the one.
        prompt.stop.extend(request.model.eos_token.iter().cloned());
        Ok(prompt)
    }
}

plugboard_sdk::export_adapter!(Jinja);
