//! Adapters written in JavaScript, Python and C (sdk/js, sdk/python, sdk/c), built for real with
//! their toolchains (installed by scripts/setup_sdks.sh): the tool-use examples pass the Rust
//! adapter's own fixtures through the real host and give its call grammar byte for byte, every
//! `plugins new --lang X` scaffold builds, passes `plugins check` as generated and speaks
//! contract 0.2, and the four tool-use adapters (Rust, JS, Python, C) hot-swap into a running
//! server without a failed request.
//!
//! Each component is built once per test run (`plugboard_tests::sdk`) and compiled once: the
//! tests share a compile cache, as a restarted server would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::adapter::{GrammarRequest, Tool, ToolChoice};
use plugboard::call_constraint::tool_constraint;
use plugboard::engine::{GgufFile, GrammarFactory, Tokenizer};
use plugboard::events::Event;
use plugboard::plugins::CompileCache;
use plugboard::plugins::{Limits, Plugin, PluginSource, Runtime, builtin, fixtures};
use plugboard_tests::sdk::{LANGS, build, command, example, run, work_dir};
use plugboard_tests::{
    TestServer, models, plugboard_bin, root, test_plugins, tool, weather_tools, with_custom_section,
};
use serde_json::json;

fn cache_dir() -> PathBuf {
    work_dir().join("compiled")
}

fn cached_runtime() -> Arc<Runtime> {
    Runtime::new(Limits::default(), Some(CompileCache::new(cache_dir())))
        .expect("the wasm runtime starts")
}

fn load(runtime: &Arc<Runtime>, wasm: &Path) -> Arc<Plugin> {
    let bytes = std::fs::read(wasm).expect("the component was built");
    runtime
        .load(&bytes, PluginSource::File(wasm.to_path_buf()))
        .expect("the component loads")
}

fn rust_fixtures() -> String {
    std::fs::read_to_string(root().join("plugins/tool-use/fixtures/tool-use.jsonl"))
        .expect("the tool-use fixtures")
}

#[test]
fn tool_use_examples_in_js_python_and_c_pass_the_rust_adapters_fixtures() {
    let runtime = cached_runtime();
    let fixtures = rust_fixtures();
    for lang in LANGS {
        let plugin = load(&runtime, &example(lang));
        assert_eq!(plugin.info().name, "tool-use", "{lang}");
        assert!(
            plugin.info().version.ends_with(&format!("+{lang}")),
            "{lang}: {}",
            plugin.info().version
        );
        let report = fixtures::run(&plugin, &fixtures).expect("a sandbox");
        assert!(report.passed(), "{lang}: {}", report.summary());
        let cases = fixtures.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(report.cases, cases, "{lang}: the whole fixture file");
    }
}

