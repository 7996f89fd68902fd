//! The weight layouts the kernels read, and their conversion from GGUF blocks.
//!
//! Every supported GGUF type becomes one of four layouts built on 32-value blocks: small
//! unsigned integers `u` with one or two float scales per block, and the value recovered as
//! `d·(u − o)` with a constant offset `o`, or `d·u − m` (Q4), or `d·q` (Q8, signed).
//! Unsigned quants let a SIMD kernel multiply them with signed 8-bit activations in one
//! instruction; the offsets come off through the activations' block sums.
//!
//! Rows are stored in **octets**: eight rows interleaved, block by block, so that one 32-byte
//! vector holds four consecutive quants of each of the eight rows. Multiplying it with four
//! activation bytes broadcast to all lanes gives every lane a partial dot product of its own
//! row, and eight such multiplies leave each lane with its row's whole block product in an
//! integer — no horizontal sums, and the float scaling done once per block for eight rows
//! instead of once per row (llama.cpp's CPU "repack" layouts rest on the same idea). A
//! matrix whose rows are not a multiple of eight is padded with zero rows.
//!
//! Per octet and block (`ob = octet · blocks + b`), vector `k` (0..8) holds quants
//! `4k..4k + 4` of row `j` at bytes `4j..4j + 4`:
//! - nibbles: 4 × 32 bytes; byte `4j + i` of packed vector `k` (0..4) holds quant `4k + i`
//!   of row `j` in its low nibble and quant `16 + 4k + i` in its high nibble;
//! - Q5's fifth bits: 32 bytes, byte `4j + i` holding in bit `k` the fifth bit of byte
//!   `4j + i` of vector `k` (so that each vector's bits come out of one load with a shift
//!   and a mask);
//! - Q6's top two bits: 8 bytes per vector `k`; byte `p` of the vector takes bit pair
//!   `p / 8` of byte `p % 8`;
//! - Q8: the 8 vectors' bytes as they are (256 bytes);
//! - scales (and Q4's `m`): 8 per octet-block, one per row (Q6: 8 for each half of the
//!   block); f16 where the file's scale is one as it stands (Q5_0, Q8_0), f32 where it is a
//!   product (the K-quants' super-block scale times a block's, Q4_0's `m`).
//!
//! Nibbles stay packed two to a byte, fifth bits one bit each and f16 scales f16, so a
//! layout costs what the file costs (decoding streams every weight once a token: bytes are
//! time); the kernels convert eight scales with one instruction.
//!
//! Its length (a fifth of it tests) is one description: the layouts, how each GGUF type
//! converts into them, in which order their arrays come ([`Weights::with_arrays`], shared with
//! the weight cache), and how a block reads back, each written against the others.

use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use memmap2::Mmap;
use rayon::prelude::*;

use super::activations::Scales;

/// Values per block, in every layout.
pub const BLOCK: usize = 32;

/// Rows interleaved together.
pub const OCTET: usize = 8;

/// A weight matrix of `rows` outputs by `cols` inputs, `cols` a multiple of [`BLOCK`].
pub struct Weights {
    pub rows: usize,
    pub cols: usize,
    /// Blocks per row.
    pub blocks: usize,
    pub kind: Kind,
    /// How the activations these weights multiply are quantized (as llama.cpp pairs the
    /// file's type).
    pub scales: Scales,
}

/// The layouts, indexed by `ob` (octet · blocks + block) as the module describes.
pub enum Kind {
    /// `d·u − m`, `u` in 0..16 (from Q4_0 and Q4_K).
    Q4 {
        d: Buffer<f32>,
        m: Buffer<f32>,
        qs: Buffer<u8>,
    },
    /// `d·(u − 16)`, `u` in 0..32 (from Q5_0); `d` as f16 bits.
    Q5 {
        d: Buffer<u16>,
        qh: Buffer<u8>,
        qs: Buffer<u8>,
    },
    /// `d_h·(u − 32)`, `u` in 0..64 (from Q6_K), one scale per 16 values.
    Q6 {
        d: Buffer<f32>,
        qh: Buffer<u8>,
        qs: Buffer<u8>,
    },
    /// `d·q`, `q` signed (from Q8_0); `d` as f16 bits.
    Q8 { d: Buffer<u16>, qs: Buffer<i8> },
}

