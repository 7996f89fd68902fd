//! The inside of one `<tool_call>` block: JSON call objects (one, several, or a list), read by
//! the SDK's [`JsonCalls`], after an optional markdown fence line that code models put around
//! the JSON (`<tool_call>\n```json\n{…}\n```\n</tool_call>`).

use plugboard_sdk::calls::{BufferedBody, FENCE, JsonCalls, Next, Span};
use plugboard_sdk::emit::Emitter;

use crate::{CLOSE, OPEN};

/// One `<tool_call>` block.
pub struct HermesBody {
    /// Holds the start of the block until it shows whether a fence line opens it; nothing is
    /// skipped here (`calls` skips what it cannot read).
    span: Span,
    /// The start has shown it: from then on `calls` reads each piece as it comes.
    fence_decided: bool,
    calls: JsonCalls,
}

impl Default for HermesBody {
    fn default() -> Self {
        Self::new()
    }
}

impl HermesBody {
    pub fn new() -> Self {
        HermesBody {
            span: Span::default(),
            fence_decided: false,
            // Several objects may share a block; a block whose closing tag the model forgot
            // ends where the next one opens.
            calls: JsonCalls::new(Some(CLOSE), true).ending_at([OPEN]),
        }
    }
}

/// Where the calls start in `lead`, the start of a block: after a fence line, or at once.
/// `None` while the start is still undecided.
fn calls_start(lead: &str, at_end: bool) -> Option<usize> {
    let text = lead.trim_start();
    let undecided = match text.strip_prefix(FENCE) {
        _ if text.is_empty() => true,
        None => FENCE.starts_with(text),
        Some(info) => match info.find('\n') {
            // Judged alike whether the line break came with the info string or later:
            // no longer than the wait for it below.
            Some(newline) => {
                let tag = info[..newline].trim();
                if newline < 8 && (tag.is_empty() || tag.eq_ignore_ascii_case("json")) {
                    return Some(lead.len() - info.len() + newline + 1);
                }
                false
            }
            // A short info string may still be `json`.
            None => info.len() < 8 && !info.contains(['<', '{']),
        },
    };
    (!undecided || at_end).then_some(0)
}

impl BufferedBody for HermesBody {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        if !self.fence_decided {
            let Some(start) = calls_start(&self.span.text, at_end) else {
                return Next::More;
            };
            self.span.text.drain(..start);
            self.fence_decided = true;
        }
        self.span.forward(&mut self.calls, out, at_end)
    }
}
