//! `<function=NAME>{arguments}</function>`: the custom-tool format of Meta's Llama 3.1 prompt
//! guide (tools described in the system prompt), which Llama 3.x models also produce when a
//! prompt shows it. The name is sent as soon as the tag closes; the arguments stream.

use plugboard_sdk::calls::{ArgsRead, ArgsReader, BufferedBody, Next, Span};
use plugboard_sdk::emit::Emitter;
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
}

/// One call. A broken one is skipped to the closing tag.
pub struct FunctionTag {
    phase: Phase,
    span: Span,
}

impl Default for FunctionTag {
    fn default() -> Self {
        FunctionTag {
            phase: Phase::Name,
            span: Span::new(Some(CLOSE), []),
        }
    }
}

impl BufferedBody for FunctionTag {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        let span = &mut self.span;
        let index = span.index(out);
        match &mut self.phase {
            Phase::Name => {
                let Some(end) = span.text.find('>') else {
                    if at_end {
                        let message = "the output ended inside the <function=…> tag";
                        span.fail(out, ProblemKind::Truncated, message);
                        return Next::More;
                    }
                    if span.text.len() > MAX_NAME || span.text.contains('\n') {
                        let message = "the <function=…> tag does not close with '>'";
                        span.fail(out, ProblemKind::MissingName, message);
                        return Next::Step;
                    }
                    return Next::More;
                };
                // The same limits as while the name is still arriving, so that a whole
                // output and any chunking of it agree.
                if end > MAX_NAME || span.text[..end].contains('\n') {
                    let message = "the <function=…> tag does not close with '>'";
                    span.fail(out, ProblemKind::MissingName, message);
                    return Next::Step;
                }
                let name = span.text[..end].trim().trim_matches('"').to_string();
                span.text.drain(..=end);
                if name.is_empty() || name.contains(char::is_whitespace) {
                    let message = "the <function=…> tag names no tool";
                    span.fail(out, ProblemKind::MissingName, message);
                    return Next::Step;
                }
                out.begin_call(index, None, name);
                self.phase = Phase::Args(ArgsReader::new(index));
                Next::Step
            }
            Phase::Args(reader) => {
                if reader.is_empty() {
                    let text = span.text.trim_start();
                    if let Some(rest) = text.strip_prefix(CLOSE) {
                        // No arguments inside the tags: `{}`.
                        out.arguments(index, "{}");
                        out.end_call(index);
                        return Next::Done {
                            rest: rest.to_string(),
                        };
                    }
                    if (text.is_empty() || CLOSE.starts_with(text)) && !at_end {
                        return Next::More;
                    }
                }
                match span.read_arguments(reader, out, at_end) {
                    ArgsRead::Complete => self.phase = Phase::After,
                    ArgsRead::Broken => {}
                    ArgsRead::More => return Next::More,
                }
                Next::Step
            }
            Phase::After => {
                let text = span.text.trim_start();
                if let Some(rest) = text.strip_prefix(CLOSE) {
                    return Next::Done {
                        rest: rest.to_string(),
                    };
                }
                if CLOSE.starts_with(text) && !at_end {
                    return Next::More;
                }
                // No closing tag: what follows is output again.
                Next::Done {
                    rest: text.to_string(),
                }
            }
        }
    }
}