/// One array of a layout: converted in memory, or mapped from the weight cache
/// ([`super::cache`]). Either way the kernels see a slice.
pub enum Buffer<T> {
    Owned(Vec<T>),
    /// `len` elements at byte `offset` of a mapped cache file (bounds and alignment checked
    /// when the buffer was made).
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
}

impl<T: bytemuck::Pod> Buffer<T> {
    /// `len` elements of `map` from byte `offset`, if they lie inside it, aligned for `T`.
    pub fn mapped(map: &Arc<Mmap>, offset: usize, len: usize) -> Option<Buffer<T>> {
        let bytes = len.checked_mul(size_of::<T>())?;
        let slice = map.get(offset..offset.checked_add(bytes)?)?;
        bytemuck::try_cast_slice::<u8, T>(slice).ok()?;
        Some(Buffer::Mapped {
            map: Arc::clone(map),
            offset,
            len,
        })
    }

    /// The elements as bytes, to write to the cache.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }

    /// The elements, writable while the weights are being converted (always in memory then).
    fn converting(&mut self) -> &mut [T] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Mapped { .. } => {
                unreachable!("weights are converted into memory, not into a mapping")
            }
        }
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for Buffer<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Buffer::Owned(v) => v,
            // Checked in `Buffer::mapped`: in bounds, aligned, and any bytes are a valid `T`.
            Buffer::Mapped { map, offset, len } => {
                bytemuck::cast_slice(&map[*offset..*offset + *len * size_of::<T>()])
            }
        }
    }
}

/// The offset `o` of the `d·(u − o)` layouts.
pub const Q5_OFFSET: i32 = 16;
pub const Q6_OFFSET: i32 = 32;

/// Why a tensor could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("type {0:?} has no packed layout")]
    Unsupported(GgmlDType),
    #[error("{cols} columns are not a multiple of the {block}-value block")]
    Columns { cols: usize, block: usize },
    #[error("{got} bytes of data, expected {expected}")]
    Size { got: usize, expected: usize },
    #[error("the weight cache's arrays do not fit this tensor")]
    Cached,
}

/// One 32-value block, unpacked: the quants and how to scale them.
struct Unpacked {
    u: [u8; BLOCK],
    /// Scale of values 0..16 and 16..32 (equal except for Q6_K).
    d: [f32; 2],
    /// Subtracted after scaling (Q4 layouts).
    m: f32,
}

/// The bytes of one source block and how many values it holds.
fn source_block(dtype: GgmlDType) -> Option<(usize, usize)> {
    Some(match dtype {
        GgmlDType::Q4_0 => (18, 32),
        GgmlDType::Q5_0 => (22, 32),
        GgmlDType::Q8_0 => (34, 32),
        GgmlDType::Q4K => (144, 256),
        GgmlDType::Q6K => (210, 256),
        _ => return None,
    })
}

/// Every type [`Weights::from_ggml`] converts.
pub const CONVERTED: [GgmlDType; 5] = [
    GgmlDType::Q4_0,
    GgmlDType::Q5_0,
    GgmlDType::Q8_0,
    GgmlDType::Q4K,
    GgmlDType::Q6K,
];

/// Whether [`Weights::from_ggml`] converts this type.
pub fn supported(dtype: GgmlDType) -> bool {
    CONVERTED.contains(&dtype)
}

/// Converts a GGUF tensor's blocks as they arrive, in file order: a tensor read from its file
/// in pieces never sits in memory whole beside its converted copy (for a large embedding
/// matrix, that copy was the peak of a model's memory).
pub struct Converter {
    dtype: GgmlDType,
    /// Bytes per source block.
    block_bytes: usize,
    /// Values per source block.
    values: usize,
    /// Bytes the whole tensor takes in the file.
    source_bytes: usize,
    /// Bytes fed so far.
    fed: usize,
    /// 32-value blocks converted so far.
    at: usize,
    weights: Weights,
}

impl Converter {
    /// Bytes per source block: every piece fed holds whole blocks.
    pub fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// Bytes the whole tensor takes in the file.
    pub fn source_bytes(&self) -> usize {
        self.source_bytes
    }

