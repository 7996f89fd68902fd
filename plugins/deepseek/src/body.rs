//! Reads DeepSeek's call blocks, in both of its formats:
//!
//! - V3 and R1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{…}\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`;
//! - V3.1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`.
//!
//! What stands before `<｜tool▁sep｜>` tells them apart: V3 writes the call's type, `function`,
//! and the name on the line after it; V3.1 writes the name. (A V3.1 tool named `function` is
//! recognised by the JSON that follows its separator.) The fence around V3's arguments is
//! optional, and tolerated in V3.1 too. A block whose end marker is missing ends where its
//! calls stop; a `<｜tool▁call▁begin｜>` without the block around it is read the same way.

use plugboard_sdk::calls::{
    ArgsRead, ArgsReader, BufferedBody, FENCE, Next, Span, is_name_char, may_become,
};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

use crate::markers::{CALL_BEGIN, CALL_END, CALLS_END, END_OF_SENTENCE, SEP};

/// V3's call type before the separator.
const FUNCTION: &str = "function";

/// Markers that end a call from outside its JSON, its own end marker first.
const CALL_ENDERS: [&str; 4] = [CALL_END, CALLS_END, CALL_BEGIN, END_OF_SENTENCE];

enum Phase {
    /// Between calls: the next `<｜tool▁call▁begin｜>`, or the end of the block.
    Between,
    /// After `<｜tool▁call▁begin｜>`: the text up to `<｜tool▁sep｜>`.
    Head,
    /// After the separator; the head that preceded it.
    AfterSep(String),
    /// V3: the name, on the separator's line.
    Name,
    /// Before the arguments: an optional fence line.
    Fence,
    Args(ArgsReader),
    /// The arguments are complete: an optional closing fence, then `<｜tool▁call▁end｜>`.
    AfterArgs,
}

/// One call block. A broken call (or a done one with text after its arguments) is skipped to
/// its end, and the block goes on after it.
pub struct DeepSeekCalls {
    phase: Phase,
    span: Span,
    /// A call has been begun in this block.
    began_any: bool,
}

impl DeepSeekCalls {
    /// After `<｜tool▁calls▁begin｜>`.
    pub fn block() -> Self {
        DeepSeekCalls {
            phase: Phase::Between,
            span: Span::new(Some(CALL_ENDERS[0]), CALL_ENDERS[1..].iter().copied()),
            began_any: false,
        }
    }

    /// After a `<｜tool▁call▁begin｜>` outside a block.
    pub fn single() -> Self {
        DeepSeekCalls {
            phase: Phase::Head,
            began_any: true,
            ..Self::block()
        }
    }
}

/// Sends the call's name, or reports why it is not one; the caller decides what is skipped.
fn begin(span: &mut Span, out: &mut Emitter, name: &str) -> bool {
    let name = name.trim();
    if name.is_empty() {
        span.problem(out, ProblemKind::MissingName, "the call has no tool name");
        return false;
    }
    if !name.chars().all(is_name_char) {
        let message = format!("expected a tool name, found {name:?}");
        span.problem(out, ProblemKind::MalformedJson, message);
        return false;
    }
    let index = span.index(out);
    out.begin_call(index, None, name.to_string());
    true
}

/// The call ends without arguments: `{}`.
fn no_arguments(span: &mut Span, out: &mut Emitter) {
    let index = span.index(out);
    out.arguments(index, "{}");
    out.end_call(index);
}

fn truncated(span: &mut Span, out: &mut Emitter, message: &str) -> Next {
    span.fail(out, ProblemKind::Truncated, message);
    Next::More
}

