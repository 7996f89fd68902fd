//! Byte-level BPE (GPT-2 style) from a GGUF's `gpt2` vocabulary, set up to give the ids that
//! llama.cpp gives for the same file.
//!
//! candle's `TokenizerFromGguf` builds a Hugging Face tokenizer that differs from llama.cpp in
//! three ways, each seen on the Qwen test model: it NFC-normalises the text (llama.cpp does not,
//! so `e` + U+0301 became one token `é`), it makes user-defined tokens such as `<tool_call>`
//! special (llama.cpp matches them whole even when control tokens are not parsed), and it
//! matches unused tokens such as `[PAD151665]` (llama.cpp never does). This builds the tokenizer
//! the way llama.cpp reads the file instead.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::tokenizer::SplitDelimiterBehavior;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer as HfTokenizer};

use super::super::EngineError;
use super::super::gguf::GgufFile;

/// GPT-2's pre-tokenizer.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Qwen 2's: single digits, case-insensitive contractions, newlines kept with punctuation.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's: as Qwen 2's with digits in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A BPE pre-tokenizer: regexes applied one after the other (each splits the pieces the
/// previous left), and whether whole-word tokens skip the merges.
struct PreTokenizer {
    /// The `tokenizer.ggml.pre` names llama.cpp gives it.
    names: &'static [&'static str],
    regexes: &'static [&'static str],
    ignore_merges: bool,
}

/// The pre-tokenizers this engine knows. A file naming another is refused: falling back to
/// one of these would split its text differently from llama.cpp and give wrong token ids,
/// silently.
const PRE_TOKENIZERS: &[PreTokenizer] = &[
    PreTokenizer {
        names: &["gpt2", "gpt-2", "phi-2", "default"],
        regexes: &[GPT2],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["qwen2", "deepseek-r1-qwen", "stablelm2"],
        regexes: &[QWEN2],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3"],
        regexes: &[LLAMA3],
        ignore_merges: true,
    },
    PreTokenizer {
        names: &["smaug-bpe", "dbrx"],
        regexes: &[LLAMA3],
        ignore_merges: false,
    },
    PreTokenizer {
        names: &["deepseek-coder"],
        regexes: &[
            r"[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            r"[一-龥ࠀ-一가-퟿]+",
            r"\p{N}",
        ],
        ignore_merges: false,
    },
];

/// The pre-tokenizer of a `tokenizer.ggml.pre` name; an unknown name is an error naming it,
/// the known ones, and the way around it (the model's own `tokenizer.json`, which the
/// tokenizer prefers to the GGUF's vocabulary).
fn pre_tokenizer(pre: &str) -> Result<&'static PreTokenizer, String> {
    PRE_TOKENIZERS
        .iter()
        .find(|p| p.names.contains(&pre))
        .ok_or_else(|| {
            let known: Vec<&str> = PRE_TOKENIZERS
                .iter()
                .flat_map(|p| p.names)
                .copied()
                .collect();
            format!(
                "BPE pre-tokenizer '{pre}' (tokenizer.ggml.pre; known: {}); put the model's \
                 tokenizer.json beside the file to use it",
                known.join(", ")
            )
        })
}

fn format_error(gguf: &GgufFile, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Format {
        path: gguf.path.clone(),
        reason: format!("tokenizer: {reason}"),
    }
}

/// Builds the tokenizer of a `gpt2` GGUF vocabulary; `types` are the GGUF token types.
pub fn from_gguf(
    gguf: &GgufFile,
    vocab: &[String],
    types: &[u32],
) -> Result<HfTokenizer, EngineError> {
    let merges: Vec<(String, String)> = gguf
        .strings("tokenizer.ggml.merges")
        .ok_or_else(|| format_error(gguf, "missing tokenizer.ggml.merges"))?
        .into_iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format_error(gguf, format!("bad merge {merge:?}")))
        })
        .collect::<Result<_, _>>()?;
    let ids: Vocab = vocab
        .iter()
        .enumerate()
        .map(|(id, text)| (text.clone(), id as u32))
        .collect();
    let pre = gguf
        .string("tokenizer.ggml.pre")
        .unwrap_or_else(|| "gpt2".into());
    let pre = pre_tokenizer(&pre).map_err(|reason| EngineError::Unsupported {
        path: gguf.path.clone(),
        reason,
    })?;
    let bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| format_error(gguf, e))?;
    let mut tokenizer = HfTokenizer::new(bpe);
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(pre.regexes.len() + 1);
    for regex in pre.regexes {
        let split = Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format_error(gguf, e))?;
        steps.push(split.into());
    }
    // Bytes to GPT-2's printable characters; the regexes above already split the text.
    steps.push(ByteLevel::new(false, false, false).into());
    tokenizer.with_pre_tokenizer(Some(Sequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    // llama.cpp matches control and unknown tokens only when asked to parse special tokens,
    // user-defined ones always, unused ones never.
    let added = |kinds: &[u32], special: bool| -> Vec<AddedToken> {
        types
            .iter()
            .zip(vocab)
            .filter(|(t, text)| kinds.contains(t) && !text.is_empty())
            .map(|(_, text)| AddedToken::from(text.clone(), special).normalized(false))
            .collect()
    };
    tokenizer
        .add_special_tokens(added(&[2, 3], true))
        .map_err(|e| format_error(gguf, e))?;
    tokenizer
        .add_tokens(added(&[4], false))
        .map_err(|e| format_error(gguf, e))?;
    Ok(tokenizer)
}

/// The byte a character of GPT-2's byte alphabet stands for: printable Latin-1 bytes are their
/// own character, the other 68 bytes are U+0100 onwards in byte order.
pub fn char_byte(c: char) -> Option<u8> {
    static BYTES: std::sync::OnceLock<[Option<u8>; 324]> = std::sync::OnceLock::new();
    let table = BYTES.get_or_init(|| {
        let mut table = [None; 324];
        let mut next = 256;
        for byte in 0..=255u8 {
            let printable = matches!(byte, 33..=126 | 161..=172 | 174..=255);
            if printable {
                table[byte as usize] = Some(byte);
            } else {
                table[next] = Some(byte);
                next += 1;
            }
        }
        table
    });
    table.get(c as usize).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_pre_tokenizer_is_refused_by_name() {
        let error = pre_tokenizer("tekken").err().expect("refused");
        assert!(error.contains("'tekken'"), "{error}");
        assert!(error.contains("llama-bpe"), "{error}");
        assert!(error.contains("tokenizer.json"), "{error}");
        let mut names: Vec<&str> = PRE_TOKENIZERS
            .iter()
            .flat_map(|p| p.names)
            .copied()
            .collect();
        for name in &names {
            assert!(pre_tokenizer(name).is_ok(), "{name}");
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name in two rows");
        assert!(pre_tokenizer("llama-bpe").expect("known").ignore_merges);
    }
}
