//! The HTTP server end to end: the real Qwen2.5-Coder-0.5B test model behind a real
//! `plugboard serve` on loopback, driven by the real `openai` and `ollama` Python packages.

use serde_json::{Value, json};

use plugboard_tests::{TestServer, models, plugin_bytes, test_plugins};

const MODEL: &str = "qwen2.5-coder-0.5b";

fn start() -> Option<(TestServer, tempfile::TempDir)> {
    let path = models::qwen()?;
    let models_dir = path
        .parent()
        .expect("models folder")
        .to_str()
        .expect("utf-8")
        .to_string();
    let plugins = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(&[
        "--model",
        MODEL,
        "--models-dir",
        &models_dir,
        "--plugins",
        plugins.path().to_str().expect("utf-8"),
    ]);
    Some((server, plugins))
}

/// A server whose models are the Qwen test model served by these adapters, `(model id,
/// adapter)`, with a plugin folder; the first model loads at start.
fn serve_with_adapters(
    plugins: &std::path::Path,
    model: &std::path::Path,
    models: &[(&str, &str)],
) -> TestServer {
    let config = plugins.join("models.toml");
    let source = format!("{:?}", model.display().to_string());
    let declared: String = models
        .iter()
        .map(|(id, adapter)| {
            format!("[[models]]\nid = \"{id}\"\nsource = {source}\nadapter = \"{adapter}\"\n\n")
        })
        .collect();
    std::fs::write(&config, declared).expect("written");
    TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--model",
        models[0].0,
        "--plugins",
        plugins.to_str().expect("utf-8"),
    ])
}

