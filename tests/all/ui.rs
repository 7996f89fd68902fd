//! The web UI in a real browser (Debian's Chromium, headless, through Selenium) against a real
//! `plugboard serve` with the Qwen test model: the selector's badges equal `/v1/models`, a
//! model is pulled from the (fake) hub with its progress shown, a weather question gives a
//! tool-call card with valid JSON and its speeds, a tool result continues the turn, a call that
//! breaks its schema shows as a warning, adapters
//! swapped in the plugin folder show in the panel within 2 s and serve the next reply, a
//! broken one shows as rejected while the old version keeps serving, a phone-width screen has
//! no sideways scroll, and the console has no errors. The server asks for an API key, which
//! the page asks the person for. Screenshots go to
//! `target/tmp/ui-screenshots/`.

use std::path::PathBuf;

use serde_json::Value;

use plugboard_tests::fake_hub::{FakeHub, HubFault};
use plugboard_tests::{TestServer, models, test_plugins};

/// Chromium and its driver, from Debian's packages (`scripts/setup.sh` installs them). CI
/// must have them: a test that skipped there would prove nothing.
fn browser_installed() -> bool {
    let found = ["chromium", "chromedriver"].iter().all(|tool| {
        std::process::Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI needs chromium and chromedriver (scripts/setup.sh installs them)"
    );
    found
}

/// The key the server asks for; the browser is given it as a person would give it.
const KEY: &str = "sk-plugboard-ui-test-0123456789";

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots")
}

