//! Local inference on candle: GGUF models, tokenizers from the file itself, sampling, streaming
//! text, and a prefix cache.
//!
//! The engine knows nothing of HTTP, adapters or wasm: it takes token ids and sampling settings
//! and streams text. Each loaded model has one worker thread that owns the weights and the KV
//! caches and generates for several requests at once, one batched forward pass per token
//! (continuous batching); further requests queue for it (a bounded queue: a full one is
//! refused, not buffered without end). A request whose prompt starts like a cached sequence — a tool-calling conversation
//! repeats its long system prompt every turn — reuses the cached keys and values for that
//! prefix and only computes the rest. Dropping the event receiver cancels the generation at the
//! next token.
//!
//! # Adding an architecture
//!
//! - `engine/arch.rs`: a row in the table — its `general.architecture` name, the checkpoint
//!   `model_type`s that convert to it, and its traits (GELU, interleaved rope, embedding
//!   scale, sliding window). The loader, the converter and the "supported: …" error read it.
//! - `engine/config.rs`: any metadata key of its own that `Config::read` must read;
//!   `engine/model.rs`: a layer shape the loader does not know yet (tensor names are GGUF's,
//!   and fused or optional tensors are found in the file);
//! - `engine/tokenizer/gpt2.rs`: its `tokenizer.ggml.pre` name, when its BPE pre-tokenizer is
//!   a new one (an unknown name is refused, naming it);
//! - `engine.rs`: `END_TEXTS`, when its end-of-turn text is a new one;
//! - tests: a tiny random model of it in `tests/support/tiny.rs`, checked against llama.cpp on
//!   the same file in `tests/all/llamacpp.rs`.

mod arch;
mod attention;
mod config;
mod constraint;
pub mod convert;
mod gguf;
mod kv_cache;
mod model;
mod quant;
mod sampler;
mod spm;
mod text;
mod tokenizer;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use candle_core::Device;
use tokio::sync::mpsc;

pub use arch::{Arch, Traits};
pub use config::Config;
pub use constraint::{
    Activation, Constraint, ConstraintReport, ConstraintRequest, DropReason, GrammarFactory,
    Trigger, vocabulary_bytes,
};
pub use gguf::GgufFile;
pub use kv_cache::KvCache;
pub use model::Model;
pub use quant::{CacheOutcome, Isa, default_weight_cache, forget_cached_weights};
pub use sampler::{Sampler, SamplingParams, TokenLogprob};
pub use tokenizer::{Tokenizer, quote_control_tokens};

use worker::Worker;

fn grammar_factory(
    slot: &GrammarSlot,
    tokenizer: &Tokenizer,
    end_ids: &[u32],
) -> Result<Arc<GrammarFactory>, String> {
    slot.get_or_init(|| {
        let started = Instant::now();
        let factory = GrammarFactory::new(tokenizer, tokenizer.vocab_size(), end_ids)?;
        tracing::info!(
            tokens = tokenizer.vocab_size(),
            seconds = started.elapsed().as_secs_f64(),
            "grammar factory built"
        );
        Ok(Arc::new(factory))
    })
    .clone()
}

/// The engine thread's name: the model's name, from its header (which may hold anything: a
/// NUL would make the thread fail to start), cut to what `top` shows.
fn thread_name(model: &str) -> String {
    let clean: String = model.chars().filter(|c| !c.is_control()).take(32).collect();
    format!("plugboard-engine-{clean}")
}

/// A candle error's message, without the backtrace candle attaches when `RUST_BACKTRACE` is
/// set: it is not for API clients, and printing it symbolises the whole binary (megabytes,
/// each time a bad file is refused).
pub(crate) fn candle_message(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

/// Why the engine could not do something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}: unsupported {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Compute(String),
    #[error("the prompt has {prompt} tokens; the context holds {context}")]
    ContextOverflow { prompt: usize, context: usize },
    #[error("the model's queue is full ({0} requests waiting)")]
    Busy(usize),
    #[error("the model's worker has stopped")]
    Stopped,
    #[error("device {0}: {1}")]
    Device(String, String),
}

