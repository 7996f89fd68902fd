//! Hugging Face checkpoints (`config.json`, `*.safetensors`, `tokenizer.json`) of the
//! `model_type`s the architecture table lists as `checkpoint_types`, converted once into a
//! GGUF file in the cache, so that they run on the same decoder, tokenizer and kernels as GGUF
//! models.
//!
//! The conversion follows the GGUF conventions llama.cpp's converter established: tensor
//! names, metadata keys, and for `llama` the q/k rows reordered so that the rotary embedding
//! rotates adjacent pairs. Weight matrices are quantized to Q8_0 (half the memory of f16 at
//! no measurable quality loss); norms and biases stay f32.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::EngineError;
use super::arch::Arch;

/// Whether `path` is a Hugging Face checkpoint (a folder with `config.json`, or one of its files).
pub fn is_checkpoint(path: &Path) -> bool {
    checkpoint_dir(path).is_some()
}

fn checkpoint_dir(path: &Path) -> Option<PathBuf> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()?.to_path_buf()
    };
    let is_safetensors = path.is_dir()
        || path
            .extension()
            .is_some_and(|e| e == "safetensors" || e == "json");
    (is_safetensors && dir.join("config.json").is_file()).then_some(dir)
}

fn format_error(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The GGUF for a checkpoint: converted into `cache_dir` on first use, reused after. The
/// checkpoint's `tokenizer.json` is copied beside it (the tokenizer prefers it).
pub fn ensure_gguf(path: &Path, cache_dir: &Path) -> Result<PathBuf, EngineError> {
    let dir = checkpoint_dir(path)
        .ok_or_else(|| format_error(path, "not a Hugging Face checkpoint (no config.json)"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| EngineError::Io {
            path: dir.clone(),
            reason: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format_error(&dir, "no .safetensors files"));
    }
    // The cached file is keyed by the checkpoint's files (name, size, modification time).
    let mut key = String::new();
    for f in files
        .iter()
        .chain([&dir.join("config.json"), &dir.join("tokenizer.json")])
    {
        if let Ok(m) = std::fs::metadata(f) {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            key.push_str(&format!("{}:{}:{};", f.display(), m.len(), modified));
        }
    }
    // Keyed by what the conversion reads: the same checkpoint converts once.
    let out_dir = cache_dir.join(&hex::encode(Sha256::digest(key.as_bytes()))[..16]);
    let out = out_dir.join("model.gguf");
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| EngineError::Io {
        path: out_dir.clone(),
        reason: e.to_string(),
    })?;
    tracing::info!(checkpoint = %dir.display(), "converting to GGUF (once)");
    let tmp = out_dir.join(format!("model.gguf.tmp{}", std::process::id()));
    convert(&dir, &files, &tmp)?;
    let tokenizer = dir.join("tokenizer.json");
    if tokenizer.is_file() {
        std::fs::copy(&tokenizer, out_dir.join("tokenizer.json")).map_err(|e| EngineError::Io {
            path: tokenizer.clone(),
            reason: e.to_string(),
        })?;
    }
    std::fs::rename(&tmp, &out).map_err(|e| EngineError::Io {
        path: out.clone(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

fn read_json(path: &Path) -> Result<Json, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| format_error(path, format!("not valid JSON: {e}")))
}

/// The GGUF tensor name of a Hugging Face tensor, if the decoder uses it.
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let mapped = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{mapped}"))
}

/// Reorders the rows of a q or k projection from Hugging Face's half-split rotary layout to
/// the adjacent-pairs layout GGUF `llama` models use: within each head, row `i` of the first
/// half and row `i` of the second half become rows `2i` and `2i + 1`.
pub fn interleave_rope_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let head_dim = rows / heads;
    w.reshape((heads, 2, head_dim / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// Llama 3.1's rotary frequency factors (`rope_scaling.rope_type == "llama3"`), one per
/// frequency, as GGUF stores them in `rope_freqs.weight`.
fn llama3_rope_factors(scaling: &Json, head_dim: usize, base: f64) -> Option<Vec<f32>> {
    let factor = scaling.get("factor")?.as_f64()?;
    let low = scaling.get("low_freq_factor")?.as_f64()?;
    let high = scaling.get("high_freq_factor")?.as_f64()?;
    let original = scaling.get("original_max_position_embeddings")?.as_f64()?;
    let low_wavelen = original / low;
    let high_wavelen = original / high;
    Some(
        (0..head_dim / 2)
            .map(|i| {
                let freq = 1.0 / base.powf(2.0 * i as f64 / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor as f32
                } else {
                    let smooth = (original / wavelen - low) / (high - low);
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect(),
    )
}

fn convert(dir: &Path, files: &[PathBuf], out: &Path) -> Result<(), EngineError> {
    let config = read_json(&dir.join("config.json"))?;
    let get = |k: &str| config.get(k).and_then(Json::as_u64).map(|v| v as u32);
    let model_type = config.get("model_type").and_then(Json::as_str);
    let Some(arch) = model_type.and_then(Arch::of_checkpoint) else {
        return Err(EngineError::Unsupported {
            path: dir.to_path_buf(),
            reason: format!(
                "checkpoint model_type {model_type:?} (supported: {})",
                Arch::supported_checkpoints()
            ),
        });
    };
    let traits = arch.traits();
    let missing = |k: &str| format_error(&dir.join("config.json"), format!("missing {k}"));
    let n_head = get("num_attention_heads").ok_or_else(|| missing("num_attention_heads"))?;
    let n_kv = get("num_key_value_heads").unwrap_or(n_head);
    let n_embd = get("hidden_size").ok_or_else(|| missing("hidden_size"))?;
    let theta = config
        .get("rope_theta")
        .and_then(Json::as_f64)
        .unwrap_or(10_000.0);
    let key = |k: &str| format!("{}.{k}", traits.name);
    let mut meta: Vec<(String, Value)> = vec![
        (
            "general.architecture".into(),
            Value::String(traits.name.into()),
        ),
        (
            "general.name".into(),
            Value::String(
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        ),
        (
            key("block_count"),
            Value::U32(get("num_hidden_layers").ok_or_else(|| missing("num_hidden_layers"))?),
        ),
        (key("embedding_length"), Value::U32(n_embd)),
        (
            key("feed_forward_length"),
            Value::U32(get("intermediate_size").unwrap_or(0)),
        ),
        (key("attention.head_count"), Value::U32(n_head)),
        (key("attention.head_count_kv"), Value::U32(n_kv)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(
                config
                    .get("rms_norm_eps")
                    .and_then(Json::as_f64)
                    .unwrap_or(1e-6) as f32,
            ),
        ),
        (key("rope.freq_base"), Value::F32(theta as f32)),
        (
            key("context_length"),
            Value::U32(get("max_position_embeddings").unwrap_or(4096)),
        ),
    ];
    meta.extend(tokenizer_metadata(dir, &config)?);

    let st = unsafe {
        // SAFETY: the checkpoint files are memory-mapped read-only for the conversion; nothing
        // else in this process writes them.
        MmapedSafetensors::multi(files)
    }
    .map_err(|e| format_error(dir, format!("cannot read the safetensors: {e}")))?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, _) in st.tensors() {
        let Some(target) = gguf_name(&name) else {
            continue;
        };
        let mut t = st
            .load(&name, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| format_error(dir, format!("{name}: {e}")))?;
        if traits.interleaved_rope {
            if target.ends_with("attn_q.weight") {
                t = interleave_rope_rows(&t, n_head as usize)?;
            } else if target.ends_with("attn_k.weight") {
                t = interleave_rope_rows(&t, n_kv as usize)?;
            }
        }
        let matrix = t.rank() == 2 && target.ends_with(".weight") && !target.contains("norm");
        let dtype = if matrix && t.dim(1)? % 32 == 0 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        tensors.push((target, QTensor::quantize(&t, dtype)?));
    }
    // Llama 3.1's rope scaling is a `rope_type` of Llama's own config, not a trait of the
    // architecture.
    if arch == Arch::Llama
        && let Some(scaling) = config
            .get("rope_scaling")
            .filter(|s| s.get("rope_type").and_then(Json::as_str) == Some("llama3"))
        && let Some(factors) = llama3_rope_factors(scaling, (n_embd / n_head) as usize, theta)
    {
        let t = Tensor::new(factors.as_slice(), &Device::Cpu)?;
        tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&t, GgmlDType::F32)?,
        ));
    }
    let mut file = std::fs::File::create(out).map_err(|e| EngineError::Io {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    candle_core::quantized::gguf_file::write(&mut file, &meta_refs, &tensor_refs)
        .map_err(|e| format_error(out, format!("cannot write the GGUF: {e}")))
}

/// The vocabulary, its control tokens, the special token ids and the chat template, from
/// `tokenizer.json`, `tokenizer_config.json` and `config.json`.
fn tokenizer_metadata(dir: &Path, config: &Json) -> Result<Vec<(String, Value)>, EngineError> {
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = read_json(&tokenizer_path)?;
    let mut vocab: Vec<(String, u32)> = tokenizer["model"]["vocab"]
        .as_object()
        .ok_or_else(|| format_error(&tokenizer_path, "no model.vocab"))?
        .iter()
        .filter_map(|(t, id)| Some((t.clone(), id.as_u64()? as u32)))
        .collect();
    let mut special = std::collections::HashSet::new();
    for added in tokenizer["added_tokens"].as_array().into_iter().flatten() {
        if let (Some(content), Some(id)) = (added["content"].as_str(), added["id"].as_u64()) {
            vocab.push((content.to_string(), id as u32));
            if added["special"].as_bool() == Some(true) {
                special.insert(id as u32);
            }
        }
    }
    let size = vocab
        .iter()
        .map(|(_, id)| *id as usize + 1)
        .max()
        .unwrap_or(0);
    let mut tokens = vec![String::new(); size];
    for (text, id) in vocab {
        tokens[id as usize] = text;
    }
    for (i, t) in tokens.iter_mut().enumerate() {
        if t.is_empty() {
            *t = format!("[PAD{i}]");
        }
    }
    let types: Vec<Value> = (0..size as u32)
        .map(|id| Value::I32(if special.contains(&id) { 3 } else { 1 }))
        .collect();
    let mut meta = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
    ];
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Json::Null);
    for (key, field) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
    ] {
        // config.json may list several end tokens; the first is the file's EOS.
        let id = match &config[field] {
            Json::Array(ids) => ids.first().and_then(Json::as_u64),
            v => v.as_u64(),
        };
        if let Some(id) = id {
            meta.push((key.to_string(), Value::U32(id as u32)));
        }
    }
    if let Some(template) = tokenizer_config["chat_template"].as_str() {
        meta.push((
            "tokenizer.chat_template".to_string(),
            Value::String(template.to_string()),
        ));
    }
    if let Some(add_bos) = tokenizer_config["add_bos_token"].as_bool() {
        meta.push((
            "tokenizer.ggml.add_bos_token".to_string(),
            Value::Bool(add_bos),
        ));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_gguf() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.q_proj.weight").as_deref(),
            Some("blk.3.attn_q.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight").as_deref(),
            Some("blk.0.ffn_down.weight")
        );
        assert_eq!(
            gguf_name("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
    }

    #[test]
    fn rope_rows_interleave_within_each_head() {
        // One head of dimension 4: rows [a0, a1 | b0, b1] become [a0, b0, a1, b1].
        let w = Tensor::new(
            &[[0f32], [1.], [2.], [3.], [10.], [11.], [12.], [13.]],
            &Device::Cpu,
        )
        .unwrap();
        let out = interleave_rope_rows(&w, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(out, vec![0., 2., 1., 3., 10., 12., 11., 13.]);
    }
}
