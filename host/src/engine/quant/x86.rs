//! x86-64 kernels: one weight row against a tile of activation rows, in two tiers.
//!
//! A weight block is unpacked once into 32 unsigned bytes in a register and multiplied with
//! each activation row of the tile: exact 32-bit integer dot products (no overflow: `u < 64`,
//! `|q| ≤ 127`), scaled by both block scales and accumulated in f32. Unpacking costs more
//! than a multiply, so the more activation rows share it the faster: decoding four sequences
//! together costs little more than one. The offsets (`−16` for Q5_0, `−m` for Q4_K, `−32` for
//! Q6_K) come off at the end from the activations' block sums.
//!
//! - `avx2` (AVX2 + FMA, any x86-64 since 2013): `vpmaddubsw` + `vpmaddwd` per product, tiles
//!   of 8 activation rows (16 vector registers).
//! - `avx512` (AVX-512 F/BW/VL + VNNI: Zen 4, Ice Lake and later): one `vpdpbusd` per product,
//!   Q5_0's fifth bits applied with a mask register, tiles of 16 rows (32 registers). Still
//!   256-bit vectors: Zen 4 splits 512-bit operations in two, and the narrower ones keep
//!   Intel's clocks up.
//!
//! Both are compiled whatever the build's target and only called after
//! `is_x86_feature_detected!` said yes (see [`super::kernels::Isa`]).

use std::arch::x86_64::*;

use super::activations::Activations;
use super::formats::{BLOCK, Kind, Weights};

/// How one layout's blocks load. `i` is a block index (`row × blocks + b`).
trait Rows {
    /// Quants are signed (Q8_0): multiply through the sign trick.
    const SIGNED: bool;
    /// The block's 32 quants, as bytes.
    unsafe fn quants(&self, i: usize) -> __m256i;
    /// The same, where AVX-512 BW/VL can do it in fewer instructions.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn quants_avx512(&self, i: usize) -> __m256i {
        // SAFETY: forwarded.
        unsafe { self.quants(i) }
    }
    /// The block's weight scale per 32-bit lane (lanes 0–3 hold values 0–15).
    unsafe fn scale(&self, i: usize) -> __m256;
    /// Adds what the offsets take off row `row`'s dot products with activation rows
    /// `t0..t0 + T` to `out` (vectorised over the tile: the sums are block-major).
    fn correct<const T: usize>(
        &self,
        row: usize,
        blocks: usize,
        a: &Activations,
        t0: usize,
        out: &mut [f32; T],
    );
}

/// `out[t] += scale · Σ_k coefs[k] · sums[k·rows + t0 + t]` for the `T` rows of a tile: a
/// weight row's offsets against the block-major sums of the activations. Four partial sums
/// keep a one-row tile (decoding) from waiting on one long chain of additions.
#[inline(always)]
fn add_offsets<const T: usize>(
    out: &mut [f32; T],
    scale: f32,
    coefs: &[f32],
    sums: &[f32],
    rows: usize,
    t0: usize,
) {
    if T == 1 && rows == 1 {
        // Decoding one sequence: the sums are contiguous, a plain vector dot product.
        // SAFETY: every caller is compiled with AVX2 and FMA.
        out[0] += scale * unsafe { dot_f32(coefs, &sums[..coefs.len()]) };
        return;
    }
    let mut parts = [[0f32; T]; 4];
    let add = |part: &mut [f32; T], c: f32, k: usize| {
        let at = k * rows + t0;
        let sums: &[f32; T] = sums[at..at + T].try_into().expect("T sums");
        for (p, s) in part.iter_mut().zip(sums) {
            *p += c * s;
        }
    };
    let mut quads = coefs.chunks_exact(4);
    for (q, c) in quads.by_ref().enumerate() {
        for (j, part) in parts.iter_mut().enumerate() {
            add(part, c[j], 4 * q + j);
        }
    }
    let done = coefs.len() - quads.remainder().len();
    for (k, c) in quads.remainder().iter().enumerate() {
        add(&mut parts[0], *c, done + k);
    }
    for (t, o) in out.iter_mut().enumerate() {
        *o += scale * ((parts[0][t] + parts[1][t]) + (parts[2][t] + parts[3][t]));
    }
}

struct Q4<'a> {
    d: &'a [f32],
    m: &'a [f32],
    qs: &'a [u8],
}
struct Q5<'a> {
    d: &'a [f32],
    qh: &'a [u32],
    qs: &'a [u8],
}
struct Q6<'a> {
    d: &'a [f32],
    qh: &'a [u8],
    qs: &'a [u8],
}
struct Q8<'a> {
    d: &'a [f32],
    qs: &'a [i8],
}

/// Bytes 0–15 from the low nibbles of 16 bytes at `p`, bytes 16–31 from the high nibbles.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller points `p` at 16 readable bytes.
    let x = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(x, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(x, 4), mask);
    _mm256_set_m128i(hi, lo)
}

