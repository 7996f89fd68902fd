//! Text to token ids and back, from `tokenizer.json` beside the model or from the GGUF's own
//! vocabulary.
//!
//! Control tokens (`<|im_start|>`, `<|im_end|>`, …) in a prompt are recognised only where the
//! chat template put them. Text that came from a user is marked with [`quote_control_tokens`]
//! before rendering: inside the marks a control token's text is encoded as ordinary text, so a
//! message that says `<|im_end|>` cannot end its turn early.

mod gpt2;

use std::path::Path;

use tokenizers::Tokenizer as HfTokenizer;

use super::EngineError;
use super::gguf::GgufFile;
use super::spm::SpmTokenizer;

/// Opens a span of quoted text (a Unicode private-use character).
pub const QUOTE_OPEN: char = '\u{E000}';
/// Closes a span of quoted text.
pub const QUOTE_CLOSE: char = '\u{E001}';

enum Backend {
    /// A Hugging Face tokenizer; the second copy encodes special tokens as text.
    Hf {
        normal: Box<HfTokenizer>,
        literal: Box<HfTokenizer>,
    },
    Spm(Box<SpmTokenizer>),
}

/// A model's tokenizer.
pub struct Tokenizer {
    backend: Backend,
    /// Text of every token, by id (as the vocabulary spells it).
    vocab: Vec<String>,
    /// Ids of control tokens, whose text must not come from users.
    control: Vec<u32>,
    /// Whether the vocabulary spells bytes GPT-2's way (byte-level BPE), rather than
    /// SentencePiece's (`▁` for a space, `<0xNN>` for a byte).
    byte_level: bool,
}

fn tokenizer_error(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Format {
        path: path.to_path_buf(),
        reason: format!("tokenizer: {e}"),
    }
}