/// On a tiered runtime, the server's, a JavaScript or Python adapter the compile cache does not
/// hold serves from Winch's quick code at once and passes its fixtures there; Cranelift's code
/// takes over once compiled, and goes into the cache, from which a restart loads it. The next
/// version compiles from the functions the first one left in the function cache.
#[test]
fn a_tiered_runtime_serves_a_big_adapter_from_quick_code_until_its_optimised_code_is_ready() {
    let fixtures = rust_fixtures();
    let cache = tempfile::tempdir().expect("temp dir");
    let tiered = || {
        Runtime::tiered(Limits::default(), Some(CompileCache::new(cache.path())))
            .expect("the wasm runtime starts")
    };
    let runtime = tiered();
    let versions = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    for lang in ["js", "python"] {
        let mut events = Box::pin(plugboard::events::subscribe());
        let plugin = load(&runtime, &example(lang));
        // Cranelift takes seconds for these.
        assert!(!plugin.optimised(), "{lang}: quick code first");
        let report = fixtures::run(&plugin, &fixtures).expect("a sandbox");
        assert!(
            report.passed(),
            "{lang} on quick code: {}",
            report.summary()
        );
        let deadline = Instant::now() + Duration::from_secs(300);
        while !plugin.optimised() {
            assert!(Instant::now() < deadline, "{lang}: never optimised");
            std::thread::sleep(Duration::from_millis(50));
        }
        let report = fixtures::run(&plugin, &fixtures).expect("a sandbox");
        assert!(report.passed(), "{lang} optimised: {}", report.summary());
        // Announced on /v1/events (the channel is the process's: other tests' events too).
        let version = plugin.info().version.clone();
        let announced = rt.block_on(async {
            use futures::StreamExt;
            let wanted = async {
                while let Some(stamped) = events.next().await {
                    if let Event::AdapterOptimised {
                        adapter,
                        version: v,
                        sha256,
                        ..
                    } = stamped.event
                        && adapter == "tool-use"
                        && v == version
                        && sha256 == plugin.sha256()
                    {
                        return;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), wanted).await
        });
        assert!(announced.is_ok(), "{lang}: no adapter_optimised event");
        assert!(
            load(&tiered(), &example(lang)).optimised(),
            "{lang}: a restart loads the optimised code from the cache"
        );
        // Another version of the same interpreter (here the same code with another custom
        // section) takes quick code first again, and its optimised compile takes nearly every
        // function from the function cache instead of compiling it.
        let (kept, _) = runtime.function_cache_size();
        assert!(kept > 1000, "{lang}: {kept} compiled functions kept");
        let variant = versions.path().join(format!("{lang}.wasm"));
        let bytes = std::fs::read(example(lang)).expect("built");
        std::fs::write(&variant, with_custom_section(&bytes, b"another version")).expect("written");
        let plugin = load(&runtime, &variant);
        assert!(
            !plugin.optimised(),
            "{lang}: a new version, quick code first"
        );
        while !plugin.optimised() {
            assert!(
                Instant::now() < deadline,
                "{lang}: the new version never optimised"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (after, _) = runtime.function_cache_size();
        assert!(
            after - kept < kept / 5,
            "{lang}: {kept} functions kept, and the new version's compile added {}",
            after - kept
        );
    }
}

/// Three tool sets: plain, one tool with a demanding schema, and names at the edges of what the
/// tool-use format can carry on its `tool_name:` line: escapes in the grammar's literals,
/// whitespace that Rust trims and JavaScript or Python do not (or the other way round), and
/// names it cannot carry at all (quoted, with a line break, a `{`, its labels or markers).
fn grammar_tool_sets() -> Vec<Vec<Tool>> {
    vec![
        weather_tools(),
        vec![tool(
            "book_table",
            json!({"type": "object", "properties": {
                "party": {"type": "integer", "minimum": 1, "maximum": 12},
                "when": {"type": "object", "properties": {"day": {"type": "string", "enum": ["mon", "fri"]}}, "required": ["day"]},
                "requests": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
                "required": ["party", "when"], "additionalProperties": false}),
        )],
        [
            "ping",
            "tab\tname",
            "back\\slash",
            "m\u{e9}t\u{e9}o \u{2600}",
            "\u{1c}unit-separator",
            // Trailing: componentize-js decodes strings with a TextDecoder that drops a
            // leading byte-order mark, so a JavaScript adapter never sees one.
            "bom\u{feff}",
            "\u{85}next-line",
            "line\nbreak",
            "a{b",
            "x arguments: y",
            "end</tool_use>",
            " padded",
            "say \"hi\"",
        ]
        .into_iter()
        .map(|name| tool(name, json!({})))
        .collect(),
    ]
}

/// Every combination of tool_choice (auto, required, none, the first tool, the last one, a tool
/// not offered), parallel calls, an open reasoning block and control tokens, for each tool set.
fn grammar_requests() -> Vec<GrammarRequest> {
    // Markers of the format among a model's control tokens: an adapter that wrote one by id
    // would differ from the Rust adapter, which writes them as text.
    let control_tokens = vec![
        ("<|im_end|>".to_string(), 151645),
        ("<think>".to_string(), 151667),
        ("<tool_use>".to_string(), 151668),
    ];
    let mut requests = Vec::new();
    for tools in grammar_tool_sets() {
        let first = tools.first().expect("a tool").name.clone();
        let last = tools.last().expect("a tool").name.clone();
        for tool_choice in [
            ToolChoice::Auto,
            ToolChoice::Required,
            ToolChoice::None,
            ToolChoice::Function(first),
            ToolChoice::Function(last),
            ToolChoice::Function("not_offered".into()),
        ] {
            for parallel_tool_calls in [true, false] {
                for reasoning_open in [false, true] {
                    for control_tokens in [Vec::new(), control_tokens.clone()] {
                        requests.push(GrammarRequest {
                            tools: tools.clone(),
                            tool_choice: tool_choice.clone(),
                            parallel_tool_calls,
                            reasoning_open,
                            control_tokens,
                        });
                    }
                }
            }
        }
    }
    requests
}

#[test]
fn tool_use_grammars_in_js_python_and_c_equal_the_rust_adapters_and_compile() {
    let runtime = cached_runtime();
    let rust = builtin::ALL
        .iter()
        .find(|b| b.name == "tool-use")
        .expect("tool-use is built in");
    let rust = runtime
        .load(rust.wasm, PluginSource::Builtin(rust.name.into()))
        .expect("the Rust adapter loads");
    let others: Vec<(&str, Arc<Plugin>)> = LANGS
        .iter()
        .map(|lang| (*lang, load(&runtime, &example(lang))))
        .collect();
    // Compiled as the engine compiles them, with the Qwen test model's vocabulary.
    let factory = models::qwen().map(|path| {
        let tokenizer =
            Tokenizer::load(&GgufFile::open(&path).expect("opens")).expect("tokenizer loads");
        let ends: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_id(t))
            .collect();
        GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &ends).expect("builds")
    });
    let requests = grammar_requests();
    let mut grammars = 0;
    for request in &requests {
        let want = rust
            .session()
            .expect("a session")
            .call_grammar(request)
            .unwrap_or_else(|e| panic!("the Rust adapter: {e} for {request:?}"));
        for (lang, plugin) in &others {
            let got = plugin
                .session()
                .expect("a session")
                .call_grammar(request)
                .unwrap_or_else(|e| panic!("{lang}: {e} for {request:?}"));
            match (&got, &want) {
                (Some(got), Some(want)) => {
                    assert_eq!(
                        got.grammar, want.grammar,
                        "{lang}: the grammar for {request:?}"
                    );
                    assert_eq!(got, want, "{lang}: for {request:?}");
                }
                _ => assert_eq!(got, want, "{lang}: for {request:?}"),
            }
        }
        let Some(grammar) = want else { continue };
        grammars += 1;
        if let Some(factory) = &factory {
            let constraint = tool_constraint(
                grammar,
                &request.tools,
                request.parallel_tool_calls,
                request.reasoning_open,
            );
            if let Err(e) = factory.compile(&constraint.grammar) {
                panic!("{e}: the grammar for {request:?}:\n{}", constraint.grammar);
            }
        }
    }
    // Not a vacuous matrix: most requests have a grammar, and the ones that cannot have none.
    assert!(
        grammars * 2 > requests.len(),
        "{grammars} of {}",
        requests.len()
    );
    assert!(
        grammars < requests.len(),
        "{grammars} of {}",
        requests.len()
    );
}

#[test]
fn every_scaffold_builds_and_passes_check_as_generated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = cached_runtime();
    let tools = grammar_tool_sets().remove(0);
    for lang in ["rust", "js", "python", "c"] {
        let name = format!("new-{lang}");
        let mut c = command(plugboard_bin());
        c.args(["plugins", "new", &name, "--lang", lang, "--dir"])
            .arg(dir.path());
        run(c, &format!("plugins new --lang {lang}"));
        let folder = dir.path().join(&name);
        build(
            &folder.join("build.sh"),
            &[],
            &format!("the {lang} scaffold"),
        );
        let mut c = command(plugboard_bin());
        c.args(["plugins", "check"])
            .arg(folder.join(format!("{name}.wasm")))
            .arg("--cache-dir")
            .arg(cache_dir());
        let out = run(c, &format!("plugins check of the {lang} scaffold"));
        assert!(out.contains("7 fixture cases passed"), "{lang}: {out}");
        assert!(out.starts_with(&format!("{name} 0.1.0")), "{lang}: {out}");
        // Contract 0.2; only the Rust template defines a call grammar, the others have the
        // SDK's default: none.
        let plugin = load(&runtime, &folder.join(format!("{name}.wasm")));
        assert_eq!(plugin.contract(), "0.2.0", "{lang}");
        let grammar = plugin
            .session()
            .expect("a session")
            .call_grammar(&GrammarRequest {
                tools: tools.clone(),
                tool_choice: ToolChoice::Required,
                parallel_tool_calls: true,
                ..GrammarRequest::default()
            })
            .unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert_eq!(grammar.is_some(), lang == "rust", "{lang}: {grammar:?}");
    }
}

#[test]
fn the_four_tool_use_adapters_hot_swap_into_a_running_server_without_a_failed_request() {
    let Some(model) = models::qwen() else { return };
    let swaps: Vec<(PathBuf, String)> = LANGS
        .iter()
        .map(|lang| (example(lang), format!("0.1.0+{lang}")))
        .chain(std::iter::once((
            test_plugins().join("tool-use.wasm"),
            "0.1.0".to_string(),
        )))
        .collect();
    // Compile each once before the server sees it, as a restart after the first load would.
    let runtime = cached_runtime();
    for (wasm, _) in &swaps {
        load(&runtime, wasm);
    }
    let plugins = tempfile::tempdir().expect("temp dir");
    let plugin_file = plugins.path().join("tool-use.wasm");
    std::fs::copy(
        root().join("plugins/tool-use/fixtures/tool-use.jsonl"),
        plugins.path().join("tool-use.fixtures.jsonl"),
    )
    .expect("fixtures copied");
    let config = plugins.path().join("models.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nid = \"tool-use-model\"\nsource = {:?}\nadapter = \"tool-use\"\n",
            model.display().to_string()
        ),
    )
    .expect("written");
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--model",
        "tool-use-model",
        "--plugins",
        plugins.path().to_str().expect("utf-8"),
        "--cache-dir",
        cache_dir().to_str().expect("utf-8"),
    ]);
    let mut args: Vec<String> = vec![
        "tool-use-model".into(),
        "tool-use".into(),
        plugin_file.display().to_string(),
    ];
    for (wasm, version) in &swaps {
        args.push(wasm.display().to_string());
        args.push(version.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = server.run_client("language_swap_client.py", &args);
    eprintln!("language hot swap: {report}");
    assert_eq!(
        report["failures"],
        serde_json::json!([]),
        "no request may fail: {report}"
    );
    assert!(report["requests"].as_u64() >= Some(4), "{report}");
    for (swap, (_, version)) in report["swaps"]
        .as_array()
        .expect("swaps")
        .iter()
        .zip(&swaps)
    {
        assert_eq!(swap["listed"], version.as_str(), "{report}");
        assert!(
            swap["seconds"].as_f64().is_some_and(|s| s < 60.0),
            "{report}"
        );
    }
    let answered: Vec<&str> = report["answered_by"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for (_, version) in &swaps {
        let label = format!("tool-use/{version}");
        assert!(
            answered.contains(&label.as_str()),
            "{label} answered requests: {report}"
        );
    }
}

/// A counting runtime counts what a request's sandbox runs, instantiation and calls, and the
/// count is exact: the same request costs the same on every run, and more work costs more.
/// What makes A/B comparisons of adapter code reliable on a noisy machine (`bench` below).
#[test]
fn a_counting_runtime_counts_each_request_exactly() {
    let wasm = std::fs::read(test_plugins().join("tool-use.wasm")).expect("built");
    let source = || PluginSource::File("tool-use.wasm".into());
    let options = plugboard::adapter::ParseOptions {
        tools: fixtures::tools_named(&["get_weather"]),
        ..Default::default()
    };
    let call = "<tool_use>\ntool_name: get_weather\narguments: {\"city\": \"Paris\"}\n</tool_use>";
    let counting = Runtime::counting_instructions(Limits::default()).expect("runtime");
    let plugin = counting.load(&wasm, source()).expect("loads");
    assert_eq!(plugin.instructions(), Some(0));
    let count = |text: &str| {
        let before = plugin.instructions().expect("counted");
        let parsed = plugin.parse(text, &options).expect("parses");
        assert_eq!(parsed.tool_calls.len(), 1, "{text}");
        plugin.instructions().expect("counted") - before
    };
    let once = count(call);
    assert!(once > 10_000, "a parse runs more than {once} instructions");
    assert_eq!(count(call), once, "the same request, the same count");
    let longer = format!("{}{call}", "Let me check that for you. ".repeat(40));
    assert!(count(&longer) > once, "a longer output costs more");
    // Serving never counts.
    let plain = Runtime::new(Limits::default(), None)
        .expect("runtime")
        .load(&wasm, source())
        .expect("loads");
    plain.parse(call, &options).expect("parses");
    assert_eq!(plain.instructions(), None);
}
