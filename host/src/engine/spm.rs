//! SentencePiece-style tokenization from a GGUF's `llama` vocabulary (Gemma, Llama 2, Mistral):
//! symbols are merged pairwise by the score of the token they form, highest first, and what
//! forms no token falls back to byte tokens `<0xXX>`. This follows llama.cpp's tokenizer for the
//! same files, so the ids agree with it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::EngineError;
use super::gguf::GgufFile;

const SPACE: char = '\u{2581}';

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
    /// Tokens matched whole in the text before merging, longest first: user-defined tokens
    /// always, control tokens when `special` is asked for.
    user_defined: Vec<(String, u32)>,
    control: Vec<(String, u32)>,
}

impl SpmTokenizer {
    pub fn from_gguf(
        gguf: &GgufFile,
        vocab: &[String],
        types: &[u32],
    ) -> Result<SpmTokenizer, EngineError> {
        let scores = gguf.token_scores();
        let mut byte_tokens = [None; 256];
        for (id, text) in vocab.iter().enumerate() {
            if let Some(hex) = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'))
                && let Ok(byte) = u8::from_str_radix(hex, 16)
            {
                byte_tokens[byte as usize] = Some(id as u32);
            }
        }
        let by_kind = |kind: u32| {
            let mut list: Vec<(String, u32)> = types
                .iter()
                .enumerate()
                .filter(|(_, t)| **t == kind)
                .filter_map(|(id, _)| vocab.get(id).map(|t| (t.clone(), id as u32)))
                .filter(|(t, _)| !t.is_empty())
                .collect();
            list.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
            list
        };
        Ok(SpmTokenizer {
            ids: vocab
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
            vocab: vocab.to_vec(),
            user_defined: by_kind(4),
            control: by_kind(3),
            scores,
            types: types.to_vec(),
            byte_tokens,
            add_space_prefix: gguf.bool("tokenizer.ggml.add_space_prefix").unwrap_or(true),
        })
    }

    /// Encodes `text`; with `special`, control tokens written in it are recognised.
    pub fn encode(&self, text: &str, special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let mut prev_special = true;
        for (fragment, token) in self.partition(text, special) {
            match token {
                Some(id) => {
                    out.push(id);
                    prev_special = true;
                }
                None => {
                    let mut piece = String::new();
                    if self.add_space_prefix && prev_special {
                        piece.push(' ');
                    }
                    piece.push_str(fragment);
                    let piece = piece.replace(' ', &SPACE.to_string());
                    self.merge(&piece, &mut out);
                    prev_special = false;
                }
            }
        }
        out
    }

    /// Splits text at whole special tokens: `(text, None)` or `(token text, Some(id))`.
    fn partition<'a>(&self, text: &'a str, special: bool) -> Vec<(&'a str, Option<u32>)> {
        let mut parts = Vec::new();
        let mut start = 0;
        let mut i = 0;
        'scan: while i < text.len() {
            let rest = &text[i..];
            let lists: [&[(String, u32)]; 2] = if special {
                [&self.control, &self.user_defined]
            } else {
                [&[], &self.user_defined]
            };
            for list in lists {
                for (token, id) in list.iter() {
                    if rest.starts_with(token.as_str()) {
                        if start < i {
                            parts.push((&text[start..i], None));
                        }
                        parts.push((&text[i..i + token.len()], Some(*id)));
                        i += token.len();
                        start = i;
                        continue 'scan;
                    }
                }
            }
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
        if start < text.len() {
            parts.push((&text[start..], None));
        }
        parts
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
            self.resegment(
                &text[s.start..s.start + s.len],
                &symbols,
                &rev_merge,
                text,
                out,
            );
            index = s.next;
        }
    }

    fn resegment(
        &self,
        piece: &str,
        symbols: &[Symbol],
        rev_merge: &HashMap<String, (usize, usize)>,
        text: &str,
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
                self.resegment(&piece[..split], symbols, rev_merge, text, out);
                self.resegment(&piece[split..], symbols, rev_merge, text, out);
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
            let Some(text) = self.vocab.get(id as usize) else {
                continue;
            };
            if self.types.get(id as usize) == Some(&6)
                && let Some(hex) = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'))
                && let Ok(byte) = u8::from_str_radix(hex, 16)
            {
                bytes.push(byte);
                continue;
            }
            bytes.extend_from_slice(text.replace(SPACE, " ").as_bytes());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
