//! Quantized linear layers on our own CPU kernels.
//!
//! candle 0.11 multiplies GGUF weights one dot product at a time, and has no SIMD kernel at
//! all for Q5_0 — the type most of a Q4_K_M file is made of — so its Q5_0 layers ran scalar
//! code at a sixth of llama.cpp's speed. [`Linear`] converts the weights of the types it
//! covers (Q4_0, Q5_0, Q8_0, Q4_K, Q6_K) once, at a file's first load, into layouts made for
//! SIMD ([`formats`]) that later loads map from the weight cache ([`cache`]), drops the
//! file's copy, and multiplies a whole matrix of activations at a time: each block of eight
//! interleaved weight rows is unpacked once and used for a tile of up to 16 activation rows
//! (prefill tokens, or the decode steps of concurrent sequences), and the activations are
//! quantized once per layer input ([`Linear::forward_many`]). Other types (and GPU devices)
//! keep candle's `QMatMul`.
//!
//! The kernel is picked at run time from the CPU's features ([`kernels::Isa`]), so the same
//! binary is fast on any x86-64 with AVX2 and correct everywhere.

mod activations;
mod cache;
mod formats;
mod kernels;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::cell::RefCell;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Storage, Tensor};

use activations::Activations;
pub use cache::{
    CacheOutcome, WeightCache, default_dir as default_weight_cache, forget as forget_cached_weights,
};
use formats::Weights;
pub use kernels::Isa;

/// A weight matrix of `rows` outputs by `cols` inputs, as `y = x·Wᵀ`.
pub struct Linear {
    inner: Inner,
    rows: usize,
    cols: usize,
}

enum Inner {
    /// Converted: our kernels.
    Packed(Weights),
    /// Types and devices our kernels do not cover.
    Candle(QMatMul),
}

thread_local! {
    /// The quantized input of the last layer, reused: no allocation per call once warm.
    static INPUT: RefCell<Activations> = RefCell::new(Activations::default());
}

/// Whether our kernels run weights of this type on this device: on CPUs, every covered type
/// with SIMD, and Q5_0 everywhere (candle's Q5_0 is no faster than our scalar kernel).
fn ours(dtype: GgmlDType, device: &Device) -> bool {
    matches!(device, Device::Cpu)
        && formats::supported(dtype)
        && (Isa::detect() != Isa::Scalar || dtype == GgmlDType::Q5_0)
}

impl Linear {
    /// Takes a GGUF tensor of shape (outputs, inputs), converted if our kernels cover it.
    pub fn new(tensor: QTensor) -> Result<Linear> {
        let (rows, cols) = tensor.shape().dims2()?;
        let dtype = tensor.dtype();
        let inner = if ours(dtype, &tensor.device()) {
            let data = tensor.data()?;
            let weights = Weights::from_ggml(dtype, &data, rows, cols)
                .map_err(|e| candle_core::Error::Msg(format!("{dtype:?} ({rows}×{cols}): {e}")))?;
            Inner::Packed(weights)
        } else {
            Inner::Candle(QMatMul::from_qtensor(tensor)?)
        };
        Ok(Linear { inner, rows, cols })
    }

    /// Reads tensor `name` of a GGUF file. Types our kernels cover come from the weight cache
    /// when it holds them, and are otherwise converted as they are read, a few MiB at a time
    /// (the file's copy of a tensor never sits in memory whole beside the converted one: for
    /// an embedding matrix of 180 MiB that pair was the peak of the model's memory), then
    /// given to the cache.
    pub fn load(
        content: &Content,
        reader: &mut (impl std::io::Read + std::io::Seek),
        name: &str,
        device: &Device,
        cache: &mut WeightCache,
    ) -> Result<Linear> {
        let Some(info) = content.tensor_infos.get(name) else {
            candle_core::bail!("no tensor {name}")
        };
        let (rows, cols) = info.shape.dims2()?;
        if !ours(info.ggml_dtype, device) {
            return Linear::new(content.tensor(reader, name, device)?);
        }
        if let Some(weights) = cache.take(name) {
            return Ok(Linear {
                inner: Inner::Packed(weights),
                rows,
                cols,
            });
        }
        let bad = |e: formats::ConvertError| candle_core::Error::Msg(format!("{name}: {e}"));
        let mut converter = Weights::converter(info.ggml_dtype, rows, cols).map_err(bad)?;
        reader.seek(std::io::SeekFrom::Start(
            content.tensor_data_offset + info.offset,
        ))?;
        const PIECE: usize = 4 << 20;
        let piece = (PIECE / converter.block_bytes()).max(1) * converter.block_bytes();
        let mut buffer = vec![0u8; piece];
        let mut left = converter.source_bytes();
        while left > 0 {
            let n = left.min(piece);
            reader.read_exact(&mut buffer[..n])?;
            converter.feed(&buffer[..n]).map_err(bad)?;
            left -= n;
        }
        let weights = converter.finish().map_err(bad)?;
        cache.keep(name, info.ggml_dtype, &weights);
        Ok(Linear {
            inner: Inner::Packed(weights),
            rows,
            cols,
        })
    }

