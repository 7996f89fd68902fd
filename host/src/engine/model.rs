//! The transformer decoders of the supported GGUF architectures, on candle.
//!
//! `llama` (Llama 2/3, Mistral, DeepSeek Coder), `qwen2`, `phi3` and `gemma3` are one
//! pre-norm decoder with per-family differences: biases on q/k/v (qwen2), fused projections
//! (phi3), per-head q/k norms, post-norms, GELU, embedding scaling and sliding-window layers
//! (gemma3), interleaved versus half-split rotary embeddings: the traits the file does not
//! show are in the architecture table ([`super::arch`]). The KV cache lives outside the model
//! ([`KvCache`]) so that the engine can keep it and start new sequences from copies of its
//! prefix (prefix cache).
//!
//! We own this code rather than use candle-transformers' quantized models: candle 0.11's
//! `quantized_gemma3` uses SiLU where Gemma 3 needs GELU, builds 128K-position rope tables per
//! layer and applies no sliding-window mask when decoding, and none of its models lets a
//! sequence start from another's cached prefix.
//!
//! Its length is one forward pass read top to bottom: loading the layers, the pass over them,
//! attention (the fused CPU kernel is [`super::attention`]; candle's operations run on GPUs)
//! and the feed-forward, with the masks and rotary angles they share.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{D, Device, Tensor};

