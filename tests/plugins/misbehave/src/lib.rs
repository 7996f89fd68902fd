//! A test plugin that works normally until an input (or a tool name, for its call grammar)
//! contains `boom`; then, depending on the
//! cargo feature it was built with, it loops forever, panics, allocates 1 GiB, or returns
//! garbage (arguments that are not JSON; stream events for a call that never began). It also
//! writes to stderr, so the host's log capture can be seen. A push of `count` answers how many
//! pushes this instance has seen (its memory's state: 1 in every new request).

use plugboard_sdk::types::*;
use plugboard_sdk::{Adapter, StreamParse};

pub struct Misbehave;

fn misbehave(text: &str) -> Option<Vec<StreamEvent>> {
    if !text.contains("boom") {
        return None;
    }
    eprintln!("misbehave: about to misbehave");
    if cfg!(feature = "loops") {
        #[allow(clippy::empty_loop)]
        loop {}
    }
    if cfg!(feature = "panics") {
        panic!("misbehave: asked to panic");
    }
    if cfg!(feature = "allocates") {
        let mut big: Vec<u8> = Vec::with_capacity(1 << 30);
        big.resize(1 << 30, 1);
        // Kept observable: an optimiser may drop an allocation whose bytes nobody reads.
        std::hint::black_box(&mut big);
        eprintln!("misbehave: allocated {}", big.len());
    }
    Some(vec![StreamEvent::ToolCallEnd(7)])
}

pub struct Parser;

/// Pushes this instance has seen.
static PUSHES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl StreamParse for Parser {
    fn new(_: ParseOptions) -> Self {
        Parser
    }

    fn push(&mut self, delta: &str) -> Result<Vec<StreamEvent>, AdapterError> {
        let pushes = PUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if delta == "count" {
            return Ok(vec![StreamEvent::Content(format!("push {pushes}"))]);
        }
        Ok(misbehave(delta).unwrap_or_else(|| vec![StreamEvent::Content(delta.to_string())]))
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, AdapterError> {
        Ok(vec![])
    }
}

impl Adapter for Misbehave {
    type Parser = Parser;

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "misbehave".into(),
            version: "0.0.1".into(),
            description: "test plugin that fails on purpose".into(),
            families: vec![],
            capabilities: Capabilities::empty(),
            tool_call_triggers: vec![],
            end_of_turn: vec![],
        }
    }

    /// Misbehaves when a tool's name holds `boom`; has no grammar otherwise.
    fn call_grammar(request: GrammarRequest) -> Result<Option<ToolCallGrammar>, AdapterError> {
        let names: String = request.tools.iter().map(|t| t.name.as_str()).collect();
        misbehave(&names);
        Ok(None)
    }

    fn format_prompt(request: PromptRequest) -> Result<Prompt, AdapterError> {
        let text: String = request
            .messages
            .iter()
            .filter_map(|m| m.content.clone())
            .collect();
        Ok(Prompt {
            text,
            stop: vec![],
            tool_call_triggers: vec![],
            reasoning_open: false,
        })
    }

    fn parse_response(text: String, _: ParseOptions) -> Result<ParsedResponse, AdapterError> {
        if misbehave(&text).is_some() {
            // Garbage: a "call" whose arguments are not JSON.
            return Ok(ParsedResponse {
                content: None,
                reasoning: None,
                tool_calls: vec![ToolCall {
                    id: None,
                    name: "x".into(),
                    arguments: "not json".into(),
                }],
                problems: vec![],
            });
        }
        Ok(ParsedResponse {
            content: Some(text),
            reasoning: None,
            tool_calls: vec![],
            problems: vec![],
        })
    }
}

plugboard_sdk::export_adapter!(Misbehave);
