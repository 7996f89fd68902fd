//! `plugboard bench --model PATH`: load time, prefill and decode speed, cold and warm time to
//! first token, and peak memory, for one GGUF file on this machine; with `--streams N`, also
//! the aggregate decode speed of N generations at once (continuous batching).
//!
//! Speeds are given twice: per second of wall time, and per second of this process's CPU
//! time. On a machine shared with other work the second is the steadier figure (other
//! processes take wall time, not CPU time); `scripts/bench_vs_llamacpp.py` reports both for
//! llama.cpp too.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::WeightCacheArgs;

use plugboard::engine::{
    self, Engine, EngineOptions, GenEvent, GenerateRequest, SamplingParams, Usage,
};

#[derive(Args)]
pub struct BenchArgs {
    /// The GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Inference threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to generate for the decode figure.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure the aggregate decode speed of this many concurrent generations.
    #[arg(long, default_value_t = 0)]
    streams: usize,
    #[command(flatten)]
    weight_cache: WeightCacheArgs,
}

/// CPU seconds this process has used (user + system, all threads), from /proc (Linux).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised name: utime and stime are the 12th and 13th, in ticks
    // of 1/100 s (USER_HZ).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Peak resident memory of this process, in MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// What `--streams` measures.
struct Streams {
    /// Tokens per second, all streams together, wall and CPU time.
    wall: f64,
    cpu: Option<f64>,
    /// Time to first token of a new request while the streams decode, and alone.
    probe_ttft_ms: f64,
    probe_alone_ttft_ms: f64,
}

/// Runs `streams` generations at once, each a different `prompt_len`-token prompt and
/// `tokens` tokens; returns the tokens per second, all streams together, from the moment every
/// stream has its first token (all prompts done) to the last token, in wall and CPU time.
fn run_streams(
    engine: &Engine,
    streams: usize,
    prompt_len: usize,
    tokens: usize,
    request: impl Fn(Vec<u32>, usize) -> GenerateRequest,
) -> anyhow::Result<(f64, Option<f64>)> {
    let base = prompt(engine, prompt_len + streams)?;
    let mut receivers = Vec::with_capacity(streams);
    for i in 0..streams {
        let ids = base[i..i + prompt_len].to_vec();
        receivers.push(engine.generate(request(ids, tokens))?);
    }
    // Every stream's token times, and the CPU clock at each.
    let handles: Vec<_> = receivers
        .into_iter()
        .map(|mut events| {
            std::thread::spawn(move || -> anyhow::Result<Vec<(Instant, Option<f64>)>> {
                let mut times = Vec::new();
                while let Some(event) = events.blocking_recv() {
                    match event {
                        GenEvent::Text { .. } => times.push((Instant::now(), cpu_seconds())),
                        GenEvent::Done { .. } => return Ok(times),
                        GenEvent::Error(e) => bail!("generation failed: {e}"),
                    }
                }
                bail!("the generation ended without a result")
            })
        })
        .collect();
    let mut all = Vec::with_capacity(streams);
    for handle in handles {
        all.push(
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a stream thread panicked"))??,
        );
    }
    let first = all.iter().filter_map(|t| t.first()).max_by_key(|t| t.0);
    let last = all.iter().filter_map(|t| t.last()).max_by_key(|t| t.0);
    let (Some(&(t0, cpu0)), Some(&(t1, cpu1))) = (first, last) else {
        bail!("a stream produced no tokens")
    };
    let after = all.iter().flatten().filter(|(t, _)| *t > t0).count() as f64;
    let wall = after / (t1 - t0).as_secs_f64();
    let cpu = cpu0.zip(cpu1).map(|(a, b)| after / (b - a));
    Ok((wall, cpu))
}

/// The time to first token of `probe` sent while `streams` generations decode (a request
/// arriving at a busy model: its prompt is read in chunks between their steps). The streams
/// are cancelled once it has its token.
fn probe_under_streams(
    engine: &Engine,
    streams: usize,
    tokens: usize,
    request: impl Fn(Vec<u32>, usize) -> GenerateRequest,
    probe: GenerateRequest,
) -> anyhow::Result<f64> {
    let base = prompt(engine, 16 + streams)?;
    let mut receivers = Vec::with_capacity(streams);
    for i in 0..streams {
        receivers.push(engine.generate(request(base[i..i + 16].to_vec(), tokens))?);
    }
    // Every stream decoding: each has its first token.
    for events in &mut receivers {
        match events.blocking_recv() {
            Some(GenEvent::Text { .. }) => {}
            Some(GenEvent::Error(e)) => bail!("generation failed: {e}"),
            Some(GenEvent::Done { .. }) | None => bail!("a stream ended before the probe"),
        }
    }
    let (ttft, _) = run(engine, probe)?;
    // Dropping the receivers cancels the streams.
    drop(receivers);
    Ok(ttft)
}

