//! `/v1/events`: a real `plugboard serve` tells a listener what happens — an adapter swapped in
//! the plugin folder, a broken one rejected, a model loaded and unloaded — and its OpenAI
//! responses carry llama.cpp's `timings` block.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use plugboard_tests::http::{post, sse};
use plugboard_tests::{TestServer, models, plugin_bytes};

/// Listens to `/v1/events` on a thread of its own; the events arrive on the channel.
fn listen(base: &str) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    let data = sse(&format!("{base}/v1/events"), None);
    std::thread::spawn(move || {
        while let Ok(Some(payload)) = data.recv() {
            if let Ok(event) = serde_json::from_str(&payload)
                && tx.send(event).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// The next event of a type (others are skipped), within `wait`.
fn next_of(events: &mpsc::Receiver<Value>, kind: &str, wait: Duration) -> Value {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if event["type"] == kind => return event,
            Ok(_) => {}
            Err(_) => panic!("no {kind} event within {wait:?}"),
        }
    }
}

#[test]
fn a_listener_sees_swaps_rejections_loads_and_unloads_and_replies_carry_timings() {
    let Some(qwen) = models::qwen() else { return };
    let plugins = tempfile::tempdir().expect("a folder");
    let server = TestServer::start(&[
        "--models-dir",
        qwen.parent().and_then(|p| p.to_str()).expect("utf-8"),
        "--plugins",
        plugins.path().to_str().expect("utf-8"),
    ]);
    let events = listen(&server.base);
    std::thread::sleep(Duration::from_millis(300));

    // An adapter dropped into the folder: swapped in, within 2 s.
    std::fs::write(plugins.path().join("probe.wasm"), plugin_bytes("probe-v1")).expect("copied");
    let swapped = next_of(&events, "adapter_swapped", Duration::from_secs(2));
    assert_eq!(swapped["adapter"], "probe", "{swapped}");
    assert_eq!(swapped["version"], "1.0.0", "{swapped}");
    assert!(swapped["id"].as_u64().is_some() && swapped["at"].is_string());
    // A broken one: rejected with the reason, and the serving version stays.
    std::fs::write(plugins.path().join("probe.wasm"), b"not a component").expect("written");
    let rejected = next_of(&events, "adapter_rejected", Duration::from_secs(2));
    assert_eq!(rejected["adapter"], "probe", "{rejected}");
    assert!(
        !rejected["reason"].as_str().unwrap_or("").is_empty(),
        "{rejected}"
    );

    // A model loaded by an empty request, unloaded by keep_alive 0.
    let gemma = "gemma3-270m";
    post(&server.base, "/api/generate", &json!({"model": gemma}), &[]);
    let loaded = next_of(&events, "model_loaded", Duration::from_secs(30));
    assert_eq!(loaded["model"], gemma, "{loaded}");
    assert!(loaded["seconds"].as_f64().unwrap_or(0.0) > 0.0);
    post(
        &server.base,
        "/api/generate",
        &json!({"model": gemma, "keep_alive": 0}),
        &[],
    );
    let unloaded = next_of(&events, "model_unloaded", Duration::from_secs(5));
    assert_eq!(unloaded["model"], gemma, "{unloaded}");

    // llama.cpp's timings, whole and streamed.
    let body = json!({"model": "qwen2.5-coder-0.5b", "max_tokens": 8, "temperature": 0,
                      "messages": [{"role": "user", "content": "Count to five."}]});
    let whole = post(&server.base, "/v1/chat/completions", &body, &[]).json();
    let timings = &whole["timings"];
    assert_eq!(
        timings["predicted_n"], whole["usage"]["completion_tokens"],
        "{whole}"
    );
    assert!(
        timings["predicted_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{timings}"
    );
    assert!(timings["prompt_n"].as_u64().unwrap_or(0) > 0, "{timings}");
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let chunks = post(&server.base, "/v1/chat/completions", &streamed, &[]).events();
    let last = chunks
        .iter()
        .rev()
        .find(|c| c.get("timings").is_some())
        .expect("a chunk with timings");
    assert!(last["choices"][0]["finish_reason"].is_string(), "{last}");
    assert!(
        last["timings"]["cache_n"].as_u64().unwrap_or(0) > 0,
        "the same prompt again: {last}"
    );
}