#[test]
fn the_web_ui_shows_models_tool_calls_speeds_and_live_adapter_swaps() {
    let (Some(qwen), Some(gemma)) = (models::qwen(), models::gemma()) else {
        return;
    };
    if !browser_installed() {
        eprintln!("skipped: no chromium or chromedriver here");
        return;
    }
    // The hub sends the file slowly enough that its progress shows.
    let hub = FakeHub::start();
    hub.add(
        "test/gemma-ui-GGUF",
        "gemma-ui-Q4_K_M.gguf",
        &gemma,
        Some(HubFault::Slow(60_000_000)),
    );
    let cache = tempfile::tempdir().expect("a folder");
    let plugins = tempfile::tempdir().expect("a folder");
    let built = test_plugins();
    std::fs::copy(
        built.join("probe-v1.wasm"),
        plugins.path().join("probe.wasm"),
    )
    .expect("copied");
    let config = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(
        config.path(),
        format!(
            "[[models]]\nid = \"probe-demo\"\nsource = \"{0}\"\nadapter = \"probe\"\n\
             description = \"Qwen, answered by the probe adapter (it names its version)\"\n\n\
             [[models]]\nid = \"gemma-hub\"\n\
             source = {{ hf = \"test/gemma-ui-GGUF\", file = \"gemma-ui-Q4_K_M.gguf\" }}\n\
             description = \"Gemma 3 270M from the (fake) hub\"\n\n\
             [[models]]\nid = \"qwen-free\"\nsource = \"{0}\"\nconstrained = false\n",
            qwen.display()
        ),
    )
    .expect("written");
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
            "--config",
            config.path().to_str().expect("utf-8"),
            "--api-key",
            KEY,
        ],
        &[("HF_ENDPOINT", &hub.base)],
    );
    let out = screenshots();
    let seen = server.run_client(
        "ui_browser.py",
        &[
            plugins.path().to_str().expect("utf-8"),
            built.to_str().expect("utf-8"),
            out.to_str().expect("utf-8"),
            KEY,
        ],
    );
    eprintln!("what the browser saw: {seen:#}");

    // Asked for a key, and given it: the only console errors are the refusals before it.
    assert_eq!(seen["asked_for_key"], "needs an API key", "{seen}");
    for error in seen["console_before_key"].as_array().expect("a list") {
        assert!(error.as_str().unwrap_or("").contains("401"), "{error}");
    }

    // The selector: every model, with the badges /v1/models gives.
    assert_eq!(seen["models_api"], seen["models_shown"], "{seen}");
    assert_eq!(seen["badge_mismatches"], Value::Array(vec![]), "{seen}");
    let qwen_badges = seen["qwen_badges"].to_string();
    for badge in [
        r#"["tools","true"]"#,
        r#"["adapter","hermes/0.1.0"]"#,
        r#"["backend","local"]"#,
    ] {
        assert!(qwen_badges.contains(badge), "{badge} in {qwen_badges}");
    }

    // The pull: progress shown, then the model is here.
    assert_eq!(seen["pull_button"], true, "{seen}");
    assert!(
        seen["pull_progress_seen"].as_f64().unwrap_or(0.0) > 0.0,
        "{seen}"
    );
    assert!(
        !seen["pull_logged"].as_array().expect("a list").is_empty(),
        "{seen}"
    );

    // The weather question: a call card with valid JSON arguments, and the speeds.
    let reply = &seen["tool_reply"];
    let call = &reply["calls"][0];
    assert_eq!(call["name"], "get_weather", "{reply}");
    assert_eq!(call["valid_json"], "true", "{reply}");
    let arguments: Value =
        serde_json::from_str(call["arguments"].as_str().expect("text")).expect("JSON arguments");
    assert!(arguments["city"].is_string(), "{arguments}");
    let metric = |reply: &Value, key: &str| {
        reply["metrics"][key]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {key} in {reply}"))
    };
    assert!(metric(reply, "decode_tps") > 0.0, "{reply}");
    assert!(metric(reply, "prefill_tps") > 0.0, "{reply}");
    assert!(metric(reply, "ttft_ms") > 0.0, "{reply}");
    assert!(metric(reply, "prompt_tokens") > 0.0, "{reply}");
    assert_eq!(reply["adapter"], "hermes/0.1.0", "{reply}");
    assert_eq!(reply["context_bar"], true, "{reply}");

    // The tool's result sent back: the turn goes on.
    assert_eq!(seen["result_boxes"], 1, "{seen}");
    let after = &seen["after_result"];
    assert!(
        !after["content"].as_str().unwrap_or("").trim().is_empty() || after["calls"][0].is_object(),
        "{after}"
    );

    // A call that breaks its schema: dropped, and the problem shown as a warning.
    let invalid = &seen["invalid_call"];
    assert_eq!(invalid["calls"], Value::Array(vec![]), "{invalid}");
    assert_eq!(invalid["context_bar"], true, "{invalid}");
    assert!(metric(invalid, "ttft_ms") > 0.0, "{invalid}");
    let problems = invalid["problems"].to_string();
    assert!(
        problems.contains("warning: invalid_arguments") && problems.contains("station"),
        "{invalid}"
    );

    // Swaps show in the panel within 2 s, and the next reply names the new version.
    let swap = &seen["tool_use_swap"];
    assert!(swap["seconds"].as_f64().expect("seconds") < 2.0, "{swap}");
    assert!(
        swap["before"].as_str().unwrap_or("").contains("built-in"),
        "{swap}"
    );
    assert_eq!(seen["probe_v1"]["adapter"], "probe/1.0.0", "{seen}");
    assert_eq!(seen["probe_v1"]["content"], "v1", "{seen}");
    assert!(
        seen["probe_swap_seconds"].as_f64().expect("seconds") < 2.0,
        "{seen}"
    );
    assert_eq!(seen["probe_v2"]["adapter"], "probe/2.0.0", "{seen}");
    assert_eq!(seen["probe_v2"]["content"], "v2", "{seen}");

    // A broken file: shown as rejected, with the reason, while 2.0.0 keeps serving.
    let rejected = &seen["rejected"];
    assert!(
        rejected["seconds"].as_f64().expect("seconds") < 2.0,
        "{rejected}"
    );
    assert!(
        rejected["text"].as_str().unwrap_or("").contains("rejected"),
        "{rejected}"
    );
    assert_eq!(rejected["version"], "2.0.0", "{rejected}");
    assert!(
        !rejected["logged"].as_array().expect("a list").is_empty(),
        "{rejected}"
    );
    assert_eq!(
        seen["probe_after_reject"]["adapter"], "probe/2.0.0",
        "{seen}"
    );

    // A phone's width, and a clean console.
    assert!(
        seen["phone_overflow_px"].as_i64().unwrap_or(1) <= 0,
        "{seen}"
    );
    assert_eq!(seen["console_errors"], Value::Array(vec![]), "{seen}");
    for name in [
        "1-models",
        "2-pulling",
        "3-tool-call",
        "4-after-result",
        "5-problem",
        "6-swapped",
        "7-rejected",
        "8-phone",
    ] {
        assert!(out.join(format!("{name}.png")).is_file(), "{name}.png");
    }
}

#[test]
fn the_ui_is_served_at_the_root_unless_turned_off() {
    use plugboard_tests::http::get;
    let on = TestServer::start(&["--no-builtins"]);
    let page = get(&on.base, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.text.contains("/ui/app.js"), "{}", page.text);
    assert!(
        page.header("content-security-policy")
            .contains("default-src 'self'")
    );
    assert_eq!(get(&on.base, "/ui/chat.js").status, 200);
    assert_eq!(get(&on.base, "/ui/nothing.js").status, 404);

    let off = TestServer::start(&["--no-builtins", "--ui", "off"]);
    let page = get(&off.base, "/");
    assert_eq!(page.status, 404);
    assert_eq!(page.json()["error"]["type"], "invalid_request_error");
    assert_eq!(get(&off.base, "/v1/models").status, 200);
}