    /// Converts the next source blocks (`data.len()` a multiple of [`Converter::block_bytes`]).
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ConvertError> {
        if !data.len().is_multiple_of(self.block_bytes) || self.fed + data.len() > self.source_bytes
        {
            return Err(ConvertError::Size {
                got: self.fed + data.len(),
                expected: self.source_bytes,
            });
        }
        self.fed += data.len();
        if data.is_empty() {
            return Ok(());
        }
        // Source blocks come row by row, each row `blocks` 32-value blocks long. Up to the
        // next whole octet of rows one block at a time, then whole octets on all threads.
        let octet_blocks = OCTET * self.weights.blocks;
        let (values, block_bytes) = (self.values, self.block_bytes);
        let bytes_of = move |blocks: usize| blocks * BLOCK / values * block_bytes;
        let to_octet = bytes_of((octet_blocks - self.at % octet_blocks) % octet_blocks);
        let (head, rest) = data.split_at(to_octet.min(data.len()));
        self.feed_blocks(head);
        let whole = rest.len() / bytes_of(octet_blocks);
        let (body, tail) = rest.split_at(whole * bytes_of(octet_blocks));
        if whole > 0 {
            let (dtype, blocks) = (self.dtype, self.weights.blocks);
            let first = self.at / octet_blocks;
            let octets = self.weights.kind.octets(blocks, first, whole);
            body.par_chunks(bytes_of(octet_blocks))
                .zip(octets)
                .for_each(|(source, mut octet)| {
                    let mut at = 0;
                    for block in source.chunks_exact(block_bytes) {
                        unpack(dtype, block, |b| {
                            octet.put(at % blocks, at / blocks, &b);
                            at += 1;
                        });
                    }
                });
            self.at += whole * octet_blocks;
        }
        self.feed_blocks(tail);
        Ok(())
    }

    /// Converts source blocks one at a time, from where the last left off.
    fn feed_blocks(&mut self, data: &[u8]) {
        let blocks = self.weights.blocks;
        let (mut kind, at) = (self.weights.kind.view(), &mut self.at);
        for block in data.chunks_exact(self.block_bytes) {
            unpack(self.dtype, block, |b| {
                let (row, col) = (*at / blocks, *at % blocks);
                let ob = (row / OCTET) * blocks + col;
                kind.put(ob, row % OCTET, &b);
                *at += 1;
            });
        }
    }

    /// The converted weights, once every block was fed.
    pub fn finish(self) -> Result<Weights, ConvertError> {
        if self.fed != self.source_bytes {
            return Err(ConvertError::Size {
                got: self.fed,
                expected: self.source_bytes,
            });
        }
        Ok(self.weights)
    }
}

