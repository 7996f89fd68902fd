//! Local inference on candle: GGUF models, tokenizers from the file itself, sampling, streaming
//! text, and a prefix cache.
//!
//! The engine knows nothing of HTTP, adapters or wasm: it takes token ids and sampling settings
//! and streams text. Each loaded model has one worker thread that owns the weights and the KV
//! caches; requests queue for it (a bounded queue: a full one is refused, not buffered without
//! end). A request whose prompt starts like a cached sequence — a tool-calling conversation
//! repeats its long system prompt every turn — reuses the cached keys and values for that
//! prefix and only computes the rest. Dropping the event receiver cancels the generation at the
//! next token.

pub mod convert;
mod gguf;
pub mod model;
mod sampler;
mod spm;
pub mod text;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use candle_core::Device;
use tokio::sync::mpsc;

pub use gguf::GgufFile;
pub use model::{Arch, KvCache, Model};
pub use sampler::{Sampler, SamplingParams, TokenLogprob};
pub use tokenizer::{Tokenizer, quote_control_tokens};

use text::{Detokenizer, StopMatcher};

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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: "cpu".into(),
            max_context: 8192,
            queue_limit: 64,
            cached_sequences: 4,
        }
    }
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
#[derive(Clone, Debug)]
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
    },
    Error(String),
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
}

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
        let model = Model::load(&gguf, &device, options.max_context)?;
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
        let info = ModelInfo {
            name: gguf.string("general.name").unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            architecture: gguf.architecture()?,
            context_length: model.config.context_length,
            max_context: model.max_len(),
            chat_template: gguf.string("tokenizer.chat_template"),
            bos_token: token_text("tokenizer.ggml.bos_token_id"),
            eos_token: token_text("tokenizer.ggml.eos_token_id"),
            end_of_generation: end_ids
                .iter()
                .filter_map(|id| tokenizer.token(*id))
                .map(str::to_string)
                .collect(),
            vocab_size: tokenizer.vocab_size(),
            file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            path: path.to_path_buf(),
        };
        let add_bos = gguf.bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
        drop(gguf);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(options.queue_limit);
        let generated = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            generated: Arc::clone(&generated),
            model,
            tokenizer: Arc::clone(&tokenizer),
            end_ids: end_ids.clone(),
            cache: Vec::new(),
            cached_sequences: options.cached_sequences.max(1),
        };
        std::thread::Builder::new()
            .name(format!("plugboard-engine-{}", info.name))
            .spawn(move || worker.run(queue))
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
        }))
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

/// The thread that owns a model and runs its requests one after another.
struct Worker {
    generated: Arc<AtomicU64>,
    model: Model,
    tokenizer: Arc<Tokenizer>,
    end_ids: Vec<u32>,
    /// Recently used sequences: the tokens a cache holds, and the cache. Most recent last.
    cache: Vec<(Vec<u32>, KvCache)>,
    cached_sequences: usize,
}

const PREFILL_CHUNK: usize = 256;

impl Worker {
    fn run(mut self, queue: std::sync::mpsc::Receiver<Job>) {
        while let Ok(job) = queue.recv() {
            if job.events.is_closed() {
                continue;
            }
            if let Err(e) = self.generate(&job) {
                let _ = job.events.send(GenEvent::Error(e.to_string()));
            }
        }
    }

    /// Takes the cached sequence sharing the longest prefix with `prompt`, cut to that prefix.
    fn take_cache(&mut self, prompt: &[u32]) -> Result<(Vec<u32>, KvCache), EngineError> {
        let best = self
            .cache
            .iter()
            .enumerate()
            .map(|(i, (tokens, _))| {
                (
                    i,
                    tokens
                        .iter()
                        .zip(prompt)
                        .take_while(|(a, b)| a == b)
                        .count(),
                )
            })
            .max_by_key(|(_, shared)| *shared);
        let Some((i, shared)) = best.filter(|(_, shared)| *shared > 0) else {
            return Ok((Vec::new(), KvCache::default()));
        };
        let (mut tokens, mut cache) = self.cache.remove(i);
        // At least one prompt token must run to produce logits.
        let keep = shared.min(prompt.len() - 1);
        cache.truncate(keep)?;
        tokens.truncate(keep);
        Ok((tokens, cache))
    }

