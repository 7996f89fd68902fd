//! Activations quantized to signed 8 bits, once per layer input.
//!
//! Quantized exactly as llama.cpp's CPU backend quantizes the same layer's input, so that the
//! two compute the same products ([`Scales`]). Beside the quants each 32-value block keeps the
//! sum of its quants, whole and per 16-value half: the kernels take the weights' offsets off
//! with them (`Σ(u − o)·x = Σu·x − o·Σx`).

use rayon::prelude::*;

use super::formats::BLOCK;

/// How the activations a weight type multiplies are scaled (llama.cpp's `vec_dot_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scales {
    /// Q8_0 (for Q4_0, Q5_0, Q8_0 weights): one scale per 32 values, `amax/127` rounded to
    /// f16 — the rounded scale is the one the products use.
    Block,
    /// Q8_K (for K-quant weights): one f32 scale per 256 values, from the value of largest
    /// magnitude with its sign (`max/−127`).
    Superblock,
}

/// Values per Q8_K superblock.
const SUPERBLOCK: usize = 256;

/// `rows` inputs of `cols` values, quantized. Buffers are reused from call to call.
#[derive(Default)]
pub struct Activations {
    pub rows: usize,
    pub cols: usize,
    /// Blocks per row.
    pub blocks: usize,
    /// Scale per block (`rows × blocks`).
    pub d: Vec<f32>,
    /// `Σq` per block (`rows × blocks`).
    pub sums: Vec<i32>,
    /// `Σq` per 16-value half (`rows × 2·blocks`).
    pub half_sums: Vec<i32>,
    /// `d·Σq` per block (`rows × blocks`).
    pub scaled_sums: Vec<f32>,
    /// The quants (`rows × cols`).
    pub qs: Vec<i8>,
}

impl Activations {
    /// Quantizes `x` (`rows × cols`, row-major; `cols` a multiple of [`BLOCK`], or of 256
    /// for [`Scales::Superblock`]).
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize, scales: Scales) {
        assert_eq!(
            x.len(),
            rows * cols,
            "{rows}×{cols} activations from {} values",
            x.len()
        );
        let group = match scales {
            Scales::Block => BLOCK,
            Scales::Superblock => SUPERBLOCK,
        };
        assert_eq!(
            cols % group,
            0,
            "{cols} values are not whole groups of {group}"
        );
        self.rows = rows;
        self.cols = cols;
        self.blocks = cols / BLOCK;
        let blocks = rows * self.blocks;
        self.d.resize(blocks, 0.0);
        self.sums.resize(blocks, 0);
        self.half_sums.resize(2 * blocks, 0);
        self.scaled_sums.resize(blocks, 0.0);
        self.qs.resize(rows * cols, 0);
        if blocks == 0 {
            return;
        }
        let per_row = self.blocks;
        // A prompt's rows are shared out (a decode step's few rows are not worth it).
        let chunk = if rows * cols >= PARALLEL_MIN {
            PARALLEL_MIN.div_ceil(cols)
        } else {
            rows.max(1)
        };
        (
            x.par_chunks(chunk * cols),
            self.qs.par_chunks_mut(chunk * cols),
            self.d.par_chunks_mut(chunk * per_row),
            self.sums.par_chunks_mut(chunk * per_row),
            self.half_sums.par_chunks_mut(chunk * 2 * per_row),
            self.scaled_sums.par_chunks_mut(chunk * per_row),
        )
            .into_par_iter()
            .for_each(|(x, qs, d, sums, half_sums, scaled_sums)| {
                let out = Out {
                    qs,
                    d,
                    sums,
                    half_sums,
                    scaled_sums,
                };
                quantize_rows(x, out, group, scales);
            });
    }

    /// Whether every array is as long as the shape says (the SIMD kernels rely on it).
    pub fn is_consistent(&self) -> bool {
        let blocks = self.rows * self.blocks;
        self.blocks * BLOCK == self.cols
            && self.qs.len() >= self.rows * self.cols
            && self.d.len() == blocks
            && self.sums.len() == blocks
            && self.scaled_sums.len() == blocks
            && self.half_sums.len() == 2 * blocks
    }

    /// Row `t`'s scales and quants.
    pub fn row(&self, t: usize) -> (&[f32], &[i8]) {
        let b = self.blocks;
        (
            &self.d[t * b..(t + 1) * b],
            &self.qs[t * self.cols..(t + 1) * self.cols],
        )
    }
}

/// Values quantized per task when a prompt's activations are shared out across threads.
const PARALLEL_MIN: usize = 1 << 15;