impl Weights {
    /// Converts a GGUF tensor of `rows` × `cols` (row-major, `cols` the input size).
    pub fn from_ggml(
        dtype: GgmlDType,
        data: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Weights, ConvertError> {
        let mut converter = Weights::converter(dtype, rows, cols)?;
        if data.len() != converter.source_bytes() {
            return Err(ConvertError::Size {
                got: data.len(),
                expected: converter.source_bytes(),
            });
        }
        converter.feed(data)?;
        converter.finish()
    }

    /// A converter for a GGUF tensor of `rows` × `cols`, fed piece by piece.
    pub fn converter(
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
    ) -> Result<Converter, ConvertError> {
        let (bytes, values) = source_block(dtype).ok_or(ConvertError::Unsupported(dtype))?;
        Ok(Converter {
            dtype,
            block_bytes: bytes,
            values,
            source_bytes: rows * cols / values * bytes,
            fed: 0,
            at: 0,
            weights: Weights::with_arrays(dtype, rows, cols, &mut Zeroed)?,
        })
    }

    /// The layout of a GGUF tensor of `dtype` and shape `rows` × `cols`, each array taken
    /// from `arrays` in [`Kind`]'s field order: the one place that says which arrays a type
    /// converts to and how long they are.
    pub fn with_arrays(
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        arrays: &mut impl Arrays,
    ) -> Result<Weights, ConvertError> {
        let (_, values) = source_block(dtype).ok_or(ConvertError::Unsupported(dtype))?;
        if !cols.is_multiple_of(values) {
            return Err(ConvertError::Columns {
                cols,
                block: values,
            });
        }
        let blocks = cols / BLOCK;
        let total = rows.div_ceil(OCTET) * blocks;
        let kind = match dtype {
            GgmlDType::Q4_0 | GgmlDType::Q4K => Kind::Q4 {
                d: arrays.array(total * OCTET)?,
                m: arrays.array(total * OCTET)?,
                qs: arrays.array(total * 128)?,
            },
            GgmlDType::Q5_0 => Kind::Q5 {
                d: arrays.array(total * OCTET)?,
                qh: arrays.array(total * 32)?,
                qs: arrays.array(total * 128)?,
            },
            GgmlDType::Q6K => Kind::Q6 {
                d: arrays.array(total * 2 * OCTET)?,
                qh: arrays.array(total * 64)?,
                qs: arrays.array(total * 128)?,
            },
            _ => Kind::Q8 {
                d: arrays.array(total * OCTET)?,
                qs: arrays.array(total * 256)?,
            },
        };
        let scales = match dtype {
            GgmlDType::Q4K | GgmlDType::Q6K => Scales::Superblock,
            _ => Scales::Block,
        };
        Ok(Weights {
            rows,
            cols,
            blocks,
            kind,
            scales,
        })
    }

    /// Each array's bytes, in [`Kind`]'s field order (what [`Weights::with_arrays`] takes).
    pub fn arrays(&self) -> Vec<&[u8]> {
        match &self.kind {
            Kind::Q4 { d, m, qs } => vec![d.as_bytes(), m.as_bytes(), qs.as_bytes()],
            Kind::Q5 { d, qh, qs } => vec![d.as_bytes(), qh.as_bytes(), qs.as_bytes()],
            Kind::Q6 { d, qh, qs } => vec![d.as_bytes(), qh.as_bytes(), qs.as_bytes()],
            Kind::Q8 { d, qs } => vec![d.as_bytes(), qs.as_bytes()],
        }
    }

    /// Bytes held (the speed tests report bandwidth with it).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        match &self.kind {
            Kind::Q4 { d, m, qs } => (d.len() + m.len()) * 4 + qs.len(),
            Kind::Q5 { d, qh, qs } => d.len() * 2 + qh.len() + qs.len(),
            Kind::Q6 { d, qh, qs } => d.len() * 4 + qh.len() + qs.len(),
            Kind::Q8 { d, qs } => d.len() * 2 + qs.len(),
        }
    }

    /// Block `b` of row `row`: the quants as integers (Q8 signed, others `u`), the scale of
    /// each half, and what comes off after scaling (`m` for Q4; Q5/Q6 subtract their offset
    /// from `u` before scaling, see [`Weights::offset`]).
    pub fn block(&self, row: usize, b: usize) -> ([i32; BLOCK], [f32; 2], f32) {
        let ob = (row / OCTET) * self.blocks + b;
        let j = row % OCTET;
        // The byte of a vector that holds quant `4k + i` of this row.
        let lane = |i: usize| 4 * j + i;
        let nibble = |qs: &[u8], q: usize| -> i32 {
            let (k, i) = ((q % 16) / 4, q % 4);
            let byte = qs[ob * 128 + 32 * k + lane(i)];
            (if q < 16 { byte & 0xF } else { byte >> 4 }) as i32
        };
        match &self.kind {
            Kind::Q4 { d, m, qs } => {
                let d = d[ob * OCTET + j];
                (
                    std::array::from_fn(|q| nibble(qs, q)),
                    [d, d],
                    m[ob * OCTET + j],
                )
            }
            Kind::Q5 { d, qh, qs } => {
                let d = f16_to_f32(d[ob * OCTET + j]);
                let u = std::array::from_fn(|q| {
                    let (k, i) = (q / 4, q % 4);
                    let fifth = (qh[ob * 32 + lane(i)] >> k) & 1;
                    nibble(qs, q) | (fifth as i32) << 4
                });
                (u, [d, d], 0.0)
            }
            Kind::Q6 { d, qh, qs } => {
                let u = std::array::from_fn(|q| {
                    let (k, p) = (q / 4, lane(q % 4));
                    let high = (qh[ob * 64 + 8 * k + p % 8] >> (2 * (p / 8))) & 3;
                    nibble(qs, q) | (high as i32) << 4
                });
                let scale = |h: usize| d[(ob * 2 + h) * OCTET + j];
                (u, [scale(0), scale(1)], 0.0)
            }
            Kind::Q8 { d, qs } => {
                let d = f16_to_f32(d[ob * OCTET + j]);
                let q = std::array::from_fn(|q| qs[ob * 256 + 32 * (q / 4) + lane(q % 4)] as i32);
                (q, [d, d], 0.0)
            }
        }
    }

    /// The constant subtracted from the quants before scaling (0 where none).
    pub fn offset(&self) -> i32 {
        match self.kind {
            Kind::Q5 { .. } => Q5_OFFSET,
            Kind::Q6 { .. } => Q6_OFFSET,
            Kind::Q4 { .. } | Kind::Q8 { .. } => 0,
        }
    }

    /// Writes row `row`'s values into `out` (`cols` long): embedding lookups.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let offset = self.offset();
        for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (q, d, m) = self.block(row, b);
            for (j, o) in out.iter_mut().enumerate() {
                *o = d[j / 16] * (q[j] - offset) as f32 - m;
            }
        }
    }
}

