//! Activations quantized to signed 8 bits, once per layer input.
//!
//! Each row of the input is cut into 32-value blocks, each scaled so that its largest
//! magnitude becomes 127 (GGUF's Q8_0 rule, which candle and llama.cpp use for the same
//! weights). Beside the quants each block keeps the sum of its quants, whole and per 16-value
//! half: the kernels take the weights' offsets off with them (`Σ(u − o)·x = Σu·x − o·Σx`).

use super::formats::BLOCK;

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
    /// Quantizes `x` (`rows × cols`, row-major; `cols` a multiple of [`BLOCK`]).
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(cols % BLOCK, 0);
        self.rows = rows;
        self.cols = cols;
        self.blocks = cols / BLOCK;
        self.d.clear();
        self.sums.clear();
        self.half_sums.clear();
        self.scaled_sums.clear();
        self.qs.resize(rows * cols, 0);
        for (src, dst) in x.chunks_exact(BLOCK).zip(self.qs.chunks_exact_mut(BLOCK)) {
            let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut halves = [0i32; 2];
            for (j, (q, v)) in dst.iter_mut().zip(src).enumerate() {
                *q = (v * id).round() as i8;
                halves[j / 16] += *q as i32;
            }
            let sum = halves[0] + halves[1];
            self.d.push(d);
            self.sums.push(sum);
            self.half_sums.extend(halves);
            self.scaled_sums.push(d * sum as f32);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_scale_to_127_and_keep_their_sums() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.25).collect();
        let mut a = Activations::default();
        a.quantize(&x, 2, 32);
        assert_eq!((a.rows, a.blocks), (2, 1));
        for t in 0..2 {
            let (d, qs) = a.row(t);
            let amax = x[t * 32..(t + 1) * 32]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(d[0], amax / 127.0);
            assert_eq!(qs.iter().map(|q| q.unsigned_abs()).max(), Some(127));
            for (q, v) in qs.iter().zip(&x[t * 32..]) {
                assert!((*q as f32 * d[0] - v).abs() <= d[0] / 2.0 + 1e-6);
            }
            let sum = |r: std::ops::Range<usize>| qs[r].iter().map(|q| *q as i32).sum::<i32>();
            assert_eq!(a.half_sums[2 * t..2 * t + 2], [sum(0..16), sum(16..32)]);
            assert_eq!(a.sums[t], sum(0..32));
            assert_eq!(a.scaled_sums[t], d[0] * sum(0..32) as f32);
        }
    }

    #[test]
    fn a_zero_block_quantizes_to_zeros() {
        let mut a = Activations::default();
        a.quantize(&[0.0; 32], 1, 32);
        assert_eq!(a.d, [0.0]);
        assert!(a.qs.iter().all(|q| *q == 0));
    }
}
