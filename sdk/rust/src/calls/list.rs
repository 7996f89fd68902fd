//! [`CallList`]: JSON call objects after a call marker that has no closing marker of its own,
//! alone (`{"name": …}`) or in a JSON list (`[{"name": …}, {"name": …}]`), as Mistral v0.3
//! writes after `[TOOL_CALLS]`, Granite after `<|tool_call|>` and Phi-4-mini after `functools`.
//!
//! Without a closing marker, only the JSON says where the span ends, and a broken element
//! would otherwise lose every call after it. So the reader drives a [`JsonCalls`] one value at
//! a time and watches the same bytes with a [`JsonScanner`] of its own, which tells it where
//! each value ends or breaks:
//! - after bad JSON inside a list it looks for the next element (`}, {"…`) and goes on reading
//!   there: one broken call does not lose the good calls after it;
//! - where nothing can be recovered it skips to the next stop marker (the next call marker,
//!   the end of the turn), which is given back as output;
//! - JSON in a markdown fence after the marker (what small models write) is read too, and the
//!   fence's closing line is dropped.
//!
//! ```
//! use plugboard_sdk::calls::CallList;
//! use plugboard_sdk::stream::{CallMarkup, Format, Spec};
//! use plugboard_sdk::types::ParseOptions;
//!
//! struct Granite;
//!
//! impl Format for Granite {
//!     fn spec(_: &ParseOptions) -> Spec {
//!         Spec {
//!             end_of_turn: vec!["<|end_of_text|>".into()],
//!             calls: vec![CallMarkup::new("<|tool_call|>", || {
//!                 // The next call marker or the end of the turn ends a broken list; some
//!                 // models close the list with `</tool_call>`, which is dropped.
//!                 Box::new(
//!                     CallList::new(["<|tool_call|>", "<|end_of_text|>"])
//!                         .dropping("</tool_call>"),
//!                 )
//!             })],
//!             ..Spec::default()
//!         }
//!     }
//! }
//! ```

use std::borrow::Cow;

use super::{BodyStep, BufferedBody, CallBody, FENCE, JsonCalls, Next, Span};
use crate::emit::Emitter;
use crate::json::JsonScanner;
use crate::scanner::Scan;
use crate::types::ProblemKind;

/// The longest info string (`json`, `tool_code`) a fence around calls may have, line break
/// included.
pub(crate) const FENCE_INFO_MAX: usize = 16;

enum State {
    /// Nothing but whitespace read yet.
    Before,
    /// Inside a value: `inner` reads the calls, `mirror` sees the same bytes.
    Value {
        inner: Box<JsonCalls>,
        mirror: JsonScanner,
        in_list: bool,
        /// The last byte that was not whitespace, to tell where an error happened.
        last: u8,
        /// Bytes of the output itself were read (not only the opener's prefix).
        read: bool,
    },
    /// A value is complete: another may follow (`,` or whitespace, then `{`).
    After,
    /// Bad JSON inside a list: looking for the next element. `after_comma`: the bad byte came
    /// right after a `,`, so it may itself open the next element.
    Resync { after_comma: bool },
}

/// Reads call objects, alone or in JSON lists, until the JSON is over. See the
/// [module](self) for what it recovers from.
pub struct CallList {
    state: State,
    /// Its ends are the stop markers, which end the span from outside JSON and are given back
    /// as output: where the JSON breaks beyond repair, the span is skipped to them.
    span: Span,
    /// Text the opener already consumed, read first.
    prefix: String,
    /// A closing marker dropped after the JSON.
    closer: Option<String>,
    /// The JSON sits in a markdown fence, whose closing line is still to come.
    fenced: bool,
    /// See [`CallList::ids_after`].
    ids_after: bool,
}