/// A [`Kind`]'s arrays, or the part of them that holds a run of octets (`ob` counted from
/// its first octet-block): octets never share an element, so they convert in parallel.
enum KindMut<'a> {
    Q4 {
        d: &'a mut [f32],
        m: &'a mut [f32],
        qs: &'a mut [u8],
    },
    Q5 {
        d: &'a mut [u16],
        qh: &'a mut [u8],
        qs: &'a mut [u8],
    },
    Q6 {
        d: &'a mut [f32],
        qh: &'a mut [u8],
        qs: &'a mut [u8],
    },
    Q8 {
        d: &'a mut [u16],
        qs: &'a mut [i8],
    },
}

/// Where [`Weights::with_arrays`] takes a layout's arrays from.
pub trait Arrays {
    /// The next array, `len` elements long.
    fn array<T: bytemuck::Pod>(&mut self, len: usize) -> Result<Buffer<T>, ConvertError>;
}

/// Arrays of zeros in memory, to convert into.
struct Zeroed;

impl Arrays for Zeroed {
    fn array<T: bytemuck::Pod>(&mut self, len: usize) -> Result<Buffer<T>, ConvertError> {
        Ok(Buffer::Owned(vec![T::zeroed(); len]))
    }
}

impl Kind {
    fn view(&mut self) -> KindMut<'_> {
        match self {
            Kind::Q4 { d, m, qs } => KindMut::Q4 {
                d: d.converting(),
                m: m.converting(),
                qs: qs.converting(),
            },
            Kind::Q5 { d, qh, qs } => KindMut::Q5 {
                d: d.converting(),
                qh: qh.converting(),
                qs: qs.converting(),
            },
            Kind::Q6 { d, qh, qs } => KindMut::Q6 {
                d: d.converting(),
                qh: qh.converting(),
                qs: qs.converting(),
            },
            Kind::Q8 { d, qs } => KindMut::Q8 {
                d: d.converting(),
                qs: qs.converting(),
            },
        }
    }

    /// Octets `first..first + count`, one view each, of a matrix `blocks` blocks wide.
    fn octets(&mut self, blocks: usize, first: usize, count: usize) -> Vec<KindMut<'_>> {
        // Each array holds `per` elements per octet-block.
        fn parts<T: bytemuck::Pod>(
            v: &mut Buffer<T>,
            per: usize,
            span: (usize, usize, usize),
        ) -> std::slice::ChunksMut<'_, T> {
            let (blocks, first, count) = span;
            let size = per * blocks;
            v.converting()[first * size..(first + count) * size].chunks_mut(size)
        }
        let span = (blocks, first, count);
        match self {
            Kind::Q4 { d, m, qs } => parts(d, OCTET, span)
                .zip(parts(m, OCTET, span))
                .zip(parts(qs, 128, span))
                .map(|((d, m), qs)| KindMut::Q4 { d, m, qs })
                .collect(),
            Kind::Q5 { d, qh, qs } => parts(d, OCTET, span)
                .zip(parts(qh, 32, span))
                .zip(parts(qs, 128, span))
                .map(|((d, qh), qs)| KindMut::Q5 { d, qh, qs })
                .collect(),
            Kind::Q6 { d, qh, qs } => parts(d, 2 * OCTET, span)
                .zip(parts(qh, 64, span))
                .zip(parts(qs, 128, span))
                .map(|((d, qh), qs)| KindMut::Q6 { d, qh, qs })
                .collect(),
            Kind::Q8 { d, qs } => parts(d, OCTET, span)
                .zip(parts(qs, 256, span))
                .map(|(d, qs)| KindMut::Q8 { d, qs })
                .collect(),
        }
    }
}