impl Rows for Q4<'_> {
    const SIGNED: bool = false;
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn quants(&self, i: usize) -> __m256i {
        // SAFETY: `i` is a block of this matrix (checked by `matmul`): 16 bytes at 16·i.
        unsafe { nibbles(self.qs.as_ptr().add(i * 16)) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn scale(&self, i: usize) -> __m256 {
        // SAFETY: `i` is a block of this matrix: one scale per block.
        _mm256_set1_ps(unsafe { *self.d.get_unchecked(i) })
    }
    #[inline(always)]
    fn correct<const T: usize>(
        &self,
        row: usize,
        blocks: usize,
        a: &Activations,
        t0: usize,
        out: &mut [f32; T],
    ) {
        let m = &self.m[row * blocks..(row + 1) * blocks];
        add_offsets(out, -1.0, m, &a.s32, a.rows, t0);
    }
}

impl Rows for Q5<'_> {
    const SIGNED: bool = false;
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn quants(&self, i: usize) -> __m256i {
        // SAFETY: `i` is a block of this matrix (checked by `matmul`).
        let (low, qh) = unsafe {
            (
                nibbles(self.qs.as_ptr().add(i * 16)),
                *self.qh.get_unchecked(i),
            )
        };
        // Spread the 32 fifth bits over the 32 bytes: byte j gets qh's byte j/8, keeps bit j%8,
        // and becomes 0x10 where it is set.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh as i32),
            _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                3, 3, 3, 3,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
    }
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn quants_avx512(&self, i: usize) -> __m256i {
        // SAFETY: `i` is a block of this matrix (checked by `matmul`).
        let (low, qh) = unsafe {
            (
                nibbles(self.qs.as_ptr().add(i * 16)),
                *self.qh.get_unchecked(i),
            )
        };
        // The 32 fifth bits are a byte mask as they are (bit 4 of `low` is clear: add = or).
        _mm256_mask_add_epi8(low, qh, low, _mm256_set1_epi8(0x10))
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn scale(&self, i: usize) -> __m256 {
        // SAFETY: `i` is a block of this matrix.
        _mm256_set1_ps(unsafe { *self.d.get_unchecked(i) })
    }
    #[inline(always)]
    fn correct<const T: usize>(
        &self,
        row: usize,
        blocks: usize,
        a: &Activations,
        t0: usize,
        out: &mut [f32; T],
    ) {
        let d = &self.d[row * blocks..(row + 1) * blocks];
        add_offsets(out, -16.0, d, &a.s32, a.rows, t0);
    }
}

impl Rows for Q6<'_> {
    const SIGNED: bool = false;
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn quants(&self, i: usize) -> __m256i {
        // SAFETY: `i` is a block of this matrix: 16 nibble bytes at 16·i, 8 high-bit bytes
        // at 8·i.
        let (low, qh) = unsafe {
            (
                nibbles(self.qs.as_ptr().add(i * 16)),
                std::ptr::read_unaligned(self.qh.as_ptr().add(i * 8) as *const i64),
            )
        };
        // Lane l (bytes 8l..8l+8) takes bit pair l of each of the 8 bytes: values 8l..8l+8.
        let high = _mm256_srlv_epi64(_mm256_set1_epi64x(qh), _mm256_setr_epi64x(0, 2, 4, 6));
        let high = _mm256_slli_epi16(_mm256_and_si256(high, _mm256_set1_epi8(3)), 4);
        _mm256_or_si256(low, high)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn scale(&self, i: usize) -> __m256 {
        // SAFETY: `i` is a block of this matrix: two scales at 2·i.
        let (lo, hi) = unsafe {
            (
                *self.d.get_unchecked(2 * i),
                *self.d.get_unchecked(2 * i + 1),
            )
        };
        _mm256_set_m128(_mm_set1_ps(hi), _mm_set1_ps(lo))
    }
    #[inline(always)]
    fn correct<const T: usize>(
        &self,
        row: usize,
        blocks: usize,
        a: &Activations,
        t0: usize,
        out: &mut [f32; T],
    ) {
        // One scale per 16-value half, and the halves' own sums.
        let d = &self.d[2 * row * blocks..2 * (row + 1) * blocks];
        add_offsets(out, -32.0, d, &a.s16, a.rows, t0);
    }
}

impl Rows for Q8<'_> {
    const SIGNED: bool = true;
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn quants(&self, i: usize) -> __m256i {
        // SAFETY: `i` is a block of this matrix: 32 bytes at 32·i.
        unsafe { _mm256_loadu_si256(self.qs.as_ptr().add(i * BLOCK) as *const __m256i) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn scale(&self, i: usize) -> __m256 {
        // SAFETY: `i` is a block of this matrix.
        _mm256_set1_ps(unsafe { *self.d.get_unchecked(i) })
    }
    fn correct<const T: usize>(
        &self,
        _: usize,
        _: usize,
        _: &Activations,
        _: usize,
        _: &mut [f32; T],
    ) {
    }
}

/// Σ a·b over two equally long slices.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n ≤ both lengths.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            )
        };
        acc = _mm256_fmadd_ps(x, y, acc);
        i += 8;
    }
    let mut sum = hsum(acc);
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Weight rows handled together before the next tile of activations: their blocks stay in
/// L1 while the whole activation matrix (L2-sized) streams past them.
const ROW_BLOCK: usize = 16;

