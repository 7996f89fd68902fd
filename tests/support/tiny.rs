//! Tiny GGUF models of the architectures no small real model in the test set covers, with
//! random weights: the engine's code for them is checked against llama.cpp on the same file
//! (tests/all/llamacpp.rs). A test fixture, not a model: the weights mean nothing, but every
//! operation of the architecture runs on both sides, with the quant types of real files
//! (Q8_0, Q5_0, Q4_0, Q4_K). The variants:
//! - `llama`: Llama 2 / Mistral 7B layout (grouped-query attention, interleaved rotary pairs);
//! - `llama3`: Llama 3.1–3.3, with per-frequency rope factors (`rope_freqs.weight`) and base
//!   500000;
//! - `llama-linear`: DeepSeek Coder, linear rope scaling (factor 4);
//! - `phi3`: fused QKV and gate/up projections, half-split rotary pairs.
//!
//! The files are written deterministically (same bytes on every machine): the references
//! record their sha256, and `cargo test -p plugboard-tests --test all -- --ignored
//! write_tiny_models` writes them into models/ for scripts/llamacpp_reference.py.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// The variants written.
pub const VARIANTS: [&str; 4] = ["llama", "llama3", "llama-linear", "phi3"];

/// The file name of a variant's tiny model.
pub fn file_name(variant: &str) -> String {
    format!("tiny-{variant}.gguf")
}

const EMBD: usize = 128;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = EMBD / HEADS;
const FF: usize = 256;
const LAYERS: usize = 2;
const CONTEXT: u32 = 512;

/// The vocabulary: control tokens, the 256 byte tokens, and pieces made of letters (a
/// SentencePiece vocabulary llama.cpp loads; the tests feed token ids, not text).
fn vocabulary() -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for byte in 0..=255u8 {
        tokens.push(format!("<0x{byte:02X}>"));
        types.push(6);
    }
    for c in 'a'..='z' {
        tokens.push(format!("▁{c}"));
        tokens.push(c.to_string());
        types.extend([1, 1]);
    }
    let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
    (tokens, scores, types)
}

/// Deterministic numbers in [-1, 1).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// A (rows, cols) weight scaled so that outputs keep about the inputs' size.
    fn matrix(&mut self, rows: usize, cols: usize, dtype: GgmlDType) -> QTensor {
        self.scaled(rows, cols, dtype, 1.7)
    }

    /// The same, outputs `gain` times the inputs' size.
    fn scaled(&mut self, rows: usize, cols: usize, dtype: GgmlDType, gain: f32) -> QTensor {
        let scale = gain / (cols as f32).sqrt();
        let values: Vec<f32> = (0..rows * cols).map(|_| self.next() * scale).collect();
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).expect("tensor");
        QTensor::quantize(&t, dtype).expect("quantizes")
    }

    /// A norm's weights, near 1.
    fn norm(&mut self, n: usize) -> QTensor {
        let values: Vec<f32> = (0..n).map(|_| 1.0 + 0.2 * self.next()).collect();
        let t = Tensor::from_vec(values, n, &Device::Cpu).expect("tensor");
        QTensor::quantize(&t, GgmlDType::F32).expect("f32")
    }
}

/// Writes the tiny model of `variant` to `path`.
pub fn write(variant: &str, path: &Path) -> anyhow::Result<()> {
    let Some(seed) = VARIANTS.iter().position(|v| *v == variant) else {
        anyhow::bail!("no tiny model {variant}")
    };
    let arch = if variant == "phi3" { "phi3" } else { "llama" };
    let (tokens, scores, types) = vocabulary();
    let vocab = tokens.len();
    let mut noise = Noise(seed as u64 + 1);
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            noise.matrix(vocab, EMBD, GgmlDType::Q8_0),
        ),
        ("output_norm.weight".into(), noise.norm(EMBD)),
        // Logits spread over a few units, as a trained model's are: near ties (what the
        // greedy comparison forgives) stay rare.
        (
            "output.weight".into(),
            noise.scaled(vocab, EMBD, GgmlDType::Q8_0, 6.0),
        ),
    ];
    let kv = KV_HEADS * HEAD_DIM;
    for layer in 0..LAYERS {
        let name = |n: &str| format!("blk.{layer}.{n}.weight");
        tensors.push((name("attn_norm"), noise.norm(EMBD)));
        tensors.push((name("ffn_norm"), noise.norm(EMBD)));
        match arch {
            "llama" => {
                tensors.push((name("attn_q"), noise.matrix(EMBD, EMBD, GgmlDType::Q8_0)));
                tensors.push((name("attn_k"), noise.matrix(kv, EMBD, GgmlDType::Q5_0)));
                tensors.push((name("attn_v"), noise.matrix(kv, EMBD, GgmlDType::Q8_0)));
                tensors.push((name("ffn_gate"), noise.matrix(FF, EMBD, GgmlDType::Q4_0)));
                tensors.push((name("ffn_up"), noise.matrix(FF, EMBD, GgmlDType::Q5_0)));
            }
            "phi3" => {
                let qkv = noise.matrix(EMBD + 2 * kv, EMBD, GgmlDType::Q8_0);
                tensors.push((name("attn_qkv"), qkv));
                tensors.push((name("ffn_up"), noise.matrix(2 * FF, EMBD, GgmlDType::Q5_0)));
            }
            other => anyhow::bail!("no tiny model for {other}"),
        }
        tensors.push((
            name("attn_output"),
            noise.matrix(EMBD, EMBD, GgmlDType::Q5_0),
        ));
        tensors.push((name("ffn_down"), noise.matrix(EMBD, FF, GgmlDType::Q4K)));
    }
    if variant == "llama3" {
        // Llama 3.1's shape of factors: high frequencies kept, low ones slowed 8×, a smooth
        // ramp between.
        let half = HEAD_DIM / 2;
        let factors: Vec<f32> = (0..half)
            .map(|i| {
                let t = i as f32 / (half - 1) as f32;
                if t < 0.4 {
                    1.0
                } else if t > 0.8 {
                    8.0
                } else {
                    1.0 + 7.0 * (t - 0.4) / 0.4
                }
            })
            .collect();
        let t = Tensor::from_vec(factors, half, &Device::Cpu)?;
        tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&t, GgmlDType::F32)?,
        ));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let rope_base = if variant == "llama3" {
        500_000.0
    } else {
        10_000.0
    };
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        // No family name here: llama.cpp adjusts vocabularies by it (a "phi3" name expects
        // Phi-3's own special tokens).
        (
            "general.name".into(),
            Value::String("random weights".into()),
        ),
        (key("context_length"), Value::U32(CONTEXT)),
        (key("embedding_length"), Value::U32(EMBD as u32)),
        (key("feed_forward_length"), Value::U32(FF as u32)),
        (key("block_count"), Value::U32(LAYERS as u32)),
        (key("attention.head_count"), Value::U32(HEADS as u32)),
        (key("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (key("rope.dimension_count"), Value::U32(HEAD_DIM as u32)),
        (key("rope.freq_base"), Value::F32(rope_base)),
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.into_iter().map(Value::F32).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    if variant == "llama-linear" {
        metadata.push((key("rope.scaling.type"), Value::String("linear".into())));
        metadata.push((key("rope.scaling.factor"), Value::F32(4.0)));
    }
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut file = std::fs::File::create(path)?;
    candle_core::quantized::gguf_file::write(&mut file, &metadata, &tensors)?;
    Ok(())
}
