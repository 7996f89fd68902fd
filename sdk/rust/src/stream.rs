//! A complete stream parser built from a description of a family's output format.
//!
//! Most families differ only in their markers: where reasoning starts and ends, which strings
//! open a tool call and how the call's text reads, which tokens end a turn. A [`Spec`] names
//! them; [`OutputParser`] does the rest, keeping the parsing rules of the contract:
//! - reasoning is split off first, and a call inside closed reasoning is reasoning; a call
//!   inside reasoning that never closes is a call (the text around it stays reasoning);
//! - explicit call markup is a call anywhere, also inside a markdown fence (the fence goes too);
//! - end-of-turn markers are removed; content is trimmed, streaming included;
//! - outputs that are calls by their whole shape ([`WholeRule`]) are held back until they end;
//! - with `lenient`, a ` ```json ` fence in prose whose whole body is calls naming offered tools
//!   is those calls (the prose around stays content); held back until the fence closes;
//! - markers split across chunks are held back, never sent as content.

use std::borrow::Cow;

use crate::StreamParse;
use crate::calls::FENCE;
use crate::calls::list::FENCE_INFO_MAX;
use crate::calls::{BodyStep, CallBody};
use crate::emit::Emitter;
use crate::scanner::{Markers, Scan};
use crate::types::{AdapterError, ParseOptions, StreamEvent};
use crate::whole::{JsonShape, Shape, WholeCall, WholeRule, read_lenient_json};

/// A string that opens a tool call, and how to read the call after it.
pub struct CallMarkup {
    pub open: Cow<'static, str>,
    pub body: Box<dyn Fn() -> Box<dyn CallBody>>,
}

impl CallMarkup {
    pub fn new(
        open: impl Into<Cow<'static, str>>,
        body: impl Fn() -> Box<dyn CallBody> + 'static,
    ) -> Self {
        CallMarkup {
            open: open.into(),
            body: Box::new(body),
        }
    }
}

/// The output format of a family. Markers are `Cow`s: constants cost nothing to hand over
/// (`"<think>".into()`), and a marker made at run time is a `String` (`name.into()`).
#[derive(Default)]
pub struct Spec {
    /// The markers around reasoning, e.g. `("<think>", "</think>")`.
    pub reasoning: Option<(Cow<'static, str>, Cow<'static, str>)>,
    /// Markers that end a turn; removed from the content.
    pub end_of_turn: Vec<Cow<'static, str>>,
    /// The markups that open a tool call.
    pub calls: Vec<CallMarkup>,
    /// Shapes that make a whole output calls without markup (beside `lenient`).
    pub whole: Vec<WholeRule>,
}

/// A family's output format, for [`OutputParser`].
pub trait Format: 'static {
    /// Describes the format. `options` are those of the generation being read.
    fn spec(options: &ParseOptions) -> Spec;
}

enum Mode {
    Content,
    Reasoning,
    Call(Box<dyn CallBody>),
    /// After a fence opener: wait to see whether a tool call follows inside the fence.
    Fence(Cow<'static, str>),
    /// Holding back an output that may be calls by its whole shape.
    Whole,
    /// Lenient: a JSON fence in prose (its info line and body still pending), held while its
    /// body may be calls. `fed`: how much of the pending text `shape` has read.
    FencedCalls {
        opener: Cow<'static, str>,
        shape: JsonShape,
        fed: usize,
    },
    /// A call marker inside reasoning: held back from it on, until the reasoning closes (then
    /// all of it is reasoning) or the output ends without closing it (then its calls are calls).
    ReasoningCall,
}

/// What a content marker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Reasoning,
    Call(usize),
    EndOfTurn,
    Fence,
}

