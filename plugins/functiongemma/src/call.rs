//! Reads one `<start_function_call>call:NAME{…}<end_function_call>`, after its opening marker.
//!
//! The name is sent once its `{` is read; the arguments stream as JSON ([`ArgsReader`]); the call
//! is complete when its object closes. A call without arguments (`call:NAME<end_function_call>`)
//! has `{}`. A broken call is skipped to its end marker, so the calls after it stand.

use plugboard_sdk::calls::{BufferedBody, Next, Span, is_name_char};
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
}

/// One call. A broken one is skipped to its end marker, or to where the next call or the end
/// of the turn shows that the marker is missing.
pub struct GemmaCall {
    phase: Phase,
    span: Span,
}

impl Default for GemmaCall {
    fn default() -> Self {
        GemmaCall {
            phase: Phase::Head,
            span: Span::new(Some(END_CALL), std::iter::once(START_CALL).chain(STOPS)),
        }
    }
}

/// Where the call's span ends from outside its arguments: its end marker, the next call, the
/// end of the turn.
fn enders() -> Markers {
    Markers::new(std::iter::once(END_CALL).chain([START_CALL]).chain(STOPS))
}

impl BufferedBody for GemmaCall {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        let span = &mut self.span;
        match &mut self.phase {
            Phase::Head => {
                let text = span.text.trim_start().to_string();
                if !at_end && CALL_PREFIX.starts_with(text.as_str()) {
                    return Next::More;
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
                        span.fail(out, ProblemKind::MissingName, "the call has no tool name");
                        return Next::Step;
                    }
                    let index = span.index(out);
                    out.begin_call(index, None, name);
                    span.text = after.to_string();
                    self.phase = Phase::Args(ArgsReader::default());
                    return Next::Step;
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
                            span.fail(out, ProblemKind::MissingName, "the call has no tool name");
                            return Next::Done { rest };
                        }
                        let index = span.index(out);
                        out.begin_call(index, None, name);
                        out.arguments(index, "{}");
                        out.end_call(index);
                        Next::Done { rest }
                    }
                    Scan::Text { safe: 0 } if !at_end => Next::More,
                    _ if after.is_empty() => {
                        if at_end {
                            let message = "the output ended before the call's arguments";
                            span.fail(out, ProblemKind::Truncated, message);
                        }
                        Next::More
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
                        span.fail(out, kind, message);
                        Next::Step
                    }
                }
            }
            Phase::Args(reader) => {
                let index = span.index(out);
                let text = std::mem::take(&mut span.text);
                let step = reader.push(&text, at_end, &mut |delta| out.arguments(index, delta));
                match step {
                    Step::More => {
                        if at_end {
                            let message = "the output ended inside the arguments";
                            span.fail(out, ProblemKind::Truncated, message);
                        }
                        return Next::More;
                    }
                    Step::Done { rest } => {
                        out.end_call(index);
                        span.text = rest;
                        self.phase = Phase::After;
                    }
                    Step::Failed { message, rest } => {
                        span.text = rest;
                        span.fail(out, ProblemKind::MalformedJson, message);
                    }
                }
                Next::Step
            }
            Phase::After => {
                let text = span.text.trim_start();
                if let Some(rest) = text.strip_prefix(END_CALL) {
                    return Next::Done {
                        rest: rest.to_string(),
                    };
                }
                if !at_end && END_CALL.starts_with(text) {
                    return Next::More;
                }
                // No end marker: what follows is output again.
                Next::Done {
                    rest: std::mem::take(&mut span.text),
                }
            }
        }
    }
}
