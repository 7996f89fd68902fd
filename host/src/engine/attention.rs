//! Causal self-attention on the CPU, fused: scores, mask, softmax and the weighted sum of the
//! values, one tile of keys at a time, never the whole score matrix.
//!
//! Done with candle's tensor operations, attention wrote the (heads × new positions × cached
//! positions) score matrix, added a mask of the same size, took its softmax and multiplied it
//! with the values: four passes over a matrix that grows with the square of the prompt (235
//! MiB per layer for Qwen2.5 0.5B at 2048 positions), the mask and the copies on one thread.
//! Prefill at 2048 tokens ran at two-thirds of its speed at 512. Here each query row keeps a
//! running maximum, sum and weighted sum of values (the "online softmax" of FlashAttention)
//! while the keys it may see stream past in tiles that stay in the L1 cache; the causal mask
//! and a sliding window are the bounds of that loop, so masked keys cost nothing. The work
//! splits over query heads and blocks of query rows, on every compute thread.
//!
//! The sums run in f32 in another order than a plain softmax, so results differ from the
//! unfused computation by rounding only (the engine tests hold it to llama.cpp's logits).

use rayon::prelude::*;

/// Query rows one task takes (within one head): enough to reuse each tile of keys.
const ROWS: usize = 16;

/// Keys per tile: 64 keys of up to 256 values are 64 KiB; of Qwen's 64, 16 KiB.
const KEYS: usize = 64;

/// The shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// New positions (query rows per head).
    pub seq: usize,
    /// Positions cached before them: query row `i` is position `pos + i`.
    pub pos: usize,
    /// Local layers see only the last `window` positions (themselves included).
    pub window: Option<usize>,
}

/// Attention of `q` (heads × seq × head_dim, scaled and rotated) over the first
/// `pos + seq` keys and values of each key head, whose rows (head_dim long) start
/// `kv_head_stride` values apart from one key head to the next. Returns the output as
/// (heads × seq × head_dim).
///
/// Panics if the slices are shorter than the shape says (the caller's shapes come from the
/// model's own configuration).
pub fn attend(q: &[f32], k: &[f32], v: &[f32], kv_head_stride: usize, shape: Shape) -> Vec<f32> {
    let Shape {
        n_head,
        n_kv_head,
        head_dim: dim,
        seq,
        pos,
        ..
    } = shape;
    let total = pos + seq;
    assert!(
        n_kv_head > 0 && n_head.is_multiple_of(n_kv_head),
        "query heads per key head"
    );
    assert!(q.len() >= n_head * seq * dim, "queries");
    let kv_len = (n_kv_head - 1) * kv_head_stride + total * dim;
    assert!(k.len() >= kv_len && v.len() >= kv_len, "keys and values");
    let group = n_head / n_kv_head;
    let mut out = vec![0f32; n_head * seq * dim];
    let simd = simd_available();
    out.par_chunks_mut(seq * dim)
        .enumerate()
        .for_each(|(h, head_out)| {
            let kv = (h / group) * kv_head_stride;
            let (k, v) = (&k[kv..kv + total * dim], &v[kv..kv + total * dim]);
            let q = &q[h * seq * dim..(h + 1) * seq * dim];
            head_out
                .par_chunks_mut(ROWS * dim)
                .enumerate()
                .for_each(|(block, out)| {
                    let rows = block * ROWS..(block * ROWS + ROWS).min(seq);
                    let task = Task {
                        q: &q[rows.start * dim..rows.end * dim],
                        k,
                        v,
                        first_row: rows.start,
                        shape,
                    };
                    task.run(out, simd);
                });
        });
    out
}

/// Whether the AVX2 + FMA build of the inner loops can run here.
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::Isa::detect() != super::Isa::Scalar
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One head's block of query rows.
struct Task<'a> {
    /// The block's query rows.
    q: &'a [f32],
    /// The head's keys and values, `pos + seq` rows.
    k: &'a [f32],
    v: &'a [f32],
    /// The block's first row among the call's `seq`.
    first_row: usize,
    shape: Shape,
}

