//! A model's worker thread: continuous batching of its sequences, prefill in chunks, the
//! prefix cache, sampling and stop strings, and each token sent as it comes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::constraint::Constraint;
use super::text::{Detokenizer, StopMatcher};
use super::{
    EngineError, FinishReason, GenEvent, GeneratedToken, GrammarSlot, Job, KvCache, Model, Sampler,
    StopCause, TokenLogprob, Tokenizer, Usage, grammar_factory,
};

/// The thread that owns a model and runs its requests, several at a time.
///
/// Continuous batching: each step runs one prefill chunk (of the oldest sequence still
/// reading its prompt) and then one token for every other sequence, all of them in a single
/// forward pass, so the weights are read once per step for every sequence. New requests join
/// between steps; finished and cancelled ones leave. Each sequence has its own KV cache, and
/// a sequence computes exactly what it would alone: the kernels treat each row on its own.
pub(super) struct Worker {
    pub(super) grammar: Arc<GrammarSlot>,
    pub(super) generated: Arc<AtomicU64>,
    pub(super) model: Model,
    pub(super) tokenizer: Arc<Tokenizer>,
    pub(super) end_ids: Vec<u32>,
    /// Recently used sequences: the tokens a cache holds, and the cache. Most recent last.
    pub(super) cache: Vec<(Vec<u32>, KvCache)>,
    pub(super) cached_sequences: usize,
    pub(super) max_batch: usize,
    /// The compute threads each step runs on (see `shared_compute_pool`).
    pub(super) pool: Arc<rayon::ThreadPool>,
}

const PREFILL_CHUNK: usize = 256;

/// A generation in progress.
struct Sequence {
    job: Job,
    /// The tokens whose keys and values `cache` holds.
    tokens: Vec<u32>,
    cache: KvCache,
    usage: Usage,
    started: Instant,
    decode_start: Instant,
    sampler: Sampler,
    detok: Detokenizer,
    stops: StopMatcher,
    generated: Vec<u32>,
    /// The next token's logits, once the whole prompt has run.
    logits: Option<Vec<f32>>,
    constraint: Option<Constraint>,
}

/// What a sequence does next.
enum Next {
    /// Run this token.
    Token(u32),
    /// It has ended (its events are sent).
    Done,
}