/// Where to run and how much.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// `cpu`, `cuda:N` or `metal`.
    pub device: String,
    /// Longest sequence (prompt + output); the model's own context length caps it.
    pub max_context: usize,
    /// Requests allowed to wait for the worker.
    pub queue_limit: usize,
    /// Sequences whose KV cache is kept for prefix reuse.
    pub cached_sequences: usize,
    /// Sequences generated at the same time (continuous batching); more wait in the queue.
    pub max_batch: usize,
    /// Threads this model's inference uses (0: the process's pool, `--threads`).
    pub threads: usize,
    /// Where converted weights are cached between loads (`None`: converted every load).
    pub weight_cache: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: "cpu".into(),
            max_context: 8192,
            queue_limit: 64,
            cached_sequences: 4,
            max_batch: 8,
            threads: 0,
            weight_cache: default_weight_cache(),
        }
    }
}

/// What a model file is, read from its header without loading it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileInfo {
    /// `general.name`, or the file name.
    pub name: String,
    pub architecture: String,
    pub context_length: usize,
    /// Weights, counted from the tensors' shapes.
    pub parameters: u64,
    pub file_bytes: u64,
    /// The file's quantisation (`general.file_type`, as llama.cpp names it).
    pub quantization: Option<String>,
    pub chat_template: Option<String>,
}

/// Reads a GGUF file's header: architecture, sizes, quantisation, chat template.
pub fn describe(path: &Path) -> Result<FileInfo, EngineError> {
    FileInfo::of(&GgufFile::open(path)?, path)
}

impl FileInfo {
    fn of(gguf: &GgufFile, path: &Path) -> Result<FileInfo, EngineError> {
        let architecture = gguf.architecture()?;
        Ok(FileInfo {
            name: gguf.string("general.name").unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            context_length: gguf
                .u32(&format!("{architecture}.context_length"))
                .unwrap_or(0) as usize,
            architecture,
            parameters: gguf
                .content
                .tensor_infos
                .values()
                .map(|t| t.shape.elem_count() as u64)
                .sum(),
            file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            quantization: gguf
                .u32("general.file_type")
                .and_then(file_type_name)
                .map(str::to_string),
            chat_template: gguf.string("tokenizer.chat_template"),
        })
    }
}

/// llama.cpp's names of `general.file_type` values.
fn file_type_name(file_type: u32) -> Option<&'static str> {
    const NAMES: [&str; 33] = [
        "F32", "F16", "Q4_0", "Q4_1", "", "", "", "Q8_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S",
        "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ2_XXS", "IQ2_XS",
        "Q2_K_S", "IQ3_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ3_M", "IQ2_S", "IQ2_M",
        "IQ4_XS", "IQ1_M", "BF16",
    ];
    NAMES
        .get(file_type as usize)
        .copied()
        .filter(|n| !n.is_empty())
}

/// A parameter count as Ollama shows it: `494.03M`, `7.6B`.
pub fn parameter_size(parameters: u64) -> String {
    let p = parameters as f64;
    if p >= 1e9 {
        format!("{:.1}B", p / 1e9)
    } else if p >= 1e6 {
        format!("{:.2}M", p / 1e6)
    } else {
        format!("{:.0}K", p / 1e3)
    }
}

/// What a model takes in memory once loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The weights: the file's size (quantised weights stay as they are in the file).
    pub weights: u64,
    /// Keys and values of `max_batch` sequences of the whole context.
    pub kv_cache: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache
    }
}

