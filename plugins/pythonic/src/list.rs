//! A list of pythonic calls, `[get_weather(city="Paris"), get_time()]`, read as it arrives.
//!
//! Each call's name is sent when its `(` arrives; each keyword argument is sent as soon as the
//! `,` or `)` after it shows that it is complete, so the argument deltas build the JSON object
//! piece by piece: `{"city": "Paris"` … `, "unit": "c"` … `}`.
//!
//! A call whose arguments cannot be read fails alone: bad syntax is `malformed-json`, a value
//! that is no literal (a variable, an expression) or a positional argument is
//! `invalid-arguments`; reading resumes after the call's closing parenthesis, so the calls
//! around it stand ([`crate::args`]). A call cut off by the end of the output is `truncated`.
//!
//! The same reader serves the text after `<|python_start|>` (Llama 4), where the brackets may
//! be missing and `<|python_end|>` closes the span, and a whole output that may be a list of
//! calls, where anything that is not a list of calls makes it [`PyList::broken`].

use plugboard_sdk::calls::{BufferedBody, Next, Span};
use plugboard_sdk::emit::Emitter;
use plugboard_sdk::types::ProblemKind;

use crate::PYTHON_END;
use crate::args::{ArgStep, CallArgs};
use crate::pylit::{identifier, json_string, skip_space};

#[derive(Clone, Debug)]
enum State {
    /// Before `[` (or, without brackets, before the first call).
    Start,
    /// Before a call's name, or `]`.
    BeforeCall,
    /// Inside a call's parentheses (the buffer starts after its `(`).
    Call { index: u32, args: CallArgs },
    /// After a call: `,` or `]`.
    AfterCall,
    /// After `]`: an optional `<|python_end|>`.
    End,
}

#[derive(Clone, Debug)]
pub struct PyList {
    /// Nothing is skipped: a call that fails skips its own arguments ([`CallArgs`]).
    span: Span,
    state: State,
    /// The brackets are required (a whole output), not only allowed (after `<|python_start|>`).
    require_brackets: bool,
    bracketed: bool,
    /// A call was begun: its name and `(` were read.
    attempted: bool,
    /// The text is not a list of calls (it was given back as output).
    broken: bool,
}

/// A tool name: a Python name, also dotted (`functions.get_weather`) or with `-`, which tool
/// names may hold. Returns the name and the byte after it.
fn tool_name(text: &str, pos: usize) -> Option<(&str, usize)> {
    let (_, _) = identifier(text, pos)?;
    let rest = &text[pos..];
    let len = rest
        .find(|c: char| !(c == '_' || c == '.' || c == '-' || c.is_alphanumeric()))
        .unwrap_or(rest.len());
    Some((&rest[..len], pos + len))
}

impl PyList {
    /// The text after `<|python_start|>`: brackets optional, `<|python_end|>` closes it.
    pub fn markup() -> Self {
        Self::new(false)
    }

    /// A whole output: only a bracketed list of calls is one.
    pub fn whole() -> Self {
        Self::new(true)
    }

    fn new(require_brackets: bool) -> Self {
        PyList {
            span: Span::default(),
            state: State::Start,
            require_brackets,
            bracketed: false,
            attempted: false,
            broken: false,
        }
    }

    /// A call was begun.
    pub fn attempted(&self) -> bool {
        self.attempted
    }

    /// The text is not a list of calls.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Gives the text from `pos` back as output: the list ended (or never was one).
    fn give_back(&mut self, pos: usize, broken: bool, out: &mut Emitter) -> Next {
        if broken {
            self.broken = true;
            if !self.attempted {
                let index = out.start_call();
                out.problem(
                    ProblemKind::MalformedJson,
                    format!("call {index}: expected a list of calls such as [name(arg=value)]"),
                    Some(index),
                );
            }
        }
        let rest = self.span.text[pos..].to_string();
        self.span.text.clear();
        Next::Done { rest }
    }

    /// The text ran out between tokens: wait, or at the end of the output report the call
    /// cut off `what` says where (`None`: nothing was cut off).
    fn wait(&mut self, at_end: bool, out: &mut Emitter, what: Option<&str>) -> Next {
        if !at_end {
            return Next::More;
        }
        if let Some(what) = what {
            let index = out.start_call();
            out.problem(
                ProblemKind::Truncated,
                format!("call {index}: the output ended {what}"),
                Some(index),
            );
        }
        self.span.text.clear();
        Next::Done {
            rest: String::new(),
        }
    }
}

