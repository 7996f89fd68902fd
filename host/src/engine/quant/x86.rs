//! x86-64 kernels: one octet of weight rows (see [`super::formats`]) against a tile of
//! activation rows, in two tiers.
//!
//! For each block, the octet's eight quant vectors are unpacked once into registers. For each
//! activation row of the tile, four activation bytes at a time are broadcast to every lane
//! and multiplied with one vector: after eight such multiply-adds each 32-bit lane holds its
//! own row's exact integer block product (no overflow: `u < 256`, `|x| ≤ 127`, 32 terms).
//! The weights' integer offsets come off with the activations' block sums, and one
//! conversion, one scale multiply and one fused multiply-add finish the block for all eight
//! rows. The eight results of a tile row are stored with one vector store.
//!
//! - `avx2` (AVX2 + FMA + F16C, any x86-64 since 2013): `vpmaddubsw` + `vpmaddwd` + `vpaddd` per
//!   multiply-add; Q8's signed quants through the sign trick (`vpmaddubsw` saturates 16-bit
//!   pairs, so they cannot be offset to unsigned).
//! - `avx512` (AVX-512 F/BW/VL + VNNI: Zen 4, Ice Lake and later): one `vpdpbusd` per
//!   multiply-add, Q5's fifth bits applied with a mask register, Q8 offset to unsigned by 128.
//!   Still 256-bit vectors: Zen 4 splits 512-bit operations in two, and the narrower ones
//!   keep Intel's clocks up; the extra registers hold larger tiles.
//!
//! Both are compiled whatever the build's target and only called after
//! `is_x86_feature_detected!` said yes (see [`super::kernels::Isa`]).

use std::arch::x86_64::*;

use super::activations::Activations;
use super::formats::{BLOCK, Kind, OCTET, Q5_OFFSET, Q6_OFFSET, Weights};

/// How one layout's octet-blocks load. `ob` is an octet-block index (`octet × blocks + b`).
trait Octets {
    /// Quants are signed (Q8).
    const SIGNED: bool;
    /// One scale per 16-value half (Q6).
    const HALVES: bool;
    /// A float `m` per row comes off after scaling (Q4).
    const MIN: bool;
    /// The `o` of `d·(u − o)` (0 where none).
    const OFFSET: i32;
    /// The largest unsigned quant (the signed Q8 says 127): how many vectors' 16-bit pair
    /// sums can be added before they must widen (see `products`).
    const MAX_U: i32;
    /// The eight quant vectors: vector `k` holds quants `4k..4k + 4` of row `j` at bytes
    /// `4j..4j + 4`.
    unsafe fn unpack(&self, ob: usize) -> [__m256i; 8];
    /// The same, where AVX-512 BW/VL can do it in fewer instructions.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn unpack_avx512(&self, ob: usize) -> [__m256i; 8] {
        // SAFETY: forwarded.
        unsafe { self.unpack(ob) }
    }
    /// The eight rows' scales of half `h` (0 unless `HALVES`).
    unsafe fn scale(&self, ob: usize, h: usize) -> __m256;
    /// The eight rows' `m` (zero unless `MIN`).
    unsafe fn min(&self, _ob: usize) -> __m256 {
        // SAFETY: no memory read.
        unsafe { _mm256_setzero_ps() }
    }
    /// The bytes of one octet-block, in all its arrays.
    const BYTES: usize;
    /// Asks for octet-block `ob`'s bytes to be brought into the cache (`ob` may lie past the
    /// end: a prefetch never faults).
    fn prefetch(&self, ob: usize);
}

/// Brings the cache line of `slice[index]` in, if there is one (nothing is read: an index
/// past the end is harmless).
#[inline(always)]
fn prefetch<T>(slice: &[T], index: usize) {
    let p = slice.as_ptr().wrapping_add(index) as *const i8;
    // SAFETY: a prefetch reads nothing and never faults, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
}

struct Q4<'a> {
    d: &'a [f32],
    m: &'a [f32],
    qs: &'a [u8],
}
struct Q5<'a> {
    /// f16 bits.
    d: &'a [u16],
    qh: &'a [u8],
    qs: &'a [u8],
}
struct Q6<'a> {
    d: &'a [f32],
    qh: &'a [u8],
    qs: &'a [u8],
}
struct Q8<'a> {
    /// f16 bits.
    d: &'a [u16],
    qs: &'a [i8],
}

