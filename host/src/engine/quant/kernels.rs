//! Which kernel runs, how the work splits across threads, and the portable reference kernel.
//!
//! The SIMD kernels are chosen when the program starts, from what the CPU says it can do, not
//! from the build's target features: one binary runs the AVX2 kernels on any x86-64 that has
//! them and the scalar kernel elsewhere.

use rayon::prelude::*;

use super::activations::Activations;
use super::formats::{BLOCK, Kind, OCTET, Weights};

/// The instruction sets the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The best this CPU runs. `PLUGBOARD_KERNELS=scalar|avx2|avx512` picks a lower one
    /// (comparisons, bug hunts); a tier the CPU lacks is never picked.
    pub fn detect() -> Isa {
        static DETECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let available = Isa::available();
            let wanted = std::env::var("PLUGBOARD_KERNELS").unwrap_or_default();
            available
                .iter()
                .copied()
                .find(|isa| format!("{isa:?}").eq_ignore_ascii_case(&wanted))
                .or(available.last().copied())
                .unwrap_or(Isa::Scalar)
        })
    }

    /// Every kernel this CPU can run, the reference first (tests run them all).
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut isas = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            isas.push(Isa::Avx2);
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                isas.push(Isa::Avx512);
            }
        }
        isas
    }
}

/// Work below this many multiply-adds is not worth waking other threads for (about 20 µs of
/// one thread's work, streaming its weights from memory).
const PARALLEL_MIN: usize = 1 << 18;

/// `out = a · wᵀ`: `out` is `a.rows × w.rows`, row-major (one layer of [`matmul_many`]).
#[cfg(test)]
pub fn matmul(w: &Weights, a: &Activations, out: &mut [f32], isa: Isa) {
    matmul_many(&mut [(w, out)], a, isa);
}

/// `out = a · wᵀ` for several layers on the same activations (q, k and v; gate and up), each
/// `out` `a.rows × w.rows`, row-major, in one parallel section: threads are woken once for all
/// of them, and layers too small to share out alone (a decode step's k and v) are shared out
/// with the rest.
///
/// Panics if the shapes disagree (a programming error: shapes come from the model's own
/// tensors, checked when it loads).
pub fn matmul_many(layers: &mut [(&Weights, &mut [f32])], a: &Activations, isa: Isa) {
    assert!(a.is_consistent(), "inconsistent quantized activations");
    for (w, out) in layers.iter() {
        assert!(w.is_consistent(), "inconsistent packed weights");
        assert_eq!(w.cols, a.cols, "weights and activations differ in width");
        assert_eq!(out.len(), a.rows * w.rows, "output of the wrong size");
    }
    let m = a.rows;
    let rows: usize = layers.iter().map(|(w, _)| w.rows).sum();
    if m == 0 || rows == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if threads <= 1 || m * rows * a.cols < PARALLEL_MIN {
        for (w, out) in layers.iter_mut() {
            rows_into(w, a, 0..w.rows, 0..m, out, w.rows, isa);
        }
        return;
    }
    if m >= MAX_TILE * threads * PARTS_PER_THREAD {
        // A prompt: each thread takes whole tiles of activation rows, and with them whole rows
        // of `out`, written in place. Each reads every weight, once (the kernels keep a few
        // weight rows in L1 while the activations stream past). Layers one after the other:
        // each has work enough for every thread.
        let tokens = m
            .div_ceil(threads * PARTS_PER_THREAD)
            .next_multiple_of(MAX_TILE);
        for (w, out) in layers.iter_mut().filter(|(w, _)| w.rows > 0) {
            let n = w.rows;
            out.par_chunks_mut(tokens * n)
                .enumerate()
                .for_each(|(part, out)| {
                    let start = part * tokens;
                    rows_into(w, a, 0..n, start..start + out.len() / n, out, n, isa);
                });
        }
        return;
    }
    // Decode steps: too few activation rows to share out, so each thread takes whole weight
    // rows (each weight is read by one thread only) and fills its own `m × rows` block; the
    // blocks are then copied into place. Parts start on an octet (the SIMD kernels' unit of
    // eight interleaved rows).
    let chunk = rows
        .div_ceil(threads * PARTS_PER_THREAD)
        .next_multiple_of(16);
    let parts: Vec<(usize, usize, usize)> = layers
        .iter()
        .enumerate()
        .flat_map(|(layer, (w, _))| {
            let n = w.rows;
            (0..n)
                .step_by(chunk)
                .map(move |start| (layer, start, n.min(start + chunk)))
        })
        .collect();
    let blocks: Vec<Vec<f32>> = parts
        .par_iter()
        .map(|&(layer, start, end)| {
            let mut block = vec![0f32; m * (end - start)];
            rows_into(
                layers[layer].0,
                a,
                start..end,
                0..m,
                &mut block,
                end - start,
                isa,
            );
            block
        })
        .collect();
    for ((layer, start, end), block) in parts.into_iter().zip(blocks) {
        let (w, out) = &mut layers[layer];
        let (n, width) = (w.rows, end - start);
        for t in 0..m {
            out[t * n + start..t * n + end].copy_from_slice(&block[t * width..(t + 1) * width]);
        }
    }
}

