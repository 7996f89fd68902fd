//! Readers for the inside of a tool-call span, after its opening marker.
//!
//! A [`CallBody`] receives the text after a trigger such as `<tool_call>` and turns it into call
//! events until its span ends. Two readers cover most families:
//! - [`JsonCalls`]: one or more JSON call objects (`{"name": …, "arguments": …}`), or a JSON list
//!   of them, optionally closed by a marker (`</tool_call>`);
//! - [`CallList`]: call objects, alone or in a JSON list, after a marker with no closing marker
//!   of its own (`[TOOL_CALLS]`, `<|tool_call|>`, `functools[`), recovering after a broken
//!   element;
//! - [`ArgsReader`]: a bare JSON arguments value, for formats that write the name outside JSON
//!   (`[TOOL_CALLS]name[ARGS]{…}`, `tool_name: NAME\narguments: {…}`).
//!
//! A family's own reader is a [`BufferedBody`]: its steps over its phases, with the buffering,
//! call numbering and skipping of broken calls that every reader needs done by a [`Span`].

pub mod buffered;
pub mod list;

pub use buffered::{ArgsRead, BufferedBody, Next, Span};
pub use list::CallList;

/// A markdown code fence.
pub const FENCE: &str = "```";

/// Whether `c` may stand in a tool name written bare, outside a JSON string (`NAME[ARGS]`,
/// `function<sep>NAME`, `call:NAME{`): letters, digits, `_`, `-` and `.`.
pub fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Whether `text` is a proper start of one of `markers`, so that more text may complete one
/// (a reader then waits for more before it decides).
pub fn may_become(text: &str, markers: &[&str]) -> bool {
    markers
        .iter()
        .any(|m| m.len() > text.len() && m.starts_with(text))
}

use crate::emit::Emitter;
use crate::json::{
    ArgumentsError, JsonEvent, JsonScanner, ValueKind, arguments_text, decode_string,
};
use crate::scanner::Scan;
use crate::types::ProblemKind;

/// What a [`CallBody`] did with the text it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyStep {
    /// The span goes on: all text was taken (some may be held back inside the body).
    More,
    /// The span ended; `rest` is the text after it, to be read as output again.
    Done { rest: String },
}

/// Reads the text of one tool-call span.
pub trait CallBody {
    /// Takes the next piece of the span's text.
    fn push(&mut self, text: &str, out: &mut Emitter) -> BodyStep;
    /// The output ended inside the span: report what is left open (usually `truncated`).
    /// `Done` gives back text after the span's end, to be read as output.
    fn finish(&mut self, out: &mut Emitter) -> BodyStep;
}

/// Reads one JSON value that holds a call's arguments, sending an object's text as argument
/// deltas while it arrives.
///
/// An object streams as it is written. A JSON string holding an object is decoded once (sent
/// whole when complete); `null` means `{}`; any other value is `invalid-arguments`.
#[derive(Clone, Debug)]
pub struct ArgsReader {
    index: u32,
    scanner: JsonScanner,
    kind: Option<ValueKind>,
    raw: Vec<u8>,
    /// Arguments held until the call's name is known (see [`ArgsReader::hold`]).
    held: Option<String>,
}

/// What [`ArgsReader::push`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsStep {
    /// The value is not complete yet; all text was read.
    More,
    /// The value is complete after `used` bytes; the arguments were sent.
    Done { used: usize },
    /// The value is not valid arguments; the problem was reported. `used` bytes were read.
    Failed { used: usize },
}

impl ArgsReader {
    /// Reads the arguments of call `index`, whose begin event has been sent.
    pub fn new(index: u32) -> Self {
        ArgsReader {
            index,
            scanner: JsonScanner::new(),
            kind: None,
            raw: Vec::new(),
            held: None,
        }
    }