    /// Whether our kernels run this layer (not candle's).
    pub fn is_packed(&self) -> bool {
        matches!(self.inner, Inner::Packed(_))
    }

    /// `x · Wᵀ` for `x` of shape (…, inputs).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [y] = Linear::forward_many([self], x)?;
        Ok(y)
    }

    /// Several layers on the same input (q, k, v; gate, up): the input is quantized once.
    /// Layers of types our kernels do not cover run on candle's, beside the others (without
    /// AVX2 only Q5_0 is ours, and a file mixes it with other types).
    pub fn forward_many<const N: usize>(layers: [&Linear; N], x: &Tensor) -> Result<[Tensor; N]> {
        if !layers.iter().all(|l| l.is_packed()) && layers.iter().any(|l| l.is_packed()) {
            let mut out = Vec::with_capacity(N);
            for layer in layers {
                let [y] = Linear::forward_many([layer], x)?;
                out.push(y);
            }
            return out
                .try_into()
                .map_err(|_| candle_core::Error::Msg("layer count".into()));
        }
        if !layers.iter().all(|l| l.is_packed()) || !matches!(x.device(), Device::Cpu) {
            let mut out = Vec::with_capacity(N);
            for layer in layers {
                out.push(layer.forward_candle(x)?);
            }
            return out
                .try_into()
                .map_err(|_| candle_core::Error::Msg("layer count".into()));
        }
        let cols = x.dim(candle_core::D::Minus1)?;
        if let Some(bad) = layers.iter().find(|l| l.cols != cols) {
            candle_core::bail!("input of width {cols} for a layer of width {}", bad.cols)
        }
        let lead: Vec<usize> = x.dims()[..x.rank() - 1].to_vec();
        let m = lead.iter().product::<usize>();
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        // Taken from its slot for the call, not borrowed in it: while the matmul waits for
        // the other compute threads, the pool may run another model's step on this thread,
        // and that step takes (or makes) one of its own.
        let mut acts = INPUT.take();
        let result = Linear::forward_packed(layers, &x, m, cols, &lead, &mut acts);
        INPUT.set(acts);
        result
    }

    /// [`Linear::forward_many`] for layers that are all ours, on a CPU input of `m` rows.
    fn forward_packed<const N: usize>(
        layers: [&Linear; N],
        x: &Tensor,
        m: usize,
        cols: usize,
        lead: &[usize],
        acts: &mut Activations,
    ) -> Result<[Tensor; N]> {
        let isa = Isa::detect();
        let (storage, layout) = x.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("a CPU tensor is not in CPU storage")
        };
        let data = &cpu.as_slice::<f32>()?[layout.start_offset()..][..m * cols];
        let weights: Vec<&Weights> = layers
            .iter()
            .map(|layer| match &layer.inner {
                Inner::Packed(w) => w,
                Inner::Candle(_) => unreachable!("all layers are packed"),
            })
            .collect();
        let mut ys: Vec<Vec<f32>> = weights.iter().map(|w| vec![0f32; m * w.rows]).collect();
        // Layers that take the input quantized alike run together (one parallel section); it
        // is quantized again only where the next layers want other scales.
        let mut first = 0;
        while first < N {
            let scales = weights[first].scales;
            let end = (first..N)
                .find(|&i| weights[i].scales != scales)
                .unwrap_or(N);
            acts.quantize(data, m, cols, scales);
            let mut group: Vec<(&Weights, &mut [f32])> = weights[first..end]
                .iter()
                .copied()
                .zip(ys[first..end].iter_mut().map(Vec::as_mut_slice))
                .collect();
            kernels::matmul_many(&mut group, acts, isa);
            first = end;
        }
        let mut out = Vec::with_capacity(N);
        for (layer, y) in layers.iter().zip(ys) {
            let mut shape = lead.to_vec();
            shape.push(layer.rows);
            out.push(Tensor::from_vec(y, shape, &Device::Cpu)?);
        }
        out.try_into()
            .map_err(|_| candle_core::Error::Msg("layer count".into()))
    }

    fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        match &self.inner {
            Inner::Candle(q) => q.forward(x),
            Inner::Packed(w) => {
                // A packed layer given a non-CPU input: cannot happen (packed implies a CPU
                // model), answered with an error rather than a panic.
                candle_core::bail!(
                    "packed {}×{} layer on a {:?} input",
                    w.rows,
                    w.cols,
                    x.device()
                )
            }
        }
    }

    /// The rows `ids` select (token embeddings), shape (…ids, inputs).
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let w = match &self.inner {
            Inner::Candle(q) => return q.embedding(ids),
            Inner::Packed(w) => w,
        };
        let list = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let mut out = vec![0f32; list.len() * w.cols];
        for (id, row) in list.iter().zip(out.chunks_exact_mut(w.cols)) {
            let id = *id as usize;
            if id >= w.rows {
                candle_core::bail!("token id {id} outside the vocabulary of {}", w.rows)
            }
            w.dequantize_row(id, row);
        }
        let mut shape = ids.dims().to_vec();
        shape.push(w.cols);
        Tensor::from_vec(out, shape, &Device::Cpu)
    }
}

