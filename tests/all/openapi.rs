//! The API description (`GET /openapi.json`): what it says of a server's rules, and
//! Schemathesis (the real one, from PyPI) run against a real server with the Qwen test model:
//! every operation, every phase (examples, coverage, fuzzing, stateful), valid and invalid
//! data. It must find no server error, no answer the description does not describe and no
//! valid request refused for a rule the description does not state (see
//! tests/clients/schemathesis_hooks.py).

use serde_json::{Value, json};

use plugboard_tests::fake_hub::FakeHub;
use plugboard_tests::http::{Answer, get, get_with, post, post_raw};
use plugboard_tests::{TestServer, models, root};

const KEY: &str = "sk-fuzz-0123456789abcdef";

fn description(base: &str) -> Value {
    let answer = get(base, "/openapi.json");
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

#[test]
fn the_description_covers_every_route_with_this_servers_keys_and_limits() {
    let plugins = tempfile::tempdir().expect("a folder");
    let server = TestServer::start(&[
        "--plugins",
        plugins.path().to_str().expect("utf-8"),
        "--api-key",
        KEY,
        "--max-tokens-limit",
        "64",
        "--max-tools",
        "12",
    ]);
    let api = description(&server.base);
    assert_eq!(api["openapi"], "3.1.0");
    assert_eq!(api["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = api["paths"].as_object().expect("paths");
    for route in [
        "/",
        "/ui/{name}",
        "/openapi.json",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/models/pull",
        "/api/chat",
        "/api/generate",
        "/api/tags",
        "/api/show",
        "/api/ps",
        "/api/version",
        "/api/pull",
        "/api/delete",
        "/api/copy",
        "/apply-template",
        "/tokenize",
        "/detokenize",
        "/v1/adapters",
        "/v1/adapters/{name}/parse",
        "/v1/events",
        "/health",
        "/metrics",
    ] {
        assert!(paths.contains_key(route), "{route} is not described");
    }
    assert_eq!(paths.len(), 25, "{:?}", paths.keys().collect::<Vec<_>>());

    // Keys: what needs one says so, and may answer 401; the public routes need none.
    assert_eq!(
        api["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let chat = &api["paths"]["/v1/chat/completions"]["post"];
    assert_eq!(chat["security"][0]["bearer"], serde_json::json!([]));
    for status in [
        "200", "400", "401", "403", "404", "408", "413", "429", "503", "504",
    ] {
        assert!(
            chat["responses"].get(status).is_some(),
            "no {status} for chat"
        );
    }
    assert_eq!(
        api["paths"]["/health"]["get"]["security"],
        serde_json::json!([{}])
    );
    assert!(api["paths"]["/health"]["get"]["responses"]["401"].is_null());
    // Ollama's routes answer errors in Ollama's shape.
    assert_eq!(
        api["paths"]["/api/chat"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/OllamaErrorBody"
    );
    // Limits: the ceilings this server was started with.
    let schemas = &api["components"]["schemas"];
    assert_eq!(
        schemas["Sampling"]["properties"]["max_tokens"]["maximum"],
        64
    );
    assert_eq!(
        schemas["OllamaOptions"]["properties"]["num_predict"]["maximum"],
        64
    );
    assert_eq!(
        schemas["ChatRequest"]["properties"]["tools"]["maxItems"],
        12
    );
    // The description itself is public, even on a keyed server.
    assert_eq!(get_with(&server.base, "/openapi.json", &[]).status, 200);
}

#[test]
fn a_keyless_server_describes_no_keys_and_without_the_ui_no_page() {
    let plugins = tempfile::tempdir().expect("a folder");
    let server = TestServer::start(&[
        "--plugins",
        plugins.path().to_str().expect("utf-8"),
        "--ui",
        "off",
    ]);
    let api = description(&server.base);
    assert!(api["components"]["securitySchemes"].is_null());
    let chat = &api["paths"]["/v1/chat/completions"]["post"];
    assert!(chat["security"].is_null());
    assert!(chat["responses"]["401"].is_null());
    assert!(api["paths"]["/"].is_null());
    assert!(api["paths"]["/ui/{name}"].is_null());
    assert!(
        api["components"]["schemas"]["Sampling"]["properties"]["max_tokens"]["maximum"].is_null()
    );
}

#[test]
fn schemathesis_finds_nothing_against_a_server_with_the_test_model() {
    let Some(qwen) = models::qwen() else { return };
    // Pulls go to a fake hub that has no files: every name is one it does not know.
    let hub = FakeHub::start();
    let plugins = tempfile::tempdir().expect("a folder");
    let cache = tempfile::tempdir().expect("a folder");
    let server = TestServer::start_with_env(
        &[
            "--models-dir",
            qwen.parent().and_then(|p| p.to_str()).expect("utf-8"),
            "--model",
            "qwen2.5-coder-0.5b",
            "--plugins",
            plugins.path().to_str().expect("utf-8"),
            "--hub-cache",
            cache.path().to_str().expect("utf-8"),
            "--api-key",
            KEY,
            // Each chat is short: the run is about the API, not the model.
            "--max-tokens-limit",
            "8",
        ],
        &[("HF_ENDPOINT", &hub.base)],
    );
    let reports = root().join("target/schemathesis");
    let _ = std::fs::remove_dir_all(&reports);
    std::fs::create_dir_all(&reports).expect("a folder");
    let clients = root().join("tests/clients");
    let output = std::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(clients.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", server.base))
        .args(["--seed", &seed(), "--report", "junit", "--report-dir"])
        .arg(&reports)
        .current_dir(&clients)
        .env("PYTHONPATH", &clients)
        .env("PLUGBOARD_FUZZ_KEY", KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .find("=== SUMMARY")
        .and_then(|at| stdout[..at].rfind('\n').map(|line| &stdout[line + 1..]))
        .unwrap_or(&stdout);
    std::fs::write(reports.join("summary.txt"), summary).expect("written");
    // Into the test log even when the test passes: straight to stderr, past the test
    // harness's capture (which takes only `eprintln!`'s output).
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\nSchemathesis against /openapi.json:\n{summary}"
    );
    assert!(
        output.status.success(),
        "Schemathesis found problems:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log.lock().map(|l| l.clone()).unwrap_or_default()
    );
    // Every operation but the endless event stream (disabled in the config) was tested.
    let count = |label: &str| -> Option<(usize, usize)> {
        let line = summary.lines().find(|l| l.trim().starts_with(label))?;
        let figures = line.split(':').nth(1)?.trim();
        let (done, all) = figures.split_once('/').unwrap_or((figures, figures));
        Some((done.trim().parse().ok()?, all.trim().parse().ok()?))
    };
    let (selected, operations) = count("Selected:").expect("a count of operations");
    let (tested, _) = count("Tested:").expect("a count of tested operations");
    assert_eq!(
        (selected, tested),
        (operations - 1, operations - 1),
        "{summary}"
    );
    // The server is still there, the requests reached the model, nothing is left in flight.
    let health = get(&server.base, "/health");
    assert_eq!(health.status, 200);
    let generated = health.json()["models_loaded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["generated_tokens"].as_u64())
        .sum::<u64>();
    assert!(generated > 100, "the model generated {generated} tokens");
    let metrics = get(&server.base, "/metrics").text;
    assert!(
        metrics.contains("plugboard_requests_in_flight 0"),
        "{metrics}"
    );
}

/// The same cases every run, so that CI is repeatable; `PLUGBOARD_FUZZ_SEED` picks others.
fn seed() -> String {
    std::env::var("PLUGBOARD_FUZZ_SEED").unwrap_or_else(|_| "1".into())
}

/// What the fuzz runs found, one request each, so that each fix holds without Schemathesis.
#[test]
fn what_the_fuzz_runs_found_stays_fixed() {
    let Some(qwen) = models::qwen() else { return };
    let plugins = tempfile::tempdir().expect("a folder");
    let server = TestServer::start(&[
        "--models-dir",
        qwen.parent().and_then(|p| p.to_str()).expect("utf-8"),
        "--plugins",
        plugins.path().to_str().expect("utf-8"),
        "--max-tokens-limit",
        "8",
        "--max-tools",
        "2",
    ]);
    let base = &server.base;
    let model = "qwen2.5-coder-0.5b";
    let hi = json!([{"role": "user", "content": "Hi"}]);
    let chat = |extra: Value| {
        let mut body = json!({"model": model, "messages": hi, "max_tokens": 2});
        body.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        post(base, "/v1/chat/completions", &body, &[])
    };
    let refused = |answer: Answer, param: &str, code: &str| {
        assert_eq!(answer.status, 400, "{}", answer.text);
        let error = &answer.json()["error"];
        assert_eq!(error["param"], param, "{}", answer.text);
        if !code.is_empty() {
            assert_eq!(error["code"], code, "{}", answer.text);
        }
    };

    // Whole floats in integer fields, and a top_p too small for an f32, are valid.
    let answer = chat(json!({"max_tokens": 2.0, "seed": 7.0, "top_p": 1e-300}));
    assert_eq!(answer.status, 200, "{}", answer.text);
    // Bounds the description states are checked, both token fields against the ceiling.
    refused(chat(json!({"min_p": 5})), "min_p", "");
    refused(
        chat(json!({"repetition_penalty": 0})),
        "repetition_penalty",
        "",
    );
    refused(
        chat(json!({"max_tokens": 4, "max_completion_tokens": 100})),
        "max_tokens",
        "max_tokens_too_large",
    );
    // A tool's and a call's `type` is "function" or nothing.
    refused(
        chat(json!({"tools": [{"type": {}, "function": {"name": "f"}}]})),
        "tools[0].type",
        "",
    );
    refused(
        chat(json!({"messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": null,
             "tool_calls": [{"type": "", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "Again"}]})),
        "messages[1].tool_calls[0].type",
        "",
    );
    // Rules beyond the schema are named by their codes.
    refused(
        chat(
            json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                    "tool_choice": {"type": "function", "function": {"name": "g"}}}),
        ),
        "tool_choice",
        "tool_not_offered",
    );
    let apply = post(
        base,
        "/apply-template",
        &json!({"model": model, "messages": hi, "tools": [
            {"type": "function", "function": {"name": "a"}},
            {"type": "function", "function": {"name": "b"}},
            {"type": "function", "function": {"name": "c"}}]}),
        &[],
    );
    refused(apply, "tools", "too_many_tools");

    // Completions: the default of 16 tokens stays under the ceiling; prompts that are none.
    let answer = post(
        base,
        "/v1/completions",
        &json!({"model": model, "prompt": "Once"}),
        &[],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.json()["usage"]["completion_tokens"].as_u64() <= Some(8));
    let complete = |prompt: Value, extra: Value| {
        let mut body = json!({"model": model, "prompt": prompt});
        body.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        post(base, "/v1/completions", &body, &[])
    };
    refused(complete(json!([]), json!({})), "prompt", "");
    refused(
        complete(json!([4_000_000_000u64]), json!({})),
        "prompt",
        "token_out_of_vocabulary",
    );
    refused(
        complete(json!(""), json!({"add_special_tokens": false})),
        "prompt",
        "empty_prompt",
    );

    // Ollama's routes answer in Ollama's shape, a load included.
    let load = post(base, "/api/chat", &json!({"model": model}), &[]).json();
    assert_eq!(
        (load["done"].clone(), load["done_reason"].clone()),
        (json!(true), json!("load"))
    );
    let not_json = post_raw(base, "/api/chat", "{");
    assert_eq!(not_json.status, 400);
    assert!(not_json.json()["error"].is_string(), "{}", not_json.text);
    for keep_alive in ["1e3", "--5", "inf"] {
        let answer = post(
            base,
            "/api/generate",
            &json!({"model": model, "keep_alive": keep_alive}),
            &[],
        );
        assert_eq!(answer.status, 400, "{keep_alive}: {}", answer.text);
    }
    let pull = post(
        base,
        "/api/pull",
        &json!({"model": model, "stream": false}),
        &[],
    );
    assert_eq!(pull.status, 400, "{}", pull.text);
    assert!(
        pull.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("nothing to pull"))
    );
    // The UI's missing file is an error in the API's shape.
    let missing = get(base, "/ui/nope.js");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]["message"].is_string());
}
