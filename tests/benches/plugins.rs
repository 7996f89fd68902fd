//! Plugin runtime costs, one row per language: the tool-use adapter in Rust (the built-in),
//! C, JavaScript and Python (the SDKs' examples, built for real), side by side in one run.
//! Per request: a fresh sandbox (store and instance), the render call, a parse of 1 KB, a
//! whole chat turn (render, then the output streamed in 4-character pushes) in time and in
//! wasm instructions (exact on every run, so two versions of an adapter compare however noisy
//! the machine). Per version: compile without a cache, load from the compile cache, and the
//! hot swap of a version never seen before on a tiered runtime, as the server's: write →
//! answering (a big component from quick code) and write → answering from optimised code. The
//! swapped versions differ in a custom section only, so their optimised compile finds every
//! function in the runtime's function cache (a new build of an interpreted adapter finds
//! nearly all). A benchmark, not a test: it prints figures, times as ratios to the Rust row.
//!
//! `cargo bench -p plugboard-tests --bench plugins [-- LANG ...]`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::adapter::{
    Message, ModelConfig, ParseOptions, PromptRequest, Role, StreamEvent, Tool, ToolChoice,
};
use plugboard::plugins::{
    CompileCache, Limits, Plugin, PluginHost, PluginSource, Runtime, Watcher,
};
use plugboard_tests::{sdk, test_plugins, with_custom_section};

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

/// One chat turn's inputs.
struct Turn {
    request: PromptRequest,
    options: ParseOptions,
    output: String,
    chunks: Vec<String>,
}

fn turn() -> Turn {
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
    let chunks = output
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect())
        .collect();
    Turn {
        request,
        options,
        output,
        chunks,
    }
}

impl Turn {
    /// The whole turn in one session: render, then stream the output.
    fn run(&self, plugin: &Arc<Plugin>) {
        let mut session = plugin.session().expect("instantiates");
        session.format_prompt(&self.request).expect("renders");
        let mut stream = session.into_stream(&self.options).expect("starts");
        let mut events = Vec::new();
        for chunk in &self.chunks {
            events.extend(stream.push(chunk).expect("pushes"));
        }
        events.extend(stream.finish().expect("finishes"));
        let calls = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolCallBegin { .. }))
            .count();
        assert_eq!(calls, 1, "{events:?}");
    }
}

/// A version of `wasm` that differs from every earlier one and behaves the same.
fn variant(wasm: &[u8], round: usize) -> Vec<u8> {
    with_custom_section(
        wasm,
        format!("round {round} at {:?}", Instant::now()).as_bytes(),
    )
}