    fn put_cache(&mut self, tokens: Vec<u32>, cache: KvCache) {
        self.cache.push((tokens, cache));
        while self.cache.len() > self.cached_sequences {
            self.cache.remove(0);
        }
    }

    fn generate(&mut self, job: &Job) -> Result<(), EngineError> {
        let request = &job.request;
        let mut usage = Usage {
            prompt_tokens: request.prompt.len(),
            queue_ms: job.queued_at.elapsed().as_secs_f64() * 1e3,
            ..Usage::default()
        };
        let started = Instant::now();
        let (mut tokens, mut cache) = self.take_cache(&request.prompt)?;
        usage.cached_tokens = tokens.len();
        // The last prompt token always runs on its own, after the rest in fixed chunks: then a
        // prompt computes the same way whether or not its prefix came from the cache, and the
        // same seed gives the same output either way.
        let last = request.prompt.len() - 1;
        for chunk in request.prompt[tokens.len()..last].chunks(PREFILL_CHUNK) {
            if job.events.is_closed() {
                self.put_cache(tokens, cache);
                return Ok(());
            }
            self.model.forward(chunk, &mut cache)?;
            tokens.extend_from_slice(chunk);
        }
        let mut logits: Vec<f32> = self
            .model
            .forward(&request.prompt[last..], &mut cache)?
            .to_vec1()?;
        tokens.push(request.prompt[last]);
        usage.prefill_ms = started.elapsed().as_secs_f64() * 1e3;
        let decode_start = Instant::now();
        let mut sampler = Sampler::new(request.sampling.clone());
        let mut detok = Detokenizer::default();
        let mut stops = StopMatcher::new(&request.stop);
        let mut generated: Vec<u32> = Vec::new();
        let limit = self.model.max_len();
        let mut reason = FinishReason::Length;
        let mut cancelled = false;
        let mut stopped_by_string = false;
        while generated.len() < request.max_tokens {
            let (id, logprobs) = sampler.sample(&mut logits, &generated, request.logprobs);
            if !request.ignore_end
                && (self.end_ids.contains(&id) || request.extra_end_ids.contains(&id))
            {
                reason = FinishReason::Stop;
                break;
            }
            generated.push(id);
            usage.completion_tokens += 1;
            self.generated.fetch_add(1, Ordering::Relaxed);
            let piece = detok.push(id, &self.tokenizer);
            let matched = stops.push(&piece);
            let token = request.logprobs.map(|_| self.describe(id, &logprobs));
            if job
                .events
                .send(GenEvent::Text {
                    text: matched.text,
                    token,
                })
                .is_err()
            {
                cancelled = true;
                break;
            }
            if matched.stop.is_some() {
                reason = FinishReason::Stop;
                stopped_by_string = true;
                break;
            }
            if tokens.len() + 1 >= limit {
                break;
            }
            logits = self.model.forward(&[id], &mut cache)?.to_vec1()?;
            tokens.push(id);
        }
        if !cancelled && !stopped_by_string {
            // Release what was held back for a stop string that never completed, and an
            // incomplete last character.
            let matched = stops.push(&detok.finish(&self.tokenizer));
            let mut rest = matched.text;
            if matched.stop.is_some() {
                reason = FinishReason::Stop;
            } else {
                rest.push_str(&stops.finish());
            }
            if !rest.is_empty() {
                let _ = job.events.send(GenEvent::Text {
                    text: rest,
                    token: None,
                });
            }
        }
        usage.decode_ms = decode_start.elapsed().as_secs_f64() * 1e3;
        self.put_cache(tokens, cache);
        if !cancelled {
            let _ = job.events.send(GenEvent::Done { reason, usage });
        }
        Ok(())
    }

    fn describe(&self, id: u32, logprobs: &[TokenLogprob]) -> GeneratedToken {
        let text = |id: u32| self.tokenizer.decode(&[id]).unwrap_or_default();
        GeneratedToken {
            id,
            text: text(id),
            logprob: logprobs.first().map_or(0.0, |l| l.logprob),
            top: logprobs
                .iter()
                .skip(1)
                .map(|l| (text(l.id), l.logprob))
                .collect(),
        }
    }
}
