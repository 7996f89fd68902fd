//! The API description (`GET /openapi.json`): what it says of a server's rules, and
//! Schemathesis (the real one, from PyPI) run against a real server with the Qwen test model:
//! every operation, every phase (examples, coverage, fuzzing, stateful), valid and invalid
//! data. It must find no server error, no answer the description does not describe and no
//! valid request refused for a rule the description does not state (see
//! tests/clients/schemathesis_hooks.py).

use serde_json::Value;

use plugboard_tests::fake_hub::FakeHub;
use plugboard_tests::http::{get, get_with};
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
            "--model",
            qwen.to_str().expect("utf-8"),
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
    assert!(
        summary.contains("Tested:") && !summary.contains("Tested: 0"),
        "{summary}"
    );
    // The server is still there, and nothing is left in flight.
    assert_eq!(get(&server.base, "/health").status, 200);
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