/// A stream parser for any [`Format`].
pub struct OutputParser<F: Format> {
    spec: Spec,
    options: ParseOptions,
    out: Emitter,
    pending: Pending,
    mode: Mode,
    content_markers: Markers,
    actions: Vec<Action>,
    /// The reasoning's closing marker, then the end-of-turn markers (removed from reasoning),
    /// then the call openers (see [`Mode::ReasoningCall`]).
    reasoning_close: Markers,
    /// How many of `reasoning_close` are the closing marker and the end-of-turn markers.
    reasoning_ends: usize,
    /// The reasoning's closing marker is known to follow: call openers before it are reasoning.
    close_ahead: bool,
    /// How much of the held text [`Mode::ReasoningCall`] has searched for the closing marker.
    close_searched: usize,
    call_openers: Markers,
    whole: Vec<WholeRule>,
    /// Incremental checks of the rules that have one (parallel to `whole`), and how much of
    /// `pending` they have read.
    shapes: Vec<Option<JsonShape>>,
    shapes_fed: usize,
    /// The first content has been looked at for a whole-output shape.
    whole_decided: bool,
    /// Calls were opened inside a markdown fence whose closing line is still to come.
    in_fence: bool,
    _format: std::marker::PhantomData<F>,
}

impl<F: Format> OutputParser<F> {
    pub fn new(options: ParseOptions) -> Self {
        let spec = F::spec(&options);
        let count = 2 + spec.calls.len() + spec.end_of_turn.len();
        let mut markers = Vec::with_capacity(count);
        let mut actions = Vec::with_capacity(count);
        if let Some((open, _)) = &spec.reasoning {
            markers.push(open.clone());
            actions.push(Action::Reasoning);
        }
        for (i, call) in spec.calls.iter().enumerate() {
            markers.push(call.open.clone());
            actions.push(Action::Call(i));
        }
        for eot in &spec.end_of_turn {
            markers.push(eot.clone());
            actions.push(Action::EndOfTurn);
        }
        markers.push(FENCE.into());
        actions.push(Action::Fence);
        let mut whole = spec.whole.clone();
        if options.lenient {
            whole.push(WholeRule::LENIENT_JSON);
            whole.push(WholeRule::NATURAL);
        }
        let mode = match (&spec.reasoning, options.reasoning_open) {
            (Some(_), true) => Mode::Reasoning,
            _ => Mode::Content,
        };
        OutputParser {
            reasoning_close: Markers::new(
                spec.reasoning
                    .iter()
                    .map(|(_, close)| close.clone())
                    .chain(spec.end_of_turn.iter().cloned())
                    .chain(spec.calls.iter().map(|c| c.open.clone())),
            ),
            reasoning_ends: 1 + spec.end_of_turn.len(),
            close_ahead: false,
            close_searched: 0,
            call_openers: Markers::new(spec.calls.iter().map(|c| c.open.clone())),
            content_markers: Markers::new(markers),
            actions,
            whole_decided: whole.is_empty(),
            shapes: Vec::new(),
            shapes_fed: 0,
            whole,
            out: Emitter::new(&options.tools),
            options,
            spec,
            pending: Pending::default(),
            mode,
            in_fence: false,
            _format: std::marker::PhantomData,
        }
    }