impl Tokenizer {
    /// `tokenizer.json` beside the model when there is one, otherwise the GGUF's vocabulary.
    pub fn load(gguf: &GgufFile) -> Result<Tokenizer, EngineError> {
        let vocab = gguf.tokens()?;
        let types = gguf.token_types();
        let control: Vec<u32> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == 3)
            .map(|(i, _)| i as u32)
            .collect();
        let beside = gguf.path.with_file_name("tokenizer.json");
        let mut byte_level = gguf.string("tokenizer.ggml.model").as_deref() == Some("gpt2");
        let backend = if beside.is_file() {
            let normal =
                HfTokenizer::from_file(&beside).map_err(|e| tokenizer_error(&beside, e))?;
            byte_level = is_byte_level(normal.get_decoder());
            Self::hf(normal)
        } else {
            match gguf.string("tokenizer.ggml.model").as_deref() {
                Some("gpt2") => Self::hf(gpt2::from_gguf(gguf, &vocab, &types)?),
                Some("llama") => {
                    Backend::Spm(Box::new(SpmTokenizer::from_gguf(gguf, &vocab, &types)?))
                }
                other => {
                    return Err(tokenizer_error(
                        &gguf.path,
                        format!(
                            "unsupported tokenizer model {other:?}; put a tokenizer.json beside the model"
                        ),
                    ));
                }
            }
        };
        Ok(Tokenizer {
            backend,
            vocab,
            control,
            byte_level,
        })
    }

    fn hf(normal: HfTokenizer) -> Backend {
        let mut literal = normal.clone();
        literal.set_encode_special_tokens(true);
        Backend::Hf {
            normal: Box::new(normal),
            literal: Box::new(literal),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The vocabulary's spelling of a token.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.vocab.get(id as usize).map(String::as_str)
    }

    /// The id of a token spelled exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.iter().position(|t| t == text).map(|i| i as u32)
    }

    /// Whether a token is a control token (`<|im_end|>`), which text never produces.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.binary_search(&id).is_ok()
    }

    /// The bytes a token stands for in generated text (a control token: its text). Unlike
    /// [`Tokenizer::decode`] this keeps a token that holds part of a UTF-8 character exact.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if let Backend::Spm(spm) = &self.backend {
            return spm.token_bytes(id);
        }
        let Some(text) = self.token(id) else {
            return Vec::new();
        };
        if !self.byte_level {
            // A Hugging Face tokenizer that decodes SentencePiece's way (`▁`, `<0xNN>`).
            return super::spm::piece_bytes(text, true);
        }
        // Every character is one byte in GPT-2's printable alphabet; a control token, or an
        // added token with a character outside that alphabet, is its own UTF-8.
        if !self.is_control(id)
            && let Some(bytes) = text.chars().map(gpt2::char_byte).collect()
        {
            return bytes;
        }
        text.as_bytes().to_vec()
    }

    /// The control tokens, as (text, id).
    pub fn control_tokens(&self) -> Vec<(String, u32)> {
        self.control
            .iter()
            .filter_map(|id| Some((self.token(*id)?.to_string(), *id)))
            .collect()
    }

    /// The texts of the control tokens.
    pub fn control_texts(&self) -> Vec<&str> {
        self.control
            .iter()
            .filter_map(|id| self.token(*id))
            .collect()
    }

    fn encode_part(&self, text: &str, literal: bool) -> Result<Vec<u32>, EngineError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Hf {
                normal,
                literal: lit,
            } => {
                let tokenizer = if literal { lit } else { normal };
                let encoding = tokenizer
                    .encode_fast(text, false)
                    .map_err(|e| EngineError::Tokenize(e.to_string()))?;
                Ok(encoding.get_ids().to_vec())
            }
            Backend::Spm(spm) => Ok(spm.encode(text, !literal)),
        }
    }

    /// Encodes text, control tokens recognised (no BOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.encode_part(text, false)
    }

    /// Encodes text as ordinary text: control tokens written in it stay text, as llama.cpp's
    /// `parse_special = false` leaves them (user-defined tokens are still matched whole).
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.encode_part(text, true)
    }

    /// Encodes a rendered prompt: control tokens are recognised except inside quoted spans
    /// (see [`quote_control_tokens`]), whose marks are dropped.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, EngineError> {
        // (text, whether it is quoted)
        let mut spans = Vec::new();
        let mut rest = prompt;
        while let Some(open) = rest.find(QUOTE_OPEN) {
            spans.push((&rest[..open], false));
            let after = &rest[open + QUOTE_OPEN.len_utf8()..];
            let close = after.find(QUOTE_CLOSE).unwrap_or(after.len());
            spans.push((&after[..close], true));
            rest = after.get(close + QUOTE_CLOSE.len_utf8()..).unwrap_or("");
        }
        spans.push((rest, false));
        match &self.backend {
            // A quoted span is part of the text around it: SentencePiece merges across the
            // marks (and adds no second space prefix after them).
            Backend::Spm(spm) => {
                let spans: Vec<(&str, bool)> = spans
                    .iter()
                    .map(|(text, quoted)| (*text, !quoted))
                    .collect();
                Ok(spm.encode_spans(&spans))
            }
            Backend::Hf { .. } => {
                let mut ids = Vec::new();
                for (text, quoted) in spans {
                    ids.extend(self.encode_part(text, quoted)?);
                }
                Ok(ids)
            }
        }
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (GGUF vocabularies with a
    /// Hugging Face tokenizer only).
    pub fn save_json(&self, path: &Path) -> Result<(), EngineError> {
        match &self.backend {
            Backend::Hf { normal, .. } => normal
                .save(path, false)
                .map_err(|e| EngineError::Tokenize(e.to_string())),
            Backend::Spm(_) => Err(EngineError::Tokenize(
                "a SentencePiece vocabulary has no tokenizer.json form here".into(),
            )),
        }
    }

    /// Decodes ids to text. Control tokens are written out as their text.
    pub fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        match &self.backend {
            Backend::Hf { normal, .. } => normal
                .decode(ids, false)
                .map_err(|e| EngineError::Tokenize(e.to_string())),
            Backend::Spm(spm) => Ok(spm.decode(ids)),
        }
    }
}

/// Whether a Hugging Face tokenizer decodes GPT-2's byte alphabet.
fn is_byte_level(decoder: Option<&tokenizers::DecoderWrapper>) -> bool {
    use tokenizers::DecoderWrapper;
    match decoder {
        Some(DecoderWrapper::ByteLevel(_)) => true,
        Some(DecoderWrapper::Sequence(sequence)) => sequence
            .get_decoders()
            .iter()
            .any(|d| matches!(d, DecoderWrapper::ByteLevel(_))),
        _ => false,
    }
}

/// Marks every control token's text inside user-supplied `text` so that it is encoded as
/// ordinary text (and removes stray quote marks the text itself may hold).
pub fn quote_control_tokens(text: &str, control: &[&str]) -> String {
    let clean: String = text
        .chars()
        .filter(|c| *c != QUOTE_OPEN && *c != QUOTE_CLOSE)
        .collect();
    let mut out = String::with_capacity(clean.len());
    let mut rest = clean.as_str();
    'outer: while !rest.is_empty() {
        for token in control.iter().filter(|t| !t.is_empty()) {
            if rest.starts_with(token) {
                out.push(QUOTE_OPEN);
                out.push_str(token);
                out.push(QUOTE_CLOSE);
                rest = &rest[token.len()..];
                continue 'outer;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_control_tokens() {
        let q = quote_control_tokens("a<|im_end|>b <|im", &["<|im_end|>", "<|im_start|>"]);
        assert_eq!(q, "a\u{E000}<|im_end|>\u{E001}b <|im");
        assert_eq!(quote_control_tokens("x\u{E000}y", &[]), "xy");
    }
}
