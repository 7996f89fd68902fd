//! Finding markers (`<tool_call>`, `[TOOL_CALLS]`, `</think>` …) in text that arrives in pieces.
//!
//! A stream chunk may end in the middle of a marker: `"Sure <tool_"`. The text before the
//! possible marker is safe to send; `<tool_` must be held back until the next chunk shows whether
//! it becomes `<tool_call>` (a marker) or `<tool_box>` (text, released then).

use std::borrow::Cow;

/// What [`Markers::scan`] found at the front of a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole marker: `text[..start]` is plain text, then marker `index` of `len` bytes.
    Marker {
        start: usize,
        index: usize,
        len: usize,
    },
    /// No whole marker. `text[..safe]` is plain text; the rest may be the start of a marker
    /// and must wait for more input (it is empty when `at_end` was true).
    Text { safe: usize },
}

/// A set of marker strings. Markers are nearly always constants: they are kept borrowed, so
/// making a set costs one small allocation, not one per marker.
#[derive(Clone, Debug)]
pub struct Markers {
    list: Vec<Cow<'static, str>>,
    first_bytes: [bool; 256],
    /// The markers' distinct first bytes when there are at most three (`few` of them), for
    /// `memchr`: text between markers is skipped 16 bytes at a time, not byte by byte.
    firsts: [u8; 3],
    few: usize,
}

impl Default for Markers {
    fn default() -> Self {
        Markers::new(Vec::<&'static str>::new())
    }
}

/// How many markers' worth of beginnings [`Markers::partial_suffix`] holds at most.
pub const PARTIAL_RUN: usize = 4;

impl Markers {
    pub fn new<S: Into<Cow<'static, str>>>(markers: impl IntoIterator<Item = S>) -> Self {
        let list: Vec<Cow<'static, str>> = markers
            .into_iter()
            .map(Into::into)
            .filter(|m| !m.is_empty())
            .collect();
        let mut first_bytes = [false; 256];
        let mut firsts = [0; 3];
        let mut few = 0;
        for m in &list {
            let b = m.as_bytes()[0];
            if !first_bytes[b as usize] {
                if few < firsts.len() {
                    firsts[few] = b;
                }
                few += 1;
            }
            first_bytes[b as usize] = true;
        }
        Markers {
            list,
            first_bytes,
            firsts,
            few,
        }
    }

