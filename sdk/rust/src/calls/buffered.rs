//! [`BufferedBody`]: a [`CallBody`] written as one step function over the family's own phases.
//!
//! Readers of a call span share their plumbing, whatever their format: the pieces they are
//! given go into a buffer that they read from the front; they step through their phases until
//! one needs more text or the span ends; a call's index is reserved the first time something is
//! said about it; and a broken call is reported, then its text is skipped up to the marker that
//! ends it, so that the calls and the output after it stand. A family keeps a [`Span`], which
//! does all of that, and writes [`BufferedBody::step`]: what differs.
//!
//! ```
//! use plugboard_sdk::calls::{ArgsRead, ArgsReader, BodyStep, BufferedBody, CallBody, Next, Span};
//! use plugboard_sdk::emit::{Emitter, fold};
//! use plugboard_sdk::types::ProblemKind;
//!
//! /// `NAME {…}</call>`, after `<call>`.
//! struct NamedCall {
//!     span: Span,
//!     args: Option<ArgsReader>,
//! }
//!
//! impl BufferedBody for NamedCall {
//!     fn span(&mut self) -> &mut Span {
//!         &mut self.span
//!     }
//!
//!     fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
//!         let index = self.span.index(out);
//!         let Some(args) = &mut self.args else {
//!             let Some(brace) = self.span.text.find('{') else {
//!                 if at_end {
//!                     self.span.fail(out, ProblemKind::Truncated, "the output ended in the name");
//!                 }
//!                 return Next::More;
//!             };
//!             let name = self.span.text[..brace].trim().to_string();
//!             if name.is_empty() {
//!                 self.span.fail(out, ProblemKind::MissingName, "the call has no name");
//!                 return Next::Step;
//!             }
//!             out.begin_call(index, None, name);
//!             self.span.text.drain(..brace);
//!             self.args = Some(ArgsReader::new(index));
//!             return Next::Step;
//!         };
//!         match self.span.read_arguments(args, out, at_end) {
//!             // Whatever stands between the arguments and `</call>` is dropped.
//!             ArgsRead::Complete => {
//!                 self.span.skip();
//!                 Next::Step
//!             }
//!             ArgsRead::Broken => Next::Step,
//!             ArgsRead::More => Next::More,
//!         }
//!     }
//! }
//!
//! let mut out = Emitter::new(&[]);
//! let mut call = NamedCall { span: Span::new(Some("</call>"), []), args: None };
//! assert_eq!(call.push("get_time {\"tz\": ", &mut out), BodyStep::More);
//! let step = call.push("\"UTC\"} </call> Done.", &mut out);
//! assert_eq!(step, BodyStep::Done { rest: " Done.".into() });
//! assert_eq!(fold(out.take()).tool_calls[0].arguments, "{\"tz\": \"UTC\"}");
//! ```

use std::borrow::Cow;
use std::fmt::Display;

use super::{ArgsReader, ArgsStep, BodyStep, CallBody};
use crate::emit::Emitter;
use crate::scanner::{Markers, Scan};
use crate::types::ProblemKind;

/// What a [`BufferedBody`] does after one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Step again: the phase changed or text was used, so more may be read now.
    Step,
    /// Wait for more text: nothing more can be read from what is buffered.
    More,
    /// The span ended; `rest`, the text after it, is read as output again.
    Done { rest: String },
}

/// What [`Span::read_arguments`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsRead {
    /// The arguments are complete and the call has ended; the text after them is buffered.
    Complete,
    /// The arguments are bad (the reader reported why): the rest of the call is skipped.
    Broken,
    /// The arguments go on past the buffered text. At the end of the output they were finished
    /// instead (an open value is `truncated`) and the rest of the call is skipped.
    More,
}

/// The state a [`BufferedBody`] keeps beside its phases: the span's text not read yet, the
/// index of the call being read, and where a broken call's text ends.
#[derive(Clone, Debug, Default)]
pub struct Span {
    /// The text pushed and not used yet. Steps read it from the front and remove what they used;
    /// what they leave waits for the next step or push.
    pub text: String,
    index: Option<u32>,
    /// The markers a broken call is skipped to.
    ends: Markers,
    /// The first of `ends` closes the call and belongs to the span; the others are output again.
    closing: bool,
    skipping: bool,
}

