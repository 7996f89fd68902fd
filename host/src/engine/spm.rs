//! SentencePiece-style tokenization from a GGUF's `llama` vocabulary (Gemma, Llama 2, Mistral):
//! symbols are merged pairwise by the score of the token they form, highest first, and what
//! forms no token falls back to byte tokens `<0xXX>`. This follows llama.cpp's tokenizer for the
//! same files, so the ids agree with it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::EngineError;
use super::gguf::GgufFile;

/// SentencePiece's spelling of a space.
const SPACE: &str = "\u{2581}";

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// Higher score first; on a tie, the leftmost pair first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

pub struct SpmTokenizer {
    ids: HashMap<String, u32>,
    vocab: Vec<String>,
    scores: Vec<f32>,
    /// Token types (3 control, 4 user-defined, 6 byte).
    types: Vec<u32>,
    byte_tokens: [Option<u32>; 256],
    add_space_prefix: bool,
    /// Tokens matched whole in the text before merging, longest first, with whether they are
    /// control (or unknown) tokens: user-defined tokens are always matched, control tokens only
    /// when `special` is asked for.
    specials: Vec<(String, u32, bool)>,
}

/// A run of text between special tokens, or a special token.
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

impl SpmTokenizer {
    pub fn from_gguf(
        gguf: &GgufFile,
        vocab: &[String],
        types: &[u32],
    ) -> Result<SpmTokenizer, EngineError> {
        let scores = gguf.token_scores();
        // llama.cpp's special tokens: control, user-defined and unknown ones (unused ones are
        // never matched). Equal lengths keep id order, so the order does not depend on a sort.
        let mut specials: Vec<(String, u32, bool)> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(**t, 2..=4))
            .filter_map(|(id, t)| vocab.get(id).map(|text| (text.clone(), id as u32, *t != 4)))
            .filter(|(text, _, _)| !text.is_empty())
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let ids: HashMap<String, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        // Byte fallback: the token spelled `<0xXX>`, else an ASCII byte's own one-character
        // token, as llama.cpp looks them up.
        let mut byte_tokens = [None; 256];
        for (byte, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = ids.get(&format!("<0x{byte:02X}>")).copied().or_else(|| {
                u8::try_from(byte)
                    .ok()
                    .filter(u8::is_ascii)
                    .and_then(|b| ids.get(&char::from(b).to_string()).copied())
            });
        }
        Ok(SpmTokenizer {
            ids,
            vocab: vocab.to_vec(),
            specials,
            scores,
            types: types.to_vec(),
            byte_tokens,
            add_space_prefix: gguf.bool("tokenizer.ggml.add_space_prefix").unwrap_or(true),
        })
    }

    /// Encodes `text`; with `special`, control tokens written in it are recognised.
    pub fn encode(&self, text: &str, special: bool) -> Vec<u32> {
        self.encode_spans(&[(text, special)])
    }

    /// Encodes text given as spans, each with or without control tokens recognised. Spans are
    /// one text: what is text at the end of one span and the start of the next is merged as a
    /// whole, as if the marks between them were not there.
    pub fn encode_spans(&self, spans: &[(&str, bool)]) -> Vec<u32> {
        let mut out = Vec::new();
        // Like SentencePiece, a space opens the text and every run of text after a special
        // token, when the vocabulary asks for it (Llama 2 and Mistral do, Gemma does not).
        let mut prev_special = true;
        let mut text = String::new();
        for (span, special) in spans {
            for fragment in self.partition(span, *special) {
                match fragment {
                    Fragment::Text(part) => text.push_str(part),
                    Fragment::Token(id) => {
                        self.encode_text(&text, prev_special, &mut out);
                        text.clear();
                        out.push(id);
                        prev_special = true;
                    }
                }
            }
        }
        self.encode_text(&text, prev_special, &mut out);
        out
    }

    /// Encodes a run of text without special tokens.
    fn encode_text(&self, text: &str, after_special: bool, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut piece = String::with_capacity(text.len() + 1);
        if self.add_space_prefix && after_special {
            piece.push(' ');
        }
        piece.push_str(text);
        self.merge(&piece.replace(' ', SPACE), out);
    }

    /// Splits text at whole special tokens as llama.cpp does: the longest special token first,
    /// at each of its occurrences left to right, then the next longest in what is left. (This
    /// is not the same as the longest match at each position when tokens overlap.)
    fn partition<'a>(&self, text: &'a str, special: bool) -> Vec<Fragment<'a>> {
        let mut fragments = Vec::new();
        if !text.is_empty() {
            fragments.push(Fragment::Text(text));
        }
        for (token, id, control) in &self.specials {
            if (*control && !special) || !text.contains(token.as_str()) {
                continue;
            }
            let mut split = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(part) = fragment else {
                    split.push(fragment);
                    continue;
                };
                let mut rest = part;
                while let Some(at) = rest.find(token.as_str()) {
                    if at > 0 {
                        split.push(Fragment::Text(&rest[..at]));
                    }
                    split.push(Fragment::Token(*id));
                    rest = &rest[at + token.len()..];
                }
                if !rest.is_empty() {
                    split.push(Fragment::Text(rest));
                }
            }
            fragments = split;
        }
        fragments
    }

    fn merge(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::new();
        for (start, c) in text.char_indices() {
            let index = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: index.checked_sub(1),
                next: None,
            });
            if index > 0 {
                symbols[index - 1].next = Some(index);
            }
        }
        let mut queue = BinaryHeap::new();
        let mut rev_merge: HashMap<String, (usize, usize)> = HashMap::new();
        let try_add = |left: Option<usize>,
                       right: Option<usize>,
                       symbols: &[Symbol],
                       queue: &mut BinaryHeap<Bigram>,
                       rev_merge: &mut HashMap<String, (usize, usize)>| {
            let (Some(left), Some(right)) = (left, right) else {
                return;
            };
            let start = symbols[left].start;
            let size = symbols[left].len + symbols[right].len;
            let piece = &text[start..start + size];
            let Some(&id) = self.ids.get(piece) else {
                return;
            };
            queue.push(Bigram {
                left,
                right,
                score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                size,
            });
            rev_merge.insert(piece.to_string(), (left, right));
        };
        for i in 1..symbols.len() {
            try_add(Some(i - 1), Some(i), &symbols, &mut queue, &mut rev_merge);
        }
        while let Some(bigram) = queue.pop() {
            let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
            if left.len == 0 || right.len == 0 || left.len + right.len != bigram.size {
                continue;
            }
            symbols[bigram.left].len += right.len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = right.next;
            if let Some(next) = right.next {
                symbols[next].prev = Some(bigram.left);
            }
            let prev = symbols[bigram.left].prev;
            let next = symbols[bigram.left].next;
            try_add(
                prev,
                Some(bigram.left),
                &symbols,
                &mut queue,
                &mut rev_merge,
            );
            try_add(
                Some(bigram.left),
                next,
                &symbols,
                &mut queue,
                &mut rev_merge,
            );
        }
        let mut index = if symbols.is_empty() { None } else { Some(0) };
        while let Some(i) = index {
            let s = symbols[i];
            self.resegment(&text[s.start..s.start + s.len], &symbols, &rev_merge, out);
            index = s.next;
        }
    }

    fn resegment(
        &self,
        piece: &str,
        symbols: &[Symbol],
        rev_merge: &HashMap<String, (usize, usize)>,
        out: &mut Vec<u32>,
    ) {
        if let Some(&id) = self.ids.get(piece) {
            out.push(id);
            return;
        }
        match rev_merge.get(piece) {
            Some(&(left, right)) => {
                // The pair's halves: the left symbol, as it was when the pair formed, ends where
                // the right one starts (a symbol's start never moves).
                let split = symbols[right].start - symbols[left].start;
                self.resegment(&piece[..split], symbols, rev_merge, out);
                self.resegment(&piece[split..], symbols, rev_merge, out);
            }
            None => {
                for byte in piece.bytes() {
                    if let Some(id) = self.byte_tokens[byte as usize] {
                        out.push(id);
                    }
                }
            }
        }
    }

    /// Decodes ids: `▁` becomes a space, byte tokens become bytes, control tokens their text.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes one token stands for.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(text) = self.vocab.get(id as usize) else {
            return Vec::new();
        };
        piece_bytes(text, self.types.get(id as usize) == Some(&6))
    }
}

/// The bytes a SentencePiece piece stands for: `▁` is a space, and a byte-fallback token
/// (`byte`: the vocabulary types it so) spelled `<0x0A>` is that byte.
pub fn piece_bytes(text: &str, byte: bool) -> Vec<u8> {
    let hex = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'));
    match hex.filter(|_| byte).map(|h| u8::from_str_radix(h, 16)) {
        Some(Ok(byte)) => vec![byte],
        _ => text.replace(SPACE, " ").into_bytes(),
    }
}