    /// Like [`ArgsReader::new`], but keeps the arguments until [`ArgsReader::release`]: for
    /// formats that may write the arguments before the name.
    pub fn hold(index: u32) -> Self {
        ArgsReader {
            held: Some(String::new()),
            ..Self::new(index)
        }
    }

    /// Sends arguments held back by [`ArgsReader::hold`], and streams from now on.
    pub fn release(&mut self, out: &mut Emitter) {
        if let Some(held) = self.held.take() {
            out.arguments(self.index, &held);
        }
    }

    /// Nothing but whitespace read yet.
    pub fn is_empty(&self) -> bool {
        self.scanner.is_empty()
    }

    fn send(&mut self, out: &mut Emitter, text: &str) {
        match &mut self.held {
            Some(held) => held.push_str(text),
            None => out.arguments(self.index, text),
        }
    }

    pub fn push(&mut self, text: &str, out: &mut Emitter) -> ArgsStep {
        let mut stream_from = (self.kind == Some(ValueKind::Object)).then_some(0);
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let plain = self.scanner.feed_plain(&bytes[i..]);
            if plain > 0 {
                if self.kind.is_some_and(|k| k != ValueKind::Object) {
                    self.raw.extend_from_slice(&bytes[i..i + plain]);
                }
                i += plain;
                continue;
            }
            let b = bytes[i];
            let fed = match self.scanner.feed(b) {
                Ok(fed) => fed,
                Err(e) => {
                    if let Some(from) = stream_from {
                        self.send(out, &text[from..i]);
                    }
                    out.problem(
                        ProblemKind::MalformedJson,
                        format!("call {}: arguments: {e}", self.index),
                        Some(self.index),
                    );
                    return ArgsStep::Failed { used: i };
                }
            };
            let mut ended = None;
            for event in fed.iter() {
                match event {
                    JsonEvent::ValueStart { depth: 0, kind } => {
                        self.kind = Some(kind);
                        if kind == ValueKind::Object {
                            stream_from = Some(i);
                        }
                    }
                    JsonEvent::ValueEnd {
                        depth: 0,
                        inclusive,
                    } => ended = Some(inclusive),
                    _ => {}
                }
            }
            let raw_value = self.kind.is_some_and(|k| k != ValueKind::Object);
            if raw_value && ended != Some(false) {
                self.raw.push(b);
            }
            if let Some(inclusive) = ended {
                let end = if inclusive { i + 1 } else { i };
                return self.complete(text, stream_from, end, out);
            }
            i += 1;
        }
        if let Some(from) = stream_from {
            self.send(out, &text[from..]);
        }
        ArgsStep::More
    }

    fn complete(
        &mut self,
        text: &str,
        stream_from: Option<usize>,
        end: usize,
        out: &mut Emitter,
    ) -> ArgsStep {
        if self.kind == Some(ValueKind::Object) {
            self.send(out, &text[stream_from.unwrap_or(0)..end]);
            return ArgsStep::Done { used: end };
        }
        let raw = String::from_utf8_lossy(&self.raw).into_owned();
        match arguments_text(&raw) {
            Ok(args) => {
                self.send(out, &args);
                ArgsStep::Done { used: end }
            }
            Err(ArgumentsError::Malformed(m) | ArgumentsError::NotAnObject(m)) => {
                out.problem(
                    ProblemKind::InvalidArguments,
                    format!("call {}: {m}", self.index),
                    Some(self.index),
                );
                ArgsStep::Failed { used: end }
            }
        }
    }

    /// The output ended: a started value is `truncated`; none at all means `{}`.
    /// Returns whether the call is complete.
    pub fn finish(&mut self, out: &mut Emitter) -> bool {
        if self.scanner.is_empty() {
            self.send(out, "{}");
            return true;
        }
        if self.scanner.is_done() {
            return true;
        }
        out.problem(
            ProblemKind::Truncated,
            format!("call {}: the output ended inside the arguments", self.index),
            Some(self.index),
        );
        false
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Name,
    Arguments,
    Id,
    /// `{"function": {...}}` wraps the call, or `{"function": "name"}` names it.
    Function,
    Other,
}

