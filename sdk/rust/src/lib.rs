//! Write [plugboard](https://github.com/) model-family adapters in Rust.
//!
//! An adapter is a WebAssembly component that teaches plugboard one family of models: how a
//! conversation becomes the family's prompt ([`Adapter::format_prompt`]) and how the family's
//! raw output becomes content, reasoning and tool calls (a [`StreamParse`]r). This crate gives
//! you the bindings of the `model-adapter` WIT world and the pieces every adapter needs:
//!
//! - [`markers::MarkerTable`]: your family's markers written once — call triggers, end-of-turn
//!   tokens, reasoning — for its parser's spec, its info, its prompts and its grammar;
//! - [`stream::OutputParser`]: a complete stream parser from a [`stream::Spec`] of your
//!   family's markers — reasoning, call markup, end-of-turn tokens, fenced calls, bare calls;
//! - [`calls`]: readers for the inside of a call (JSON call objects, JSON lists of them with
//!   recovery after a broken element, streamed arguments), and [`calls::BufferedBody`] for a
//!   family's own: its steps, with buffering, call numbering and skipping broken calls done;
//! - [`scanner`]: hold back a possible partial marker at the end of a chunk;
//! - [`json`]: an incremental JSON reader, and the arguments rules (decode a JSON string once);
//! - [`whole`]: outputs that are calls by their whole shape (bare JSON, fenced JSON);
//! - [`prompt`]: ChatML and tool descriptions for prompts;
//! - [`grammar`]: the family's call syntax as a grammar, for constrained decoding;
//! - `template` (cargo feature `templates`): a model's own Hugging Face chat template, rendered
//!   byte for byte as transformers renders it;
//! - [`emit::fold`]: events back into a whole result, so parsing and streaming always agree;
//! - `testing` (cargo feature `testing`, for tests): an adapter checked natively against its
//!   fixtures, the contract's stream invariants, and random outputs.
//!
//! # A complete adapter
//!
//! Calls written as `<call>{"name": …, "arguments": {…}}</call>`, prompts in ChatML:
//!
//! ```
//! use plugboard_sdk::calls::JsonCalls;
//! use plugboard_sdk::markers::MarkerTable;
//! use plugboard_sdk::stream::{CallMarkup, Format, OutputParser, Spec};
//! use plugboard_sdk::types::*;
//! use plugboard_sdk::{prompt, Adapter};
//!
//! struct Tiny;
//!
//! const MARKERS: MarkerTable = MarkerTable::new(&["<call>"], &["<|im_end|>"]);
//!
//! impl Format for Tiny {
//!     fn spec(_: &ParseOptions) -> Spec {
//!         MARKERS.spec(vec![CallMarkup::new("<call>", || {
//!             Box::new(JsonCalls::new(Some("</call>"), false))
//!         })])
//!     }
//! }
//!
//! impl Adapter for Tiny {
//!     type Parser = OutputParser<Tiny>;
//!
//!     fn info() -> AdapterInfo {
//!         AdapterInfo {
//!             name: "tiny".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             description: "Calls in <call> tags".into(),
//!             families: vec!["tiny".into()],
//!             capabilities: Capabilities::TOOLS,
//!             tool_call_triggers: MARKERS.info_triggers(),
//!             end_of_turn: MARKERS.info_end_of_turn(),
//!         }
//!     }
//!
//!     fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
//!         let text = prompt::chatml(&request.messages, None, request.add_generation_prompt);
//!         Ok(MARKERS.prompt(text, &request))
//!     }
//! }
//!
//! // In the adapter crate (a `cdylib` built for `wasm32-wasip2`):
//! // plugboard_sdk::export_adapter!(Tiny);
//!
//! // The same code runs natively, which is how adapters are unit-tested:
//! let options = ParseOptions { tools: vec![], reasoning_open: false, lenient: false };
//! let parsed = Tiny::parse_response(
//!     "Let me look.<call>{\"name\": \"f\", \"arguments\": {\"x\": 1}}</call>".into(),
//!     options,
//! )
//! .unwrap();
//! assert_eq!(parsed.content.as_deref(), Some("Let me look."));
//! assert_eq!(parsed.tool_calls[0].name, "f");
//! assert_eq!(parsed.tool_calls[0].arguments, "{\"x\": 1}");
//! ```

pub mod calls;
pub mod emit;
pub mod grammar;
pub mod json;
pub mod markers;
mod natural;
pub mod prompt;
pub mod scanner;
pub mod stream;
#[cfg(feature = "templates")]
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;
pub mod whole;

/// The generated bindings of the `model-adapter` world (WIT: `wit/v0.2/adapter.wit`).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.2",
        world: "model-adapter",
        pub_export_macro: true,
        export_macro_name: "__export_model_adapter",
        default_bindings_module: "plugboard_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