/// The context the bench's requests need: the prompt (or the probe's), what is decoded
/// after it, and room for the 16-token prompts of the decode runs.
fn context(args: &BenchArgs) -> usize {
    args.prompt_tokens.max(PROBE_TOKENS) + args.decode_tokens + 16
}

/// Tokens decoded after the whole prompt (the decode-at-context figure).
const CONTEXT_DECODE: usize = 32;

/// The probe of `--streams`: a 128-token prompt no other request shares a prefix with.
const PROBE_TOKENS: usize = 128;

/// Runs one generation to its end; returns the time to the first token and the usage.
fn run(engine: &Engine, request: GenerateRequest) -> anyhow::Result<(f64, Usage)> {
    let start = Instant::now();
    let mut events = engine.generate(request)?;
    let mut first = None;
    while let Some(event) = events.blocking_recv() {
        match event {
            GenEvent::Text { .. } => {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
            }
            GenEvent::Done { usage, .. } => return Ok((first.unwrap_or(usage.prefill_ms), usage)),
            GenEvent::Error(e) => bail!("generation failed: {e}"),
        }
    }
    bail!("the generation ended without a result")
}

/// A prompt of exactly `n` tokens: ordinary prose, repeated.
fn prompt(engine: &Engine, n: usize) -> anyhow::Result<Vec<u32>> {
    let text = "The quick brown fox jumps over the lazy dog while the committee reviews the quarterly \
                report on renewable energy, noting that solar capacity grew faster than expected. ";
    let once = engine.tokenizer().encode(text)?;
    if once.is_empty() {
        bail!("the tokenizer produced no tokens");
    }
    Ok(once.iter().copied().cycle().take(n).collect())
}

