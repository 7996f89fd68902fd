//! Reads the inside of one `<tool_use>` block:
//! `tool_name: NAME`, then `arguments: {JSON}`, then `</tool_use>`.

use plugboard_sdk::calls::{ArgsReader, ArgsStep, BodyStep, CallBody};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::scanner::{Markers, Scan};
use plugboard_sdk::types::ProblemKind;

use crate::CLOSE;

const NAME_LABELS: [&str; 2] = ["tool_name:", "name:"];
pub(crate) const ARGS_LABEL: &str = "arguments:";

#[derive(Debug, Default)]
enum Phase {
    /// Reading the `tool_name:` line.
    #[default]
    Name,
    /// The name is sent: waiting for `arguments:` (or a bare `{`, or the closing marker).
    Label,
    Args(ArgsReader),
    /// The call is complete: skip to the closing marker.
    After,
    /// The call is broken: skip to the closing marker.
    Skip,
}

/// One `<tool_use>` block.
#[derive(Debug, Default)]
pub struct ToolUseBody {
    index: Option<u32>,
    phase: Phase,
    buf: String,
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

impl ToolUseBody {
    fn fail(&mut self, out: &mut Emitter, index: u32, kind: ProblemKind, message: &str) {
        out.problem(kind, format!("call {index}: {message}"), Some(index));
        self.phase = Phase::Skip;
    }

    fn truncated(&mut self, out: &mut Emitter, index: u32, message: &str) {
        self.fail(out, index, ProblemKind::Truncated, message);
    }

    fn run(&mut self, out: &mut Emitter, at_end: bool) -> BodyStep {
        let index = *self.index.get_or_insert_with(|| out.start_call());
        let close = Markers::new([CLOSE]);
        loop {
            match &mut self.phase {
                Phase::Name => {
                    let text = self.buf.trim_start();
                    match close.scan(text, at_end) {
                        Scan::Marker { start: 0, .. } => {
                            let message = "the block has no tool_name";
                            self.fail(out, index, ProblemKind::MissingName, message);
                            continue;
                        }
                        // A start of the closing marker: wait, or a block cut into pieces is
                        // judged otherwise than the whole block.
                        Scan::Text { safe: 0 } if !text.is_empty() => return BodyStep::More,
                        _ => {}
                    }
                    let Some(after_label) = strip_label(text, &NAME_LABELS) else {
                        if text.is_empty() || may_become(text, &NAME_LABELS) {
                            if at_end {
                                self.truncated(out, index, "the output ended before the tool name");
                            }
                            return BodyStep::More;
                        }
                        let message = "the block does not start with 'tool_name:'";
                        self.fail(out, index, ProblemKind::MissingName, message);
                        continue;
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
                            self.truncated(out, index, "the output ended on the tool_name line");
                        }
                        return BodyStep::More;
                    };
                    let name = after_label[..end]
                        .trim()
                        .trim_matches(|c| c == '"' || c == '`' || c == '\'')
                        .to_string();
                    let consumed = self.buf.len() - after_label.len() + end;
                    self.buf.drain(..consumed);
                    if name.is_empty() {
                        self.fail(
                            out,
                            index,
                            ProblemKind::MissingName,
                            "the tool_name is empty",
                        );
                        continue;
                    }
                    out.begin_call(index, None, name);
                    self.phase = Phase::Label;
                }
                Phase::Label => {
                    let text = self.buf.trim_start();
                    let args = strip_label(text, &[ARGS_LABEL])
                        .or_else(|| text.starts_with('{').then_some(text));
                    if let Some(args) = args {
                        self.buf = args.to_string();
                        self.phase = Phase::Args(ArgsReader::new(index));
                        continue;
                    }
                    let scan = close.scan(text, at_end);
                    if let Scan::Marker { start: 0, len, .. } = scan {
                        // No arguments inside a closed block: `{}`.
                        out.arguments(index, "{}");
                        out.end_call(index);
                        let rest = text[len..].to_string();
                        self.buf.clear();
                        return BodyStep::Done { rest };
                    }
                    if text.is_empty() {
                        if at_end {
                            self.truncated(out, index, "the output ended before the arguments");
                        }
                        return BodyStep::More;
                    }
                    let undecided =
                        may_become(text, &[ARGS_LABEL]) || scan == (Scan::Text { safe: 0 });
                    if undecided && !at_end {
                        return BodyStep::More;
                    }
                    let message = "expected 'arguments:' after the tool name";
                    self.fail(out, index, ProblemKind::MalformedJson, message);
                }
                Phase::Args(reader) => {
                    let text = std::mem::take(&mut self.buf);
                    match reader.push(&text, out) {
                        ArgsStep::More => {
                            if at_end {
                                if reader.is_empty() {
                                    self.truncated(
                                        out,
                                        index,
                                        "the output ended before the arguments",
                                    );
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
                Phase::After | Phase::Skip => match close.scan(&self.buf, at_end) {
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

impl CallBody for ToolUseBody {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        self.buf.push_str(text);
        self.run(out, false)
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        self.run(out, true)
    }
}
