//! `plugboard bench --model PATH`: load time, prefill and decode speed, cold and warm time to
//! first token, and peak memory, for one GGUF file on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

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
}

/// Peak resident memory of this process, in MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

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
        max_context: args.prompt_tokens + args.decode_tokens + 16,
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
    };
    // Cold: nothing cached. Warm: the same prompt again, its prefix from the cache.
    let (cold_ttft, cold) = run(&engine, request(ids.clone(), 1))?;
    let (warm_ttft, _) = run(&engine, request(ids.clone(), 1))?;
    // Decode: a short fresh prompt, then many tokens.
    let short = prompt(&engine, 16)?.into_iter().rev().collect();
    let (_, decode) = run(&engine, request(short, args.decode_tokens))?;
    let prefill_tps = args.prompt_tokens as f64 / (cold.prefill_ms / 1e3);
    let decode_tps = decode.completion_tokens.saturating_sub(1) as f64 / (decode.decode_ms / 1e3);
    let rss = peak_rss_mib();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": args.model, "threads": args.threads, "load_s": load_s,
                "prompt_tokens": args.prompt_tokens, "prefill_tokens_per_s": prefill_tps,
                "decode_tokens": decode.completion_tokens, "decode_tokens_per_s": decode_tps,
                "cold_ttft_ms": cold_ttft, "warm_ttft_ms": warm_ttft, "peak_rss_mib": rss,
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
        println!("load         {load_s:.2} s");
        println!(
            "prefill      {prefill_tps:.1} tok/s ({} tokens)",
            args.prompt_tokens
        );
        println!(
            "decode       {decode_tps:.1} tok/s ({} tokens)",
            decode.completion_tokens
        );
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
