//! The stream parser: the SDK's [`OutputParser`] for reasoning, `<|python_start|>` spans, bare
//! JSON calls and end-of-turn tokens, behind a gate that holds the output back while it may
//! still be a list of calls ([`Decider`]).
//!
//! Reasoning (`<think>…</think>` at the start, or all of it up to `</think>` when the prompt
//! left reasoning open) passes straight through. What follows is held while it reads as the
//! start of `[name(arg=value), …]`; the moment it cannot (`[1, 2]`, `[Note]`, prose after `]`)
//! everything held is released as content. An output that ends as a list of calls, complete or
//! cut off inside a call, is read as if it followed `<|python_start|>`, so it gets the same
//! per-call problems as a tagged one.

use plugboard_sdk::StreamParse;
use plugboard_sdk::calls::{BodyStep, CallBody, FENCE};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::stream::OutputParser;
use plugboard_sdk::types::{AdapterError, ParseOptions, StreamEvent};

use crate::list::PyList;
use crate::{END_OF_TURN, PYTHON_START, Pythonic, THINK};

/// Info strings of a fence around a call list (`tool_code` is Gemma's), with `lenient`.
const FENCE_INFO: [&str; 4] = ["", "python", "py", "tool_code"];

/// What the output held so far is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Undecided,
    NotList,
    List,
}

/// Watches the output after reasoning while it may be a list of calls.
struct Decider {
    /// All of it so far.
    held: String,
    /// Where the list starts in `held` (after a fence line); `None` until known.
    start: Option<usize>,
    fenced: bool,
    lenient: bool,
    /// Reads the list to see whether it stays one; its events are thrown away.
    probe: PyList,
    scratch: Emitter,
    /// The text after the list's `]`.
    trailing: Option<String>,
    end_of_turn: Markers,
}

impl Decider {
    fn new(lenient: bool) -> Self {
        Decider {
            held: String::new(),
            start: None,
            fenced: false,
            lenient,
            probe: PyList::whole(),
            scratch: Emitter::default(),
            trailing: None,
            end_of_turn: Markers::new(END_OF_TURN),
        }
    }

    /// Where the list starts, once known; `Err` when the output cannot be a list.
    fn find_start(&mut self, at_end: bool) -> Result<Option<usize>, ()> {
        let text = self.held.trim_start();
        let lead = self.held.len() - text.len();
        if text.is_empty() {
            return if at_end { Err(()) } else { Ok(None) };
        }
        if !self.lenient {
            return Ok(Some(lead));
        }
        let Some(info) = text.strip_prefix(FENCE) else {
            return match FENCE.starts_with(text) && !at_end {
                true => Ok(None),
                false => Ok(Some(lead)),
            };
        };
        match info.find('\n') {
            // Judged alike whether the line break came with the info string or later.
            Some(newline) if newline <= 12 && FENCE_INFO.contains(&info[..newline].trim()) => {
                self.fenced = true;
                Ok(Some(lead + FENCE.len() + newline + 1))
            }
            Some(_) => Err(()),
            None if at_end || info.len() > 12 => Err(()),
            None => Ok(None),
        }
    }

    /// Whether the text after `]` may still be nothing but a closing fence, end-of-turn
    /// markers and white space.
    fn trailing_verdict(&self, at_end: bool) -> Verdict {
        let mut text = self.trailing.as_deref().unwrap_or("").trim_start();
        if self.fenced {
            match text.strip_prefix(FENCE) {
                Some(rest) => text = rest,
                None if FENCE.starts_with(text) && !at_end => return Verdict::Undecided,
                None => return Verdict::NotList,
            }
        }
        loop {
            text = text.trim_start();
            if text.is_empty() {
                break;
            }
            match self.end_of_turn.scan(text, at_end) {
                Scan::Marker { start: 0, len, .. } => text = &text[len..],
                Scan::Text { safe: 0 } if !at_end => return Verdict::Undecided,
                _ => return Verdict::NotList,
            }
        }
        if at_end {
            self.final_verdict()
        } else {
            Verdict::Undecided
        }
    }

    fn final_verdict(&self) -> Verdict {
        if self.probe.attempted() && !self.probe.broken() {
            Verdict::List
        } else {
            Verdict::NotList
        }
    }

    /// Feeds the probe; notes where the list ended.
    fn feed(&mut self, text: &str, at_end: bool) {
        let step = if at_end {
            let step = self.probe.push(text, &mut self.scratch);
            match step {
                BodyStep::More => self.probe.finish(&mut self.scratch),
                done => done,
            }
        } else {
            self.probe.push(text, &mut self.scratch)
        };
        self.scratch.take();
        if let BodyStep::Done { rest } = step {
            self.trailing = Some(rest);
        }
    }

    /// Takes more output (`at_end`: the output is over) and says what it is now.
    fn step(&mut self, delta: &str, at_end: bool) -> Verdict {
        let fed_before = self.held.len();
        self.held.push_str(delta);
        let new_text = match self.start {
            Some(_) => fed_before,
            None => match self.find_start(at_end) {
                Err(()) => return Verdict::NotList,
                Ok(None) => return Verdict::Undecided,
                Ok(Some(start)) => {
                    self.start = Some(start);
                    start
                }
            },
        };
        match &mut self.trailing {
            Some(trailing) => trailing.push_str(&self.held[new_text..]),
            None => {
                let text = self.held[new_text..].to_string();
                self.feed(&text, at_end);
            }
        }
        if self.probe.broken() {
            return Verdict::NotList;
        }
        match self.trailing {
            Some(_) => self.trailing_verdict(at_end),
            None if at_end => self.final_verdict(),
            None => Verdict::Undecided,
        }
    }

