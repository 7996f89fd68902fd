//! `<start_function_response>` is where FunctionGemma hands the turn to the tool: the host stops
//! generating there (it is a stop string). Should an output go on past it anyway, what follows
//! is the model imagining the tool's answer and what it would say about it, not output to keep:
//! this reader drops all of it.

use plugboard_sdk::calls::{BodyStep, CallBody};
use plugboard_sdk::emit::Emitter;

#[derive(Default)]
pub struct Handover;

impl CallBody for Handover {
    fn push(&mut self, _text: &str, _out: &mut Emitter) -> BodyStep {
        BodyStep::More
    }

    fn finish(&mut self, _out: &mut Emitter) -> BodyStep {
        BodyStep::More
    }
}
