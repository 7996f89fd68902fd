//! `pythonic`: tool calls written as a Python list of calls,
//!
//! ```text
//! [get_weather(city="Paris", unit='c'), get_time(tz="Europe/Paris")]
//! ```
//!
//! the style of Llama 3.2's pythonic prompt, Llama 4's pythonic template and models trained on
//! them. Without markup, the whole output (reasoning aside) must be such a list ([`parser`]);
//! after `<|python_start|>` (Llama 4) it is explicit and may stand anywhere, and JSON calls
//! are accepted there too, as the official Llama 4 template asks for them ([`span`]). Arguments are
//! Python literals — strings in both quote styles with escapes, numbers, `True`/`False`/`None`,
//! lists, tuples, dicts, nested — turned into a JSON object ([`pylit`]); one bad call does not
//! lose the others ([`list`]). `lenient` also accepts a list in a ```` ```python ```` or
//! ```` ```tool_code ```` fence.
//!
//! Prompts: the model's own template when the host passes one. Without one, the official
//! Llama 3.2 template, byte for byte (the SDK's `Llama3Template::LLAMA_3_2`, see [`render`]):
//! it is the nearest official template of a model that writes pythonic calls, but it asks for
//! JSON calls (`{"name": …, "parameters": …}`), so an output that is nothing but such JSON is
//! read as calls too (the SDK's bare-JSON rule).

mod args;
mod list;
mod parser;
mod pylit;
mod render;
mod span;

use plugboard_sdk::markers::MarkerTable;
use plugboard_sdk::stream::{CallMarkup, Format, Spec};
use plugboard_sdk::types::*;
use plugboard_sdk::whole::{Shape, WholeRule, could_be_json};
use plugboard_sdk::{Adapter, grammar};

pub use parser::PythonicParser;

/// Llama 4's markers around code and calls.
pub const PYTHON_START: &str = "<|python_start|>";
pub const PYTHON_END: &str = "<|python_end|>";
/// The markers around reasoning, for reasoning models trained on pythonic calls.
pub const THINK: (&str, &str) = ("<think>", "</think>");
/// End of turn and end of message of Llama 3.x (`<|eot_id|>`, `<|eom_id|>`) and Llama 4
/// (`<|eot|>`, `<|eom|>`), and end of text.
pub const END_OF_TURN: [&str; 5] = [
    "<|eot_id|>",
    "<|eom_id|>",
    "<|eot|>",
    "<|eom|>",
    "<|end_of_text|>",
];
/// The family's markers, for its parser, info, prompts and grammar.
pub const MARKERS: MarkerTable =
    MarkerTable::new(&[PYTHON_START], &END_OF_TURN).with_reasoning(THINK);

/// The SDK's bare JSON calls, held back only while the output may still be call objects:
/// `[1, 2]` is released at once, not held as a JSON prefix.
const BARE_JSON_CALLS: WholeRule = WholeRule {
    could_be: could_be_call_json,
    read: WholeRule::BARE_JSON.read,
    shape: Shape::JsonCalls,
};

fn could_be_call_json(prefix: &str) -> bool {
    let text = prefix.trim_start();
    let first = match text.strip_prefix('[') {
        Some(items) => items.trim_start(),
        None => text,
    };
    (first.is_empty() || first.starts_with('{')) && could_be_json(text)
}

pub struct Pythonic;

impl Format for Pythonic {
    fn spec(_options: &ParseOptions) -> Spec {
        let mut spec = MARKERS.spec(vec![CallMarkup::new(PYTHON_START, || {
            Box::new(span::PythonSpan::default())
        })]);
        // A stray `<|python_end|>` is removed like an end of turn.
        spec.end_of_turn.push(PYTHON_END.into());
        // Bare lists are recognised in front of this parser (`PythonicParser`); bare JSON
        // calls are what the default (official Llama 3.2) prompt asks for.
        spec.whole.push(BARE_JSON_CALLS);
        spec
    }
}

impl Adapter for Pythonic {
    type Parser = PythonicParser;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "pythonic".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Pythonic tool calls, [name(arg=value), …], as whole outputs or after <|python_start|> (Llama 3.2 template by default)".into(),
            families: ["llama3.2-pythonic", "llama4-pythonic", "toolace"]
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

    /// The calls as one Python list, `[get_weather(city="Paris"), …]`, arguments as keyword
    /// arguments. Under `auto` a list starts the output (`[` and an offered tool's name, so
    /// that prose in brackets stays free) or follows `<|python_start|>` (Llama 4).
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let mut triggers: Vec<Trigger> = grammar::callable(&request)
            .iter()
            .map(|(_, tool)| grammar::trigger_at_start(&format!("[{}(", tool.name)))
            .collect();
        triggers.extend(MARKERS.grammar_triggers());
        let open = format!("({})? \"[\"", grammar::marker(&request, PYTHON_START));
        Ok(grammar::pythonic_list(
            &request,
            &open,
            triggers,
            MARKERS.reasoning,
        ))
    }
}

plugboard_sdk::export_adapter!(Pythonic);
