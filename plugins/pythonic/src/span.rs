//! The text after `<|python_start|>`: a pythonic call list ([`PyList`]), or JSON call objects
//! as the official Llama 4 template asks for (`{"name": …, "parameters": …}`, read by the SDK's
//! [`JsonCalls`]). The first character after the marker decides: `{`, or `[` then `{`, is JSON.

use plugboard_sdk::calls::{BodyStep, CallBody, JsonCalls};
use plugboard_sdk::emit::Emitter;

use crate::PYTHON_END;
use crate::list::PyList;

#[derive(Default)]
pub struct PythonSpan {
    /// The span's start, held until it shows which reader it needs.
    lead: String,
    reader: Option<Box<dyn CallBody>>,
}

impl PythonSpan {
    /// The reader for a span that starts with `text`; `None` while that cannot be told.
    fn choose(text: &str, at_end: bool) -> Option<Box<dyn CallBody>> {
        let text = text.trim_start();
        let json = match text.strip_prefix('[') {
            Some(items) if items.trim_start().is_empty() && !at_end => return None,
            Some(items) => items.trim_start().starts_with('{'),
            None if text.is_empty() && !at_end => return None,
            None => text.starts_with('{'),
        };
        Some(if json {
            Box::new(JsonCalls::new(Some(PYTHON_END), true))
        } else {
            Box::new(PyList::markup())
        })
    }
}

impl CallBody for PythonSpan {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        if let Some(reader) = &mut self.reader {
            return reader.push(text, out);
        }
        self.lead.push_str(text);
        match Self::choose(&self.lead, false) {
            Some(mut reader) => {
                let step = reader.push(&std::mem::take(&mut self.lead), out);
                self.reader = Some(reader);
                step
            }
            None => BodyStep::More,
        }
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => {
                let mut reader =
                    Self::choose(&self.lead, true).unwrap_or_else(|| Box::new(PyList::markup()));
                if let BodyStep::Done { rest } = reader.push(&std::mem::take(&mut self.lead), out) {
                    return BodyStep::Done { rest };
                }
                self.reader.insert(reader)
            }
        };
        reader.finish(out)
    }
}