fn role_of(key: &[u8]) -> Role {
    match decode_string(&[b"\"", key, b"\""].concat()).as_deref() {
        Some("name") => Role::Name,
        Some("arguments" | "parameters" | "args") => Role::Arguments,
        Some("id") => Role::Id,
        Some("function") => Role::Function,
        _ => Role::Other,
    }
}

/// What bytes of the current value are being captured, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Capture {
    None,
    Name,
    Id,
    /// An arguments object, streamed.
    ArgsObject,
    /// An arguments string or literal, decoded at its end.
    ArgsRaw,
    /// A value that makes the arguments invalid; read to its end, then reported.
    ArgsInvalid,
}

/// One call object being read.
#[derive(Clone, Debug)]
struct CallObject {
    index: u32,
    /// Depth of the `{` that opened it (0 top level, 1 inside a list).
    depth: usize,
    /// Inside `{"function": {…}}`.
    wrapped: bool,
    role: Role,
    capture: Capture,
    captured: Vec<u8>,
    name: Option<String>,
    id: Option<String>,
    begun: bool,
    has_args: bool,
    /// Arguments read before the name.
    pending_args: String,
    failed: bool,
    /// Begun only when the object closes, so that an `"id"` after the name is sent with it.
    held: bool,
}

impl CallObject {
    fn key_depth(&self) -> usize {
        self.depth + 1 + usize::from(self.wrapped)
    }

    fn send_args(&mut self, out: &mut Emitter, text: &str) {
        if self.failed {
            return;
        }
        if self.begun {
            out.arguments(self.index, text);
        } else {
            self.pending_args.push_str(text);
        }
    }

    fn begin(&mut self, out: &mut Emitter) {
        if self.begun || self.failed {
            return;
        }
        if let Some(name) = self.name.clone() {
            self.begun = true;
            out.begin_call(self.index, self.id.clone(), name);
            let pending = std::mem::take(&mut self.pending_args);
            out.arguments(self.index, &pending);
        }
    }

    fn fail(&mut self, out: &mut Emitter, kind: ProblemKind, message: String) {
        if !self.failed {
            self.failed = true;
            out.problem(
                kind,
                format!("call {}: {message}", self.index),
                Some(self.index),
            );
        }
    }

    fn close(&mut self, out: &mut Emitter) {
        if self.failed {
            return;
        }
        if self.name.is_none() {
            self.fail(
                out,
                ProblemKind::MissingName,
                "the call object has no \"name\"".to_string(),
            );
            return;
        }
        self.begin(out);
        if !self.has_args {
            out.arguments(self.index, "{}");
        }
        out.end_call(self.index);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first value.
    Before,
    Value,
    /// A value is complete: more values, the closing marker, or the end of the span.
    After,
}

/// Reads JSON call objects: `{"name": "f", "arguments": {…}}` (also `"parameters"`, a
/// `"function"` wrapper, an `"id"`), or a JSON list of them, as in Hermes' `<tool_call>`,
/// Mistral's `[TOOL_CALLS]`, Llama's `<|python_tag|>` and Granite's `<|tool_call|>`.
///
/// The name is sent as soon as it is complete; arguments stream as they arrive (held until the
/// name when they come first). Bad JSON fails the call it is in and the reader skips to the
/// closing marker (without one, to the end of the output); calls before it stand.
#[derive(Clone, Debug)]
pub struct JsonCalls {
    /// The format has a closing marker: the span's ends are it and those of
    /// [`Self::ending_at`]. Without one, the JSON alone ends the span.
    closed: bool,
    many: bool,
    phase: Phase,
    scanner: JsonScanner,
    call: Option<CallObject>,
    span: Span,
    /// See [`JsonCalls::ids_after`].
    ids_after: bool,
}

impl JsonCalls {
    /// `close`: the marker that ends the span (`</tool_call>`), if the format has one; without it
    /// the span ends with the JSON. `many`: several values may follow each other in one span,
    /// separated by whitespace, `,` or `;`.
    pub fn new(close: Option<&'static str>, many: bool) -> Self {
        JsonCalls {
            closed: close.is_some_and(|c| !c.is_empty()),
            many,
            phase: Phase::Before,
            scanner: JsonScanner::new(),
            call: None,
            span: Span::new(close, []),
            ids_after: false,
        }
    }