/// Parts per thread a matmul is split into: a thread that finishes early takes another.
const PARTS_PER_THREAD: usize = 4;

/// The activation rows a SIMD tile takes at most (the widest tier's): parts of a prompt are
/// whole tiles.
const MAX_TILE: usize = 16;

/// Rows `rows` of `w` against activation rows `tokens`:
/// `out[(t − tokens.start)·stride + row − rows.start]`.
fn rows_into(
    w: &Weights,
    a: &Activations,
    rows: std::ops::Range<usize>,
    tokens: std::ops::Range<usize>,
    out: &mut [f32],
    stride: usize,
    isa: Isa,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only produced when the CPU has AVX2, FMA and F16C;
        // `matmul_many` checked that `w` is consistent and as wide as `a`, `tokens` lie in
        // `a`, and `out` is `tokens.len() × stride` with `rows` inside `w` and
        // `rows.len() ≤ stride`.
        Isa::Avx2 => unsafe { super::x86::avx2::matmul(w, a, rows, tokens, out, stride) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX-512 F/BW/VL and VNNI.
        Isa::Avx512 => unsafe { super::x86::avx512::matmul(w, a, rows, tokens, out, stride) },
        Isa::Scalar => {
            let start = rows.start;
            // Each weight row unpacked once, then multiplied with every activation row.
            let mut blocks = Vec::with_capacity(w.blocks);
            for row in rows {
                blocks.clear();
                blocks.extend((0..w.blocks).map(|b| w.block(row, b)));
                for t in tokens.clone() {
                    out[(t - tokens.start) * stride + row - start] = dot_scalar(w, &blocks, a, t);
                }
            }
        }
    }
}

/// One block of a weight row, unpacked: quants, scales of the halves, `m`.
type Block = ([i32; BLOCK], [f32; 2], f32);

/// A weight row (its `blocks`) · activation row `t`, in plain Rust: the reference the SIMD kernels are
/// tested against, and the kernel of CPUs without them. Same arithmetic as the SIMD kernels:
/// exact integer dot products per block (offsets taken off through the activations' sums),
/// scaled per block or half.
fn dot_scalar(w: &Weights, blocks: &[Block], a: &Activations, t: usize) -> f32 {
    let (ad, aq) = a.row(t);
    let offset = w.offset();
    let mut sum = 0f32;
    for (b, (q, d, m)) in blocks.iter().enumerate() {
        let x = &aq[b * BLOCK..(b + 1) * BLOCK];
        let half = |h: usize| -> i32 {
            let products: i32 = (16 * h..16 * h + 16).map(|j| q[j] * x[j] as i32).sum();
            products - offset * a.half_sums[2 * (t * w.blocks + b) + h]
        };
        let (low, high) = (half(0), half(1));
        let scaled = if d[0] == d[1] {
            d[0] * ad[b] * (low + high) as f32
        } else {
            d[0] * ad[b] * low as f32 + d[1] * ad[b] * high as f32
        };
        sum += scaled - m * a.scaled_sums[t * w.blocks + b];
    }
    sum
}

impl Weights {
    /// Whether every array is as long as the shape says (the SIMD kernels rely on it).
    pub fn is_consistent(&self) -> bool {
        let blocks = self.rows.div_ceil(OCTET) * self.blocks;
        self.blocks * BLOCK == self.cols
            && match &self.kind {
                Kind::Q4 { d, m, qs } => {
                    d.len() == blocks * OCTET
                        && m.len() == blocks * OCTET
                        && qs.len() == blocks * 128
                }
                Kind::Q5 { d, qh, qs } => {
                    d.len() == blocks * OCTET && qh.len() == blocks * 32 && qs.len() == blocks * 128
                }
                Kind::Q6 { d, qh, qs } => {
                    d.len() == 2 * blocks * OCTET
                        && qh.len() == 64 * blocks
                        && qs.len() == 128 * blocks
                }
                Kind::Q8 { d, qs } => d.len() == blocks * OCTET && qs.len() == blocks * 256,
            }
    }
}