/// What a GGUF file will take when loaded with these options, read from its header alone.
pub fn estimate_memory(
    path: &Path,
    options: &EngineOptions,
) -> Result<MemoryEstimate, EngineError> {
    let weights = std::fs::metadata(path)
        .map_err(|e| EngineError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .len();
    if convert::is_checkpoint(path) {
        return Ok(MemoryEstimate {
            weights,
            kv_cache: 0,
        });
    }
    let config = Config::of(&GgufFile::open(path)?)?;
    let context = options.max_context.min(config.context_length) as u64;
    Ok(MemoryEstimate {
        weights,
        kv_cache: config
            .kv_bytes_per_token()
            .saturating_mul(context)
            .saturating_mul(options.max_batch.max(1) as u64),
    })
}

/// A pool of `threads` compute threads, named `{name}-{i}` (`plugboard-compute` for a
/// model's own, `plugboard-shared` for the shared pool).
fn compute_pool(threads: usize, name: &'static str) -> Result<rayon::ThreadPool, EngineError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| EngineError::Compute(format!("cannot start {threads} threads: {e}")))
}

/// The compute threads the models share that were given no threads of their own: as many
/// as [`set_threads`] set (all cores by default).
///
/// A model's worker runs each step of its forward passes inside the pool
/// ([`rayon::ThreadPool::install`]) rather than calling into it from outside: the step is
/// handed to the pool once, and the thread that runs it takes its share of every matmul
/// beside the others. Called from outside, each of the hundred or so parallel operations of
/// a decode step was a hand-over to the pool and back (a sleep and a wake-up each), and
/// the calling thread's core sat idle through them; at two threads decode then gained 1.19×
/// from the second core, where llama.cpp gains 1.6×.
fn shared_compute_pool() -> Result<Arc<rayon::ThreadPool>, EngineError> {
    static SHARED: OnceLock<Arc<rayon::ThreadPool>> = OnceLock::new();
    if let Some(pool) = SHARED.get() {
        return Ok(Arc::clone(pool));
    }
    // The global pool's size: what set_threads (or RAYON_NUM_THREADS) asked for.
    let pool = Arc::new(compute_pool(
        rayon::current_num_threads(),
        "plugboard-shared",
    )?);
    Ok(Arc::clone(SHARED.get_or_init(|| pool)))
}

/// Sets the number of threads inference uses. Call once, before any model loads.
pub fn set_threads(threads: usize) {
    if threads == 0 {
        return;
    }
    // candle sizes its matmul parallelism from rayon's pool and RAYON_NUM_THREADS.
    // SAFETY: called at start-up, before other threads read the environment.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

fn parse_device(name: &str) -> Result<Device, EngineError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "metal" => {
            Device::new_metal(0).map_err(|e| EngineError::Device(name.into(), e.to_string()))
        }
        other => match other.strip_prefix("cuda") {
            Some(rest) => {
                let ordinal = rest
                    .strip_prefix(':')
                    .unwrap_or("0")
                    .parse::<usize>()
                    .map_err(|_| EngineError::Device(name.into(), "expected cuda:N".into()))?;
                Device::new_cuda(ordinal)
                    .map_err(|e| EngineError::Device(name.into(), e.to_string()))
            }
            None => Err(EngineError::Device(
                name.into(),
                "use cpu, cuda:N or metal".into(),
            )),
        },
    }
}

/// What the file says about the model.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// `general.name`, or the file name.
    pub name: String,
    pub architecture: String,
    pub context_length: usize,
    /// The longest sequence this engine will run (options and rope tables).
    pub max_context: usize,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Tokens that end generation.
    pub end_of_generation: Vec<String>,
    pub vocab_size: usize,
    pub file_bytes: u64,
    /// Weights in the file, counted from its tensors' shapes.
    pub parameters: u64,
    /// Whether this load's converted weights came from the weight cache.
    pub weight_cache: CacheOutcome,
}

/// Token texts that end generation in the families we know, beside the file's EOS id
/// (llama.cpp stops on all of them too: the Qwen test model emits `<|endoftext|>` as well as
/// `<|im_end|>`).
const END_TEXTS: [&str; 12] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<eos>",
    "</s>",
    "<|EOT|>",
    "<｜end▁of▁sentence｜>",
    "<|end_of_text|>",
    "<|return|>",
];

/// One request to generate.
#[derive(Clone, Debug, Default)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Report log-probabilities: `Some(n)` gives the chosen token's and the top `n`.
    pub logprobs: Option<usize>,
    /// Further token ids that end generation (e.g. an adapter's end-of-turn markers).
    pub extra_end_ids: Vec<u32>,
    /// Generate `max_tokens` whatever the model says (benchmarks).
    pub ignore_end: bool,
    /// A grammar the output must follow (see [`ConstraintRequest`]).
    pub constraint: Option<ConstraintRequest>,
}