/// One tier: the tile kernel and its driver, compiled for `$features`, multiplying with
/// `$dot`, unpacking with `Rows::$quants`, tiles of up to `$max` activation rows.
macro_rules! tier {
    ($name:ident, $features:literal, $dot:ident, $quants:ident, $max:literal, [$($t:literal),*]) => {
        pub mod $name {
            use super::*;

            /// The activation rows one tile handles.
            pub const MAX_TILE: usize = $max;

            /// `out[t·stride] = ` row `row` · activation row `t0 + t`, for `t` in `0..T`.
            ///
            /// # Safety
            /// The CPU has `$features`; `row` is a row of `w`'s matrix (`blocks` blocks per
            /// row, the activations' width); `t0 + T ≤ a.rows`.
            #[target_feature(enable = $features)]
            unsafe fn tile<R: Rows, const T: usize>(
                w: &R,
                row: usize,
                blocks: usize,
                a: &Activations,
                t0: usize,
                out: &mut [f32],
                stride: usize,
            ) {
                let mut acc = [_mm256_setzero_ps(); T];
                let aq = a.qs.as_ptr();
                let ad = a.d.as_ptr();
                let cols = a.cols;
                for b in 0..blocks {
                    let i = row * blocks + b;
                    // SAFETY: `i` is a block of the matrix (the caller's contract).
                    let (q, s) = unsafe { (w.$quants(i), w.scale(i)) };
                    let magnitude = if R::SIGNED { _mm256_sign_epi8(q, q) } else { q };
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let at = (t0 + t) * cols + b * BLOCK;
                        // SAFETY: t0 + t < a.rows and b < blocks: 32 quants at `at`, a scale
                        // at the matching block.
                        let (x, da) = unsafe {
                            (
                                _mm256_loadu_si256(aq.add(at) as *const __m256i),
                                *ad.add((t0 + t) * blocks + b),
                            )
                        };
                        // Signed weights: |w|·(sign(w)·x) gives the same products with an
                        // unsigned left side.
                        let x = if R::SIGNED { _mm256_sign_epi8(x, q) } else { x };
                        *acc = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps($dot(magnitude, x)),
                            _mm256_mul_ps(s, _mm256_set1_ps(da)),
                            *acc,
                        );
                    }
                }
                let mut sums = [0f32; T];
                w.correct(row, blocks, a, t0, &mut sums);
                for (t, (acc, sum)) in acc.iter().zip(sums).enumerate() {
                    out[t * stride] = hsum(*acc) + sum;
                }
            }

            /// Rows `rows` of `w` against every activation row:
            /// `out[t·stride + (row − rows.start)]`.
            ///
            /// # Safety
            /// The CPU has `$features`; `w` is consistent (every array as long as its rows and
            /// blocks say) and as wide as `a`; `rows` lie in `w`.
            #[target_feature(enable = $features)]
            pub unsafe fn matmul(
                w: &Weights,
                a: &Activations,
                rows: std::ops::Range<usize>,
                out: &mut [f32],
                stride: usize,
            ) {
                // SAFETY (all arms): forwarded from this function's contract.
                unsafe {
                    match &w.kind {
                        Kind::Q4 { d, m, qs } => run(&Q4 { d, m, qs }, w.blocks, a, rows, out, stride),
                        Kind::Q5 { d, qh, qs } => run(&Q5 { d, qh, qs }, w.blocks, a, rows, out, stride),
                        Kind::Q6 { d, qh, qs } => run(&Q6 { d, qh, qs }, w.blocks, a, rows, out, stride),
                        Kind::Q8 { d, qs } => run(&Q8 { d, qs }, w.blocks, a, rows, out, stride),
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn run<R: Rows>(
                w: &R,
                blocks: usize,
                a: &Activations,
                rows: std::ops::Range<usize>,
                out: &mut [f32],
                stride: usize,
            ) {
                let start = rows.start;
                let mut block_start = rows.start;
                while block_start < rows.end {
                    let block_end = rows.end.min(block_start + ROW_BLOCK);
                    let mut t0 = 0;
                    while t0 < a.rows {
                        let n = (a.rows - t0).min(MAX_TILE);
                        for row in block_start..block_end {
                            let out = &mut out[t0 * stride + row - start..];
                            // SAFETY: forwarded from `matmul`'s contract; t0 + n ≤ a.rows.
                            unsafe {
                                match n {
                                    $($t => tile::<R, $t>(w, row, blocks, a, t0, out, stride),)*
                                    _ => tile::<R, 1>(w, row, blocks, a, t0, out, stride),
                                }
                            }
                        }
                        t0 += n;
                    }
                    block_start = block_end;
                }
            }
        }
    };
}

/// `vpmaddubsw` + `vpmaddwd`: eight 32-bit sums of four u8·i8 products.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn dot_avx2(u: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1))
}

/// `vpdpbusd`: the same sums in one instruction.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_vnni(u: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x)
}

tier!(avx2, "avx2,fma", dot_avx2, quants, 8, [8, 7, 6, 5, 4, 3, 2]);
tier!(
    avx512,
    "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_vnni,
    quants_avx512,
    16,
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2]
);