    /// The marker strings, in the order given.
    pub fn list(&self) -> &[Cow<'static, str>] {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Finds the earliest marker in `text`. Where two markers match at one place the longest
    /// wins, and where a longer one might still match once more text comes, the scan waits.
    /// With `at_end`, no more text will come: nothing is held back.
    pub fn scan(&self, text: &str, at_end: bool) -> Scan {
        let bytes = text.as_bytes();
        let mut from = 0;
        while let Some(found) = self.next_first_byte(&bytes[from..]) {
            let start = from + found;
            from = start + 1;
            if !text.is_char_boundary(start) {
                continue;
            }
            let rest = &text[start..];
            let mut best: Option<(usize, usize)> = None;
            let mut could_grow = false;
            for (index, m) in self.list.iter().enumerate() {
                if rest.starts_with(&**m) {
                    if best.is_none_or(|(_, len)| m.len() > len) {
                        best = Some((index, m.len()));
                    }
                } else if !at_end && m.starts_with(rest) {
                    could_grow = true;
                }
            }
            match best {
                Some((index, len)) if !could_grow => {
                    return Scan::Marker { start, index, len };
                }
                // A longer marker may still match here: wait and decide with more text.
                Some(_) => return Scan::Text { safe: start },
                None if could_grow => return Scan::Text { safe: start },
                None => {}
            }
        }
        Scan::Text { safe: text.len() }
    }

    /// Where the next byte that begins a marker is.
    fn next_first_byte(&self, bytes: &[u8]) -> Option<usize> {
        let [a, b, c] = self.firsts;
        match self.few {
            0 => None,
            1 => memchr::memchr(a, bytes),
            2 => memchr::memchr2(a, b, bytes),
            3 => memchr::memchr3(a, b, c, bytes),
            _ => bytes.iter().position(|&b| self.first_bytes[b as usize]),
        }
    }

    /// The length of the longest end of `text` made of beginnings of markers (`<|i` for
    /// `<|im_end|>`; `<|eot_i<|im`, two of them): text that a marker could still grow from,
    /// also once markers completed later inside it are cut out — `<|eot_i<|im` then
    /// `_end|>d|>` leaves `<|eot_id|>` when `<|im_end|>` is removed. At most
    /// [`PARTIAL_RUN`] beginnings' worth: held text must stay short (`<<<<…` is a run of
    /// beginnings), so a cascade of cut markers deeper than that may still join.
    pub fn partial_suffix(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let n = bytes.len();
        let longest = self.list.iter().map(|m| m.len()).max().unwrap_or(0);
        // `joins[k]`: the last `k` bytes are such a run (the empty end is).
        let mut joins = vec![true];
        let mut start = n;
        for i in (0..n).rev() {
            // A beginning is shorter than `longest`: no run reaches further back than that
            // past the last position one starts at.
            if start - i >= longest || n - i > PARTIAL_RUN * longest {
                break;
            }
            let runs_on = |l: usize| i + l <= n && joins[n - i - l];
            let begins = self.list.iter().any(|m| {
                let m = m.as_bytes();
                (1..m.len())
                    .take_while(|&l| i + l <= n && bytes[i + l - 1] == m[l - 1])
                    .any(runs_on)
            });
            joins.push(begins);
            if begins {
                start = i;
            }
        }
        n - start
    }
}

/// A piece of streamed text, split at markers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// The marker with this index in the [`Markers`] list.
    Marker(usize),
}

/// Splits streamed text into text and markers, holding back what may be a partial marker.
///
/// ```
/// use plugboard_sdk::scanner::{MarkerScanner, Piece};
/// let mut s = MarkerScanner::new(["<tool_call>"]);
/// assert_eq!(s.push("Sure <tool_"), vec![Piece::Text("Sure ".into())]);
/// assert_eq!(s.push("call>{"), vec![Piece::Marker(0), Piece::Text("{".into())]);
/// assert_eq!(s.push(" <tool"), vec![Piece::Text(" ".into())]);
/// assert_eq!(s.finish(), vec![Piece::Text("<tool".into())]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MarkerScanner {
    markers: Markers,
    held: String,
}

