//! Causal self-attention on the CPU, fused: scores, mask, softmax and the weighted sum of the
//! values, one tile of keys at a time, never the whole score matrix.
//!
//! Done with candle's tensor operations, attention wrote the (heads × new positions × cached
//! positions) score matrix, added a mask of the same size, took its softmax and multiplied it
//! with the values: four passes over a matrix that grows with the square of the prompt (235
//! MiB per layer for Qwen2.5 0.5B at 2048 positions), the mask and the copies on one thread.
//! Prefill at 2048 tokens ran at two-thirds of its speed at 512. Here each query row keeps a
//! running maximum, sum and weighted sum of values (the "online softmax" of FlashAttention)
//! while the keys it may see stream past in tiles that stay in the CPU's cache; the causal
//! mask and a sliding window are the bounds of that loop, so masked keys are never computed
//! (but for the one key two neighbouring rows do not share). Rows go two at a time, four keys
//! per pass, so that each key and value vector is loaded once for two rows (with AVX2 and
//! FMA; plain Rust elsewhere). The work splits over query heads and blocks of query rows, on
//! every compute thread.
//!
//! The sums run in f32 in another order than a plain softmax, so results differ from the
//! unfused computation by rounding only (the engine tests hold it to llama.cpp's logits).

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

/// Query rows one task takes (within one head): enough to reuse each tile of keys.
const ROWS: usize = 16;

/// Keys per tile: 64 keys of Qwen's 64 values are 16 KiB (L1); of Gemma's 256, 64 KiB (L2).
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
    // Whether the AVX2 + FMA build of the inner loops can run here.
    let simd = super::Isa::detect() != super::Isa::Scalar;
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