impl BufferedBody for DeepSeekCalls {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        let span = &mut self.span;
        match &mut self.phase {
            Phase::Between => {
                span.next_call();
                let text = span.text.trim_start();
                if text.is_empty() {
                    if at_end && !self.began_any {
                        let message = "the output ended right after the call block opened";
                        return truncated(span, out, message);
                    }
                    return Next::More;
                }
                let skip = span.text.len() - text.len();
                match Markers::new([CALL_BEGIN, CALLS_END]).scan(text, at_end) {
                    Scan::Marker {
                        start: 0,
                        index: 0,
                        len,
                    } => {
                        span.text.drain(..skip + len);
                        self.began_any = true;
                        self.phase = Phase::Head;
                    }
                    Scan::Marker { start: 0, len, .. } => {
                        return Next::Done {
                            rest: span.text.split_off(skip + len),
                        };
                    }
                    Scan::Text { safe: 0 } if !at_end => return Next::More,
                    _ => {
                        if !self.began_any {
                            let index = out.start_call();
                            out.problem(
                                ProblemKind::MalformedJson,
                                format!("call {index}: expected {CALL_BEGIN} in the call block"),
                                Some(index),
                            );
                            self.began_any = true;
                        }
                        // The block ended without its end marker: what follows is output.
                        return Next::Done {
                            rest: std::mem::take(&mut span.text),
                        };
                    }
                }
            }
            Phase::Head => {
                span.index(out);
                let markers = Markers::new([SEP, CALL_END, CALLS_END, CALL_BEGIN, END_OF_SENTENCE]);
                match markers.scan(&span.text, at_end) {
                    Scan::Marker {
                        start,
                        index: 0,
                        len,
                    } => {
                        let head = span.text[..start].trim().to_string();
                        span.text.drain(..start + len);
                        self.phase = Phase::AfterSep(head);
                    }
                    Scan::Marker {
                        start,
                        index: 1,
                        len,
                    } => {
                        // `<｜tool▁call▁begin｜>NAME<｜tool▁call▁end｜>`: no arguments. The call
                        // has ended, good or not: nothing to skip.
                        let head = span.text[..start].to_string();
                        span.text.drain(..start + len);
                        if begin(span, out, &head) {
                            no_arguments(span, out);
                        }
                        self.phase = Phase::Between;
                    }
                    Scan::Marker { start, .. } => {
                        span.text.drain(..start);
                        let message = format!("the call has no {SEP}");
                        span.fail(out, ProblemKind::MalformedJson, message);
                    }
                    Scan::Text { .. } => {
                        if at_end {
                            return truncated(span, out, "the output ended in the call's head");
                        }
                        return Next::More;
                    }
                }
            }
            Phase::AfterSep(head) => {
                if head != FUNCTION {
                    if begin(span, out, head) {
                        self.phase = Phase::Fence;
                    } else {
                        span.skip();
                    }
                    return Next::Step;
                }
                let text = span.text.trim_start();
                if text.is_empty() || may_become(text, &[CALL_END]) {
                    if at_end {
                        return truncated(span, out, "the output ended before the call's name");
                    }
                    return Next::More;
                }
                // V3.1's JSON right after the separator: a tool named `function`.
                let v31 = text.starts_with(['{', '[', '"']) || text.starts_with(CALL_END);
                if v31 {
                    if begin(span, out, FUNCTION) {
                        self.phase = Phase::Fence;
                    } else {
                        span.skip();
                    }
                } else {
                    self.phase = Phase::Name;
                }
            }
            Phase::Name => {
                let end = [span.text.find(['\n', '`', '{']), span.text.find(CALL_END)]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(end) = end else {
                    if at_end {
                        return truncated(span, out, "the output ended in the call's name");
                    }
                    return Next::More;
                };
                let name = span.text[..end].to_string();
                span.text.drain(..end);
                if begin(span, out, &name) {
                    self.phase = Phase::Fence;
                } else {
                    span.skip();
                }
            }
            Phase::Fence => {
                let text = span.text.trim_start();
                let waiting = text.is_empty()
                    || may_become(text, &[FENCE])
                    || may_become(text, &[CALL_END])
                    || (text.starts_with(FENCE) && !text.contains(['\n', '{']));
                if waiting {
                    if at_end {
                        let message = "the output ended before the call's arguments";
                        return truncated(span, out, message);
                    }
                    return Next::More;
                }
                if let Some(after) = text.strip_prefix(CALL_END) {
                    span.text = after.to_string();
                    no_arguments(span, out);
                    self.phase = Phase::Between;
                    return Next::Step;
                }
                let args = match text.strip_prefix(FENCE) {
                    // The fence's info string (`json`) ends with its line.
                    Some(info) => match info.find(['\n', '{']) {
                        Some(at) if info.as_bytes()[at] == b'\n' => &info[at + 1..],
                        Some(at) => &info[at..],
                        None => info,
                    },
                    None => text,
                };
                span.text = args.to_string();
                let index = span.index(out);
                self.phase = Phase::Args(ArgsReader::new(index));
            }
            Phase::Args(reader) => {
                if reader.is_empty() {
                    // Only a closing fence or the call's end: no arguments.
                    let text = span.text.trim_start();
                    if text.is_empty()
                        || may_become(text, &[FENCE])
                        || may_become(text, &[CALL_END])
                    {
                        if at_end {
                            let message = "the output ended before the call's arguments";
                            return truncated(span, out, message);
                        }
                        return Next::More;
                    }
                    if text.starts_with(FENCE) || text.starts_with(CALL_END) {
                        span.text = text.to_string();
                        no_arguments(span, out);
                        self.phase = Phase::AfterArgs;
                        return Next::Step;
                    }
                }
                match span.read_arguments(reader, out, at_end) {
                    ArgsRead::Complete => self.phase = Phase::AfterArgs,
                    ArgsRead::Broken => {}
                    ArgsRead::More => return Next::More,
                }
            }
            Phase::AfterArgs => {
                let text = span.text.trim_start();
                if !at_end && (text.is_empty() || may_become(text, &[FENCE])) {
                    return Next::More;
                }
                let after_fence = text.strip_prefix(FENCE).unwrap_or(text).trim_start();
                match Markers::new(CALL_ENDERS).scan(after_fence, at_end) {
                    Scan::Marker {
                        start: 0,
                        index: 0,
                        len,
                    } => {
                        span.text = after_fence[len..].to_string();
                        self.phase = Phase::Between;
                    }
                    Scan::Marker { start: 0, .. } => {
                        span.text = after_fence.to_string();
                        self.phase = Phase::Between;
                    }
                    Scan::Text { safe: 0 } if !at_end => {
                        span.text = after_fence.to_string();
                        return Next::More;
                    }
                    // Text after the arguments: skip it, the call stands.
                    _ => span.skip(),
                }
            }
        }
        Next::Step
    }

    /// The block goes on after a skipped call.
    fn skipped(&mut self, _out: &mut Emitter) -> Next {
        self.phase = Phase::Between;
        Next::Step
    }
}