impl Worker {
    pub(super) fn run(mut self, queue: std::sync::mpsc::Receiver<Job>) {
        let mut active: Vec<Sequence> = Vec::new();
        loop {
            // Wait for work only when there is none; otherwise take what has arrived.
            if active.is_empty() {
                match queue.recv() {
                    Ok(job) => self.admit(job, &mut active),
                    Err(_) => return,
                }
            }
            while active.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(job) => self.admit(job, &mut active),
                    Err(_) => break,
                }
            }
            let pool = Arc::clone(&self.pool);
            if let Err(e) = pool.install(|| self.step(&mut active)) {
                // A failed forward pass leaves the caches of the whole batch unknown.
                for seq in active.drain(..) {
                    let _ = seq.job.events.send(GenEvent::Error(e.to_string()));
                }
            }
        }
    }

    fn admit(&mut self, job: Job, active: &mut Vec<Sequence>) {
        if job.events.is_closed() {
            return;
        }
        let (tokens, cache) = self.take_cache(&job.request.prompt);
        let usage = Usage {
            prompt_tokens: job.request.prompt.len(),
            cached_tokens: tokens.len(),
            queue_ms: job.queued_at.elapsed().as_secs_f64() * 1e3,
            ..Usage::default()
        };
        let constraint = job.request.constraint.clone().map(|request| {
            match grammar_factory(&self.grammar, &self.tokenizer, &self.end_ids) {
                Ok(factory) => Constraint::new(&factory, request),
                Err(e) => Constraint::failed(e),
            }
        });
        let now = Instant::now();
        active.push(Sequence {
            constraint,
            sampler: Sampler::new(job.request.sampling.clone()),
            stops: StopMatcher::new(&job.request.stop),
            detok: Detokenizer::default(),
            generated: Vec::new(),
            logits: None,
            tokens,
            cache,
            usage,
            started: now,
            decode_start: now,
            job,
        });
    }

    /// One step: a prefill chunk, then one token for each sequence that is ready for one.
    fn step(&mut self, active: &mut Vec<Sequence>) -> Result<(), EngineError> {
        // Hung-up clients leave first; what they computed stays in the prefix cache.
        let mut i = 0;
        while i < active.len() {
            if active[i].job.events.is_closed() {
                let seq = active.remove(i);
                self.put_cache(seq.tokens, seq.cache);
            } else {
                i += 1;
            }
        }
        // The prompt, but for its last token, runs in fixed chunks, one chunk per step so that
        // the others keep streaming. The last prompt token always runs on its own, as a decode
        // step: then a prompt computes the same way whether or not its prefix came from the
        // cache, and the same seed gives the same output either way.
        if let Some(seq) = active
            .iter_mut()
            .find(|s| s.tokens.len() + 1 < s.job.request.prompt.len())
        {
            let prompt = &seq.job.request.prompt;
            let end = (seq.tokens.len() + PREFILL_CHUNK).min(prompt.len() - 1);
            let chunk = &prompt[seq.tokens.len()..end];
            self.model.forward(chunk, &mut seq.cache)?;
            seq.tokens.extend_from_slice(chunk);
        }
        // Sample from last step's logits; gather the tokens to run.
        let mut batch: Vec<(usize, u32)> = Vec::new();
        let mut finished = Vec::new();
        for (i, seq) in active.iter_mut().enumerate() {
            let prompt_len = seq.job.request.prompt.len();
            let next = match seq.logits.take() {
                Some(mut logits) => self.advance(seq, &mut logits),
                None if seq.tokens.len() + 1 == prompt_len => {
                    Next::Token(seq.job.request.prompt[prompt_len - 1])
                }
                None => continue,
            };
            match next {
                Next::Token(id) => batch.push((i, id)),
                Next::Done => finished.push(i),
            }
        }
        if !batch.is_empty() {
            let ids: Vec<u32> = batch.iter().map(|(_, id)| *id).collect();
            let logits = {
                let mut caches: Vec<&mut KvCache> = Vec::with_capacity(batch.len());
                let mut rest = active.iter_mut().enumerate();
                for (i, _) in &batch {
                    // `batch` is in `active` order: walk forward to each member.
                    if let Some((_, seq)) = rest.by_ref().find(|(j, _)| j == i) {
                        caches.push(&mut seq.cache);
                    }
                }
                self.model.forward_batch(&ids, &mut caches)?
            };
            for (row, (i, id)) in batch.iter().enumerate() {
                let seq = &mut active[*i];
                seq.tokens.push(*id);
                seq.logits = Some(logits.get(row)?.to_vec1()?);
                if seq.tokens.len() == seq.job.request.prompt.len() {
                    seq.usage.prefill_ms = seq.started.elapsed().as_secs_f64() * 1e3;
                    seq.decode_start = Instant::now();
                }
            }
        }
        for i in finished.into_iter().rev() {
            let seq = active.remove(i);
            self.put_cache(seq.tokens, seq.cache);
        }
        Ok(())
    }

    /// Samples the next token of `seq` from `logits` and streams it; says whether the
    /// sequence goes on.
    fn advance(&self, seq: &mut Sequence, logits: &mut [f32]) -> Next {
        let request = &seq.job.request;
        let mut reason = FinishReason::Length;
        let mut stop = None;
        let mut end = true;
        if seq.generated.len() < request.max_tokens {
            seq.sampler.penalise(logits, &seq.generated);
            let (id, logprobs) = match &mut seq.constraint {
                Some(constraint) => constraint.sample(&mut seq.sampler, logits, request.logprobs),
                None => seq.sampler.pick(logits, request.logprobs),
            };
            if !request.ignore_end
                && (self.end_ids.contains(&id) || request.extra_end_ids.contains(&id))
            {
                reason = FinishReason::Stop;
                // As vLLM says it: the model's own end of generation is no `stop_reason`;
                // an end token the request added (an adapter's end of turn) is.
                if !self.end_ids.contains(&id) {
                    stop = Some(StopCause::Token(id));
                }
            } else {
                if let Some(constraint) = &mut seq.constraint {
                    constraint.accept(id, &self.tokenizer.token_bytes(id));
                }
                seq.generated.push(id);
                seq.usage.completion_tokens += 1;
                self.generated.fetch_add(1, Ordering::Relaxed);
                let piece = seq.detok.push(id, &self.tokenizer);
                let matched = seq.stops.push(&piece);
                let token = request.logprobs.map(|_| self.describe(id, &logprobs));
                let sent = seq.job.events.send(GenEvent::Text {
                    text: matched.text,
                    token,
                });
                if sent.is_err() {
                    // Cancelled: nothing more to say.
                    return Next::Done;
                }
                if let Some(text) = matched.stop {
                    seq.usage.decode_ms = seq.decode_start.elapsed().as_secs_f64() * 1e3;
                    seq.usage.constraint = seq.constraint.as_ref().map(|c| c.report.clone());
                    let _ = seq.job.events.send(GenEvent::Done {
                        reason: FinishReason::Stop,
                        usage: seq.usage.clone(),
                        stop: Some(StopCause::Text(text)),
                    });
                    return Next::Done;
                }
                end = seq.generated.len() >= request.max_tokens
                    || seq.tokens.len() + 1 >= self.model.max_len();
                if !end {
                    return Next::Token(id);
                }
            }
        }
        debug_assert!(end);
        // Release what was held back for a stop string that never completed, and an
        // incomplete last character.
        let matched = seq.stops.push(&seq.detok.finish(&self.tokenizer));
        let mut rest = matched.text;
        if let Some(text) = matched.stop {
            reason = FinishReason::Stop;
            stop = Some(StopCause::Text(text));
        } else {
            rest.push_str(&seq.stops.finish());
        }
        if !rest.is_empty() {
            let _ = seq.job.events.send(GenEvent::Text {
                text: rest,
                token: None,
            });
        }
        seq.usage.decode_ms = seq.decode_start.elapsed().as_secs_f64() * 1e3;
        seq.usage.constraint = seq.constraint.as_ref().map(|c| c.report.clone());
        let _ = seq.job.events.send(GenEvent::Done {
            reason,
            usage: seq.usage.clone(),
            stop,
        });
        Next::Done
    }

    /// A copy of the cached sequence sharing the longest prefix with `prompt`, cut to that
    /// prefix (only the shared positions are copied). The entry stays cached: requests running
    /// at the same time with the same system prompt all start from it.
    fn take_cache(&mut self, prompt: &[u32]) -> (Vec<u32>, KvCache) {
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
            return (Vec::new(), KvCache::default());
        };
        // At least one prompt token must run to produce logits.
        let keep = shared.min(prompt.len() - 1);
        // Most recently used last.
        let entry = self.cache.remove(i);
        let copied = entry.1.prefix(keep);
        let tokens = entry.0[..keep.min(entry.0.len())].to_vec();
        self.cache.push(entry);
        match copied {
            Ok(cache) if cache.len() == tokens.len() => (tokens, cache),
            // Out of memory (a GPU's): the prompt runs from the start.
            _ => (Vec::new(), KvCache::default()),
        }
    }

    fn put_cache(&mut self, tokens: Vec<u32>, cache: KvCache) {
        if tokens.is_empty() {
            return;
        }
        // An entry this one extends says nothing more: drop it.
        self.cache
            .retain(|(held, _)| !(held.len() <= tokens.len() && tokens.starts_with(held)));
        if self.cache.iter().any(|(held, _)| held.starts_with(&tokens)) {
            return;
        }
        self.cache.push((tokens, cache));
        while self.cache.len() > self.cached_sequences {
            self.cache.remove(0);
        }
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