fn paris_call(calls: &Value) {
    let calls = calls.as_array().expect("tool_calls is a list");
    assert_eq!(calls.len(), 1, "one call: {calls:?}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["arguments"], json!({"city": "Paris"}));
}

fn error_status(report: &Value, key: &str, status: u64) -> Value {
    let e = &report[key];
    assert_eq!(e["status"], status, "{key}: {e}");
    let body = e["body"]
        .get("error")
        .cloned()
        .unwrap_or_else(|| e["body"].clone());
    assert!(
        body["message"].is_string(),
        "{key}: OpenAI error shape: {e}"
    );
    body
}

#[test]
fn the_openai_client_gets_chat_streams_tool_calls_and_clear_errors() {
    let Some((server, _plugins)) = start() else {
        return;
    };
    let report = server.run_client("openai_client.py", &[MODEL]);

    let plain = &report["plain"];
    assert!(
        !plain["content"].as_str().unwrap_or("").is_empty(),
        "{plain}"
    );
    assert!(plain["usage"]["prompt_tokens"].as_u64() > Some(0));
    let streamed = &report["plain_streamed"];
    assert_eq!(
        streamed["content"], plain["content"],
        "streamed chat folds to the same text"
    );
    assert_eq!(
        streamed["roles"],
        json!(["assistant"]),
        "one role delta, first"
    );
    assert!(
        streamed["usage"]["completion_tokens"].as_u64() > Some(0),
        "include_usage gives a usage chunk"
    );

    let tool = &report["tool"];
    paris_call(&tool["tool_calls"]);
    assert_eq!(tool["finish_reason"], "tool_calls");
    let tool_streamed = &report["tool_streamed"];
    paris_call(&tool_streamed["tool_calls"]);
    assert_eq!(tool_streamed["finish_reason"], "tool_calls");
    assert_eq!(
        tool_streamed["content"], tool["content"],
        "same seed, same message"
    );

    let follow = &report["follow_up"];
    assert!(
        !follow["content"].as_str().unwrap_or("").is_empty(),
        "the follow-up answers in text: {follow}"
    );
    assert_eq!(follow["tool_calls"], json!([]));

    let e = error_status(&report, "unknown_model", 404);
    assert_eq!(e["code"], "model_not_found");
    error_status(&report, "wrong_type", 400);
    assert_eq!(
        error_status(&report, "bad_role", 400)["param"],
        "messages[0].role"
    );
    assert_eq!(
        error_status(&report, "invalid_tool_schema", 400)["param"],
        "tools[0].function.parameters"
    );
    error_status(&report, "malformed_json", 400);
    error_status(&report, "oversized", 413);
    assert!(
        report["models"]
            .as_array()
            .is_some_and(|m| m.contains(&json!(MODEL))),
        "the server still serves"
    );
}

#[test]
fn the_ollama_client_chats_with_and_without_tools() {
    let Some((server, _plugins)) = start() else {
        return;
    };
    let report = server.run_client("ollama_client.py", &[MODEL]);
    assert!(
        !report["plain"]["content"].as_str().unwrap_or("").is_empty(),
        "{report}"
    );
    assert_eq!(report["plain"]["done"], true);
    assert_eq!(
        report["plain_streamed"]["content"],
        report["plain"]["content"]
    );
    paris_call(&report["tool"]["tool_calls"]);
    paris_call(&report["tool_streamed"]["tool_calls"]);
    assert!(
        report["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!(MODEL))),
        "{report}"
    );
    assert_eq!(report["unknown_model"]["status"], 404);
}

#[test]
fn an_adapter_swapped_under_eight_streams_fails_none() {
    let Some(model) = models::qwen() else { return };
    let plugins = tempfile::tempdir().expect("temp dir");
    let probe = plugins.path().join("probe.wasm");
    std::fs::write(&probe, plugin_bytes("probe-v1")).expect("written");
    let server = serve_with_adapters(plugins.path(), &model, &[("probe-model", "probe")]);
    let new_wasm = test_plugins().join("probe-v2.wasm");
    let report = server.run_client(
        "hot_swap_client.py",
        &[
            "probe-model",
            probe.to_str().expect("utf-8"),
            new_wasm.to_str().expect("utf-8"),
        ],
    );
    for (i, run) in report["during"]
        .as_array()
        .expect("8 streams")
        .iter()
        .enumerate()
    {
        assert_eq!(run["error"], Value::Null, "stream {i} failed: {run}");
        assert_eq!(
            run["adapter"], "probe/1.0.0",
            "stream {i} started on the old version"
        );
        assert_eq!(
            run["content"], "v1",
            "stream {i} finished on the version it started with"
        );
    }
    for run in report["after"].as_array().expect("later requests") {
        assert_eq!(run["adapter"], "probe/2.0.0", "{run}");
        assert_eq!(run["content"], "v2", "{run}");
    }
    assert_eq!(report["listed_version"], "2.0.0");
    // The load at start and the one swap; nothing more while the folder is quiet.
    let swaps = report["swaps"].as_object().expect("counts by outcome");
    assert_eq!(swaps.len(), 1, "{report}");
    assert_eq!(swaps["swapped"].as_f64(), Some(2.0), "{report}");
    assert_eq!(report["swaps_later"], report["swaps"], "{report}");
    // Not a speed target (that is the benchmark's job): the swap must happen while serving.
    assert!(
        report["swap_seconds"].as_f64().is_some_and(|s| s < 30.0),
        "{report}"
    );
}

#[test]
fn a_client_that_hangs_up_cancels_its_generation() {
    let Some((server, _plugins)) = start() else {
        return;
    };
    let script = r#"
import json, sys, urllib.request
base, model = sys.argv[1], sys.argv[2]
def generated():
    health = json.loads(urllib.request.urlopen(base + "/health", timeout=60).read())
    return sum(m["generated_tokens"] for m in health["models_loaded"])
def post(body):
    return urllib.request.urlopen(urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                  headers={"content-type": "application/json"}), timeout=600)
before = generated()
ask = {"model": model, "temperature": 0, "max_tokens": 300, "stream": True,
       "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]}
response = post(ask)
content_chunks = 0
for line in response:
    if b'"content":"' in line and b'"content":""' not in line:
        content_chunks += 1
        if content_chunks == 2:
            break
response.close()
# The worker takes the next request only when the cancelled one has stopped.
post({"model": model, "temperature": 0, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}).read()
print(json.dumps({"generated": generated() - before}))
"#;
    let report = server.run_inline(script, &[MODEL]);
    let generated = report["generated"].as_u64().expect("a count");
    assert!(
        generated < 20,
        "the hung-up stream went on generating: {generated} tokens in all"
    );
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let Some((server, _plugins)) = start() else {
        return;
    };
    let script = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
base = sys.argv[1]
body = json.dumps({"model": sys.argv[2], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).encode()
urllib.request.urlopen(urllib.request.Request(base + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}), timeout=600).read()
text = urllib.request.urlopen(base + "/metrics", timeout=60).read().decode()
names = sorted({f.name for f in text_string_to_metric_families(text)})
print(json.dumps(names))
"#;
    let names: Vec<String> =
        serde_json::from_value(server.run_inline(script, &[MODEL])).expect("metric names");
    for expected in [
        "plugboard_requests",
        "plugboard_request_duration_seconds",
        "plugboard_time_to_first_token_seconds",
        "plugboard_tokens",
        "plugboard_plugin_faults",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

/// The admin endpoints: /apply-template renders with the model's adapter, /tokenize and
/// /detokenize round-trip (control tokens read as such, as llama.cpp's /tokenize reads them), a token id outside the
/// vocabulary is a 400 naming `tokens`, /v1/adapters/{name}/parse reads a call.
#[test]
fn admin_endpoints_render_tokenize_and_parse() {
    let Some((server, _plugins)) = start() else {
        return;
    };
    let script = r#"
import json, sys, urllib.request, urllib.error
base, model = sys.argv[1], sys.argv[2]
def post(path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
out = {}
out["template"] = post("/apply-template", {"model": model, "messages": [{"role": "user", "content": "Hi"}]})
out["tokenize"] = post("/tokenize", {"model": model, "content": "Hello <|im_end|> world"})
out["pieces"] = post("/tokenize", {"model": model, "content": "Hello", "with_pieces": True})
out["detokenize"] = post("/detokenize", {"model": model, "tokens": out["tokenize"][1]["tokens"]})
out["bad_id"] = post("/detokenize", {"model": model, "tokens": [1, 999999999]})
out["parse"] = post("/v1/adapters/hermes/parse", {"text": "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"})
out["unknown_adapter"] = post("/v1/adapters/no-such-adapter/parse", {"text": "x"})
print(json.dumps(out))
"#;
    let out = server.run_inline(script, &[MODEL]);
    let ok = |key: &str| -> &Value {
        assert_eq!(out[key][0], 200, "{key}: {}", out[key]);
        &out[key][1]
    };
    let prompt = ok("template")["prompt"].as_str().expect("a prompt");
    assert!(
        prompt.contains("<|im_start|>user\nHi<|im_end|>")
            && prompt.ends_with("<|im_start|>assistant\n"),
        "{prompt:?}"
    );
    let ids = ok("tokenize")["tokens"].as_array().expect("ids").clone();
    let im_end = 151645;
    assert!(
        ids.contains(&json!(im_end)),
        "/tokenize reads control tokens, as llama.cpp's does: {ids:?}"
    );
    assert_eq!(ok("detokenize")["content"], "Hello <|im_end|> world");
    let pieces = ok("pieces")["tokens"].as_array().expect("pieces");
    let joined: String = pieces
        .iter()
        .map(|p| p["piece"].as_str().expect("piece"))
        .collect();
    assert_eq!(joined, "Hello");
    assert_eq!(out["bad_id"][0], 400, "{}", out["bad_id"]);
    assert_eq!(out["bad_id"][1]["error"]["param"], "tokens");
    paris_call(&ok("parse")["tool_calls"]);
    assert_eq!(out["unknown_adapter"][0], 404, "{}", out["unknown_adapter"]);
}

/// Constrained decoding end to end on the Qwen test model (tests/clients/constrained_client.py):
/// `tool_choice: required` always gives a call valid against its schema, for chit-chat too.
#[test]
fn required_tool_calls_are_made_and_valid_by_construction() {
    let Some((server, _plugins)) = start() else {
        return;
    };
    let report = server.run_client("constrained_client.py", &[MODEL]);
    for run in report["required"].as_array().expect("runs") {
        assert_eq!(run["calls"], 1, "one call: {run}");
        assert_eq!(run["valid"], true, "{run}");
        assert_eq!(run["finish"], "tool_calls", "{run}");
    }
    assert_eq!(report["parallel"], json!([2, "tool_calls"]), "{report}");
    assert_eq!(report["named"], json!(["get_time"]), "{report}");
    for run in report["stress"].as_array().expect("runs") {
        assert_eq!(
            (&run["calls"], &run["valid"]),
            (&json!(1), &json!(true)),
            "{run}"
        );
    }
    assert_eq!(report["stream_equal"], true, "{report}");
    assert_eq!(report["auto_same"], true, "{report}");
    assert_eq!(report["json_schema_valid"], true, "{report}");
    assert_eq!(report["fallbacks"], json!([]), "{report}");
}

/// A 0.2 adapter whose call grammar does not compile serves, unconstrained, and the fallback
/// is counted; so does one that crashes while asked for its grammar; a 0.1 adapter (no call
/// grammar) serves a request with tools as before.
#[test]
fn a_broken_grammar_and_an_adapter_without_one_still_serve() {
    let Some(model) = models::qwen() else { return };
    let plugins = tempfile::tempdir().expect("temp dir");
    std::fs::write(plugins.path().join("probe.wasm"), plugin_bytes("probe-v1")).expect("written");
    std::fs::write(
        plugins.path().join("legacy.wasm"),
        plugin_bytes("contract-v0-1"),
    )
    .expect("written");
    std::fs::write(
        plugins.path().join("misbehave.wasm"),
        plugin_bytes("panics"),
    )
    .expect("written");
    let server = serve_with_adapters(
        plugins.path(),
        &model,
        &[
            ("probe-model", "probe"),
            ("legacy-model", "legacy"),
            ("crashing-model", "misbehave"),
        ],
    );
    let script = r#"
import json, sys, urllib.request
base = sys.argv[1]
def tools(name):
    return [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
def chat(model, tool="get_weather"):
    body = json.dumps({"model": model, "max_tokens": 4, "temperature": 0, "tools": tools(tool),
                       "messages": [{"role": "user", "content": "Weather in Paris?"}]}).encode()
    request = urllib.request.Request(base + "/v1/chat/completions", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"]
report = {"probe": chat("probe-model"), "legacy": chat("legacy-model"),
          "crashing": chat("crashing-model", "boom_weather")}
text = urllib.request.urlopen(base + "/metrics", timeout=60).read().decode()
report["fallbacks"] = [l for l in text.splitlines() if l.startswith("plugboard_grammar_fallbacks_total")]
print(json.dumps(report))
"#;
    let report = server.run_inline(script, &[]);
    assert_eq!(report["probe"], "v1", "{report}");
    assert!(
        report["legacy"].as_str().is_some_and(|c| !c.is_empty()),
        "{report}"
    );
    assert!(
        report["crashing"].as_str().is_some_and(|c| !c.is_empty()),
        "{report}"
    );
    let mut fallbacks: Vec<&str> = report["fallbacks"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    fallbacks.sort();
    assert_eq!(
        fallbacks,
        [
            "plugboard_grammar_fallbacks_total{adapter=\"misbehave/0.0.1\",reason=\"adapter_error\"} 1",
            "plugboard_grammar_fallbacks_total{adapter=\"probe/1.0.0\",reason=\"compile\"} 1",
        ],
        "{report}"
    );
}

/// After a tool's result the small test model answers from it instead of calling again: the
/// conversation is shown to it as the question with the results under it (`tool_results`).
/// The same file declared with `answer_after_results = false` gets the family's own rendering,
/// reported beside it.
#[test]
fn a_small_model_answers_from_tool_results_instead_of_calling_again() {
    let Some(model) = models::qwen() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("models.toml");
    let source = format!("{:?}", model.display().to_string());
    std::fs::write(
        &config,
        format!(
            "[[models]]\nid = \"answering\"\nsource = {source}\n\n\
             [[models]]\nid = \"as-rendered\"\nsource = {source}\nanswer_after_results = false\n"
        ),
    )
    .expect("written");
    let server = TestServer::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--model",
        "answering",
    ]);
    let report = server.run_client(
        "after_results_client.py",
        &[
            "--cases",
            "4",
            "--max-tokens",
            "40",
            "answering",
            "as-rendered",
        ],
    );
    eprintln!("after tool results: {report}");
    assert_eq!(report["answering"]["answered"], 4, "{report}");
    assert_eq!(report["answering"]["quoting"], 4, "{report}");
}
