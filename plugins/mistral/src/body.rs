//! Reads what follows one `[TOOL_CALLS]`, in any of Mistral's three call formats:
//!
//! - v0.3 (v3 tokenizer) and Nemo: a JSON list, `[TOOL_CALLS] [{"name": …, "arguments": …}, …]`;
//! - v11+ (Nemo, Small 3.1): `[TOOL_CALLS]NAME[ARGS]{…}`, one call per `[TOOL_CALLS]`;
//! - Small 3.2: `[TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{…}`, whose id is kept.
//!
//! The first character after the marker tells them apart: `[` or `{` starts JSON, anything
//! else a name.

use plugboard_sdk::calls::{
    ArgsReader, ArgsStep, BodyStep, CallBody, CallList, is_name_char, may_become,
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
    /// The call is broken: skip to the next call or the end of the turn.
    Skip,
}

/// The text after one `[TOOL_CALLS]`.
pub struct MistralCalls {
    phase: Phase,
    buf: String,
    index: Option<u32>,
}

impl Default for MistralCalls {
    fn default() -> Self {
        MistralCalls {
            phase: Phase::Start,
            buf: String::new(),
            index: None,
        }
    }
}

/// Mistral's ids are 9 alphanumerics; other models write longer ones with `_` or `-`.
fn is_id_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-')
}

impl MistralCalls {
    fn index(&mut self, out: &mut Emitter) -> u32 {
        *self.index.get_or_insert_with(|| out.start_call())
    }

    fn fail(&mut self, out: &mut Emitter, kind: ProblemKind, message: &str) {
        let index = self.index(out);
        out.problem(kind, format!("call {index}: {message}"), Some(index));
        self.phase = Phase::Skip;
    }

    /// A call whose markup ended before any arguments: `{}`.
    fn no_arguments(&mut self, out: &mut Emitter) -> BodyStep {
        let index = self.index(out);
        out.arguments(index, "{}");
        out.end_call(index);
        BodyStep::Done {
            rest: std::mem::take(&mut self.buf),
        }
    }