pub fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    engine::set_threads(args.threads);
    let options = EngineOptions {
        device: args.device.clone(),
        max_context: context(&args),
        weight_cache: args.weight_cache.dir(),
        // Room for the streams and the probe beside them: a request past the batch waits for
        // a slot, which is not what the probe measures.
        max_batch: EngineOptions::default().max_batch.max(args.streams + 1),
        ..EngineOptions::default()
    };
    let load_start = Instant::now();
    let engine = Engine::load(&args.model, &options)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let load_s = load_start.elapsed().as_secs_f64();
    let ids = prompt(&engine, args.prompt_tokens)?;
    let request = |prompt: Vec<u32>, max_tokens: usize| GenerateRequest {
        prompt,
        sampling: SamplingParams::default(),
        max_tokens,
        stop: vec![],
        logprobs: None,
        extra_end_ids: vec![],
        ignore_end: true,
        constraint: None,
    };
    // Ready: loaded and one token through the model (what a user waits for after a load;
    // llama.cpp maps the file and pages the weights in on its first pass).
    run(&engine, request(ids[..1].to_vec(), 1))?;
    let ready_s = load_start.elapsed().as_secs_f64();
    // Cold: nothing cached. Warm: the same prompt again, its prefix from the cache.
    let cpu = cpu_seconds();
    let (cold_ttft, cold) = run(&engine, request(ids.clone(), 1))?;
    let prefill_cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
    // The same prompt again, then a few tokens: decode after the whole prompt (attention
    // over `prompt_tokens` positions, where the short-prompt decode below has 16).
    let after_prompt = CONTEXT_DECODE.min(args.decode_tokens).max(2);
    let (warm_ttft, warm) = run(&engine, request(ids.clone(), after_prompt))?;
    let context_decode_tps =
        warm.completion_tokens.saturating_sub(1) as f64 / (warm.decode_ms / 1e3);
    // Decode: a short fresh prompt, then many tokens.
    let short = prompt(&engine, 16)?.into_iter().rev().collect();
    let cpu = cpu_seconds();
    let (_, decode) = run(&engine, request(short, args.decode_tokens))?;
    let decode_cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
    let prefill_tps = args.prompt_tokens as f64 / (cold.prefill_ms / 1e3);
    let decode_tps = decode.completion_tokens.saturating_sub(1) as f64 / (decode.decode_ms / 1e3);
    // CPU time covers the whole request: the 16-token prompt too, a small share.
    let prefill_cpu_tps = prefill_cpu.map(|s| args.prompt_tokens as f64 / s);
    let decode_cpu_tps = decode_cpu.map(|s| decode.completion_tokens as f64 / s);
    let streams = if args.streams > 1 {
        // The probe's prompts start where no other prompt does (the streams' start at 0..N).
        let probe = |offset: usize| -> anyhow::Result<Vec<u32>> {
            Ok(prompt(&engine, PROBE_TOKENS + offset)?[offset..].to_vec())
        };
        let (alone, _) = run(&engine, request(probe(args.streams + 2)?, 1))?;
        let (wall, cpu) = run_streams(&engine, args.streams, 16, args.decode_tokens, request)?;
        // Streams that may run to the end of the context: they outlast the probe.
        let busy = probe_under_streams(
            &engine,
            args.streams,
            context(&args) - 17,
            request,
            request(probe(args.streams + 4)?, 1),
        )?;
        Some(Streams {
            wall,
            cpu,
            probe_ttft_ms: busy,
            probe_alone_ttft_ms: alone,
        })
    } else {
        None
    };
    let rss = peak_rss_mib();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model, "threads": args.threads, "load_s": load_s,
                "ready_s": ready_s, "prompt_tokens": args.prompt_tokens, "prefill_tokens_per_s": prefill_tps,
                "decode_tokens": decode.completion_tokens, "decode_tokens_per_s": decode_tps,
                "cold_ttft_ms": cold_ttft, "warm_ttft_ms": warm_ttft, "peak_rss_mib": rss,
                "context_decode_tokens_per_s": context_decode_tps,
                "prefill_cpu_tokens_per_s": prefill_cpu_tps,
                "decode_cpu_tokens_per_s": decode_cpu_tps,
                "streams": args.streams,
                "streams_decode_tokens_per_s": streams.as_ref().map(|s| s.wall),
                "streams_decode_cpu_tokens_per_s": streams.as_ref().and_then(|s| s.cpu),
                "streams_probe_ttft_ms": streams.as_ref().map(|s| s.probe_ttft_ms),
                "probe_alone_ttft_ms": streams.as_ref().map(|s| s.probe_alone_ttft_ms),
                "kernels": format!("{:?}", engine::Isa::detect()),
                "weight_cache": engine.info().weight_cache,
            })
        );
    } else {
        let info = engine.info();
        println!(
            "model        {} ({}, {} MiB file)",
            info.name,
            info.architecture,
            info.file_bytes >> 20
        );
        println!(
            "threads      {}",
            if args.threads == 0 {
                "all".to_string()
            } else {
                args.threads.to_string()
            }
        );
        println!(
            "load         {load_s:.2} s (weight cache: {})",
            match engine.info().weight_cache {
                engine::CacheOutcome::Off => "off",
                engine::CacheOutcome::Mapped => "mapped",
                engine::CacheOutcome::Written => "written",
            }
        );
        println!(
            "prefill      {prefill_tps:.1} tok/s ({} tokens)",
            args.prompt_tokens
        );
        println!(
            "decode       {decode_tps:.1} tok/s ({} tokens); {context_decode_tps:.1} tok/s after the {}-token prompt",
            decode.completion_tokens, args.prompt_tokens
        );
        if let (Some(p), Some(d)) = (prefill_cpu_tps, decode_cpu_tps) {
            println!("per CPU s    prefill {p:.1} tok/s, decode {d:.1} tok/s");
        }
        if let Some(streams) = &streams {
            println!(
                "{} streams    {:.1} tok/s together ({:.2}x one stream){}",
                args.streams,
                streams.wall,
                streams.wall / decode_tps,
                streams
                    .cpu
                    .map(|c| format!(", {c:.1} per CPU s"))
                    .unwrap_or_default()
            );
            println!(
                "TTFT, {PROBE_TOKENS} tokens, while they decode: {:.0} ms ({:.2}x alone)",
                streams.probe_ttft_ms,
                streams.probe_ttft_ms / streams.probe_alone_ttft_ms
            );
        }
        println!("kernels      {:?}", engine::Isa::detect());
        println!("TTFT cold    {cold_ttft:.0} ms");
        println!(
            "TTFT warm    {warm_ttft:.0} ms (prefix cache; {:.2}x cold)",
            warm_ttft / cold_ttft
        );
        if let Some(rss) = rss {
            println!("peak RSS     {rss:.0} MiB");
        }
    }
    Ok(ExitCode::SUCCESS)
}
