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
use plugboard_sdk::prompt::ends_inside;
use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
use plugboard_sdk::template::render_chat_template;
use plugboard_sdk::types::*;

pub use body::MistralCalls;
pub use ids::short_id;

/// The marker that starts tool calls.
pub const TOOL_CALLS: &str = "[TOOL_CALLS]";
/// The end of an assistant turn (Mistral's EOS token).
pub const END_OF_TURN: &str = "</s>";
/// Magistral's reasoning markers.
pub const THINK: (&str, &str) = ("[THINK]", "[/THINK]");

pub struct Mistral;

impl Format for Mistral {
    fn spec(_options: &ParseOptions) -> Spec {
        Spec {
            reasoning: Some((THINK.0.into(), THINK.1.into())),
            end_of_turn: vec![END_OF_TURN.into()],
            calls: vec![CallMarkup::new(TOOL_CALLS, || {
                Box::new(MistralCalls::default())
            })],
            whole: vec![],
        }
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
            tool_call_triggers: vec![TOOL_CALLS.into()],
            end_of_turn: vec![END_OF_TURN.into()],
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
        let syntax = if v11 {
            CallSyntax {
                call: &named,
                separator: "",
                list: None,
                triggers: vec![grammar::trigger(TOOL_CALLS)],
                reasoning: Some(THINK),
            }
        } else {
            CallSyntax {
                call: &listed,
                separator: "\", \"",
                list: Some((format!("{tool_calls} \"[\""), "\"]\"".into())),
                triggers: vec![grammar::trigger(TOOL_CALLS)],
                reasoning: Some(THINK),
            }
        };
        Ok(syntax.grammar(&request))
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let request = ids::shorten(request);
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
                vec![TOOL_CALLS.into()]
            } else {
                vec![]
            },
        })
    }
}

plugboard_sdk::export_adapter!(Mistral);

#[cfg(test)]
mod tests;