    /// For formats that write a call's `"id"` after its name and arguments (Mistral v0.3's
    /// `{"name": …, "arguments": …, "id": …}`): each call is sent when its object closes, with
    /// its id, instead of its name as soon as it is complete and its arguments as they arrive.
    pub fn ids_after(mut self) -> Self {
        self.ids_after = true;
        self
    }

    /// Markers that also end the span, outside JSON values, without being part of it: they are
    /// given back as output. Typically the opening marker, for a model that forgets the closing
    /// one (`<tool_call>{…}<tool_call>{…}</tool_call>`): the second call then stands, also after
    /// a broken first one. Only meaningful with a closing marker.
    pub fn ending_at<S: Into<std::borrow::Cow<'static, str>>>(
        mut self,
        markers: impl IntoIterator<Item = S>,
    ) -> Self {
        if self.closed {
            let close = self.span.ends().list()[0].clone();
            self.span = Span::new(Some(close), markers.into_iter().map(Into::into));
        }
        self
    }

    /// The index of the call being read, or of a new attempt when none is.
    fn charge_index(&mut self, out: &mut Emitter) -> u32 {
        match &self.call {
            Some(call) => call.index,
            None => out.start_call(),
        }
    }

    /// Handles one byte of a value. Returns false when the JSON broke.
    fn value_byte(&mut self, b: u8, out: &mut Emitter) -> bool {
        let fed = match self.scanner.feed(b) {
            Ok(fed) => fed,
            Err(e) => {
                let index = self.charge_index(out);
                match &mut self.call {
                    Some(call) => call.fail(out, ProblemKind::MalformedJson, e.message),
                    None => out.problem(
                        ProblemKind::MalformedJson,
                        format!("call {index}: {}", e.message),
                        Some(index),
                    ),
                }
                self.call = None;
                return false;
            }
        };
        let mut include = self
            .call
            .as_ref()
            .is_some_and(|c| c.capture != Capture::None);
        for event in fed.iter() {
            match event {
                JsonEvent::ValueStart {
                    depth,
                    kind: ValueKind::Object,
                } if self.call.is_none() && depth <= 1 => {
                    let index = out.start_call();
                    self.call = Some(CallObject {
                        index,
                        depth,
                        wrapped: false,
                        role: Role::Other,
                        capture: Capture::None,
                        captured: Vec::new(),
                        name: None,
                        id: None,
                        begun: false,
                        has_args: false,
                        pending_args: String::new(),
                        failed: false,
                        held: self.ids_after,
                    });
                }
                JsonEvent::ValueStart { depth: 1, kind } if self.call.is_none() => {
                    let index = out.start_call();
                    out.problem(
                        ProblemKind::MalformedJson,
                        format!(
                            "call {index}: a list element is a JSON {kind:?}, not a call object"
                        ),
                        Some(index),
                    );
                }
                JsonEvent::KeyEnd { depth } => {
                    if let Some(call) = &mut self.call
                        && depth == call.key_depth()
                    {
                        call.role = role_of(self.scanner.key());
                    }
                }
                JsonEvent::ValueStart { depth, kind } => {
                    let Some(call) = &mut self.call else { continue };
                    if depth != call.key_depth() {
                        continue;
                    }
                    call.captured.clear();
                    if call.role == Role::Arguments && call.has_args {
                        // Two calls run together into one object (`{"name": "a", "arguments":
                        // {…}, "name": "b", "arguments": {…}}`): which arguments belong to the
                        // name is anyone's guess, and the first ones have been sent already.
                        call.fail(
                            out,
                            ProblemKind::MalformedJson,
                            "the call object has a second \"arguments\"".to_string(),
                        );
                    }
                    call.capture = match (call.role, kind) {
                        (Role::Name | Role::Function, ValueKind::String) => Capture::Name,
                        (Role::Id, ValueKind::String) => Capture::Id,
                        (Role::Arguments, ValueKind::Object) => {
                            call.has_args = true;
                            Capture::ArgsObject
                        }
                        (Role::Arguments, ValueKind::String | ValueKind::Literal) => {
                            call.has_args = true;
                            Capture::ArgsRaw
                        }
                        (Role::Arguments, _) => {
                            call.has_args = true;
                            Capture::ArgsInvalid
                        }
                        (Role::Function, ValueKind::Object) if !call.wrapped => {
                            call.wrapped = true;
                            Capture::None
                        }
                        _ => Capture::None,
                    };
                    include = call.capture != Capture::None;
                }
                JsonEvent::ValueEnd { depth, inclusive } => {
                    let Some(call) = &mut self.call else { continue };
                    if depth == call.key_depth() && call.capture != Capture::None {
                        if inclusive {
                            call.captured.push(b);
                        }
                        include = false;
                        finish_capture(call, out);
                    } else if call.wrapped && depth == call.depth + 1 {
                        call.wrapped = false;
                    } else if depth == call.depth {
                        call.close(out);
                        self.call = None;
                    }
                }
            }
        }
        if include && let Some(call) = &mut self.call {
            call.captured.push(b);
        }
        true
    }