impl Task<'_> {
    fn run(&self, out: &mut [f32], simd: bool) {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` says the CPU has AVX2 and FMA.
            unsafe { self.run_avx2(out) };
            return;
        }
        let _ = simd;
        self.run_portable(out);
    }

    /// The same code, compiled for AVX2 and FMA: the compiler vectorises the dot products
    /// and the weighted sums eight lanes at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, out: &mut [f32]) {
        self.run_portable(out)
    }

    #[inline(always)]
    fn run_portable(&self, out: &mut [f32]) {
        let Shape {
            head_dim: dim,
            pos,
            window,
            ..
        } = self.shape;
        let rows = self.q.len() / dim;
        // The keys query row `r` (position `pos + first_row + r`) sees.
        let visible = |r: usize| {
            let position = pos + self.first_row + r;
            let first = window.map_or(0, |w| (position + 1).saturating_sub(w));
            first..position + 1
        };
        let keys = visible(0).start..visible(rows - 1).end;
        // Per row: the running maximum score, the sum of exp(score − maximum), and the
        // weighted sum of values (in `out`).
        let mut max = [f32::NEG_INFINITY; ROWS];
        let mut sum = [0f32; ROWS];
        let mut scores = [0f32; KEYS];
        out.fill(0.0);
        let mut tile = keys.start;
        while tile < keys.end {
            let tile_end = (tile + KEYS).min(keys.end);
            for r in 0..rows {
                let seen = visible(r);
                let (from, to) = (tile.max(seen.start), tile_end.min(seen.end));
                if from >= to {
                    continue;
                }
                let q = &self.q[r * dim..(r + 1) * dim];
                let scores = &mut scores[..to - from];
                let mut tile_max = f32::NEG_INFINITY;
                for (s, key) in scores
                    .iter_mut()
                    .zip(self.k[from * dim..to * dim].chunks_exact(dim))
                {
                    *s = dot(q, key);
                    tile_max = tile_max.max(*s);
                }
                let acc = &mut out[r * dim..(r + 1) * dim];
                if tile_max > max[r] {
                    // Everything summed so far was relative to the old maximum.
                    let rescale = (max[r] - tile_max).exp();
                    sum[r] *= rescale;
                    acc.iter_mut().for_each(|a| *a *= rescale);
                    max[r] = tile_max;
                }
                for (s, value) in scores
                    .iter()
                    .zip(self.v[from * dim..to * dim].chunks_exact(dim))
                {
                    let p = (s - max[r]).exp();
                    sum[r] += p;
                    axpy(acc, p, value);
                }
            }
            tile = tile_end;
        }
        for r in 0..rows {
            // Every row sees at least itself: the sum is at least 1.
            let inverse = 1.0 / sum[r];
            out[r * dim..(r + 1) * dim]
                .iter_mut()
                .for_each(|a| *a *= inverse);
        }
    }
}

/// `a · b`, in eight lanes (vectorised where the caller is compiled for SIMD).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a8.remainder(), b8.remainder());
    for (a, b) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += a[l] * b[l];
        }
    }
    let mut total = lanes.iter().sum::<f32>();
    for (a, b) in a_rest.iter().zip(b_rest) {
        total += a * b;
    }
    total
}

/// `acc += p · x`.
#[inline(always)]
fn axpy(acc: &mut [f32], p: f32, x: &[f32]) {
    for (a, x) in acc.iter_mut().zip(x) {
        *a += p * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Softmax attention written out: the whole score row, masked, normalised.
    fn reference(q: &[f32], k: &[f32], v: &[f32], stride: usize, s: Shape) -> Vec<f32> {
        let (dim, group) = (s.head_dim, s.n_head / s.n_kv_head);
        let mut out = vec![0f32; s.n_head * s.seq * dim];
        for h in 0..s.n_head {
            let kv = (h / group) * stride;
            for i in 0..s.seq {
                let position = s.pos + i;
                let first = s.window.map_or(0, |w| (position + 1).saturating_sub(w));
                let q = &q[(h * s.seq + i) * dim..][..dim];
                let scores: Vec<f64> = (first..=position)
                    .map(|j| {
                        let key = &k[kv + j * dim..][..dim];
                        q.iter().zip(key).map(|(a, b)| (a * b) as f64).sum()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for (j, w) in (first..=position).zip(&weights) {
                    let value = &v[kv + j * dim..][..dim];
                    for d in 0..dim {
                        out[(h * s.seq + i) * dim + d] += (w / total * value[d] as f64) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn fused_attention_is_softmax_attention() {
        let mut seed = 7;
        // (heads, key heads, dim, new, cached, window): decode, prefill in one or several
        // blocks and tiles, after a cached prefix, grouped queries, a sliding window, a head
        // size that is not a multiple of eight.
        for (n_head, n_kv_head, head_dim, seq, pos, window) in [
            (4, 4, 16, 1, 0, None),
            (14, 2, 64, 1, 300, None),
            (14, 2, 64, 37, 0, None),
            (4, 1, 256, 20, 100, Some(24)),
            (8, 2, 32, 70, 130, Some(64)),
            (2, 1, 12, 150, 5, None),
        ] {
            let shape = Shape {
                n_head,
                n_kv_head,
                head_dim,
                seq,
                pos,
                window,
            };
            // Key and value buffers with room beyond the positions used, as the KV cache has.
            let stride = (pos + seq + 9) * head_dim;
            let mut fill = |n: usize, scale: f32| -> Vec<f32> {
                (0..n).map(|_| noise(&mut seed) * scale).collect()
            };
            let q = fill(n_head * seq * head_dim, 1.5);
            let k = fill(n_kv_head * stride, 1.5);
            let v = fill(n_kv_head * stride, 1.0);
            let fused = attend(&q, &k, &v, stride, shape);
            let exact = reference(&q, &k, &v, stride, shape);
            for (i, (a, b)) in fused.iter().zip(&exact).enumerate() {
                assert!((a - b).abs() <= 2e-5, "{shape:?} [{i}]: {a} vs {b}");
            }
        }
    }
}
