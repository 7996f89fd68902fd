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
    ArgsReader, ArgsStep, BodyStep, CallBody, FENCE, is_name_char, may_become,
};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

use crate::markers::{CALL_BEGIN, CALL_END, CALLS_END, END_OF_SENTENCE, SEP};

/// V3's call type before the separator.
const FUNCTION: &str = "function";

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
    /// The call is broken (or done, with text after its arguments): skip to its end.
    Skip,
}

/// One call block.
pub struct DeepSeekCalls {
    phase: Phase,
    buf: String,
    index: Option<u32>,
    /// A call has been begun in this block.
    began_any: bool,
}

impl DeepSeekCalls {
    /// After `<｜tool▁calls▁begin｜>`.
    pub fn block() -> Self {
        DeepSeekCalls {
            phase: Phase::Between,
            buf: String::new(),
            index: None,
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

/// Markers that end a call from outside its JSON.
fn call_enders() -> Markers {
    Markers::new([CALL_END, CALLS_END, CALL_BEGIN, END_OF_SENTENCE])
}

impl DeepSeekCalls {
    fn index(&mut self, out: &mut Emitter) -> u32 {
        *self.index.get_or_insert_with(|| out.start_call())
    }

    fn fail(&mut self, out: &mut Emitter, kind: ProblemKind, message: &str) {
        let index = self.index(out);
        out.problem(kind, format!("call {index}: {message}"), Some(index));
        self.phase = Phase::Skip;
    }

    /// Sends the call's name, or reports why it is not one.
    fn begin(&mut self, out: &mut Emitter, name: &str) -> bool {
        let name = name.trim();
        if name.is_empty() {
            self.fail(out, ProblemKind::MissingName, "the call has no tool name");
            return false;
        }
        if !name.chars().all(is_name_char) {
            let message = format!("expected a tool name, found {name:?}");
            self.fail(out, ProblemKind::MalformedJson, &message);
            return false;
        }
        let index = self.index(out);
        out.begin_call(index, None, name.to_string());
        true
    }

    /// The call ends without arguments: `{}`.
    fn no_arguments(&mut self, out: &mut Emitter) {
        let index = self.index(out);
        out.arguments(index, "{}");
        out.end_call(index);
        self.phase = Phase::AfterArgs;
    }

    fn truncated(&mut self, out: &mut Emitter, message: &str) -> BodyStep {
        self.fail(out, ProblemKind::Truncated, message);
        BodyStep::More
    }

    fn run(&mut self, out: &mut Emitter, at_end: bool) -> BodyStep {
        loop {
            match &mut self.phase {
                Phase::Between => {
                    self.index = None;
                    let text = self.buf.trim_start();
                    if text.is_empty() {
                        if at_end && !self.began_any {
                            let message = "the output ended right after the call block opened";
                            return self.truncated(out, message);
                        }
                        return BodyStep::More;
                    }
                    let skip = self.buf.len() - text.len();
                    match Markers::new([CALL_BEGIN, CALLS_END]).scan(text, at_end) {
                        Scan::Marker {
                            start: 0,
                            index: 0,
                            len,
                        } => {
                            self.buf.drain(..skip + len);
                            self.began_any = true;
                            self.phase = Phase::Head;
                        }
                        Scan::Marker { start: 0, len, .. } => {
                            return BodyStep::Done {
                                rest: self.buf.split_off(skip + len),
                            };
                        }
                        Scan::Text { safe: 0 } if !at_end => return BodyStep::More,
                        _ => {
                            if !self.began_any {
                                let index = out.start_call();
                                out.problem(
                                    ProblemKind::MalformedJson,
                                    format!(
                                        "call {index}: expected {CALL_BEGIN} in the call block"
                                    ),
                                    Some(index),
                                );
                                self.began_any = true;
                            }
                            // The block ended without its end marker: what follows is output.
                            return BodyStep::Done {
                                rest: std::mem::take(&mut self.buf),
                            };
                        }
                    }
                }
                Phase::Head => {
                    self.index(out);
                    let markers =
                        Markers::new([SEP, CALL_END, CALLS_END, CALL_BEGIN, END_OF_SENTENCE]);
                    match markers.scan(&self.buf, at_end) {
                        Scan::Marker {
                            start,
                            index: 0,
                            len,
                        } => {
                            let head = self.buf[..start].trim().to_string();
                            self.buf.drain(..start + len);
                            self.phase = Phase::AfterSep(head);
                        }
                        Scan::Marker {
                            start,
                            index: 1,
                            len,
                        } => {
                            // `<｜tool▁call▁begin｜>NAME<｜tool▁call▁end｜>`: no arguments.
                            let head = self.buf[..start].to_string();
                            self.buf.drain(..start + len);
                            if self.begin(out, &head) {
                                self.no_arguments(out);
                            }
                            self.phase = Phase::Between;
                        }
                        Scan::Marker { start, .. } => {
                            self.buf.drain(..start);
                            let message = format!("the call has no {SEP}");
                            self.fail(out, ProblemKind::MalformedJson, &message);
                        }
                        Scan::Text { .. } => {
                            if at_end {
                                return self.truncated(out, "the output ended in the call's head");
                            }
                            return BodyStep::More;
                        }
                    }
                }
                Phase::AfterSep(head) => {
                    let head = head.clone();
                    if head != FUNCTION {
                        if self.begin(out, &head) {
                            self.phase = Phase::Fence;
                        }
                        continue;
                    }
                    let text = self.buf.trim_start();
                    if text.is_empty() || may_become(text, &[CALL_END]) {
                        if at_end {
                            return self.truncated(out, "the output ended before the call's name");
                        }
                        return BodyStep::More;
                    }
                    // V3.1's JSON right after the separator: a tool named `function`.
                    let v31 = text.starts_with(['{', '[', '"']) || text.starts_with(CALL_END);
                    if v31 {
                        if self.begin(out, FUNCTION) {
                            self.phase = Phase::Fence;
                        }
                    } else {
                        self.phase = Phase::Name;
                    }
                }
                Phase::Name => {
                    let end = [self.buf.find(['\n', '`', '{']), self.buf.find(CALL_END)]
                        .into_iter()
                        .flatten()
                        .min();
                    let Some(end) = end else {
                        if at_end {
                            return self.truncated(out, "the output ended in the call's name");
                        }
                        return BodyStep::More;
                    };
                    let name = self.buf[..end].to_string();
                    self.buf.drain(..end);
                    if self.begin(out, &name) {
                        self.phase = Phase::Fence;
                    }
                }
                Phase::Fence => {
                    let text = self.buf.trim_start();
                    let waiting = text.is_empty()
                        || may_become(text, &[FENCE])
                        || may_become(text, &[CALL_END])
                        || (text.starts_with(FENCE) && !text.contains(['\n', '{']));
                    if waiting {
                        if at_end {
                            let message = "the output ended before the call's arguments";
                            return self.truncated(out, message);
                        }
                        return BodyStep::More;
                    }
                    if let Some(after) = text.strip_prefix(CALL_END) {
                        self.buf = after.to_string();
                        self.no_arguments(out);
                        self.phase = Phase::Between;
                        continue;
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
                    self.buf = args.to_string();
                    let index = self.index(out);
                    self.phase = Phase::Args(ArgsReader::new(index));
                }
                Phase::Args(reader) => {
                    let index = self.index.unwrap_or_default();
                    if reader.is_empty() {
                        // Only a closing fence or the call's end: no arguments.
                        let text = self.buf.trim_start();
                        if text.is_empty()
                            || may_become(text, &[FENCE])
                            || may_become(text, &[CALL_END])
                        {
                            if at_end {
                                let message = "the output ended before the call's arguments";
                                return self.truncated(out, message);
                            }
                            return BodyStep::More;
                        }
                        if text.starts_with(FENCE) || text.starts_with(CALL_END) {
                            self.buf = text.to_string();
                            self.no_arguments(out);
                            continue;
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
                            self.buf = text[used..].to_string();
                            self.phase = Phase::AfterArgs;
                        }
                        ArgsStep::Failed { used } => {
                            self.buf = text[used..].to_string();
                            self.phase = Phase::Skip;
                        }
                    }
                }
                Phase::AfterArgs => {
                    let text = self.buf.trim_start();
                    if !at_end && (text.is_empty() || may_become(text, &[FENCE])) {
                        return BodyStep::More;
                    }
                    let after_fence = text.strip_prefix(FENCE).unwrap_or(text).trim_start();
                    match call_enders().scan(after_fence, at_end) {
                        Scan::Marker {
                            start: 0,
                            index: 0,
                            len,
                        } => {
                            self.buf = after_fence[len..].to_string();
                            self.phase = Phase::Between;
                        }
                        Scan::Marker { start: 0, .. } => {
                            self.buf = after_fence.to_string();
                            self.phase = Phase::Between;
                        }
                        Scan::Text { safe: 0 } if !at_end => {
                            self.buf = after_fence.to_string();
                            return BodyStep::More;
                        }
                        // Text after the arguments: skip it, the call stands.
                        _ => self.phase = Phase::Skip,
                    }
                }
                Phase::Skip => match call_enders().scan(&self.buf, at_end) {
                    Scan::Marker {
                        start,
                        index: 0,
                        len,
                    } => {
                        self.buf.drain(..start + len);
                        self.phase = Phase::Between;
                    }
                    Scan::Marker { start, .. } => {
                        self.buf.drain(..start);
                        self.phase = Phase::Between;
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

impl CallBody for DeepSeekCalls {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        self.buf.push_str(text);
        self.run(out, false)
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        self.run(out, true)
    }
}