    /// Sends the bytes of a streaming arguments object gathered during one push.
    fn flush_args(&mut self, out: &mut Emitter) {
        if let Some(call) = &mut self.call
            && call.capture == Capture::ArgsObject
            && !call.captured.is_empty()
        {
            let text = String::from_utf8_lossy(&call.captured).into_owned();
            call.captured.clear();
            call.send_args(out, &text);
        }
    }

    fn skip_separators(&self) -> usize {
        let text = &self.span.text;
        let trimmed = text.trim_start_matches(|c: char| {
            c.is_whitespace() || (self.many && (c == ',' || c == ';'))
        });
        text.len() - trimmed.len()
    }
}

impl BufferedBody for JsonCalls {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        match self.phase {
            Phase::Before | Phase::After => {
                let skip = if self.phase == Phase::After {
                    self.skip_separators()
                } else {
                    self.span.text.len() - self.span.text.trim_start().len()
                };
                let rest = self.span.text[skip..].to_string();
                if rest.is_empty() {
                    if !at_end || self.phase == Phase::Before {
                        return Next::More;
                    }
                    self.span.text.clear();
                    return Next::Done {
                        rest: String::new(),
                    };
                }
                let first = rest.as_bytes()[0];
                let starts_value = first == b'{' || first == b'[';
                if starts_value && (self.phase == Phase::Before || self.many) {
                    self.span.text.drain(..skip);
                    self.scanner = JsonScanner::new();
                    self.phase = Phase::Value;
                    return Next::Step;
                }
                if !self.closed {
                    if self.phase == Phase::Before {
                        let index = self.charge_index(out);
                        out.problem(
                            ProblemKind::MalformedJson,
                            format!("call {index}: expected a JSON call object"),
                            Some(index),
                        );
                    }
                    // The JSON is over: what follows is output again.
                    self.span.text.clear();
                    return Next::Done { rest };
                }
                if self.phase == Phase::Before {
                    match self.span.ends().scan(&rest, at_end) {
                        Scan::Marker { start: 0, .. } => {
                            let index = self.charge_index(out);
                            out.problem(
                                ProblemKind::MissingName,
                                format!("call {index}: the tool call is empty"),
                                Some(index),
                            );
                        }
                        Scan::Text { safe: 0 } if !at_end => return Next::More,
                        _ => {
                            let index = self.charge_index(out);
                            out.problem(
                                ProblemKind::MalformedJson,
                                format!("call {index}: expected a JSON call object"),
                                Some(index),
                            );
                        }
                    }
                }
                self.span.text.drain(..skip);
                self.span.skip();
                Next::Step
            }
            Phase::Value => {
                let bytes = std::mem::take(&mut self.span.text);
                let mut broke_at = None;
                let mut done_at = None;
                let raw = bytes.as_bytes();
                let mut i = 0;
                while i < raw.len() {
                    let plain = self.scanner.feed_plain(&raw[i..]);
                    if plain > 0 {
                        if let Some(call) = &mut self.call
                            && call.capture != Capture::None
                        {
                            call.captured.extend_from_slice(&raw[i..i + plain]);
                        }
                        i += plain;
                        continue;
                    }
                    if !self.value_byte(raw[i], out) {
                        broke_at = Some(i);
                        break;
                    }
                    i += 1;
                    if self.scanner.is_done() {
                        done_at = Some(i);
                        break;
                    }
                }
                self.flush_args(out);
                if let Some(i) = broke_at {
                    self.span.text = bytes[i..].to_string();
                    self.span.skip();
                } else if let Some(i) = done_at {
                    self.span.text = bytes[i..].to_string();
                    self.phase = Phase::After;
                } else {
                    return Next::More;
                }
                Next::Step
            }
        }
    }

    fn ended(&mut self, out: &mut Emitter) -> BodyStep {
        match self.phase {
            Phase::Value => match &mut self.call {
                Some(call) => call.fail(
                    out,
                    ProblemKind::Truncated,
                    "the output ended inside the call".to_string(),
                ),
                // Between the elements of a list: the calls read so far are complete.
                None if self.scanner.depth() == 1 => {}
                None => {
                    let index = out.start_call();
                    out.problem(
                        ProblemKind::Truncated,
                        format!("call {index}: the output ended inside the call"),
                        Some(index),
                    );
                }
            },
            Phase::Before => {
                let index = out.start_call();
                out.problem(
                    ProblemKind::Truncated,
                    format!("call {index}: the output ended right after the call marker"),
                    Some(index),
                );
            }
            Phase::After => {}
        }
        BodyStep::More
    }
}

