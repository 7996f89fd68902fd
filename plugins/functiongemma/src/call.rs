//! Reads one `<start_function_call>call:NAME{…}<end_function_call>`, after its opening marker.
//!
//! The name is sent once its `{` is read; the arguments stream as JSON ([`ArgsReader`]); the call
//! is complete when its object closes. A call without arguments (`call:NAME<end_function_call>`)
//! has `{}`. A broken call is skipped to its end marker, so the calls after it stand.

use plugboard_sdk::calls::{BodyStep, CallBody, is_name_char};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

use crate::args::{ArgsReader, Step};
use crate::{END_CALL, START_CALL, STOPS};

const CALL_PREFIX: &str = "call:";

enum Phase {
    /// `call:NAME` up to the arguments' `{`.
    Head,
    Args(ArgsReader),
    /// The call is complete: its end marker, if it comes.
    After,
    /// The call is broken: skip to its end.
    Skip,
}

pub struct GemmaCall {
    phase: Phase,
    buf: String,
    index: Option<u32>,
}

impl Default for GemmaCall {
    fn default() -> Self {
        GemmaCall {
            phase: Phase::Head,
            buf: String::new(),
            index: None,
        }
    }
}

/// Where the call's span ends from outside its arguments: its end marker, the next call, the
/// end of the turn.
fn enders() -> Markers {
    Markers::new(std::iter::once(END_CALL).chain([START_CALL]).chain(STOPS))
}

impl GemmaCall {
    fn index(&mut self, out: &mut Emitter) -> u32 {
        *self.index.get_or_insert_with(|| out.start_call())
    }

    fn fail(&mut self, out: &mut Emitter, kind: ProblemKind, message: &str) {
        let index = self.index(out);
        out.problem(kind, format!("call {index}: {message}"), Some(index));
        self.phase = Phase::Skip;
    }

    fn run(&mut self, out: &mut Emitter, at_end: bool) -> BodyStep {
        loop {
            match &mut self.phase {
                Phase::Head => {
                    let text = self.buf.trim_start().to_string();
                    if !at_end && CALL_PREFIX.starts_with(text.as_str()) {
                        return BodyStep::More;
                    }
                    let after_prefix = text.strip_prefix(CALL_PREFIX).unwrap_or(&text);
                    let name_end = after_prefix
                        .find(|c: char| !is_name_char(c))
                        .unwrap_or(after_prefix.len());
                    let name = after_prefix[..name_end].to_string();
                    let after = after_prefix[name_end..].trim_start().to_string();
                    let after = after.as_str();
                    if after.starts_with('{') {
                        if name.is_empty() {
                            self.fail(out, ProblemKind::MissingName, "the call has no tool name");
                            continue;
                        }
                        let index = self.index(out);
                        out.begin_call(index, None, name);
                        self.buf = after.to_string();
                        self.phase = Phase::Args(ArgsReader::default());
                        continue;
                    }
                    match enders().scan(after, at_end) {
                        Scan::Marker {
                            start: 0,
                            index: 0,
                            len,
                        } => {
                            // `call:NAME<end_function_call>`: no arguments.
                            let rest = after[len..].to_string();
                            if name.is_empty() {
                                self.buf = rest;
                                self.fail(
                                    out,
                                    ProblemKind::MissingName,
                                    "the call has no tool name",
                                );
                                return BodyStep::Done {
                                    rest: std::mem::take(&mut self.buf),
                                };
                            }
                            let index = self.index(out);
                            out.begin_call(index, None, name);
                            out.arguments(index, "{}");
                            out.end_call(index);
                            return BodyStep::Done { rest };
                        }
                        Scan::Text { safe: 0 } if !at_end => return BodyStep::More,
                        _ if after.is_empty() => {
                            if at_end {
                                let message = "the output ended before the call's arguments";
                                self.fail(out, ProblemKind::Truncated, message);
                            }
                            return BodyStep::More;
                        }
                        _ => {
                            let (kind, message) = if name.is_empty() {
                                (
                                    ProblemKind::MissingName,
                                    "the call has no tool name".to_string(),
                                )
                            } else {
                                let message = format!("expected '{{' after the tool name {name}");
                                (ProblemKind::MalformedJson, message)
                            };
                            self.fail(out, kind, &message);
                        }
                    }
                }
                Phase::Args(reader) => {
                    let index = self.index.unwrap_or_default();
                    let text = std::mem::take(&mut self.buf);
                    let step = reader.push(&text, at_end, &mut |delta| out.arguments(index, delta));
                    match step {
                        Step::More => {
                            if at_end {
                                let message = "the output ended inside the arguments";
                                self.fail(out, ProblemKind::Truncated, message);
                            }
                            return BodyStep::More;
                        }
                        Step::Done { rest } => {
                            out.end_call(index);
                            self.buf = rest;
                            self.phase = Phase::After;
                        }
                        Step::Failed { message, rest } => {
                            self.buf = rest;
                            self.fail(out, ProblemKind::MalformedJson, &message);
                        }
                    }
                }
                Phase::After => {
                    let text = self.buf.trim_start();
                    if let Some(rest) = text.strip_prefix(END_CALL) {
                        return BodyStep::Done {
                            rest: rest.to_string(),
                        };
                    }
                    if !at_end && END_CALL.starts_with(text) {
                        return BodyStep::More;
                    }
                    // No end marker: what follows is output again.
                    return BodyStep::Done {
                        rest: std::mem::take(&mut self.buf),
                    };
                }
                Phase::Skip => match enders().scan(&self.buf, at_end) {
                    Scan::Marker { start, index, len } => {
                        let end = if index == 0 { start + len } else { start };
                        return BodyStep::Done {
                            rest: self.buf.split_off(end),
                        };
                    }
                    Scan::Text { safe } => {
                        self.buf.drain(..safe);
                        return BodyStep::More;
                    }
                },
            }
        }
    }
}

impl CallBody for GemmaCall {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        self.buf.push_str(text);
        self.run(out, false)
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        self.run(out, true)
    }
}