/// [`attend`] on candle tensors: `q` (1, heads, seq, dim) and the KV cache's views `k`, `v`
/// (1, key heads, positions, dim; rows of `dim` values, key heads apart by the buffer's
/// stride). Returns (1, seq, heads · dim), or `None` where the tensors are not f32 in CPU
/// memory laid out so (GPUs: candle's operations then run).
pub fn attend_tensors(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    shape: Shape,
) -> candle_core::Result<Option<Tensor>> {
    let (b, _, seq, _) = q.dims4()?;
    if b != 1
        || seq != shape.seq
        || [q, k, v]
            .iter()
            .any(|t| !t.device().is_cpu() || t.dtype() != DType::F32)
    {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let (k_storage, k_layout) = k.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs)) =
        (&*q_storage, &*k_storage, &*v_storage)
    else {
        return Ok(None);
    };
    let stride = k_layout.stride();
    if stride.len() != 4
        || stride[3] != 1
        || stride[2] != shape.head_dim
        || v_layout.stride() != stride
    {
        return Ok(None);
    }
    let out = attend(
        &qs.as_slice::<f32>()?[q_layout.start_offset()..],
        &ks.as_slice::<f32>()?[k_layout.start_offset()..],
        &vs.as_slice::<f32>()?[v_layout.start_offset()..],
        stride[1],
        shape,
    );
    let (heads, dim) = (shape.n_head, shape.head_dim);
    let y = Tensor::from_vec(out, (1, heads, seq, dim), &Device::Cpu)?
        .transpose(1, 2)?
        .reshape((1, seq, heads * dim))?;
    Ok(Some(y))
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
        if simd && self.shape.head_dim.is_multiple_of(8) {
            // SAFETY: `simd` says the CPU has AVX2 and FMA.
            unsafe { self.run_avx2(out) };
            return;
        }
        let _ = simd;
        self.body::<Portable>(out);
    }

    /// The loop compiled for AVX2 and FMA, with its products in 8-lane vectors.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, out: &mut [f32]) {
        self.body::<x86::Avx2>(out)
    }

    #[inline(always)]
    fn body<K: Products>(&self, out: &mut [f32]) {
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
        let mut scores = [[0f32; KEYS]; 2];
        out.fill(0.0);
        let mut tile = keys.start;
        while tile < keys.end {
            let tile_end = (tile + KEYS).min(keys.end);
            // Rows two at a time: each key and value loaded once for both.
            for r in (0..rows).step_by(2) {
                let pair = r + 1 < rows;
                let last = r + usize::from(pair);
                // The keys either row sees (row r's end before row r + 1's).
                let (from, to) = (tile.max(visible(r).start), tile_end.min(visible(last).end));
                if from >= to {
                    continue;
                }
                let (keys, values) = (&self.k[from * dim..to * dim], &self.v[from * dim..to * dim]);
                let [a, b] = &mut scores;
                let (a, b) = (&mut a[..to - from], &mut b[..to - from]);
                let q = |r: usize| &self.q[r * dim..(r + 1) * dim];
                let (out_a, out_b) = out[r * dim..].split_at_mut(dim);
                if pair {
                    K::scores2(q(r), q(r + 1), keys, a, b);
                    let out_b = &mut out_b[..dim];
                    online_softmax(a, from, visible(r), &mut max[r], &mut sum[r], out_a);
                    online_softmax(
                        b,
                        from,
                        visible(r + 1),
                        &mut max[r + 1],
                        &mut sum[r + 1],
                        out_b,
                    );
                    K::weighted2(out_a, out_b, a, b, values);
                } else {
                    K::scores(q(r), keys, a);
                    online_softmax(a, from, visible(r), &mut max[r], &mut sum[r], out_a);
                    K::weighted(out_a, a, values);
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

/// One row's step of the online softmax over a tile: `scores` are its scores for keys
/// `from..`; those outside `seen` (the row's mask) weigh nothing. Rescales what the row
/// summed so far when the maximum rises, and leaves the keys' weights in `scores`.
#[inline(always)]
fn online_softmax(
    scores: &mut [f32],
    from: usize,
    seen: std::ops::Range<usize>,
    max: &mut f32,
    sum: &mut f32,
    acc: &mut [f32],
) {
    let inside = seen.start.saturating_sub(from).min(scores.len())
        ..seen.end.saturating_sub(from).min(scores.len());
    let tile_max = scores[inside.clone()]
        .iter()
        .fold(f32::NEG_INFINITY, |m, s| m.max(*s));
    if tile_max > *max {
        // Everything summed so far was relative to the old maximum.
        let rescale = exp(*max - tile_max);
        *sum *= rescale;
        acc.iter_mut().for_each(|a| *a *= rescale);
        *max = tile_max;
    }
    scores[..inside.start].fill(0.0);
    scores[inside.end..].fill(0.0);
    let m = *max;
    let weights = &mut scores[inside];
    for s in weights.iter_mut() {
        *s = exp(*s - m);
    }
    *sum += weights.iter().sum::<f32>();
}

/// The products the loop is made of: dot products of a query with keys, and value rows
/// added with weights.
trait Products {
    fn dot(q: &[f32], key: &[f32]) -> f32;
    /// `q` · each of the four rows of `keys`.
    fn dot4(q: &[f32], keys: &[f32]) -> [f32; 4];
    /// `acc += p · x`.
    fn axpy(acc: &mut [f32], p: f32, x: &[f32]);
    /// `acc += p[0]·x₀ + … + p[3]·x₃` over the four rows of `x`.
    fn axpy4(acc: &mut [f32], p: &[f32], x: &[f32]) {
        let dim = acc.len();
        for (p, x) in p.iter().zip(x.chunks_exact(dim)) {
            Self::axpy(acc, *p, x);
        }
    }

    /// `out[j] = q · key j` for the rows of `keys`, four keys at a time (four independent
    /// sums in flight, not one chain).
    #[inline(always)]
    fn scores(q: &[f32], keys: &[f32], out: &mut [f32]) {
        let dim = q.len();
        let done = out.len() / 4 * 4;
        for (s, four) in out[..done]
            .chunks_exact_mut(4)
            .zip(keys.chunks_exact(4 * dim))
        {
            s.copy_from_slice(&Self::dot4(q, four));
        }
        for (s, key) in out[done..]
            .iter_mut()
            .zip(keys[done * dim..].chunks_exact(dim))
        {
            *s = Self::dot(q, key);
        }
    }

    /// [`Products::scores`] of two queries against the same keys.
    #[inline(always)]
    fn scores2(qa: &[f32], qb: &[f32], keys: &[f32], a: &mut [f32], b: &mut [f32]) {
        Self::scores(qa, keys, a);
        Self::scores(qb, keys, b);
    }

    /// `acc += Σⱼ p[j]·value j` over the rows of `values`.
    #[inline(always)]
    fn weighted(acc: &mut [f32], p: &[f32], values: &[f32]) {
        let dim = acc.len();
        let done = p.len() / 4 * 4;
        for (p, four) in p[..done].chunks_exact(4).zip(values.chunks_exact(4 * dim)) {
            Self::axpy4(acc, p, four);
        }
        for (p, value) in p[done..].iter().zip(values[done * dim..].chunks_exact(dim)) {
            Self::axpy(acc, *p, value);
        }
    }

    /// [`Products::weighted`] for two rows of weights over the same values.
    #[inline(always)]
    fn weighted2(acc_a: &mut [f32], acc_b: &mut [f32], a: &[f32], b: &[f32], values: &[f32]) {
        Self::weighted(acc_a, a, values);
        Self::weighted(acc_b, b, values);
    }
}

/// Plain Rust: any CPU, any head size.
struct Portable;

impl Products for Portable {
    #[inline(always)]
    fn dot(q: &[f32], key: &[f32]) -> f32 {
        q.iter().zip(key).map(|(a, b)| a * b).sum()
    }

    #[inline(always)]
    fn dot4(q: &[f32], keys: &[f32]) -> [f32; 4] {
        let mut out = [0f32; 4];
        for (o, key) in out.iter_mut().zip(keys.chunks_exact(q.len())) {
            *o = Self::dot(q, key);
        }
        out
    }

    #[inline(always)]
    fn axpy(acc: &mut [f32], p: f32, x: &[f32]) {
        for (a, x) in acc.iter_mut().zip(x) {
            *a += p * x;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Products;

    /// AVX2 and FMA, head sizes a multiple of 8. Only inlined into `Task::run_avx2`, which
    /// only runs where the CPU has both.
    pub struct Avx2;

    /// The sum of each of four vectors' lanes.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    unsafe fn sums(a: [__m256; 4]) -> [f32; 4] {
        let mut out = [0f32; 4];
        // SAFETY: the caller's CPU has AVX2; `out` holds 4 floats.
        unsafe {
            let pairs = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            let total = _mm_add_ps(
                _mm256_castps256_ps128(pairs),
                _mm256_extractf128_ps(pairs, 1),
            );
            _mm_storeu_ps(out.as_mut_ptr(), total);
        }
        out
    }

    impl Products for Avx2 {
        #[inline(always)]
        fn dot(q: &[f32], key: &[f32]) -> f32 {
            let dim = q.len();
            assert!(key.len() >= dim && dim.is_multiple_of(8));
            // SAFETY: `dim` floats of each (checked), the CPU has AVX2 and FMA (the caller).
            unsafe {
                let mut acc = _mm256_setzero_ps();
                for c in (0..dim).step_by(8) {
                    let x = _mm256_loadu_ps(q.as_ptr().add(c));
                    acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(key.as_ptr().add(c)), acc);
                }
                let zero = _mm256_setzero_ps();
                sums([acc, zero, zero, zero])[0]
            }
        }

        #[inline(always)]
        fn dot4(q: &[f32], keys: &[f32]) -> [f32; 4] {
            let dim = q.len();
            assert!(keys.len() >= 4 * dim && dim.is_multiple_of(8));
            // SAFETY: as in `dot`, for four rows.
            unsafe {
                let k = keys.as_ptr();
                let mut acc = [_mm256_setzero_ps(); 4];
                for c in (0..dim).step_by(8) {
                    let x = _mm256_loadu_ps(q.as_ptr().add(c));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(k.add(r * dim + c)), *acc);
                    }
                }
                sums(acc)
            }
        }

        #[inline(always)]
        fn axpy(acc: &mut [f32], p: f32, x: &[f32]) {
            let dim = acc.len();
            assert!(x.len() >= dim && dim.is_multiple_of(8));
            // SAFETY: as in `dot`.
            unsafe {
                let p = _mm256_set1_ps(p);
                for c in (0..dim).step_by(8) {
                    let a = acc.as_mut_ptr().add(c);
                    let x = _mm256_loadu_ps(x.as_ptr().add(c));
                    _mm256_storeu_ps(a, _mm256_fmadd_ps(p, x, _mm256_loadu_ps(a)));
                }
            }
        }

        /// Two queries, four keys at a time: each key vector loaded once for both, eight
        /// sums in flight.
        #[inline(always)]
        fn scores2(qa: &[f32], qb: &[f32], keys: &[f32], a: &mut [f32], b: &mut [f32]) {
            let dim = qa.len();
            let n = a.len();
            assert!(
                qb.len() == dim && b.len() == n && keys.len() >= n * dim && dim.is_multiple_of(8)
            );
            let done = n / 4 * 4;
            for j in (0..done).step_by(4) {
                // SAFETY: keys j..j + 4 are rows of `keys` (checked), `dim` floats each; the
                // CPU has AVX2 and FMA (the caller).
                unsafe {
                    let k = keys.as_ptr().add(j * dim);
                    let mut sa = [_mm256_setzero_ps(); 4];
                    let mut sb = [_mm256_setzero_ps(); 4];
                    for c in (0..dim).step_by(8) {
                        let xa = _mm256_loadu_ps(qa.as_ptr().add(c));
                        let xb = _mm256_loadu_ps(qb.as_ptr().add(c));
                        for r in 0..4 {
                            let key = _mm256_loadu_ps(k.add(r * dim + c));
                            sa[r] = _mm256_fmadd_ps(xa, key, sa[r]);
                            sb[r] = _mm256_fmadd_ps(xb, key, sb[r]);
                        }
                    }
                    a[j..j + 4].copy_from_slice(&sums(sa));
                    b[j..j + 4].copy_from_slice(&sums(sb));
                }
            }
            for j in done..n {
                let key = &keys[j * dim..(j + 1) * dim];
                a[j] = Self::dot(qa, key);
                b[j] = Self::dot(qb, key);
            }
        }

        /// Two rows of weights, four values at a time: each value vector loaded once for both.
        #[inline(always)]
        fn weighted2(acc_a: &mut [f32], acc_b: &mut [f32], a: &[f32], b: &[f32], values: &[f32]) {
            let dim = acc_a.len();
            let n = a.len();
            assert!(
                acc_b.len() == dim
                    && b.len() == n
                    && values.len() >= n * dim
                    && dim.is_multiple_of(8)
            );
            let done = n / 4 * 4;
            for j in (0..done).step_by(4) {
                // SAFETY: as in `scores2`, for values and both accumulators.
                unsafe {
                    let x = values.as_ptr().add(j * dim);
                    let wa = [0, 1, 2, 3].map(|r| _mm256_set1_ps(a[j + r]));
                    let wb = [0, 1, 2, 3].map(|r| _mm256_set1_ps(b[j + r]));
                    for c in (0..dim).step_by(8) {
                        let (pa, pb) = (acc_a.as_mut_ptr().add(c), acc_b.as_mut_ptr().add(c));
                        let (mut ya, mut yb) = (_mm256_loadu_ps(pa), _mm256_loadu_ps(pb));
                        for r in 0..4 {
                            let value = _mm256_loadu_ps(x.add(r * dim + c));
                            ya = _mm256_fmadd_ps(wa[r], value, ya);
                            yb = _mm256_fmadd_ps(wb[r], value, yb);
                        }
                        _mm256_storeu_ps(pa, ya);
                        _mm256_storeu_ps(pb, yb);
                    }
                }
            }
            for j in done..n {
                let value = &values[j * dim..(j + 1) * dim];
                Self::axpy(acc_a, a[j], value);
                Self::axpy(acc_b, b[j], value);
            }
        }

        #[inline(always)]
        fn axpy4(acc: &mut [f32], p: &[f32], x: &[f32]) {
            let dim = acc.len();
            assert!(p.len() >= 4 && x.len() >= 4 * dim && dim.is_multiple_of(8));
            // SAFETY: as in `dot`, for four rows.
            unsafe {
                let w = [0, 1, 2, 3].map(|r| _mm256_set1_ps(p[r]));
                let x = x.as_ptr();
                for c in (0..dim).step_by(8) {
                    let a = acc.as_mut_ptr().add(c);
                    let mut sum = _mm256_loadu_ps(a);
                    for (r, w) in w.iter().enumerate() {
                        sum = _mm256_fmadd_ps(*w, _mm256_loadu_ps(x.add(r * dim + c)), sum);
                    }
                    _mm256_storeu_ps(a, sum);
                }
            }
        }
    }
}

/// eˣ for `x ≤ 0` (scores less their maximum), to about 2 ulp, in plain arithmetic the
/// compiler vectorises (libm's `expf` is a call per value: a tenth of prefill time at 2048
/// positions went to it).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: n·LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Below this eˣ is under f32's smallest normal: 0 (a weight nothing notices).
    let x = x.max(-87.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on |r| ≤ ln2/2 (Cephes' expf polynomial).
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // × 2ⁿ: n in −126..=0 here, a normal exponent.
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::super::quant::noise;
    use super::*;

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
    fn exp_is_libm_exp_to_a_few_ulp() {
        let mut x = 0.0f32;
        while x > -90.0 {
            let (ours, libm) = (exp(x), x.exp());
            assert!(
                (ours - libm).abs() <= 4.0 * f32::EPSILON * libm || (libm < 1e-37 && ours < 1e-37),
                "e^{x}: {ours} vs {libm}"
            );
            x -= 0.001_37;
        }
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
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