impl Span {
    /// A broken call is skipped up to `close`, the marker that closes a call, which belongs to
    /// the span, or up to the first of `stops`, markers that end the span from outside it, which
    /// are given back as output (the next call marker, the end of the turn). Without either, a
    /// broken call's text runs to the end of the output ([`Span::default`]).
    pub fn new<S: Into<Cow<'static, str>>>(
        close: Option<S>,
        stops: impl IntoIterator<Item = S>,
    ) -> Self {
        let close = close.map(Into::into).filter(|c| !c.is_empty());
        Span {
            closing: close.is_some(),
            ends: Markers::new(close.into_iter().chain(stops.into_iter().map(Into::into))),
            ..Span::default()
        }
    }

    /// The index of the call being read, reserved the first time it is asked for: a call that
    /// never gets that far takes none.
    pub fn index(&mut self, out: &mut Emitter) -> u32 {
        *self.index.get_or_insert_with(|| out.start_call())
    }

    /// The markers a broken call is skipped to, the closing marker first (when there is one):
    /// the span's ends, which the SDK's own readers also look for beside it.
    pub(crate) fn ends(&self) -> &Markers {
        &self.ends
    }

    /// The call is over: the next one in the span takes a new index.
    pub fn next_call(&mut self) {
        self.index = None;
    }

    /// Reports `message` as a problem of the call being read, and skips the rest of the call.
    pub fn fail(&mut self, out: &mut Emitter, kind: ProblemKind, message: impl Display) {
        self.problem(out, kind, message);
        self.skip();
    }

    /// Reports `message` as a problem of the call being read, and reads on: for a problem
    /// found where the call's text already ended.
    pub fn problem(&mut self, out: &mut Emitter, kind: ProblemKind, message: impl Display) {
        let index = self.index(out);
        out.problem(kind, format!("call {index}: {message}"), Some(index));
    }

    /// Skips the text up to the marker that ends the call (see [`Span::new`]); the steps run
    /// again after it only where [`BufferedBody::skipped`] says so.
    pub fn skip(&mut self) {
        self.skipping = true;
    }

    /// Reads the call's arguments from the buffered text with `reader`. A complete value ends
    /// the call; bad arguments (reported by the reader) make the rest of the call skipped. At
    /// the end of the output an open value is finished (`truncated`), and arguments that never
    /// started are `truncated` too: a format whose calls may end without arguments looks for
    /// that end before it reads them.
    pub fn read_arguments(
        &mut self,
        reader: &mut ArgsReader,
        out: &mut Emitter,
        at_end: bool,
    ) -> ArgsRead {
        match reader.push(&self.text, out) {
            ArgsStep::More => {
                self.text.clear();
                if at_end {
                    if reader.is_empty() {
                        self.fail(
                            out,
                            ProblemKind::Truncated,
                            "the output ended before the arguments",
                        );
                    } else {
                        if reader.finish(out) {
                            out.end_call(reader.index);
                        }
                        self.skip();
                    }
                }
                ArgsRead::More
            }
            ArgsStep::Done { used } => {
                out.end_call(reader.index);
                self.text.drain(..used);
                ArgsRead::Complete
            }
            ArgsStep::Failed { used } => {
                self.text.drain(..used);
                self.skip();
                ArgsRead::Broken
            }
        }
    }

    /// Hands the buffered text to `body`, a reader that reads the rest of the span (chosen by
    /// how the span starts), and at the end of the output finishes it.
    pub fn forward(
        &mut self,
        body: &mut (impl CallBody + ?Sized),
        out: &mut Emitter,
        at_end: bool,
    ) -> Next {
        let step = if self.text.is_empty() {
            BodyStep::More
        } else {
            let step = body.push(&self.text, out);
            // Cleared, not taken: the buffer keeps its room for the next piece.
            self.text.clear();
            step
        };
        match step {
            BodyStep::More if at_end => body.finish(out).into(),
            step => step.into(),
        }
    }

    /// Skips a broken call's text. Returns whether the marker that ends it came: the text then
    /// starts after a closing marker, or at a stop marker.
    fn skip_to_end(&mut self, at_end: bool) -> bool {
        match self.ends.scan(&self.text, at_end) {
            Scan::Marker { start, index, len } => {
                let end = if self.closing && index == 0 {
                    start + len
                } else {
                    start
                };
                self.text.drain(..end);
                self.skipping = false;
                true
            }
            Scan::Text { safe } => {
                self.text.drain(..safe);
                false
            }
        }
    }
}

impl From<BodyStep> for Next {
    fn from(step: BodyStep) -> Self {
        match step {
            BodyStep::More => Next::More,
            BodyStep::Done { rest } => Next::Done { rest },
        }
    }
}

/// A call-span reader made of steps over buffered text; it is a [`CallBody`]. See the
/// [module](self).
pub trait BufferedBody {
    /// The reader's [`Span`].
    fn span(&mut self) -> &mut Span;

    /// Reads what it can from the front of the span's text, in the current phase. `at_end`: the
    /// output ended, no more text will come; report what is left open. Not called while a broken
    /// call is skipped.
    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next;

    /// A skipped call's text reached the marker that ends it. By default the span ends there and
    /// the text from there on is output again; a span of several calls goes on reading instead.
    fn skipped(&mut self, _out: &mut Emitter) -> Next {
        Next::Done {
            rest: std::mem::take(&mut self.span().text),
        }
    }

    /// The output ended while the steps waited for more, outside a skipped call: report what is
    /// still open that the steps did not (`Done` gives back text after the span).
    fn ended(&mut self, _out: &mut Emitter) -> BodyStep {
        BodyStep::More
    }
}

/// Steps until one waits for more text or the span ends.
fn run<B: BufferedBody>(body: &mut B, out: &mut Emitter, at_end: bool) -> BodyStep {
    loop {
        let next = if !body.span().skipping {
            body.step(out, at_end)
        } else if body.span().skip_to_end(at_end) {
            body.skipped(out)
        } else {
            Next::More
        };
        match next {
            Next::Step => {}
            Next::More => return BodyStep::More,
            Next::Done { rest } => return BodyStep::Done { rest },
        }
    }
}

impl<B: BufferedBody> CallBody for B {
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep {
        self.span().text.push_str(text);
        run(self, out, false)
    }

    fn finish(&mut self, out: &mut Emitter) -> BodyStep {
        match run(self, out, true) {
            BodyStep::More if !self.span().skipping => self.ended(out),
            step => step,
        }
    }
}