/// The eight vectors of low nibbles (0–3) and high nibbles (4–7) of the 128 bytes at `p`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn nibbles(p: *const u8) -> [__m256i; 8] {
    let mask = _mm256_set1_epi8(0x0F);
    let mut v = [_mm256_setzero_si256(); 8];
    for k in 0..4 {
        // SAFETY: the caller points `p` at 128 readable bytes.
        let x = unsafe { _mm256_loadu_si256(p.add(32 * k) as *const __m256i) };
        v[k] = _mm256_and_si256(x, mask);
        v[k + 4] = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
    }
    v
}

/// Eight f16 at `p`, as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn halves(p: *const u16) -> __m256 {
    // SAFETY: the caller points `p` at 8 readable halves.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

/// Eight f32 at `p`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn floats(p: *const f32) -> __m256 {
    // SAFETY: the caller points `p` at 8 readable floats.
    unsafe { _mm256_loadu_ps(p) }
}

impl Octets for Q4<'_> {
    const SIGNED: bool = false;
    const HALVES: bool = false;
    const MIN: bool = true;
    const OFFSET: i32 = 0;
    const MAX_U: i32 = 15;
    const BYTES: usize = 192;
    fn prefetch(&self, ob: usize) {
        prefetch(self.qs, ob * 128);
        prefetch(self.qs, ob * 128 + 64);
        prefetch(self.d, ob * OCTET);
        prefetch(self.m, ob * OCTET);
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn unpack(&self, ob: usize) -> [__m256i; 8] {
        // SAFETY: `ob` is an octet-block of this matrix (checked by `matmul`): 128 bytes.
        unsafe { nibbles(self.qs.as_ptr().add(ob * 128)) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn scale(&self, ob: usize, _: usize) -> __m256 {
        // SAFETY: 8 scales per octet-block.
        unsafe { floats(self.d.as_ptr().add(ob * OCTET)) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn min(&self, ob: usize) -> __m256 {
        // SAFETY: 8 mins per octet-block.
        unsafe { floats(self.m.as_ptr().add(ob * OCTET)) }
    }
}

impl Octets for Q5<'_> {
    const SIGNED: bool = false;
    const HALVES: bool = false;
    const MIN: bool = false;
    const OFFSET: i32 = Q5_OFFSET;
    const MAX_U: i32 = 31;
    const BYTES: usize = 176;
    fn prefetch(&self, ob: usize) {
        prefetch(self.qs, ob * 128);
        prefetch(self.qs, ob * 128 + 64);
        prefetch(self.qh, ob * 32);
        prefetch(self.d, ob * OCTET);
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn unpack(&self, ob: usize) -> [__m256i; 8] {
        // SAFETY: `ob` is an octet-block (checked by `matmul`): 128 bytes, 32 bytes of bits.
        let (mut v, bits) = unsafe {
            (
                nibbles(self.qs.as_ptr().add(ob * 128)),
                _mm256_loadu_si256(self.qh.as_ptr().add(ob * 32) as *const __m256i),
            )
        };
        // Vector k's fifth bits are bit k of each byte: moved to bit 4 with a 16-bit shift
        // (a byte's bit 4 only ever comes from a bit of the same byte for shifts up to 4)
        // and kept with a mask.
        let fifth = _mm256_set1_epi8(0x10);
        let at_four = |k: usize| match k {
            0 => _mm256_slli_epi16(bits, 4),
            1 => _mm256_slli_epi16(bits, 3),
            2 => _mm256_slli_epi16(bits, 2),
            3 => _mm256_slli_epi16(bits, 1),
            4 => bits,
            5 => _mm256_srli_epi16(bits, 1),
            6 => _mm256_srli_epi16(bits, 2),
            _ => _mm256_srli_epi16(bits, 3),
        };
        for (k, v) in v.iter_mut().enumerate() {
            *v = _mm256_or_si256(*v, _mm256_and_si256(at_four(k), fifth));
        }
        v
    }
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn unpack_avx512(&self, ob: usize) -> [__m256i; 8] {
        // SAFETY: as in `unpack`.
        let (mut v, bits) = unsafe {
            (
                nibbles(self.qs.as_ptr().add(ob * 128)),
                _mm256_loadu_si256(self.qh.as_ptr().add(ob * 32) as *const __m256i),
            )
        };
        for (k, v) in v.iter_mut().enumerate() {
            // The bytes whose bit k is set take their fifth bit (bit 4 is clear: add = or).
            let set = _mm256_test_epi8_mask(bits, _mm256_set1_epi8(1 << k));
            *v = _mm256_mask_add_epi8(*v, set, *v, _mm256_set1_epi8(0x10));
        }
        v
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn scale(&self, ob: usize, _: usize) -> __m256 {
        // SAFETY: 8 scales per octet-block.
        unsafe { halves(self.d.as_ptr().add(ob * OCTET)) }
    }
}

impl Octets for Q6<'_> {
    const SIGNED: bool = false;
    const HALVES: bool = true;
    const MIN: bool = false;
    const OFFSET: i32 = Q6_OFFSET;
    const MAX_U: i32 = 63;
    const BYTES: usize = 256;
    fn prefetch(&self, ob: usize) {
        prefetch(self.qs, ob * 128);
        prefetch(self.qs, ob * 128 + 64);
        prefetch(self.qh, ob * 64);
        prefetch(self.d, 2 * ob * OCTET);
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn unpack(&self, ob: usize) -> [__m256i; 8] {
        // SAFETY: `ob` is an octet-block: 128 nibble bytes, 64 bytes of top bits.
        let mut v = unsafe { nibbles(self.qs.as_ptr().add(ob * 128)) };
        for (k, v) in v.iter_mut().enumerate() {
            // SAFETY: as above.
            let qh = unsafe {
                std::ptr::read_unaligned(self.qh.as_ptr().add(ob * 64 + 8 * k) as *const i64)
            };
            // Lane l (bytes 8l..8l+8) takes bit pair l of each of the 8 bytes.
            let high = _mm256_srlv_epi64(_mm256_set1_epi64x(qh), _mm256_setr_epi64x(0, 2, 4, 6));
            let high = _mm256_slli_epi16(_mm256_and_si256(high, _mm256_set1_epi8(3)), 4);
            *v = _mm256_or_si256(*v, high);
        }
        v
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn scale(&self, ob: usize, h: usize) -> __m256 {
        // SAFETY: 8 scales per half per octet-block.
        unsafe { floats(self.d.as_ptr().add((2 * ob + h) * OCTET)) }
    }
}

impl Octets for Q8<'_> {
    const SIGNED: bool = true;
    const HALVES: bool = false;
    const MIN: bool = false;
    const OFFSET: i32 = 0;
    const MAX_U: i32 = 127;
    const BYTES: usize = 272;
    fn prefetch(&self, ob: usize) {
        for line in 0..4 {
            prefetch(self.qs, ob * 256 + 64 * line);
        }
        prefetch(self.d, ob * OCTET);
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn unpack(&self, ob: usize) -> [__m256i; 8] {
        let p = self.qs.as_ptr();
        // SAFETY: `ob` is an octet-block: 256 bytes.
        std::array::from_fn(|k| unsafe {
            _mm256_loadu_si256(p.add(ob * 256 + 32 * k) as *const __m256i)
        })
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn scale(&self, ob: usize, _: usize) -> __m256 {
        // SAFETY: 8 scales per octet-block.
        unsafe { halves(self.d.as_ptr().add(ob * OCTET)) }
    }
}

/// How far ahead of the block in use its successors are asked for, in bytes of weights: about
/// a memory access's latency at the kernels' pace (measured: 2–4 KiB do alike, 1 KiB is too
/// near).
const PREFETCH_BYTES: usize = 3072;

/// Octets handled together before the next tile of activations: their blocks stay in L1
/// while the activations (L2-sized) stream past them.
const OCTET_GROUP: usize = 2;

/// One tier: the tile kernel and its driver, compiled for `$features`, multiply-adding with
/// `$dot`, unpacking with `Octets::$unpack`, tiles of up to `$max` activation rows.
/// `$q8_offset`: how signed quants multiply: offset to unsigned by it, or (0) through the
/// sign trick. `$pairs`: unsigned products of several vectors are summed in 16 bits first
/// (`vpmaddubsw` tiers).
macro_rules! tier {
    ($name:ident, $features:literal, $dot:ident, $unpack:ident, $q8_offset:literal, $pairs:literal, $max:literal, [$($t:literal),*]) => {
        pub mod $name {
            use super::*;

            /// The activation rows one tile handles.
            pub const MAX_TILE: usize = $max;

            /// `acc` + the products of vectors `ks` with the activation bytes at `x`
            /// (4 per vector, broadcast). `max_u`: the largest unsigned quant.
            /// `signed`: the vectors hold signed quants still (the sign trick).
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn products(
                mut acc: __m256i,
                v: &[__m256i; 8],
                x: *const i8,
                ks: std::ops::Range<usize>,
                max_u: i32,
                signed: bool,
            ) -> __m256i {
                let broadcast = |k: usize| {
                    // SAFETY: the caller points `x` at a 32-byte block; k < 8.
                    _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(x.add(4 * k) as *const i32) })
                };
                if $pairs && !signed {
                    // Vectors' 16-bit pair sums added before one widening: a pair is at most
                    // 2·max_u·127, and as many pairs as stay below 2¹⁵ add up exactly (Q4:
                    // all eight vectors, one widening instead of four; Q5: four; Q6: two).
                    let group = (i16::MAX as i32 / (2 * max_u * 127)).clamp(1, 8) as usize;
                    let mut k = ks.start;
                    while k < ks.end {
                        let end = (k + group).min(ks.end);
                        let mut pairs = _mm256_maddubs_epi16(v[k], broadcast(k));
                        for j in k + 1..end {
                            pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(v[j], broadcast(j)));
                        }
                        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
                        k = end;
                    }
                    return acc;
                }
                for k in ks {
                    let xk = broadcast(k);
                    // Signed quants: |q|·(sign(q)·x) gives the same products with an
                    // unsigned left side.
                    acc = if signed {
                        $dot(acc, _mm256_sign_epi8(v[k], v[k]), _mm256_sign_epi8(xk, v[k]))
                    } else {
                        $dot(acc, v[k], xk)
                    };
                }
                acc
            }

            /// Octet `octet` · activation rows `t0..t0 + T`: `out[t·stride + j]` for the
            /// octet's first `valid` rows `j`.
            ///
            /// # Safety
            /// The CPU has `$features`; `octet` is an octet of `w`'s matrix (as wide as the
            /// activations); `t0 + T ≤ a.rows`; `out` holds
            /// `(T − 1)·stride + valid` values.
            #[target_feature(enable = $features)]
            unsafe fn tile<R: Octets, const T: usize>(
                w: &R,
                octet: usize,
                a: &Activations,
                t0: usize,
                out: &mut [f32],
                stride: usize,
                valid: usize,
            ) {
                let mut acc = [_mm256_setzero_ps(); T];
                let blocks = a.blocks;
                let (aq, ad) = (a.qs.as_ptr(), a.d.as_ptr());
                let (sums, half_sums, scaled) =
                    (a.sums.as_ptr(), a.half_sums.as_ptr(), a.scaled_sums.as_ptr());
                let offset = if R::SIGNED { $q8_offset } else { R::OFFSET };
                // Signed quants still signed in the products (the sign trick).
                let signed = R::SIGNED && $q8_offset == 0;
                debug_assert!(offset == 0 || (offset as u32).is_power_of_two());
                let shift = _mm_cvtsi32_si128(offset.trailing_zeros() as i32);
                for b in 0..blocks {
                    let ob = octet * blocks + b;
                    // The weights stream from memory once per matmul: asked for ahead of use,
                    // their loads overlap the products instead of stalling them (a prompt's
                    // later tiles find them in the cache: the request costs a load slot).
                    w.prefetch(ob + PREFETCH_BYTES / R::BYTES);
                    // SAFETY: `ob` is an octet-block of the matrix (the caller's contract).
                    let (mut v, d0, d1, m) = unsafe {
                        (w.$unpack(ob), w.scale(ob, 0), w.scale(ob, R::HALVES as usize), w.min(ob))
                    };
                    if R::SIGNED && $q8_offset != 0 {
                        // q + 128: the same bytes with the top bit flipped.
                        for v in &mut v {
                            *v = _mm256_xor_si256(*v, _mm256_set1_epi8(-128));
                        }
                    }
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let at = (t0 + t) * blocks + b;
                        // SAFETY: t0 + t < a.rows and b < blocks: a 32-byte block of quants,
                        // its scale and sums.
                        unsafe {
                            let x = aq.add((t0 + t) * a.cols + b * BLOCK);
                            let da = _mm256_set1_ps(*ad.add(at));
                            let zero = _mm256_setzero_si256();
                            if R::HALVES {
                                let low = products(zero, &v, x, 0..4, R::MAX_U, signed);
                                let high = products(zero, &v, x, 4..8, R::MAX_U, signed);
                                let low = _mm256_sub_epi32(
                                    low,
                                    _mm256_sll_epi32(_mm256_set1_epi32(*half_sums.add(2 * at)), shift),
                                );
                                let high = _mm256_sub_epi32(
                                    high,
                                    _mm256_sll_epi32(_mm256_set1_epi32(*half_sums.add(2 * at + 1)), shift),
                                );
                                *acc = _mm256_fmadd_ps(
                                    _mm256_cvtepi32_ps(low),
                                    _mm256_mul_ps(d0, da),
                                    *acc,
                                );
                                *acc = _mm256_fmadd_ps(
                                    _mm256_cvtepi32_ps(high),
                                    _mm256_mul_ps(d1, da),
                                    *acc,
                                );
                            } else {
                                let mut sum = products(zero, &v, x, 0..8, R::MAX_U, signed);
                                if offset != 0 {
                                    // `o·Σx` (o a power of two), broadcast from memory and
                                    // shifted: no round trip through a general register.
                                    sum = _mm256_sub_epi32(
                                        sum,
                                        _mm256_sll_epi32(_mm256_set1_epi32(*sums.add(at)), shift),
                                    );
                                }
                                *acc = _mm256_fmadd_ps(
                                    _mm256_cvtepi32_ps(sum),
                                    _mm256_mul_ps(d0, da),
                                    *acc,
                                );
                                if R::MIN {
                                    *acc = _mm256_fnmadd_ps(m, _mm256_set1_ps(*scaled.add(at)), *acc);
                                }
                            }
                        }
                    }
                }
                for (t, acc) in acc.iter().enumerate() {
                    let out = &mut out[t * stride..];
                    if valid == OCTET {
                        assert!(out.len() >= OCTET);
                        // SAFETY: 8 floats are there (just checked).
                        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *acc) };
                    } else {
                        let mut lanes = [0f32; OCTET];
                        // SAFETY: `lanes` holds 8 floats.
                        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *acc) };
                        out[..valid].copy_from_slice(&lanes[..valid]);
                    }
                }
            }

            /// Rows `rows` of `w` against activation rows `tokens`:
            /// `out[(t − tokens.start)·stride + (row − rows.start)]`.
            ///
            /// # Safety
            /// The CPU has `$features`; `w` is consistent (every array as long as its rows and
            /// blocks say) and as wide as `a`; `rows` lie in `w` and start on an octet;
            /// `tokens` lie in `a`.
            #[target_feature(enable = $features)]
            pub unsafe fn matmul(
                w: &Weights,
                a: &Activations,
                rows: std::ops::Range<usize>,
                tokens: std::ops::Range<usize>,
                out: &mut [f32],
                stride: usize,
            ) {
                // SAFETY (all arms): forwarded from this function's contract.
                unsafe {
                    match &w.kind {
                        Kind::Q4 { d, m, qs } => run(&Q4 { d, m, qs }, a, rows, tokens, out, stride),
                        Kind::Q5 { d, qh, qs } => run(&Q5 { d, qh, qs }, a, rows, tokens, out, stride),
                        Kind::Q6 { d, qh, qs } => run(&Q6 { d, qh, qs }, a, rows, tokens, out, stride),
                        Kind::Q8 { d, qs } => run(&Q8 { d, qs }, a, rows, tokens, out, stride),
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn run<R: Octets>(
                w: &R,
                a: &Activations,
                rows: std::ops::Range<usize>,
                tokens: std::ops::Range<usize>,
                out: &mut [f32],
                stride: usize,
            ) {
                assert!(rows.start % OCTET == 0, "rows start on an octet");
                assert!(tokens.end <= a.rows, "activation rows past the activations");
                let octets = rows.start / OCTET..rows.end.div_ceil(OCTET);
                let mut group = octets.start;
                while group < octets.end {
                    let group_end = octets.end.min(group + OCTET_GROUP);
                    let mut t0 = tokens.start;
                    while t0 < tokens.end {
                        let n = (tokens.end - t0).min(MAX_TILE);
                        for octet in group..group_end {
                            let first = octet * OCTET;
                            let valid = (rows.end - first).min(OCTET);
                            let out = &mut out[(t0 - tokens.start) * stride + first - rows.start..];
                            // SAFETY: forwarded from `matmul`'s contract; t0 + n ≤ a.rows.
                            unsafe {
                                match n {
                                    $($t => tile::<R, $t>(w, octet, a, t0, out, stride, valid),)*
                                    _ => tile::<R, 1>(w, octet, a, t0, out, stride, valid),
                                }
                            }
                        }
                        t0 += n;
                    }
                    group = group_end;
                }
            }
        }
    };
}

/// `vpmaddubsw` + `vpmaddwd`: eight 32-bit sums of four u8·i8 products, added to `acc`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn dot_avx2(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)),
    )
}

/// `vpdpbusd`: the same in one instruction.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_vnni(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, x)
}

// `vpmaddubsw` adds pairs of products in 16 bits with saturation: quants offset to 0..256
// could overflow it, so AVX2 keeps Q8 signed; `vpdpbusd` sums in 32 bits and takes the offset.
tier!(
    avx2,
    "avx2,fma,f16c",
    dot_avx2,
    unpack,
    0,
    true,
    8,
    [8, 7, 6, 5, 4, 3, 2]
);
tier!(
    avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_vnni,
    unpack_avx512,
    128,
    false,
    16,
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2]
);