/// A deterministic pseudo-random f32 in [-1, 1) (the kernels' and attention's tests).
#[cfg(test)]
pub(super) fn noise(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    fn random(shape: (usize, usize), seed: u64, outliers: bool) -> Tensor {
        let mut s = seed;
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|i| {
                let x = noise(&mut s);
                // A few large values, as real activations have.
                if outliers && i % 97 == 0 { x * 20.0 } else { x }
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    /// A tensor's values, row after row.
    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().and_then(|t| t.to_vec1()).expect("values")
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f32 = b.iter().map(|y| y * y).sum();
        (num / den.max(1e-30)).sqrt()
    }

    /// Every kernel on every covered type, against candle's own quantized matmul on the same
    /// quantized weights and against the exact f32 product of the dequantized weights.
    /// Where candle quantizes the activations as we do (Q8_0 for Q4_0 and Q5_0, Q8_K for the
    /// K-quants) the two agree closely: relative L2 error below 2e-3. For Q8_0 weights candle
    /// quantizes them per 256 values, coarser than ours and llama.cpp's (per 32), so the two
    /// differ by candle's own error: there, and for all types, our error against the exact f32
    /// product may not exceed 1.2× candle's (+1e-3).
    #[test]
    fn kernels_match_candle_on_random_data() {
        let shapes = [
            (1, 256, 64),
            (3, 512, 37),
            (8, 256, 48),
            (13, 768, 33),
            (33, 256, 20),
            // Past the size a matmul is shared out at: decode-like (few activation rows,
            // split by weight rows) and prompt-like (split by activation rows, with a part
            // that is not whole tiles).
            (3, 512, 1000),
            (150, 256, 40),
        ];
        for dtype in formats::CONVERTED {
            for (i, &(m, k, n)) in shapes.iter().enumerate() {
                let w = random((n, k), 1 + i as u64, false);
                let x = random((m, k), 100 + i as u64, true);
                let q = QTensor::quantize(&w, dtype).expect("quantizes");
                let reference: Vec<f32> =
                    QMatMul::from_qtensor(QTensor::quantize(&w, dtype).expect("quantizes"))
                        .and_then(|mm| mm.forward(&x))
                        .and_then(|y| y.flatten_all())
                        .and_then(|y| y.to_vec1())
                        .expect("candle matmul");
                let exact: Vec<f32> = q
                    .dequantize(&Device::Cpu)
                    .and_then(|wd| x.matmul(&wd.t()?))
                    .and_then(|y| y.flatten_all())
                    .and_then(|y| y.to_vec1())
                    .expect("f32 matmul");
                let data = q.data().expect("data");
                let weights = Weights::from_ggml(dtype, &data, n, k).expect("converts");
                let mut acts = Activations::default();
                let xs = values(&x);
                acts.quantize(&xs, m, k, weights.scales);
                for isa in Isa::available() {
                    let mut y = vec![0f32; m * n];
                    kernels::matmul(&weights, &acts, &mut y, isa);
                    if matches!(dtype, GgmlDType::Q4_0 | GgmlDType::Q5_0) {
                        let err = rel_err(&y, &reference);
                        assert!(
                            err < 2e-3,
                            "{dtype:?} {isa:?} m={m} k={k} n={n}: relative error {err} vs candle"
                        );
                    }
                    // Against exact f32, both quantize the activations: ours may not be
                    // worse than candle's by more than a hair.
                    let err = rel_err(&y, &exact);
                    let candle_err = rel_err(&reference, &exact);
                    assert!(
                        err < 1.2 * candle_err + 1e-3,
                        "{dtype:?} {isa:?} m={m} k={k} n={n}: relative error {err} vs f32, \
                         candle's {candle_err}"
                    );
                }
            }
        }
    }

    /// Several layers in one parallel section (a decode step's q, k, v: one large, two
    /// small, widths not multiples of the parts) give what each layer gives alone on one
    /// thread, bit for bit, and so does a prompt.
    #[test]
    fn layers_shared_out_together_equal_each_alone() {
        let k = 512;
        let shapes = [600, 72, 40];
        let weights: Vec<Weights> = shapes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let w = random((n, k), 7 + i as u64, false);
                let q = QTensor::quantize(&w, GgmlDType::Q5_0).expect("quantizes");
                Weights::from_ggml(GgmlDType::Q5_0, &q.data().expect("data"), n, k)
                    .expect("converts")
            })
            .collect();
        let (one_thread, two_threads) = (pool(1), pool(2));
        for m in [1, 4, 200] {
            let x = values(&random((m, k), 99, true));
            let mut acts = Activations::default();
            acts.quantize(&x, m, k, weights[0].scales);
            let alone: Vec<Vec<f32>> = weights
                .iter()
                .map(|w| {
                    let mut y = vec![0f32; m * w.rows];
                    one_thread.install(|| kernels::matmul(w, &acts, &mut y, Isa::detect()));
                    y
                })
                .collect();
            let mut together: Vec<Vec<f32>> =
                weights.iter().map(|w| vec![f32::NAN; m * w.rows]).collect();
            let mut layers: Vec<(&Weights, &mut [f32])> = weights
                .iter()
                .zip(together.iter_mut().map(Vec::as_mut_slice))
                .collect();
            two_threads.install(|| kernels::matmul_many(&mut layers, &acts, Isa::detect()));
            assert_eq!(together, alone, "m={m}");
        }
    }

    /// The SIMD kernels compute the same integer sums as the reference: nearly bit-equal.
    #[test]
    fn simd_kernels_agree_with_the_reference_kernel() {
        // One row (decoding), and row counts that leave partial tiles in both tiers.
        let (k, n) = (512, 44);
        for dtype in [
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let q = QTensor::quantize(&random((n, k), 7, false), dtype).expect("quantizes");
            let weights =
                Weights::from_ggml(dtype, &q.data().expect("data"), n, k).expect("converts");
            for m in [1, 11, 19] {
                let xs = values(&random((m, k), 8, true));
                let mut acts = Activations::default();
                acts.quantize(&xs, m, k, weights.scales);
                let mut reference = vec![0f32; m * n];
                kernels::matmul(&weights, &acts, &mut reference, Isa::Scalar);
                for isa in Isa::available() {
                    let mut y = vec![0f32; m * n];
                    kernels::matmul(&weights, &acts, &mut y, isa);
                    let err = rel_err(&y, &reference);
                    assert!(err < 1e-5, "{dtype:?} {isa:?} m={m}: {err}");
                }
            }
        }
    }

    /// Conversion fed in pieces that end anywhere (mid-row, mid-octet) gives the weights
    /// conversion of the whole tensor gives: whole octets convert on all threads, the rest
    /// block by block.
    #[test]
    fn converting_in_pieces_equals_converting_whole() {
        // A tensor with no inputs is empty, not a division by zero.
        assert!(Weights::from_ggml(GgmlDType::Q8_0, &[], 8, 0).is_ok());
        let (rows, cols) = (44, 512);
        for dtype in formats::CONVERTED {
            let q = QTensor::quantize(&random((rows, cols), 9, false), dtype).expect("q");
            let data = q.data().expect("data");
            let whole = Weights::from_ggml(dtype, &data, rows, cols).expect("converts");
            // 7 blocks: never a whole octet; 301: octets with parts of others around them.
            for blocks in [7, 301] {
                let mut converter = Weights::converter(dtype, rows, cols).expect("converter");
                for piece in data.chunks(converter.block_bytes() * blocks) {
                    converter.feed(piece).expect("feeds");
                }
                let pieces = converter.finish().expect("finishes");
                let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
                for row in 0..rows {
                    whole.dequantize_row(row, &mut a);
                    pieces.dequantize_row(row, &mut b);
                    assert_eq!(a, b, "{dtype:?} pieces of {blocks} blocks, row {row}");
                }
            }
        }
    }

    /// A tensor read from a GGUF file piece by piece (this one spans two 4 MiB pieces) is the
    /// same layer as the tensor read whole.
    #[test]
    fn layers_load_from_a_file_in_pieces() {
        use candle_core::quantized::gguf_file;
        let (rows, cols) = (2056, 2048);
        let w = QTensor::quantize(&random((rows, cols), 5, false), GgmlDType::Q8_0).expect("q");
        let path = std::env::temp_dir().join(format!("plugboard-load-{}.gguf", std::process::id()));
        let mut file = std::fs::File::create(&path).expect("creates");
        gguf_file::write(&mut file, &[], &[("w", &w)]).expect("writes");
        drop(file);
        let mut reader = std::fs::File::open(&path).expect("opens");
        let content = Content::read(&mut reader).expect("reads");
        let loaded = Linear::load(
            &content,
            &mut reader,
            "w",
            &Device::Cpu,
            &mut WeightCache::off(),
        )
        .expect("loads");
        let whole = Linear::new(w).expect("whole");
        let x = random((3, cols), 6, true);
        let outputs = |l: &Linear| values(&l.forward(&x).expect("forward"));
        assert_eq!(outputs(&loaded), outputs(&whole));
        assert!(
            Linear::load(
                &content,
                &mut reader,
                "missing",
                &Device::Cpu,
                &mut WeightCache::off()
            )
            .is_err()
        );
        std::fs::remove_file(&path).expect("removes");
    }

    #[test]
    fn linear_layers_forward_and_embed_like_candle() {
        let w = random((40, 256), 3, false);
        let x = random((2, 256), 4, true)
            .reshape((1, 2, 256))
            .expect("reshape");
        let q = QTensor::quantize(&w, GgmlDType::Q5_0).expect("quantizes");
        let reference = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q5_0).expect("q"))
            .expect("qmatmul");
        let linear = Linear::new(q).expect("linear");
        let y = linear.forward(&x).expect("forward");
        assert_eq!(y.dims(), &[1, 2, 40]);
        let [a, b] = Linear::forward_many([&linear, &linear], &x).expect("forward_many");
        assert_eq!(values(&a), values(&y));
        assert_eq!(values(&b), values(&y));
        let expected = values(&reference.forward(&x).expect("candle"));
        assert!(rel_err(&values(&y), &expected) < 2e-3);
        let ids = Tensor::new(&[[3u32, 39, 0]], &Device::Cpu).expect("ids");
        let e = linear.embedding(&ids).expect("embedding");
        assert_eq!(e.dims(), &[1, 3, 256]);
        assert_eq!(
            values(&e),
            values(&reference.embedding(&ids).expect("candle embedding"))
        );
        let bad = Tensor::new(&[40u32], &Device::Cpu).expect("ids");
        assert!(
            linear.embedding(&bad).is_err(),
            "an id past the vocabulary is an error"
        );
        // A type our kernels do not cover (Q2_K: candle's) beside one they do, on one input
        // (without AVX2 only Q5_0 is ours, so real files mix the two).
        let other = Linear::new(QTensor::quantize(&w, GgmlDType::Q2K).expect("q2k")).expect("q2k");
        assert!(!other.is_packed());
        let [mixed, theirs] = Linear::forward_many([&linear, &other], &x).expect("mixed");
        assert_eq!(values(&mixed), values(&y));
        assert_eq!(
            values(&theirs),
            values(&other.forward(&x).expect("candle's"))
        );
    }
}

