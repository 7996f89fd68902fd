//! The text after `<|python_start|>`: a pythonic call list ([`PyList`]), or JSON call objects
//! as the official Llama 4 template asks for (`{"name": …, "parameters": …}`, read by the SDK's
//! [`JsonCalls`]). The first character after the marker decides: `{`, or `[` then `{`, is JSON.

use plugboard_sdk::calls::{BufferedBody, CallBody, JsonCalls, Next, Span};
use plugboard_sdk::emit::Emitter;

use crate::PYTHON_END;
use crate::list::PyList;

#[derive(Default)]
pub struct PythonSpan {
    /// Holds the span's start until it shows which reader it needs; nothing is skipped here.
    span: Span,
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

impl BufferedBody for PythonSpan {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => match Self::choose(&self.span.text, at_end) {
                Some(reader) => self.reader.insert(reader),
                None => return Next::More,
            },
        };
        self.span.forward(reader.as_mut(), out, at_end)
    }
}