/// A generated token, for log-probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
    /// The most likely alternatives, as (text, log-probability).
    pub top: Vec<(String, f32)>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
}

/// Token counts and timings of one generation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub queue_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// What the request's constraint did, when it had one.
    pub constraint: Option<ConstraintReport>,
}

/// What a generation streams.
#[derive(Clone, Debug, PartialEq)]
pub enum GenEvent {
    /// Text to append (may be empty while a possible stop string is held back), and the token
    /// that produced it when log-probabilities were asked for.
    Text {
        text: String,
        token: Option<GeneratedToken>,
    },
    Done {
        reason: FinishReason,
        usage: Usage,
        /// What stopped it, when it stopped (vLLM's `stop_reason`).
        stop: Option<StopCause>,
    },
    Error(String),
}

/// What ended a generation that stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// One of the request's stop strings (not in the output).
    Text(String),
    /// An end token the request added, by id (the model's own end of generation is no
    /// stop cause, as in vLLM's `stop_reason`).
    Token(u32),
}

struct Job {
    request: GenerateRequest,
    events: mpsc::UnboundedSender<GenEvent>,
    queued_at: Instant,
}

/// A loaded model with its worker. Cheap to share (`Arc`).
pub struct Engine {
    info: ModelInfo,
    tokenizer: Arc<Tokenizer>,
    end_ids: Vec<u32>,
    add_bos: bool,
    jobs: std::sync::mpsc::SyncSender<Job>,
    queue_limit: usize,
    /// Tokens generated since the model loaded, all requests together.
    generated: Arc<AtomicU64>,
    grammar: Arc<GrammarSlot>,
}

/// Gives memory freed by an unloaded model back to the system. glibc keeps what is freed in
/// the arena of the thread that allocated it, and loads run on whichever blocking thread is
/// free: under load, each load and unload of a model left most of its weights behind in
/// another arena, and the soak test (`scripts/soak.py`) saw RSS climb by about 170 MB a cycle.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's own arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at one per core, the first thing the process does (before any
/// thread starts). glibc's default, eight per core, lets each of the server's many threads
/// (HTTP, blocking, engine workers) keep its own arena of freed chunks; with models loaded and
/// unloaded under traffic those arenas fragment, and the soak test (`scripts/soak.py`, 16
/// clients, 60 s, 2 cores) saw RSS climb 12 % after warm-up where one arena per core held it
/// to 3 %, at the same inference speed (`plugboard bench`, medians of five alternating runs).
/// A `MALLOC_ARENA_MAX` in the environment is the user's choice and is left alone.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        // SAFETY: mallopt only changes a malloc tunable; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX));
        }
    }
}

/// The model's grammar factory, built the first time a request asks for a constraint.
type GrammarSlot = OnceLock<Result<Arc<GrammarFactory>, String>>;