/// The contract's types: requests, prompts, calls, problems, stream events.
pub mod types {
    pub use crate::bindings::exports::plugboard::adapter::adapter::{
        AdapterError, AdapterInfo, Capabilities, ControlToken, GrammarRequest, GrammarStart,
        Message, ModelConfig, ParseOptions, ParsedResponse, Problem, ProblemKind, Prompt,
        PromptRequest, Role, StreamEvent, Tool, ToolCall, ToolCallArguments, ToolCallBegin,
        ToolCallGrammar, ToolChoice, Trigger,
    };
}

use types::*;

/// Reads one output as it is generated; one value per generation.
pub trait StreamParse: 'static {
    fn new(options: ParseOptions) -> Self;
    /// The next piece of output; returns what is certain so far.
    fn push(&mut self, delta: &str) -> Result<Vec<StreamEvent>, AdapterError>;
    /// The output ended.
    fn finish(&mut self) -> Result<Vec<StreamEvent>, AdapterError>;
}

/// A model-family adapter. Export it with [`export_adapter!`].
///
/// Only `info`, `format_prompt` and the parser are required: whole-output parsing is the
/// stream parser fed the whole text, so the two can never disagree.
pub trait Adapter {
    type Parser: StreamParse;

    fn info() -> AdapterInfo;

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError>;

    fn parse_response(text: String, options: ParseOptions) -> Result<ParsedResponse, AdapterError> {
        let mut parser = Self::Parser::new(options);
        let mut events = parser.push(&text)?;
        events.extend(parser.finish()?);
        Ok(emit::fold(events))
    }

    fn extract_tool_calls(
        text: String,
        options: ParseOptions,
    ) -> Result<Vec<ToolCall>, AdapterError> {
        Ok(Self::parse_response(text, options)?.tool_calls)
    }

    /// The family's call syntax as a grammar, for constrained decoding (see [`grammar`]).
    /// Without one, calls are checked only after they were generated.
    fn call_grammar(_request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        Ok(None)
    }
}

/// The `stream-parser` resource around any [`StreamParse`]r.
#[doc(hidden)]
pub struct ParserResource<P>(std::cell::RefCell<P>);

impl<P: StreamParse> bindings::exports::plugboard::adapter::adapter::GuestStreamParser
    for ParserResource<P>
{
    fn new(options: ParseOptions) -> Self {
        ParserResource(std::cell::RefCell::new(P::new(options)))
    }

    fn push(&self, delta: String) -> Result<Vec<StreamEvent>, AdapterError> {
        self.0.borrow_mut().push(&delta)
    }

    fn finish(&self) -> Result<Vec<StreamEvent>, AdapterError> {
        self.0.borrow_mut().finish()
    }
}

/// Exports an [`Adapter`] as the component's `model-adapter` world.
///
/// ```ignore
/// plugboard_sdk::export_adapter!(MyAdapter);
/// ```
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        #[doc(hidden)]
        pub struct __PlugboardExport;

        impl $crate::bindings::exports::plugboard::adapter::adapter::Guest for __PlugboardExport {
            type StreamParser = $crate::ParserResource<<$adapter as $crate::Adapter>::Parser>;

            fn info() -> $crate::types::AdapterInfo {
                <$adapter as $crate::Adapter>::info()
            }

            fn format_prompt(
                request: $crate::types::PromptRequest,
            ) -> Result<$crate::types::Prompt, $crate::types::AdapterError> {
                <$adapter as $crate::Adapter>::format_prompt(request)
            }

            fn parse_response(
                text: String,
                options: $crate::types::ParseOptions,
            ) -> Result<$crate::types::ParsedResponse, $crate::types::AdapterError> {
                <$adapter as $crate::Adapter>::parse_response(text, options)
            }

            fn extract_tool_calls(
                text: String,
                options: $crate::types::ParseOptions,
            ) -> Result<Vec<$crate::types::ToolCall>, $crate::types::AdapterError> {
                <$adapter as $crate::Adapter>::extract_tool_calls(text, options)
            }

            fn call_grammar(
                request: $crate::types::GrammarRequest,
            ) -> Result<Option<$crate::types::ToolCallGrammar>, $crate::types::AdapterError> {
                <$adapter as $crate::Adapter>::call_grammar(request)
            }
        }

        // Only a wasm build exports the world: the export symbols' names (`plugboard:adapter/…`)
        // are not valid in native linker scripts, and natively the crate is for tests.
        #[cfg(target_family = "wasm")]
        $crate::bindings::__export_model_adapter!(__PlugboardExport with_types_in $crate::bindings);
    };
}