    /// The text after leading whitespace and any end-of-turn markers at its end.
    fn whole_text<'a>(&self, text: &'a str, at_end: bool) -> &'a str {
        let mut t = text.trim();
        if !at_end {
            // A partial end-of-turn marker at the very end, first: complete ones may stand
            // before it (`{…}<|python_end|><|eo`).
            'partial: for eot in &self.spec.end_of_turn {
                for cut in (1..eot.len()).rev() {
                    if eot.is_char_boundary(cut) && t.ends_with(&eot[..cut]) {
                        t = t[..t.len() - cut].trim_end();
                        break 'partial;
                    }
                }
            }
        }
        loop {
            let before = t.len();
            for eot in &self.spec.end_of_turn {
                if let Some(stripped) = t.strip_suffix(&**eot) {
                    t = stripped.trim_end();
                }
            }
            if t.len() == before {
                break;
            }
        }
        t
    }

    /// Runs the modes over the pending text until nothing more can be decided.
    fn drive(&mut self, at_end: bool) {
        loop {
            match &mut self.mode {
                Mode::Content => {
                    if !self.whole_decided {
                        if !self.decide_whole(at_end) {
                            return;
                        }
                        if matches!(self.mode, Mode::Whole) {
                            continue;
                        }
                    }
                    if self.in_fence && !self.close_fence(at_end) {
                        return;
                    }
                    match self.content_markers.scan(&self.pending, at_end) {
                        Scan::Marker { start, index, len } => {
                            // An end-of-turn marker is cut out of the text around it. What
                            // before it could begin a marker stays pending, so that the two
                            // sides cannot join into a marker no scan has seen
                            // (`<|i` `<|im_end|>` `m_end|>`).
                            let keep = match self.actions[index] {
                                Action::EndOfTurn => {
                                    self.content_markers.partial_suffix(&self.pending[..start])
                                }
                                _ => 0,
                            };
                            self.out.content(&self.pending[..start - keep]);
                            self.pending.cut(start - keep, start..start + len);
                            let marker = self.content_markers.list()[index].clone();
                            match self.actions[index] {
                                Action::Reasoning => self.mode = Mode::Reasoning,
                                Action::Call(i) => {
                                    self.mode = Mode::Call((self.spec.calls[i].body)());
                                }
                                Action::EndOfTurn => {}
                                Action::Fence => self.mode = Mode::Fence(marker),
                            }
                        }
                        Scan::Text { safe } => {
                            let safe = safe - held_with(&self.content_markers, &self.pending, safe);
                            self.out.content(&self.pending[..safe]);
                            self.pending.consume(safe);
                            return;
                        }
                    }
                }
                Mode::Reasoning => match self.reasoning_close.scan(&self.pending, at_end) {
                    Scan::Marker { start, len, index } if index >= self.reasoning_ends => {
                        // A call marker in reasoning. Before a known close it is reasoning;
                        // otherwise hold it and what follows until that is known.
                        let upto = if self.close_ahead { start + len } else { start };
                        self.out.reasoning(&self.pending[..upto]);
                        self.pending.consume(upto);
                        if !self.close_ahead {
                            self.close_searched = 0;
                            self.mode = Mode::ReasoningCall;
                        }
                    }
                    Scan::Marker { start, len, index } => {
                        // As in content: the text around a removed end-of-turn marker does
                        // not join into another.
                        let keep = match index {
                            0 => 0,
                            _ => self.reasoning_close.partial_suffix(&self.pending[..start]),
                        };
                        self.out.reasoning(&self.pending[..start - keep]);
                        self.pending.cut(start - keep, start..start + len);
                        // Index 0 closes the reasoning; the others are end-of-turn markers of an
                        // output that ended while reasoning, removed like everywhere else.
                        if index == 0 {
                            self.close_ahead = false;
                            self.mode = Mode::Content;
                        }
                    }
                    Scan::Text { safe } => {
                        let safe = safe - held_with(&self.reasoning_close, &self.pending, safe);
                        self.out.reasoning(&self.pending[..safe]);
                        self.pending.consume(safe);
                        return;
                    }
                },
                Mode::Call(body) => {
                    // The body is given the text in pieces, small first and doubling up to a
                    // bound: it copies what it is given and hands back what follows its call (or,
                    // in a span of several calls, each call's rest) as a string of its own, so
                    // given all of a long output's rest, parsing was quadratic in the calls;
                    // bounded pieces keep each call's copying near its length or the bound.
                    let mut size = FIRST_PIECE;
                    let step = loop {
                        if self.pending.is_empty() && !at_end {
                            break BodyStep::More;
                        }
                        let piece = self.pending.piece(size);
                        size = (size * 2).min(LAST_PIECE);
                        let step = body.push(&self.pending[..piece], &mut self.out);
                        self.pending.consume(piece);
                        match step {
                            BodyStep::More if !self.pending.is_empty() => {}
                            BodyStep::More if at_end => break body.finish(&mut self.out),
                            step => break step,
                        }
                    };
                    match step {
                        BodyStep::More => {
                            if at_end {
                                self.mode = Mode::Content;
                            }
                            return;
                        }
                        BodyStep::Done { rest } => {
                            self.pending.put_back(rest);
                            self.mode = Mode::Content;
                        }
                    }
                }
                Mode::Fence(held) => {
                    // The fence's info string, its line break and any blank space, then a call?
                    let newline = self.pending.find('\n');
                    let info = &self.pending[..newline.unwrap_or(self.pending.len())];
                    // Judged alike whether the line break came in the same chunk or later.
                    let info_ok = info.len() < FENCE_INFO_MAX && !info.contains(' ');
                    let Some(newline) = newline.filter(|_| info_ok) else {
                        if at_end || !info_ok {
                            // Not a fence around a call: the opener is content, and what
                            // follows it is read as output again.
                            let held = std::mem::take(held);
                            self.out.content(&held);
                            self.mode = Mode::Content;
                            continue;
                        }
                        return;
                    };
                    let after = self.pending[newline + 1..].trim_start();
                    match self.call_openers.scan(after, at_end) {
                        Scan::Marker { start: 0, .. } => {
                            let skip = self.pending.len() - after.len();
                            self.pending.consume(skip);
                            self.in_fence = true;
                            self.mode = Mode::Content;
                        }
                        Scan::Text { safe: 0 } if !at_end => return,
                        _ if self.options.lenient && after.starts_with(['{', '[']) => {
                            let opener = std::mem::take(held);
                            let mut shape = JsonShape::new(Shape::JsonCalls, &[]);
                            shape.feed(&opener);
                            self.mode = Mode::FencedCalls {
                                opener,
                                shape,
                                fed: 0,
                            };
                        }
                        _ => {
                            // Not a fence around a call: the opener is content, and the rest,
                            // its info line included, is read as output again (it may hold
                            // markers).
                            let held = std::mem::take(held);
                            self.out.content(&held);
                            self.mode = Mode::Content;
                        }
                    }
                }
                Mode::ReasoningCall => {
                    let close = &self.spec.reasoning.as_ref().expect("reasoning markers").1;
                    let mut from = self.close_searched.saturating_sub(close.len());
                    while !self.pending.is_char_boundary(from) {
                        from -= 1;
                    }
                    if self.pending[from..].contains(&**close) {
                        // The reasoning closes after the call: it is all reasoning.
                        self.close_ahead = true;
                        self.mode = Mode::Reasoning;
                        continue;
                    }
                    self.close_searched = self.pending.len();
                    if !at_end {
                        return;
                    }
                    // The reasoning never closed: the calls in it are calls, and the text
                    // around them reasoning.
                    self.out.content_as_reasoning();
                    self.whole_decided = true;
                    self.mode = Mode::Content;
                }
                Mode::FencedCalls { opener, shape, fed } => {
                    let body = self
                        .pending
                        .find('\n')
                        .map_or(self.pending.len(), |n| n + 1);
                    // Searched from where the last look ended (less a fence's worth, which
                    // may have been cut there): a long body is read once, not at every push.
                    let mut from = body.max(fed.saturating_sub(FENCE.len() - 1));
                    while !self.pending.is_char_boundary(from) {
                        from -= 1;
                    }
                    let close = self.pending[from..].find(FENCE).map(|i| from + i);
                    let upto = close.unwrap_or(self.pending.len());
                    // The closing fence is fed too: the shape has read it in part already
                    // when it came in pieces.
                    let fence_end = close.map_or(upto, |c| c + FENCE.len());
                    let alive = shape.feed(&self.pending[*fed..fence_end]);
                    *fed = fence_end;
                    if alive && (close.is_some() || at_end) {
                        let text = self.pending[body..upto].trim();
                        if let Some(calls) = read_lenient_json(text, &self.options) {
                            self.emit_whole_calls(calls);
                            self.pending.consume(fence_end);
                            self.mode = Mode::Content;
                            continue;
                        }
                    } else if alive {
                        return;
                    }
                    // Not calls: the opener is content, and the rest is read again.
                    let opener = std::mem::take(opener);
                    self.out.content(&opener);
                    self.mode = Mode::Content;
                }
                Mode::Whole => {
                    let text = self.whole_text(&self.pending, at_end);
                    if at_end {
                        if let Some(calls) = self.read_whole(text) {
                            self.emit_whole_calls(calls);
                            self.pending.clear();
                            return;
                        }
                    } else if self.could_still_be_calls() {
                        return;
                    }
                    // Not calls after all: read it as ordinary output.
                    self.mode = Mode::Content;
                    self.whole_decided = true;
                }
            }
        }
    }

    /// Whether the held output may still turn out to be calls: incremental shapes read only
    /// what arrived since the last look; custom rules look at the whole text.
    fn could_still_be_calls(&mut self) -> bool {
        let new = &self.pending[self.shapes_fed.min(self.pending.len())..];
        let mut alive = false;
        for shape in self.shapes.iter_mut().flatten() {
            alive |= shape.feed(new);
        }
        self.shapes_fed = self.pending.len();
        if alive {
            return true;
        }
        let text = self.whole_text(&self.pending, false);
        self.whole
            .iter()
            .any(|rule| rule.shape == Shape::Custom && (rule.could_be)(text))
    }

    fn emit_whole_calls(&mut self, calls: Vec<WholeCall>) {
        for call in calls {
            let index = self.out.start_call();
            self.out.begin_call(index, None, call.name);
            self.out.arguments(index, &call.arguments);
            self.out.end_call(index);
        }
    }

    fn read_whole(&self, text: &str) -> Option<Vec<WholeCall>> {
        self.whole
            .iter()
            .find_map(|rule| (rule.read)(text, &self.options))
    }

    /// Looks at the start of the content (reasoning aside) for a whole-output shape. Returns
    /// false while it cannot tell yet.
    fn decide_whole(&mut self, at_end: bool) -> bool {
        let text = self.pending.trim_start();
        if text.is_empty() && !at_end {
            return false;
        }
        if self.out.has_content() || self.out.calls_started() > 0 {
            self.whole_decided = true;
            return true;
        }
        if let Some((open, _)) = &self.spec.reasoning {
            if text.starts_with(&**open) {
                // Reasoning first: decide on what follows it.
                return true;
            }
            if open.starts_with(text) && !at_end {
                return false;
            }
        }
        let end_of_turn = self.spec.end_of_turn.clone();
        self.shapes = self
            .whole
            .iter()
            .map(|rule| match rule.shape {
                Shape::Custom => None,
                shape => Some(JsonShape::new(shape, &end_of_turn)),
            })
            .collect();
        self.shapes_fed = 0;
        if self.could_still_be_calls() {
            self.mode = Mode::Whole;
        } else {
            self.whole_decided = true;
        }
        true
    }

    /// After calls inside a markdown fence: drops the fence's closing line. Returns false while
    /// it cannot tell yet.
    fn close_fence(&mut self, at_end: bool) -> bool {
        let text = self.pending.trim_start();
        if text.is_empty() {
            if at_end {
                self.in_fence = false;
            }
            return at_end;
        }
        if let Some(rest) = text.strip_prefix(FENCE) {
            let skip = self.pending.len() - rest.len();
            self.pending.consume(skip);
            self.in_fence = false;
            return true;
        }
        if FENCE.starts_with(text) && !at_end {
            return false;
        }
        match self.call_openers.scan(text, at_end) {
            // Another call inside the same fence.
            Scan::Marker { start: 0, .. } => {}
            Scan::Text { safe: 0 } if !at_end => return false,
            _ => self.in_fence = false,
        }
        true
    }
}

