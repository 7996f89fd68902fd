//! `<function=NAME>{arguments}</function>`: the custom-tool format of Meta's Llama 3.1 prompt
//! guide (tools described in the system prompt), which Llama 3.x models also produce when a
//! prompt shows it. The name is sent as soon as the tag closes; the arguments stream.

use plugboard_sdk::calls::{ArgsReader, ArgsStep, BodyStep, CallBody};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

/// The marker that opens a call; the name follows up to `>`.
pub const OPEN: &str = "<function=";
/// The marker that closes a call.
pub const CLOSE: &str = "</function>";

/// A name longer than this without `>` is not a name.
const MAX_NAME: usize = 128;

enum Phase {
    Name,
    Args(ArgsReader),
    /// The call is complete: its closing tag may follow.
    After,
    /// The call is broken: skip to the closing tag.
    Skip,
}

pub struct FunctionTag {
    index: Option<u32>,
    phase: Phase,
    buf: String,
}

impl Default for FunctionTag {
    fn default() -> Self {
        FunctionTag {
            index: None,
            phase: Phase::Name,
            buf: String::new(),
        }
    }
}

impl FunctionTag {
    fn fail(&mut self, out: &mut Emitter, index: u32, kind: ProblemKind, message: &str) {
        out.problem(kind, format!("call {index}: {message}"), Some(index));
        self.phase = Phase::Skip;
    }

    fn run(&mut self, out: &mut Emitter, at_end: bool) -> BodyStep {
        let index = *self.index.get_or_insert_with(|| out.start_call());
        loop {
            match &mut self.phase {
                Phase::Name => {
                    let Some(end) = self.buf.find('>') else {
                        if at_end {
                            let message = "the output ended inside the <function=…> tag";
                            self.fail(out, index, ProblemKind::Truncated, message);
                            return BodyStep::More;
                        }
                        if self.buf.len() > MAX_NAME || self.buf.contains('\n') {
                            let message = "the <function=…> tag does not close with '>'";
                            self.fail(out, index, ProblemKind::MissingName, message);
                            continue;
                        }
                        return BodyStep::More;
                    };
                    // The same limits as while the name is still arriving, so that a whole
                    // output and any chunking of it agree.
                    if end > MAX_NAME || self.buf[..end].contains('\n') {
                        let message = "the <function=…> tag does not close with '>'";
                        self.fail(out, index, ProblemKind::MissingName, message);
                        continue;
                    }
                    let name = self.buf[..end].trim().trim_matches('"').to_string();
                    self.buf.drain(..=end);
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        let message = "the <function=…> tag names no tool";
                        self.fail(out, index, ProblemKind::MissingName, message);
                        continue;
                    }
                    out.begin_call(index, None, name);
                    self.phase = Phase::Args(ArgsReader::new(index));
                }
                Phase::Args(reader) => {
                    if reader.is_empty() {
                        let text = self.buf.trim_start();
                        if let Some(rest) = text.strip_prefix(CLOSE) {
                            // No arguments inside the tags: `{}`.
                            out.arguments(index, "{}");
                            out.end_call(index);
                            let rest = rest.to_string();
                            self.buf.clear();
                            return BodyStep::Done { rest };
                        }
                        if (text.is_empty() || CLOSE.starts_with(text)) && !at_end {
                            return BodyStep::More;
                        }
                    }
                    let text = std::mem::take(&mut self.buf);
                    match reader.push(&text, out) {
                        ArgsStep::More => {
                            if at_end {
                                if reader.is_empty() {
                                    let message = "the output ended before the arguments";
                                    self.fail(out, index, ProblemKind::Truncated, message);
                                } else {
                                    if reader.finish(out) {
                                        out.end_call(index);
                                    }
                                    self.phase = Phase::Skip;
                                }
                            }
                            return BodyStep::More;
                        }
                        ArgsStep::Done { used } => {
                            out.end_call(index);
                            self.buf = text[used..].to_string();
                            self.phase = Phase::After;
                        }
                        ArgsStep::Failed { used } => {
                            self.buf = text[used..].to_string();
                            self.phase = Phase::Skip;
                        }
                    }
                }
                Phase::After => {
                    let text = self.buf.trim_start();
                    if let Some(rest) = text.strip_prefix(CLOSE) {
                        let rest = rest.to_string();
                        self.buf.clear();
                        return BodyStep::Done { rest };
                    }
                    if CLOSE.starts_with(text) && !at_end {
                        return BodyStep::More;
                    }
                    // No closing tag: what follows is output again.
                    let rest = text.to_string();
                    self.buf.clear();
                    return BodyStep::Done { rest };
                }
                Phase::Skip => match Markers::new([CLOSE]).scan(&self.buf, at_end) {
                    Scan::Marker { start, len, .. } => {
                        let rest = self.buf[start + len..].to_string();
                        self.buf.clear();
                        return BodyStep::Done { rest };
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

impl CallBody for FunctionTag {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        self.buf.push_str(text);
        self.run(out, false)
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        self.run(out, true)
    }
}