impl CallList {
    /// `stops`: markers that end the span from outside JSON, typically the format's call
    /// markers and end-of-turn markers. Where the JSON breaks beyond repair the reader skips to
    /// the first of them, and gives it back as output.
    pub fn new<S: Into<Cow<'static, str>>>(stops: impl IntoIterator<Item = S>) -> Self {
        CallList {
            state: State::Before,
            span: Span::new(None, stops),
            prefix: String::new(),
            closer: None,
            fenced: false,
            ids_after: false,
        }
    }

    /// Each call is sent when its object closes, with an `"id"` written after its name and
    /// arguments (see [`JsonCalls::ids_after`]).
    pub fn ids_after(mut self) -> Self {
        self.ids_after = true;
        self
    }

    /// Text that the format's opener already consumed, read as if it came first: the `[` of
    /// Phi-4-mini's `functools[`, a marker that ends inside the JSON so that prose about
    /// Python's `functools` stays prose.
    pub fn opened_with(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// A closing marker that some models write after the JSON (`</tool_call>`), dropped there.
    pub fn dropping(mut self, closer: impl Into<String>) -> Self {
        self.closer = Some(closer.into()).filter(|c| !c.is_empty());
        self
    }

    /// Starts reading a value; `synthetic` is text fed before the output's own bytes (the
    /// opener's prefix, or the `[` that makes a resynchronised element a list again).
    fn start_value(&mut self, out: &mut Emitter, synthetic: &str) {
        let mut inner = JsonCalls::new(None, false);
        if self.ids_after {
            inner = inner.ids_after();
        }
        let mut inner = Box::new(inner);
        let mut mirror = JsonScanner::new();
        let mut last = b' ';
        let mut in_list = false;
        if !synthetic.is_empty() {
            inner.push(synthetic, out);
            for b in synthetic.bytes() {
                // The synthetic text is an opening bracket: valid JSON, nothing to report.
                let _ = mirror.feed(b);
                last = b;
            }
            in_list = synthetic.starts_with('[');
        }
        self.state = State::Value {
            inner,
            mirror,
            in_list,
            last,
            read: synthetic.is_empty(),
        };
    }
}

impl BufferedBody for CallList {
    fn span(&mut self) -> &mut Span {
        &mut self.span
    }