/// The text received and not yet read. Reading from the front moves a cursor rather than the
/// text after it: a whole output arrives as one push, and moving its rest at every marker made
/// parsing quadratic in the number of markers. What was read is dropped when more arrives.
/// Dereferences to the unread text.
#[derive(Default)]
struct Pending {
    text: String,
    read: usize,
}

/// The first piece of text a call body is given, and the largest (see `Mode::Call` in
/// `drive`).
const FIRST_PIECE: usize = 256;
const LAST_PIECE: usize = 4096;

impl std::ops::Deref for Pending {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text[self.read..]
    }
}

impl Pending {
    fn push_str(&mut self, delta: &str) {
        self.text.drain(..self.read);
        self.read = 0;
        self.text.push_str(delta);
    }

    /// Marks the first `n` bytes read.
    fn consume(&mut self, n: usize) {
        self.read += n;
        debug_assert!(self.text.is_char_boundary(self.read));
    }

    /// Removes `marker` and marks what is before `from` read (`from ≤ marker.start`).
    fn cut(&mut self, from: usize, marker: std::ops::Range<usize>) {
        let keep = marker.start - from;
        let (from, start, end) = (
            self.read + from,
            self.read + marker.start,
            self.read + marker.end,
        );
        if keep == 0 {
            self.read = end;
        } else if self.text.is_char_boundary(end - keep) {
            // The kept text (a few bytes, see `Markers::partial_suffix`) is written over the
            // marker's end, against what follows it: the rest does not move.
            let kept = self.text[from..start].to_string();
            self.text.replace_range(end - keep..end, &kept);
            self.read = end - keep;
        } else {
            self.text.replace_range(start..end, "");
            self.read = from;
        }
    }