impl Engine {
    /// Loads a GGUF model and starts its worker thread.
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Arc<Engine>, EngineError> {
        // A Hugging Face checkpoint runs as the GGUF it converts to (once, cached).
        let converted;
        let path = if convert::is_checkpoint(path) {
            let cache = directories::ProjectDirs::from("", "", "plugboard")
                .map(|d| d.cache_dir().join("converted"))
                .unwrap_or_else(|| std::env::temp_dir().join("plugboard-converted"));
            converted = convert::ensure_gguf(path, &cache)?;
            converted.as_path()
        } else {
            path
        };
        let device = parse_device(&options.device)?;
        let gguf = GgufFile::open(path)?;
        let tokenizer = Arc::new(Tokenizer::load(&gguf)?);
        let model = Model::load(
            &gguf,
            &device,
            options.max_context,
            options.weight_cache.as_deref(),
        )?;
        let token_text = |key: &str| {
            gguf.u32(key)
                .and_then(|id| tokenizer.token(id))
                .map(str::to_string)
        };
        let mut end_ids: Vec<u32> = [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ]
        .iter()
        .filter_map(|k| gguf.u32(k))
        .collect();
        end_ids.extend(END_TEXTS.iter().filter_map(|t| tokenizer.token_id(t)));
        end_ids.sort_unstable();
        end_ids.dedup();
        let file = FileInfo::of(&gguf, path)?;
        let info = ModelInfo {
            name: file.name,
            architecture: file.architecture,
            context_length: model.config.context_length,
            max_context: model.max_len(),
            chat_template: file.chat_template,
            bos_token: token_text("tokenizer.ggml.bos_token_id"),
            eos_token: token_text("tokenizer.ggml.eos_token_id"),
            end_of_generation: end_ids
                .iter()
                .filter_map(|id| tokenizer.token(*id))
                .map(str::to_string)
                .collect(),
            vocab_size: tokenizer.vocab_size(),
            file_bytes: file.file_bytes,
            parameters: file.parameters,
            path: path.to_path_buf(),
            weight_cache: model.weight_cache,
        };
        let add_bos = gguf.bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
        drop(gguf);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(options.queue_limit);
        let generated = Arc::new(AtomicU64::new(0));
        let grammar = Arc::new(GrammarSlot::new());
        // A model given its own threads runs in a pool of that size; the others share one.
        let pool = match options.threads {
            0 => shared_compute_pool()?,
            n => Arc::new(compute_pool(n, "plugboard-compute")?),
        };
        let worker = Worker {
            pool,
            grammar: Arc::clone(&grammar),
            generated: Arc::clone(&generated),
            model,
            tokenizer: Arc::clone(&tokenizer),
            end_ids: end_ids.clone(),
            cache: Vec::new(),
            cached_sequences: options.cached_sequences.max(1),
            max_batch: options.max_batch.max(1),
        };
        std::thread::Builder::new()
            .name(thread_name(&info.name))
            .spawn(move || {
                worker.run(queue);
                // The engine is gone and its weights are freed.
                release_freed_memory();
            })
            .map_err(|e| EngineError::Compute(format!("cannot start the engine thread: {e}")))?;
        tracing::info!(model = %info.name, arch = %info.architecture, context = info.max_context, "model loaded");
        Ok(Arc::new(Engine {
            info,
            tokenizer,
            end_ids,
            add_bos,
            jobs,
            queue_limit: options.queue_limit,
            generated,
            grammar,
        }))
    }

    /// The model's grammar factory (its vocabulary as a token trie and llguidance's lexer
    /// slices), built on first use: 0.4–0.5 s and 55 MiB for a 150k-token vocabulary
    /// (`cargo bench --bench grammar`).
    pub fn grammar_factory(&self) -> Result<Arc<GrammarFactory>, String> {
        grammar_factory(&self.grammar, &self.tokenizer, &self.end_ids)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Tokens generated since the model loaded (a cancelled generation stops adding to it).
    pub fn generated_tokens(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }

    /// Whether prompts start with the BOS token (the file's `add_bos_token`).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Token ids that end generation.
    pub fn end_ids(&self) -> &[u32] {
        &self.end_ids
    }

    /// Queues a generation; events stream on the returned receiver. Dropping the receiver
    /// cancels it.
    pub fn generate(
        &self,
        request: GenerateRequest,
    ) -> Result<mpsc::UnboundedReceiver<GenEvent>, EngineError> {
        if request.prompt.is_empty() {
            return Err(EngineError::Tokenize("the prompt is empty".into()));
        }
        if request.prompt.len() >= self.info.max_context {
            return Err(EngineError::ContextOverflow {
                prompt: request.prompt.len(),
                context: self.info.max_context,
            });
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let job = Job {
            request,
            events,
            queued_at: Instant::now(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(std::sync::mpsc::TrySendError::Full(_)) => Err(EngineError::Busy(self.queue_limit)),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candle_error_reads_without_its_backtrace() {
        let error = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("tensor needs 9 bytes".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(candle_message(&error), "tensor needs 9 bytes");
    }
}
