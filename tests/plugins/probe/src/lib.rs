//! A test plugin for hot swap: its content is always `vX` so a caller can tell which version
//! answered. Built twice (with and without the `v2` feature) as two versions of one adapter.
//! Its call grammar is broken on purpose.

use plugboard_sdk::types::*;
use plugboard_sdk::{Adapter, StreamParse};

pub struct Probe;

const VERSION: &str = if cfg!(feature = "v2") {
    "2.0.0"
} else {
    "1.0.0"
};
const ANSWER: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

pub struct Parser;

impl StreamParse for Parser {
    fn new(_: ParseOptions) -> Self {
        Parser
    }

    fn push(&mut self, _delta: &str) -> Result<Vec<StreamEvent>, AdapterError> {
        Ok(vec![])
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, AdapterError> {
        Ok(vec![StreamEvent::Content(ANSWER.into())])
    }
}

impl Adapter for Probe {
    type Parser = Parser;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "probe".into(),
            version: VERSION.into(),
            description: "test plugin that names its version".into(),
            families: vec!["test".into()],
            capabilities: Capabilities::empty(),
            tool_call_triggers: vec![],
            end_of_turn: vec![],
        }
    }

    fn format_prompt(_: PromptRequest) -> Result<Prompt, AdapterError> {
        Ok(Prompt {
            text: ANSWER.into(),
            stop: vec![],
            tool_call_triggers: vec![],
            reasoning_open: false,
        })
    }

    /// A grammar that does not compile: a request must still be served, unconstrained.
    fn call_grammar(_: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        Ok(Some(ToolCallGrammar {
            grammar: "start: %json {".into(),
            start: GrammarStart::OnTrigger(vec![]),
            reasoning: None,
        }))
    }
}

plugboard_sdk::export_adapter!(Probe);