    fn step(&mut self, out: &mut Emitter, at_end: bool) -> Next {
        match &mut self.state {
            State::Before => {
                if !self.prefix.is_empty() {
                    let prefix = std::mem::take(&mut self.prefix);
                    self.start_value(out, &prefix);
                    return Next::Step;
                }
                let text = self.span.text.trim_start();
                if text.is_empty() {
                    if at_end {
                        let index = out.start_call();
                        out.problem(
                            ProblemKind::Truncated,
                            format!("call {index}: the output ended right after the call marker"),
                            Some(index),
                        );
                    }
                    return Next::More;
                }
                if text.starts_with(['[', '{']) {
                    let skip = self.span.text.len() - text.len();
                    self.span.text.drain(..skip);
                    self.start_value(out, "");
                    return Next::Step;
                }
                // Small models fence the JSON: ```json, a line break, the list, ```.
                if let Some(info) = text.strip_prefix(FENCE).filter(|_| !self.fenced) {
                    // An info string is judged alike whether its line break came in the
                    // same piece or later: short (as the wait for it is), alphanumeric.
                    match info.find('\n') {
                        Some(newline)
                            if newline < FENCE_INFO_MAX
                                && info[..newline].trim().chars().all(char::is_alphanumeric) =>
                        {
                            let skip = self.span.text.len() - info.len() + newline + 1;
                            self.span.text.drain(..skip);
                            self.fenced = true;
                            return Next::Step;
                        }
                        None if !at_end && info.len() < FENCE_INFO_MAX => {
                            return Next::More;
                        }
                        _ => {}
                    }
                }
                if !at_end && FENCE.starts_with(text) {
                    return Next::More;
                }
                match self.span.ends().scan(text, at_end) {
                    Scan::Text { safe: 0 } if !at_end => return Next::More,
                    Scan::Marker { start: 0, .. } => {
                        let index = out.start_call();
                        out.problem(
                            ProblemKind::MissingName,
                            format!("call {index}: the tool call is empty"),
                            Some(index),
                        );
                    }
                    _ => {
                        let index = out.start_call();
                        out.problem(
                            ProblemKind::MalformedJson,
                            format!(
                                "call {index}: expected a JSON list of calls after the call marker"
                            ),
                            Some(index),
                        );
                    }
                }
                // What follows is output again.
                return Next::Done {
                    rest: std::mem::take(&mut self.span.text),
                };
            }
            State::Value {
                inner,
                mirror,
                in_list,
                last,
                read,
            } => {
                *read |= self.span.text.bytes().any(|b| !b.is_ascii_whitespace());
                let mut outcome = None;
                for (i, b) in self.span.text.bytes().enumerate() {
                    if mirror.is_empty() && i == 0 && b == b'[' {
                        *in_list = true;
                    }
                    if mirror.feed(b).is_err() {
                        outcome = Some((i, false));
                        break;
                    }
                    if mirror.is_done() {
                        outcome = Some((i, true));
                        break;
                    }
                    if !b.is_ascii_whitespace() {
                        *last = b;
                    }
                }
                match outcome {
                    None => {
                        inner.push(&self.span.text, out);
                        self.span.text.clear();
                        return Next::More;
                    }
                    Some((i, true)) => {
                        // The value ends with a bracket: one byte.
                        inner.push(&self.span.text[..=i], out);
                        self.span.text.drain(..=i);
                        self.state = State::After;
                    }
                    Some((i, false)) => {
                        // `inner` sees the bad character too, and reports the problem for
                        // the call it breaks.
                        let end = char_end(&self.span.text, i);
                        inner.push(&self.span.text[..end], out);
                        let after_comma = *last == b',';
                        if *in_list {
                            self.state = State::Resync { after_comma };
                        } else {
                            self.span.skip();
                        }
                        self.span.text.drain(..i);
                    }
                }
            }
            State::After => {
                let text = self.span.text.trim_start();
                if self.fenced {
                    if let Some(after) = text.strip_prefix(FENCE) {
                        self.span.text = after.to_string();
                        self.fenced = false;
                        return Next::Step;
                    }
                    if !at_end && !text.is_empty() && FENCE.starts_with(text) {
                        return Next::More;
                    }
                }
                if let Some(closer) = &self.closer {
                    if let Some(after) = text.strip_prefix(closer.as_str()) {
                        self.span.text = after.to_string();
                        self.closer = None;
                        return Next::Step;
                    }
                    if !at_end && closer.starts_with(text) {
                        return Next::More;
                    }
                }
                let next = match text.strip_prefix(',') {
                    Some(after) => after.trim_start(),
                    None => text,
                };
                if next.is_empty() && !at_end {
                    return Next::More;
                }
                if next.starts_with('{') {
                    let skip = self.span.text.len() - next.len();
                    self.span.text.drain(..skip);
                    self.start_value(out, "");
                    return Next::Step;
                }
                return Next::Done {
                    rest: std::mem::take(&mut self.span.text),
                };
            }
            State::Resync { after_comma } => {
                let (region, stop) = match self.span.ends().scan(&self.span.text, at_end) {
                    Scan::Marker { start, .. } => (start, Some(start)),
                    Scan::Text { safe } => (safe, None),
                };
                let at_stop = at_end || stop.is_some();
                match next_element(&self.span.text[..region], *after_comma, at_stop) {
                    Element::Found(at) => {
                        self.span.text.drain(..at);
                        self.start_value(out, "[");
                        return Next::Step;
                    }
                    Element::Wait(at) => {
                        if at > 0 {
                            self.span.text.drain(..at);
                            *after_comma = false;
                        }
                        return Next::More;
                    }
                    Element::None => {}
                }
                if let Some(start) = stop {
                    return Next::Done {
                        rest: self.span.text.split_off(start),
                    };
                }
                self.span.text.drain(..region);
                *after_comma = false;
                return Next::More;
            }
        }
        Next::Step
    }

    fn ended(&mut self, out: &mut Emitter) -> BodyStep {
        match &mut self.state {
            // Nothing after a marker that ends inside the JSON (`functools[`).
            State::Value { read: false, .. } => {
                let index = out.start_call();
                out.problem(
                    ProblemKind::Truncated,
                    format!("call {index}: the output ended right after the call marker"),
                    Some(index),
                );
            }
            // The output ended inside the JSON: the open call is truncated.
            State::Value { inner, .. } => return inner.finish(out),
            _ => {}
        }
        BodyStep::More
    }
}

