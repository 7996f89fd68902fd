//! A model's sizes and options, read from its GGUF header alone (no tensor data): what the
//! loader builds, what memory estimates and `/api/show` report.

use super::EngineError;
use super::arch::Arch;
use super::gguf::GgufFile;

/// Sizes and options, read from the GGUF metadata.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    /// Linear rope scaling of the global layers (1.0: none).
    pub rope_scale: f32,
    pub context_length: usize,
    /// Gemma 3: the window of the local layers.
    pub sliding_window: Option<usize>,
    /// Gemma 3: which layers are local (sliding-window) ones.
    pub sliding_layers: Vec<bool>,
    /// Gemma 3: the rope base of the local layers.
    pub rope_base_local: f32,
    /// Logits are squashed to ±this with tanh (Gemma 2 style), when the file says so.
    pub final_softcap: Option<f32>,
}

impl Config {
    fn read(gguf: &GgufFile, arch: Arch) -> Result<Config, EngineError> {
        let key = |k: &str| format!("{}.{k}", arch.name());
        let n_embd = gguf.require_u32(&key("embedding_length"))? as usize;
        let n_head = gguf.require_u32(&key("attention.head_count"))? as usize;
        let head_dim = gguf
            .u32(&key("attention.key_length"))
            .map(|v| v as usize)
            .unwrap_or(n_embd / n_head.max(1));
        let sliding_window = if arch.traits().sliding_window {
            gguf.u32(&key("attention.sliding_window"))
                .map(|v| v as usize)
                .filter(|w| *w > 0)
        } else {
            None
        };
        let n_layer = gguf.require_u32(&key("block_count"))? as usize;
        // Every layer has tensors of its own: a count the file cannot back is refused before
        // anything is sized by it.
        let tensors = gguf.content.tensor_infos.len();
        if n_layer > tensors {
            return Err(EngineError::Format {
                path: gguf.path.clone(),
                reason: format!("{n_layer} layers declared, but the file has {tensors} tensors"),
            });
        }
        // Which layers slide: a per-layer list, or a period n (the last layer of every n is
        // global; 0: all slide). Gemma 3's period is 6 when the file does not say.
        let sliding_layers = match (
            sliding_window,
            gguf.bools(&key("attention.sliding_window_pattern")),
        ) {
            (None, _) => vec![false; n_layer],
            (Some(_), Some(flags)) => (0..n_layer)
                .map(|i| flags.get(i).copied().unwrap_or(false))
                .collect(),
            (Some(_), None) => {
                let n = gguf
                    .u32(&key("attention.sliding_window_pattern"))
                    .unwrap_or(6) as usize;
                (0..n_layer).map(|i| n == 0 || i % n < n - 1).collect()
            }
        };
        let rope_scale = match gguf.string(&key("rope.scaling.type")).as_deref() {
            Some("linear") => gguf.f32(&key("rope.scaling.factor")).unwrap_or(1.0),
            _ => 1.0,
        };
        Ok(Config {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_kv_head: gguf
                .u32(&key("attention.head_count_kv"))
                .map(|v| v as usize)
                .unwrap_or(n_head),
            head_dim,
            rms_eps: gguf
                .f32(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-6) as f64,
            rope_base: gguf.f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_scale,
            context_length: gguf.u32(&key("context_length")).unwrap_or(4096) as usize,
            sliding_window,
            sliding_layers,
            rope_base_local: gguf.f32(&key("rope.freq_base_swa")).unwrap_or(10_000.0),
            final_softcap: gguf
                .f32(&key("final_logit_softcapping"))
                .filter(|c| *c > 0.0),
        })
    }

    /// A file's sizes, from its header alone.
    pub fn of(gguf: &GgufFile) -> Result<Config, EngineError> {
        let arch_name = gguf.architecture()?;
        let arch = Arch::from_name(&arch_name).ok_or_else(|| EngineError::Unsupported {
            path: gguf.path.clone(),
            reason: format!(
                "architecture '{arch_name}' (supported: {})",
                Arch::supported()
            ),
        })?;
        Config::read(gguf, arch)
    }

    /// Bytes of keys and values one token of one sequence takes (f32, every layer; a
    /// sliding-window layer counted whole, as an upper bound).
    pub fn kv_bytes_per_token(&self) -> u64 {
        // Saturating: the sizes come from an untrusted header.
        [2, self.n_kv_head, self.head_dim, 4]
            .iter()
            .fold(self.n_layer as u64, |n, &m| n.saturating_mul(m as u64))
    }
}