    /// The list's text, without the fence and what follows the list.
    fn list_text(&self) -> &str {
        let start = self.start.unwrap_or(0);
        let end = self.held.len() - self.trailing.as_ref().map_or(0, String::len);
        &self.held[start..end.max(start)]
    }
}

enum Phase {
    /// Only white space so far: a reasoning block may open.
    Lead(String),
    /// Inside reasoning; the text not yet handed on (a possible partial `</think>`).
    Reasoning(String),
    Deciding(Box<Decider>),
    /// Ordinary output: everything goes to the inner parser.
    Passing,
}

pub struct PythonicParser {
    inner: OutputParser<Pythonic>,
    phase: Phase,
    lenient: bool,
    think_close: Markers,
}

impl PythonicParser {
    /// Hands text on to the phase after `Lead` or `Reasoning`: the decider.
    fn decide(&mut self, text: &str, events: &mut Vec<StreamEvent>) -> Result<(), AdapterError> {
        let mut decider = Box::new(Decider::new(self.lenient));
        match decider.step(text, false) {
            Verdict::NotList => {
                self.phase = Phase::Passing;
                events.extend(self.inner.push(&decider.held)?);
            }
            _ => self.phase = Phase::Deciding(decider),
        }
        Ok(())
    }

    fn run(&mut self, delta: &str) -> Result<Vec<StreamEvent>, AdapterError> {
        let mut events = Vec::new();
        match &mut self.phase {
            Phase::Passing => events = self.inner.push(delta)?,
            Phase::Lead(lead) => {
                lead.push_str(delta);
                let text = lead.trim_start();
                if let Some(after) = text.strip_prefix(THINK.0) {
                    let opened = lead.len() - after.len();
                    let after = after.to_string();
                    events = self.inner.push(&lead[..opened])?;
                    self.phase = Phase::Reasoning(String::new());
                    events.extend(self.run(&after)?);
                } else if text.is_empty() || THINK.0.starts_with(text) {
                    // Wait: it may become `<think>`.
                } else {
                    let text = std::mem::take(lead);
                    self.decide(&text, &mut events)?;
                }
            }
            Phase::Reasoning(pending) => {
                pending.push_str(delta);
                match self.think_close.scan(pending, false) {
                    Scan::Marker { start, len, .. } => {
                        let rest = pending[start + len..].to_string();
                        let reasoning = pending[..start + len].to_string();
                        events = self.inner.push(&reasoning)?;
                        self.decide(&rest, &mut events)?;
                    }
                    Scan::Text { safe } => {
                        let reasoning: String = pending.drain(..safe).collect();
                        events = self.inner.push(&reasoning)?;
                    }
                }
            }
            Phase::Deciding(decider) => match decider.step(delta, false) {
                Verdict::NotList => {
                    let held = std::mem::take(&mut decider.held);
                    self.phase = Phase::Passing;
                    events = self.inner.push(&held)?;
                }
                Verdict::Undecided | Verdict::List => {}
            },
        }
        Ok(events)
    }
}

impl StreamParse for PythonicParser {
    fn new(options: ParseOptions) -> Self {
        PythonicParser {
            phase: if options.reasoning_open {
                Phase::Reasoning(String::new())
            } else {
                Phase::Lead(String::new())
            },
            lenient: options.lenient,
            think_close: Markers::new([THINK.1]),
            inner: OutputParser::new(options),
        }
    }

    fn push(&mut self, delta: &str) -> Result<Vec<StreamEvent>, AdapterError> {
        self.run(delta)
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, AdapterError> {
        let rest = match std::mem::replace(&mut self.phase, Phase::Passing) {
            Phase::Lead(text) | Phase::Reasoning(text) => text,
            Phase::Deciding(mut decider) => match decider.step("", true) {
                Verdict::List => format!("{PYTHON_START}{}", decider.list_text()),
                Verdict::NotList | Verdict::Undecided => std::mem::take(&mut decider.held),
            },
            Phase::Passing => String::new(),
        };
        let mut events = self.inner.push(&rest)?;
        events.extend(self.inner.finish()?);
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::types::Tool;

    fn parser() -> PythonicParser {
        PythonicParser::new(ParseOptions {
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: "{}".into(),
            }],
            reasoning_open: false,
            lenient: false,
        })
    }

    fn content(events: &[StreamEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Content(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn prose_is_released_as_soon_as_it_cannot_be_calls() {
        let mut p = parser();
        assert_eq!(content(&p.push("[").unwrap()), "");
        assert_eq!(content(&p.push("1, 2").unwrap()), "[1, 2");
        let mut p = parser();
        assert!(p.push("[f(a='x'), f(b=[1,").unwrap().is_empty());
        assert!(p.push(" 2])]").unwrap().is_empty());
        assert_eq!(
            content(&p.push(" is it").unwrap()),
            "[f(a='x'), f(b=[1, 2])] is it"
        );
    }

    #[test]
    fn a_list_is_calls_only_at_the_end() {
        let mut p = parser();
        assert!(p.push("[f(a='x')]<|eot_id|>").unwrap().is_empty());
        let events = p.finish().unwrap();
        assert!(matches!(&events[0], StreamEvent::ToolCallBegin(b) if b.name == "f"));
    }
}
