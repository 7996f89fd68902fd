//! Constrained decoding costs on the Qwen test model's vocabulary (151,936 tokens): building the
//! per-model grammar factory, the adapter's call plus grammar compilation for 3 and for 20
//! tools, a mask per token while a grammar is active, the trigger watch while it is not, and
//! decode speed with and without a grammar in the same run. A benchmark, not a test: it prints
//! figures.
//!
//! `cargo bench -p plugboard-tests --bench grammar`

use std::time::{Duration, Instant};

use plugboard::adapter::{GrammarRequest, Tool, ToolChoice};
use plugboard::call_constraint::tool_constraint;
use plugboard::engine::Constraint;
use plugboard::engine::{
    Activation, ConstraintRequest, Engine, EngineOptions, GenEvent, GenerateRequest, GgufFile,
    GrammarFactory, Sampler, SamplingParams, Tokenizer, Trigger,
};
use plugboard::plugins::PluginHost;
use plugboard_tests::{models, runtime, tool};
use serde_json::json;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / (1 << 20) as f64)
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * p) as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Twenty tools with nested objects, enums, bounds and arrays.
fn twenty_tools() -> Vec<Tool> {
    (0..20)
        .map(|i| {
            tool(
                &format!("tool_{i}"),
                json!({"type": "object", "properties": {
                    "id": {"type": "integer", "minimum": 0, "maximum": 1000},
                    "mode": {"type": "string", "enum": ["a", "b", "c"]},
                    "filter": {"type": "object", "properties": {
                        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
                        "since": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}},
                        "required": ["tags"], "additionalProperties": false},
                    "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                    "required": ["id", "mode", "filter"]}),
            )
        })
        .collect()
}

fn three_tools() -> Vec<Tool> {
    vec![
        tool(
            "get_weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}),
        ),
        tool(
            "get_time",
            json!({"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}),
        ),
        tool(
            "search",
            json!({"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 50}}, "required": ["query"]}),
        ),
    ]
}

fn main() {
    let Some(path) = models::qwen() else { return };
    let tokenizer = Tokenizer::load(&GgufFile::open(&path).expect("opens")).expect("loads");
    let ends: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_id(t))
        .collect();

    let before = rss_mib();
    let started = Instant::now();
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &ends).expect("builds");
    println!(
        "grammar factory: built in {} ({} tokens), {:+.0} MiB resident",
        ms(started.elapsed()),
        tokenizer.vocab_size(),
        rss_mib() - before
    );

    // The adapter call and the grammar compilation, as a request pays them.
    let host = PluginHost::new(runtime(), true, None);
    let hermes = host.get("hermes").expect("built in");
    // The adapter's call and the engine's constraint request, for `tool_choice: required`.
    let required = |tools: &[Tool], parallel: bool| {
        let grammar = hermes
            .session()
            .expect("session")
            .call_grammar(&GrammarRequest {
                tools: tools.to_vec(),
                tool_choice: ToolChoice::Required,
                parallel_tool_calls: parallel,
                ..GrammarRequest::default()
            })
            .expect("call")
            .expect("a grammar");
        tool_constraint(grammar, tools, parallel, false)
    };
    for (label, tools) in [
        ("3 tools", three_tools()),
        ("20 nested tools", twenty_tools()),
    ] {
        let mut times: Vec<Duration> = (0..21)
            .map(|_| {
                let start = Instant::now();
                let constraint = Constraint::new(&factory, required(&tools, true));
                assert!(constraint.report.dropped.is_none());
                start.elapsed()
            })
            .collect();
        println!(
            "adapter call + grammar compile, {label}: p50 {}",
            ms(percentile(&mut times, 0.5))
        );
    }

    // A mask per token: walks that the grammar corrects at every step (random logits).
    let request = required(&three_tools(), false);
    let mut steps = Vec::new();
    let (mut masks, mut mask_ms) = (0, 0.0);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20 {
        let mut constraint = Constraint::new(&factory, request.clone());
        let mut sampler = Sampler::new(SamplingParams::default());
        let mut logits = vec![0.0f32; tokenizer.vocab_size()];
        for _ in 0..60 {
            for l in logits.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *l = (seed >> 40) as f32 / (1u64 << 24) as f32;
            }
            let masks = constraint.report.masks;
            let start = Instant::now();
            let (id, _) = constraint.sample(&mut sampler, &logits, None);
            let took = start.elapsed();
            if constraint.report.masks > masks {
                steps.push(took);
            }
            if ends.contains(&id) {
                break;
            }
            constraint.accept(id, &tokenizer.token_bytes(id));
        }
        masks += constraint.report.masks;
        mask_ms += constraint.report.mask_ms;
    }
    println!(
        "masked step (pick, mask, pick again; 151,936 tokens): p50 {}, p99 {} over {} steps; the mask alone {:.3} ms on average",
        ms(percentile(&mut steps, 0.5)),
        ms(percentile(&mut steps, 0.99)),
        steps.len(),
        mask_ms / masks.max(1) as f64
    );

    // Awaiting a trigger: the watch over prose tokens.
    let prose = tokenizer
        .encode("The weather in Paris is mild in spring, with showers now and then, and the evenings are long and bright. ".repeat(20).as_str())
        .expect("encodes");
    let auto = ConstraintRequest {
        grammar: request.grammar.clone(),
        activation: Activation::OnTrigger {
            triggers: vec![Trigger {
                text: "<tool_call>".into(),
                at_start: false,
            }],
            reasoning: Some(("<think>".into(), "</think>".into())),
            starts_in_reasoning: false,
        },
        repeat: true,
    };
    let mut constraint = Constraint::new(&factory, auto);
    let bytes: Vec<Vec<u8>> = prose.iter().map(|id| tokenizer.token_bytes(*id)).collect();
    let start = Instant::now();
    for (id, b) in prose.iter().zip(&bytes) {
        constraint.accept(*id, b);
    }
    println!(
        "awaiting a trigger: {:.2} µs per token over {} tokens",
        start.elapsed().as_secs_f64() * 1e6 / prose.len() as f64,
        prose.len()
    );

    // Decode speed with and without a grammar, same run: a JSON answer of a fixed shape
    // (an array of 24 integers) against the same number of free tokens.
    let engine = Engine::load(&path, &EngineOptions::default()).expect("loads");
    let prompt = engine
        .tokenizer()
        .encode_prompt("<|im_start|>user\nList the numbers from 1 to 24 as JSON.<|im_end|>\n<|im_start|>assistant\n")
        .expect("encodes");
    let run = |constraint: Option<ConstraintRequest>, max_tokens: usize| {
        let mut events = engine
            .generate(GenerateRequest {
                prompt: prompt.clone(),
                max_tokens,
                ignore_end: constraint.is_none(),
                constraint,
                ..GenerateRequest::default()
            })
            .expect("queued");
        while let Some(event) = events.blocking_recv() {
            if let GenEvent::Done { usage, .. } = event {
                return usage;
            }
        }
        panic!("no Done")
    };
    let json = ConstraintRequest {
        grammar: r#"start: %json {"type": "array", "items": {"type": "integer"}, "minItems": 24, "maxItems": 24, "x-guidance": {"whitespace_flexible": false, "item_separator": ", "}}"#.into(),
        activation: Activation::FromStart,
        repeat: false,
    };
    for round in 0..3 {
        let constrained = run(Some(json.clone()), 200);
        let free = run(None, constrained.completion_tokens);
        let rate = |u: &plugboard::engine::Usage| u.completion_tokens as f64 / (u.decode_ms / 1e3);
        let report = constrained.constraint.clone().unwrap_or_default();
        println!(
            "decode, round {round}: constrained {:.1} tok/s ({} tokens, {} masks), free {:.1} tok/s: {:.3}x",
            rate(&constrained),
            constrained.completion_tokens,
            report.masks,
            rate(&free),
            rate(&constrained) / rate(&free)
        );
    }
}