/// Write → serving and write → serving optimised code (medians), for `rounds` versions the
/// runtime has never compiled, on a tiered runtime with a compile cache, as the server has.
fn swap_latency(wasm: &[u8], rounds: usize) -> (Duration, Duration) {
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime =
        Runtime::tiered(Limits::default(), Some(CompileCache::new(cache.path()))).expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("adapter.wasm");
    std::fs::write(&path, variant(wasm, 0)).expect("written");
    let host = PluginHost::new(runtime, false, Some(dir.path().to_path_buf()));
    let name = host.list().first().expect("loaded").name.clone();
    let _watcher = Watcher::start(host.clone()).expect("watches");
    let wait = |done: &dyn Fn() -> bool| {
        while !done() {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let (mut serving, mut optimised): (Vec<Duration>, Vec<Duration>) = (1..=rounds)
        .map(|round| {
            let bytes = variant(wasm, round);
            let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            // The last version's optimising compile is done: the rounds do not overlap.
            wait(&|| host.get(&name).expect("serves").optimised());
            std::thread::sleep(Duration::from_millis(200));
            let written = Instant::now();
            std::fs::write(&path, &bytes).expect("written");
            wait(&|| host.get(&name).expect("serves").sha256() == sha256);
            let serves = written.elapsed();
            wait(&|| host.get(&name).expect("serves").optimised());
            (serves, written.elapsed())
        })
        .unzip();
    serving.sort();
    optimised.sort();
    (serving[rounds / 2], optimised[rounds / 2])
}

struct Row {
    lang: String,
    size: usize,
    compile: Duration,
    cached_load: Duration,
    instantiate: Duration,
    render: Duration,
    parse: Duration,
    request: Duration,
    instructions: Instructions,
    swap: Duration,
    swap_optimised: Duration,
}

/// Wasm instructions (exact on every run).
struct Instructions {
    instantiate: u64,
    render: u64,
    parse: u64,
    turn: u64,
}

fn measure(lang: &str, wasm_path: &Path, turn: &Turn) -> Row {
    let wasm = std::fs::read(wasm_path).expect("built");
    let source = || PluginSource::File(wasm_path.to_path_buf());
    // A big component compiles for seconds: fewer runs.
    let heavy = wasm.len() > 4 << 20;
    let cache = tempfile::tempdir().expect("temp dir");
    let cached_runtime =
        || Runtime::new(Limits::default(), Some(CompileCache::new(cache.path()))).expect("runtime");
    // A cold compile: a runtime of its own each time, so that its function cache is empty.
    let cold_compile = || {
        let uncached = Runtime::new(Limits::default(), None).expect("runtime");
        let start = Instant::now();
        uncached.load(&wasm, source()).expect("loads");
        start.elapsed()
    };
    let compile = if heavy {
        cold_compile()
    } else {
        let mut times: Vec<Duration> = (0..5).map(|_| cold_compile()).collect();
        times.sort();
        times[2]
    };
    let runtime = cached_runtime();
    // The cache now holds it: what a restart costs (the runtime's own start aside).
    cached_runtime().load(&wasm, source()).expect("loads");
    let restarted = cached_runtime();
    let cached_load = median(if heavy { 3 } else { 9 }, || {
        restarted.load(&wasm, source()).expect("loads");
    });
    let plugin = runtime.load(&wasm, source()).expect("loads");
    let runs = if heavy { 300 } else { 2000 };
    let instantiate = median(runs, || {
        plugin.session().expect("instantiates");
    });
    let render = median(runs, || {
        plugin
            .session()
            .expect("instantiates")
            .format_prompt(&turn.request)
            .expect("renders");
    })
    .saturating_sub(instantiate);
    let parse = median(runs, || {
        plugin
            .session()
            .expect("instantiates")
            .parse(&turn.output, &turn.options)
            .expect("parses");
    })
    .saturating_sub(instantiate);
    let request = median(runs / 4, || turn.run(&plugin));
    // The same work counted in wasm instructions.
    let counted = Runtime::counting_instructions(Limits::default())
        .expect("runtime")
        .load(&wasm, source())
        .expect("loads");
    let count = |f: &dyn Fn()| {
        let before = counted.instructions().expect("counted");
        f();
        counted.instructions().expect("counted") - before
    };
    let instantiate_instructions = count(&|| drop(counted.session().expect("instantiates")));
    let instructions = Instructions {
        instantiate: instantiate_instructions,
        render: count(&|| {
            counted
                .session()
                .expect("instantiates")
                .format_prompt(&turn.request)
                .expect("renders");
        }) - instantiate_instructions,
        parse: count(&|| {
            counted.parse(&turn.output, &turn.options).expect("parses");
        }) - instantiate_instructions,
        turn: count(&|| turn.run(&counted)),
    };
    let (swap, swap_optimised) = swap_latency(&wasm, if heavy { 3 } else { 10 });
    Row {
        lang: lang.to_string(),
        size: wasm.len(),
        compile,
        cached_load,
        instantiate,
        render,
        parse,
        request,
        instructions,
        swap,
        swap_optimised,
    }
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let turn = turn();
    let mut langs = vec!["rust"];
    langs.extend(sdk::LANGS);
    let rows: Vec<Row> = langs
        .into_iter()
        .filter(|l| *l == "rust" || wanted.is_empty() || wanted.iter().any(|w| w == l))
        .map(|lang| {
            let wasm = match lang {
                "rust" => test_plugins().join("tool-use.wasm"),
                _ => sdk::example(lang),
            };
            let row = measure(lang, &wasm, &turn);
            eprintln!("measured {lang}");
            row
        })
        .collect();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let base = &rows[0];
    let ratio = |d: Duration, b: Duration| format!(" ({:.1}×)", d.as_secs_f64() / b.as_secs_f64());
    println!(
        "plugin runtime, the tool-use adapter per language ({} B output, {} pushes a turn; × the Rust row)",
        turn.output.len(),
        turn.chunks.len()
    );
    println!(
        "| adapter | size | fresh instance | render | parse | whole turn | compile | cached load | hot swap: serving | optimised |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {:.1} MB | {:.0} µs{} | {:.0} µs | {:.0} µs | {:.0} µs{} | {:.2} s | {:.1} ms | {:.2} s | {:.2} s |",
            row.lang,
            row.size as f64 / 1e6,
            us(row.instantiate),
            ratio(row.instantiate, base.instantiate),
            us(row.render),
            us(row.parse),
            us(row.request),
            ratio(row.request, base.request),
            row.compile.as_secs_f64(),
            ms(row.cached_load),
            row.swap.as_secs_f64(),
            row.swap_optimised.as_secs_f64(),
        );
    }
    println!();
    println!("the same work in wasm instructions (millions)");
    println!("| adapter | fresh instance | render | parse | whole turn |");
    println!("| --- | --- | --- | --- | --- |");
    let m = |n: u64| n as f64 / 1e6;
    for row in &rows {
        let i = &row.instructions;
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.2} |",
            row.lang,
            m(i.instantiate),
            m(i.render),
            m(i.parse),
            m(i.turn)
        );
    }
}
