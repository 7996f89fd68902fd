//! Parse throughput per family: each built-in adapter's parser natively (the adapter crate's
//! Rust API) against the same parser in wasm through the host's runtime, on a realistic output
//! of about 1 KB with two tool calls, whole and streamed in 4-character chunks. A benchmark,
//! not a test: it prints a table. The goal is wasm at most 1.5× native.
//!
//! `cargo bench -p plugboard-tests --bench parse [-- ADAPTER…]`; `PARSE_BENCH_REPEAT=20` for
//! outputs of about 16 KB (the families that mark up each call), `BENCH_RUNS` to time more or
//! fewer runs.
//!
//! What is timed, on both sides: whole, one `parse-response` call (in wasm: on a warm session,
//! the instance made beforehand, so the figure is the call, not the sandbox); stream, the
//! parser's construction, every push and the finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::plugins::{Plugin, PluginHost, PluginSource};
use plugboard_sdk::{Adapter, StreamParse};
use plugboard_tests::runtime;

/// Median time of `f` over `runs` runs, after a warm-up.
fn median(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    for _ in 0..runs / 10 + 1 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
    times.sort();
    times[runs / 2]
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

const PROSE: &str = "I will check the current weather in Paris and the local time there, then \
compare them with yesterday's readings, so that you get a complete picture before you decide \
what to pack for the trip. The forecast services answer quickly, and the figures come back in \
metric units unless you ask otherwise; give me a moment while I look both of them up for you. \
If either service is slow, I will tell you what I have so far and fill in the rest later. ";

const ARGS_WEATHER: &str = r#"{"city": "Paris", "unit": "c", "note": "Include humidity, wind speed and the chance of rain for the next six hours."}"#;
const ARGS_TIME: &str = r#"{"tz": "Europe/Paris", "format": "24h", "context": "Planning an evening walk along the Seine: is it before sunset?"}"#;

const NOTE: &str = "Include humidity, wind speed and the chance of rain for the next six hours.";
const CONTEXT: &str = "Planning an evening walk along the Seine: is it before sunset?";

/// A JSON call object with `arguments` (or `parameters`).
fn call(name: &str, args: &str, key: &str) -> String {
    format!("{{\"name\": \"{name}\", \"{key}\": {args}}}")
}

/// The output of each family, about 1 KB: prose and two calls, in the family's own format
/// (prose only where the format allows it beside calls).
fn output(family: &str) -> String {
    let weather = call("get_weather", ARGS_WEATHER, "arguments");
    let time = call("get_time", ARGS_TIME, "arguments");
    let list = format!("[{weather}, {time}]");
    match family {
        "hermes" => format!(
            "{PROSE}\n<tool_call>\n{weather}\n</tool_call>\n<tool_call>\n{time}\n</tool_call><|im_end|>"
        ),
        "jinja" => format!(
            "<think>The user wants the weather and the time in Paris: two calls.</think>\n{PROSE}\n\
             <tool_call>\n{weather}\n</tool_call>\n<tool_call>\n{time}\n</tool_call><|im_end|>"
        ),
        "mistral" => format!("{PROSE}[TOOL_CALLS]{list}</s>"),
        "granite" => format!("{PROSE}<|tool_call|>{list}<|end_of_text|>"),
        "phi4-mini" => format!("{PROSE}functools{list}<|end|>"),
        "deepseek" => {
            let one = |name: &str, args: &str| {
                format!(
                    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{args}\n```<｜tool▁call▁end｜>"
                )
            };
            format!(
                "{PROSE}<｜tool▁calls▁begin｜>{}\n{}<｜tool▁calls▁end｜><｜end▁of▁sentence｜>",
                one("get_weather", ARGS_WEATHER),
                one("get_time", ARGS_TIME)
            )
        }
        "functiongemma" => format!(
            "{PROSE}<start_function_call>call:get_weather{{city:<escape>Paris<escape>,unit:<escape>c<escape>,\
             note:<escape>{NOTE}<escape>}}<end_function_call><start_function_call>call:get_time{{tz:\
             <escape>Europe/Paris<escape>,format:<escape>24h<escape>,context:<escape>{CONTEXT}<escape>}}\
             <end_function_call>"
        ),
        "tool-use" => format!(
            "{PROSE}\n<tool_use>\ntool_name: get_weather\narguments: {ARGS_WEATHER}\n</tool_use>\n\
             <tool_use>\ntool_name: get_time\narguments: {ARGS_TIME}\n</tool_use>"
        ),
        // Calls by their whole shape: no prose beside them, longer arguments instead.
        "llama3" => {
            let weather = call("get_weather", ARGS_WEATHER, "parameters");
            let time = call("get_time", ARGS_TIME, "parameters");
            let pad = call(
                "run_code",
                &serde_json::json!({ "code": PROSE }).to_string(),
                "parameters",
            );
            format!("<|python_tag|>{weather};\n{time};\n{pad}<|eom_id|>")
        }
        "pythonic" => format!(
            "[get_weather(city=\"Paris\", unit=\"c\", note=\"{NOTE}\"), get_time(tz='Europe/Paris', \
             format='24h', context=\"{CONTEXT}\"), run_code(code=\"{}\")]",
            PROSE.trim()
        ),
        other => panic!("no output for {other}"),
    }
}

/// The prose and calls of `text` (a family's [`output`]) `times` over in one output, for the
/// families whose calls are marked up one by one (the others, calls by their whole shape or one
/// list per output, stay as they are): throughput on long outputs.
fn repeated(family: &str, text: String, times: usize) -> String {
    let end = match family {
        "hermes" | "jinja" => "<|im_end|>",
        "deepseek" => "<｜end▁of▁sentence｜>",
        "functiongemma" | "tool-use" => "",
        _ => return text,
    };
    let head = text
        .find("</think>\n")
        .map_or(0, |i| i + "</think>\n".len());
    let body = &text[head..text.len() - end.len()];
    format!("{}{}{end}", &text[..head], body.repeat(times))
}

const TOOLS: [&str; 3] = ["get_weather", "get_time", "run_code"];

fn native_options() -> plugboard_sdk::types::ParseOptions {
    plugboard_sdk::types::ParseOptions {
        tools: TOOLS
            .iter()
            .map(|name| plugboard_sdk::types::Tool {
                name: name.to_string(),
                description: None,
                parameters: "{}".into(),
            })
            .collect(),
        reasoning_open: false,
        lenient: false,
    }
}

fn wasm_options() -> plugboard::adapter::ParseOptions {
    plugboard::adapter::ParseOptions {
        tools: TOOLS
            .iter()
            .map(|name| plugboard::adapter::Tool {
                name: name.to_string(),
                description: None,
                parameters: "{}".into(),
            })
            .collect(),
        reasoning_open: false,
        lenient: false,
    }
}

fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

/// Native whole and stream times; checks that the output really is two or more good calls.
fn native<A: Adapter>(text: &str, runs: usize) -> (Duration, Duration, usize) {
    let options = native_options();
    let parsed = A::parse_response(text.to_string(), options.clone()).expect("parses");
    assert!(
        parsed.tool_calls.len() >= 2 && parsed.problems.is_empty(),
        "{text}: {parsed:?}"
    );
    let whole = median(runs, || {
        let text = text.to_string();
        let options = options.clone();
        timed(|| {
            std::hint::black_box(A::parse_response(text, options).expect("parses"));
        })
    });
    let pieces = chunks(text);
    let stream = median(runs, || {
        let options = options.clone();
        timed(|| {
            let mut parser = A::Parser::new(options);
            for piece in &pieces {
                std::hint::black_box(parser.push(piece).expect("pushes"));
            }
            std::hint::black_box(parser.finish().expect("finishes"));
        })
    });
    (whole, stream, parsed.tool_calls.len())
}

/// The same through the host's wasm runtime.
fn wasm(plugin: &Arc<Plugin>, text: &str, runs: usize) -> (Duration, Duration, usize) {
    let options = wasm_options();
    let mut session = plugin.session().expect("instantiates");
    let parsed = session.parse(text, &options).expect("parses");
    let whole = median(runs, || {
        timed(|| {
            std::hint::black_box(session.parse(text, &options).expect("parses"));
        })
    });
    let pieces = chunks(text);
    let stream = median(runs, || {
        let session = plugin.session().expect("instantiates");
        timed(|| {
            let mut stream = session.into_stream(&options).expect("starts");
            for piece in &pieces {
                std::hint::black_box(stream.push(piece).expect("pushes"));
            }
            std::hint::black_box(stream.finish().expect("finishes"));
        })
    });
    (whole, stream, parsed.tool_calls.len())
}

/// The fixed cost of crossing into wasm: an empty output parsed, and an empty chunk pushed.
fn call_overhead(plugin: &Arc<Plugin>, runs: usize) -> (Duration, Duration) {
    let options = wasm_options();
    let mut session = plugin.session().expect("instantiates");
    let parse = median(runs, || {
        timed(|| {
            std::hint::black_box(session.parse("", &options).expect("parses"));
        })
    });
    let mut stream = plugin
        .session()
        .expect("instantiates")
        .into_stream(&options)
        .expect("starts");
    let push = median(runs, || {
        timed(|| {
            std::hint::black_box(stream.push("").expect("pushes"));
        })
    });
    (parse, push)
}

/// A number from the environment, or `default`.
fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let runs = env_number("BENCH_RUNS", 1000);
    // `PARSE_BENCH_REPEAT=N`: outputs N times as long (see `repeated`).
    let repeat = env_number("PARSE_BENCH_REPEAT", 1);
    // `PARSE_BENCH_WASM_DIR=dir`: the adapters from `dir/NAME.wasm` instead of the built-in
    // ones, to compare builds (another opt-level, another SDK) without rebuilding the host.
    let dir = std::env::var_os("PARSE_BENCH_WASM_DIR").map(std::path::PathBuf::from);
    let host = PluginHost::new(runtime(), true, None);
    let load = |name: &str| match &dir {
        Some(dir) => {
            let path = dir.join(format!("{name}.wasm"));
            let bytes = std::fs::read(&path).ok()?;
            host.runtime()
                .load(&bytes, PluginSource::File(path))
                .map_err(|e| println!("{name}: {e}"))
                .ok()
        }
        None => host.get(name),
    };
    type Native = fn(&str, usize) -> (Duration, Duration, usize);
    let families: [(&str, Native); 10] = [
        ("deepseek", native::<adapter_deepseek::DeepSeek>),
        (
            "functiongemma",
            native::<adapter_functiongemma::FunctionGemma>,
        ),
        ("granite", native::<adapter_granite::Granite>),
        ("hermes", native::<adapter_hermes::Hermes>),
        ("jinja", native::<adapter_jinja::Jinja>),
        ("llama3", native::<adapter_llama3::Llama3>),
        ("mistral", native::<adapter_mistral::Mistral>),
        ("phi4-mini", native::<adapter_phi4_mini::Phi4Mini>),
        ("pythonic", native::<adapter_pythonic::Pythonic>),
        ("tool-use", native::<adapter_tool_use::ToolUse>),
    ];
    println!(
        "parse throughput, native vs wasm ({runs} runs each, medians; stream: 4-character chunks)"
    );
    println!(
        "{:<14} {:>6} {:>5} | {:>10} {:>10} {:>6} {:>8} | {:>10} {:>10} {:>6} {:>8}",
        "adapter",
        "bytes",
        "calls",
        "whole nat",
        "whole wasm",
        "ratio",
        "wasm MB/s",
        "strm nat",
        "strm wasm",
        "ratio",
        "wasm MB/s"
    );
    // `cargo bench --bench parse -- NAME…`: only those adapters (to profile one).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut overhead = None;
    for (name, native) in families {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let text = repeated(name, output(name), repeat);
        let Some(plugin) = load(name) else {
            println!("{name:<14} not found");
            continue;
        };
        let (nw, ns, calls) = native(&text, runs);
        let (ww, ws, wasm_calls) = wasm(&plugin, &text, runs);
        assert_eq!(calls, wasm_calls, "{name}: native and wasm disagree");
        let mbps = |d: Duration| text.len() as f64 / d.as_secs_f64() / 1e6;
        println!(
            "{name:<14} {:>6} {calls:>5} | {:>8.1}µs {:>8.1}µs {:>5.2}× {:>8.0} | {:>8.1}µs {:>8.1}µs {:>5.2}× {:>8.0}",
            text.len(),
            micros(nw),
            micros(ww),
            ww.as_secs_f64() / nw.as_secs_f64(),
            mbps(ww),
            micros(ns),
            micros(ws),
            ws.as_secs_f64() / ns.as_secs_f64(),
            mbps(ws),
        );
        if name == "tool-use" {
            overhead = Some(call_overhead(&plugin, runs));
        }
    }
    if let Some((parse, push)) = overhead {
        println!(
            "fixed cost of a call into wasm (tool-use): parse of an empty output {:.1}µs, push of an empty chunk {:.2}µs",
            micros(parse),
            micros(push)
        );
    }
}