fn finish_capture(call: &mut CallObject, out: &mut Emitter) {
    let capture = std::mem::replace(&mut call.capture, Capture::None);
    let raw = std::mem::take(&mut call.captured);
    let text = String::from_utf8_lossy(&raw).into_owned();
    match capture {
        Capture::Name => match decode_string(&raw) {
            Some(name) if !name.trim().is_empty() => match &call.name {
                None => {
                    call.name = Some(name.trim().to_string());
                    if !call.held {
                        call.begin(out);
                    }
                }
                Some(first) if first != name.trim() => call.fail(
                    out,
                    ProblemKind::MalformedJson,
                    format!("the call object names two tools, {first:?} and {name:?}"),
                ),
                Some(_) => {}
            },
            _ => call.fail(
                out,
                ProblemKind::MissingName,
                "the call's \"name\" is empty".to_string(),
            ),
        },
        Capture::Id => call.id = decode_string(&raw),
        Capture::ArgsObject => call.send_args(out, &text),
        Capture::ArgsRaw => match arguments_text(&text) {
            Ok(args) => call.send_args(out, &args),
            Err(ArgumentsError::Malformed(m) | ArgumentsError::NotAnObject(m)) => {
                call.fail(out, ProblemKind::InvalidArguments, m)
            }
        },
        Capture::ArgsInvalid => call.fail(
            out,
            ProblemKind::InvalidArguments,
            format!("the arguments are not a JSON object: {text}"),
        ),
        Capture::None => {}
    }
}
