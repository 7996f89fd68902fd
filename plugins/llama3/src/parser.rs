//! The stream parser: the SDK's [`OutputParser`] for the markup (`<|python_tag|>`,
//! `<function=…>`, end-of-turn tokens), in front of which an output that starts like bare JSON
//! is held back until its whole shape is known ([`crate::bare`]). An output found to be calls is
//! read as if it followed `<|python_tag|>`, which gives bare calls the same per-call problems
//! as tagged ones; any other output is released as soon as it cannot be calls.

use plugboard_sdk::StreamParse;
use plugboard_sdk::scanner::Markers;
use plugboard_sdk::stream::OutputParser;
use plugboard_sdk::types::{AdapterError, ParseOptions, StreamEvent};

use crate::bare::{BareProbe, Shape};
use crate::{END_OF_TURN, Llama3, PYTHON_TAG};

pub struct Llama3Parser {
    inner: OutputParser<Llama3>,
    /// The output so far, while it may still be bare calls; `None` once it cannot be.
    held: Option<String>,
    probe: BareProbe,
}

impl StreamParse for Llama3Parser {
    fn new(options: ParseOptions) -> Self {
        Llama3Parser {
            probe: BareProbe::new(
                options.tools.iter().map(|t| t.name.clone()).collect(),
                Markers::new(END_OF_TURN),
            ),
            held: Some(String::new()),
            inner: OutputParser::new(options),
        }
    }

    fn push(&mut self, delta: &str) -> Result<Vec<StreamEvent>, AdapterError> {
        let Some(held) = &mut self.held else {
            return self.inner.push(delta);
        };
        held.push_str(delta);
        let text = std::mem::take(held);
        if self.probe.update(&text, false) == Shape::NotCalls {
            self.held = None;
            return self.inner.push(&text);
        }
        self.held = Some(text);
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, AdapterError> {
        let mut events = Vec::new();
        if let Some(held) = self.held.take() {
            let text = match self.probe.update(&held, true) {
                Shape::Calls => format!("{PYTHON_TAG}{held}"),
                Shape::NotCalls | Shape::Undecided => held,
            };
            events = self.inner.push(&text)?;
        }
        events.extend(self.inner.finish()?);
        Ok(events)
    }
}
