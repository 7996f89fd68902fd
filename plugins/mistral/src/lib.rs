//! `mistral`: Mistral's instruct models and their tool calls.
//!
//! Output: calls start with `[TOOL_CALLS]` and come in three shapes (see [`body`]): v0.3's JSON
//! list, v11's `NAME[ARGS]{…}` and Small 3.2's `NAME[CALL_ID]ID[ARGS]{…}`; reasoning (Magistral)
//! sits in `[THINK]…[/THINK]`; `</s>` ends the turn.
//!
//! Prompt: the model's own chat template when the host passes one, rendered as transformers
//! does; otherwise the official Mistral-7B-Instruct-v0.3 template's output, written natively
//! ([`render`]). Either way tool-call ids are first mapped to the 9 alphanumerics Mistral's
//! templates demand ([`ids`]).

mod body;
mod ids;
mod render;

use plugboard_sdk::Adapter;
use plugboard_sdk::calls;
use plugboard_sdk::grammar::{self, CallSyntax};
use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_own_or;
use plugboard_sdk::types::*;

pub use body::MistralCalls;
pub use ids::short_id;

/// The marker that starts tool calls.
pub const TOOL_CALLS: &str = "[TOOL_CALLS]";
/// The end of an assistant turn (Mistral's EOS token).
pub const END_OF_TURN: &str = "</s>";
/// Magistral's reasoning markers.
pub const THINK: (&str, &str) = ("[THINK]", "[/THINK]");
/// The family's markers, for its parser, info, prompts and grammar.
pub const MARKERS: MarkerTable =
    MarkerTable::new(&[TOOL_CALLS], &[END_OF_TURN]).with_reasoning(THINK);

pub struct Mistral;

impl Format for Mistral {
    fn spec(_options: &ParseOptions) -> Spec {
        MARKERS.spec(vec![CallMarkup::new(TOOL_CALLS, || {
            Box::new(MistralCalls::default())
        })])
    }
}

impl Adapter for Mistral {
    type Parser = OutputParser<Mistral>;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "mistral".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Mistral Instruct v0.3, Nemo, Small 3.x and Magistral: [TOOL_CALLS] calls in all three shapes, [THINK] reasoning".into(),
            families: vec![
                "mistral-7b-instruct-v0.3".into(),
                "mistral-nemo".into(),
                "mistral-small".into(),
                "magistral".into(),
            ],
            capabilities: Capabilities::TOOLS | Capabilities::PARALLEL_CALLS | Capabilities::REASONING,
            tool_call_triggers: MARKERS.info_triggers(),
            end_of_turn: MARKERS.info_end_of_turn(),
        }
    }

    /// The form the model's tokenizer says it was trained on: `NAME[CALL_ID]ID[ARGS]{…}` after
    /// each `[TOOL_CALLS]` where `[CALL_ID]` is a control token (Small 3.2), `NAME[ARGS]{…}`
    /// where `[ARGS]` is one (v11 and later), v0.3's JSON list otherwise.
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let tool_calls = grammar::marker(&request, TOOL_CALLS);
        let control = |text: &str| request.control_tokens.iter().any(|t| t.text == text);
        let v11 = control("[ARGS]");
        // The id as Mistral's templates write them (see `ids`): 9 letters and digits.
        let id = match control("[CALL_ID]") {
            true => format!(
                "{} /[A-Za-z0-9]{{9}}/",
                grammar::marker(&request, "[CALL_ID]")
            ),
            false => String::new(),
        };
        let args_marker = grammar::marker(&request, "[ARGS]");
        let named = |tool: &Tool, args: &str| {
            // The name runs up to `[ARGS]`: one holding a bracket or space cannot be read back.
            let bare = !tool.name.is_empty() && tool.name.chars().all(calls::is_name_char);
            bare.then(|| {
                format!(
                    "{tool_calls} {} {id} {args_marker} {args}",
                    grammar::literal(&tool.name)
                )
            })
        };
        let listed =
            |tool: &Tool, args: &str| Some(grammar::json_envelope(tool, args, "name", "arguments"));
        // v11 writes each call after a `[TOOL_CALLS]` of its own, v0.3 one list after one.
        let call: &dyn Fn(&Tool, &str) -> Option<String> = if v11 { &named } else { &listed };
        let list = (!v11).then(|| (format!("{tool_calls} \"[\""), "\"]\"".into()));
        Ok(CallSyntax {
            call,
            separator: if v11 { "" } else { "\", \"" },
            list,
            triggers: MARKERS.grammar_triggers(),
            reasoning: MARKERS.reasoning,
        }
        .grammar(&request))
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let request = ids::shorten(request);
        let text = render_own_or(&request, render::render)?;
        Ok(MARKERS.prompt(text, &request))
    }
}

plugboard_sdk::export_adapter!(Mistral);