use super::EngineError;
use super::attention;
use super::config::Config;
use super::gguf::GgufFile;
use super::kv_cache::{KvCache, LayerKv};
use super::quant::{CacheOutcome, Linear, WeightCache};

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(
        gguf: &GgufFile,
        reader: &mut Reader,
        name: &str,
        eps: f64,
        device: &Device,
    ) -> Result<Self, EngineError> {
        Ok(RmsNorm {
            weight: tensor(gguf, reader, name, device)?.dequantize(device)?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

/// The model file being read, and the weight cache its converted weights come from or go to.
struct Reader {
    file: std::fs::File,
    cache: WeightCache,
}

fn tensor(
    gguf: &GgufFile,
    reader: &mut Reader,
    name: &str,
    device: &Device,
) -> Result<QTensor, EngineError> {
    gguf.content
        .tensor(&mut reader.file, name, device)
        .map_err(|e| bad_tensor(gguf, name, e))
}

/// A weight matrix of the file, as a layer (see [`Linear::load`]).
fn linear(
    gguf: &GgufFile,
    reader: &mut Reader,
    name: &str,
    device: &Device,
) -> Result<Linear, EngineError> {
    Linear::load(
        &gguf.content,
        &mut reader.file,
        name,
        device,
        &mut reader.cache,
    )
    .map_err(|e| bad_tensor(gguf, name, e))
}

fn bad_tensor(gguf: &GgufFile, name: &str, error: candle_core::Error) -> EngineError {
    EngineError::Format {
        path: gguf.path.clone(),
        reason: format!("tensor {name}: {}", super::candle_message(&error)),
    }
}

fn has_tensor(gguf: &GgufFile, name: &str) -> bool {
    gguf.content.tensor_infos.contains_key(name)
}

/// Rotary embeddings: the angles of any run of positions, computed when a forward pass needs
/// them (tables for the whole context cost 67 MiB for Gemma 3 270M's 32K positions).
struct Rope {
    half: usize,
    /// base^(−2/d): the frequency ratio between neighbouring pairs.
    step: f32,
    freq_scale: f32,
    /// Per-pair divisors of the angle (Llama 3.1's `rope_freqs`).
    factors: Option<Vec<f32>>,
}

impl Rope {
    fn new(head_dim: usize, base: f32, scale: f32, factors: Option<&[f32]>) -> Rope {
        Rope {
            half: head_dim / 2,
            step: base.powf(-2.0 / head_dim as f32),
            freq_scale: 1.0 / scale,
            factors: factors.map(<[f32]>::to_vec),
        }
    }

    /// Cosines and sines (seq, head_dim / 2) of positions `pos..pos + seq`.
    fn tables(
        &self,
        pos: usize,
        seq: usize,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        // The angles are computed as llama.cpp computes them, in f32: the frequency of pair i
        // is base^(-2/d) multiplied in i times, not raised to a power. At positions in the
        // thousands the two ways differ by ~1e-4 rad, which a sensitive model (Gemma 3 270M)
        // turns into visibly different logits.
        let mut cos = Vec::with_capacity(seq * self.half);
        let mut sin = Vec::with_capacity(seq * self.half);
        for position in pos..pos + seq {
            let mut theta = position as f32;
            for i in 0..self.half {
                let factor = self
                    .factors
                    .as_ref()
                    .and_then(|fs| fs.get(i))
                    .copied()
                    .unwrap_or(1.0);
                let angle = self.freq_scale * (theta / factor);
                cos.push(angle.cos());
                sin.push(angle.sin());
                theta *= self.step;
            }
        }
        Ok((
            Tensor::from_vec(cos, (seq, self.half), device)?,
            Tensor::from_vec(sin, (seq, self.half), device)?,
        ))
    }
}

/// Rotates `x` of shape (batch, heads, seq, head_dim) by the angles `cos`, `sin` (seq, half).
fn rotate(
    x: &Tensor,
    (cos, sin): &(Tensor, Tensor),
    interleaved: bool,
) -> candle_core::Result<Tensor> {
    if interleaved {
        candle_nn::rotary_emb::rope_i(&x.contiguous()?, cos, sin)
    } else {
        candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)
    }
}

// One per layer: the size of the larger variant costs nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
enum Qkv {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

enum Ffn {
    Separate { gate: Linear, up: Linear },
    Fused(Linear),
}

struct Layer {
    attn_norm: RmsNorm,
    qkv: Qkv,
    bias: Option<(Tensor, Tensor, Tensor)>,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    wo: Linear,
    post_attn_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    ffn: Ffn,
    down: Linear,
    post_ffn_norm: Option<RmsNorm>,
    /// Gemma 3 local layer: attends to the last `window` positions only.
    window: Option<usize>,
}

/// A loaded model: weights and rope tables, no per-sequence state.
pub struct Model {
    pub config: Config,
    /// Whether the converted weights came from the weight cache, went to it, or neither.
    pub weight_cache: CacheOutcome,
    /// Shared with `output` when the file ties them: converted once, held once.
    embed: Arc<Linear>,
    embed_scale: Option<f64>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Arc<Linear>,
    rope: Rope,
    rope_local: Option<Rope>,
    /// The longest sequence served (the context, or less if asked).
    max_len: usize,
    attn_scale: f64,
    gelu: bool,
    interleaved_rope: bool,
    device: Device,
}

impl Model {
    /// Loads the weights of `gguf`. `max_len` bounds the positions the rope tables cover.
    /// On a CPU, converted weights come from the weight cache in `cache_dir` (and go to it
    /// the first time); [`Model::weight_cache`] says which.
    pub fn load(
        gguf: &GgufFile,
        device: &Device,
        max_len: usize,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Model, EngineError> {
        let config = Config::of(gguf)?;
        let traits = config.arch.traits();
        let file = std::fs::File::open(&gguf.path).map_err(|e| EngineError::Io {
            path: gguf.path.clone(),
            reason: e.to_string(),
        })?;
        let cache = match cache_dir {
            Some(dir) if device.is_cpu() => WeightCache::open(dir, &gguf.path, &gguf.content),
            _ => WeightCache::off(),
        };
        let mut reader = Reader { file, cache };
        let r = &mut reader;
        let eps = config.rms_eps;
        let embed = Arc::new(linear(gguf, r, "token_embd.weight", device)?);
        let output = if has_tensor(gguf, "output.weight") {
            Arc::new(linear(gguf, r, "output.weight", device)?)
        } else {
            // Tied embeddings: the same weights, shared, not copied.
            Arc::clone(&embed)
        };
        let rope_factors = if has_tensor(gguf, "rope_freqs.weight") {
            let t = tensor(gguf, r, "rope_freqs.weight", device)?.dequantize(device)?;
            Some(t.to_vec1::<f32>()?)
        } else {
            None
        };
        let max_len = max_len.min(config.context_length).max(1);
        let rope = Rope::new(
            config.head_dim,
            config.rope_base,
            config.rope_scale,
            rope_factors.as_deref(),
        );
        // Gemma 3's local layers use their own base and no scaling.
        let rope_local = match config.sliding_window {
            Some(_) => Some(Rope::new(
                config.head_dim,
                config.rope_base_local,
                1.0,
                None,
            )),
            None => None,
        };
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let name = |n: &str| format!("blk.{i}.{n}.weight");
            let q = |r: &mut Reader, n: &str| -> Result<Linear, EngineError> {
                linear(gguf, r, &name(n), device)
            };
            let optional_norm = |r: &mut Reader, n: &str| -> Result<Option<RmsNorm>, EngineError> {
                if has_tensor(gguf, &name(n)) {
                    Ok(Some(RmsNorm::load(gguf, r, &name(n), eps, device)?))
                } else {
                    Ok(None)
                }
            };
            let qkv = if has_tensor(gguf, &name("attn_qkv")) {
                Qkv::Fused(q(r, "attn_qkv")?)
            } else {
                Qkv::Separate {
                    q: q(r, "attn_q")?,
                    k: q(r, "attn_k")?,
                    v: q(r, "attn_v")?,
                }
            };
            let bias = if has_tensor(gguf, &format!("blk.{i}.attn_q.bias")) {
                let b =
                    |r: &mut Reader, n: &str| -> Result<Tensor, EngineError> {
                        Ok(tensor(gguf, r, &format!("blk.{i}.{n}.bias"), device)?
                            .dequantize(device)?)
                    };
                Some((b(r, "attn_q")?, b(r, "attn_k")?, b(r, "attn_v")?))
            } else {
                None
            };
            let ffn = if has_tensor(gguf, &name("ffn_gate")) {
                Ffn::Separate {
                    gate: q(r, "ffn_gate")?,
                    up: q(r, "ffn_up")?,
                }
            } else {
                Ffn::Fused(q(r, "ffn_up")?)
            };
            let window = config
                .sliding_window
                .filter(|_| config.sliding_layers.get(i).copied().unwrap_or(false));
            layers.push(Layer {
                attn_norm: RmsNorm::load(gguf, r, &name("attn_norm"), eps, device)?,
                qkv,
                bias,
                q_norm: optional_norm(r, "attn_q_norm")?,
                k_norm: optional_norm(r, "attn_k_norm")?,
                wo: q(r, "attn_output")?,
                post_attn_norm: optional_norm(r, "post_attention_norm")?,
                ffn_norm: RmsNorm::load(gguf, r, &name("ffn_norm"), eps, device)?,
                ffn,
                down: q(r, "ffn_down")?,
                post_ffn_norm: optional_norm(r, "post_ffw_norm")?,
                window,
            });
        }
        let norm = RmsNorm::load(gguf, r, "output_norm.weight", eps, device)?;
        Ok(Model {
            weight_cache: reader.cache.finish(),
            embed,
            embed_scale: traits.embed_scale.then(|| (config.n_embd as f64).sqrt()),
            layers,
            norm,
            output,
            rope,
            rope_local,
            max_len,
            attn_scale: 1.0 / (config.head_dim as f64).sqrt(),
            gelu: traits.gelu,
            interleaved_rope: traits.interleaved_rope,
            device: device.clone(),
            config,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The longest sequence the rope tables cover.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Runs `tokens` (appended after what `cache` holds) and returns the logits of the last
    /// position, shape (vocab,).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        self.run(&ids, &mut [cache])?.flatten_all()
    }

    /// Runs one token for each of several sequences, each appended after what its own cache
    /// holds, in one pass (continuous batching: the weights are read once for all of them).
    /// Returns the logits, shape (sequences, vocab). Each sequence's logits are those
    /// [`Model::forward`] gives it alone: every row is computed on its own.
    pub fn forward_batch(
        &self,
        tokens: &[u32],
        caches: &mut [&mut KvCache],
    ) -> candle_core::Result<Tensor> {
        if tokens.len() != caches.len() {
            candle_core::bail!("{} tokens for {} caches", tokens.len(), caches.len());
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(1)?;
        self.run(&ids, caches)
    }

    /// `ids` (sequences, positions) after what each cache holds; logits of each sequence's
    /// last position, (sequences, vocab).
    fn run(&self, ids: &Tensor, caches: &mut [&mut KvCache]) -> candle_core::Result<Tensor> {
        let (b, seq) = ids.dims2()?;
        if b != caches.len() || seq == 0 {
            candle_core::bail!("{b}×{seq} tokens for {} caches", caches.len());
        }
        for cache in caches.iter_mut() {
            if cache.len + seq > self.max_len() {
                candle_core::bail!(
                    "sequence of {} tokens exceeds the context of {}",
                    cache.len + seq,
                    self.max_len()
                );
            }
            if cache.layers.len() != self.layers.len() {
                cache.layers = (0..self.layers.len()).map(|_| None).collect();
            }
        }
        let mut x = self.embed.embedding(ids)?;
        if let Some(scale) = self.embed_scale {
            x = (x * scale)?;
        }
        let mut tables = PassTables::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut slots: Vec<(usize, &mut Option<LayerKv>)> = caches
                .iter_mut()
                .map(|c| (c.len, &mut c.layers[i]))
                .collect();
            let residual = x.clone();
            let h = layer.attn_norm.forward(&x)?;
            let mut h = self.attention(layer, &h, &mut slots, &mut tables)?;
            if let Some(norm) = &layer.post_attn_norm {
                h = norm.forward(&h)?;
            }
            let x1 = (residual + h)?;
            let residual = x1.clone();
            let h = layer.ffn_norm.forward(&x1)?;
            let mut h = self.feed_forward(layer, &h)?;
            if let Some(norm) = &layer.post_ffn_norm {
                h = norm.forward(&h)?;
            }
            x = (residual + h)?;
        }
        for cache in caches.iter_mut() {
            cache.len += seq;
        }
        let last = x.narrow(1, seq - 1, 1)?;
        let last = self.norm.forward(&last)?;
        let logits = self.output.forward(&last)?.squeeze(1)?;
        match self.config.final_softcap {
            Some(cap) => (logits / cap as f64)?.tanh()? * cap as f64,
            None => Ok(logits),
        }
    }

    fn feed_forward(&self, layer: &Layer, x: &Tensor) -> candle_core::Result<Tensor> {
        let (gate, up) = match &layer.ffn {
            Ffn::Separate { gate, up } => {
                let [gate, up] = Linear::forward_many([gate, up], x)?;
                (gate, up)
            }
            Ffn::Fused(w) => {
                let both = w.forward(x)?;
                let n = both.dim(D::Minus1)? / 2;
                (both.narrow(D::Minus1, 0, n)?, both.narrow(D::Minus1, n, n)?)
            }
        };
        let gate = if self.gelu {
            gelu(&gate)?
        } else {
            candle_nn::ops::silu(&gate)?
        };
        layer.down.forward(&(gate * up)?)
    }

    /// Self-attention of `x` (sequences, positions, embedding): the projections run on all
    /// sequences at once, the attention itself on each with its own position and cache slot.
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        slots: &mut [(usize, &mut Option<LayerKv>)],
        tables: &mut PassTables,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (q, k, v) = match &layer.qkv {
            Qkv::Separate { q, k, v } => {
                let [q, k, v] = Linear::forward_many([q, k, v], x)?;
                (q, k, v)
            }
            Qkv::Fused(w) => {
                let qkv = w.forward(x)?;
                let nq = c.n_head * c.head_dim;
                let nk = c.n_kv_head * c.head_dim;
                (
                    qkv.narrow(D::Minus1, 0, nq)?,
                    qkv.narrow(D::Minus1, nq, nk)?,
                    qkv.narrow(D::Minus1, nq + nk, nk)?,
                )
            }
        };
        let (q, k, v) = match &layer.bias {
            Some((bq, bk, bv)) => (
                q.broadcast_add(bq)?,
                k.broadcast_add(bk)?,
                v.broadcast_add(bv)?,
            ),
            None => (q, k, v),
        };
        let y = if let [(pos, slot)] = slots {
            self.attend(layer, [q, k, v], *pos, slot, tables)?
        } else {
            let mut ys = Vec::with_capacity(slots.len());
            for (i, (pos, slot)) in slots.iter_mut().enumerate() {
                let one = |t: &Tensor| t.narrow(0, i, 1);
                ys.push(self.attend(layer, [one(&q)?, one(&k)?, one(&v)?], *pos, slot, tables)?);
            }
            Tensor::cat(&ys, 0)?
        };
        layer.wo.forward(&y)
    }

    /// Attention of one sequence: `q`, `k`, `v` projected (1, positions, …), rotated for
    /// positions `pos..`, appended to the cache `slot`; returns (1, positions, heads·dim).
    fn attend(
        &self,
        layer: &Layer,
        [q, k, v]: [Tensor; 3],
        pos: usize,
        slot: &mut Option<LayerKv>,
        tables: &mut PassTables,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (b, seq, _) = q.dims3()?;
        let mut q = q.reshape((b, seq, c.n_head, c.head_dim))?;
        let mut k = k.reshape((b, seq, c.n_kv_head, c.head_dim))?;
        let v = v
            .reshape((b, seq, c.n_kv_head, c.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        if let Some(norm) = &layer.q_norm {
            q = norm.forward(&q)?;
        }
        if let Some(norm) = &layer.k_norm {
            k = norm.forward(&k)?;
        }
        let rope = match (layer.window, &self.rope_local) {
            (Some(_), Some(local)) => (local, true),
            _ => (&self.rope, false),
        };
        let angles = tables.angles(rope, pos, seq, &self.device)?;
        let q = rotate(&q.transpose(1, 2)?, &angles, self.interleaved_rope)?;
        let k = rotate(&k.transpose(1, 2)?, &angles, self.interleaved_rope)?;
        let q = (q * self.attn_scale)?;
        let (k, v) = LayerKv::append(slot, &k, &v, pos, self.max_len())?;
        let shape = attention::Shape {
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: c.head_dim,
            seq,
            pos,
            window: layer.window,
        };
        if let Some(y) = attention::attend_tensors(&q, &k, &v, shape)? {
            return Ok(y);
        }
        let total = k.dim(2)?;
        // Grouped-query attention without copying keys: the query heads that share a key head
        // are stacked along the sequence axis.
        let group = c.n_head / c.n_kv_head;
        let q = q.reshape((b, c.n_kv_head, group * seq, c.head_dim))?;
        let att = q.matmul(&k.t()?)?;
        let att = match tables.mask(seq, pos, layer.window, &self.device)? {
            Some(mask) => att
                .reshape((b, c.n_kv_head, group, seq, total))?
                .broadcast_add(&mask)?
                .reshape((b, c.n_kv_head, group * seq, total))?,
            None => att,
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        att.matmul(&v)?
            .reshape((b, c.n_kv_head, group, seq, c.head_dim))?
            .permute((0, 3, 1, 2, 4))?
            .reshape((b, seq, c.n_head * c.head_dim))
    }
}

/// The tables of one forward pass, made once and shared by every layer that needs the same:
/// attention masks (global or sliding-window layers) and rotary angles (global or local
/// base), per sequence position.
#[derive(Default)]
struct PassTables {
    /// By (new positions, cached positions, window).
    masks: Vec<(MaskKey, Option<Tensor>)>,
    /// By (local rope, first position, positions).
    angles: Vec<(AnglesKey, (Tensor, Tensor))>,
}

type MaskKey = (usize, usize, Option<usize>);
type AnglesKey = (bool, usize, usize);

impl PassTables {
    /// The mask for `seq` new positions after `pos` cached ones: causal, and limited to the
    /// last `window` positions for local layers. `None` when nothing is masked.
    fn mask(
        &mut self,
        seq: usize,
        pos: usize,
        window: Option<usize>,
        device: &Device,
    ) -> candle_core::Result<Option<Tensor>> {
        let key = (seq, pos, window);
        if let Some((_, mask)) = self.masks.iter().find(|(k, _)| *k == key) {
            return Ok(mask.clone());
        }
        let mask = mask(seq, pos, window, device)?;
        self.masks.push((key, mask.clone()));
        Ok(mask)
    }

    /// `rope`'s angles for positions `pos..pos + seq` (`local`: it is the local layers'
    /// rope).
    fn angles(
        &mut self,
        (rope, local): (&Rope, bool),
        pos: usize,
        seq: usize,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let key = (local, pos, seq);
        if let Some((_, angles)) = self.angles.iter().find(|(k, _)| *k == key) {
            return Ok(angles.clone());
        }
        let angles = rope.tables(pos, seq, device)?;
        self.angles.push((key, angles.clone()));
        Ok(angles)
    }
}

/// See [`PassTables::mask`].
fn mask(
    seq: usize,
    pos: usize,
    window: Option<usize>,
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    let total = pos + seq;
    let window_bites = window.is_some_and(|w| total > w);
    if seq == 1 && !window_bites {
        return Ok(None);
    }
    let mut values = vec![f32::NEG_INFINITY; seq * total];
    for (i, row) in values.chunks_exact_mut(total).enumerate() {
        // Query `pos + i` sees keys `first..=pos + i`.
        let query = pos + i;
        let first = window.map_or(0, |w| (query + 1).saturating_sub(w));
        row[first..=query].fill(0.0);
    }
    Ok(Some(Tensor::from_vec(values, (seq, total), device)?))
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Compute(super::candle_message(&e))
    }
}

/// GELU (tanh form) through a table of every f16 input, as llama.cpp computes it on the CPU:
/// libm's `tanh` per element was a tenth of Gemma's prefill, and the table also rounds as the
/// reference implementation does.
fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return x.gelu();
    }
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let x = half::f16::from_bits(bits).to_f32();
                let y = 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044_715 * x * x)).tanh());
                half::f16::from_f32(y).to_f32()
            })
            .collect()
    });
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    for v in &mut values {
        *v = if *v <= -10.0 {
            0.0
        } else if *v >= 10.0 {
            *v
        } else {
            table[half::f16::from_f32(*v).to_bits() as usize]
        };
    }
    Tensor::from_vec(values, x.shape(), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(seq: usize, pos: usize, window: Option<usize>) -> Vec<Vec<usize>> {
        let mask = mask(seq, pos, window, &Device::Cpu)
            .expect("mask")
            .expect("something masked");
        let rows: Vec<Vec<f32>> = mask.to_vec2().expect("values");
        rows.iter()
            .map(|row| (0..row.len()).filter(|k| row[*k] == 0.0).collect())
            .collect()
    }

    #[test]
    fn masks_are_causal_and_keep_a_window() {
        // Three new positions after two cached: each sees the keys up to itself.
        assert_eq!(
            visible(3, 2, None),
            [vec![0, 1, 2], vec![0, 1, 2, 3], vec![0, 1, 2, 3, 4]]
        );
        // A window of 2: the query itself and the one before.
        assert_eq!(visible(3, 2, Some(2)), [vec![1, 2], vec![2, 3], vec![3, 4]]);
        // One new position: nothing to mask unless the window cuts.
        assert!(mask(1, 4, None, &Device::Cpu).expect("mask").is_none());
        assert_eq!(visible(1, 4, Some(3)), [vec![2, 3, 4]]);
    }
}