    /// The length of the next piece for a call body: at most `size` bytes, whole characters.
    fn piece(&self, size: usize) -> usize {
        let mut n = self.len().min(size);
        while !self.is_char_boundary(n) {
            n -= 1;
        }
        n
    }

    /// Puts `rest`, which a call body did not use, back before the unread text. It is
    /// normally the end of what the body was given, still in place: then nothing moves.
    fn put_back(&mut self, rest: String) {
        let start = self.read.wrapping_sub(rest.len());
        if rest.len() <= self.read && self.text.as_bytes()[start..self.read] == *rest.as_bytes() {
            self.read = start;
        } else {
            self.text = rest + &self.text[self.read..];
            self.read = 0;
        }
    }

    fn clear(&mut self) {
        self.text.clear();
        self.read = 0;
    }
}

/// While a marker may be starting at `safe` (text held back), the text before it that could
/// begin a marker is held back too: should the marker be an end-of-turn marker, removing it
/// would join the two. Returns how much more to hold.
fn held_with(markers: &Markers, pending: &str, safe: usize) -> usize {
    if safe < pending.len() {
        markers.partial_suffix(&pending[..safe])
    } else {
        0
    }
}

impl<F: Format> StreamParse for OutputParser<F> {
    fn new(options: ParseOptions) -> Self {
        OutputParser::new(options)
    }