/// Where some rows' quantized values go.
struct Out<'a> {
    qs: &'a mut [i8],
    d: &'a mut [f32],
    sums: &'a mut [i32],
    half_sums: &'a mut [i32],
    scaled_sums: &'a mut [f32],
}

/// Quantizes whole rows, compiled for AVX2 where the CPU has it (the loops vectorise).
fn quantize_rows(x: &[f32], out: Out, group: usize, scales: Scales) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features.
        return unsafe { quantize_rows_avx2(x, out, group, scales) };
    }
    quantize_rows_generic(x, out, group, scales)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_rows_avx2(x: &[f32], out: Out, group: usize, scales: Scales) {
    quantize_rows_generic(x, out, group, scales)
}

#[inline(always)]
fn quantize_rows_generic(x: &[f32], out: Out, group: usize, scales: Scales) {
    let Out {
        qs,
        d: ds,
        sums,
        half_sums,
        scaled_sums,
    } = out;
    let mut block = 0;
    for (src, dst) in x.chunks_exact(group).zip(qs.chunks_exact_mut(group)) {
        // The scale the products use, and the factor the values are multiplied by.
        let (d, id) = match scales {
            Scales::Block => {
                let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = half::f16::from_f32(amax / 127.0).to_f32();
                (d, if amax != 0.0 { 127.0 / amax } else { 0.0 })
            }
            Scales::Superblock => {
                let max = src
                    .iter()
                    .fold(0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
                if max == 0.0 {
                    (0.0, 0.0)
                } else {
                    let iscale = -127.0 / max;
                    (1.0 / iscale, iscale)
                }
            }
        };
        for (src, dst) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(BLOCK)) {
            for (q, v) in dst.iter_mut().zip(src) {
                // Ties to even, as llama.cpp rounds (SIMD rounding mode and its
                // `nearest_int`).
                *q = (v * id).round_ties_even().min(127.0) as i8;
            }
            let half = |h: usize| {
                dst[16 * h..16 * h + 16]
                    .iter()
                    .map(|q| *q as i32)
                    .sum::<i32>()
            };
            let halves = [half(0), half(1)];
            let sum = halves[0] + halves[1];
            ds[block] = d;
            sums[block] = sum;
            half_sums[2 * block..2 * block + 2].copy_from_slice(&halves);
            scaled_sums[block] = d * sum as f32;
            block += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_scale_to_127_and_keep_their_sums() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.25).collect();
        let mut a = Activations::default();
        a.quantize(&x, 2, 32, Scales::Block);
        assert_eq!((a.rows, a.blocks), (2, 1));
        for t in 0..2 {
            let (d, qs) = a.row(t);
            let amax = x[t * 32..(t + 1) * 32]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(d[0], half::f16::from_f32(amax / 127.0).to_f32());
            assert_eq!(qs.iter().map(|q| q.unsigned_abs()).max(), Some(127));
            for (q, v) in qs.iter().zip(&x[t * 32..]) {
                // Half a step, and the f16 rounding of the scale over up to 127 steps.
                assert!((*q as f32 * d[0] - v).abs() <= d[0] * 0.6 + 1e-6);
            }
            let sum = |r: std::ops::Range<usize>| qs[r].iter().map(|q| *q as i32).sum::<i32>();
            assert_eq!(a.half_sums[2 * t..2 * t + 2], [sum(0..16), sum(16..32)]);
            assert_eq!(a.sums[t], sum(0..32));
            assert_eq!(a.scaled_sums[t], d[0] * sum(0..32) as f32);
        }
    }

    #[test]
    fn superblocks_share_one_signed_scale() {
        // The value of largest magnitude maps to −127 whatever its sign (here negative: the
        // scale comes out positive).
        let x: Vec<f32> = (0..256).map(|i| (i as f32 - 200.0) * 0.5).collect();
        let mut a = Activations::default();
        a.quantize(&x, 1, 256, Scales::Superblock);
        assert_eq!(a.d.len(), 8);
        let d = 1.0 / (-127.0 / -100.0f32);
        assert!(a.d.iter().all(|b| *b == d));
        assert_eq!(a.qs[0], -127);
        for (q, v) in a.qs.iter().zip(&x) {
            assert!((*q as f32 * d - v).abs() <= d / 2.0 + 1e-4);
        }
    }

    #[test]
    fn a_zero_block_quantizes_to_zeros() {
        let mut a = Activations::default();
        a.quantize(&[0.0; 32], 1, 32, Scales::Block);
        assert_eq!(a.d, [0.0]);
        assert!(a.qs.iter().all(|q| *q == 0));
    }
}
