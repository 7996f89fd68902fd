//! The inside of one `<tool_call>` block: JSON call objects (one, several, or a list), read by
//! the SDK's [`JsonCalls`], after an optional markdown fence line that code models put around
//! the JSON (`<tool_call>\n```json\n{…}\n```\n</tool_call>`).

use plugboard_sdk::calls::{BodyStep, CallBody, FENCE, JsonCalls};
use plugboard_sdk::emit::Emitter;

use crate::{CLOSE, OPEN};

/// One `<tool_call>` block.
pub struct HermesBody {
    calls: JsonCalls,
    /// The start of the block, held until it shows whether a fence line opens it; `None` once
    /// that is decided.
    lead: Option<String>,
}

impl Default for HermesBody {
    fn default() -> Self {
        Self::new()
    }
}

impl HermesBody {
    pub fn new() -> Self {
        HermesBody {
            // Several objects may share a block; a block whose closing tag the model forgot
            // ends where the next one opens.
            calls: JsonCalls::new(Some(CLOSE), true).ending_at([OPEN]),
            lead: Some(String::new()),
        }
    }

    /// Decides about a fence at the start of the block. Returns the text to read as calls, or
    /// `None` while the start is still undecided.
    fn take_lead(&mut self, at_end: bool) -> Option<String> {
        let lead = self.lead.as_ref()?;
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
                        let body = info[newline + 1..].to_string();
                        self.lead = None;
                        return Some(body);
                    }
                    false
                }
                // A short info string may still be `json`.
                None => info.len() < 8 && !info.contains(['<', '{']),
            },
        };
        if undecided && !at_end {
            return None;
        }
        self.lead.take()
    }
}

impl CallBody for HermesBody {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        match &mut self.lead {
            Some(lead) => {
                lead.push_str(text);
                match self.take_lead(false) {
                    Some(body) => self.calls.push(&body, out),
                    None => BodyStep::More,
                }
            }
            None => self.calls.push(text, out),
        }
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        if let Some(body) = self.take_lead(true)
            && let BodyStep::Done { rest } = self.calls.push(&body, out)
        {
            return BodyStep::Done { rest };
        }
        self.calls.finish(out)
    }
}