impl BufferedBody for PyList {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        match &mut self.state {
            State::Start => {
                let pos = skip_space(&self.span.text, 0);
                if pos == self.span.text.len() {
                    if self.require_brackets {
                        self.broken |= at_end;
                        return self.wait(at_end, out, None);
                    }
                    return self.wait(at_end, out, Some("right after the call marker"));
                }
                if self.span.text[pos..].starts_with('[') {
                    self.bracketed = true;
                    self.span.text.drain(..=pos);
                } else if self.require_brackets || tool_name(&self.span.text, pos).is_none() {
                    return self.give_back(pos, true, out);
                } else {
                    self.span.text.drain(..pos);
                }
                self.state = State::BeforeCall;
            }
            State::BeforeCall => {
                let pos = skip_space(&self.span.text, 0);
                if pos == self.span.text.len() {
                    // Between calls the calls so far are complete; before the first one
                    // the list was cut off.
                    let what = (!self.attempted).then_some("before the first call");
                    return self.wait(at_end, out, what);
                }
                if self.bracketed && self.span.text[pos..].starts_with(']') {
                    self.span.text.drain(..=pos);
                    self.state = State::End;
                    return Next::Step;
                }
                let Some((name, end)) = tool_name(&self.span.text, pos) else {
                    return self.give_back(pos, true, out);
                };
                let paren = skip_space(&self.span.text, end);
                if paren == self.span.text.len() {
                    return self.wait(at_end, out, Some("inside a call's name"));
                }
                if !self.span.text[paren..].starts_with('(') {
                    return self.give_back(pos, true, out);
                }
                let name = name.to_string();
                let index = out.start_call();
                out.begin_call(index, None, name);
                self.attempted = true;
                self.span.text.drain(..=paren);
                self.state = State::Call {
                    index,
                    args: CallArgs::default(),
                };
            }
            State::Call { index, args } => {
                let index = *index;
                match args.step(&self.span.text) {
                    ArgStep::Argument { name, json } => {
                        let lead = if args.any_before_last() { ", " } else { "{" };
                        out.arguments(index, &format!("{lead}{}: {json}", json_string(&name)));
                    }
                    ArgStep::Close { end } => {
                        if !args.failed() {
                            out.arguments(index, if args.any() { "}" } else { "{}" });
                            out.end_call(index);
                        }
                        self.span.text.drain(..end);
                        self.state = State::AfterCall;
                    }
                    ArgStep::Failed(kind, message) => {
                        out.problem(kind, format!("call {index}: {message}"), Some(index));
                    }
                    ArgStep::More if at_end => {
                        if !args.failed() {
                            out.problem(
                                ProblemKind::Truncated,
                                format!("call {index}: the output ended inside the call"),
                                Some(index),
                            );
                        }
                        self.span.text.clear();
                        return Next::Done {
                            rest: String::new(),
                        };
                    }
                    ArgStep::More => return Next::More,
                }
            }
            State::AfterCall => {
                let pos = skip_space(&self.span.text, 0);
                let Some(next) = self.span.text[pos..].chars().next() else {
                    return self.wait(at_end, out, None);
                };
                match next {
                    ',' => {
                        self.span.text.drain(..=pos);
                        self.state = State::BeforeCall;
                    }
                    ']' if self.bracketed => {
                        self.span.text.drain(..=pos);
                        self.state = State::End;
                    }
                    // Calls without brackets end at anything else.
                    _ if !self.bracketed => self.state = State::End,
                    _ => return self.give_back(pos, true, out),
                }
            }
            State::End => {
                let text = self.span.text.trim_start();
                if let Some(rest) = text.strip_prefix(PYTHON_END) {
                    let rest = rest.to_string();
                    self.span.text.clear();
                    return Next::Done { rest };
                }
                if PYTHON_END.starts_with(text) && !at_end {
                    return Next::More;
                }
                let skip = self.span.text.len() - text.len();
                return self.give_back(skip, false, out);
            }
        }
        Next::Step
    }
}
