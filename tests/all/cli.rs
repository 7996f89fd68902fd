//! The CLI: JSON in, JSON out, and a one-line error with a non-zero exit on bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use plugboard_tests::{plugboard_bin, test_plugins};

fn plugboard(args: &[&str], stdin: &str) -> Output {
    // Commands that load plugins compile them afresh: tests share no cache.
    let no_cache: &[&str] = if args.contains(&"detect") {
        &[]
    } else {
        &["--no-cache"]
    };
    let mut child = Command::new(plugboard_bin())
        .args(args)
        .args(no_cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugboard starts");
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    // A command that fails on its arguments may exit before it reads its input.
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "stdin written: {e}"
        );
    }
    child.wait_with_output().expect("plugboard ends")
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn render_prints_prompt_stop_and_triggers() {
    let request = r#"{"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}"#;
    let out = json_lines(&plugboard(
        &["adapter", "render", "--adapter", "tool-use"],
        request,
    ));
    assert!(
        out[0]["prompt"]
            .as_str()
            .expect("prompt")
            .ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    );
    assert_eq!(out[0]["stop"], serde_json::json!(["<|im_end|>"]));
    assert_eq!(
        out[0]["tool_call_triggers"],
        serde_json::json!(["<tool_use>"])
    );
}

#[test]
fn parse_prints_one_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tools = dir.path().join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"type": "function", "function": {"name": "get_weather"}}]"#,
    )
    .expect("written");
    let output = plugboard(
        &[
            "adapter",
            "parse",
            "--adapter",
            "tool-use",
            "--tools",
            tools.to_str().expect("utf-8"),
        ],
        "Sure.\n<tool_use>\ntool_name: get_weather\narguments: {\"city\": \"Paris\"}\n</tool_use>\n<tool_use>\ntool_name: nope\n</tool_use>",
    );
    let out = json_lines(&output);
    assert_eq!(
        out[0],
        serde_json::json!({
            "content": "Sure.",
            "reasoning": null,
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "nope", "arguments": {}}],
            "problems": [{"kind": "unknown_tool", "index": 1, "message": out[0]["problems"][0]["message"]}],
        })
    );
}

#[test]
fn stream_prints_events_then_the_final_object() {
    let chunks = r#"["Hi <tool", "_use>\ntool_name: f\narguments: {\"a\"", ": 1}\n</tool_use>"]"#;
    let out = json_lines(&plugboard(
        &["adapter", "stream", "--adapter", "tool-use"],
        chunks,
    ));
    let types: Vec<&str> = out.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "content",
            "tool_call_begin",
            "tool_call_arguments",
            "tool_call_arguments",
            "tool_call_end"
        ]
    );
    assert_eq!(out[1]["name"], "f");
    let final_object = &out.last().expect("final line")["final"];
    assert_eq!(
        final_object["tool_calls"][0]["arguments"],
        serde_json::json!({"a": 1})
    );
    assert_eq!(final_object["content"], "Hi");
}

#[test]
fn bad_input_gives_one_line_errors() {
    let e = one_line_error(&plugboard(&["adapter", "parse", "--adapter", "nope"], "x"));
    assert!(
        e.contains("unknown adapter 'nope'") && e.contains("tool-use"),
        "{e}"
    );
    let e = one_line_error(&plugboard(
        &["adapter", "render", "--adapter", "tool-use"],
        "{not json",
    ));
    assert!(e.contains("not a valid JSON chat request"), "{e}");
    let e = one_line_error(&plugboard(
        &["adapter", "render", "--adapter", "tool-use"],
        r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
    ));
    assert!(e.contains("messages[0].role"), "{e}");
    let e = one_line_error(&plugboard(
        &["adapter", "stream", "--adapter", "tool-use"],
        r#"{"a": 1}"#,
    ));
    assert!(e.contains("JSON array of strings"), "{e}");
    let e = one_line_error(&plugboard(
        &[
            "adapter",
            "parse",
            "--adapter",
            "tool-use",
            "--tools",
            "/no/such/file.json",
        ],
        "x",
    ));
    assert!(e.contains("/no/such/file.json"), "{e}");
    let e = one_line_error(&plugboard(
        &["plugins", "check", "/no/such/plugin.wasm"],
        "",
    ));
    assert!(e.contains("/no/such/plugin.wasm"), "{e}");
}

#[test]
fn check_runs_a_plugins_fixtures_and_fails_when_they_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wasm = dir.path().join("tool-use.wasm");
    std::fs::copy(test_plugins().join("tool-use.wasm"), &wasm).expect("copied");
    let fixtures = plugboard_tests::root().join("plugins/tool-use/fixtures/tool-use.jsonl");
    std::fs::copy(&fixtures, dir.path().join("tool-use.fixtures.jsonl")).expect("copied");
    let output = plugboard(&["plugins", "check", wasm.to_str().expect("utf-8")], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("tool-use 0.1.0 (contract plugboard:adapter@0.2.0)"),
        "{stdout}"
    );
    assert!(stdout.contains("fixture cases passed"), "{stdout}");

    std::fs::write(
        dir.path().join("tool-use.fixtures.jsonl"),
        r#"{"name": "wrong on purpose", "output": "a", "expect": {"content": "b"}}"#,
    )
    .expect("written");
    let output = plugboard(&["plugins", "check", wasm.to_str().expect("utf-8")], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("wrong on purpose"), "{stdout}");
}

#[test]
fn detect_names_the_adapter_for_a_template() {
    let template = std::fs::read_to_string(
        plugboard_tests::root()
            .join("../shared/templates/mistralai--Mistral-7B-Instruct-v0.3.jinja"),
    )
    .expect("the shared templates are beside the checkout");
    let output = plugboard(&["adapter", "detect"], &template);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "mistral");
    let e = one_line_error(&plugboard(&["adapter", "detect"], ""));
    assert!(e.contains("empty"), "{e}");
}

/// `plugboard bench`: its first load converts the weights and writes them to the weight
/// cache, its second maps them; both report every figure (no speed is asserted: the machines
/// are shared).
#[test]
fn bench_loads_from_the_weight_cache_the_second_time() {
    let Some(gemma) = plugboard_tests::models::gemma() else {
        return;
    };
    let cache = tempfile::tempdir().expect("a folder");
    let bench = || -> serde_json::Value {
        let output = Command::new(plugboard_bin())
            .args(["bench", "--json", "--threads", "1", "--prompt-tokens", "8"])
            .args(["--decode-tokens", "4", "--streams", "2", "--model"])
            .arg(&gemma)
            .arg("--weight-cache")
            .arg(cache.path())
            .stdin(Stdio::null())
            .output()
            .expect("plugboard bench runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON")
    };
    let first = bench();
    assert_eq!(first["weight_cache"], "written", "{first}");
    let second = bench();
    assert_eq!(second["weight_cache"], "mapped", "{second}");
    for key in [
        "load_s",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "context_decode_tokens_per_s",
        "streams_decode_tokens_per_s",
        "streams_probe_ttft_ms",
        "probe_alone_ttft_ms",
    ] {
        assert!(
            second[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {second}"
        );
    }
}
