//! Which models stay loaded: keep-alive, Ollama's empty requests that load and unload, and
//! `--max-loaded-models` with both real test models behind a real `plugboard serve`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use plugboard_tests::http::post;
use plugboard_tests::{TestServer, models};

const QWEN: &str = "qwen2.5-coder-0.5b";
const GEMMA: &str = "gemma3-270m";

fn loaded(server: &TestServer) -> Vec<String> {
    let ps = get(server, "/api/ps");
    let mut names: Vec<String> = ps["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// Waits (up to 10 s) for the loaded models to be these.
fn until_loaded(server: &TestServer, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = loaded(server);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "loaded {now:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn generate(server: &TestServer, model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "prompt": "Say hi.", "stream": false, "options": {"num_predict": 4, "temperature": 0}});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let answer = post(&server.base, "/api/generate", &body, &[]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[test]
fn one_model_at_a_time_swaps_on_demand_and_keep_alive_unloads() {
    let (Some(qwen), Some(_)) = (models::qwen(), models::gemma()) else {
        return;
    };
    let models_dir = qwen.parent().expect("a folder").to_str().expect("utf-8");
    let server = TestServer::start(&[
        "--model",
        QWEN,
        "--models-dir",
        models_dir,
        "--max-loaded-models",
        "1",
    ]);
    until_loaded(&server, &[QWEN]);

    // A request to the other model swaps them.
    generate(&server, GEMMA, json!({}));
    until_loaded(&server, &[GEMMA]);

    // A request in flight survives the other model's load: both are loaded while it runs,
    // and the limit is restored once it ends.
    let base = server.base.clone();
    let long = std::thread::spawn(move || {
        let body = json!({"model": GEMMA, "prompt": "Count to one hundred.", "stream": false,
                          "options": {"num_predict": 160, "temperature": 0}});
        post(&base, "/api/generate", &body, &[])
    });
    std::thread::sleep(Duration::from_millis(300));
    generate(&server, QWEN, json!({}));
    let answer = long.join().expect("the long request ends");
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["done"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while loaded(&server).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "back to one model: {:?}",
            loaded(&server)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // An empty request loads a model, and with keep_alive 0 unloads it; RSS falls.
    let load = post(&server.base, "/api/generate", &json!({"model": QWEN}), &[]).json();
    assert_eq!(load["done_reason"], "load", "{load}");
    until_loaded(&server, &[QWEN]);
    let ps = get(&server, "/api/ps");
    let expires = ps["models"][0]["expires_at"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(expires.as_str() > "2026", "a real expiry: {expires}");
    let models = get(&server, "/v1/models");
    let state = |id: &str| {
        models["data"]
            .as_array()
            .and_then(|d| d.iter().find(|m| m["id"] == id))
            .map(|m| m["plugboard"].clone())
            .unwrap_or_else(|| panic!("{id} listed: {models}"))
    };
    assert_eq!(state(QWEN)["state"], "idle");
    assert!(state(QWEN)["expires_at"].is_string());
    assert_eq!(state(GEMMA)["state"], "available");
    assert!(state(GEMMA).get("expires_at").is_none());
    let before = rss(server.pid());
    let unload = post(
        &server.base,
        "/api/generate",
        &json!({"model": QWEN, "keep_alive": 0}),
        &[],
    )
    .json();
    assert_eq!(unload["done_reason"], "unload", "{unload}");
    until_loaded(&server, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(server.pid());
    eprintln!(
        "RSS with the Qwen test model loaded: {} MB; unloaded: {} MB",
        before >> 20,
        after >> 20
    );
    assert!(
        after + (100 << 20) < before,
        "unloading the 0.5B model returns its memory: {} MB before, {} MB after",
        before >> 20,
        after >> 20
    );

    // keep_alive 0 on a request unloads the model right after it.
    generate(&server, GEMMA, json!({"keep_alive": 0}));
    until_loaded(&server, &[]);
    // A bad keep_alive is a clear 400.
    let bad = post(
        &server.base,
        "/api/generate",
        &json!({"model": GEMMA, "prompt": "x", "keep_alive": "soon"}),
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("keep_alive"), "{}", bad.text);
}

/// A GET answered with JSON.
fn get(server: &TestServer, path: &str) -> Value {
    plugboard_tests::http::get(&server.base, path).json()
}

/// Threads of a process whose name starts so (`/proc/PID/task/*/comm`, 15 characters).
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|name| name.starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_memory_budget_swaps_models_refuses_one_too_large_and_models_get_their_own_threads() {
    let (Some(qwen), Some(_)) = (models::qwen(), models::gemma()) else {
        return;
    };
    let models_dir = qwen.parent().expect("a folder").to_str().expect("utf-8");
    let config = tempfile::NamedTempFile::new().expect("a file");
    // Gemma with two threads of its own and one sequence at a time.
    std::fs::write(
        config.path(),
        format!(
            "[[models]]\nid = \"{GEMMA}\"\nsource = \"gemma-3-270m-q4_k_m.gguf\"\nthreads = 2\nparallel = 1\n"
        ),
    )
    .expect("written");
    // Each fits 700 MiB alone (weights and the KV cache of one 2048-token sequence), not both.
    let server = TestServer::start(&[
        "--models-dir",
        models_dir,
        "--config",
        config.path().to_str().expect("utf-8"),
        "--max-loaded-models",
        "0",
        "--memory-budget",
        "700M",
        "--parallel",
        "1",
        "--max-context",
        "2048",
    ]);
    generate(&server, QWEN, json!({}));
    until_loaded(&server, &[QWEN]);
    let ps = get(&server, "/api/ps");
    let size = ps["models"][0]["size"].as_u64().unwrap_or(0);
    assert!(
        size > 491_000_000 && size < 700 << 20,
        "weights and KV cache: {ps}"
    );
    assert_eq!(threads_named(server.pid(), "plugboard-compu"), 0);
    generate(&server, GEMMA, json!({}));
    until_loaded(&server, &[GEMMA]);
    assert_eq!(
        threads_named(server.pid(), "plugboard-compu"),
        2,
        "gemma's own pool"
    );
    drop(server);

    // A budget smaller than a model alone: a clear error before loading, in each API's shape.
    let server = TestServer::start(&[
        "--models-dir",
        models_dir,
        "--model",
        GEMMA,
        "--parallel",
        "1",
        "--max-context",
        "1024",
        "--memory-budget",
        "350M",
    ]);
    let refused = post(
        &server.base,
        "/v1/chat/completions",
        &json!({"model": QWEN, "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(refused.status, 507, "{}", refused.text);
    assert_eq!(refused.code(), "model_too_large");
    assert!(
        refused.text.contains("memory budget of 350 MiB"),
        "{}",
        refused.text
    );
    assert_eq!(loaded(&server), vec![GEMMA.to_string()]);
}