impl KindMut<'_> {
    /// Stores block `b` as row `j` of octet-block `ob`. Value `q` goes to group `q / 4` of
    /// the octet-block's bytes, at the row's four places `4j..4j + 4` of that group: each
    /// group is sliced once, so the stores carry no index checks of their own (this runs once
    /// per 32 weights at load, and was most of a model's load time).
    fn put(&mut self, ob: usize, j: usize, b: &Unpacked) {
        let nibbles = |qs: &mut [u8]| {
            let row = &mut qs[ob * 128 + 4 * j..][..100];
            for k in 0..4 {
                let (low, high) = (&b.u[4 * k..4 * k + 4], &b.u[4 * k + 16..4 * k + 20]);
                let out = &mut row[32 * k..32 * k + 4];
                for i in 0..4 {
                    out[i] = (low[i] & 0xF) | (high[i] << 4);
                }
            }
        };
        match self {
            KindMut::Q4 { d, m, qs } => {
                d[ob * OCTET + j] = b.d[0];
                m[ob * OCTET + j] = b.m;
                nibbles(qs);
            }
            KindMut::Q5 { d, qh, qs } => {
                d[ob * OCTET + j] = f32_to_f16(b.d[0]);
                let qh = &mut qh[ob * 32 + 4 * j..ob * 32 + 4 * j + 4];
                for (k, four) in b.u.chunks_exact(4).enumerate() {
                    for (bits, u) in qh.iter_mut().zip(four) {
                        *bits |= ((u >> 4) & 1) << k;
                    }
                }
                nibbles(qs);
            }
            KindMut::Q6 { d, qh, qs } => {
                d[ob * 2 * OCTET + j] = b.d[0];
                d[(ob * 2 + 1) * OCTET + j] = b.d[1];
                // Row j's pairs of high bits: byte 4(j % 2) + i of each 8-byte group, at bit
                // 2(j / 2).
                let (at, shift) = (4 * (j % 2), 2 * (j / 2));
                let qh = &mut qh[ob * 64..ob * 64 + 64];
                for (g, four) in b.u.chunks_exact(4).enumerate() {
                    let out = &mut qh[8 * g + at..8 * g + at + 4];
                    for i in 0..4 {
                        out[i] |= ((four[i] >> 4) & 3) << shift;
                    }
                }
                nibbles(qs);
            }
            KindMut::Q8 { d, qs } => {
                d[ob * OCTET + j] = f32_to_f16(b.d[0]);
                let row = &mut qs[ob * 256 + 4 * j..][..228];
                for (g, four) in b.u.chunks_exact(4).enumerate() {
                    let out = &mut row[32 * g..32 * g + 4];
                    for i in 0..4 {
                        out[i] = four[i] as i8;
                    }
                }
            }
        }
    }
}