impl MarkerScanner {
    pub fn new<S: Into<Cow<'static, str>>>(markers: impl IntoIterator<Item = S>) -> Self {
        MarkerScanner {
            markers: Markers::new(markers),
            held: String::new(),
        }
    }

    /// Takes the next chunk; returns the pieces that are certain now.
    pub fn push(&mut self, chunk: &str) -> Vec<Piece> {
        self.held.push_str(chunk);
        self.drain(false)
    }

    /// Ends the stream: whatever was held back is text.
    pub fn finish(&mut self) -> Vec<Piece> {
        self.drain(true)
    }

    fn drain(&mut self, at_end: bool) -> Vec<Piece> {
        let mut pieces = Vec::new();
        loop {
            match self.markers.scan(&self.held, at_end) {
                Scan::Marker { start, index, len } => {
                    if start > 0 {
                        pieces.push(Piece::Text(self.held[..start].to_string()));
                    }
                    pieces.push(Piece::Marker(index));
                    self.held.drain(..start + len);
                }
                Scan::Text { safe } => {
                    if safe > 0 {
                        pieces.push(Piece::Text(self.held[..safe].to_string()));
                        self.held.drain(..safe);
                    }
                    return pieces;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan, one byte position at a time: what the memchr search must agree with.
    fn scan_bytewise(markers: &[&str], text: &str, at_end: bool) -> Scan {
        for start in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
            let rest = &text[start..];
            let best = (0..markers.len())
                .filter(|&i| rest.starts_with(markers[i]))
                .max_by_key(|&i| (markers[i].len(), std::cmp::Reverse(i)));
            let could_grow = !at_end
                && markers
                    .iter()
                    .any(|m| !rest.starts_with(m) && m.starts_with(rest));
            match best {
                Some(index) if !could_grow => {
                    let len = markers[index].len();
                    return Scan::Marker { start, index, len };
                }
                Some(_) => return Scan::Text { safe: start },
                None if could_grow => return Scan::Text { safe: start },
                None => {}
            }
        }
        Scan::Text { safe: text.len() }
    }

    #[test]
    fn the_fast_search_finds_what_a_bytewise_scan_finds() {
        // One, two, three and four distinct first bytes (the last through the table).
        let sets: [&[&str]; 4] = [
            &["<a>", "<ab>"],
            &["<a>", "[B]"],
            &["<a>", "[B]", "｜c"],
            &["<a>", "[B]", "｜c", "fn"],
        ];
        let texts = [
            "",
            "plain text",
            "x <a> y",
            "x <ab",
            "[B] and <a>",
            "é｜c｜ fn [",
            "fn",
            "<",
            "text ｜",
        ];
        for markers in sets {
            let set = Markers::new(markers.iter().copied());
            for text in texts {
                for at_end in [false, true] {
                    assert_eq!(
                        set.scan(text, at_end),
                        scan_bytewise(markers, text, at_end),
                        "{markers:?} {text:?} at_end {at_end}"
                    );
                }
            }
        }
    }

    #[test]
    fn finds_earliest_and_longest() {
        let m = Markers::new(["<a>", "<ab>", "x"]);
        assert_eq!(
            m.scan("hi <ab> x", true),
            Scan::Marker {
                start: 3,
                index: 1,
                len: 4
            }
        );
        assert_eq!(
            m.scan("hix", false),
            Scan::Marker {
                start: 2,
                index: 2,
                len: 1
            }
        );
    }

    #[test]
    fn holds_back_partial_markers_only() {
        let m = Markers::new(["<tool_call>"]);
        assert_eq!(m.scan("abc <to", false), Scan::Text { safe: 4 });
        assert_eq!(m.scan("abc <tx", false), Scan::Text { safe: 7 });
        assert_eq!(m.scan("abc <to", true), Scan::Text { safe: 7 });
        assert_eq!(m.scan("", false), Scan::Text { safe: 0 });
    }

    #[test]
    fn waits_when_a_longer_marker_may_match() {
        let m = Markers::new(["[TOOL", "[TOOL_CALLS]"]);
        assert_eq!(m.scan("a[TOOL_", false), Scan::Text { safe: 1 });
        assert_eq!(
            m.scan("a[TOOL_", true),
            Scan::Marker {
                start: 1,
                index: 0,
                len: 5
            }
        );
    }

    #[test]
    fn scanner_output_is_independent_of_chunking() {
        let text = "a <think>b</think> c <tool_call>{\"x\": \"<tool\"}</tool_call> é <t";
        let markers = ["<think>", "</think>", "<tool_call>", "</tool_call>"];
        let whole = {
            let mut s = MarkerScanner::new(markers);
            let mut p = s.push(text);
            p.extend(s.finish());
            merge(p)
        };
        for size in 1..8 {
            let mut s = MarkerScanner::new(markers);
            let mut pieces = Vec::new();
            let chars: Vec<char> = text.chars().collect();
            for chunk in chars.chunks(size) {
                pieces.extend(s.push(&chunk.iter().collect::<String>()));
            }
            pieces.extend(s.finish());
            assert_eq!(merge(pieces), whole, "chunk size {size}");
        }
    }

    fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
        let mut out: Vec<Piece> = Vec::new();
        for p in pieces {
            match (out.last_mut(), p) {
                (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                (_, p) => out.push(p),
            }
        }
        out
    }
}