    fn push(&mut self, delta: &str) -> Result<Vec<StreamEvent>, AdapterError> {
        self.pending.push_str(delta);
        self.drive(false);
        Ok(self.out.take())
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, AdapterError> {
        self.drive(true);
        if let Mode::Fence(held) = &mut self.mode {
            let held = std::mem::take(held);
            self.out.content(&held);
        }
        self.mode = Mode::Content;
        Ok(self.out.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::JsonCalls;
    use crate::emit::fold;

    struct Think;

    impl Format for Think {
        fn spec(_: &ParseOptions) -> Spec {
            Spec {
                reasoning: Some(("<think>".into(), "</think>".into())),
                end_of_turn: vec!["<|im_end|>".into()],
                calls: vec![CallMarkup::new("<call>", || {
                    Box::new(JsonCalls::new(Some("</call>"), true).ending_at(["<call>"]))
                })],
                whole: vec![],
            }
        }
    }

    fn parse(text: &str, size: usize) -> crate::types::ParsedResponse {
        let options = ParseOptions {
            tools: vec![],
            reasoning_open: false,
            lenient: false,
        };
        let mut parser = OutputParser::<Think>::new(options);
        let chars: Vec<char> = text.chars().collect();
        let mut events = Vec::new();
        for chunk in chars.chunks(size) {
            events.extend(parser.push(&chunk.iter().collect::<String>()).unwrap());
        }
        events.extend(parser.finish().unwrap());
        fold(events)
    }

    #[test]
    fn text_around_a_removed_end_of_turn_marker_never_joins_into_one() {
        // Found by fuzzing: cutting the inner marker out of `<|i<|im_end|>m_end|>` used to
        // leave `<|im_end|>` in the content.
        for size in 1..9 {
            let r = parse("a<|i<|im_end|>m_end|>b <|im_<|im_end|>x", size);
            assert_eq!(r.content.as_deref(), Some("ab <|im_x"), "size {size}");
            // Found by fuzzing later: two levels deep, each removal completing the next.
            let r = parse("a<|i<|i<|im_end|>m_end|>m_end|>b", size);
            assert_eq!(r.content.as_deref(), Some("ab"), "size {size}");
            let r = parse("<think>x<|i<|i<|im_end|>m_end|>m_end|>y</think>", size);
            assert_eq!(r.reasoning.as_deref(), Some("xy"), "size {size}");
            let r = parse("<think>x<|i<|im_end|>m_end|>y</think>z", size);
            assert_eq!(r.reasoning.as_deref(), Some("xy"), "size {size}");
            assert_eq!(r.content.as_deref(), Some("z"), "size {size}");
        }
    }

    #[test]
    fn long_outputs_read_alike_in_one_piece_and_in_many() {
        // Longer than the pieces a call body is given at once (`FIRST_PIECE`, doubling):
        // calls whose arguments cross piece boundaries, two-byte characters at them.
        let mut text = String::from("<think>plan ✓</think>");
        for i in 0..60 {
            text.push_str(&format!("step {i}: héllo wörld "));
            let s = "é".repeat(i * 37);
            text.push_str(&format!(
                "<call>{{\"name\": \"f{i}\", \"arguments\": {{\"s\": \"{s}\"}}}}</call>"
            ));
        }
        text.push_str(" done<|im_end|>");
        let whole = parse(&text, text.len());
        assert_eq!(whole.tool_calls.len(), 60);
        assert!(whole.problems.is_empty(), "{:?}", whole.problems);
        assert_eq!(whole.reasoning.as_deref(), Some("plan ✓"));
        // Content around a call is joined as it stood: the spaces on both sides stay.
        let content = whole.content.as_deref().expect("content");
        assert!(content.ends_with("step 59: héllo wörld  done"), "{content}");
        assert_eq!(
            whole.tool_calls[59].arguments.len(),
            r#"{"s": ""}"#.len() + 59 * 37 * 2
        );
        for size in [1, 5, 4095, 4097] {
            assert_eq!(parse(&text, size), whole, "size {size}");
        }
    }

    #[test]
    fn runs_of_marker_beginnings_are_held_back_only_so_far() {
        // `<` begins a marker: a model repeating it must not have its whole output held back
        // (found by review: each push then copied the held run again, quadratic), nor a cut
        // marker after each `<` move the rest of a whole output.
        let mut parser = OutputParser::<Think>::new(ParseOptions {
            tools: vec![],
            reasoning_open: false,
            lenient: false,
        });
        let mut sent = 0;
        for _ in 0..1000 {
            for event in parser.push("<").unwrap() {
                if let StreamEvent::Content(text) = event {
                    sent += text.len();
                }
            }
        }
        // Held: the run before a possible marker (`PARTIAL_RUN` markers' worth, 4 × 10
        // bytes here), and the possible marker itself.
        assert!(sent >= 1000 - 50, "{sent} sent");
        let text = "<<|im_end|>".repeat(3000);
        for size in [7, text.len()] {
            assert_eq!(
                parse(&text, size).content,
                Some("<".repeat(3000)),
                "size {size}"
            );
        }
    }

    #[test]
    fn end_of_turn_markers_leave_unclosed_reasoning() {
        for size in 1..6 {
            let r = parse("<think>still thinking<|im_end|>", size);
            assert_eq!(
                r.reasoning.as_deref(),
                Some("still thinking"),
                "size {size}"
            );
            assert_eq!(r.content, None);
        }
    }

    #[test]
    fn markers_on_a_fence_line_are_still_markers() {
        for size in 1..6 {
            let r = parse("```<|im_end|>\nx <call>{\"name\": \"a\"}</call>", size);
            assert_eq!(r.content.as_deref(), Some("```\nx"), "size {size}");
            assert_eq!(r.tool_calls.len(), 1);
            let r = parse("```py\nprint(1)\n```", size);
            assert_eq!(r.content.as_deref(), Some("```py\nprint(1)\n```"));
        }
    }

    #[test]
    fn a_call_without_its_closing_marker_ends_at_the_next_one() {
        let text = "<call>{\"name\": \"a\"}<call>{\"name\": \"b\", \"arguments\": {\"x\": }\n\
                    <call>{\"name\": \"c\"}</call> done";
        for size in 1..6 {
            let r = parse(text, size);
            let names: Vec<_> = r.tool_calls.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["a", "c"], "size {size}");
            assert_eq!(r.problems.len(), 1);
            assert_eq!(r.problems[0].index, Some(1));
            assert_eq!(r.content.as_deref(), Some("done"));
        }
    }
}