/// Calls `f` with each 32-value block of one source block of `dtype`.
fn unpack(dtype: GgmlDType, src: &[u8], mut f: impl FnMut(Unpacked)) {
    let half = |at: usize| f16_to_f32(u16::from_le_bytes([src[at], src[at + 1]]));
    match dtype {
        GgmlDType::Q4_0 => {
            let d = half(0);
            let qs = &src[2..18];
            f(Unpacked {
                u: std::array::from_fn(|j| if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 }),
                d: [d, d],
                m: 8.0 * d,
            })
        }
        GgmlDType::Q8_0 => {
            // Signed quants, carried as their bytes.
            let d = half(0);
            f(Unpacked {
                u: std::array::from_fn(|j| src[2 + j]),
                d: [d, d],
                m: 0.0,
            })
        }
        GgmlDType::Q5_0 => {
            let d = half(0);
            let qh = u32::from_le_bytes([src[2], src[3], src[4], src[5]]);
            let qs = &src[6..22];
            f(Unpacked {
                u: std::array::from_fn(|j| {
                    let low = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
                    low | (((qh >> j) & 1) as u8) << 4
                }),
                d: [d, d],
                m: 0.0,
            })
        }
        GgmlDType::Q4K => {
            // d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles: each 64-value
            // chunk is 32 bytes whose low nibbles are its first 32 values, high nibbles the rest.
            let (d, dmin) = (half(0), half(2));
            let scales = &src[4..16];
            let qs = &src[16..144];
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, scales);
                let chunk = &qs[32 * (s / 2)..32 * (s / 2) + 32];
                let shift = 4 * (s % 2);
                f(Unpacked {
                    u: std::array::from_fn(|l| (chunk[l] >> shift) & 0xF),
                    d: [d * sc as f32; 2],
                    m: dmin * m as f32,
                })
            }
        }
        GgmlDType::Q6K => {
            // 128 bytes of low nibbles, 64 of high bit pairs, 16 signed scales (one per 16
            // values), d. Each 128-value half: value l + 32g takes nibble (g >> 1) of
            // ql[l + 32(g & 1)] and bit pair g of qh[l].
            let (ql, qh, sc) = (&src[0..128], &src[128..192], &src[192..208]);
            let d = half(208);
            for n in 0..2 {
                for g in 0..4 {
                    let scale = |h: usize| d * (sc[n * 8 + 2 * g + h] as i8) as f32;
                    f(Unpacked {
                        u: std::array::from_fn(|l| {
                            let low = (ql[n * 64 + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0xF;
                            let high = (qh[n * 32 + l] >> (2 * g)) & 3;
                            low | high << 4
                        }),
                        d: [scale(0), scale(1)],
                        m: 0.0,
                    })
                }
            }
        }
        _ => {}
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// IEEE half to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Single to half precision: exact for a value [`f16_to_f32`] gave (a file's own scale).
fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    #[test]
    fn halves_convert_exactly() {
        for (h, f) in [
            (0x3C00u16, 1.0f32),
            (0xC000, -2.0),
            (0x0001, 5.960_464_5e-8),
            (0x8001, -5.960_464_5e-8),
            (0x7BFF, 65504.0),
            (0x3555, 0.333_251_95),
            (0x0000, 0.0),
        ] {
            assert_eq!(f16_to_f32(h), f, "{h:#06x}");
        }
        assert!(f16_to_f32(0x7C00).is_infinite());
        assert!(f16_to_f32(0x7E00).is_nan());
    }

    /// Every layout dequantizes to exactly what candle dequantizes the source tensor to.
    #[test]
    fn rows_dequantize_like_candle() {
        let (rows, cols) = (11, 512);
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
            .collect();
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).expect("tensor");
        for dtype in CONVERTED {
            let q = QTensor::quantize(&t, dtype).expect("quantizes");
            let reference: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("dequantizes");
            let data = q.data().expect("data");
            let w = Weights::from_ggml(dtype, &data, rows, cols).expect("converts");
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                w.dequantize_row(r, &mut row);
                for (c, (a, b)) in row.iter().zip(&reference[r * cols..]).enumerate() {
                    // Q4 stores d·u − m; the reference computes the same in another order.
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                        "{dtype:?} row {r} col {c}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matches!(
            Weights::from_ggml(GgmlDType::Q5_0, &[0; 22], 1, 16),
            Err(ConvertError::Columns { .. })
        ));
        assert!(matches!(
            Weights::from_ggml(GgmlDType::Q5_0, &[0; 21], 1, 32),
            Err(ConvertError::Size { .. })
        ));
        assert!(matches!(
            Weights::from_ggml(GgmlDType::Q2K, &[], 1, 256),
            Err(ConvertError::Unsupported(_))
        ));
    }
}
