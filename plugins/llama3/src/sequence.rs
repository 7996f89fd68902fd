//! The calls after `<|python_tag|>` (and a bare output found to be calls): JSON call objects,
//! one after the other, separated by `;`, commas, line breaks or wrapped in a list:
//!
//! ```text
//! {"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {}}
//! ```
//!
//! Each object is read by the SDK's [`JsonCalls`], so names and arguments stream. A built-in
//! tool call (`brave_search.call(query="…")`, see [`crate::builtin`]) may stand instead. Unlike a
//! single `JsonCalls` over the whole span, a broken object does not end the span: reading
//! resumes at the next object that starts after a `;` or a line break, so the calls after it
//! stand.

use plugboard_sdk::calls::{BodyStep, BufferedBody, CallBody, JsonCalls, Next, Span};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::json::JsonScanner;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

use crate::builtin;

/// What may stand between call objects.
pub fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | ',' | '[' | ']')
}

enum Phase {
    /// Before an object: separators, another object, or the end of the calls.
    Between,
    /// Inside an object. `scanner` finds where it ends (or breaks); `calls` reads it.
    Value {
        calls: Box<JsonCalls>,
        scanner: JsonScanner,
    },
    /// After a broken object: skipping to the next object or the end of the turn.
    Skip,
    /// Inside the arguments of a built-in tool call, `NAME.call(…)`.
    Builtin { index: u32 },
}

/// Where reading resumes after a broken object.
enum Resync {
    /// The next object starts here.
    Object(usize),
    /// An end-of-turn marker starts here: the calls are over.
    End(usize),
    /// Nothing yet; the text from here on must be kept until more comes.
    Wait(usize),
}

pub struct CallSequence {
    phase: Phase,
    /// Nothing is skipped to a marker: a broken object is skipped to the next one ([`Resync`]).
    span: Span,
    /// Objects begun so far.
    values: usize,
    end_of_turn: Markers,
}

impl CallSequence {
    /// `end_of_turn`: markers that end the calls (a broken object is skipped up to them).
    pub fn new(end_of_turn: &[&'static str]) -> Self {
        CallSequence {
            phase: Phase::Between,
            span: Span::default(),
            values: 0,
            end_of_turn: Markers::new(end_of_turn.iter().copied()),
        }
    }

    fn resync(&self, at_end: bool) -> Resync {
        let (limit, marker) = match self.end_of_turn.scan(&self.span.text, at_end) {
            Scan::Marker { start, .. } => (start, true),
            Scan::Text { safe } => (safe, false),
        };
        let head = &self.span.text[..limit];
        for (i, _) in head.char_indices().filter(|(_, c)| matches!(c, ';' | '\n')) {
            let after = &head[i + 1..];
            let next = after.trim_start();
            if next.starts_with('{') {
                return Resync::Object(limit - next.len());
            }
            if next.is_empty() && !marker && !at_end {
                return Resync::Wait(i);
            }
        }
        if marker || at_end {
            Resync::End(limit)
        } else {
            Resync::Wait(limit)
        }
    }
}

impl BufferedBody for CallSequence {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        match &mut self.phase {
            Phase::Between => {
                let rest = self.span.text.trim_start_matches(is_separator);
                if rest.is_empty() {
                    if !at_end {
                        return Next::More;
                    }
                    if self.values == 0 {
                        let index = out.start_call();
                        out.problem(
                            ProblemKind::Truncated,
                            format!("call {index}: the output ended right after the call marker"),
                            Some(index),
                        );
                    }
                    self.span.text.clear();
                    return Next::Done {
                        rest: String::new(),
                    };
                }
                if rest.starts_with('{') {
                    let skip = self.span.text.len() - rest.len();
                    self.span.text.drain(..skip);
                    self.values += 1;
                    self.phase = Phase::Value {
                        calls: Box::new(JsonCalls::new(None, false)),
                        scanner: JsonScanner::new(),
                    };
                    return Next::Step;
                }
                if self.values == 0 {
                    let skip = self.span.text.len() - rest.len();
                    match builtin::opening(rest) {
                        builtin::Opening::Call { name, len } => {
                            let index = out.start_call();
                            out.begin_call(index, None, name.to_string());
                            self.span.text.drain(..skip + len);
                            self.values += 1;
                            self.phase = Phase::Builtin { index };
                            return Next::Step;
                        }
                        builtin::Opening::Undecided if !at_end => return Next::More,
                        _ => {}
                    }
                }
                // Not a call object: the calls are over (or never started).
                if self.values == 0 {
                    let index = out.start_call();
                    out.problem(
                        ProblemKind::MalformedJson,
                        format!("call {index}: expected a JSON call object"),
                        Some(index),
                    );
                }
                let rest = self.span.text.trim_start().to_string();
                self.span.text.clear();
                return Next::Done { rest };
            }
            Phase::Value { calls, scanner } => {
                let text = std::mem::take(&mut self.span.text);
                let mut end = None;
                let mut broken = false;
                for (i, b) in text.bytes().enumerate() {
                    if scanner.feed(b).is_err() {
                        broken = true;
                        end = Some(i + 1);
                        break;
                    }
                    if scanner.is_done() {
                        end = Some(i + 1);
                        break;
                    }
                }
                let Some(mut end) = end else {
                    calls.push(&text, out);
                    return Next::More;
                };
                // The bad byte may start a multi-byte character: hand over all of it.
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                // The same bytes make `calls` end the call, or report the bad JSON.
                calls.push(&text[..end], out);
                self.span.text = text[end..].to_string();
                self.phase = if broken { Phase::Skip } else { Phase::Between };
            }
            Phase::Builtin { index } => {
                let index = *index;
                let Some(end) = builtin::arguments_end(&self.span.text) else {
                    if at_end {
                        out.problem(
                            ProblemKind::Truncated,
                            format!("call {index}: the output ended inside the call"),
                            Some(index),
                        );
                        self.span.text.clear();
                        return Next::Done {
                            rest: String::new(),
                        };
                    }
                    return Next::More;
                };
                match builtin::arguments_json(&self.span.text[..end - 1]) {
                    Ok(arguments) => {
                        out.arguments(index, &arguments);
                        out.end_call(index);
                    }
                    Err(message) => out.problem(
                        ProblemKind::InvalidArguments,
                        format!("call {index}: {message}"),
                        Some(index),
                    ),
                }
                let rest = self.span.text[end..].to_string();
                self.span.text.clear();
                return Next::Done { rest };
            }
            Phase::Skip => match self.resync(at_end) {
                Resync::Object(at) => {
                    self.span.text.drain(..at);
                    self.phase = Phase::Between;
                }
                Resync::End(at) => {
                    let rest = self.span.text[at..].to_string();
                    self.span.text.clear();
                    return Next::Done { rest };
                }
                Resync::Wait(at) => {
                    self.span.text.drain(..at);
                    return Next::More;
                }
            },
        }
        Next::Step
    }

    fn ended(&mut self, out: &mut Emitter) -> BodyStep {
        if let Phase::Value { calls, .. } = &mut self.phase {
            // The output ended inside an object: `calls` reports it truncated.
            calls.finish(out);
        }
        BodyStep::Done {
            rest: String::new(),
        }
    }
}