    fn run(&mut self, out: &mut Emitter, at_end: bool) -> BodyStep {
        loop {
            match &mut self.phase {
                Phase::Start => {
                    let text = self.buf.trim_start();
                    if text.is_empty() || may_become(text, &[ARGS, CALL_ID]) {
                        if at_end {
                            let message = "the output ended right after [TOOL_CALLS]";
                            self.fail(out, ProblemKind::Truncated, message);
                        }
                        return BodyStep::More;
                    }
                    if text.starts_with(ARGS) || text.starts_with(CALL_ID) {
                        let message = "the call has no tool name before its [ARGS]";
                        self.fail(out, ProblemKind::MissingName, message);
                        continue;
                    }
                    // JSON, perhaps in a markdown fence, or a name.
                    self.phase = if text.starts_with(['[', '{', '`']) {
                        Phase::List(Box::new(CallList::new(STOPS)))
                    } else {
                        Phase::Name
                    };
                }
                Phase::List(list) => {
                    let text = std::mem::take(&mut self.buf);
                    let step = list.push(&text, out);
                    return match step {
                        BodyStep::More if at_end => list.finish(out),
                        step => step,
                    };
                }
                Phase::Name => {
                    let text = self.buf.trim_start();
                    let end = text.find(|c| !is_name_char(c)).unwrap_or(text.len());
                    let name = text[..end].to_string();
                    let after = text[end..].trim_start();
                    let consumed = self.buf.len() - after.len();
                    if after.is_empty() || may_become(after, &[ARGS, CALL_ID]) {
                        if at_end {
                            let message = "the output ended before the call's arguments";
                            self.fail(out, ProblemKind::Truncated, message);
                        }
                        return BodyStep::More;
                    }
                    if name.is_empty() {
                        let message = "the call has no tool name";
                        self.fail(out, ProblemKind::MissingName, message);
                        continue;
                    }
                    if let Some(rest) = after.strip_prefix(CALL_ID) {
                        self.buf = rest.to_string();
                        self.phase = Phase::Id(name);
                        continue;
                    }
                    let args = after
                        .strip_prefix(ARGS)
                        .or(after.starts_with('{').then_some(after));
                    if let Some(args) = args.map(str::to_string) {
                        let index = self.index(out);
                        out.begin_call(index, None, name);
                        self.buf = args;
                        self.phase = Phase::Args(ArgsReader::new(index));
                        continue;
                    }
                    match Markers::new(STOPS).scan(after, at_end) {
                        Scan::Text { safe: 0 } if !at_end => return BodyStep::More,
                        Scan::Marker { start: 0, .. } => {
                            // `[TOOL_CALLS]name` and the turn ends: a call without arguments.
                            self.buf.drain(..consumed);
                            let index = self.index(out);
                            out.begin_call(index, None, name);
                            return self.no_arguments(out);
                        }
                        _ => {
                            let message = format!("expected [ARGS] after the tool name {name}");
                            self.fail(out, ProblemKind::MalformedJson, &message);
                        }
                    }
                }
                Phase::Id(name) => {
                    // The id is a run of id characters, then `[ARGS]` (or the JSON itself).
                    // Anything else ends it as a broken call: an id never reaches past the
                    // next `[TOOL_CALLS]`, however the text was chunked.
                    let text = self.buf.trim_start();
                    let len = text.find(|c| !is_id_char(c)).unwrap_or(text.len());
                    let id = text[..len].to_string();
                    let after = text[len..].trim_start();
                    if after.is_empty() || may_become(after, &[ARGS]) {
                        if at_end {
                            let message = "the output ended in the call's id";
                            self.fail(out, ProblemKind::Truncated, message);
                        }
                        return BodyStep::More;
                    }
                    let args = after
                        .strip_prefix(ARGS)
                        .or(after.starts_with('{').then_some(after));
                    let Some(args) = args.map(str::to_string) else {
                        let message = format!("expected [ARGS] after the call's id {id:?}");
                        self.fail(out, ProblemKind::MalformedJson, &message);
                        continue;
                    };
                    let name = std::mem::take(name);
                    let index = self.index(out);
                    out.begin_call(index, (!id.is_empty()).then_some(id), name);
                    self.buf = args;
                    self.phase = Phase::Args(ArgsReader::new(index));
                }
                Phase::Args(reader) => {
                    let index = self.index.unwrap_or_default();
                    if reader.is_empty() {
                        let text = self.buf.trim_start();
                        if text.is_empty() {
                            if at_end {
                                let message = "the output ended before the call's arguments";
                                self.fail(out, ProblemKind::Truncated, message);
                            }
                            return BodyStep::More;
                        }
                        match Markers::new(STOPS).scan(text, at_end) {
                            Scan::Marker { start: 0, .. } => return self.no_arguments(out),
                            Scan::Text { safe: 0 } if !at_end => return BodyStep::More,
                            _ => {}
                        }
                    }
                    let text = std::mem::take(&mut self.buf);
                    match reader.push(&text, out) {
                        ArgsStep::More => {
                            if at_end {
                                if reader.finish(out) {
                                    out.end_call(index);
                                }
                                self.phase = Phase::Skip;
                            }
                            return BodyStep::More;
                        }
                        ArgsStep::Done { used } => {
                            out.end_call(index);
                            return BodyStep::Done {
                                rest: text[used..].to_string(),
                            };
                        }
                        ArgsStep::Failed { used } => {
                            self.buf = text[used..].to_string();
                            self.phase = Phase::Skip;
                        }
                    }
                }
                Phase::Skip => match Markers::new(STOPS).scan(&self.buf, at_end) {
                    Scan::Marker { start, .. } => {
                        return BodyStep::Done {
                            rest: self.buf.split_off(start),
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

impl CallBody for MistralCalls {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        self.buf.push_str(text);
        self.run(out, false)
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        self.run(out, true)
    }
}