/// Kernel speed on this machine, for tuning: `cargo test --release -p plugboard --lib
/// quant_speed -- --ignored --nocapture`.
#[cfg(test)]
mod speed {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use rayon::prelude::*;

    /// CPU seconds this thread has run (user + system), from /proc: other processes on a
    /// shared machine steal wall time, not this.
    fn thread_cpu() -> f64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 (11 and 12 after the name), in 1/100 s.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Seconds per call of `f`, over at least a second: of this thread's CPU on one thread
    /// (other processes steal wall time, not this), of wall time on several (the other
    /// threads' work is not this thread's CPU).
    fn per_call<F: FnMut()>(mut f: F) -> f64 {
        let wall = std::time::Instant::now();
        let clock = || {
            if rayon::current_num_threads() == 1 {
                thread_cpu()
            } else {
                wall.elapsed().as_secs_f64()
            }
        };
        f();
        let start = clock();
        let mut calls = 0;
        while clock() - start < 1.0 {
            f();
            calls += 1;
        }
        (clock() - start) / calls as f64
    }

    #[test]
    #[ignore]
    fn quant_speed() {
        // One thread, like `--threads 1`, where its CPU time is the whole cost; then every
        // core, where the threads share the memory bus (decode) and split the work (prompts).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let counts = if cores > 1 { vec![1, cores] } else { vec![1] };
        let pools: Vec<rayon::ThreadPool> = counts
            .into_iter()
            .map(|threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a thread pool")
            })
            .collect();
        // Streaming read bandwidth, for scale: a decode step can go no faster than its weights
        // stream in.
        let big = vec![1u64; 64 << 20];
        for pool in &pools {
            let secs = pool.install(|| {
                per_call(|| {
                    std::hint::black_box(
                        big.par_chunks(1 << 16)
                            .map(|c| c.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
                            .sum::<u64>(),
                    );
                })
            });
            eprintln!(
                "{} thread(s): read bandwidth {:.1} GB/s",
                pool.current_num_threads(),
                (big.len() * 8) as f64 / secs / 1e9
            );
        }
        drop(big);
        // The test models' shapes (Qwen 0.5B: gate and up Q5_0, the output Q8_0, down Q6_K or
        // Q4_K), repeated down the rows to about 160 MB, five times the last-level cache:
        // each call streams its weights from memory, as a decode step does (the model's
        // 400 MB pass through the cache once per token).
        let cases = [
            (GgmlDType::Q5_0, 4864, 896),
            (GgmlDType::Q8_0, 32768, 896),
            (GgmlDType::Q6K, 896, 4864),
            (GgmlDType::Q4K, 896, 4864),
        ];
        for (dtype, n, k) in cases {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let w = Tensor::from_vec(w, (n, k), &Device::Cpu).expect("w");
            let data = QTensor::quantize(&w, dtype)
                .expect("q")
                .data()
                .expect("data")
                .into_owned();
            // GGML rows are whole blocks, one after another: the bytes repeated are the
            // matrix's rows repeated.
            let copies = (160usize << 20).div_ceil(data.len());
            let n = n * copies;
            let weights = Weights::from_ggml(dtype, &data.repeat(copies), n, k).expect("converts");
            // One stream, a few streams decoding together, a prompt.
            for m in [1usize, 2, 4, 8, 256] {
                let x: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 31) % 201) as f32 / 100.0 - 1.0)
                    .collect();
                let mut acts = Activations::default();
                acts.quantize(&x, m, k, weights.scales);
                let mut y = vec![0f32; m * n];
                for isa in Isa::available().into_iter().skip(1) {
                    for pool in &pools {
                        let secs = pool
                            .install(|| per_call(|| kernels::matmul(&weights, &acts, &mut y, isa)));
                        eprintln!(
                            "{dtype:?} {isa:?} {} thread(s) m={m:3} k={k} n={n}: {:8.3} ms, {:6.1} GMAC/s, {:5.1} GB/s weights",
                            pool.current_num_threads(),
                            secs * 1e3,
                            (m * n * k) as f64 / secs / 1e9,
                            weights.bytes() as f64 / secs / 1e9
                        );
                    }
                }
            }
        }
    }
}
