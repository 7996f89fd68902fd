//! Reading a GGUF file's metadata: architecture, sizes, special tokens, chat template.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};

use super::EngineError;

/// A GGUF file, its header read and its tensors not yet loaded.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile, EngineError> {
        let file = std::fs::File::open(path).map_err(|e| EngineError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // Buffered: the header is read a few bytes at a time (the vocabulary is one string
        // each per token), and one system call per read took a sixth of a model's load time.
        let file_size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // candle's reader divides by the header's alignment unchecked: 0 panics. A header is
        // untrusted input, so a panic in its reader is a malformed file like any other.
        let read =
            std::panic::catch_unwind(move || Content::read(&mut std::io::BufReader::new(file)))
                .map_err(|_| EngineError::Format {
                    path: path.to_path_buf(),
                    reason: "not a readable GGUF file: its header is malformed (the reader failed)"
                        .into(),
                })?;
        let content = read.map_err(|e| EngineError::Format {
            path: path.to_path_buf(),
            reason: format!("not a readable GGUF file: {}", super::candle_message(&e)),
        })?;
        let gguf = GgufFile {
            path: path.to_path_buf(),
            content,
        };
        gguf.check_tensors(file_size)?;
        Ok(gguf)
    }

    /// Every tensor the header declares must lie within the file: an untrusted header may
    /// declare shapes whose sizes overflow, or that no file holds, and everything later
    /// (counting parameters, allocating converted weights) trusts them once checked here.
    fn check_tensors(&self, file_size: u64) -> Result<(), EngineError> {
        for (name, info) in &self.content.tensor_infos {
            let (block, type_size) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
            let end = info
                .shape
                .dims()
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .filter(|n| n % block == 0)
                .and_then(|n| (n / block).checked_mul(type_size))
                .and_then(|bytes| {
                    self.content
                        .tensor_data_offset
                        .checked_add(info.offset)?
                        .checked_add(bytes as u64)
                });
            if end.is_none_or(|end| end > file_size) {
                return Err(EngineError::Format {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor {name} ({:?}, {:?} at offset {}) does not fit in the file's {file_size} bytes",
                        info.shape.dims(),
                        info.ggml_dtype,
                        info.offset
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    fn missing(&self, key: &str) -> EngineError {
        EngineError::Format {
            path: self.path.clone(),
            reason: format!("missing or mistyped metadata `{key}`"),
        }
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.metadata()
            .get(key)
            .and_then(|v| v.to_string().ok())
            .cloned()
    }

    pub fn u32(&self, key: &str) -> Option<u32> {
        self.metadata().get(key).and_then(|v| v.to_u32().ok())
    }

    pub fn f32(&self, key: &str) -> Option<f32> {
        self.metadata().get(key).and_then(|v| v.to_f32().ok())
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.metadata().get(key).and_then(|v| v.to_bool().ok())
    }

    /// A list of booleans (e.g. per-layer flags).
    pub fn bools(&self, key: &str) -> Option<Vec<bool>> {
        let values = self.metadata().get(key)?.to_vec().ok()?;
        values.iter().map(|v| v.to_bool().ok()).collect()
    }

    pub fn require_u32(&self, key: &str) -> Result<u32, EngineError> {
        self.u32(key).ok_or_else(|| self.missing(key))
    }

    pub fn require_string(&self, key: &str) -> Result<String, EngineError> {
        self.string(key).ok_or_else(|| self.missing(key))
    }

    /// `general.architecture`, e.g. `qwen2`, `llama`, `gemma3`.
    pub fn architecture(&self) -> Result<String, EngineError> {
        self.require_string("general.architecture")
    }

    /// A list of strings; `None` when missing or when an element is not a string.
    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        let values = self.metadata().get(key)?.to_vec().ok()?;
        values.iter().map(|v| v.to_string().ok().cloned()).collect()
    }

    /// The vocabulary, by id.
    pub fn tokens(&self) -> Result<Vec<String>, EngineError> {
        self.strings("tokenizer.ggml.tokens")
            .ok_or_else(|| self.missing("tokenizer.ggml.tokens"))
    }

    /// Token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub fn token_types(&self) -> Vec<u32> {
        self.metadata()
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|values| {
                values
                    .iter()
                    .map(|v| match v {
                        Value::I32(x) => *x as u32,
                        Value::U32(x) => *x,
                        other => other.to_u32().unwrap_or(1),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SentencePiece scores, for `llama`-style tokenizers.
    pub fn token_scores(&self) -> Vec<f32> {
        self.metadata()
            .get("tokenizer.ggml.scores")
            .and_then(|v| v.to_vec().ok())
            .map(|values| values.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect())
            .unwrap_or_default()
    }
}
