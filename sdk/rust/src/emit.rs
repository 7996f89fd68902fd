//! Building the events of a stream parser so that they keep the contract's invariants, and
//! folding events back into a whole [`ParsedResponse`].

use crate::types::{
    ParsedResponse, Problem, ProblemKind, StreamEvent, Tool, ToolCall, ToolCallArguments,
    ToolCallBegin,
};

/// Text that is trimmed at both ends while it streams: leading whitespace is dropped, trailing
/// whitespace is held back until something else follows it, and dropped at the end. The deltas
/// therefore concatenate to exactly the trimmed whole.
#[derive(Clone, Debug, Default)]
struct TrimmedText {
    started: bool,
    trailing: String,
}

impl TrimmedText {
    fn push(&mut self, text: &str) -> Option<String> {
        let text = if self.started {
            text
        } else {
            text.trim_start()
        };
        if text.is_empty() {
            return None;
        }
        self.started = true;
        let body = text.trim_end();
        if body.is_empty() {
            self.trailing.push_str(text);
            return None;
        }
        let mut out = std::mem::take(&mut self.trailing);
        out.push_str(body);
        self.trailing.push_str(&text[body.len()..]);
        Some(out)
    }
}

/// Collects stream events for one generation.
///
/// It trims content and reasoning, numbers calls, reports calls of tools the request did not
/// offer as `unknown-tool`, and drops empty deltas. Parsers call it; [`Emitter::take`] hands
/// the events over.
#[derive(Clone, Debug, Default)]
pub struct Emitter {
    events: Vec<StreamEvent>,
    content: TrimmedText,
    reasoning: TrimmedText,
    next_index: u32,
    offered: Vec<String>,
    /// Content is sent as reasoning (see [`Emitter::content_as_reasoning`]).
    diverted: bool,
}

impl Emitter {
    /// `tools`: the tools offered. When empty, tool names are not checked.
    pub fn new(tools: &[Tool]) -> Self {
        Emitter {
            offered: tools.iter().map(|t| t.name.clone()).collect(),
            ..Default::default()
        }
    }

    /// From now on, text given as content is reasoning: for the text around calls inside a
    /// reasoning block that never closed.
    pub fn content_as_reasoning(&mut self) {
        self.diverted = true;
    }

    /// Plain output text (markers already removed).
    pub fn content(&mut self, text: &str) {
        if self.diverted {
            return self.reasoning(text);
        }
        if let Some(text) = self.content.push(text) {
            match self.events.last_mut() {
                Some(StreamEvent::Content(last)) => last.push_str(&text),
                _ => self.events.push(StreamEvent::Content(text)),
            }
        }
    }

    /// Reasoning text (markers already removed).
    pub fn reasoning(&mut self, text: &str) {
        if let Some(text) = self.reasoning.push(text) {
            match self.events.last_mut() {
                Some(StreamEvent::Reasoning(last)) => last.push_str(&text),
                _ => self.events.push(StreamEvent::Reasoning(text)),
            }
        }
    }

    /// Whether any content has been sent (or is held back as trailing whitespace).
    pub fn has_content(&self) -> bool {
        self.content.started
    }

    /// How many calls have been started.
    pub fn calls_started(&self) -> u32 {
        self.next_index
    }

    /// Reserves the index of a new call attempt.
    pub fn start_call(&mut self) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    /// Whether `name` is one of the offered tools (always true when none were offered).
    pub fn is_offered(&self, name: &str) -> bool {
        self.offered.is_empty() || self.offered.iter().any(|t| t == name)
    }

    /// Sends a call's name (and id). Reports an `unknown-tool` problem for a name that was not
    /// offered; the call goes on.
    pub fn begin_call(&mut self, index: u32, id: Option<String>, name: String) {
        let unknown = (!self.is_offered(&name)).then(|| {
            format!(
                "call {index} names the tool '{name}', which the request did not offer (offered: {})",
                self.offered.join(", ")
            )
        });
        self.events.push(StreamEvent::ToolCallBegin(ToolCallBegin {
            index,
            id,
            name,
        }));
        if let Some(message) = unknown {
            self.problem(ProblemKind::UnknownTool, message, Some(index));
        }
    }

    /// Sends a piece of a call's arguments.
    pub fn arguments(&mut self, index: u32, delta: &str) {
        if delta.is_empty() {
            return;
        }
        match self.events.last_mut() {
            Some(StreamEvent::ToolCallArguments(last)) if last.index == index => {
                last.delta.push_str(delta)
            }
            _ => self
                .events
                .push(StreamEvent::ToolCallArguments(ToolCallArguments {
                    index,
                    delta: delta.to_string(),
                })),
        }
    }

    /// The call is complete.
    pub fn end_call(&mut self, index: u32) {
        self.events.push(StreamEvent::ToolCallEnd(index));
    }

    /// Reports a problem, for a call (`index`) or the whole output.
    pub fn problem(&mut self, kind: ProblemKind, message: impl Into<String>, index: Option<u32>) {
        self.events.push(StreamEvent::Problem(Problem {
            kind,
            message: message.into(),
            index,
        }));
    }

    /// Hands over the events gathered so far.
    pub fn take(&mut self) -> Vec<StreamEvent> {
        std::mem::take(&mut self.events)
    }
}

/// Folds stream events into the whole result: what `parse-response` returns for the same text.
pub fn fold(events: impl IntoIterator<Item = StreamEvent>) -> ParsedResponse {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut open: Vec<(u32, ToolCall)> = Vec::new();
    let mut calls = Vec::new();
    let mut problems = Vec::new();
    for event in events {
        match event {
            StreamEvent::Content(t) => content.push_str(&t),
            StreamEvent::Reasoning(t) => reasoning.push_str(&t),
            StreamEvent::ToolCallBegin(b) => open.push((
                b.index,
                ToolCall {
                    id: b.id,
                    name: b.name,
                    arguments: String::new(),
                },
            )),
            StreamEvent::ToolCallArguments(a) => {
                if let Some((_, call)) = open.iter_mut().find(|(i, _)| *i == a.index) {
                    call.arguments.push_str(&a.delta);
                }
            }
            StreamEvent::ToolCallEnd(index) => {
                if let Some(pos) = open.iter().position(|(i, _)| *i == index) {
                    calls.push(open.remove(pos).1);
                }
            }
            StreamEvent::Problem(p) => problems.push(p),
        }
    }
    ParsedResponse {
        content: (!content.is_empty()).then_some(content),
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        tool_calls: calls,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_deltas_concatenate_to_the_trimmed_whole() {
        let pieces = ["  \n", " Hello", " ", "\n", "world ", " ", "\n\n"];
        let mut t = TrimmedText::default();
        let out: String = pieces.iter().filter_map(|p| t.push(p)).collect();
        assert_eq!(out, "Hello \nworld");
        assert_eq!(out, pieces.concat().trim());
    }

    #[test]
    fn fold_keeps_complete_calls_and_problems() {
        let mut e = Emitter::new(&[]);
        e.content(" hi ");
        let a = e.start_call();
        e.begin_call(a, None, "f".into());
        e.arguments(a, "{\"x\":");
        e.arguments(a, " 1}");
        e.end_call(a);
        let b = e.start_call();
        e.begin_call(b, None, "g".into());
        e.problem(ProblemKind::Truncated, "cut", Some(b));
        let r = fold(e.take());
        assert_eq!(r.content.as_deref(), Some("hi"));
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].arguments, "{\"x\": 1}");
        assert_eq!(r.problems.len(), 1);
    }
}
