//! Reads what follows one `[TOOL_CALLS]`, in any of Mistral's three call formats:
//!
//! - v0.3 (v3 tokenizer) and Nemo: a JSON list, `[TOOL_CALLS] [{"name": …, "arguments": …}, …]`,
//!   where the chat template writes each call's `"id"` last: a call is sent when its object
//!   closes, with that id;
//! - v11+ (Nemo, Small 3.1): `[TOOL_CALLS]NAME[ARGS]{…}`, one call per `[TOOL_CALLS]`;
//! - Small 3.2: `[TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{…}`, whose id is kept.
//!
//! The first character after the marker tells them apart: `[` or `{` starts JSON, anything
//! else a name.

use plugboard_sdk::calls::{
    ArgsRead, ArgsReader, BufferedBody, CallList, Next, Span, is_name_char, may_become,
};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

use crate::{END_OF_TURN, TOOL_CALLS};

const ARGS: &str = "[ARGS]";
const CALL_ID: &str = "[CALL_ID]";

/// Markers that end a call span from outside it: the next call, the end of the turn.
pub const STOPS: [&str; 2] = [TOOL_CALLS, END_OF_TURN];

enum Phase {
    /// Deciding between JSON and a name.
    Start,
    /// The JSON list format.
    List(Box<CallList>),
    Name,
    /// After `[CALL_ID]`: the id, up to `[ARGS]`.
    Id(String),
    Args(ArgsReader),
}

/// The text after one `[TOOL_CALLS]`. A broken call is skipped to the next call or the end of
/// the turn.
pub struct MistralCalls {
    phase: Phase,
    span: Span,
}

impl Default for MistralCalls {
    fn default() -> Self {
        MistralCalls {
            phase: Phase::Start,
            span: Span::new(None, STOPS),
        }
    }
}

/// Mistral's ids are 9 alphanumerics; other models write longer ones with `_` or `-`.
fn is_id_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-')
}

/// A call whose markup ended before any arguments: `{}`.
fn no_arguments(span: &mut Span, out: &mut Emitter) -> Next {
    let index = span.index(out);
    out.arguments(index, "{}");
    out.end_call(index);
    Next::Done {
        rest: std::mem::take(&mut span.text),
    }
}

impl BufferedBody for MistralCalls {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        let span = &mut self.span;
        match &mut self.phase {
            Phase::Start => {
                let text = span.text.trim_start();
                if text.is_empty() || may_become(text, &[ARGS, CALL_ID]) {
                    if at_end {
                        let message = "the output ended right after [TOOL_CALLS]";
                        span.fail(out, ProblemKind::Truncated, message);
                    }
                    return Next::More;
                }
                if text.starts_with(ARGS) || text.starts_with(CALL_ID) {
                    let message = "the call has no tool name before its [ARGS]";
                    span.fail(out, ProblemKind::MissingName, message);
                    return Next::Step;
                }
                // JSON, perhaps in a markdown fence, or a name.
                self.phase = if text.starts_with(['[', '{', '`']) {
                    Phase::List(Box::new(CallList::new(STOPS).ids_after()))
                } else {
                    Phase::Name
                };
                Next::Step
            }
            Phase::List(list) => span.forward(list.as_mut(), out, at_end),
            Phase::Name => {
                let text = span.text.trim_start();
                let end = text.find(|c| !is_name_char(c)).unwrap_or(text.len());
                let name = text[..end].to_string();
                let after = text[end..].trim_start();
                let consumed = span.text.len() - after.len();
                if after.is_empty() || may_become(after, &[ARGS, CALL_ID]) {
                    if at_end {
                        let message = "the output ended before the call's arguments";
                        span.fail(out, ProblemKind::Truncated, message);
                    }
                    return Next::More;
                }
                if name.is_empty() {
                    span.fail(out, ProblemKind::MissingName, "the call has no tool name");
                    return Next::Step;
                }
                if let Some(rest) = after.strip_prefix(CALL_ID) {
                    span.text = rest.to_string();
                    self.phase = Phase::Id(name);
                    return Next::Step;
                }
                let args = after
                    .strip_prefix(ARGS)
                    .or(after.starts_with('{').then_some(after));
                if let Some(args) = args.map(str::to_string) {
                    let index = span.index(out);
                    out.begin_call(index, None, name);
                    span.text = args;
                    self.phase = Phase::Args(ArgsReader::new(index));
                    return Next::Step;
                }
                match Markers::new(STOPS).scan(after, at_end) {
                    Scan::Text { safe: 0 } if !at_end => Next::More,
                    Scan::Marker { start: 0, .. } => {
                        // `[TOOL_CALLS]name` and the turn ends: a call without arguments.
                        span.text.drain(..consumed);
                        let index = span.index(out);
                        out.begin_call(index, None, name);
                        no_arguments(span, out)
                    }
                    _ => {
                        let message = format!("expected [ARGS] after the tool name {name}");
                        span.fail(out, ProblemKind::MalformedJson, message);
                        Next::Step
                    }
                }
            }
            Phase::Id(name) => {
                // The id is a run of id characters, then `[ARGS]` (or the JSON itself).
                // Anything else ends it as a broken call: an id never reaches past the
                // next `[TOOL_CALLS]`, however the text was chunked.
                let text = span.text.trim_start();
                let len = text.find(|c: char| !is_id_char(c)).unwrap_or(text.len());
                let id = text[..len].to_string();
                let after = text[len..].trim_start();
                if after.is_empty() || may_become(after, &[ARGS]) {
                    if at_end {
                        let message = "the output ended in the call's id";
                        span.fail(out, ProblemKind::Truncated, message);
                    }
                    return Next::More;
                }
                let args = after
                    .strip_prefix(ARGS)
                    .or(after.starts_with('{').then_some(after));
                let Some(args) = args.map(str::to_string) else {
                    let message = format!("expected [ARGS] after the call's id {id:?}");
                    span.fail(out, ProblemKind::MalformedJson, message);
                    return Next::Step;
                };
                let name = std::mem::take(name);
                let index = span.index(out);
                out.begin_call(index, (!id.is_empty()).then_some(id), name);
                span.text = args;
                self.phase = Phase::Args(ArgsReader::new(index));
                Next::Step
            }
            Phase::Args(reader) => {
                if reader.is_empty() {
                    let text = span.text.trim_start();
                    if text.is_empty() {
                        if at_end {
                            let message = "the output ended before the call's arguments";
                            span.fail(out, ProblemKind::Truncated, message);
                        }
                        return Next::More;
                    }
                    match Markers::new(STOPS).scan(text, at_end) {
                        Scan::Marker { start: 0, .. } => return no_arguments(span, out),
                        Scan::Text { safe: 0 } if !at_end => return Next::More,
                        _ => {}
                    }
                }
                match span.read_arguments(reader, out, at_end) {
                    ArgsRead::Complete => Next::Done {
                        rest: std::mem::take(&mut span.text),
                    },
                    ArgsRead::Broken => Next::Step,
                    ArgsRead::More => Next::More,
                }
            }
        }
    }
}