/// The byte after the character that starts at `i`.
fn char_end(text: &str, i: usize) -> usize {
    (i + 1..=text.len())
        .find(|&e| text.is_char_boundary(e))
        .unwrap_or(text.len())
}

enum Element {
    /// The next element starts here.
    Found(usize),
    /// The text from here may still become the start of the next element.
    Wait(usize),
    None,
}

/// Finds the start of the next call object in a list after bad JSON: a `{` and a key, after
/// `},` (the end of the broken element and the list's comma), or at the very start when the
/// bad byte followed a comma. `complete`: no more text will come.
fn next_element(text: &str, after_comma: bool, complete: bool) -> Element {
    let bytes = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // `{` then whitespace then `"`, from `at`: Some(true) yes, Some(false) no, None undecided.
    let object_at = |at: usize| -> Option<bool> {
        if at >= bytes.len() {
            return None;
        }
        if bytes[at] != b'{' {
            return Some(false);
        }
        let key = skip_ws(at + 1);
        if key >= bytes.len() {
            return None;
        }
        Some(bytes[key] == b'"')
    };
    if after_comma {
        let at = skip_ws(0);
        match object_at(at) {
            Some(true) => return Element::Found(at),
            None if !complete => return Element::Wait(0),
            _ => {}
        }
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'}' {
            continue;
        }
        let comma = skip_ws(i + 1);
        if comma >= bytes.len() {
            return if complete {
                Element::None
            } else {
                Element::Wait(i)
            };
        }
        if bytes[comma] != b',' {
            continue;
        }
        let at = skip_ws(comma + 1);
        match object_at(at) {
            Some(true) => return Element::Found(at),
            Some(false) => {}
            None if complete => return Element::None,
            None => return Element::Wait(i),
        }
    }
    Element::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamParse;
    use crate::emit::fold;
    use crate::stream::{CallMarkup, Format, OutputParser, Spec};
    use crate::types::{ParseOptions, ParsedResponse};

    const CALLS: &str = "[CALLS]";
    const FUNC: &str = "func[";
    const EOT: &str = "<eot>";

    /// A format with all three ways in: a plain marker with a dropped `</calls>`, and a marker
    /// that ends inside the JSON.
    struct Lists;

    impl Format for Lists {
        fn spec(_: &ParseOptions) -> Spec {
            Spec {
                end_of_turn: vec![EOT.into()],
                calls: vec![
                    CallMarkup::new(CALLS, || {
                        Box::new(CallList::new([CALLS, FUNC, EOT]).dropping("</calls>"))
                    }),
                    CallMarkup::new(FUNC, || {
                        Box::new(CallList::new([CALLS, FUNC, EOT]).opened_with("["))
                    }),
                ],
                ..Spec::default()
            }
        }
    }

    /// Parses `text` whole, then in chunks of 1 to 7 characters, and checks they agree.
    fn parse(text: &str) -> ParsedResponse {
        let options = ParseOptions {
            tools: vec![],
            reasoning_open: false,
            lenient: false,
        };
        let run = |size: usize| {
            let mut parser = OutputParser::<Lists>::new(options.clone());
            let chars: Vec<char> = text.chars().collect();
            let mut events = Vec::new();
            for chunk in chars.chunks(size) {
                events.extend(parser.push(&chunk.iter().collect::<String>()).unwrap());
            }
            events.extend(parser.finish().unwrap());
            fold(events)
        };
        let whole = run(text.chars().count().max(1));
        for size in 1..8 {
            assert_eq!(run(size), whole, "{text:?} in chunks of {size}");
        }
        whole
    }

    fn names(r: &ParsedResponse) -> Vec<&str> {
        r.tool_calls.iter().map(|c| c.name.as_str()).collect()
    }

    fn problems(r: &ParsedResponse) -> Vec<(ProblemKind, Option<u32>)> {
        r.problems.iter().map(|p| (p.kind, p.index)).collect()
    }

    #[test]
    fn reads_a_list_a_single_object_and_objects_in_a_row() {
        let r = parse(
            "Sure.[CALLS][{\"name\": \"a\", \"arguments\": {\"x\": [1, \"}\"]}}, {\"name\": \"b\"}] done",
        );
        assert_eq!(names(&r), ["a", "b"]);
        assert_eq!(r.tool_calls[0].arguments, "{\"x\": [1, \"}\"]}");
        assert_eq!(r.tool_calls[1].arguments, "{}");
        assert_eq!(r.content.as_deref(), Some("Sure. done"));
        let r = parse("[CALLS] {\"name\": \"a\"}, {\"name\": \"b\"}<eot>");
        assert_eq!(names(&r), ["a", "b"]);
        assert_eq!(r.content, None);
    }

    #[test]
    fn a_broken_element_loses_only_itself() {
        let r = parse(
            "[CALLS][{\"name\": \"a\"}, {\"name\": \"b\", \"arguments\": {\"x\": }}, {\"name\": \"c\"}]",
        );
        assert_eq!(names(&r), ["a", "c"]);
        assert_eq!(problems(&r), [(ProblemKind::MalformedJson, Some(1))]);
        // The bad byte right after a comma may open the next element itself: here a call
        // object left unclosed.
        let r = parse("[CALLS][{\"name\": \"a\", {\"name\": \"b\"}]");
        assert_eq!(names(&r), ["b"]);
        assert_eq!(problems(&r), [(ProblemKind::MalformedJson, Some(0))]);
    }

    #[test]
    fn unrecoverable_json_skips_to_the_next_stop_marker() {
        let r = parse("[CALLS]{\"name\": oops} [CALLS][{\"name\": \"b\"}]<eot>");
        assert_eq!(names(&r), ["b"]);
        assert_eq!(problems(&r), [(ProblemKind::MalformedJson, Some(0))]);
        assert_eq!(r.content, None);
    }

    #[test]
    fn not_json_after_the_marker_is_output_again() {
        let r = parse("[CALLS] no calls here");
        assert!(r.tool_calls.is_empty());
        assert_eq!(problems(&r), [(ProblemKind::MalformedJson, Some(0))]);
        assert_eq!(r.content.as_deref(), Some("no calls here"));
        let r = parse("[CALLS]<eot>");
        assert_eq!(problems(&r), [(ProblemKind::MissingName, Some(0))]);
    }

    #[test]
    fn fences_closers_and_prefixes() {
        let r = parse("[CALLS]```json\n[{\"name\": \"a\"}]\n```\nok");
        assert_eq!(names(&r), ["a"]);
        assert_eq!(r.content.as_deref(), Some("ok"));
        let r = parse("[CALLS][{\"name\": \"a\"}]</calls> after");
        assert_eq!(names(&r), ["a"]);
        assert_eq!(r.content.as_deref(), Some("after"));
        let r = parse("func[{\"name\": \"a\"}, {\"name\": \"b\"}]");
        assert_eq!(names(&r), ["a", "b"]);
        // Found by fuzzing: an info string too long to wait for was a fence when its line
        // break came in the same piece, and not when it came later.
        let r = parse("[CALLS]```jsssssssssssssssssssson\n[{\"name\": \"a\"}]");
        assert!(r.tool_calls.is_empty());
        assert_eq!(problems(&r), [(ProblemKind::MalformedJson, Some(0))]);
    }

    #[test]
    fn the_end_of_the_output_inside_a_list() {
        let r = parse("[CALLS][{\"name\": \"a\"}, {\"name\": \"b\", \"argu");
        assert_eq!(names(&r), ["a"]);
        assert_eq!(problems(&r), [(ProblemKind::Truncated, Some(1))]);
        let r = parse("func[");
        assert_eq!(problems(&r), [(ProblemKind::Truncated, Some(0))]);
        let r = parse("[CALLS]  ");
        assert_eq!(problems(&r), [(ProblemKind::Truncated, Some(0))]);
    }
}
