//! Reads the inside of one `<tool_use>` block:
//! `tool_name: NAME`, then `arguments: {JSON}`, then `</tool_use>`.

use plugboard_sdk::calls::{ArgsRead, ArgsReader, BufferedBody, Next, Span};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

use crate::CLOSE;

const NAME_LABELS: [&str; 2] = ["tool_name:", "name:"];
pub(crate) const ARGS_LABEL: &str = "arguments:";

#[derive(Debug)]
enum Phase {
    /// Reading the `tool_name:` line.
    Name,
    /// The name is sent: waiting for `arguments:` (or a bare `{`, or the closing marker).
    Label,
    Args(ArgsReader),
}

/// One `<tool_use>` block. What follows a call's arguments, as what follows a broken call, is
/// skipped up to the closing marker.
#[derive(Debug)]
pub struct ToolUseBody {
    phase: Phase,
    span: Span,
}

impl Default for ToolUseBody {
    fn default() -> Self {
        ToolUseBody {
            phase: Phase::Name,
            span: Span::new(Some(CLOSE), []),
        }
    }
}

fn strip_label<'a>(text: &'a str, labels: &[&str]) -> Option<&'a str> {
    labels.iter().find_map(|label| {
        let head = text.get(..label.len())?;
        head.eq_ignore_ascii_case(label)
            .then(|| &text[label.len()..])
    })
}

/// Whether `text` may still grow into one of `labels`.
fn may_become(text: &str, labels: &[&str]) -> bool {
    labels.iter().any(|label| {
        label.len() > text.len()
            && label
                .get(..text.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(text))
    })
}

/// How the text after an opening marker starts.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// With what a block may start with (a label, a bare `{`, the closing marker).
    Block,
    /// Empty, or a beginning of what a block may start with.
    Undecided,
    /// With none of it: no call follows the marker.
    Prose,
}

fn block_start(text: &str) -> Start {
    let text = text.trim_start();
    if text.is_empty() {
        return Start::Undecided;
    }
    if text.starts_with(['{', '"']) {
        return Start::Block;
    }
    let starts = [NAME_LABELS[0], NAME_LABELS[1], ARGS_LABEL, CLOSE];
    let mut start = Start::Prose;
    for label in starts {
        let n = label.len().min(text.len());
        if text
            .get(..n)
            .is_some_and(|head| head.eq_ignore_ascii_case(&label[..n]))
        {
            if n == label.len() {
                return Start::Block;
            }
            start = Start::Undecided;
        }
    }
    start
}

impl BufferedBody for ToolUseBody {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        let span = &mut self.span;
        if matches!(self.phase, Phase::Name) {
            match block_start(&span.text) {
                // The marker stands in prose (`write a <tool_use> block`): it and all that
                // follows are output again, and no call index is taken.
                Start::Prose => {
                    out.content(crate::OPEN);
                    return Next::Done {
                        rest: std::mem::take(&mut span.text),
                    };
                }
                Start::Undecided if !at_end => return Next::More,
                _ => {}
            }
        }
        let index = span.index(out);
        let close = Markers::new([CLOSE]);
        match &mut self.phase {
            Phase::Name => {
                let text = span.text.trim_start();
                match close.scan(text, at_end) {
                    Scan::Marker { start: 0, .. } => {
                        span.fail(out, ProblemKind::MissingName, "the block has no tool_name");
                        return Next::Step;
                    }
                    // A start of the closing marker: wait, or a block cut into pieces is
                    // judged otherwise than the whole block.
                    Scan::Text { safe: 0 } if !text.is_empty() => return Next::More,
                    _ => {}
                }
                let Some(after_label) = strip_label(text, &NAME_LABELS) else {
                    if text.is_empty() || may_become(text, &NAME_LABELS) {
                        if at_end {
                            let message = "the output ended before the tool name";
                            span.fail(out, ProblemKind::Truncated, message);
                        }
                        return Next::More;
                    }
                    let message = "the block does not start with 'tool_name:'";
                    span.fail(out, ProblemKind::MissingName, message);
                    return Next::Step;
                };
                let after_label = after_label.trim_start_matches([' ', '\t']);
                // The name ends with its line, or where the arguments or the closing
                // marker start on the same line.
                let end = [
                    after_label.find(['\n', '\r']),
                    after_label.find(ARGS_LABEL),
                    after_label.find(CLOSE),
                    after_label.find('{'),
                ]
                .into_iter()
                .flatten()
                .min();
                let Some(end) = end else {
                    if at_end {
                        let message = "the output ended on the tool_name line";
                        span.fail(out, ProblemKind::Truncated, message);
                    }
                    return Next::More;
                };
                let name = after_label[..end]
                    .trim()
                    .trim_matches(|c| c == '"' || c == '`' || c == '\'')
                    .to_string();
                let consumed = span.text.len() - after_label.len() + end;
                span.text.drain(..consumed);
                if name.is_empty() {
                    span.fail(out, ProblemKind::MissingName, "the tool_name is empty");
                    return Next::Step;
                }
                out.begin_call(index, None, name);
                self.phase = Phase::Label;
            }
            Phase::Label => {
                let text = span.text.trim_start();
                let args = strip_label(text, &[ARGS_LABEL])
                    .or_else(|| text.starts_with('{').then_some(text));
                if let Some(args) = args {
                    span.text = args.to_string();
                    self.phase = Phase::Args(ArgsReader::new(index));
                    return Next::Step;
                }
                let scan = close.scan(text, at_end);
                if let Scan::Marker { start: 0, len, .. } = scan {
                    // No arguments inside a closed block: `{}`.
                    out.arguments(index, "{}");
                    out.end_call(index);
                    let rest = text[len..].to_string();
                    span.text.clear();
                    return Next::Done { rest };
                }
                if text.is_empty() {
                    if at_end {
                        let message = "the output ended before the arguments";
                        span.fail(out, ProblemKind::Truncated, message);
                    }
                    return Next::More;
                }
                let undecided = may_become(text, &[ARGS_LABEL]) || scan == (Scan::Text { safe: 0 });
                if undecided && !at_end {
                    return Next::More;
                }
                let message = "expected 'arguments:' after the tool name";
                span.fail(out, ProblemKind::MalformedJson, message);
            }
            Phase::Args(reader) => match span.read_arguments(reader, out, at_end) {
                // Whatever follows the arguments in the block is skipped.
                ArgsRead::Complete => span.skip(),
                ArgsRead::Broken => {}
                ArgsRead::More => return Next::More,
            },
        }
        Next::Step
    }
}
