//! Plugin runtime costs: instantiate, render, parse of 1 KB, push per chunk, and hot-swap
//! latency, for the Rust `tool-use` adapter. A benchmark, not a test: it prints figures.
//!
//! `cargo bench -p plugboard-tests --bench plugins`

use std::time::{Duration, Instant};

use plugboard::adapter::{
    Message, ModelConfig, ParseOptions, PromptRequest, Role, Tool, ToolChoice,
};
use plugboard::plugins::{Limits, PluginHost, PluginSource, Runtime, Watcher};
use plugboard_tests::{plugin_bytes, runtime};

/// Median time of `f` over `runs` runs, after a warm-up.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..runs / 10 + 1 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let runtime = runtime();
    let wasm = plugin_bytes("tool-use");
    let compile = median(5, || {
        runtime
            .load(&wasm, PluginSource::File("tool-use.wasm".into()))
            .expect("loads");
    });
    let plugin = runtime
        .load(&wasm, PluginSource::File("tool-use.wasm".into()))
        .expect("loads");
    let tools = vec![Tool {
        name: "get_weather".into(),
        description: Some("Current weather".into()),
        parameters: r#"{"type": "object", "properties": {"city": {"type": "string"}}}"#.into(),
    }];
    let request = PromptRequest {
        messages: vec![
            Message::text(Role::System, "You are helpful."),
            Message::text(Role::User, "What is the weather in Paris?"),
        ],
        tools: tools.clone(),
        tool_choice: ToolChoice::Auto,
        parallel_tool_calls: true,
        add_generation_prompt: true,
        model: ModelConfig::default(),
        template_variables: vec![],
    };
    let options = ParseOptions {
        tools,
        reasoning_open: false,
        lenient: false,
    };
    // About 1 KB of output: prose and one call.
    let prose =
        "The weather in Paris depends on the season; let me look it up for you. ".repeat(12);
    let output = format!(
        "{prose}\n<tool_use>\ntool_name: get_weather\narguments: {{\"city\": \"Paris\", \"note\": \"{}\"}}\n</tool_use>",
        "x".repeat(64)
    );

    // One request's sandbox: a fresh store and instance.
    let instantiate = median(2000, || {
        plugin.session().expect("instantiates");
    });
    let render = median(2000, || {
        plugin
            .session()
            .expect("instantiates")
            .format_prompt(&request)
            .expect("renders");
    })
    .saturating_sub(instantiate);
    let parse = median(2000, || {
        plugin
            .session()
            .expect("instantiates")
            .parse(&output, &options)
            .expect("parses");
    })
    .saturating_sub(instantiate);
    // Push per chunk: one token-sized chunk at a time, in one long-lived stream.
    let chunks: Vec<String> = output
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect())
        .collect();
    let mut per_push = Vec::new();
    for _ in 0..20 {
        let mut stream = plugin.stream(&options).expect("starts");
        let start = Instant::now();
        for chunk in &chunks {
            stream.push(chunk).expect("pushes");
        }
        per_push.push(start.elapsed() / chunks.len() as u32);
        stream.finish().expect("finishes");
    }
    per_push.sort();
    let push = per_push[per_push.len() / 2];
    // A whole chat turn's plugin work: one session renders, then streams the output.
    let request_total = median(500, || {
        let mut session = plugin.session().expect("instantiates");
        session.format_prompt(&request).expect("renders");
        let mut stream = session.into_stream(&options).expect("starts");
        for chunk in &chunks {
            stream.push(chunk).expect("pushes");
        }
        stream.finish().expect("finishes");
    });

    // The same request, counted in wasm instructions: exact on every run, so an A/B of the
    // adapter's code reads from one run of each version however noisy the machine.
    let counted = Runtime::counting_instructions(Limits::default())
        .expect("runtime")
        .load(&wasm, PluginSource::File("tool-use.wasm".into()))
        .expect("loads");
    {
        let mut session = counted.session().expect("instantiates");
        session.format_prompt(&request).expect("renders");
        let mut stream = session.into_stream(&options).expect("starts");
        for chunk in &chunks {
            stream.push(chunk).expect("pushes");
        }
        stream.finish().expect("finishes");
    }
    let request_instructions = counted.instructions().expect("counted");

    // Swap latency: from the write of a new version to that version answering.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("probe.wasm");
    let versions = [
        (plugin_bytes("probe-v1"), "1.0.0"),
        (plugin_bytes("probe-v2"), "2.0.0"),
    ];
    std::fs::write(&path, &versions[0].0).expect("written");
    let host = PluginHost::new(runtime.clone(), false, Some(dir.path().to_path_buf()));
    let _watcher = Watcher::start(host.clone()).expect("watches");
    let mut swaps = Vec::new();
    for round in 1..=10 {
        let (bytes, version) = &versions[round % 2];
        std::thread::sleep(Duration::from_millis(100));
        let written = Instant::now();
        std::fs::write(&path, bytes).expect("written");
        while host.get("probe").expect("serves").info().version != *version {
            std::thread::sleep(Duration::from_millis(1));
        }
        swaps.push(written.elapsed());
    }
    swaps.sort();

    println!(
        "plugin runtime, Rust tool-use adapter ({} KB component)",
        wasm.len() / 1024
    );
    println!(
        "  compile (no cache)                {:>10.1} ms",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "  instantiate (store + instance)    {:>12}",
        micros(instantiate)
    );
    println!("  render call                       {:>12}", micros(render));
    println!(
        "  parse call, {} B output         {:>12}",
        output.len(),
        micros(parse)
    );
    println!("  push per 4-char chunk             {:>12}", micros(push));
    println!(
        "  per request, fixed (instantiate + render): {}",
        micros(instantiate + render)
    );
    println!(
        "  per request, all ({} pushes of the {} B output included): {}",
        chunks.len(),
        output.len(),
        micros(request_total)
    );
    println!(
        "  per request, all, wasm instructions: {:.3} M",
        request_instructions as f64 / 1e6
    );
    println!(
        "  swap latency (write → answers) median {:.0} ms, max {:.0} ms",
        swaps[swaps.len() / 2].as_secs_f64() * 1e3,
        swaps[swaps.len() - 1].as_secs_f64() * 1e3
    );
}
